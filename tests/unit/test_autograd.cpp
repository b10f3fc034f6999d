// The autograd engine (lab/autograd.h): accumulation, grad mode, error cases, graph release and
// gradient routing through views, checked against hand-computed values on the HostBackend.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/tensor.h"

using namespace lab;

namespace {

void require_values(const Tensor& t, const std::vector<float>& want, double tol = 1e-6) {
    REQUIRE(t.defined());
    std::vector<float> got = t.to_floats();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i << " of " << t.str());
        CHECK(got[i] == Approx(want[i]).margin(tol).epsilon(tol));
    }
}

Tensor leaf(Backend& backend, const Shape& shape, const std::vector<float>& values) {
    Tensor t = Tensor::from_floats(backend, shape, values);
    t.set_requires_grad(true);
    return t;
}

}  // namespace

TEST_CASE("autograd: a tensor used twice accumulates both contributions", "[autograd]") {
    HostBackend backend;
    Tensor x = leaf(backend, {3}, {1.0f, -2.0f, 0.5f});

    SECTION("x * x: d/dx = 2x") {
        backward(ops::sum(ops::mul(x, x)));
        require_values(x.grad(), {2.0f, -4.0f, 1.0f});
    }
    SECTION("two branches: x * 3 + exp(x), the second reusing an intermediate") {
        Tensor x3 = ops::scale(x, 3.0f);
        Tensor y = ops::add(ops::mul(x3, x3), ops::exp(x));  // 9x^2 + e^x
        backward(ops::sum(y));
        require_values(x.grad(), {18.0f + std::exp(1.0f), -36.0f + std::exp(-2.0f), 9.0f + std::exp(0.5f)}, 1e-5);
    }
}

TEST_CASE("autograd: a node marked accumulate_into adds into a gradient nothing else holds", "[autograd]") {
    HostBackend backend;
    Tensor x = leaf(backend, {3}, {1.0f, -2.0f, 0.5f});
    // h = 2x, an interior tensor read by two ops: a plain scale (h * 3) and a recorded op whose
    // backward says whether it was handed h's gradient so far, and adds its own (h * 5) into it.
    Tensor h = ops::scale(x, 2.0f);
    std::vector<std::string> seen;
    auto five_h = [&](bool accumulates) {
        Tensor out = ops::scale(h.detach(), 5.0f);
        record(out, "five_h", {h}, [&seen](const Tensor& dout, std::vector<Tensor>& d) {
            if (d[0].defined()) {
                seen.push_back("handed");
                Tensor part = Tensor::empty(dout.backend(), dout.shape());
                dout.backend().unary(UnaryOp::scale, part, dout, 5.0f);
                dout.backend().binary(BinaryOp::add, d[0], d[0], part);
            } else {
                seen.push_back("fresh");
                Tensor g = Tensor::empty(dout.backend(), dout.shape());
                dout.backend().unary(UnaryOp::scale, g, dout, 5.0f);
                d[0] = g;
            }
        }, accumulates ? 1u : 0u);
        return out;
    };
    SECTION("the op reached second is handed the first one's gradient: d/dx = 2 (3 + 5)") {
        // The sum's backward runs scale(h, 3)'s node first (it was recorded later), then five_h's.
        Tensor y = ops::add(five_h(true), ops::scale(h, 3.0f));
        backward(ops::sum(y));
        CHECK(seen == std::vector<std::string>{"handed"});
        require_values(x.grad(), {16.0f, 16.0f, 16.0f});
    }
    SECTION("without the mark it returns a new gradient and autograd adds the two") {
        Tensor y = ops::add(five_h(false), ops::scale(h, 3.0f));
        backward(ops::sum(y));
        CHECK(seen == std::vector<std::string>{"fresh"});
        require_values(x.grad(), {16.0f, 16.0f, 16.0f});
    }
    SECTION("a gradient that another tensor shares is not handed over") {
        // add's backward gives its dout to both operands: h's gradient so far is also the other
        // branch's, and adding into it would change that one too.
        Tensor y = ops::add(five_h(true), h);
        backward(ops::sum(y));
        CHECK(seen == std::vector<std::string>{"fresh"});
        require_values(x.grad(), {12.0f, 12.0f, 12.0f});
    }
    SECTION("a backward that replaces a handed gradient is an error") {
        Tensor out = ops::scale(h.detach(), 5.0f);
        record(out, "replaces", {h}, [](const Tensor& dout, std::vector<Tensor>& d) {
            d[0] = Tensor::zeros(dout.backend(), dout.shape());
        }, 1u);
        REQUIRE_THROWS_WITH(backward(ops::sum(ops::add(out, ops::scale(h, 3.0f)))),
                            Catch::Contains("replaces") && Catch::Contains("replaced instead of added into"));
    }
}

TEST_CASE("autograd: linears and layer norms that share an input add their input gradients in place", "[autograd]") {
    // q, k and v of one x, and a pre-LN residual x + linear(layer_norm(x)): the input gradients
    // equal the sums of each reader's own (each computed alone).
    HostBackend backend;
    const int64_t N = 6, C = 8;
    std::vector<float> xv(N * C), wv(C * C), gv(C), bv(C);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::sin(0.7f * static_cast<float>(i)) + 0.1f;
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = 0.3f * std::cos(0.3f * static_cast<float>(i));
    for (size_t i = 0; i < gv.size(); ++i) {
        gv[i] = 1.0f + 0.1f * static_cast<float>(i);
        bv[i] = 0.05f * static_cast<float>(i);
    }
    const Tensor w = Tensor::from_floats(backend, {C, C}, wv), g = Tensor::from_floats(backend, {C}, gv),
                 b = Tensor::from_floats(backend, {C}, bv);
    auto grad_of = [&](auto f) {
        Tensor x = leaf(backend, {N, C}, xv);
        backward(ops::sum(ops::square(f(ops::scale(x, 1.0f)))));  // x's scale: an interior input
        return x.grad().to_floats();
    };
    auto sum = [](std::vector<float> a, const std::vector<float>& b2) {
        for (size_t i = 0; i < a.size(); ++i) a[i] += b2[i];
        return a;
    };
    SECTION("three linears") {
        const auto one = [&](const Tensor& x) { return ops::linear(x, w); };
        const auto together = grad_of([&](const Tensor& x) {
            return ops::add(ops::add(one(x), ops::scale(one(x), 2.0f)), ops::scale(one(x), -1.0f));
        });
        // Each reader alone, with the other two's outputs held fixed: their gradients add up.
        const auto q = grad_of([&](const Tensor& x) {
            return ops::add(ops::add(one(x), ops::scale(one(x.detach()), 2.0f)), ops::scale(one(x.detach()), -1.0f));
        });
        const auto k = grad_of([&](const Tensor& x) {
            return ops::add(ops::add(one(x.detach()), ops::scale(one(x), 2.0f)), ops::scale(one(x.detach()), -1.0f));
        });
        const auto v = grad_of([&](const Tensor& x) {
            return ops::add(ops::add(one(x.detach()), ops::scale(one(x.detach()), 2.0f)), ops::scale(one(x), -1.0f));
        });
        const auto want = sum(sum(q, k), v);
        for (size_t i = 0; i < want.size(); ++i) CHECK(together[i] == Approx(want[i]).epsilon(1e-5).margin(1e-6));
    }
    SECTION("a pre-LN residual") {
        const auto together =
            grad_of([&](const Tensor& x) { return ops::add(x, ops::linear(ops::layer_norm(x, g, b), w)); });
        const auto residual = grad_of([&](const Tensor& x) {
            return ops::add(x, ops::linear(ops::layer_norm(x.detach(), g, b), w));
        });
        const auto normed = grad_of([&](const Tensor& x) {
            return ops::add(x.detach(), ops::linear(ops::layer_norm(x, g, b), w));
        });
        const auto want = sum(residual, normed);
        for (size_t i = 0; i < want.size(); ++i) CHECK(together[i] == Approx(want[i]).epsilon(1e-5).margin(1e-6));
    }
}

TEST_CASE("autograd: leaf gradients accumulate over backward calls", "[autograd]") {
    HostBackend backend;
    Tensor x = leaf(backend, {2}, {3.0f, -1.0f});
    Tensor w = leaf(backend, {2}, {0.5f, 2.0f});
    backward(ops::sum(ops::mul(x, w)));
    require_values(x.grad(), {0.5f, 2.0f});
    require_values(w.grad(), {3.0f, -1.0f});
    // A second graph over the same leaves adds to .grad instead of replacing it.
    backward(ops::sum(ops::mul(ops::square(x), w)));  // d/dx = 2xw, d/dw = x^2
    require_values(x.grad(), {0.5f + 3.0f, 2.0f - 4.0f});
    require_values(w.grad(), {3.0f + 9.0f, -1.0f + 1.0f});
}

TEST_CASE("autograd: NoGradGuard records nothing", "[autograd]") {
    HostBackend backend;
    Tensor x = leaf(backend, {2, 2}, {1.0f, 2.0f, 3.0f, 4.0f});
    REQUIRE(grad_enabled());
    {
        NoGradGuard no_grad;
        CHECK_FALSE(grad_enabled());
        {
            NoGradGuard nested;
            CHECK_FALSE(grad_enabled());
        }
        CHECK_FALSE(grad_enabled());  // the inner guard restores the outer state, not "on"
        Tensor y = ops::matmul(ops::exp(x), ops::transpose(x, 0, 1));
        Tensor loss = ops::sum(ops::reshape(y, {4}));
        CHECK_FALSE(y.requires_grad());
        CHECK_FALSE(y.grad_fn());
        CHECK_FALSE(loss.requires_grad());
        CHECK_FALSE(loss.grad_fn());
        CHECK_FALSE(any_requires_grad({&x}));
        CHECK_THROWS_AS(backward(loss), Error);
    }
    CHECK(grad_enabled());
    Tensor z = ops::exp(x);
    CHECK(z.requires_grad());
    CHECK(z.grad_fn());
    CHECK_FALSE(x.grad().defined());
}

TEST_CASE("autograd: backward on a non-scalar needs an explicit gradient", "[autograd]") {
    HostBackend backend;
    Tensor x = leaf(backend, {2, 3}, {1, 2, 3, 4, 5, 6});
    Tensor y = ops::scale(x, 2.0f);
    CHECK_THROWS_AS(backward(y), ShapeError);
    CHECK_THROWS_WITH(backward(y), Catch::Matchers::Contains("[2, 3]"));
    CHECK_FALSE(x.grad().defined());

    // With the gradient given, the same graph runs: dx = 2 * droot.
    Tensor droot = Tensor::from_floats(backend, {2, 3}, {1, 0, -1, 0.5f, 2, 3});
    backward(y, droot);
    require_values(x.grad(), {2, 0, -2, 1, 4, 6});

    // A one-element tensor of any rank is a scalar.
    Tensor w = leaf(backend, {1, 1}, {4.0f});
    backward(ops::square(w));
    require_values(w.grad(), {8.0f});
}

TEST_CASE("autograd: tensors that do not require grad get no gradient", "[autograd]") {
    HostBackend backend;
    Tensor constant = Tensor::from_floats(backend, {3}, {1.0f, 2.0f, 3.0f});
    Tensor param = leaf(backend, {3}, {0.5f, -0.5f, 2.0f});
    CHECK_FALSE(constant.requires_grad());
    Tensor hidden = ops::mul(constant, param);  // an intermediate, not a leaf
    Tensor out = ops::sum(ops::exp(hidden));
    CHECK(out.requires_grad());
    backward(out);
    CHECK_FALSE(constant.grad().defined());
    CHECK_FALSE(hidden.grad().defined());  // only leaves keep .grad
    // d/dparam = constant * exp(constant * param)
    require_values(param.grad(), {1.0f * std::exp(0.5f), 2.0f * std::exp(-1.0f), 3.0f * std::exp(6.0f)}, 1e-5);

    // An op whose inputs all lack requires_grad records nothing.
    Tensor plain = ops::add(constant, constant);
    CHECK_FALSE(plain.requires_grad());
    CHECK_FALSE(plain.grad_fn());
    CHECK_THROWS_AS(backward(ops::sum(plain)), Error);
}

TEST_CASE("autograd: the graph is released after backward", "[autograd]") {
    HostBackend backend;
    Tensor x = leaf(backend, {2}, {1.0f, 2.0f});
    Tensor hidden = ops::tanh(ops::scale(x, 0.5f));
    Tensor root = ops::sum(ops::square(hidden));
    REQUIRE(root.grad_fn());
    REQUIRE(hidden.grad_fn());
    std::weak_ptr<Node> root_node = root.grad_fn();
    backward(root);
    CHECK_FALSE(root.grad_fn());
    CHECK_FALSE(hidden.grad_fn());  // intermediates are released too
    CHECK(root_node.expired());     // nothing else kept the node alive
    CHECK(x.grad().defined());
    CHECK_FALSE(x.grad_fn());       // a leaf never had one
}

TEST_CASE("autograd: gradients route through views", "[autograd]") {
    HostBackend backend;
    // x [2, 3] = [[x00 x01 x02], [x10 x11 x12]]; transpose -> [3, 2]; reshape -> [6] reads
    // x00 x10 x01 x11 x02 x12. L = sum(w * y) with w = 1..6, so dL/dx[i][j] = w[2j + i].
    Tensor x = leaf(backend, {2, 3}, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f});
    Tensor w = Tensor::from_floats(backend, {6}, {1, 2, 3, 4, 5, 6});

    SECTION("transpose then reshape") {
        Tensor y = ops::reshape(ops::transpose(x, 0, 1), {6});
        require_values(y, {0.1f, 0.4f, 0.2f, 0.5f, 0.3f, 0.6f});
        backward(ops::sum(ops::mul(y, w)));
        require_values(x.grad(), {1, 3, 5, 2, 4, 6});
    }
    SECTION("slice of a transposed view") {
        // transpose -> [3, 2]; rows 1..2 -> [[x01 x11], [x02 x12]]; weights [[10 20], [30 40]].
        Tensor y = ops::slice(ops::transpose(x, 0, 1), 0, 1, 3);
        Tensor weights = Tensor::from_floats(backend, {2, 2}, {10, 20, 30, 40});
        backward(ops::sum(ops::mul(y, weights)));
        require_values(x.grad(), {0, 10, 30, 0, 20, 40});
    }
    SECTION("select and expand share a leaf") {
        // select(x, 0, 1) = row 1 [3]; expand -> [2, 3]: each of row 1 collects 2 * w-weights.
        Tensor row = ops::select(x, 0, 1);
        Tensor y = ops::add(ops::expand(row, {2, 3}), x);  // x used directly as well
        Tensor weights = Tensor::from_floats(backend, {2, 3}, {1, 2, 3, 4, 5, 6});
        backward(ops::sum(ops::mul(y, weights)));
        // direct: weights; through row 1: column sums 1+4, 2+5, 3+6.
        require_values(x.grad(), {1, 2, 3, 4 + 5, 5 + 7, 6 + 9});
    }
}
