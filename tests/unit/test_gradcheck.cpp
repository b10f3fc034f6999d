// Finite-difference gradient checks of every differentiable op in lab/ops.h on the reference
// HostBackend (tests/gradcheck.h explains the method and the tolerance). Each check perturbs
// every element of every f32 input; inputs are small so that the whole file runs in seconds.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "gradcheck.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/rng.h"
#include "lab/tensor.h"

using namespace lab;
using lab::testing::compute_gradcheck;
using lab::testing::gradcheck;
using lab::testing::random_input;

namespace {

using Inputs = std::vector<Tensor>;

// Input maps: keep inputs where the op is smooth within +-eps of every element.
float positive(float x) { return 0.5f + std::abs(x); }                    // log, sqrt, divisors
float away_from_zero(float x) { return x >= 0.0f ? x + 0.1f : x - 0.1f; }  // relu's kink, divisors

Tensor u8_tensor(Backend& backend, const Shape& shape, const std::vector<uint8_t>& values) {
    return Tensor::from_host(backend, shape, DType::u8, values.data());
}

}  // namespace

// ---- the checker itself must be able to fail ----

TEST_CASE("gradcheck: the checker rejects wrong gradients", "[gradcheck]") {
    HostBackend backend;
    Tensor x = random_input(backend, {3, 4}, 1);

    SECTION("a square whose backward misses the factor 2") {
        auto wrong_square = [](const Inputs& in) {
            Tensor y;
            {
                NoGradGuard no_grad;
                y = ops::square(in[0]);
            }
            if (in[0].requires_grad()) {
                Tensor saved = in[0].detach();
                record(y, "wrong_square", {in[0]}, [saved](const Tensor& dout, std::vector<Tensor>& d) {
                    d[0] = ops::mul(dout, saved);  // should be 2 * dout * x
                });
            }
            return y;
        };
        auto result = compute_gradcheck(wrong_square, {x});
        INFO(result.summary());
        CHECK_FALSE(result.ok());
        CHECK(result.inputs[0].max_abs_diff > 0.1);
    }

    SECTION("a matmul whose backward forgets to transpose B") {
        Tensor b = random_input(backend, {4, 4}, 2);
        Tensor a = random_input(backend, {4, 4}, 3);
        auto wrong_matmul = [](const Inputs& in) {
            Tensor c;
            {
                NoGradGuard no_grad;
                c = ops::matmul(in[0], in[1]);
            }
            if (in[0].requires_grad()) {
                Tensor saved_b = in[1].detach();
                record(c, "wrong_matmul", {in[0]}, [saved_b](const Tensor& dout, std::vector<Tensor>& d) {
                    d[0] = ops::matmul(dout, saved_b);  // should be dout @ B^T
                });
            }
            return c;
        };
        auto result = compute_gradcheck(wrong_matmul, {a, b});
        INFO(result.summary());
        CHECK_FALSE(result.ok());
        CHECK(result.inputs[0].max_abs_diff > 0.1);
        CHECK(result.inputs[1].max_abs_diff > 0.1);  // b got no gradient at all
    }

    SECTION("a correct op passes") {
        auto result = compute_gradcheck([](const Inputs& in) { return ops::square(in[0]); }, {x});
        INFO(result.summary());
        CHECK(result.ok());
        CHECK(result.inputs[0].max_abs_diff < 1e-2);
    }
}

// ---- linear algebra ----

TEST_CASE("gradcheck: matmul", "[gradcheck]") {
    HostBackend backend;
    auto mm = [](const Inputs& in) { return ops::matmul(in[0], in[1]); };

    SECTION("2-D") {
        gradcheck("matmul [3,4]@[4,5]", mm, {random_input(backend, {3, 4}, 10), random_input(backend, {4, 5}, 11)});
    }
    SECTION("3-D batched") {
        gradcheck("matmul [2,3,4]@[2,4,5]", mm,
                  {random_input(backend, {2, 3, 4}, 12), random_input(backend, {2, 4, 5}, 13)});
    }
    SECTION("4-D with batch broadcast in both operands") {
        gradcheck("matmul [2,1,3,4]@[1,3,4,2]", mm,
                  {random_input(backend, {2, 1, 3, 4}, 14), random_input(backend, {1, 3, 4, 2}, 15)});
    }
    SECTION("rank broadcast: 2-D a against 3-D b") {
        gradcheck("matmul [3,4]@[2,4,5]", mm, {random_input(backend, {3, 4}, 16), random_input(backend, {2, 4, 5}, 17)});
    }
    SECTION("2-D weight against 3-D input") {
        gradcheck("matmul [2,3,4]@[4,5]", mm, {random_input(backend, {2, 3, 4}, 18), random_input(backend, {4, 5}, 19)});
    }
    SECTION("2-D weight against 4-D input") {
        gradcheck("matmul [2,2,3,4]@[4,3]", mm,
                  {random_input(backend, {2, 2, 3, 4}, 20), random_input(backend, {4, 3}, 21)});
    }
    SECTION("transposed-view inputs") {
        Tensor a = random_input(backend, {4, 3}, 22), b = random_input(backend, {5, 4}, 23);
        gradcheck("matmul a^T @ b^T", [](const Inputs& in) {
            return ops::matmul(ops::transpose(in[0], 0, 1), ops::transpose(in[1], 0, 1));
        }, {a, b});
        gradcheck("matmul a^T @ c", [](const Inputs& in) {
            return ops::matmul(ops::transpose(in[0], 0, 1), in[1]);
        }, {a, random_input(backend, {4, 2}, 24)});
        gradcheck("matmul batched q @ k^T", [](const Inputs& in) {
            return ops::matmul(in[0], ops::transpose(in[1], -1, -2));
        }, {random_input(backend, {2, 3, 4}, 25), random_input(backend, {2, 5, 4}, 26)});
        gradcheck("matmul transposed 3-D input against 2-D weight", [](const Inputs& in) {
            return ops::matmul(ops::transpose(in[0], 1, 2), in[1]);
        }, {random_input(backend, {2, 4, 3}, 27), random_input(backend, {4, 2}, 28)});
    }
}

TEST_CASE("gradcheck: linear", "[gradcheck]") {
    HostBackend backend;
    Tensor weight = random_input(backend, {5, 4}, 30), bias = random_input(backend, {5}, 31);
    SECTION("with bias, 3-D input") {
        gradcheck("linear x[2,3,4] W[5,4] b[5]", [](const Inputs& in) { return ops::linear(in[0], in[1], in[2]); },
                  {random_input(backend, {2, 3, 4}, 32), weight, bias});
    }
    SECTION("without bias, 2-D input") {
        gradcheck("linear x[3,4] W[5,4]", [](const Inputs& in) { return ops::linear(in[0], in[1]); },
                  {random_input(backend, {3, 4}, 33), weight});
    }
    SECTION("transposed-view input") {
        gradcheck("linear x^T W b", [](const Inputs& in) {
            return ops::linear(ops::transpose(in[0], 0, 1), in[1], in[2]);
        }, {random_input(backend, {4, 3}, 34), weight, bias});
    }
}

TEST_CASE("gradcheck: linear_gelu_tanh, and its values equal gelu(linear(x), tanh)", "[gradcheck]") {
    HostBackend backend;
    Tensor weight = random_input(backend, {8, 4}, 35), bias = random_input(backend, {8}, 36);
    Tensor x = random_input(backend, {2, 3, 4}, 37);
    gradcheck("linear_gelu_tanh x[2,3,4] W[8,4] b[8]",
              [](const Inputs& in) { return ops::linear_gelu_tanh(in[0], in[1], in[2]); }, {x, weight, bias});
    gradcheck("linear_gelu_tanh x[3,4] W[8,4]", [](const Inputs& in) { return ops::linear_gelu_tanh(in[0], in[1]); },
              {random_input(backend, {3, 4}, 38), weight});
    const std::vector<float> fused = ops::linear_gelu_tanh(x, weight, bias).to_floats();
    const std::vector<float> composite = ops::gelu(ops::linear(x, weight, bias), true).to_floats();
    REQUIRE(fused.size() == composite.size());
    for (size_t i = 0; i < fused.size(); ++i) REQUIRE(fused[i] == composite[i]);
}

// ---- elementwise ----

TEST_CASE("gradcheck: binary ops with broadcasting", "[gradcheck]") {
    HostBackend backend;
    struct Case {
        const char* name;
        Tensor (*op)(const Tensor&, const Tensor&);
    };
    const Case cases[] = {{"add", ops::add}, {"sub", ops::sub}, {"mul", ops::mul}, {"div", ops::div}};
    struct Shapes {
        Shape a, b;
    };
    // Same shape; b broadcast; a broadcast; both broadcast; a [1] scalar-like operand either side.
    const Shapes shape_pairs[] = {{{2, 3}, {2, 3}},    {{2, 3, 4}, {3, 1}}, {{1, 4}, {2, 3, 4}},
                                  {{3, 1}, {1, 4}},    {{2, 3}, {1}},       {{1}, {2, 3}}};
    uint32_t seed = 40;
    for (const Case& c : cases) {
        for (const Shapes& s : shape_pairs) {
            DYNAMIC_SECTION(c.name << " " << shape_str(s.a) << " with " << shape_str(s.b)) {
                // Divisors stay away from zero, where d(a/b)/db = -a/b^2 blows up.
                Tensor a = random_input(backend, s.a, seed);
                Tensor b = random_input(backend, s.b, seed + 1, away_from_zero);
                if (c.op == ops::div) b = random_input(backend, s.b, seed + 1, positive);
                auto op = c.op;
                gradcheck(c.name, [op](const Inputs& in) { return op(in[0], in[1]); }, {a, b});
            }
            seed += 2;
        }
    }
    SECTION("the same tensor on both sides") {
        gradcheck("mul(x, x)", [](const Inputs& in) { return ops::mul(in[0], in[0]); },
                  {random_input(backend, {2, 3}, 60)});
        gradcheck("div(x, x + 3)", [](const Inputs& in) { return ops::div(in[0], ops::add_scalar(in[0], 3.0f)); },
                  {random_input(backend, {2, 3}, 61, positive)});
    }
}

TEST_CASE("gradcheck: unary ops", "[gradcheck]") {
    HostBackend backend;
    const Shape shape{2, 3, 4};
    SECTION("scale, add_scalar, neg") {
        Tensor x = random_input(backend, shape, 70);
        gradcheck("scale", [](const Inputs& in) { return ops::scale(in[0], -2.5f); }, {x});
        gradcheck("add_scalar", [](const Inputs& in) { return ops::add_scalar(in[0], 1.75f); }, {x});
        gradcheck("neg", [](const Inputs& in) { return ops::neg(in[0]); }, {x});
    }
    SECTION("exp, log, sqrt, square") {
        gradcheck("exp", [](const Inputs& in) { return ops::exp(in[0]); }, {random_input(backend, shape, 71)});
        gradcheck("log", [](const Inputs& in) { return ops::log(in[0]); },
                  {random_input(backend, shape, 72, positive)});
        gradcheck("sqrt", [](const Inputs& in) { return ops::sqrt(in[0]); },
                  {random_input(backend, shape, 73, positive)});
        gradcheck("square", [](const Inputs& in) { return ops::square(in[0]); }, {random_input(backend, shape, 74)});
    }
    SECTION("tanh, sigmoid, relu") {
        gradcheck("tanh", [](const Inputs& in) { return ops::tanh(in[0]); }, {random_input(backend, shape, 75)});
        gradcheck("sigmoid", [](const Inputs& in) { return ops::sigmoid(in[0]); }, {random_input(backend, shape, 76)});
        gradcheck("relu", [](const Inputs& in) { return ops::relu(in[0]); },
                  {random_input(backend, shape, 77, away_from_zero)});
    }
    SECTION("gelu, erf and tanh forms") {
        Tensor x = random_input(backend, shape, 78, [](float v) { return 2.0f * v; });  // reach the tails
        gradcheck("gelu erf", [](const Inputs& in) { return ops::gelu(in[0], false); }, {x});
        gradcheck("gelu tanh", [](const Inputs& in) { return ops::gelu(in[0], true); }, {x});
    }
    SECTION("non-contiguous input") {
        gradcheck("exp of a transposed view", [](const Inputs& in) { return ops::exp(ops::transpose(in[0], 0, 2)); },
                  {random_input(backend, shape, 79)});
    }
}

// ---- shape ----

TEST_CASE("gradcheck: shape ops", "[gradcheck]") {
    HostBackend backend;
    Tensor x = random_input(backend, {2, 3, 4}, 80);
    SECTION("reshape") {
        gradcheck("reshape [2,3,4] -> [6,-1]", [](const Inputs& in) { return ops::reshape(in[0], {6, -1}); }, {x});
        gradcheck("reshape of a transposed view", [](const Inputs& in) {
            return ops::reshape(ops::transpose(in[0], 0, 1), {3, 8});
        }, {x});
    }
    SECTION("transpose") {
        gradcheck("transpose(0, 2)", [](const Inputs& in) { return ops::transpose(in[0], 0, 2); }, {x});
        gradcheck("transpose(-1, -2)", [](const Inputs& in) { return ops::transpose(in[0], -1, -2); }, {x});
    }
    SECTION("slice and select") {
        gradcheck("slice dim 2 [1, 3)", [](const Inputs& in) { return ops::slice(in[0], 2, 1, 3); }, {x});
        gradcheck("slice dim 1 [-2, end)", [](const Inputs& in) { return ops::slice(in[0], 1, -2, 3); }, {x});
        gradcheck("select dim 1 index 2", [](const Inputs& in) { return ops::select(in[0], 1, 2); }, {x});
        gradcheck("select dim 0 then dim -1", [](const Inputs& in) {
            return ops::select(ops::select(in[0], 0, 1), -1, 0);
        }, {x});
    }
    SECTION("concat") {
        Tensor b = random_input(backend, {2, 1, 4}, 81), c = random_input(backend, {2, 2, 4}, 82);
        gradcheck("concat dim 1 of three", [](const Inputs& in) { return ops::concat({in[0], in[1], in[2]}, 1); },
                  {x, b, c});
        gradcheck("concat dim 0 with itself", [](const Inputs& in) { return ops::concat({in[0], in[0]}, 0); }, {x});
    }
    SECTION("split") {
        gradcheck("split middle part", [](const Inputs& in) { return ops::split(in[0], 2, {1, 2, 1})[1]; }, {x});
        gradcheck("split parts recombined in another order", [](const Inputs& in) {
            std::vector<Tensor> parts = ops::split(in[0], -1, {1, 3});
            return ops::concat({ops::exp(parts[1]), parts[0]}, -1);
        }, {x});
    }
    SECTION("contiguous") {
        gradcheck("contiguous of a transposed view", [](const Inputs& in) {
            return ops::contiguous(ops::transpose(in[0], 1, 2));
        }, {x});
        gradcheck("contiguous of a contiguous tensor", [](const Inputs& in) { return ops::contiguous(in[0]); }, {x});
    }
    SECTION("expand") {
        gradcheck("expand [3,1] -> [2,3,4]", [](const Inputs& in) { return ops::expand(in[0], {2, 3, 4}); },
                  {random_input(backend, {3, 1}, 83)});
        gradcheck("expand [4] -> [3,4] then exp", [](const Inputs& in) {
            return ops::exp(ops::expand(in[0], {3, 4}));
        }, {random_input(backend, {4}, 84)});
    }
}

// ---- reductions ----

TEST_CASE("gradcheck: reductions", "[gradcheck]") {
    HostBackend backend;
    Tensor x = random_input(backend, {2, 3, 4}, 90);
    SECTION("sum") {
        gradcheck("sum all", [](const Inputs& in) { return ops::sum(in[0]); }, {x});
        for (int64_t dim : {0, 1, 2, -1})
            for (bool keepdim : {false, true})
                gradcheck("sum dim " + std::to_string(dim) + (keepdim ? " keepdim" : ""),
                          [dim, keepdim](const Inputs& in) { return ops::sum(in[0], dim, keepdim); }, {x});
        gradcheck("sum of a transposed view", [](const Inputs& in) { return ops::sum(ops::transpose(in[0], 0, 2), 0); },
                  {x});
    }
    SECTION("mean") {
        gradcheck("mean all", [](const Inputs& in) { return ops::mean(in[0]); }, {x});
        for (int64_t dim : {0, 1, -1})
            for (bool keepdim : {false, true})
                gradcheck("mean dim " + std::to_string(dim) + (keepdim ? " keepdim" : ""),
                          [dim, keepdim](const Inputs& in) { return ops::mean(in[0], dim, keepdim); }, {x});
    }
}

// ---- normalisation, probabilities, losses ----

TEST_CASE("gradcheck: softmax and log_softmax", "[gradcheck]") {
    HostBackend backend;
    Tensor x = random_input(backend, {2, 3, 5}, 100);
    gradcheck("softmax", [](const Inputs& in) { return ops::softmax(in[0]); }, {x});
    gradcheck("log_softmax", [](const Inputs& in) { return ops::log_softmax(in[0]); }, {x});
    gradcheck("softmax of a transposed view", [](const Inputs& in) { return ops::softmax(ops::transpose(in[0], 0, 1)); },
              {x});
    gradcheck("log_softmax of a 1-D input", [](const Inputs& in) { return ops::log_softmax(in[0]); },
              {random_input(backend, {6}, 101)});
}

TEST_CASE("gradcheck: layer_norm", "[gradcheck]") {
    HostBackend backend;
    Tensor x = random_input(backend, {2, 3, 6}, 110);
    Tensor gamma = random_input(backend, {6}, 111), beta = random_input(backend, {6}, 112);
    gradcheck("layer_norm with gamma and beta",
              [](const Inputs& in) { return ops::layer_norm(in[0], in[1], in[2]); }, {x, gamma, beta});
    gradcheck("layer_norm without gamma and beta",
              [](const Inputs& in) { return ops::layer_norm(in[0], Tensor(), Tensor()); }, {x});
    gradcheck("layer_norm with gamma only",
              [](const Inputs& in) { return ops::layer_norm(in[0], in[1], Tensor()); }, {x, gamma});
    gradcheck("layer_norm of a transposed view", [](const Inputs& in) {
        return ops::layer_norm(ops::transpose(in[0], 0, 1), in[1], in[2]);
    }, {x, gamma, beta});
}

TEST_CASE("gradcheck: cross_entropy", "[gradcheck]") {
    HostBackend backend;
    Tensor logits = random_input(backend, {5, 7}, 120);
    SECTION("with ignore_index rows, i64 targets") {
        Tensor targets = Tensor::from_ints(backend, {5}, {3, -100, 0, 6, -100});
        gradcheck("cross_entropy", [targets](const Inputs& in) { return ops::cross_entropy(in[0], targets); },
                  {logits});
    }
    SECTION("custom ignore_index, i32 targets") {
        Tensor targets = Tensor::from_ints(backend, {5}, {2, 1, 2, 4, 0}, DType::i32);
        gradcheck("cross_entropy ignore 2",
                  [targets](const Inputs& in) { return ops::cross_entropy(in[0], targets, 2); }, {logits});
    }
    SECTION("every row ignored: zero loss and zero gradient") {
        Tensor targets = Tensor::from_ints(backend, {5}, {-100, -100, -100, -100, -100});
        gradcheck("cross_entropy all ignored",
                  [targets](const Inputs& in) { return ops::cross_entropy(in[0], targets); }, {logits});
    }
    SECTION("loss used inside a larger graph (gradient arrives as an offset view)") {
        // concat's backward hands each part a view into the incoming gradient; the loss sits at
        // offset 1 of it, so a backward that ignores the view offset reads the wrong element.
        Tensor targets = Tensor::from_ints(backend, {5}, {1, 4, 0, 6, 2});
        gradcheck("concat(sum(x), cross_entropy)", [targets](const Inputs& in) {
            return ops::concat({ops::reshape(ops::sum(in[1]), {1}), ops::reshape(ops::cross_entropy(in[0], targets), {1})},
                               0);
        }, {logits, random_input(backend, {3}, 121)});
    }
}

// ---- lookups, masks, dropout ----

TEST_CASE("gradcheck: embedding", "[gradcheck]") {
    HostBackend backend;
    Tensor table = random_input(backend, {6, 4}, 130);
    SECTION("repeated ids, 2-D ids") {
        Tensor ids = Tensor::from_ints(backend, {2, 3}, {1, 4, 1, 5, 1, 4});  // 1 three times, rows 0, 2, 3 unused
        gradcheck("embedding", [ids](const Inputs& in) { return ops::embedding(ids, in[0]); }, {table});
    }
    SECTION("i32 ids") {
        Tensor ids = Tensor::from_ints(backend, {4}, {0, 5, 5, 2}, DType::i32);
        gradcheck("embedding i32", [ids](const Inputs& in) { return ops::embedding(ids, in[0]); }, {table});
    }
}

TEST_CASE("gradcheck: masked_fill", "[gradcheck]") {
    HostBackend backend;
    Tensor x = random_input(backend, {2, 3, 4}, 140);
    SECTION("mask of the input's shape") {
        std::vector<uint8_t> bits(24);
        for (size_t i = 0; i < bits.size(); ++i) bits[i] = (i * 7) % 3 == 0;
        Tensor mask = u8_tensor(backend, {2, 3, 4}, bits);
        gradcheck("masked_fill full mask", [mask](const Inputs& in) { return ops::masked_fill(in[0], mask, -5.0f); },
                  {x});
    }
    SECTION("broadcast causal mask [3,4]") {
        Tensor mask = u8_tensor(backend, {3, 4}, {0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1});
        gradcheck("masked_fill causal", [mask](const Inputs& in) {
            return ops::softmax(ops::masked_fill(in[0], mask, -1e9f));
        }, {x});
    }
}

TEST_CASE("gradcheck: dropout", "[gradcheck]") {
    HostBackend backend;
    Tensor x = random_input(backend, {4, 8}, 150);
    const float p = 0.3f;
    // Each evaluation re-creates the generator at the same seed and offset, so every forward of
    // the finite differences draws the same mask and dropout is a fixed linear map.
    auto dropped = [p](const Inputs& in) {
        Generator gen(77, kStreamDropout);
        gen.set_offset(16);
        return ops::dropout(in[0], p, true, gen);
    };
    SECTION("the mask is non-trivial and scales kept elements by 1/(1-p)") {
        std::vector<float> in = x.to_floats(), out = dropped({x}).to_floats();
        int kept = 0, zeroed = 0;
        for (size_t i = 0; i < in.size(); ++i) {
            if (out[i] == 0.0f) {
                ++zeroed;
            } else {
                ++kept;
                CHECK(out[i] == Approx(in[i] / (1.0f - p)).epsilon(1e-6));
            }
        }
        CHECK(kept > 0);
        CHECK(zeroed > 0);
    }
    SECTION("gradient") { gradcheck("dropout p=0.3", dropped, {x}); }
    SECTION("identity when not training or p == 0") {
        gradcheck("dropout eval", [](const Inputs& in) {
            Generator gen(77, kStreamDropout);
            return ops::exp(ops::dropout(in[0], 0.5f, false, gen));
        }, {x});
        gradcheck("dropout p=0", [](const Inputs& in) {
            Generator gen(77, kStreamDropout);
            return ops::exp(ops::dropout(in[0], 0.0f, true, gen));
        }, {x});
    }
}

// ---- a composite ----

TEST_CASE("gradcheck: 2-layer MLP with layer_norm and cross entropy", "[gradcheck]") {
    HostBackend backend;
    const int64_t N = 5, C_in = 6, C_hidden = 8, V = 4;
    Tensor x = random_input(backend, {N, C_in}, 160);
    Tensor w1 = random_input(backend, {C_hidden, C_in}, 161, [](float v) { return 0.4f * v; });
    Tensor b1 = random_input(backend, {C_hidden}, 162);
    Tensor gamma = random_input(backend, {C_hidden}, 163, [](float v) { return 1.0f + 0.3f * v; });
    Tensor beta = random_input(backend, {C_hidden}, 164);
    Tensor w2 = random_input(backend, {V, C_hidden}, 165, [](float v) { return 0.4f * v; });
    Tensor b2 = random_input(backend, {V}, 166);
    Tensor targets = Tensor::from_ints(backend, {N}, {0, 3, -100, 1, 2});
    auto mlp = [targets](const Inputs& in) {
        Tensor h = ops::gelu(ops::linear(in[0], in[1], in[2]));  // [N, C_hidden]
        h = ops::layer_norm(h, in[3], in[4]);
        Tensor logits = ops::linear(h, in[5], in[6]);            // [N, V]
        return ops::cross_entropy(logits, targets);
    };
    gradcheck("mlp", mlp, {x, w1, b1, gamma, beta, w2, b2});
}

// ---- offsets: views that start inside their storage ----

TEST_CASE("gradcheck: inputs and gradients that are offset views", "[gradcheck]") {
    HostBackend backend;
    Tensor x = random_input(backend, {4, 5}, 170), w = random_input(backend, {3, 5}, 171);
    Tensor table = random_input(backend, {6, 5}, 172);
    Tensor targets = Tensor::from_ints(backend, {2}, {4, 1});
    Tensor ids = Tensor::from_ints(backend, {3}, {2, 0, 2});
    Tensor mask = u8_tensor(backend, {5}, {0, 1, 0, 0, 1});

    SECTION("inputs sliced from the middle of a tensor (contiguous, non-zero offset)") {
        // slice along dim 0 keeps the view contiguous, so ops take it without a copy; each op must
        // honour the view's offset in its forward and its backward.
        auto rows = [](const Tensor& t) { return ops::slice(t, 0, 1, 3); };  // [2, 5]
        gradcheck("softmax", [rows](const Inputs& in) { return ops::softmax(rows(in[0])); }, {x});
        gradcheck("layer_norm", [rows](const Inputs& in) {
            return ops::layer_norm(rows(in[0]), ops::select(in[1], 0, 2), ops::select(in[1], 0, 1));
        }, {x, w});
        gradcheck("cross_entropy", [rows, targets](const Inputs& in) {
            return ops::cross_entropy(rows(in[0]), targets);
        }, {x});
        gradcheck("linear", [rows](const Inputs& in) { return ops::linear(rows(in[0]), rows(in[1])); }, {x, w});
        gradcheck("matmul", [rows](const Inputs& in) {
            return ops::matmul(rows(in[0]), ops::transpose(rows(in[1]), 0, 1));
        }, {x, w});
        gradcheck("embedding of a table slice", [ids](const Inputs& in) {
            return ops::embedding(ids, ops::slice(in[0], 0, 2, 6));
        }, {table});
        gradcheck("exp, sum(dim)", [rows](const Inputs& in) { return ops::sum(ops::exp(rows(in[0])), 1); }, {x});
    }

    SECTION("every op receiving its output gradient as an offset view") {
        // concat's backward hands each part a view into its own incoming gradient at the part's
        // offset; flattening every op's output and concatenating them after a leading element
        // makes every op below see a non-zero dout offset.
        auto all_ops = [targets, ids, mask](const Inputs& in) {
            const Tensor& a = in[0];  // [4, 5]
            const Tensor& b = in[1];  // [3, 5]
            const Tensor& t = in[2];  // [6, 5]
            Generator gen(5, kStreamDropout);
            std::vector<Tensor> outputs = {
                ops::sum(ops::select(a, 0, 0), 0, true),
                ops::matmul(a, ops::transpose(b, 0, 1)),
                ops::linear(a, b, ops::select(b, 1, 0)),
                ops::mul(ops::exp(a), ops::expand(ops::select(b, 0, 0), {4, 5})),
                ops::softmax(a),
                ops::log_softmax(b),
                ops::layer_norm(a, ops::select(b, 0, 1), ops::select(b, 0, 2)),
                ops::cross_entropy(ops::slice(a, 0, 0, 2), targets),
                ops::embedding(ids, t),
                ops::masked_fill(a, mask, 0.5f),
                ops::dropout(b, 0.25f, true, gen),
                ops::sum(t),
                ops::mean(b, 0),
                ops::transpose(a, 0, 1),
                ops::slice(t, 1, 1, 4),
                ops::gelu(b, true),
            };
            std::vector<Tensor> flat;
            for (const Tensor& o : outputs) flat.push_back(ops::reshape(o, {-1}));
            return ops::concat(flat, 0);
        };
        gradcheck("offset gradients", all_ops, {x, w, table});
    }
}
