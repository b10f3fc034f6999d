// [experiment] precision = bf16: matmuls round their f32 operands to bf16 and accumulate in f32,
// on the reference and the oneDNN backends alike; everything else stays f32. A GPT trained for
// 300 steps in bf16 ends within 0.03 of the fp32 validation loss.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "attention_compare.h"

#include "lab/attention.h"
#include "lab/autograd.h"
#include "lab/config.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "lab/task.h"
#include "lab/trainer.h"
#include "matmul_input.h"  // framework/src/nn: the framework's own layers use it
#include "test_support.h"

namespace {

namespace fs = std::filesystem;

std::shared_ptr<lab::Backend> make(lab::Registry& registry, const std::string& name) {
    return registry.factory<lab::BackendFactory>("backend", name)(lab::plugin_options(registry, "backend", name, {}));
}

float round_bf16(float x) { return lab::bf16_to_f32(lab::f32_to_bf16(x)); }

// The onednn backend under precision = bf16.
std::shared_ptr<lab::Backend> onednn_in_bf16(lab::Registry& registry) {
    auto backend = make(registry, "onednn");
    backend->set_matmul_inputs(lab::DType::bf16);
    return backend;
}

// AMX-BF16 and AVX512-BF16 (CPUID leaf 7): what the host backends' bf16 attention kernel needs.
bool cpu_has_amx_bf16() {
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool amx = (d & (1u << 24)) && (d & (1u << 22));
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return amx && (a & (1u << 5));
#else
    return false;
#endif
}

// The largest |got - want| and the largest |want| over the finite values of one output (a
// query that sees no key has lse = -inf, compared on its own).
std::pair<double, double> max_error(const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    double error = 0.0, scale = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(want[i])) continue;
        error = std::max(error, std::abs(static_cast<double>(got[i]) - want[i]));
        scale = std::max(scale, std::abs(static_cast<double>(want[i])));
    }
    return {error, scale};
}

}  // namespace

TEST_CASE("precision bf16: matmul multiplies the bf16 roundings of f32 operands, in f32", "[mixed][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    // Values with more mantissa than bf16's 8 bits: 1 + 2^-9 rounds to 1, 3 + 2^-6 to 3, ...
    const int64_t M = 3, K = 300, N = 2;
    std::vector<float> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N));
    for (size_t i = 0; i < a.size(); ++i) a[i] = 1.0f + static_cast<float>(i % 7) * 0.3f + 1.0f / 512.0f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = 0.5f - static_cast<float>(i % 5) * 0.11f + 1.0f / 1024.0f;
    std::vector<double> want(static_cast<size_t>(M * N), 0.0), exact(want.size(), 0.0);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t k = 0; k < K; ++k) {
                const float x = a[static_cast<size_t>(m * K + k)], y = b[static_cast<size_t>(k * N + n)];
                want[static_cast<size_t>(m * N + n)] += static_cast<double>(round_bf16(x)) * round_bf16(y);
                exact[static_cast<size_t>(m * N + n)] += static_cast<double>(x) * y;
            }
    for (const char* name : {"reference", "onednn"}) {
        INFO("backend " << name);
        auto backend = make(registry, name);
        CHECK(backend->matmul_inputs() == lab::DType::f32);
        lab::Tensor ta = lab::Tensor::from_floats(*backend, {M, K}, a);
        // b as a transposed view, the layout a linear layer's weight has.
        lab::Tensor tb_storage = lab::Tensor::empty(*backend, {N, K});
        lab::Tensor tb = tb_storage.view({K, N}, {1, K}, 0);
        tb.copy_(lab::Tensor::from_floats(*backend, {K, N}, b));
        lab::Tensor c = lab::Tensor::zeros(*backend, {M, N});
        backend->set_matmul_inputs(lab::DType::bf16);
        backend->matmul(c, ta, tb, nullptr, 1.0f, false);
        std::vector<float> got = c.to_floats();
        for (size_t i = 0; i < got.size(); ++i) {
            CHECK(std::abs(got[i] - want[i]) < 1e-5 * std::abs(want[i]));
            CHECK(std::abs(got[i] - exact[i]) > 1e-4 * std::abs(exact[i]));  // the rounding happened
        }
        backend->set_matmul_inputs(lab::DType::f32);
        backend->matmul(c, ta, tb, nullptr, 1.0f, false);
        got = c.to_floats();
        for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - exact[i]) < 1e-5 * std::abs(exact[i]));
        CHECK_THROWS_AS(backend->set_matmul_inputs(lab::DType::f16), lab::ConfigError);
    }
}

// MultiHeadAttention rounds its input once for the q, k and v projections (ops::matmul_input) and
// hands the bf16 copy to the three linears. That must change nothing but the work: outputs and
// gradients equal, bit for bit, those of three linears that each round the f32 input themselves.
TEST_CASE("precision bf16: the onednn backend's linear-layer products on AMX match the reference's",
          "[mixed][plugins]") {
    // 2-D bf16 products whose sizes are multiples of 32 and large run on AMX
    // (HostBackend::multiply_on_amx) where the CPU has it, oneDNN's primitive elsewhere; both must
    // equal the reference backend's bf16 products (the same roundings, f32 sums in another order).
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    auto onednn = onednn_in_bf16(registry);
    auto reference = make(registry, "reference");
    reference->set_matmul_inputs(lab::DType::bf16);
    struct Case {
        int64_t M, K, N;
        bool transposed_b, bias, accumulate, transposed_a = false;
    };
    // 256^3 is the smallest size that takes AMX; 96 x 64 x 40 stays on oneDNN (N not a multiple of 32).
    // A transposed a is the weight gradient dy^T x, K the tokens: K = 2080 and 1056 end in a part
    // of the kernel's 128-token chunk; M > N writes c transposed; N = 1152 over 64 rows is cut into
    // four column slabs.
    const std::vector<Case> cases = {{256, 256, 256, false, false, false},
                                     {256, 256, 256, true, true, false},
                                     {512, 96, 384, true, false, true},
                                     {320, 1152, 64, false, true, true},
                                     {96, 64, 40, false, true, false},
                                     {96, 2080, 640, false, false, false, true},
                                     {512, 1056, 160, false, false, true, true},
                                     {64, 256, 1152, false, false, false, true}};
    for (const Case& c : cases) {
        INFO("M " << c.M << " K " << c.K << " N " << c.N << (c.transposed_a ? " a transposed" : "")
                  << (c.transposed_b ? " b transposed" : "") << (c.bias ? " bias" : "")
                  << (c.accumulate ? " accumulate" : ""));
        auto values = [](int64_t n, uint64_t seed) {
            std::vector<float> v(static_cast<size_t>(n));
            for (size_t i = 0; i < v.size(); ++i)
                v[i] = std::sin(0.37f * static_cast<float>(i) + static_cast<float>(seed)) * (1.0f + 0.001f * (i % 7));
            return v;
        };
        const std::vector<float> a = values(c.M * c.K, 1), b = values(c.K * c.N, 2), bias = values(c.N, 3),
                                 c0 = values(c.M * c.N, 4);
        double scale = 0;  // the largest sum of |a_ik b_kj| bounds the rounding of either order of sums
        for (float v : a) scale = std::max(scale, std::abs(static_cast<double>(v)));
        scale *= static_cast<double>(c.K) * 1.01;
        auto run = [&](lab::Backend& be) {
            lab::Tensor ta =
                c.transposed_a
                    ? lab::ops::transpose(lab::Tensor::from_floats(be, {c.K, c.M}, a).to(lab::DType::bf16), 0, 1)
                    : lab::Tensor::from_floats(be, {c.M, c.K}, a).to(lab::DType::bf16);
            lab::Tensor tb = c.transposed_b
                                 ? lab::ops::transpose(lab::Tensor::from_floats(be, {c.N, c.K}, b).to(lab::DType::bf16), 0, 1)
                                 : lab::Tensor::from_floats(be, {c.K, c.N}, b).to(lab::DType::bf16);
            lab::Tensor tbias = lab::Tensor::from_floats(be, {c.N}, bias);
            lab::Tensor out = lab::Tensor::from_floats(be, {c.M, c.N}, c0);
            be.matmul(out, ta, tb, c.bias ? &tbias : nullptr, 1.0f, c.accumulate);
            return out.to_floats();
        };
        const std::vector<float> got = run(*onednn), want = run(*reference);
        double worst = 0;
        size_t changed = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
            changed += got[i] != c0[i];
        }
        INFO("largest difference " << worst << " against a scale of " << scale);
        CHECK(worst <= 1e-5 * scale);
        CHECK(changed > got.size() * 9 / 10);
    }
}

TEST_CASE("precision bf16: linears fed one shared rounding of x match separately rounded linears bit for bit",
          "[mixed][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    const int64_t B = 2, T = 5, C = 48;
    const std::vector<int64_t> rows = {16, 8, 8};  // q, k and v rows of a packed weight
    auto values = [](size_t n, float base, float step) {
        std::vector<float> v(n);
        // More mantissa than bf16 keeps, so that rounding changes most values.
        for (size_t i = 0; i < n; ++i)
            v[i] = base + static_cast<float>(static_cast<int>(i % 13) - 6) * step + 1.0f / 1024.0f;
        return v;
    };
    const std::vector<float> x_values = values(static_cast<size_t>(B * T * C), 0.1f, 0.173f);
    for (const char* name : {"reference", "onednn"}) {
        INFO("backend " << name);
        auto backend = make(registry, name);
        backend->set_matmul_inputs(lab::DType::bf16);
        struct Result {
            std::vector<std::vector<float>> outputs, weight_grads;
            std::vector<float> x_grad, bias_grad;
        };
        // sum_i sum(linear_i(x) * probe_i): non-uniform upstream gradients for each output.
        auto run = [&](bool shared) {
            lab::Tensor x = lab::Tensor::from_floats(*backend, {B, T, C}, x_values);
            x.set_requires_grad(true);
            const lab::Tensor x_in = shared ? lab::ops::matmul_input(x) : x;
            CHECK(x_in.dtype() == (shared ? lab::DType::bf16 : lab::DType::f32));
            std::vector<lab::Tensor> weights;
            lab::Tensor bias =
                lab::Tensor::from_floats(*backend, {rows[0]}, values(static_cast<size_t>(rows[0]), 0.0f, 0.01f));
            bias.set_requires_grad(true);
            lab::Tensor loss;
            Result result;
            for (size_t i = 0; i < rows.size(); ++i) {
                const size_t n = static_cast<size_t>(rows[i] * C);
                const float base = 0.02f * static_cast<float>(i);
                weights.push_back(lab::Tensor::from_floats(*backend, {rows[i], C}, values(n, base, 0.0131f)));
                weights.back().set_requires_grad(true);
                lab::Tensor y = lab::ops::linear(x_in, weights.back(), i == 0 ? bias : lab::Tensor());
                result.outputs.push_back(y.to_floats());
                lab::Tensor probe =
                    lab::Tensor::from_floats(*backend, y.shape(), values(static_cast<size_t>(y.numel()), 0.5f, 0.07f));
                lab::Tensor term = lab::ops::sum(lab::ops::mul(y, probe));
                loss = loss.defined() ? lab::ops::add(loss, term) : term;
            }
            lab::backward(loss);
            CHECK(x.grad().dtype() == lab::DType::f32);
            result.x_grad = x.grad().to_floats();
            result.bias_grad = bias.grad().to_floats();
            for (const lab::Tensor& w : weights) result.weight_grads.push_back(w.grad().to_floats());
            return result;
        };
        const Result separate = run(false), shared = run(true);
        for (size_t i = 0; i < rows.size(); ++i) {
            INFO("linear " << i);
            REQUIRE(separate.outputs[i].size() == static_cast<size_t>(B * T * rows[i]));
            CHECK(shared.outputs[i] == separate.outputs[i]);
            CHECK(shared.weight_grads[i] == separate.weight_grads[i]);
        }
        CHECK(shared.x_grad == separate.x_grad);
        CHECK(shared.bias_grad == separate.bias_grad);

        // The copy holds the roundings, also made contiguous from a transposed view (the merge of
        // attention heads), and they differ from x: the rounding took effect.
        lab::Tensor x = lab::Tensor::from_floats(*backend, {B, T, C}, x_values);
        const lab::Tensor rounded_t = lab::ops::matmul_input(lab::ops::transpose(x, 0, 1));  // [T, B, C]
        REQUIRE(rounded_t.dtype() == lab::DType::bf16);
        CHECK(rounded_t.is_contiguous());
        const std::vector<float> got = rounded_t.to_floats();
        size_t changed = 0;
        for (int64_t t = 0; t < T; ++t)
            for (int64_t b = 0; b < B; ++b)
                for (int64_t c = 0; c < C; ++c) {
                    const float v = x_values[static_cast<size_t>((b * T + t) * C + c)];
                    CHECK(got[static_cast<size_t>((t * B + b) * C + c)] == round_bf16(v));
                    changed += round_bf16(v) != v;
                }
        CHECK(changed > x_values.size() / 2);

        // Without mixed precision it is x itself.
        backend->set_matmul_inputs(lab::DType::f32);
        CHECK(lab::ops::matmul_input(x).id() == x.id());
    }
}

TEST_CASE("precision bf16: gelu_matmul_input stores the GELU in bf16 as the next linear rounds it, same gradients",
          "[mixed][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    const int64_t N = 7, H = 40, C = 12;  // x [N, H] -> GELU -> linear to C
    std::vector<float> x_values(static_cast<size_t>(N * H)), w_values(static_cast<size_t>(C * H));
    for (size_t i = 0; i < x_values.size(); ++i)
        x_values[i] = -4.0f + 8.0f * static_cast<float>((i * 37) % x_values.size()) / x_values.size() + 1.0f / 1024;
    for (size_t i = 0; i < w_values.size(); ++i) w_values[i] = 0.05f * static_cast<float>(int(i % 11) - 5) + 1.0f / 512;
    for (const char* name : {"reference", "onednn"}) {
        INFO("backend " << name);
        auto backend = make(registry, name);
        backend->set_matmul_inputs(lab::DType::bf16);
        struct Result {
            std::vector<float> y, x_grad, w_grad;
        };
        auto run = [&](bool fused) {
            lab::Tensor x = lab::Tensor::from_floats(*backend, {N, H}, x_values);
            lab::Tensor w = lab::Tensor::from_floats(*backend, {C, H}, w_values);
            x.set_requires_grad(true);
            w.set_requires_grad(true);
            const lab::Tensor h = fused ? lab::ops::gelu_matmul_input(x) : lab::ops::gelu(x, false);
            CHECK(h.dtype() == (fused ? lab::DType::bf16 : lab::DType::f32));
            const lab::Tensor y = lab::ops::linear(h, w);
            std::vector<float> probe(static_cast<size_t>(N * C));
            for (size_t i = 0; i < probe.size(); ++i) probe[i] = 0.3f + 0.01f * static_cast<float>(i % 17);
            lab::backward(lab::ops::sum(lab::ops::mul(y, lab::Tensor::from_floats(*backend, {N, C}, probe))));
            CHECK(x.grad().dtype() == lab::DType::f32);
            return Result{y.to_floats(), x.grad().to_floats(), w.grad().to_floats()};
        };
        const Result fused = run(true), composite = run(false);
        // The linear multiplies the same bf16 values either way: rounded as the GELU is written, or
        // from its f32 output. The reference backend's GELU is the kernel unary_bf16 rounds, so
        // there every value matches bit for bit; oneDNN's f32 GELU is its own (eltwise_gelu_erf),
        // whose results may round to the neighbouring bf16 value.
        if (std::string(name) == "reference") {
            CHECK(fused.y == composite.y);
            CHECK(fused.w_grad == composite.w_grad);
        } else {
            for (size_t i = 0; i < fused.y.size(); ++i) CHECK(fused.y[i] == Approx(composite.y[i]).margin(2e-2));
        }
        // The backward reads the f32 x, as gelu's does: equal input gradients.
        CHECK(fused.x_grad == composite.x_grad);

        // Without mixed precision it is ops::gelu.
        backend->set_matmul_inputs(lab::DType::f32);
        lab::Tensor x = lab::Tensor::from_floats(*backend, {N, H}, x_values);
        const lab::Tensor h = lab::ops::gelu_matmul_input(x);
        CHECK(h.dtype() == lab::DType::f32);
        CHECK(h.to_floats() == lab::ops::gelu(x, false).to_floats());
    }
}

TEST_CASE("precision bf16: linear_gelu_matmul_input writes the GELU's gradient in bf16, the rounding the linear made",
          "[mixed][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    // x [N, C] -> linear to H -> GELU -> linear to C; H and N large enough for the AMX products.
    const int64_t N = 96, C = 64, H = 160;
    auto values = [](int64_t n, float scale, int seed) {
        std::vector<float> v(static_cast<size_t>(n));
        for (size_t i = 0; i < v.size(); ++i)
            v[i] = scale * std::sin(0.61f * static_cast<float>(i) + static_cast<float>(seed)) + 1.0f / 1024;
        return v;
    };
    const std::vector<float> x_values = values(N * C, 1.5f, 1), w1_values = values(H * C, 0.2f, 2),
                             b1_values = values(H, 0.5f, 3), w2_values = values(C * H, 0.1f, 4),
                             probe = values(N * C, 0.7f, 5);
    for (const char* name : {"reference", "onednn"})
        for (bool bias : {false, true}) {
            INFO("backend " << name << (bias ? ", with a bias" : ", no bias"));
            auto backend = make(registry, name);
            backend->set_matmul_inputs(lab::DType::bf16);
            struct Result {
                std::vector<float> y, x_grad, w1_grad, b1_grad;
            };
            auto run = [&](bool fused) {
                lab::Tensor x = lab::Tensor::from_floats(*backend, {N, C}, x_values);
                lab::Tensor w1 = lab::Tensor::from_floats(*backend, {H, C}, w1_values);
                lab::Tensor b1 = bias ? lab::Tensor::from_floats(*backend, {H}, b1_values) : lab::Tensor();
                lab::Tensor w2 = lab::Tensor::from_floats(*backend, {C, H}, w2_values);
                for (lab::Tensor* t : {&x, &w1, &b1})
                    if (t->defined()) t->set_requires_grad(true);
                const lab::Tensor h = fused ? lab::ops::linear_gelu_matmul_input(x, w1, b1)
                                            : lab::ops::gelu_matmul_input(lab::ops::linear(x, w1, b1));
                CHECK(h.dtype() == lab::DType::bf16);
                const lab::Tensor y = lab::ops::linear(h, w2);
                lab::backward(lab::ops::sum(lab::ops::mul(y, lab::Tensor::from_floats(*backend, {N, C}, probe))));
                CHECK(x.grad().dtype() == lab::DType::f32);
                return Result{y.to_floats(), x.grad().to_floats(), w1.grad().to_floats(),
                              bias ? b1.grad().to_floats() : std::vector<float>{}};
            };
            const Result fused = run(true), composite = run(false);
            // The same forward values; the linear's products read the GELU's gradient rounded
            // once either way. With a bias the fused op takes the two ops' f32 path (the bias
            // gradient sums f32 values): bit for bit. Without one, the reference backend's f32
            // GELU derivative is the kernel that unary_backward_bf16 rounds: bit for bit too; the
            // onednn backend's f32 derivative is oneDNN's own, whose values may round to a
            // neighbouring bf16 value, so its gradients agree to bf16's precision.
            CHECK(fused.y == composite.y);
            if (std::string(name) == "reference" || bias) {
                CHECK(fused.x_grad == composite.x_grad);
                CHECK(fused.w1_grad == composite.w1_grad);
                CHECK(fused.b1_grad == composite.b1_grad);
            } else {
                for (auto [got, want] : {std::pair{&fused.x_grad, &composite.x_grad},
                                         std::pair{&fused.w1_grad, &composite.w1_grad}}) {
                    const auto [error, scale] = max_error(*got, *want);
                    INFO("largest difference " << error << " against " << scale);
                    CHECK(scale > 1e-3);
                    CHECK(error <= 4e-3 * scale);
                }
            }
        }
    // Without mixed precision it is gelu(linear(...)), f32.
    lab::HostBackend host;
    const lab::Tensor x = lab::Tensor::from_floats(host, {N, C}, x_values);
    const lab::Tensor w1 = lab::Tensor::from_floats(host, {H, C}, w1_values);
    const lab::Tensor h = lab::ops::linear_gelu_matmul_input(x, w1);
    CHECK(h.dtype() == lab::DType::f32);
    CHECK(h.to_floats() == lab::ops::gelu(lab::ops::linear(x, w1), false).to_floats());
}

TEST_CASE("precision bf16: layer_norm_matmul_input is layer_norm rounded as written, with layer_norm's gradients",
          "[mixed][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    const int64_t N = 37, C = 96;
    std::vector<float> x_values(static_cast<size_t>(N * C)), g_values(static_cast<size_t>(C)),
        b_values(static_cast<size_t>(C)), probe(x_values.size());
    for (size_t i = 0; i < x_values.size(); ++i) {
        x_values[i] = 3.0f + 2.0f * std::sin(0.37f * static_cast<float>(i));
        probe[i] = 0.5f * std::cos(0.11f * static_cast<float>(i));
    }
    for (size_t i = 0; i < g_values.size(); ++i) {
        g_values[i] = 1.0f + 0.3f * std::sin(static_cast<float>(i));
        b_values[i] = 0.2f * std::cos(static_cast<float>(i));
    }
    for (const char* name : {"reference", "onednn"}) {
        INFO("backend " << name);
        auto backend = make(registry, name);
        backend->set_matmul_inputs(lab::DType::bf16);
        struct Result {
            std::vector<float> y, x_grad, g_grad, b_grad;
        };
        auto run = [&](bool matmul_input) {
            lab::Tensor x = lab::Tensor::from_floats(*backend, {N, C}, x_values);
            lab::Tensor g = lab::Tensor::from_floats(*backend, {C}, g_values);
            lab::Tensor b = lab::Tensor::from_floats(*backend, {C}, b_values);
            for (lab::Tensor* t : {&x, &g, &b}) t->set_requires_grad(true);
            lab::Tensor y = matmul_input ? lab::ops::layer_norm_matmul_input(x, g, b)
                                         : lab::ops::matmul_input(lab::ops::layer_norm(x, g, b));
            CHECK(y.dtype() == lab::DType::bf16);
            // The gradient reaching it is f32, as a linear's input gradient is.
            const lab::Tensor w = lab::Tensor::from_floats(*backend, {C, C}, std::vector<float>(C * C, 0.01f));
            const lab::Tensor weights = lab::Tensor::from_floats(*backend, {N, C}, probe);
            lab::backward(lab::ops::sum(lab::ops::mul(lab::ops::linear(y, w), weights)));
            return Result{y.to_floats(), x.grad().to_floats(), g.grad().to_floats(), b.grad().to_floats()};
        };
        const Result direct = run(true), rounded = run(false);
        // The host computes both from one kernel's statistics: bit for bit. oneDNN's f32 layer
        // norm is its own, whose values may round to a neighbouring bf16 value.
        if (std::string(name) == "reference") {
            CHECK(direct.y == rounded.y);
        } else {
            for (size_t i = 0; i < direct.y.size(); ++i) CHECK(direct.y[i] == Approx(rounded.y[i]).epsilon(8e-3));
        }
        // The backward reads x, the statistics and the f32 gradient, never y.
        if (std::string(name) == "reference") {
            CHECK(direct.x_grad == rounded.x_grad);
            CHECK(direct.g_grad == rounded.g_grad);
            CHECK(direct.b_grad == rounded.b_grad);
        } else {
            for (size_t i = 0; i < direct.x_grad.size(); ++i)
                CHECK(direct.x_grad[i] == Approx(rounded.x_grad[i]).epsilon(1e-4).margin(1e-6));
        }
    }
    // Without mixed precision it is layer_norm.
    lab::HostBackend host;
    const lab::Tensor x = lab::Tensor::from_floats(host, {N, C}, x_values);
    const lab::Tensor y = lab::ops::layer_norm_matmul_input(x, lab::Tensor(), lab::Tensor());
    CHECK(y.dtype() == lab::DType::f32);
    CHECK(y.to_floats() == lab::ops::layer_norm(x, lab::Tensor(), lab::Tensor()).to_floats());
}

TEST_CASE("linear_residual and MultiHeadAttention::forward_residual equal the separate add, in both precisions",
          "[mixed][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    const int64_t B = 2, T = 64, C = 128;  // 128 tokens: the bf16 products take AMX where the CPU has it
    auto values = [](int64_t n, float scale, int seed) {
        std::vector<float> v(static_cast<size_t>(n));
        for (size_t i = 0; i < v.size(); ++i)
            v[i] = scale * std::sin(0.37f * static_cast<float>(i) + static_cast<float>(seed));
        return v;
    };
    for (const char* name : {"reference", "onednn"})
        for (lab::DType inputs : {lab::DType::f32, lab::DType::bf16}) {
            INFO("backend " << name << ", matmul inputs " << lab::dtype_name(inputs));
            auto backend = make(registry, name);
            backend->set_matmul_inputs(inputs);
            struct Result {
                std::vector<float> y, x_grad, w_grad, b_grad, r_grad;
            };
            auto run = [&](bool fused) {
                lab::Tensor x = lab::Tensor::from_floats(*backend, {B, T, C}, values(B * T * C, 1.0f, 1));
                lab::Tensor w = lab::Tensor::from_floats(*backend, {C, C}, values(C * C, 0.1f, 2));
                lab::Tensor b = lab::Tensor::from_floats(*backend, {C}, values(C, 0.5f, 3));
                lab::Tensor r = lab::Tensor::from_floats(*backend, {B, T, C}, values(B * T * C, 2.0f, 4));
                for (lab::Tensor* t : {&x, &w, &b, &r}) t->set_requires_grad(true);
                const lab::Tensor y =
                    fused ? lab::ops::linear_residual(x, w, b, r) : lab::ops::add(r, lab::ops::linear(x, w, b));
                const lab::Tensor probe = lab::Tensor::from_floats(*backend, {B, T, C}, values(B * T * C, 0.3f, 5));
                lab::backward(lab::ops::sum(lab::ops::mul(y, probe)));
                return Result{y.to_floats(), x.grad().to_floats(), w.grad().to_floats(), b.grad().to_floats(),
                              r.grad().to_floats()};
            };
            const Result fused = run(true), separate = run(false);
            // The sum r + (x W^T + b) in another order: equal to f32 rounding.
            for (size_t i = 0; i < fused.y.size(); ++i) CHECK(fused.y[i] == Approx(separate.y[i]).margin(1e-5));
            // The gradients do not depend on the order of the forward's sum.
            CHECK(fused.x_grad == separate.x_grad);
            CHECK(fused.w_grad == separate.w_grad);
            CHECK(fused.b_grad == separate.b_grad);
            CHECK(fused.r_grad == separate.r_grad);

            // The attention block of a pre-LN GPT: residual + attention(x), fused or added.
            lab::BuildContext ctx;
            ctx.backend = backend.get();
            ctx.registry = &registry;
            ctx.init_rng = lab::Generator(7, lab::kStreamInit);
            ctx.dropout_rng = lab::Generator(7, lab::kStreamDropout);
            lab::AttentionShape shape;
            shape.hidden = C;
            shape.heads = 4;
            shape.bias = true;
            const lab::Options opts = lab::plugin_options(registry, "attention", "softmax", {}, "test");
            auto attention = std::dynamic_pointer_cast<lab::MultiHeadAttention>(
                registry.factory<lab::AttentionFactory>("attention", "softmax")(opts, shape, ctx));
            REQUIRE(attention);
            const lab::Tensor x = lab::Tensor::from_floats(*backend, {B, T, C}, values(B * T * C, 1.0f, 6));
            const lab::Tensor r = lab::Tensor::from_floats(*backend, {B, T, C}, values(B * T * C, 2.0f, 7));
            const lab::AttentionContext actx{true, lab::Tensor(), nullptr};
            const std::vector<float> joined = attention->forward_residual(x, actx, r).to_floats();
            const std::vector<float> added = lab::ops::add(r, attention->forward(x, actx)).to_floats();
            for (size_t i = 0; i < joined.size(); ++i) CHECK(joined[i] == Approx(added[i]).margin(1e-5));
        }
    // With dropout in effect the residual is added after it: the same mask as the three ops draw
    // from a generator in the same state; without, it is linear_residual.
    lab::HostBackend host;
    {
        const lab::Tensor x = lab::Tensor::from_floats(host, {B, T, C}, values(B * T * C, 1.0f, 8));
        const lab::Tensor w = lab::Tensor::from_floats(host, {C, C}, values(C * C, 0.1f, 9));
        const lab::Tensor r = lab::Tensor::from_floats(host, {B, T, C}, values(B * T * C, 2.0f, 10));
        lab::Generator g1(11, lab::kStreamDropout), g2(11, lab::kStreamDropout);
        const std::vector<float> dropped =
            lab::ops::linear_dropout_residual(x, w, lab::Tensor(), 0.3f, true, g1, r).to_floats();
        const std::vector<float> three =
            lab::ops::add(r, lab::ops::dropout(lab::ops::linear(x, w), 0.3f, true, g2)).to_floats();
        CHECK(dropped == three);
        CHECK(dropped != lab::ops::add(r, lab::ops::linear(x, w)).to_floats());
        lab::Generator g3(11, lab::kStreamDropout);
        CHECK(lab::ops::linear_dropout_residual(x, w, lab::Tensor(), 0.3f, false, g3, r).to_floats() ==
              lab::ops::linear_residual(x, w, lab::Tensor(), r).to_floats());
    }
    // A residual of another shape than the output is refused, naming both.
    const lab::Tensor x = lab::Tensor::from_floats(host, {4, 8}, std::vector<float>(32, 0.5f));
    const lab::Tensor w = lab::Tensor::from_floats(host, {6, 8}, std::vector<float>(48, 0.1f));
    const lab::Tensor wrong = lab::Tensor::from_floats(host, {4, 8}, std::vector<float>(32, 1.0f));
    REQUIRE_THROWS_AS(lab::ops::linear_residual(x, w, lab::Tensor(), wrong), lab::ShapeError);
    REQUIRE_THROWS_WITH(lab::ops::linear_residual(x, w, lab::Tensor(), wrong),
                        Catch::Contains("linear_residual: residual [4, 8]") && Catch::Contains("output [4, 6]"));
}

TEST_CASE("precision bf16: a GPT ends within 0.03 of fp32's validation loss", "[mixed][plugins][serial]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    lab::ConfigEnv env;
    env.data_dir = lab_test::shakespeare_data_dir();
    auto val_loss = [&](const std::string& precision) {
        lab::RawConfig raw = lab::load_config(
            fs::path(LAB_SOURCE_DIR) / "experiments" / "shakespeare_char.ini",
            {"experiment.precision=" + precision, "task.val_tokens=16384", "train.steps=300"}, env);
        lab::RunSpec spec = lab::resolve_run(raw, registry);
        lab::RunEnvironment run_env;
        run_env.data_dir = env.data_dir;
        run_env.quiet = true;
        lab::TrainingStack stack = lab::build_training_stack(spec, registry, run_env);
        CHECK(stack.backend->matmul_inputs() == (precision == "bf16" ? lab::DType::bf16 : lab::DType::f32));
        for (int64_t step = 1; step <= 300; ++step) lab::train_step(stack, step);
        return stack.task->evaluate(*stack.model).metrics.at("val/loss");
    };
    const double fp32 = val_loss("fp32"), bf16 = val_loss("bf16");
    std::printf("[mixed] shakespeare_char, 300 steps: val/loss fp32 %.4f, bf16 %.4f (difference %+.4f)\n", fp32, bf16,
                bf16 - fp32);
    CHECK(fp32 < 2.6);  // it learned something (the unigram entropy is about 3.3 nats)
    CHECK(std::abs(bf16 - fp32) < 0.03);
    CHECK(bf16 != fp32);  // the precision took effect
}

TEST_CASE("precision bf16: the fused attention kernel multiplies bf16 q, k, v, P and dS, accumulating in f32",
          "[mixed][plugins]") {
    namespace attention = lab_test::attention;
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    auto onednn = onednn_in_bf16(registry);
    // With native bf16 products and AMX the onednn backend takes the AMX kernel; elsewhere (oneDNN
    // capped below AVX512-BF16, as in the "no bf16 instructions" run) the f32 kernel, bit for bit.
    const bool amx = onednn->native_bf16_matmul() && cpu_has_amx_bf16();
    INFO("onednn backend: native bf16 " << onednn->native_bf16_matmul() << ", CPU has AMX-BF16 " << cpu_has_amx_bf16());
    lab::HostBackend host;  // f32 kernel
    for (const attention::AttentionCase& c : attention::f32_attention_cases()) {
        INFO("case " << attention::describe(c) << (c.causal ? " causal" : "") << (c.dropout > 0 ? " dropout" : ""));
        // Inputs that bf16 holds exactly: the two kernels differ only in what they round inside.
        const attention::Inputs in = attention::make_inputs(c, true);
        const attention::Result want = attention::run_attention(host, c, in);
        const attention::Result got = attention::run_attention(*onednn, c, in);
        const std::pair<const char*, std::pair<const std::vector<float>*, const std::vector<float>*>> outputs[] = {
            {"o", {&got.o, &want.o}},    {"lse", {&got.lse, &want.lse}}, {"dq", {&got.dq, &want.dq}},
            {"dk", {&got.dk, &want.dk}}, {"dv", {&got.dv, &want.dv}}};
        for (const auto& [name, pair] : outputs) {
            INFO("output " << name);
            const auto [error, scale] = max_error(*pair.first, *pair.second);
            if (!amx) {
                CHECK(error == 0.0);
                continue;
            }
            // P and dS carry bf16's 8-bit mantissa (relative error up to 2^-9) into every product; a
            // wrong layout or a lost tile is off by the size of the output itself.
            CHECK(error <= 0.02 * scale + 1e-6);
            if (std::string(name) != "lse") CHECK(error > 0.0);  // the bf16 kernel ran (lse is all-f32)
        }
        // -inf lse (a query that sees no key) and the infinities match exactly.
        for (size_t i = 0; i < want.lse.size(); ++i)
            if (std::isinf(want.lse[i])) CHECK(got.lse[i] == want.lse[i]);
    }
}

TEST_CASE("precision bf16: the fused attention op's backward reads the inputs its forward packed, with equal results",
          "[mixed][plugins]") {
    namespace attention = lab_test::attention;
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    auto onednn = onednn_in_bf16(registry);
    for (const attention::AttentionCase& c : attention::f32_attention_cases()) {
        if (c.dropout > 0 || c.T * c.S > 100000) continue;  // the op draws its own dropout key
        INFO("case " << attention::describe(c) << (c.causal ? " causal" : ""));
        const attention::Inputs in = attention::make_inputs(c, true);
        // The kernels called directly: the backward packs q, k and v itself.
        const attention::Result want = attention::run_attention(*onednn, c, in);
        // The differentiable op: AttentionKernelArgs::saved carries the forward's packing over.
        attention::Operands op = attention::make_operands(*onednn, c, in);
        for (lab::Tensor* t : {&op.q, &op.k, &op.v}) t->set_requires_grad(true);
        lab::AttentionCoreArgs args;
        args.causal = c.causal;
        args.scale = op.args.scale;
        if (op.mask.defined()) args.key_padding_mask = op.mask;
        const lab::Tensor o = lab::attention::fused_attention(op.q, op.k, op.v, args, c.window, op.slopes);
        lab::backward(o, op.dout);
        // o is a [B, H, T, D] view of [B, T, H, D] rows, as run_attention's o_storage.
        CHECK(lab::ops::contiguous(lab::ops::transpose(o, 1, 2)).to_floats() == want.o);
        if (c.packed) {
            // q, k and v are views of one tensor: its gradient holds all three.
            continue;
        }
        CHECK(op.q.grad().to_floats() == want.dq);
        CHECK(op.k.grad().to_floats() == want.dk);
        CHECK(op.v.grad().to_floats() == want.dv);
    }
}

TEST_CASE("fused attention: dq, dk and dv written in the projections' layout equal contiguous ones bit for bit",
          "[mixed][plugins]") {
    // The fused op allocates the gradients in the projections' layout (views of [B, T, H, D]), so
    // that they reach the projections without a copy. Every kernel writes rows where the views say:
    // the f32 kernel (reference; onednn in f32) in its one-pass and two-pass forms, the AMX kernel
    // (onednn in bf16, where the CPU has it).
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    struct Shape4 {
        int64_t B, H, Hkv, T, D;
        bool causal;
    };
    // B * Hkv = 1 leaves a thread idle in the one-pass form: the f32 kernel takes two passes.
    const std::vector<Shape4> shapes = {{2, 4, 2, 77, 64, true}, {1, 2, 1, 130, 32, false}, {3, 2, 2, 64, 64, true}};
    for (const char* name : {"reference", "onednn-f32", "onednn-bf16"}) {
        auto backend = make(registry, std::string(name).substr(0, std::string(name).find('-')));
        if (std::string(name) == "onednn-bf16") backend->set_matmul_inputs(lab::DType::bf16);
        for (const Shape4& sh : shapes) {
            INFO(name << " B " << sh.B << " H " << sh.H << " Hkv " << sh.Hkv << " T " << sh.T << " D " << sh.D);
            auto random = [&](lab::Shape shape, uint64_t stream) {
                lab::Tensor t = lab::Tensor::empty(*backend, shape);
                lab::ops::fill_normal(t, 0.0f, 1.0f, lab::RngKey{7, stream, 0});
                return t;
            };
            const lab::Tensor q = random({sh.B, sh.H, sh.T, sh.D}, 1), k = random({sh.B, sh.Hkv, sh.T, sh.D}, 2),
                              v = random({sh.B, sh.Hkv, sh.T, sh.D}, 3), dout = random({sh.B, sh.H, sh.T, sh.D}, 4);
            lab::AttentionKernelArgs args;
            args.scale = 1.0f / std::sqrt(static_cast<float>(sh.D));
            args.causal = sh.causal;
            lab::Tensor o = lab::Tensor::empty(*backend, q.shape()), lse = lab::Tensor::empty(*backend, {sh.B, sh.H, sh.T});
            backend->attention(o, lse, q, k, v, args);
            // [B, N, L, D] views of [B, L, N, D] memory.
            auto as_rows_of_positions = [&](const lab::Tensor& like) {
                const int64_t B = like.size(0), N = like.size(1), L = like.size(2), D = like.size(3);
                return lab::Tensor::empty(*backend, {B, L, N, D}).view({B, N, L, D}, {L * N * D, D, N * D, 1}, 0);
            };
            lab::Tensor dq = lab::Tensor::empty(*backend, q.shape()), dk = lab::Tensor::empty(*backend, k.shape()),
                        dv = lab::Tensor::empty(*backend, v.shape());
            backend->attention_backward(dq, dk, dv, dout, q, k, v, o, lse, args);
            lab::Tensor dq_s = as_rows_of_positions(q), dk_s = as_rows_of_positions(k), dv_s = as_rows_of_positions(v);
            REQUIRE_FALSE(dq_s.is_contiguous());
            backend->attention_backward(dq_s, dk_s, dv_s, dout, q, k, v, o, lse, args);
            CHECK(dq_s.to_floats() == dq.to_floats());
            CHECK(dk_s.to_floats() == dk.to_floats());
            CHECK(dv_s.to_floats() == dv.to_floats());
            const std::vector<float> dqv = dq.to_floats();
            CHECK(std::any_of(dqv.begin(), dqv.end(), [](float x) { return x != 0.0f; }));

            // Rows that overlap (a stride-0 head dimension) are refused, naming the gradient.
            const lab::Tensor one_head = lab::Tensor::empty(*backend, {sh.B, 1, sh.T, sh.D});
            const lab::Tensor overlapping =
                one_head.view(q.shape(), {sh.T * sh.D, 0, sh.D, 1}, 0);
            REQUIRE_THROWS_WITH(backend->attention_backward(overlapping, dk, dv, dout, q, k, v, o, lse, args),
                                Catch::Matchers::Contains("dq") && Catch::Matchers::Contains("dense"));
        }
    }
}

TEST_CASE("[attention] fused = auto asks the backend, which answers from its measured kernels", "[mixed][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    auto onednn = make(registry, "onednn");
    auto choose = [&](int64_t T, bool causal, float dropout) {
        const lab::Tensor q = lab::Tensor::zeros(*onednn, {1, 2, T, 64});
        lab::Generator rng(1, 2);
        lab::AttentionCoreArgs args;
        args.causal = causal;
        args.dropout = dropout;
        args.training = true;
        args.dropout_rng = &rng;
        return lab::attention::run_fused(lab::attention::FusedChoice::automatic, q, q, args);
    };
    // Forced choices are taken as they are.
    const lab::Tensor q = lab::Tensor::zeros(*onednn, {1, 2, 8, 64});
    CHECK(lab::attention::run_fused(lab::attention::FusedChoice::fused, q, q, {}));
    CHECK_FALSE(lab::attention::run_fused(lab::attention::FusedChoice::composite, q, q, {}));
    // f32: the tiled kernel only where a causal mask lets it skip half of the tiles, from T = 256.
    CHECK_FALSE(choose(128, false, 0.0f));
    CHECK_FALSE(choose(128, true, 0.0f));
    CHECK_FALSE(choose(256, false, 0.0f));
    CHECK(choose(256, true, 0.0f));
    CHECK_FALSE(choose(256, true, 0.1f));  // attention dropout: the composite
    // bf16: the AMX kernel where it runs, from T = 128 causal and T = 256 without a mask;
    // elsewhere the f32 rule.
    onednn->set_matmul_inputs(lab::DType::bf16);
    const bool amx = onednn->native_bf16_matmul() && cpu_has_amx_bf16();
    CHECK(choose(128, true, 0.0f) == amx);
    CHECK_FALSE(choose(128, false, 0.0f));
    CHECK(choose(256, false, 0.0f) == amx);
    CHECK(choose(256, true, 0.0f));
    CHECK_FALSE(choose(64, true, 0.0f));
    CHECK_FALSE(choose(512, false, 0.1f));
}
