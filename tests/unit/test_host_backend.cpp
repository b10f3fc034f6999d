// HostBackend kernels against straightforward double-precision computations written here, and
// every backward kernel against central finite differences of a double-precision forward.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/rng.h"
#include "lab/tensor.h"

using namespace lab;
using Catch::Matchers::Contains;

namespace {

using Doubles = std::vector<double>;

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(gen);
    return v;
}

Doubles to_doubles(const std::vector<float>& v) { return Doubles(v.begin(), v.end()); }

// |got - want| <= tol * (1 + |want|) everywhere; reports the worst index.
void require_close(const std::vector<float>& got, const Doubles& want, double tol) {
    REQUIRE(got.size() == want.size());
    double worst = 0.0;
    size_t worst_at = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::abs(got[i] - want[i]) / (1.0 + std::abs(want[i]));
        if (!(err <= worst)) {
            worst = err;
            worst_at = i;
        }
    }
    INFO("worst at " << worst_at << ": got " << got[worst_at] << ", want " << want[worst_at]);
    REQUIRE(worst <= tol);
}

// Central differences of a scalar function of x, all in double.
Doubles numeric_grad(const std::function<double(const Doubles&)>& f, Doubles x, double h = 1e-5) {
    Doubles g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double saved = x[i];
        x[i] = saved + h;
        const double up = f(x);
        x[i] = saved - h;
        const double down = f(x);
        x[i] = saved;
        g[i] = (up - down) / (2 * h);
    }
    return g;
}

double dot(const Doubles& a, const Doubles& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

enum class Layout { contiguous, transposed, padded };

// A tensor whose logical (row-major) content is `values`, stored in the given layout: the last
// two dims swapped in memory, or rows padded by 3 elements after an offset of 1.
Tensor make_tensor(Backend& be, const Shape& shape, const std::vector<float>& values, Layout layout) {
    if (layout == Layout::contiguous) return Tensor::from_floats(be, shape, values);
    const size_t r = shape.size();
    const int64_t rows = shape[r - 2], cols = shape[r - 1], mats = shape_numel(shape) / (rows * cols);
    if (layout == Layout::transposed) {
        std::vector<float> phys(values.size());
        for (int64_t m = 0; m < mats; ++m)
            for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < cols; ++j) phys[(m * cols + j) * rows + i] = values[(m * rows + i) * cols + j];
        Shape phys_shape = shape;
        std::swap(phys_shape[r - 1], phys_shape[r - 2]);
        Tensor storage = Tensor::from_floats(be, phys_shape, phys);
        Shape strides = contiguous_strides(phys_shape);
        std::swap(strides[r - 1], strides[r - 2]);
        return storage.view(shape, strides, 0);
    }
    Shape phys_shape = shape;
    phys_shape[r - 1] += 3;
    std::vector<float> phys(static_cast<size_t>(shape_numel(phys_shape)) + 1, 99.0f);
    for (int64_t m = 0; m < mats; ++m)
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < cols; ++j)
                phys[1 + (m * rows + i) * (cols + 3) + j] = values[(m * rows + i) * cols + j];
    Tensor storage = Tensor::from_floats(be, {static_cast<int64_t>(phys.size())}, phys);
    return storage.view(shape, contiguous_strides(phys_shape), 1);
}

// c = alpha * a @ b + bias (+ c0) over broadcast batch dims; a, b, c logical row-major.
Doubles reference_matmul(const Shape& a_shape, const std::vector<float>& a, const Shape& b_shape,
                         const std::vector<float>& b, const Shape& c_shape, const std::vector<float>* bias,
                         float alpha, const std::vector<float>* c0) {
    const size_t r = c_shape.size();
    const int64_t M = c_shape[r - 2], N = c_shape[r - 1], K = a_shape[r - 1];
    const int64_t batches = shape_numel(c_shape) / (M * N);
    Doubles c(static_cast<size_t>(shape_numel(c_shape)));
    for (int64_t bi = 0; bi < batches; ++bi) {
        int64_t a_batch = 0, b_batch = 0, a_scale = 1, b_scale = 1, rest = bi;
        for (int64_t d = static_cast<int64_t>(r) - 3; d >= 0; --d) {
            const int64_t i = rest % c_shape[d];
            rest /= c_shape[d];
            if (a_shape[d] != 1) a_batch += i * a_scale;
            if (b_shape[d] != 1) b_batch += i * b_scale;
            a_scale *= a_shape[d];
            b_scale *= b_shape[d];
        }
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k)
                    s += double(a[(a_batch * M + i) * K + k]) * b[(b_batch * K + k) * N + j];
                const size_t at = static_cast<size_t>((bi * M + i) * N + j);
                c[at] = alpha * s + (bias ? (*bias)[j] : 0.0) + (c0 ? (*c0)[at] : 0.0);
            }
    }
    return c;
}

void check_matmul(HostBackend& be, const Shape& a_shape, Layout a_layout, const Shape& b_shape, Layout b_layout,
                  const Shape& c_shape, bool with_bias, float alpha, bool accumulate, uint32_t seed) {
    const auto a = random_floats(shape_numel(a_shape), seed);
    const auto b = random_floats(shape_numel(b_shape), seed + 1);
    const auto bias = random_floats(c_shape.back(), seed + 2);
    const auto c0 = random_floats(shape_numel(c_shape), seed + 3);
    Tensor ta = make_tensor(be, a_shape, a, a_layout), tb = make_tensor(be, b_shape, b, b_layout);
    Tensor tc = Tensor::from_floats(be, c_shape, c0);
    Tensor tbias = Tensor::from_floats(be, {c_shape.back()}, bias);
    be.matmul(tc, ta, tb, with_bias ? &tbias : nullptr, alpha, accumulate);
    require_close(tc.to_floats(),
                  reference_matmul(a_shape, a, b_shape, b, c_shape, with_bias ? &bias : nullptr, alpha,
                                   accumulate ? &c0 : nullptr),
                  1e-5);
}

}  // namespace

TEST_CASE("matmul: plain, bias, alpha, accumulate, odd sizes", "[host]") {
    HostBackend be;
    check_matmul(be, {3, 4}, Layout::contiguous, {4, 5}, Layout::contiguous, {3, 5}, false, 1.0f, false, 1);
    check_matmul(be, {7, 5}, Layout::contiguous, {5, 19}, Layout::contiguous, {7, 19}, true, 0.5f, true, 2);
    check_matmul(be, {70, 33}, Layout::contiguous, {33, 150}, Layout::contiguous, {70, 150}, true, -2.0f, false, 3);
    check_matmul(be, {1, 1}, Layout::contiguous, {1, 1}, Layout::contiguous, {1, 1}, true, 1.0f, true, 4);
}

TEST_CASE("matmul: transposed and padded views", "[host]") {
    HostBackend be;
    for (Layout la : {Layout::contiguous, Layout::transposed, Layout::padded}) {
        for (Layout lb : {Layout::contiguous, Layout::transposed, Layout::padded}) {
            check_matmul(be, {9, 13}, la, {13, 17}, lb, {9, 17}, true, 1.5f, true, 10);
            check_matmul(be, {2, 3, 6, 4}, la, {2, 3, 4, 5}, lb, {2, 3, 6, 5}, false, 1.0f, false, 11);
        }
    }
}

TEST_CASE("matmul: batch broadcast in a or b", "[host]") {
    HostBackend be;
    check_matmul(be, {1, 5, 4}, Layout::contiguous, {3, 4, 6}, Layout::transposed, {3, 5, 6}, true, 1.0f, false, 20);
    check_matmul(be, {3, 5, 4}, Layout::padded, {1, 4, 6}, Layout::contiguous, {3, 5, 6}, false, 1.0f, true, 21);
    check_matmul(be, {2, 1, 5, 4}, Layout::contiguous, {1, 3, 4, 6}, Layout::contiguous, {2, 3, 5, 6}, true, 0.25f,
                 true, 22);
}

TEST_CASE("matmul: bf16 inputs accumulate in f32, shape errors name both shapes", "[host]") {
    HostBackend be;
    auto a = random_floats(6 * 40, 30), b = random_floats(40 * 9, 31);
    Tensor ta = Tensor::from_floats(be, {6, 40}, a).to(DType::bf16);
    Tensor tb = Tensor::from_floats(be, {40, 9}, b).to(DType::bf16);
    for (auto& v : a) v = bf16_to_f32(f32_to_bf16(v));
    for (auto& v : b) v = bf16_to_f32(f32_to_bf16(v));
    Tensor tc = Tensor::empty(be, {6, 9});
    be.matmul(tc, ta, tb, nullptr, 1.0f, false);
    require_close(tc.to_floats(), reference_matmul({6, 40}, a, {40, 9}, b, {6, 9}, nullptr, 1.0f, nullptr), 1e-5);

    Tensor bad = Tensor::empty(be, {5, 9});
    REQUIRE_THROWS_AS(be.matmul(tc, Tensor::empty(be, {6, 40}), bad, nullptr, 1.0f, false), ShapeError);
    REQUIRE_THROWS_WITH(be.matmul(tc, Tensor::empty(be, {6, 40}), bad, nullptr, 1.0f, false),
                        Contains("[6, 40]") && Contains("[5, 9]"));
}

TEST_CASE("binary ops broadcast through stride-0 views and transposes", "[host]") {
    HostBackend be;
    const auto a = random_floats(24, 40), b = random_floats(3, 41, 0.5f, 2.0f);
    Tensor ta = make_tensor(be, {2, 3, 4}, a, Layout::transposed);
    Tensor tb = Tensor::from_floats(be, {3}, b).view({2, 3, 4}, {0, 1, 0}, 0);
    for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
        Tensor tc = Tensor::empty(be, {2, 3, 4});
        be.binary(op, tc, ta, tb);
        Doubles want(24);
        for (int i = 0; i < 24; ++i) {
            const double x = a[i], y = b[(i / 4) % 3];
            want[i] = op == BinaryOp::add ? x + y : op == BinaryOp::sub ? x - y : op == BinaryOp::mul ? x * y : x / y;
        }
        INFO(binary_op_name(op));
        require_close(tc.to_floats(), want, 1e-6);
    }
    // Large enough for the threaded path, with b broadcast along the innermost run.
    const auto big = random_floats(300 * 257, 42);
    const auto col = random_floats(300, 43);
    Tensor tbig = Tensor::from_floats(be, {300, 257}, big);
    Tensor tcol = Tensor::from_floats(be, {300, 1}, col).view({300, 257}, {1, 0}, 0);
    Tensor out = Tensor::empty(be, {300, 257});
    be.binary(BinaryOp::mul, out, tbig, tcol);
    Doubles want(big.size());
    for (size_t i = 0; i < big.size(); ++i) want[i] = double(big[i]) * col[i / 257];
    require_close(out.to_floats(), want, 1e-6);
    REQUIRE_THROWS_WITH(be.binary(BinaryOp::add, out, tbig, Tensor::empty(be, {300, 256})),
                        Contains("[300, 257]") && Contains("[300, 256]"));
}

namespace {

double unary_ref(UnaryOp op, double x, double alpha) {
    switch (op) {
        case UnaryOp::relu: return x > 0 ? x : 0;
        case UnaryOp::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
        case UnaryOp::gelu_tanh:
            return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        case UnaryOp::tanh: return std::tanh(x);
        case UnaryOp::sigmoid: return 1 / (1 + std::exp(-x));
        case UnaryOp::exp: return std::exp(x);
        case UnaryOp::log: return std::log(x);
        case UnaryOp::sqrt: return std::sqrt(x);
        case UnaryOp::neg: return -x;
        case UnaryOp::square: return x * x;
        case UnaryOp::scale: return alpha * x;
        case UnaryOp::add_scalar: return x + alpha;
    }
    return 0;
}

}  // namespace

TEST_CASE("unary ops and their backward match double forward and finite differences", "[host]") {
    HostBackend be;
    const std::vector<UnaryOp> ops = {UnaryOp::relu, UnaryOp::gelu, UnaryOp::gelu_tanh, UnaryOp::tanh,
                                      UnaryOp::sigmoid, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt,
                                      UnaryOp::neg, UnaryOp::square, UnaryOp::scale, UnaryOp::add_scalar};
    for (UnaryOp op : ops) {
        INFO(unary_op_name(op));
        const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt;
        auto x = random_floats(37, 50, positive ? 0.3f : -3.0f, 3.0f);
        for (auto& v : x)
            if (op == UnaryOp::relu && std::abs(v) < 0.05f) v += 0.1f;  // keep FD away from the kink
        const float alpha = 0.75f;
        Tensor tx = Tensor::from_floats(be, {37}, x), ty = Tensor::empty(be, {37});
        be.unary(op, ty, tx, alpha);
        Doubles want(x.size());
        for (size_t i = 0; i < x.size(); ++i) want[i] = unary_ref(op, x[i], alpha);
        require_close(ty.to_floats(), want, 2e-6);
        if (op == UnaryOp::scale || op == UnaryOp::add_scalar) continue;  // derivative kernels take no alpha

        const auto dy = random_floats(37, 51);
        Tensor tdy = Tensor::from_floats(be, {37}, dy), tdx = Tensor::empty(be, {37});
        be.unary_backward(op, tdx, tdy, tx, ty);
        const Doubles dyd = to_doubles(dy);
        auto loss = [&](const Doubles& xs) {
            double s = 0;
            for (size_t i = 0; i < xs.size(); ++i) s += dyd[i] * unary_ref(op, xs[i], alpha);
            return s;
        };
        require_close(tdx.to_floats(), numeric_grad(loss, to_doubles(x)), 1e-4);
        // Without y the kernel recomputes it.
        Tensor tdx2 = Tensor::empty(be, {37});
        be.unary_backward(op, tdx2, tdy, tx, Tensor());
        REQUIRE(tdx2.to_floats() == tdx.to_floats());
    }
    // Strided input: a transposed view.
    const auto m = random_floats(6, 52);
    Tensor tm = make_tensor(be, {2, 3}, m, Layout::transposed), out = Tensor::empty(be, {2, 3});
    be.unary(UnaryOp::square, out, tm, 0.0f);
    Doubles want(6);
    for (int i = 0; i < 6; ++i) want[i] = double(m[i]) * m[i];
    require_close(out.to_floats(), want, 1e-6);
}

TEST_CASE("reduce_sum over leading, trailing, middle and all dims, sum_squares", "[host]") {
    HostBackend be;
    const Shape xs = {2, 3, 4};
    const auto x = random_floats(24, 60);
    for (Layout layout : {Layout::contiguous, Layout::transposed}) {
        Tensor tx = make_tensor(be, xs, x, layout);
        for (const Shape& ys : {Shape{1, 3, 4}, Shape{1, 1, 4}, Shape{2, 3, 1}, Shape{2, 1, 4}, Shape{1, 3, 1},
                                Shape{1, 1, 1}, Shape{2, 3, 4}}) {
            INFO(shape_str(ys));
            Tensor ty = Tensor::empty(be, ys);
            be.reduce_sum(ty, tx);
            Doubles want(static_cast<size_t>(shape_numel(ys)), 0.0);
            for (int64_t i = 0; i < 2; ++i)
                for (int64_t j = 0; j < 3; ++j)
                    for (int64_t k = 0; k < 4; ++k) {
                        const int64_t i0 = ys[0] == 1 ? 0 : i, j0 = ys[1] == 1 ? 0 : j, k0 = ys[2] == 1 ? 0 : k;
                        want[(i0 * ys[1] + j0) * ys[2] + k0] += x[(i * 3 + j) * 4 + k];
                    }
            require_close(ty.to_floats(), want, 1e-6);
        }
    }
    REQUIRE_THROWS_AS(be.reduce_sum(Tensor::empty(be, {2, 2, 4}), Tensor::from_floats(be, xs, x)), ShapeError);

    Tensor out = Tensor::from_floats(be, {1}, {1.5f});
    be.sum_squares(out, Tensor::from_floats(be, xs, x), true);
    double sq = 1.5;
    for (float v : x) sq += double(v) * v;
    REQUIRE(out.item() == Approx(sq).epsilon(1e-6));
    be.sum_squares(out, make_tensor(be, xs, x, Layout::transposed), false);
    REQUIRE(out.item() == Approx(sq - 1.5).epsilon(1e-6));
}

TEST_CASE("softmax and log_softmax are stable, backward matches finite differences", "[host]") {
    HostBackend be;
    const int64_t N = 3, C = 7;
    auto x = random_floats(N * C, 70, -3.0f, 3.0f);
    x[0] = 1000.0f;  // a huge logit must not overflow
    const auto dy = random_floats(N * C, 71);
    for (bool log : {false, true}) {
        INFO("log = " << log);
        auto ref = [&](const Doubles& xs) {
            Doubles y(xs.size());
            for (int64_t n = 0; n < N; ++n) {
                double m = -1e300, s = 0;
                for (int64_t j = 0; j < C; ++j) m = std::max(m, xs[n * C + j]);
                for (int64_t j = 0; j < C; ++j) s += std::exp(xs[n * C + j] - m);
                for (int64_t j = 0; j < C; ++j) {
                    const double ls = xs[n * C + j] - m - std::log(s);
                    y[n * C + j] = log ? ls : std::exp(ls);
                }
            }
            return y;
        };
        Tensor tx = Tensor::from_floats(be, {N, C}, x), ty = Tensor::empty(be, {N, C});
        be.softmax(ty, tx, log);
        require_close(ty.to_floats(), ref(to_doubles(x)), 2e-6);

        Tensor tdx = Tensor::empty(be, {N, C});
        be.softmax_backward(tdx, Tensor::from_floats(be, {N, C}, dy), ty, log);
        auto xs_small = to_doubles(x);
        xs_small[0] = 2.0;  // FD in double needs no huge value; rerun the kernel on the same input
        Tensor tx2 = Tensor::from_floats(be, {N, C}, std::vector<float>(xs_small.begin(), xs_small.end()));
        be.softmax(ty, tx2, log);
        be.softmax_backward(tdx, Tensor::from_floats(be, {N, C}, dy), ty, log);
        auto loss = [&](const Doubles& xs) { return dot(to_doubles(dy), ref(xs)); };
        require_close(tdx.to_floats(), numeric_grad(loss, xs_small), 1e-4);
    }
    // Masked entries (-inf) give exact zeros.
    Tensor masked = Tensor::from_floats(be, {1, 3}, {0.5f, -INFINITY, 0.25f}), p = Tensor::empty(be, {1, 3});
    be.softmax(p, masked, false);
    REQUIRE(p.to_floats()[1] == 0.0f);
}

TEST_CASE("layer_norm forward and backward, dgamma and dbeta accumulate", "[host]") {
    HostBackend be;
    const int64_t N = 3, C = 8;
    const float eps = 1e-5f;
    auto x = random_floats(N * C, 80, -2.0f, 2.0f);
    for (auto& v : x) v += 100.0f;  // a large mean tests the two-pass variance
    const auto gamma = random_floats(C, 81, 0.5f, 1.5f), beta = random_floats(C, 82), dy = random_floats(N * C, 83);
    auto ref = [&](const Doubles& xs, const Doubles& g, const Doubles& b) {
        Doubles y(xs.size());
        for (int64_t n = 0; n < N; ++n) {
            double mean = 0, var = 0;
            for (int64_t j = 0; j < C; ++j) mean += xs[n * C + j] / C;
            for (int64_t j = 0; j < C; ++j) var += (xs[n * C + j] - mean) * (xs[n * C + j] - mean) / C;
            for (int64_t j = 0; j < C; ++j) y[n * C + j] = (xs[n * C + j] - mean) / std::sqrt(var + eps) * g[j] + b[j];
        }
        return y;
    };
    Tensor tx = Tensor::from_floats(be, {N, C}, x), ty = Tensor::empty(be, {N, C});
    Tensor tmean = Tensor::empty(be, {N}), trstd = Tensor::empty(be, {N});
    Tensor tg = Tensor::from_floats(be, {C}, gamma), tb = Tensor::from_floats(be, {C}, beta);
    be.layer_norm(ty, tmean, trstd, tx, &tg, &tb, eps);
    const Doubles xd = to_doubles(x), gd = to_doubles(gamma), bd = to_doubles(beta), dyd = to_doubles(dy);
    require_close(ty.to_floats(), ref(xd, gd, bd), 2e-5);
    double mean0 = 0;
    for (int64_t j = 0; j < C; ++j) mean0 += xd[j] / C;
    REQUIRE(tmean.to_floats()[0] == Approx(mean0).epsilon(1e-6));

    Tensor tdx = Tensor::empty(be, {N, C});
    Tensor tdg = Tensor::full(be, {C}, 1.0), tdb = Tensor::full(be, {C}, 1.0);
    be.layer_norm_backward(tdx, &tdg, &tdb, Tensor::from_floats(be, {N, C}, dy), tx, tmean, trstd, &tg);
    require_close(tdx.to_floats(), numeric_grad([&](const Doubles& v) { return dot(dyd, ref(v, gd, bd)); }, xd, 1e-4),
                  2e-3);
    Doubles want_dg = numeric_grad([&](const Doubles& v) { return dot(dyd, ref(xd, v, bd)); }, gd);
    Doubles want_db = numeric_grad([&](const Doubles& v) { return dot(dyd, ref(xd, gd, v)); }, bd);
    for (auto& v : want_dg) v += 1.0;
    for (auto& v : want_db) v += 1.0;
    require_close(tdg.to_floats(), want_dg, 1e-4);
    require_close(tdb.to_floats(), want_db, 1e-5);

    // Without gamma/beta: y is the plain normalised x.
    be.layer_norm(ty, tmean, trstd, tx, nullptr, nullptr, eps);
    require_close(ty.to_floats(), ref(xd, Doubles(C, 1.0), Doubles(C, 0.0)), 2e-5);
    REQUIRE_THROWS_AS(be.layer_norm(ty, Tensor::empty(be, {2}), trstd, tx, nullptr, nullptr, eps), ShapeError);
}

TEST_CASE("cross_entropy and its backward with ignore_index, i32 and i64 targets", "[host]") {
    HostBackend be;
    const int64_t N = 4, V = 6, ignore = -100;
    auto logits = random_floats(N * V, 90, -3.0f, 3.0f);
    const std::vector<int64_t> targets = {2, ignore, 5, 0};
    const auto dloss = random_floats(N, 91, 0.5f, 1.5f);
    auto ref = [&](const Doubles& xs) {
        Doubles loss(N, 0.0);
        for (int64_t n = 0; n < N; ++n) {
            if (targets[n] == ignore) continue;
            double m = -1e300, s = 0;
            for (int64_t j = 0; j < V; ++j) m = std::max(m, xs[n * V + j]);
            for (int64_t j = 0; j < V; ++j) s += std::exp(xs[n * V + j] - m);
            loss[n] = m + std::log(s) - xs[n * V + targets[n]];
        }
        return loss;
    };
    for (DType id_type : {DType::i64, DType::i32}) {
        Tensor tt = Tensor::from_ints(be, {N}, targets, id_type);
        Tensor tx = Tensor::from_floats(be, {N, V}, logits);
        Tensor tloss = Tensor::empty(be, {N}), tlse = Tensor::empty(be, {N});
        be.cross_entropy(tloss, tlse, tx, tt, ignore);
        require_close(tloss.to_floats(), ref(to_doubles(logits)), 1e-5);
        REQUIRE(tloss.to_floats()[1] == 0.0f);

        Tensor tdx = Tensor::full(be, {N, V}, 7.0);
        be.cross_entropy_backward(tdx, Tensor::from_floats(be, {N}, dloss), tx, tlse, tt, ignore);
        const auto dx = tdx.to_floats();
        auto total = [&](const Doubles& v) { return dot(to_doubles(dloss), ref(v)); };
        require_close(dx, numeric_grad(total, to_doubles(logits)), 1e-4);
        for (int64_t j = 0; j < V; ++j) REQUIRE(dx[V + j] == 0.0f);
    }
    // Stability: logits of 1e4 give finite loss and lse.
    Tensor big = Tensor::from_floats(be, {1, 3}, {1e4f, 0.0f, -1e4f});
    Tensor loss = Tensor::empty(be, {1}), lse = Tensor::empty(be, {1});
    be.cross_entropy(loss, lse, big, Tensor::from_ints(be, {1}, {1}), ignore);
    REQUIRE(loss.item() == Approx(1e4).epsilon(1e-6));
    REQUIRE(lse.item() == Approx(1e4).epsilon(1e-6));
    REQUIRE_THROWS_WITH(be.cross_entropy(loss, lse, big, Tensor::from_ints(be, {1}, {3}), ignore),
                        Contains("target 3") && Contains("[0, 3)"));
}

TEST_CASE("embedding gathers rows, its backward scatter-adds, bad ids throw", "[host]") {
    HostBackend be;
    const int64_t V = 5, C = 3;
    const auto table = random_floats(V * C, 100);
    const std::vector<int64_t> ids = {4, 0, 4, 2};
    for (DType id_type : {DType::i64, DType::i32}) {
        Tensor tids = Tensor::from_ints(be, {2, 2}, ids, id_type);
        Tensor ty = Tensor::empty(be, {2, 2, C});
        be.embedding(ty, tids, Tensor::from_floats(be, {V, C}, table));
        Doubles want;
        for (int64_t id : ids)
            for (int64_t j = 0; j < C; ++j) want.push_back(table[id * C + j]);
        require_close(ty.to_floats(), want, 0.0);

        const auto dy = random_floats(4 * C, 101);
        Tensor dtable = Tensor::full(be, {V, C}, 0.5);
        be.embedding_backward(dtable, Tensor::from_floats(be, {2, 2, C}, dy), tids);
        Doubles want_dt(V * C, 0.5);
        for (size_t n = 0; n < ids.size(); ++n)
            for (int64_t j = 0; j < C; ++j) want_dt[ids[n] * C + j] += dy[n * C + j];
        require_close(dtable.to_floats(), want_dt, 1e-6);
    }
    Tensor ty = Tensor::full(be, {3, C}, 9.0);
    Tensor bad = Tensor::from_ints(be, {3}, {1, 2, 70});
    REQUIRE_THROWS_AS(be.embedding(ty, bad, Tensor::from_floats(be, {V, C}, table)), ShapeError);
    REQUIRE_THROWS_WITH(be.embedding(ty, bad, Tensor::from_floats(be, {V, C}, table)),
                        Contains("70") && Contains("position 2") && Contains("[0, 5)"));
    REQUIRE(ty.to_floats() == std::vector<float>(3 * C, 9.0f));  // nothing half-written
    REQUIRE_THROWS_AS(be.embedding(ty, Tensor::from_ints(be, {3}, {-1, 0, 0}), Tensor::from_floats(be, {V, C}, table)),
                      ShapeError);
}

TEST_CASE("dropout: mask statistics, scaling, exact reproducibility from the key", "[host]") {
    HostBackend be;
    const int64_t n = 100000;
    const float p = 0.3f;
    Tensor x = Tensor::full(be, {n}, 2.0), y = Tensor::empty(be, {n}), keep = Tensor::empty(be, {n}, DType::u8);
    const RngKey key{1234, kStreamDropout, 8};
    be.dropout(y, keep, x, p, key);
    const auto ys = y.to_floats();
    const auto ks = keep.to_ints();
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) {
        REQUIRE(ks[i] == (philox_uniform(key, static_cast<uint64_t>(i)) >= p ? 1 : 0));
        REQUIRE(ys[i] == (ks[i] ? 2.0f / (1.0f - p) : 0.0f));
        kept += ks[i];
    }
    REQUIRE(double(kept) / n == Approx(1.0 - p).margin(0.01));

    Tensor y2 = Tensor::empty(be, {n}), keep2 = Tensor::empty(be, {n}, DType::u8);
    be.dropout(y2, keep2, x, p, key);
    REQUIRE(keep2.to_ints() == ks);
    be.dropout(y2, keep2, x, p, RngKey{1234, kStreamDropout, 12});
    REQUIRE(keep2.to_ints() != ks);

    Tensor dx = Tensor::empty(be, {n});
    be.dropout_backward(dx, Tensor::full(be, {n}, 1.0), keep, p);
    const auto dxs = dx.to_floats();
    for (int64_t i = 0; i < n; i += 97) REQUIRE(dxs[i] == (ks[i] ? 1.0f / (1.0f - p) : 0.0f));
}

TEST_CASE("dropout: an offset that is not block-aligned draws element i from philox_uniform(key, i)", "[host]") {
    HostBackend be;
    const int64_t n = 5000;
    Tensor x = Tensor::full(be, {n}, 1.0), y = Tensor::empty(be, {n}), keep = Tensor::empty(be, {n}, DType::u8);
    for (uint64_t offset : {uint64_t{0}, uint64_t{3}, uint64_t{4096 + 2}}) {
        const RngKey key{77, kStreamDropout, offset};
        be.dropout(y, keep, x, 0.5f, key);
        const auto ks = keep.to_ints();
        int64_t agree = 0;
        for (int64_t i = 0; i < n; ++i) agree += ks[i] == (philox_uniform(key, static_cast<uint64_t>(i)) >= 0.5f ? 1 : 0);
        INFO("offset " << offset);
        CHECK(agree == n);
    }
}

TEST_CASE("masked_fill with a broadcast mask", "[host]") {
    HostBackend be;
    const auto x = random_floats(6, 110);
    Tensor mask = Tensor::from_ints(be, {3}, {1, 0, 1}, DType::u8).view({2, 3}, {0, 1}, 0);
    Tensor y = Tensor::empty(be, {2, 3});
    be.masked_fill(y, Tensor::from_floats(be, {2, 3}, x), mask, -1e9f);
    require_close(y.to_floats(), {-1e9, x[1], -1e9, -1e9, x[4], -1e9}, 0.0);
}

TEST_CASE("copy converts between every pair of dtypes, any strides, fill any dtype", "[host]") {
    HostBackend be;
    const std::vector<DType> all = {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8};
    // Small integers survive every dtype exactly.
    const std::vector<float> values = {0, 1, 2, 3, 7, 100, 42, 5};
    for (DType from : all) {
        for (DType to : all) {
            INFO(dtype_name(from) << " -> " << dtype_name(to));
            Tensor src = Tensor::from_floats(be, {2, 4}, values).to(from);
            Tensor dst = Tensor::empty(be, {4, 2}, to);
            // Transposed on both sides: dst^T = src.
            be.copy(dst.view({2, 4}, {1, 2}, 0), src);
            const auto got = dst.to_floats();
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 4; ++j) REQUIRE(got[j * 2 + i] == values[i * 4 + j]);
        }
        Tensor filled = Tensor::empty(be, {3}, from);
        be.fill(filled, 3.0);
        REQUIRE(filled.to_floats() == std::vector<float>{3, 3, 3});
    }
    // bf16 rounds to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7; just above it rounds up.
    const float above = std::nextafter(1.00390625f, 2.0f);
    Tensor halfway = Tensor::from_floats(be, {3}, {1.00390625f, 1.01171875f, above}).to(DType::bf16);
    REQUIRE(halfway.to_floats() == std::vector<float>{1.0f, 1.015625f, 1.0078125f});
    // f16: largest finite value, overflow to inf, a subnormal.
    const auto f16 = Tensor::from_floats(be, {3}, {65504.0f, 70000.0f, 1e-7f}).to(DType::f16).to_floats();
    REQUIRE(f16[0] == 65504.0f);
    REQUIRE(std::isinf(f16[1]));
    REQUIRE(f16[2] == Approx(1.1920929e-7).epsilon(1e-6));  // 2 * 2^-24
    // Floats to integers truncate toward zero; i64 ids beyond 2^53 copy exactly.
    REQUIRE(Tensor::from_floats(be, {2}, {2.7f, -2.7f}).to(DType::i32).to_ints() == std::vector<int64_t>{2, -2});
    const int64_t big = (int64_t(1) << 60) + 1;
    REQUIRE(Tensor::from_ints(be, {1}, {big}).to(DType::i64).to(DType::i64).to_ints()[0] == big);
    Tensor big_strided = Tensor::from_ints(be, {2}, {big, 3}).view({1}, {1}, 0);
    REQUIRE(big_strided.contiguous_copy().to_ints()[0] == big);
}

TEST_CASE("bf16 rounding of f32 runs equals f32_to_bf16 bit for bit, subnormals and NaN payloads included", "[host]") {
    // The vectorised rounding (host_lanes.h) takes AVX512-BF16's conversion where the CPU has it,
    // which flushes subnormals: every bit pattern class, at every position of a vector and of a tail.
    std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x007f8000u, 0x00008000u,
                                  0x00018000u, 0x00800000u, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0x7f7fffffu,
                                  0x7f7f8000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffa12345u,
                                  0x7fbfffffu, 0x3f800000u};
    std::mt19937 gen(11);
    for (int i = 0; i < 4000; ++i) bits.push_back(gen());
    for (int i = 0; i < 300; ++i) bits.push_back(gen() & 0x807fffffu);  // subnormals among normal lanes
    HostBackend be;
    for (int64_t n : {int64_t(bits.size()), int64_t(37), int64_t(5)}) {
        std::vector<float> values(static_cast<size_t>(n));
        std::memcpy(values.data(), bits.data(), sizeof(float) * values.size());
        Tensor x = Tensor::from_floats(be, {n}, values);
        Tensor y = Tensor::empty(be, {n}, DType::bf16);
        be.copy(y, x);
        const uint16_t* got = y.data<uint16_t>();
        for (int64_t i = 0; i < n; ++i) {
            INFO("input bits 0x" << std::hex << bits[static_cast<size_t>(i)]);
            REQUIRE(got[i] == f32_to_bf16(values[static_cast<size_t>(i)]));
        }
    }
}

TEST_CASE("gelu keeps its relative accuracy in the lower tail, its derivative too, and writes bf16 as copy rounds",
          "[host]") {
    HostBackend be;
    // A grid over [-13, 13] (gelu(-13) is about 1e-37, the edge of normal floats) and special values.
    std::vector<float> x;
    for (int i = -13 * 512; i <= 13 * 512; ++i) x.push_back(static_cast<float>(i) / 512.0f + 1.0f / 4096.0f);
    const int64_t n = static_cast<int64_t>(x.size());
    Tensor tx = Tensor::from_floats(be, {n}, x), ty = Tensor::empty(be, {n});
    be.unary(UnaryOp::gelu, ty, tx, 0.0f);
    Tensor ones = Tensor::from_floats(be, {n}, std::vector<float>(x.size(), 1.0f)), tg = Tensor::empty(be, {n});
    be.unary_backward(UnaryOp::gelu, tg, ones, tx, Tensor());
    const std::vector<float> y = ty.to_floats(), g = tg.to_floats();
    double worst = 0, worst_grad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const double v = x[i], cdf = 0.5 * std::erfc(-v / std::sqrt(2.0));
        const double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
        const double want = v * cdf;
        INFO("x = " << v);
        if (std::abs(want) > 1e-37) worst = std::max(worst, std::abs(y[i] - want) / std::abs(want));
        // The derivative cdf + x pdf crosses 0 near x = -0.75: its error is relative to its terms.
        const double terms = cdf + std::abs(v) * pdf;
        if (terms > 1e-37) worst_grad = std::max(worst_grad, std::abs(g[i] - (cdf + v * pdf)) / terms);
        // 0.5 x (1 + erf(x / sqrt 2)) in floats is 0 from x = -5.9 on: the tail must not be.
        if (v > -12.5 && v < 0) REQUIRE(y[i] < 0.0f);
    }
    INFO("largest relative error: gelu " << worst << ", gelu' " << worst_grad);
    REQUIRE(worst < 2e-5);  // measured 1.5e-5 near x = -12.8, below 2e-6 on [-5, 5]
    REQUIRE(worst_grad < 2e-5);

    const std::vector<float> special = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e30f};
    Tensor ts = Tensor::from_floats(be, {7}, special), tys = Tensor::empty(be, {7});
    be.unary(UnaryOp::gelu, tys, ts, 0.0f);
    const std::vector<float> ys = tys.to_floats();
    REQUIRE(ys[0] == 0.0f);
    REQUIRE(ys[1] == 0.0f);
    REQUIRE(ys[2] == INFINITY);
    REQUIRE(std::isnan(ys[3]));  // -inf * Phi(-inf) = -inf * 0, as 0.5 x (1 + erf) gives
    REQUIRE(std::isnan(ys[4]));
    REQUIRE(ys[5] == 1e30f);
    REQUIRE(ys[6] == 0.0f);

    // unary_bf16: the f32 results rounded as copy rounds them, bit for bit, from a contiguous and a
    // transposed x, for gelu (HostBackend's own kernel) and tanh (Backend's default).
    std::vector<float> m = x;
    m.resize(64 * 97);
    const Tensor contiguous = Tensor::from_floats(be, {64, 97}, m);
    const Tensor transposed = Tensor::from_floats(be, {97, 64}, m).view({64, 97}, {1, 64}, 0);
    for (UnaryOp op : {UnaryOp::gelu, UnaryOp::tanh}) {
        for (const Tensor& in : {contiguous, transposed}) {
            INFO(unary_op_name(op) << (in.is_contiguous() ? " contiguous" : " transposed"));
            Tensor f32 = Tensor::empty(be, {64, 97}), rounded = Tensor::empty(be, {64, 97}, DType::bf16);
            be.unary(op, f32, in, 0.0f);
            be.unary_bf16(op, rounded, in, 0.0f);
            const Tensor want = f32.to(DType::bf16);
            REQUIRE(std::memcmp(rounded.data<uint16_t>(), want.data<uint16_t>(), 64 * 97 * sizeof(uint16_t)) == 0);
        }
    }
    for (UnaryOp op : {UnaryOp::gelu, UnaryOp::tanh})  // HostBackend's kernel, Backend's default
        REQUIRE_THROWS_WITH(be.unary_bf16(op, Tensor::empty(be, {64, 97}), contiguous, 0.0f),
                            Contains("unary_bf16") && Contains("bf16") && Contains("f32"));
}

TEST_CASE("f16 conversion round-trips every half value and rounds like the hardware", "[host]") {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) {
            REQUIRE(std::isnan(f16_to_f32(f32_to_f16(f))));
        } else {
            REQUIRE(f32_to_f16(f) == h);
        }
    }
#if defined(__FLT16_MAX__)
    std::mt19937 gen(5);
    for (int i = 0; i < 200000; ++i) {
        uint32_t bits = gen();
        float f;
        std::memcpy(&f, &bits, 4);
        if (std::isnan(f)) continue;
        const _Float16 want = static_cast<_Float16>(f);
        uint16_t want_bits;
        std::memcpy(&want_bits, &want, 2);
        INFO("f = " << f);
        REQUIRE(f32_to_f16(f) == want_bits);
    }
#endif
}

TEST_CASE("HostBackend names the CPU and its threads, shape errors name both shapes", "[host]") {
    HostBackend be;
    REQUIRE(be.name() == "reference");
    REQUIRE_THAT(be.device_info(), Contains("cpu: ") && Contains("threads"));
    Tensor a = Tensor::empty(be, {2, 3}), b = Tensor::empty(be, {3, 2});
    REQUIRE_THROWS_WITH(be.unary(UnaryOp::relu, a, b, 0.0f), Contains("[2, 3]") && Contains("[3, 2]"));
    REQUIRE_THROWS_WITH(be.softmax(a, b, false), Contains("[2, 3]") && Contains("[3, 2]"));
}
