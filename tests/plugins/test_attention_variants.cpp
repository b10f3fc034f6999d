// The attention variants attention/{gqa, local, linear, alibi} through their plugins (built by a
// Registry that loads LAB_PLUGIN_DIR), against references written here with plain host loops in
// double precision from the plugins' own parameters (c_attn, c_proj read back): grouped key/value
// heads, the sliding window (values, and exactly zero gradient outside it), linear attention's
// chunked causal sums against the naive O(T^2) formula, ALiBi's slopes and distance decay. Fused
// and composite paths of one variant must agree; options out of range are refused by name.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attention_conformance.h"
#include "attention_test_support.h"
#include "gradcheck.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"

using lab::Shape;
using lab::Tensor;
using Catch::Matchers::Contains;
using namespace lab_test;

namespace {

// Every parameter N(0, 0.4^2) (randomize): the default N(0, 0.02) makes all scores near 0 and
// every attention nearly uniform, which would hide wrong masks and wrong head mappings.
constexpr float kWeightStd = 0.4f;

struct VariantFixture : AttentionFixture {
    VariantFixture() : AttentionFixture(11) {}
};

using Visible = std::function<bool(int64_t i, int64_t j)>;
using Bias = std::function<double(int64_t h, int64_t i, int64_t j)>;

// Softmax attention per head, head h reading kv head h / (H / Hkv); keys hidden by `visible` or
// padding are left out, `bias` is added to the scaled scores.
Doubles softmax_output(const HostAttention& a, const std::vector<float>& x, int64_t B, int64_t T,
                       const Visible& visible, const Bias& bias = nullptr, const std::vector<int64_t>& padding = {}) {
    Projected p = project(a, x, B, T);
    const int64_t H = a.H, D = a.D, group = a.H / a.Hkv;
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    Doubles context(static_cast<size_t>(B * H * T * D), 0.0);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t kvh = h / group;
            for (int64_t i = 0; i < T; ++i) {
                Doubles weight(static_cast<size_t>(T), 0.0);
                double top = -INFINITY, total = 0.0;
                for (int64_t j = 0; j < T; ++j) {
                    if (!visible(i, j) || (!padding.empty() && padding[static_cast<size_t>(b * T + j)])) continue;
                    double s = 0.0;
                    for (int64_t d = 0; d < D; ++d) s += p.q[p.at(b, h, i, d)] * p.k[p.kv_at(b, kvh, j, d)];
                    s = s * scale + (bias ? bias(h, i, j) : 0.0);
                    weight[static_cast<size_t>(j)] = s;
                    top = std::max(top, s);
                }
                for (int64_t j = 0; j < T; ++j) {
                    if (!visible(i, j) || (!padding.empty() && padding[static_cast<size_t>(b * T + j)])) {
                        weight[static_cast<size_t>(j)] = 0.0;
                        continue;
                    }
                    weight[static_cast<size_t>(j)] = std::exp(weight[static_cast<size_t>(j)] - top);
                    total += weight[static_cast<size_t>(j)];
                }
                for (int64_t j = 0; j < T; ++j)
                    for (int64_t d = 0; d < D; ++d)
                        context[p.at(b, h, i, d)] +=
                            weight[static_cast<size_t>(j)] / total * p.v[p.kv_at(b, kvh, j, d)];
            }
        }
    return project_out(a, context, B, T);
}

// Katharopoulos et al. (2020), sec. 3.2 (causal: sec. 3.3) as written: phi(x) = elu(x) + 1, no scale,
// out_i = sum_j (phi(q_i) . phi(k_j)) v_j / (sum_j phi(q_i) . phi(k_j) + eps), O(T^2).
Doubles linear_output(const HostAttention& a, const std::vector<float>& x, int64_t B, int64_t T, bool causal,
                      double eps, const std::vector<int64_t>& padding = {}) {
    Projected p = project(a, x, B, T);
    auto phi = [](double v) { return v > 0 ? v + 1.0 : std::exp(v); };
    const int64_t H = a.H, D = a.D;
    Doubles context(static_cast<size_t>(B * H * T * D), 0.0);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < T; ++i) {
                Doubles numerator(static_cast<size_t>(D), 0.0);
                double denominator = 0.0;
                for (int64_t j = 0; j < (causal ? i + 1 : T); ++j) {
                    if (!padding.empty() && padding[static_cast<size_t>(b * T + j)]) continue;
                    double kernel = 0.0;
                    for (int64_t d = 0; d < D; ++d)
                        kernel += phi(p.q[p.at(b, h, i, d)]) * phi(p.k[p.kv_at(b, h, j, d)]);
                    denominator += kernel;
                    for (int64_t d = 0; d < D; ++d)
                        numerator[static_cast<size_t>(d)] += kernel * p.v[p.kv_at(b, h, j, d)];
                }
                for (int64_t d = 0; d < D; ++d)
                    context[p.at(b, h, i, d)] = numerator[static_cast<size_t>(d)] / (denominator + eps);
            }
    return project_out(a, context, B, T);
}

const Visible kAll = [](int64_t, int64_t) { return true; };
const Visible kCausal = [](int64_t i, int64_t j) { return j <= i; };

}  // namespace

// ---------------------------------------------------------------- gqa

TEST_CASE("gqa: kv_heads = 1 projects one key/value head that every query head reads", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 2, T = 6, C = 16, H = 4, D = C / H;
    auto attention = f.make("gqa", {{"kv_heads", "1"}}, C, H);
    CHECK(param(*attention, "c_attn.weight").shape() == Shape{(H + 2) * D, C});
    CHECK(param(*attention, "c_attn.bias").shape() == Shape{(H + 2) * D});
    randomize(*attention, 3, kWeightStd);
    HostAttention host = read_back(*attention, C, H);
    REQUIRE(host.Hkv == 1);
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 5);
    for (bool causal : {false, true}) {
        INFO("causal " << causal);
        Doubles want = softmax_output(host, x, B, T, causal ? kCausal : kAll);
        CHECK(max_abs_diff(run(*attention, f.backend, x, B, T, C, causal), want) < 1e-4);
    }
}

TEST_CASE("gqa: query head h reads kv head h / (H / kv_heads), composite and fused", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 2, T = 7, C = 24, H = 6;
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 6);
    std::vector<int64_t> padding = tail_padding(T);
    for (const char* kv_heads : {"2", "3", "0"}) {
        for (const char* fused : {"false", "true"}) {
            auto attention = f.make("gqa", {{"kv_heads", kv_heads}, {"fused", fused}}, C, H);
            randomize(*attention, 7, kWeightStd);
            HostAttention host = read_back(*attention, C, H);
            CHECK(host.Hkv == (std::string(kv_heads) == "0" ? H : std::stoll(kv_heads)));
            for (bool causal : {false, true}) {
                INFO("kv_heads " << kv_heads << ", fused " << fused << ", causal " << causal);
                Doubles want = softmax_output(host, x, B, T, causal ? kCausal : kAll, nullptr, padding);
                std::vector<float> got = run(*attention, f.backend, x, B, T, C, causal, padding);
                CHECK(max_abs_diff(real_rows(got, padding, C), real_rows(want, padding, C)) < 1e-4);
            }
        }
    }
}

TEST_CASE("gqa: kv_heads = 0 computes exactly what attention/softmax computes", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 2, T = 5, C = 16, H = 4;
    auto gqa = f.make("gqa", {{"kv_heads", "0"}}, C, H);
    auto softmax = f.make("softmax", {}, C, H);
    randomize(*gqa, 9, kWeightStd);
    softmax->load_state_dict(gqa->state_dict());
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 10);
    for (bool causal : {false, true})
        CHECK(max_abs_diff(run(*gqa, f.backend, x, B, T, C, causal), run(*softmax, f.backend, x, B, T, C, causal)) ==
              0.0);
}

TEST_CASE("gqa: kv_heads that cannot group the heads is refused, naming kv_heads", "[attention][variants]") {
    VariantFixture f;
    CHECK_THAT(config_error_of([&] { f.make("gqa", {{"kv_heads", "3"}}, 16, 4); }),
               Contains("kv_heads = 3") && Contains("heads = 4"));
    CHECK_THAT(config_error_of([&] { f.make("gqa", {{"kv_heads", "8"}}, 16, 4); }), Contains("kv_heads = 8"));
    CHECK_THAT(config_error_of([&] { f.make("gqa", {{"kv_heads", "-1"}}, 16, 4); }), Contains("kv_heads"));
}

// ---------------------------------------------------------------- local

TEST_CASE("local: the composite path attends exactly to the window", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 2, T = 10, C = 16, H = 2, window = 3;
    auto attention = f.make("local", {{"window", std::to_string(window)}, {"fused", "false"}}, C, H);
    randomize(*attention, 12, kWeightStd);
    HostAttention host = read_back(*attention, C, H);
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 13);
    std::vector<int64_t> padding = tail_padding(T);
    const Visible causal_band = [&](int64_t i, int64_t j) { return j <= i && j > i - window; };
    const Visible band = [&](int64_t i, int64_t j) { return std::abs(i - j) < window; };
    for (bool causal : {false, true}) {
        INFO("causal " << causal);
        Doubles want = softmax_output(host, x, B, T, causal ? causal_band : band);
        CHECK(max_abs_diff(run(*attention, f.backend, x, B, T, C, causal), want) < 1e-4);
        Doubles want_padded = softmax_output(host, x, B, T, causal ? causal_band : band, nullptr, padding);
        std::vector<float> got_padded = run(*attention, f.backend, x, B, T, C, causal, padding);
        CHECK(max_abs_diff(real_rows(got_padded, padding, C), real_rows(want_padded, padding, C)) < 1e-4);
    }
}

TEST_CASE("local: fused and composite paths agree", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 2, T = 37, C = 16, H = 2;
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 14);
    std::vector<int64_t> padding = tail_padding(T);
    for (const char* window : {"1", "5", "16", "1000000"}) {
        auto fused = f.make("local", {{"window", window}, {"fused", "true"}}, C, H);
        auto composite = f.make("local", {{"window", window}, {"fused", "false"}}, C, H);
        randomize(*fused, 15, kWeightStd);
        composite->load_state_dict(fused->state_dict());
        for (bool causal : {false, true}) {
            INFO("window " << window << ", causal " << causal);
            CHECK(max_abs_diff(run(*fused, f.backend, x, B, T, C, causal),
                               run(*composite, f.backend, x, B, T, C, causal)) < 1e-5);
            std::vector<float> a = run(*fused, f.backend, x, B, T, C, causal, padding);
            std::vector<float> b = run(*composite, f.backend, x, B, T, C, causal, padding);
            CHECK(max_abs_diff(real_rows(a, padding, C), real_rows(b, padding, C)) < 1e-5);
        }
    }
}

TEST_CASE("local: a token outside the window has exactly zero influence on an output", "[attention][variants]") {
    VariantFixture f;
    const int64_t T = 12, C = 8, H = 2, window = 4;
    std::vector<float> x_values = lab::testing::normal_floats(static_cast<size_t>(T * C), 16);
    for (const char* fused : {"false", "true"}) {
        auto attention = f.make("local", {{"window", std::to_string(window)}, {"fused", fused}}, C, H);
        randomize(*attention, 17, kWeightStd);
        for (bool causal : {false, true}) {
            for (int64_t i : {int64_t{0}, int64_t{5}, T - 1}) {
                const std::vector<float> influence = input_influence(*attention, f.backend, x_values, T, C, causal, i);
                for (int64_t j = 0; j < T; ++j) {
                    const float largest = influence[static_cast<size_t>(j)];
                    bool inside = causal ? (j <= i && j > i - window) : std::abs(i - j) < window;
                    INFO("fused " << fused << ", causal " << causal << ", output " << i << ", input " << j
                                  << ": max |gradient| " << largest);
                    if (inside) CHECK(largest > 1e-6f);
                    else CHECK(largest == 0.0f);
                }
            }
        }
    }
}

TEST_CASE("local: window 1000000 equals attention/softmax, window 0 is refused", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 1, T = 9, C = 16, H = 4;
    auto local = f.make("local", {{"window", "1000000"}, {"fused", "false"}}, C, H);
    auto softmax = f.make("softmax", {}, C, H);
    randomize(*local, 18, kWeightStd);
    softmax->load_state_dict(local->state_dict());
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 19);
    for (bool causal : {false, true})
        CHECK(max_abs_diff(run(*local, f.backend, x, B, T, C, causal), run(*softmax, f.backend, x, B, T, C, causal)) ==
              0.0);
    CHECK_THAT(config_error_of([&] { f.make("local", {{"window", "0"}}, C, H); }), Contains("window"));
}

// ---------------------------------------------------------------- linear

TEST_CASE("linear: causal chunked output equals the naive O(T^2) formula", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 2, C = 8, H = 2;
    for (int64_t T : {int64_t{13}, int64_t{70}}) {
        std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 20);
        std::vector<int64_t> padding = tail_padding(T);
        for (const char* chunk : {"1", "7", "64"}) {
            auto attention = f.make("linear", {{"chunk", chunk}}, C, H);
            randomize(*attention, 21, kWeightStd);
            HostAttention host = read_back(*attention, C, H);
            INFO("T " << T << ", chunk " << chunk);
            CHECK(max_abs_diff(run(*attention, f.backend, x, B, T, C, true), linear_output(host, x, B, T, true, 1e-6)) <
                  1e-4);
            std::vector<float> got = run(*attention, f.backend, x, B, T, C, true, padding);
            Doubles want = linear_output(host, x, B, T, true, 1e-6, padding);
            CHECK(max_abs_diff(real_rows(got, padding, C), real_rows(want, padding, C)) < 1e-4);
        }
    }
}

TEST_CASE("linear: non-causal output equals the naive formula", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 2, T = 11, C = 12, H = 3;
    auto attention = f.make("linear", {}, C, H);
    randomize(*attention, 22, kWeightStd);
    HostAttention host = read_back(*attention, C, H);
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 23);
    CHECK(max_abs_diff(run(*attention, f.backend, x, B, T, C, false), linear_output(host, x, B, T, false, 1e-6)) <
          1e-4);
    std::vector<int64_t> padding = tail_padding(T);
    std::vector<float> got = run(*attention, f.backend, x, B, T, C, false, padding);
    Doubles want = linear_output(host, x, B, T, false, 1e-6, padding);
    CHECK(max_abs_diff(real_rows(got, padding, C), real_rows(want, padding, C)) < 1e-4);
}

TEST_CASE("linear: gradients of the chunked causal form match finite differences", "[attention][variants]") {
    VariantFixture f;
    const int64_t T = 7, C = 8, H = 2;
    auto attention = f.make("linear", {{"chunk", "3"}}, C, H);
    randomize(*attention, 24, kWeightStd);
    lab::AttentionContext context;
    context.causal = true;
    // Through the input, every path of the chunked form is checked: phi and the within-chunk
    // mask (q and k), the cross-chunk prefix sums (chunks 2 and 3 read 1 and 2), the padding of
    // T = 7 to 9 and the normaliser.
    lab::testing::gradcheck(
        "linear causal, chunk 3",
        [&](const std::vector<Tensor>& inputs) { return attention->forward(inputs[0], context); },
        {lab::testing::random_input(f.backend, {1, T, C}, 25)});
}

TEST_CASE("linear: causal memory grows linearly with T and stays far below a T x T matrix", "[attention][variants]") {
    VariantFixture f;
    // One head: softmax attention then needs at least one T x T matrix per layer (the scores; its
    // backward several), linear attention O(T c) for the chunks' [c, c] kernels plus O(T D).
    const int64_t C = 8, H = 1;
    // Peak bytes of one forward + backward (B = 1, causal) above what was in use before.
    auto peak_of = [&](const std::string& name, int64_t T) {
        // softmax as the composite: fused = auto would take the tiled kernel (O(T)) here.
        auto attention = name == "softmax" ? f.make(name, {{"fused", "false"}}, C, H) : f.make(name, {}, C, H);
        Tensor x = lab::testing::random_input(f.backend, {1, T, C}, 26);
        lab::AttentionContext context;
        context.causal = true;
        f.backend.reset_peak_memory();
        const double before = static_cast<double>(f.backend.stats().memory.bytes_in_use);
        lab::backward(lab::ops::sum(attention->forward(x, context)));
        return static_cast<double>(f.backend.stats().memory.peak_bytes_in_use) - before;
    };
    const int64_t T = 2048;
    const double score_matrix_bytes = static_cast<double>(T) * T * 4;
    const double linear_half = peak_of("linear", T / 2), linear = peak_of("linear", T);
    const double softmax_half = peak_of("softmax", T / 2), softmax = peak_of("softmax", T);  // composite
    INFO("peak above baseline at T = " << T / 2 << " and " << T << ": linear " << linear_half / 1e6 << " and "
                                       << linear / 1e6 << " MB, softmax " << softmax_half / 1e6 << " and "
                                       << softmax / 1e6 << " MB; one T x T f32 matrix " << score_matrix_bytes / 1e6
                                       << " MB");
    CHECK(linear < score_matrix_bytes / 3);  // measured: about a quarter
    CHECK(linear / linear_half < 2.2);    // O(T): doubling T doubles the memory
    CHECK(softmax / softmax_half > 3.5);  // the same measurement sees the quadratic case
}

// ---------------------------------------------------------------- alibi

TEST_CASE("alibi: slopes follow Press et al. (2022)", "[attention][variants]") {
    std::vector<float> eight = lab::attention::alibi_slopes(8);
    REQUIRE(eight.size() == 8);
    for (size_t h = 0; h < 8; ++h) CHECK(eight[h] == Approx(std::pow(2.0, -static_cast<double>(h + 1))).epsilon(1e-6));
    // Not a power of two: the 4-head slopes, then every other slope of the 8-head sequence.
    std::vector<double> six = {1.0 / 4, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2, 1.0 / 8};
    std::vector<float> got = lab::attention::alibi_slopes(6);
    REQUIRE(got.size() == six.size());
    for (size_t h = 0; h < six.size(); ++h) CHECK(got[h] == Approx(six[h]).epsilon(1e-6));
}

TEST_CASE("alibi: composite output equals softmax with the distance bias, fused agrees", "[attention][variants]") {
    VariantFixture f;
    const int64_t B = 2, T = 9, C = 24, H = 6;
    auto composite = f.make("alibi", {{"fused", "false"}}, C, H);
    auto fused = f.make("alibi", {{"fused", "true"}}, C, H);
    randomize(*composite, 27, kWeightStd);
    fused->load_state_dict(composite->state_dict());
    HostAttention host = read_back(*composite, C, H);
    std::vector<float> slopes = lab::attention::alibi_slopes(H);
    const Bias distance = [&](int64_t h, int64_t i, int64_t j) {
        return -static_cast<double>(slopes[static_cast<size_t>(h)]) * static_cast<double>(std::abs(i - j));
    };
    std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(B * T * C), 28);
    std::vector<int64_t> padding = tail_padding(T);
    for (bool causal : {false, true}) {
        INFO("causal " << causal);
        Doubles want = softmax_output(host, x, B, T, causal ? kCausal : kAll, distance);
        std::vector<float> got = run(*composite, f.backend, x, B, T, C, causal);
        CHECK(max_abs_diff(got, want) < 1e-4);
        CHECK(max_abs_diff(run(*fused, f.backend, x, B, T, C, causal), got) < 1e-5);
        Doubles want_padded = softmax_output(host, x, B, T, causal ? kCausal : kAll, distance, padding);
        std::vector<float> got_padded = run(*composite, f.backend, x, B, T, C, causal, padding);
        CHECK(max_abs_diff(real_rows(got_padded, padding, C), real_rows(want_padded, padding, C)) < 1e-4);
        std::vector<float> fused_padded = run(*fused, f.backend, x, B, T, C, causal, padding);
        CHECK(max_abs_diff(real_rows(fused_padded, padding, C), real_rows(got_padded, padding, C)) < 1e-5);
    }
}

TEST_CASE("alibi: with all scores 0 the attention weights decay as exp(-m (i - j))", "[attention][variants]") {
    // q = 0 makes every score 0, so the weights are softmax(-m_h |i - j|). Parameters chosen so
    // the output reads them out: x_t = e_t (one-hot position), v = x (head h's D value channels
    // are input channels 0 .. D - 1), c_proj = identity, biases 0: output[i, h D + j] = p^h_ij.
    VariantFixture f;
    const int64_t T = 8, H = 2, D = 8, C = H * D;
    const std::vector<float> x = one_hot_positions(1, T, C);
    std::vector<float> slopes = lab::attention::alibi_slopes(H);
    for (const char* fused : {"false", "true"}) {
        auto attention = f.make("alibi", {{"fused", fused}}, C, H);
        set_weight_readout(*attention, C, H);
        for (bool causal : {false, true}) {
            std::vector<float> out = run(*attention, f.backend, x, 1, T, C, causal);
            for (int64_t h = 0; h < H; ++h) {
                const double m = slopes[static_cast<size_t>(h)];
                for (int64_t i = 0; i < T; ++i) {
                    double total = 0.0;
                    for (int64_t j = 0; j < T; ++j)
                        if (!causal || j <= i) total += std::exp(-m * std::abs(i - j));
                    for (int64_t j = 0; j < T; ++j) {
                        double want = (!causal || j <= i) ? std::exp(-m * std::abs(i - j)) / total : 0.0;
                        INFO("fused " << fused << ", causal " << causal << ", head " << h << " (m = " << m
                                      << "), query " << i << ", key " << j);
                        CHECK(out[static_cast<size_t>(i * C + h * D + j)] == Approx(want).margin(1e-6));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- declarations

TEST_CASE("variants: each plugin declares its capabilities, exact options and option ranges", "[attention][variants]") {
    VariantFixture f;
    for (const char* name : {"gqa", "local", "linear", "alibi"}) {
        const lab::PluginInfo& info = f.registry.find("attention", name);
        INFO("attention/" << name);
        CHECK(info.attention.supports.causal);
        CHECK(info.attention.supports.padding_mask);
        // gqa's, local's and alibi's cores handle the last T of S positions, so they decode with a KV
        // cache (test_generate.cpp); linear's assumes queries and keys of the same positions.
        CHECK(info.attention.supports.kv_cache == (std::string(name) != "linear"));
        CHECK_FALSE(info.attention.supports.cross_attention);
    }
    CHECK(f.registry.find("attention", "gqa").attention.equals_softmax_with == OptionMap{{"kv_heads", "0"}});
    CHECK(f.registry.find("attention", "local").attention.equals_softmax_with == OptionMap{{"window", "1000000"}});
    CHECK(f.registry.find("attention", "linear").attention.equals_softmax_with.empty());
    CHECK(f.registry.find("attention", "alibi").attention.equals_softmax_with.empty());
    CHECK_THAT(config_error_of([&] { f.make("linear", {{"chunk", "0"}}, 8, 2); }), Contains("chunk"));
    CHECK_THAT(config_error_of([&] { f.make("linear", {{"eps", "0"}}, 8, 2); }), Contains("eps"));
}

// ---------------------------------------------------------------- conformance

// The shared check (lab::check_attention): shapes, gradients against finite differences,
// causality, batch independence, padding, KV cache, dropout, exactness where declared,
// determinism. The composite and fused paths of each variant are checked on their own.
TEST_CASE("gqa: conformance (multi-query composite, grouped fused)", "[attention][variants]") {
    lab_test::require_conformant("gqa", {{"kv_heads", "1"}});
    lab_test::require_conformant("gqa", {{"kv_heads", "2"}, {"fused", "true"}});
}

TEST_CASE("local: conformance (fused and composite)", "[attention][variants]") {
    lab_test::require_conformant("local", {{"window", "3"}});
    lab_test::require_conformant("local", {{"window", "3"}, {"fused", "false"}});
}

TEST_CASE("linear: conformance (chunked causal and global)", "[attention][variants]") {
    lab_test::require_conformant("linear", {{"chunk", "3"}});
}

TEST_CASE("alibi: conformance (composite and fused)", "[attention][variants]") {
    lab_test::require_conformant("alibi");
    lab_test::require_conformant("alibi", {{"fused", "true"}});
}
