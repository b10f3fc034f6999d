// attention/sigmoid (Ramapuram et al. 2024) and attention/differential (Ye et al. 2024) through
// their plugins (a Registry that loads LAB_PLUGIN_DIR), against references written here with plain
// host loops in double precision from the plugins' own parameters read back: sigmoid's bias
// -log(n) with n the keys each query attends to, masked keys weighted exactly 0; differential's
// two maps, lambda (eq. 2), lambda_init per layer, per-head RMSNorm; KV-cache decoding equal to the
// full causal forward for both; gradients reaching differential's lambda vectors; the layer index
// the models hand their blocks (AttentionShape::layer); the conformance check.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "attention_conformance.h"
#include "attention_test_support.h"
#include "gradcheck.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/model.h"
#include "lab/ops.h"
#include "lab/registry.h"

using lab::Tensor;
using Catch::Matchers::Contains;
using namespace lab_test;

namespace {

// Every parameter N(0, 0.5^2) (randomize): at the default N(0, 0.02) every score is near 0, every
// sigmoid near 1 / (1 + n) and both differential maps nearly uniform, which would hide a wrong map.
constexpr float kWeightStd = 0.5f;

struct Fixture : AttentionFixture {
    Fixture() : AttentionFixture(13) {}
};

// Whether query i of sequence b attends to key j: causal and key padding (padding [B, T], 1 = padded).
bool attends(bool causal, const std::vector<int64_t>& padding, int64_t T, int64_t b, int64_t i, int64_t j) {
    return (!causal || j <= i) && (padding.empty() || !padding[static_cast<size_t>(b * T + j)]);
}

// Ramapuram et al. (2024) as written: w_ij = sigmoid(q_i . k_j / sqrt(D) - log n) for the keys
// query i attends to, 0 for the others; n = fixed_n, or (fixed_n = 0) the number of those keys.
Doubles sigmoid_output(const lab::Module& m, const std::vector<float>& x, int64_t B, int64_t T, int64_t C, int64_t H,
                       bool causal, const std::vector<int64_t>& padding, int64_t fixed_n) {
    const HostAttention a = read_back(m, C, H);
    Projected p = project(a, x, B, T);
    Doubles context(p.q.size(), 0.0);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < T; ++i) {
                int64_t n = fixed_n;
                if (n == 0)
                    for (int64_t j = 0; j < T; ++j) n += attends(causal, padding, T, b, i, j) ? 1 : 0;
                for (int64_t j = 0; j < T; ++j) {
                    if (!attends(causal, padding, T, b, i, j)) continue;
                    double s = 0.0;
                    for (int64_t d = 0; d < p.D; ++d) s += p.q[p.at(b, h, i, d)] * p.k[p.kv_at(b, h, j, d)];
                    s = s / std::sqrt(static_cast<double>(p.D)) - std::log(static_cast<double>(n));
                    const double weight = 1.0 / (1.0 + std::exp(-s));
                    for (int64_t d = 0; d < p.D; ++d) context[p.at(b, h, i, d)] += weight * p.v[p.kv_at(b, h, j, d)];
                }
            }
    return project_out(a, context, B, T);
}

double lambda_init_of(int64_t layer) { return 0.8 - 0.6 * std::exp(-0.3 * static_cast<double>(layer)); }

// Ye et al. (2024) eq. (1)-(3) as written, head h: softmax maps A1 (q1, k1) and A2 (q2, k2) over
// D / 2 with scale 1 / sqrt(D / 2), (A1 - lambda A2) v, RMSNorm over D with subln.weight, times
// (1 - lambda_init).
Doubles differential_output(const lab::Module& m, const std::vector<float>& x, int64_t B, int64_t T, int64_t C,
                            int64_t H, int64_t layer, bool causal, const std::vector<int64_t>& padding,
                            double eps = 1e-5) {
    const HostAttention a = read_back(m, C, H);
    Projected p = project(a, x, B, T);
    const int64_t D = p.D, half = D / 2;
    const Doubles q1 = read(m, "lambda_q1"), k1 = read(m, "lambda_k1"), q2 = read(m, "lambda_q2"),
                  k2 = read(m, "lambda_k2"), gain = read(m, "subln.weight");
    double dot1 = 0.0, dot2 = 0.0;
    for (size_t d = 0; d < q1.size(); ++d) dot1 += q1[d] * k1[d], dot2 += q2[d] * k2[d];
    const double init = lambda_init_of(layer), lambda = std::exp(dot1) - std::exp(dot2) + init;
    // Softmax weights of query i over the keys it attends to, scores over dims [first, first + half).
    auto softmax_row = [&](int64_t b, int64_t h, int64_t i, int64_t first) {
        Doubles w(static_cast<size_t>(T), 0.0);
        double top = -INFINITY, total = 0.0;
        for (int64_t j = 0; j < T; ++j) {
            if (!attends(causal, padding, T, b, i, j)) continue;
            double s = 0.0;
            for (int64_t d = first; d < first + half; ++d) s += p.q[p.at(b, h, i, d)] * p.k[p.kv_at(b, h, j, d)];
            w[static_cast<size_t>(j)] = s / std::sqrt(static_cast<double>(half));
            top = std::max(top, w[static_cast<size_t>(j)]);
        }
        for (int64_t j = 0; j < T; ++j) {
            double& weight = w[static_cast<size_t>(j)];
            weight = attends(causal, padding, T, b, i, j) ? std::exp(weight - top) : 0.0;
            total += weight;
        }
        for (double& v : w) v /= total;
        return w;
    };
    Doubles context(p.q.size(), 0.0);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < T; ++i) {
                if (!padding.empty() && padding[static_cast<size_t>(b * T + i)]) continue;  // unspecified rows
                const Doubles a1 = softmax_row(b, h, i, 0), a2 = softmax_row(b, h, i, half);
                Doubles diff(static_cast<size_t>(D), 0.0);
                double square_sum = 0.0;
                for (int64_t d = 0; d < D; ++d) {
                    for (int64_t j = 0; j < T; ++j)
                        diff[static_cast<size_t>(d)] +=
                            (a1[static_cast<size_t>(j)] - lambda * a2[static_cast<size_t>(j)]) *
                            p.v[p.kv_at(b, h, j, d)];
                    square_sum += diff[static_cast<size_t>(d)] * diff[static_cast<size_t>(d)];
                }
                const double rms = std::sqrt(square_sum / static_cast<double>(D) + eps);
                for (int64_t d = 0; d < D; ++d)
                    context[p.at(b, h, i, d)] =
                        (1.0 - init) * diff[static_cast<size_t>(d)] / rms * gain[static_cast<size_t>(d)];
            }
    return project_out(a, context, B, T);
}

// Decodes x [B, T, C] one position at a time through a KV cache, causal: the outputs [B, T, C].
std::vector<float> decode_with_cache(lab::Attention& attention, lab::Backend& backend, const std::vector<float>& x,
                                     int64_t B, int64_t T, int64_t C) {
    lab::NoGradGuard no_grad;
    lab::KvCache cache;
    lab::AttentionContext context;
    context.causal = true;
    context.kv_cache = &cache;
    std::vector<float> out(x.size());
    for (int64_t t = 0; t < T; ++t) {
        std::vector<float> step(static_cast<size_t>(B * C));
        for (int64_t b = 0; b < B; ++b)
            for (int64_t c = 0; c < C; ++c)
                step[static_cast<size_t>(b * C + c)] = x[static_cast<size_t>((b * T + t) * C + c)];
        std::vector<float> y = attention.forward(Tensor::from_floats(backend, {B, 1, C}, step), context).to_floats();
        for (int64_t b = 0; b < B; ++b)
            for (int64_t c = 0; c < C; ++c)
                out[static_cast<size_t>((b * T + t) * C + c)] = y[static_cast<size_t>(b * C + c)];
    }
    CHECK(cache.length() == T);
    return out;
}

}  // namespace

// ---------------------------------------------------------------- sigmoid

TEST_CASE("sigmoid: output equals sigmoid(q k^T / sqrt(D) - log n) v by hand", "[attention][sigmoid]") {
    Fixture f;
    // B = 1, H = 2, T = 3, D = 4, then a padded batch of two longer sequences.
    struct Case {
        int64_t B, T;
        std::vector<int64_t> padding;
    };
    for (const Case& c : {Case{1, 3, {}}, Case{2, 6, tail_padding(6)}}) {
        const int64_t C = 8, H = 2;
        std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(c.B * c.T * C), 31);
        for (const char* bias_n : {"0", "5"}) {
            auto attention = f.make("sigmoid", {{"bias_n", bias_n}}, C, H);
            randomize(*attention, 32, kWeightStd);
            for (bool causal : {false, true}) {
                INFO("B " << c.B << ", T " << c.T << ", bias_n " << bias_n << ", causal " << causal << ", padded "
                          << !c.padding.empty());
                Doubles want = sigmoid_output(*attention, x, c.B, c.T, C, H, causal, c.padding, std::stoll(bias_n));
                std::vector<float> got = run(*attention, f.backend, x, c.B, c.T, C, causal, c.padding);
                CHECK(max_abs_diff(real_rows(got, c.padding, C), real_rows(want, c.padding, C)) < 1e-5);
            }
        }
    }
}

TEST_CASE("sigmoid: the bias is -log(n) with n the keys a query attends to, masked keys weigh exactly 0",
          "[attention][sigmoid]") {
    // q = k = 0 makes every score 0, so each weight is sigmoid(b) = 1 / (1 + n) for b = -log(n).
    // Parameters chosen so the output reads the weights out: x_t = e_t (one-hot position), head h's
    // D value channels are input channels 0 .. D - 1, c_proj = identity, biases 0:
    // output[b, i, h D + j] = w^h_ij.
    Fixture f;
    const int64_t T = 6, H = 2, D = 8, C = H * D, B = 2;
    const std::vector<float> x = one_hot_positions(B, T, C);
    const std::vector<int64_t> padding = tail_padding(T);  // sequence 1 has 4 real keys
    for (int64_t fixed_n : {int64_t{0}, int64_t{10}}) {
        auto attention = f.make("sigmoid", {{"bias_n", std::to_string(fixed_n)}}, C, H);
        set_weight_readout(*attention, C, H);
        for (bool causal : {false, true}) {
            std::vector<float> out = run(*attention, f.backend, x, B, T, C, causal, padding);
            for (int64_t b = 0; b < B; ++b)
                for (int64_t i = 0; i < T; ++i) {
                    if (padding[static_cast<size_t>(b * T + i)]) continue;
                    const int64_t real_keys = b == 0 ? T : T - 2;
                    const int64_t n = fixed_n > 0 ? fixed_n : causal ? i + 1 : real_keys;
                    for (int64_t h = 0; h < H; ++h)
                        for (int64_t j = 0; j < T; ++j) {
                            const float w = out[static_cast<size_t>((b * T + i) * C + h * D + j)];
                            INFO("bias_n " << fixed_n << ", causal " << causal << ", sequence " << b << ", head "
                                           << h << ", query " << i << ", key " << j << ": n " << n);
                            if (attends(causal, padding, T, b, i, j))
                                CHECK(w == Approx(1.0 / (1.0 + static_cast<double>(n))).margin(1e-6));
                            else
                                CHECK(w == 0.0f);
                        }
                }
        }
    }
}

TEST_CASE("sigmoid: a masked key has exactly zero gradient and zero influence", "[attention][sigmoid]") {
    Fixture f;
    const int64_t T = 7, C = 8, H = 2;
    auto attention = f.make("sigmoid", {}, C, H);
    randomize(*attention, 33, kWeightStd);
    std::vector<float> x_values = lab::testing::normal_floats(static_cast<size_t>(T * C), 34);
    const int64_t i = 3;  // d output_i / d x_j, causal: zero for every j > i
    const std::vector<float> influence = input_influence(*attention, f.backend, x_values, T, C, true, i);
    for (int64_t j = 0; j < T; ++j) {
        const float largest = influence[static_cast<size_t>(j)];
        INFO("input " << j << ": max |d output_" << i << " / d x| " << largest);
        if (j <= i) CHECK(largest > 1e-6f);
        else CHECK(largest == 0.0f);
    }
}

TEST_CASE("sigmoid and differential: decoding with a KV cache equals the full causal forward",
          "[attention][sigmoid][differential]") {
    Fixture f;
    const int64_t B = 2, T = 6, C = 16, H = 2;
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 35);
    const std::vector<std::pair<std::string, OptionMap>> variants = {
        {"sigmoid", {}}, {"sigmoid", {{"bias_n", "32"}}}, {"differential", {}}, {"differential", {{"fused", "true"}}}};
    for (const auto& [name, options] : variants) {
        auto attention = f.make(name, options, C, H, 1);
        randomize(*attention, 36, kWeightStd);
        std::vector<float> full = run(*attention, f.backend, x, B, T, C, true);
        std::vector<float> cached = decode_with_cache(*attention, f.backend, x, B, T, C);
        INFO("attention/" << name << (options.empty() ? "" : " " + options.begin()->first + "=" +
                                                                   options.begin()->second));
        CHECK(max_abs_diff(cached, Doubles(full.begin(), full.end())) < 1e-5);
    }
}

// ---------------------------------------------------------------- differential

TEST_CASE("differential: output equals eq. (1)-(3) by hand, composite and fused", "[attention][differential]") {
    Fixture f;
    struct Case {
        int64_t B, T;
        std::vector<int64_t> padding;
    };
    const int64_t C = 8, H = 2, layer = 2;  // D = 4: q1, k1, q2, k2 of 2; lambda_init(l = 3) = 0.470
    for (const Case& c : {Case{1, 3, {}}, Case{2, 6, tail_padding(6)}}) {
        std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(c.B * c.T * C), 41);
        for (const char* fused : {"false", "true"}) {
            auto attention = f.make("differential", {{"fused", fused}}, C, H, layer);
            randomize(*attention, 42, kWeightStd);
            for (bool causal : {false, true}) {
                INFO("B " << c.B << ", T " << c.T << ", fused " << fused << ", causal " << causal << ", padded "
                          << !c.padding.empty());
                Doubles want = differential_output(*attention, x, c.B, c.T, C, H, layer, causal, c.padding);
                std::vector<float> got = run(*attention, f.backend, x, c.B, c.T, C, causal, c.padding);
                CHECK(max_abs_diff(real_rows(got, c.padding, C), real_rows(want, c.padding, C)) < 1e-5);
            }
        }
    }
}

TEST_CASE("differential: lambda_init = 0.8 - 0.6 exp(-0.3 (l - 1)) scales the head output per layer",
          "[attention][differential]") {
    // One position (T = 1): both maps are [1], DiffAttn = (1 - lambda) v with lambda = lambda_init
    // (lambda vectors 0), and the RMSNorm (eps 1e-12) leaves v / rms(v) = v for v = (1, -1, 1, -1).
    // c_proj = identity, so output = (1 - lambda_init) v: output[0] reads 1 - lambda_init.
    Fixture f;
    const int64_t H = 2, D = 4, C = H * D;
    std::vector<float> x(static_cast<size_t>(C), 0.0f);
    x[0] = 1.0f;
    std::vector<float> c_attn(static_cast<size_t>(3 * C * C), 0.0f);
    for (int64_t c = 0; c < C; ++c) c_attn[static_cast<size_t>((2 * C + c) * C)] = c % 2 == 0 ? 1.0f : -1.0f;
    const std::vector<float> identity = identity_matrix(C);
    for (int64_t layer : {0, 1, 2, 5, 11}) {
        auto attention = f.make("differential", {{"norm_eps", "1e-12"}}, C, H, layer);
        set_param(*attention, "c_attn.weight", c_attn);
        set_param(*attention, "c_proj.weight", identity);
        for (const char* name : {"lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"})
            set_param(*attention, name, std::vector<float>(static_cast<size_t>(D / 2), 0.0f));
        std::vector<float> out = run(*attention, f.backend, x, 1, 1, C, true);
        const double init = lambda_init_of(layer);
        INFO("layer " << layer << " (l = " << layer + 1 << "): lambda_init " << init);
        for (int64_t c = 0; c < C; ++c)
            CHECK(out[static_cast<size_t>(c)] == Approx((1.0 - init) * (c % 2 == 0 ? 1.0 : -1.0)).margin(1e-6));
    }
    CHECK(lambda_init_of(0) == Approx(0.2));  // the paper's first layer
    CHECK(lambda_init_of(1) == Approx(0.8 - 0.6 * std::exp(-0.3)));
}

TEST_CASE("differential: the lambda vectors receive gradients that match finite differences",
          "[attention][differential]") {
    Fixture f;
    const int64_t B = 1, T = 4, C = 8, H = 2;
    auto attention = f.make("differential", {}, C, H, 3);
    randomize(*attention, 43, kWeightStd);
    const std::vector<float> x_values = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 44);
    const std::vector<float> weights = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 45);
    lab::AttentionContext context;
    context.causal = true;
    auto loss = [&] {  // sum(output * weights), accumulated in double
        lab::NoGradGuard no_grad;
        std::vector<float> y =
            attention->forward(Tensor::from_floats(f.backend, {B, T, C}, x_values), context).to_floats();
        double total = 0.0;
        for (size_t i = 0; i < y.size(); ++i) total += static_cast<double>(y[i]) * weights[i];
        return total;
    };
    Tensor y = attention->forward(Tensor::from_floats(f.backend, {B, T, C}, x_values), context);
    lab::backward(y, Tensor::from_floats(f.backend, {B, T, C}, weights));
    for (const char* name : {"lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"}) {
        Tensor p = param(*attention, name);
        REQUIRE(p.grad().defined());
        const std::vector<float> analytic = p.grad().to_floats();
        std::vector<float> values = p.to_floats();
        double largest = 0.0;
        for (size_t e = 0; e < values.size(); ++e) {
            const float eps = 1e-2f, saved = values[e];
            values[e] = saved + eps;
            set_param(*attention, name, values);
            const double up = loss();
            values[e] = saved - eps;
            set_param(*attention, name, values);
            const double down = loss();
            values[e] = saved;
            set_param(*attention, name, values);
            const double numeric = (up - down) / (2.0 * eps);
            INFO(name << "[" << e << "]: analytic " << analytic[e] << ", numeric " << numeric);
            CHECK(std::abs(analytic[e] - numeric) <= 1e-2 * std::max(1.0, std::abs(numeric)));
            largest = std::max(largest, std::abs(static_cast<double>(analytic[e])));
        }
        INFO(name << ": max |gradient| " << largest);
        CHECK(largest > 1e-3);  // lambda is live: it moves the loss
    }
}

TEST_CASE("differential: an odd head size and out-of-range options are refused by name", "[attention][differential]") {
    Fixture f;
    CHECK_THAT(config_error_of([&] { f.make("differential", {}, 12, 4); }),
               Contains("D = hidden / heads = 12 / 4 = 3") && Contains("even"));
    CHECK_THAT(config_error_of([&] { f.make("differential", {{"norm_eps", "0"}}, 8, 2); }), Contains("norm_eps"));
    CHECK_THAT(config_error_of([&] { f.make("sigmoid", {{"bias_n", "-1"}}, 8, 2); }), Contains("bias_n"));
    for (const char* name : {"sigmoid", "differential"}) {
        const lab::PluginInfo& info = f.registry.find("attention", name);
        INFO("attention/" << name);
        CHECK(info.attention.supports.causal);
        CHECK(info.attention.supports.padding_mask);
        CHECK(info.attention.supports.kv_cache);
        CHECK_FALSE(info.attention.supports.cross_attention);
        CHECK(info.attention.equals_softmax_with.empty());
    }
}

// ---------------------------------------------------------------- the models' layer index

TEST_CASE("models: gpt, transformer and bert hand each block its 0-based layer index", "[attention][differential]") {
    for (const char* model_name : {"gpt", "transformer", "bert"}) {
        Fixture f;
        f.ctx.train.seq_len = 8;
        auto tokenizer = f.registry.factory<lab::TokenizerFactory>("tokenizer", "char")(
            lab::plugin_options(f.registry, "tokenizer", "char", {}, "test"), f.ctx);
        tokenizer->train("abcdefgh");
        f.ctx.tokenizer = tokenizer.get();
        std::vector<int64_t> layers;
        lab::Options softmax_options = lab::plugin_options(f.registry, "attention", "softmax", {}, "test");
        const auto& softmax = f.registry.factory<lab::AttentionFactory>("attention", "softmax");
        f.ctx.make_attention = [&](const lab::AttentionShape& shape) {
            layers.push_back(shape.layer);
            return softmax(softmax_options, shape, f.ctx);
        };
        auto model = f.registry.factory<lab::ModelFactory>("model", model_name)(
            lab::plugin_options(f.registry, "model", model_name, {{"layers", "3"}, {"hidden", "16"}, {"heads", "2"}},
                                "test"),
            f.ctx);
        INFO("model/" << model_name);
        CHECK(layers == std::vector<int64_t>{0, 1, 2});
    }
}

// ---------------------------------------------------------------- conformance

// The shared check (lab::check_attention): shapes, gradients against finite differences (every
// parameter, the lambda vectors and subln.weight included), causality, padding, determinism.
TEST_CASE("sigmoid: conformance (per-query n and a fixed n)", "[attention][sigmoid]") {
    lab_test::require_conformant("sigmoid");
    lab_test::require_conformant("sigmoid", {{"bias_n", "64"}});
}

TEST_CASE("differential: conformance (composite and fused)", "[attention][differential]") {
    lab_test::require_conformant("differential");
    lab_test::require_conformant("differential", {{"fused", "true"}});
}
