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
#include "gradcheck.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"

using lab::Shape;
using lab::Tensor;
using Catch::Matchers::Contains;

namespace {

using Doubles = std::vector<double>;
using OptionMap = std::map<std::string, std::string>;

struct VariantFixture {
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;

    VariantFixture() {
        registry.load_directory(LAB_PLUGIN_DIR);
        ctx.backend = &backend;
        ctx.registry = &registry;
        ctx.init_rng = lab::Generator(11, lab::kStreamInit);
        ctx.dropout_rng = lab::Generator(11, lab::kStreamDropout);
    }

    // attention/`name` with `options` for hidden C and H heads, no dropout.
    std::shared_ptr<lab::Attention> make(const std::string& name, const OptionMap& options, int64_t C, int64_t H) {
        lab::AttentionShape shape;
        shape.hidden = C;
        shape.heads = H;
        lab::Options opts = lab::plugin_options(registry, "attention", name, options, "test");
        return registry.factory<lab::AttentionFactory>("attention", name)(opts, shape, ctx);
    }
};

Tensor param(const lab::Module& m, const std::string& name) {
    for (const auto& [n, t] : m.named_parameters())
        if (n == name) return t;
    FAIL("no parameter " << name);
    return Tensor();
}

void set_param(const lab::Module& m, const std::string& name, const std::vector<float>& values) {
    Tensor t = param(m, name);
    REQUIRE(static_cast<int64_t>(values.size()) == t.numel());
    t.copy_(Tensor::from_floats(t.backend(), t.shape(), values));
}

// Every parameter N(0, std^2): the default N(0, 0.02) makes all scores near 0 and every
// attention nearly uniform, which would hide wrong masks and wrong head mappings.
void randomize(const lab::Module& m, uint32_t seed, float std = 0.4f) {
    for (const auto& [name, t] : m.named_parameters()) {
        std::vector<float> v = lab::testing::normal_floats(static_cast<size_t>(t.numel()), seed++);
        for (float& x : v) x *= std;
        set_param(m, name, v);
    }
}

// ---- host references (doubles, plain loops) ----

// The parameters of a MultiHeadAttention read back to the host.
struct HostAttention {
    int64_t C = 0, H = 0, Hkv = 0, D = 0;
    std::vector<float> w_attn, b_attn, w_proj, b_proj;  // [(H + 2 Hkv) D, C], [.], [C, C], [C]
};

HostAttention read_back(const lab::Module& m, int64_t C, int64_t H) {
    HostAttention a;
    a.C = C;
    a.H = H;
    a.D = C / H;
    Tensor w = param(m, "c_attn.weight");
    a.Hkv = (w.size(0) / a.D - H) / 2;
    a.w_attn = w.to_floats();
    a.b_attn = param(m, "c_attn.bias").to_floats();
    a.w_proj = param(m, "c_proj.weight").to_floats();
    a.b_proj = param(m, "c_proj.bias").to_floats();
    return a;
}

struct Projected {
    Doubles q, k, v;  // [B, H, T, D], [B, Hkv, T, D], [B, Hkv, T, D]
};

// x [B, T, C] -> q, k, v: rows of c_attn are q heads, then k heads, then v heads, D rows each.
Projected project(const HostAttention& a, const std::vector<float>& x, int64_t B, int64_t T) {
    Projected p;
    p.q.assign(static_cast<size_t>(B * a.H * T * a.D), 0.0);
    p.k.assign(static_cast<size_t>(B * a.Hkv * T * a.D), 0.0);
    p.v = p.k;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t r = 0; r < (a.H + 2 * a.Hkv) * a.D; ++r) {
                double y = a.b_attn[static_cast<size_t>(r)];
                for (int64_t c = 0; c < a.C; ++c)
                    y += static_cast<double>(a.w_attn[static_cast<size_t>(r * a.C + c)]) *
                         x[static_cast<size_t>((b * T + t) * a.C + c)];
                int64_t slot = r / a.D, d = r % a.D;
                if (slot < a.H) p.q[static_cast<size_t>(((b * a.H + slot) * T + t) * a.D + d)] = y;
                else if (slot < a.H + a.Hkv) p.k[static_cast<size_t>(((b * a.Hkv + slot - a.H) * T + t) * a.D + d)] = y;
                else p.v[static_cast<size_t>(((b * a.Hkv + slot - a.H - a.Hkv) * T + t) * a.D + d)] = y;
            }
    return p;
}

// context [B, H, T, D] -> heads merged -> c_proj -> [B, T, C].
Doubles project_out(const HostAttention& a, const Doubles& context, int64_t B, int64_t T) {
    Doubles out(static_cast<size_t>(B * T * a.C));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t o = 0; o < a.C; ++o) {
                double y = a.b_proj[static_cast<size_t>(o)];
                for (int64_t c = 0; c < a.C; ++c) {
                    int64_t h = c / a.D, d = c % a.D;
                    y += static_cast<double>(a.w_proj[static_cast<size_t>(o * a.C + c)]) *
                         context[static_cast<size_t>(((b * a.H + h) * T + t) * a.D + d)];
                }
                out[static_cast<size_t>((b * T + t) * a.C + o)] = y;
            }
    return out;
}

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
                    for (int64_t d = 0; d < D; ++d)
                        s += p.q[static_cast<size_t>(((b * H + h) * T + i) * D + d)] *
                             p.k[static_cast<size_t>(((b * a.Hkv + kvh) * T + j) * D + d)];
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
                        context[static_cast<size_t>(((b * H + h) * T + i) * D + d)] +=
                            weight[static_cast<size_t>(j)] / total *
                            p.v[static_cast<size_t>(((b * a.Hkv + kvh) * T + j) * D + d)];
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
                        kernel += phi(p.q[static_cast<size_t>(((b * H + h) * T + i) * D + d)]) *
                                  phi(p.k[static_cast<size_t>(((b * H + h) * T + j) * D + d)]);
                    denominator += kernel;
                    for (int64_t d = 0; d < D; ++d)
                        numerator[static_cast<size_t>(d)] +=
                            kernel * p.v[static_cast<size_t>(((b * H + h) * T + j) * D + d)];
                }
                for (int64_t d = 0; d < D; ++d)
                    context[static_cast<size_t>(((b * H + h) * T + i) * D + d)] =
                        numerator[static_cast<size_t>(d)] / (denominator + eps);
            }
    return project_out(a, context, B, T);
}

// ---- running the plugins ----

std::vector<float> run(lab::Attention& attention, lab::Backend& backend, const std::vector<float>& x, int64_t B,
                       int64_t T, int64_t C, bool causal, const std::vector<int64_t>& padding = {}) {
    lab::NoGradGuard no_grad;
    lab::AttentionContext context;
    context.causal = causal;
    if (!padding.empty()) context.padding_mask = Tensor::from_ints(backend, {B, T}, padding, lab::DType::u8);
    return attention.forward(Tensor::from_floats(backend, {B, T, C}, x), context).to_floats();
}

double max_abs_diff(const std::vector<float>& got, const Doubles& want) {
    REQUIRE(got.size() == want.size());
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
    return worst;
}

double max_abs_diff(const std::vector<float>& got, const std::vector<float>& want) {
    return max_abs_diff(got, Doubles(want.begin(), want.end()));
}

// Padding pattern for B = 2: the first sequence has none, the second its last two positions.
std::vector<int64_t> tail_padding(int64_t T) {
    std::vector<int64_t> padding(static_cast<size_t>(2 * T), 0);
    padding[static_cast<size_t>(2 * T - 1)] = padding[static_cast<size_t>(2 * T - 2)] = 1;
    return padding;
}

// Rows of `values` [B, T, C] at the positions where `padding` is 0 (outputs at padded positions
// are not specified by any variant).
template <class Values>
Values real_rows(const Values& values, const std::vector<int64_t>& padding, int64_t C) {
    Values out;
    for (size_t r = 0; r < padding.size(); ++r)
        if (!padding[r])
            out.insert(out.end(), values.begin() + static_cast<std::ptrdiff_t>(r * C),
                       values.begin() + static_cast<std::ptrdiff_t>((r + 1) * C));
    return out;
}

std::string config_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const lab::ConfigError& e) {
        return e.what();
    }
    return "(no ConfigError)";
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
    randomize(*attention, 3);
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
            randomize(*attention, 7);
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
    randomize(*gqa, 9);
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
    randomize(*attention, 12);
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
        randomize(*fused, 15);
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
        randomize(*attention, 17);
        for (bool causal : {false, true}) {
            for (int64_t i : {int64_t{0}, int64_t{5}, T - 1}) {
                // d output_i / d x_j through one backward seeded with ones at row i.
                Tensor x = Tensor::from_floats(f.backend, {1, T, C}, x_values);
                x.set_requires_grad(true);
                lab::AttentionContext context;
                context.causal = causal;
                Tensor out = attention->forward(x, context);
                std::vector<float> seed(static_cast<size_t>(T * C), 0.0f);
                for (int64_t c = 0; c < C; ++c) seed[static_cast<size_t>(i * C + c)] = 1.0f;
                lab::backward(out, Tensor::from_floats(f.backend, {1, T, C}, seed));
                std::vector<float> grad = x.grad().to_floats();
                for (int64_t j = 0; j < T; ++j) {
                    float largest = 0.0f;
                    for (int64_t c = 0; c < C; ++c)
                        largest = std::max(largest, std::fabs(grad[static_cast<size_t>(j * C + c)]));
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
    randomize(*local, 18);
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
            randomize(*attention, 21);
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
    randomize(*attention, 22);
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
    randomize(*attention, 24);
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
        auto attention = f.make(name, {}, C, H);
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
    randomize(*composite, 27);
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
    std::vector<float> x(static_cast<size_t>(T * C), 0.0f);
    for (int64_t t = 0; t < T; ++t) x[static_cast<size_t>(t * C + t)] = 1.0f;
    std::vector<float> c_attn(static_cast<size_t>(3 * C * C), 0.0f);  // q rows 0, k rows 0
    for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) c_attn[static_cast<size_t>((2 * C + h * D + d) * C + d)] = 1.0f;
    std::vector<float> identity(static_cast<size_t>(C * C), 0.0f);
    for (int64_t c = 0; c < C; ++c) identity[static_cast<size_t>(c * C + c)] = 1.0f;
    std::vector<float> slopes = lab::attention::alibi_slopes(H);
    for (const char* fused : {"false", "true"}) {
        auto attention = f.make("alibi", {{"fused", fused}}, C, H);
        set_param(*attention, "c_attn.weight", c_attn);
        set_param(*attention, "c_attn.bias", std::vector<float>(static_cast<size_t>(3 * C), 0.0f));
        set_param(*attention, "c_proj.weight", identity);
        set_param(*attention, "c_proj.bias", std::vector<float>(static_cast<size_t>(C), 0.0f));
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
