// Helpers for the tests that check attention plugins against references written with plain host
// loops (test_attention_variants.cpp, test_attention_sigmoid_differential.cpp, test_rope_attention.cpp):
// a fixture that builds attention/NAME through the registry on the HostBackend; parameters read,
// set and drawn at a chosen scale; the q, k, v projections and the output projection of a
// MultiHeadAttention recomputed in double precision from its own c_attn and c_proj; running a
// plugin without gradients, padded or not, and comparing its output with a reference.
//
// They report problems through Catch2 (REQUIRE/FAIL), so call them from inside a test case.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/registry.h"

namespace lab_test {

using Doubles = std::vector<double>;
using OptionMap = std::map<std::string, std::string>;

// A registry with the build's plugins (LAB_PLUGIN_DIR) and a HostBackend; the init and dropout
// streams of the build context are seeded with `seed`, so each test file draws its own weights.
struct AttentionFixture {
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;

    explicit AttentionFixture(uint64_t seed) {
        registry.load_directory(LAB_PLUGIN_DIR);
        ctx.backend = &backend;
        ctx.registry = &registry;
        ctx.init_rng = lab::Generator(seed, lab::kStreamInit);
        ctx.dropout_rng = lab::Generator(seed, lab::kStreamDropout);
    }

    // attention/`name` with `options` for hidden C, H heads, block `layer`, no dropout.
    std::shared_ptr<lab::Attention> make(const std::string& name, const OptionMap& options, int64_t C, int64_t H,
                                         int64_t layer = 0) {
        lab::AttentionShape shape;
        shape.hidden = C;
        shape.heads = H;
        shape.layer = layer;
        lab::Options opts = lab::plugin_options(registry, "attention", name, options, "test");
        return registry.factory<lab::AttentionFactory>("attention", name)(opts, shape, ctx);
    }
};

// ---- parameters ----

inline lab::Tensor param(const lab::Module& m, const std::string& name) {
    for (const auto& [n, t] : m.named_parameters())
        if (n == name) return t;
    FAIL("no parameter " << name);
    return lab::Tensor();
}

inline void set_param(const lab::Module& m, const std::string& name, const std::vector<float>& values) {
    lab::Tensor t = param(m, name);
    REQUIRE(static_cast<int64_t>(values.size()) == t.numel());
    t.copy_(lab::Tensor::from_floats(t.backend(), t.shape(), values));
}

// Every parameter N(0, std^2), parameter k drawn from seed + k. The callers pick a std well above
// the default init's N(0, 0.02), whose scores are all near 0: nearly uniform attention would hide
// a wrong mask, map or head mapping.
inline void randomize(const lab::Module& m, uint32_t seed, float std) {
    for (const auto& [name, t] : m.named_parameters()) {
        std::vector<float> v = lab::testing::normal_floats(static_cast<size_t>(t.numel()), seed++);
        for (float& x : v) x *= std;
        set_param(m, name, v);
    }
}

inline Doubles read(const lab::Module& m, const std::string& name) {
    std::vector<float> v = param(m, name).to_floats();
    return Doubles(v.begin(), v.end());
}

// The square identity matrix [n, n], row-major.
inline std::vector<float> identity_matrix(int64_t n) {
    std::vector<float> identity(static_cast<size_t>(n * n), 0.0f);
    for (int64_t c = 0; c < n; ++c) identity[static_cast<size_t>(c * n + c)] = 1.0f;
    return identity;
}

// Parameters that make the output of a MultiHeadAttention with H heads over hidden C read out its
// attention weights: q = k = 0 (every score 0), head h's D value channels are input channels
// 0 .. D - 1, c_proj = identity, biases 0. With x = one_hot_positions(B, T, C) (T <= D),
// output[b, i, h D + j] is head h's weight of key j for query i.
inline void set_weight_readout(const lab::Module& m, int64_t C, int64_t H) {
    const int64_t D = C / H;
    std::vector<float> c_attn(static_cast<size_t>(3 * C * C), 0.0f);  // q rows 0, k rows 0
    for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) c_attn[static_cast<size_t>((2 * C + h * D + d) * C + d)] = 1.0f;
    set_param(m, "c_attn.weight", c_attn);
    set_param(m, "c_attn.bias", std::vector<float>(static_cast<size_t>(3 * C), 0.0f));
    set_param(m, "c_proj.weight", identity_matrix(C));
    set_param(m, "c_proj.bias", std::vector<float>(static_cast<size_t>(C), 0.0f));
}

// x [B, T, C] with x[b, t] = e_t, the one-hot vector of position t (T <= C).
inline std::vector<float> one_hot_positions(int64_t B, int64_t T, int64_t C) {
    std::vector<float> x(static_cast<size_t>(B * T * C), 0.0f);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t) x[static_cast<size_t>((b * T + t) * C + t)] = 1.0f;
    return x;
}

// ---- host references (doubles, plain loops) ----

// The parameters of a MultiHeadAttention read back to the host.
struct HostAttention {
    int64_t C = 0, H = 0, Hkv = 0, D = 0;
    std::vector<float> w_attn, b_attn, w_proj, b_proj;  // [(H + 2 Hkv) D, C], [.], [C, C], [C]
};

inline HostAttention read_back(const lab::Module& m, int64_t C, int64_t H) {
    HostAttention a;
    a.C = C;
    a.H = H;
    a.D = C / H;
    lab::Tensor w = param(m, "c_attn.weight");
    a.Hkv = (w.size(0) / a.D - H) / 2;
    a.w_attn = w.to_floats();
    a.b_attn = param(m, "c_attn.bias").to_floats();
    a.w_proj = param(m, "c_proj.weight").to_floats();
    a.b_proj = param(m, "c_proj.bias").to_floats();
    return a;
}

struct Projected {
    int64_t B = 0, T = 0, H = 0, Hkv = 0, D = 0;
    Doubles q, k, v;  // [B, H, T, D], [B, Hkv, T, D], [B, Hkv, T, D]

    // Index of (b, h, t, d) in q or in a context [B, H, T, D].
    size_t at(int64_t b, int64_t h, int64_t t, int64_t d) const {
        return static_cast<size_t>(((b * H + h) * T + t) * D + d);
    }
    // Index of (b, kv head h, t, d) in k or v.
    size_t kv_at(int64_t b, int64_t h, int64_t t, int64_t d) const {
        return static_cast<size_t>(((b * Hkv + h) * T + t) * D + d);
    }
};

// x [B, T, C] -> q, k, v: rows of c_attn are q heads, then k heads, then v heads, D rows each.
inline Projected project(const HostAttention& a, const std::vector<float>& x, int64_t B, int64_t T) {
    Projected p{B, T, a.H, a.Hkv, a.D, {}, {}, {}};
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
                if (slot < a.H) p.q[p.at(b, slot, t, d)] = y;
                else if (slot < a.H + a.Hkv) p.k[p.kv_at(b, slot - a.H, t, d)] = y;
                else p.v[p.kv_at(b, slot - a.H - a.Hkv, t, d)] = y;
            }
    return p;
}

// context [B, H, T, D] -> heads merged -> c_proj -> [B, T, C].
inline Doubles project_out(const HostAttention& a, const Doubles& context, int64_t B, int64_t T) {
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

// ---- running the plugins ----

// attention(x [B, T, C]) -> [B, T, C] without gradients; padding [B, T], 1 = padded, or none.
inline std::vector<float> run(lab::Attention& attention, lab::Backend& backend, const std::vector<float>& x,
                              int64_t B, int64_t T, int64_t C, bool causal, const std::vector<int64_t>& padding = {}) {
    lab::NoGradGuard no_grad;
    lab::AttentionContext context;
    context.causal = causal;
    if (!padding.empty()) context.padding_mask = lab::Tensor::from_ints(backend, {B, T}, padding, lab::DType::u8);
    return attention.forward(lab::Tensor::from_floats(backend, {B, T, C}, x), context).to_floats();
}

// For each input position j, max over channels of |d output_i / d x_j| for attention(x [1, T, C]):
// one backward seeded with ones at output row i. Exactly 0 where x_j cannot reach output i.
inline std::vector<float> input_influence(lab::Attention& attention, lab::Backend& backend,
                                          const std::vector<float>& x_values, int64_t T, int64_t C, bool causal,
                                          int64_t i) {
    lab::Tensor x = lab::Tensor::from_floats(backend, {1, T, C}, x_values);
    x.set_requires_grad(true);
    lab::AttentionContext context;
    context.causal = causal;
    lab::Tensor out = attention.forward(x, context);
    std::vector<float> seed(static_cast<size_t>(T * C), 0.0f);
    for (int64_t c = 0; c < C; ++c) seed[static_cast<size_t>(i * C + c)] = 1.0f;
    lab::backward(out, lab::Tensor::from_floats(backend, {1, T, C}, seed));
    const std::vector<float> grad = x.grad().to_floats();
    std::vector<float> largest(static_cast<size_t>(T), 0.0f);
    for (int64_t j = 0; j < T; ++j)
        for (int64_t c = 0; c < C; ++c)
            largest[static_cast<size_t>(j)] =
                std::max(largest[static_cast<size_t>(j)], std::fabs(grad[static_cast<size_t>(j * C + c)]));
    return largest;
}

inline double max_abs_diff(const std::vector<float>& got, const Doubles& want) {
    REQUIRE(got.size() == want.size());
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
    return worst;
}

inline double max_abs_diff(const std::vector<float>& got, const std::vector<float>& want) {
    return max_abs_diff(got, Doubles(want.begin(), want.end()));
}

// Padding for B = 2: the first sequence has none, the second its last two positions.
inline std::vector<int64_t> tail_padding(int64_t T) {
    std::vector<int64_t> padding(static_cast<size_t>(2 * T), 0);
    padding[static_cast<size_t>(2 * T - 1)] = padding[static_cast<size_t>(2 * T - 2)] = 1;
    return padding;
}

// The rows [B, T, C] of `values` at unpadded positions (no variant specifies its outputs at padded
// positions); all of them without padding.
template <class Values>
Values real_rows(const Values& values, const std::vector<int64_t>& padding, int64_t C) {
    if (padding.empty()) return values;
    Values out;
    for (size_t r = 0; r < padding.size(); ++r)
        if (!padding[r])
            out.insert(out.end(), values.begin() + static_cast<std::ptrdiff_t>(r * C),
                       values.begin() + static_cast<std::ptrdiff_t>((r + 1) * C));
    return out;
}

// The message of the lab::ConfigError that `f` throws; "(no ConfigError)" when it throws none.
inline std::string config_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const lab::ConfigError& e) {
        return e.what();
    }
    return "(no ConfigError)";
}

}  // namespace lab_test
