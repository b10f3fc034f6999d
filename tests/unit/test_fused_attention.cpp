// The fused attention op (attention::fused_attention over HostBackend::attention and
// attention_backward) against the composite reference attention::softmax_attention: outputs and
// the gradients of q, k and v for every masking rule of AttentionKernelArgs (causal with the
// S - T offset, windows, key padding, ALiBi, grouped kv heads), sizes that are not multiples of
// the 64-wide tiles, finite-difference gradient checks, dropout, rows with no visible key, shape
// errors, determinism across thread counts and O(T) memory.
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "lab/attention.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/rng.h"

using namespace lab;
using lab::testing::normal_floats;

namespace {

// One attention problem. q comes from a [B, T, H, D] leaf and k, v from [B, S, Hkv, D] leaves
// through transpose, as MultiHeadAttention hands them over, so the kernels see strided views.
struct Case {
    std::string name{};
    int64_t B = 1, H = 2, Hkv = 2, T = 5, S = 5, D = 8;
    bool causal = false;
    int64_t window = 0;
    bool alibi = false;
    std::vector<uint8_t> padding{};  // [B, S], nonzero = padded key; empty: no mask
    uint32_t seed = 1;

    float scale() const { return 1.0f / std::sqrt(static_cast<float>(D)); }
    // The masking rules of AttentionKernelArgs, written out plainly.
    bool hidden(int64_t b, int64_t i, int64_t j) const {
        const int64_t pos = i + (S - T);
        if (causal && j > pos) return true;
        if (window > 0 && (causal ? j <= pos - window : std::abs(pos - j) >= window)) return true;
        return !padding.empty() && padding[static_cast<size_t>(b * S + j)] != 0;
    }
    bool has_visible_key(int64_t b, int64_t i) const {
        for (int64_t j = 0; j < S; ++j)
            if (!hidden(b, i, j)) return true;
        return false;
    }
};

struct Leaves {
    Tensor q, k, v;  // [B, T, H, D], [B, S, Hkv, D], [B, S, Hkv, D]
};

Leaves make_leaves(Backend& backend, const Case& c, bool requires_grad = true) {
    auto leaf = [&](const Shape& shape, uint32_t seed) {
        Tensor t = Tensor::from_floats(backend, shape, normal_floats(static_cast<size_t>(shape_numel(shape)), seed));
        t.set_requires_grad(requires_grad);
        return t;
    };
    return {leaf({c.B, c.T, c.H, c.D}, c.seed), leaf({c.B, c.S, c.Hkv, c.D}, c.seed + 100),
            leaf({c.B, c.S, c.Hkv, c.D}, c.seed + 200)};
}

AttentionCoreArgs core_args(Backend& backend, const Case& c) {
    AttentionCoreArgs args;
    args.causal = c.causal;
    args.scale = c.scale();
    if (!c.padding.empty()) {
        std::vector<int64_t> flags(c.padding.begin(), c.padding.end());
        args.key_padding_mask = Tensor::from_ints(backend, {c.B, c.S}, flags, DType::u8);
    }
    return args;
}

Tensor slopes_tensor(Backend& backend, int64_t heads) {
    return Tensor::from_floats(backend, {heads}, attention::alibi_slopes(heads));
}

// What softmax_attention needs to compute the same function: the window as a [T, S] mask and
// ALiBi as an [H, T, S] bias.
Tensor window_mask(Backend& backend, const Case& c) {
    std::vector<int64_t> m(static_cast<size_t>(c.T * c.S));
    for (int64_t i = 0; i < c.T; ++i)
        for (int64_t j = 0; j < c.S; ++j) {
            const int64_t pos = i + (c.S - c.T);
            m[static_cast<size_t>(i * c.S + j)] = c.causal ? j <= pos - c.window : std::abs(pos - j) >= c.window;
        }
    return Tensor::from_ints(backend, {c.T, c.S}, m, DType::u8);
}

Tensor alibi_bias(Backend& backend, const Case& c) {
    const std::vector<float> slopes = attention::alibi_slopes(c.H);
    std::vector<float> bias(static_cast<size_t>(c.H * c.T * c.S));
    for (int64_t h = 0; h < c.H; ++h)
        for (int64_t i = 0; i < c.T; ++i)
            for (int64_t j = 0; j < c.S; ++j)
                bias[static_cast<size_t>((h * c.T + i) * c.S + j)] =
                    -slopes[static_cast<size_t>(h)] * static_cast<float>(std::abs(i + (c.S - c.T) - j));
    return Tensor::from_floats(backend, {c.H, c.T, c.S}, bias);
}

// A random seed gradient for the output, zero on queries with no visible key: there the two
// implementations differ by design (the fused one returns zeros, the composite one an average
// over padding), so those rows must not feed the compared gradients.
std::vector<float> seed_gradient(const Case& c) {
    std::vector<float> r = normal_floats(static_cast<size_t>(c.B * c.H * c.T * c.D), c.seed + 300);
    for (int64_t b = 0; b < c.B; ++b)
        for (int64_t i = 0; i < c.T; ++i)
            if (!c.has_visible_key(b, i))
                for (int64_t h = 0; h < c.H; ++h)
                    std::fill_n(r.begin() + ((b * c.H + h) * c.T + i) * c.D, c.D, 0.0f);
    return r;
}

struct Run {
    std::vector<float> out, dq, dk, dv;  // out [B, H, T, D]; gradients in the leaves' layouts
};

Run run_attention(Backend& backend, const Case& c, bool fused, Generator* dropout_rng = nullptr,
                  float dropout = 0.0f) {
    Leaves leaves = make_leaves(backend, c);
    Tensor q = ops::transpose(leaves.q, 1, 2), k = ops::transpose(leaves.k, 1, 2), v = ops::transpose(leaves.v, 1, 2);
    AttentionCoreArgs args = core_args(backend, c);
    args.dropout_rng = dropout_rng;
    args.dropout = dropout;
    args.training = dropout > 0.0f;
    Tensor out;
    if (fused) {
        out = attention::fused_attention(q, k, v, args, c.window, c.alibi ? slopes_tensor(backend, c.H) : Tensor());
    } else {
        out = attention::softmax_attention(q, k, v, args, c.window > 0 ? window_mask(backend, c) : Tensor(),
                                           c.alibi ? alibi_bias(backend, c) : Tensor());
    }
    REQUIRE(out.shape() == Shape{c.B, c.H, c.T, c.D});
    lab::backward(out, Tensor::from_floats(backend, out.shape(), seed_gradient(c)));
    REQUIRE(leaves.q.grad().defined());
    REQUIRE(leaves.k.grad().defined());
    REQUIRE(leaves.v.grad().defined());
    return {out.to_floats(), leaves.q.grad().to_floats(), leaves.k.grad().to_floats(), leaves.v.grad().to_floats()};
}

// |got - want| <= tol * max(1, |want|) for every element.
void check_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                 double tol = 1e-5) {
    REQUIRE(got.size() == want.size());
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::abs(static_cast<double>(got[i]) - want[i]) / std::max(1.0, std::abs(double(want[i])));
        if (!(err <= worst)) {
            worst = err;
            at = i;
        }
    }
    INFO(what << ": worst scaled error " << worst << " at element " << at << " (got " << got[at] << ", want "
              << want[at] << ")");
    CHECK(worst <= tol);
}

// Rows of out [B, H, T, D] for queries without a visible key set to zero (for comparisons).
std::vector<float> visible_rows(std::vector<float> out, const Case& c) {
    for (int64_t b = 0; b < c.B; ++b)
        for (int64_t i = 0; i < c.T; ++i)
            if (!c.has_visible_key(b, i))
                for (int64_t h = 0; h < c.H; ++h)
                    std::fill_n(out.begin() + ((b * c.H + h) * c.T + i) * c.D, c.D, 0.0f);
    return out;
}

void compare_with_composite(const Case& c) {
    HostBackend backend;
    const Run fused = run_attention(backend, c, true);
    const Run composite = run_attention(backend, c, false);
    INFO("case " << c.name);
    // Queries that see no key: exactly zero from the fused kernel.
    CHECK(visible_rows(fused.out, c) == fused.out);
    check_close(fused.out, visible_rows(composite.out, c), c.name + ": output");
    check_close(fused.dq, composite.dq, c.name + ": dq");
    check_close(fused.dk, composite.dk, c.name + ": dk");
    check_close(fused.dv, composite.dv, c.name + ": dv");
}

}  // namespace

TEST_CASE("fused attention: equals softmax_attention, output and gradients", "[attention][fused]") {
    std::vector<Case> cases;
    auto add = [&](Case c) { cases.push_back(std::move(c)); };
    add({.name = "non-causal, D = 8", .B = 2, .H = 2, .Hkv = 2, .T = 5, .S = 5, .D = 8});
    add({.name = "non-causal, T = 130, D = 64", .B = 1, .H = 2, .Hkv = 2, .T = 130, .S = 130, .D = 64, .seed = 2});
    add({.name = "causal, T = 67, D = 64", .B = 2, .H = 2, .Hkv = 2, .T = 67, .S = 67, .D = 64, .causal = true,
         .seed = 3});
    add({.name = "causal, T = 130, D = 8", .B = 1, .H = 2, .Hkv = 2, .T = 130, .S = 130, .D = 8, .causal = true,
         .seed = 4});
    add({.name = "causal, T = 70 < S = 130 (offset)", .B = 1, .H = 2, .Hkv = 2, .T = 70, .S = 130, .D = 8,
         .causal = true, .seed = 5});
    add({.name = "non-causal, T = 9 != S = 67", .B = 2, .H = 2, .Hkv = 2, .T = 9, .S = 67, .D = 8, .seed = 6});
    add({.name = "non-causal, T = 130 > S = 67", .B = 1, .H = 2, .Hkv = 2, .T = 130, .S = 67, .D = 8, .seed = 7});
    add({.name = "GQA H = 4, Hkv = 2, causal", .B = 1, .H = 4, .Hkv = 2, .T = 67, .S = 67, .D = 8, .causal = true,
         .seed = 8});
    add({.name = "MQA H = 4, Hkv = 1", .B = 2, .H = 4, .Hkv = 1, .T = 67, .S = 67, .D = 64, .seed = 9});
    add({.name = "window 16, causal", .B = 1, .H = 2, .Hkv = 2, .T = 130, .S = 130, .D = 8, .causal = true,
         .window = 16, .seed = 10});
    add({.name = "window 7, non-causal", .B = 1, .H = 2, .Hkv = 2, .T = 130, .S = 130, .D = 8, .window = 7,
         .seed = 11});
    add({.name = "window 70, causal, T = 67 < S = 130", .B = 1, .H = 2, .Hkv = 1, .T = 67, .S = 130, .D = 8,
         .causal = true, .window = 70, .seed = 12});
    add({.name = "ALiBi, causal", .B = 1, .H = 4, .Hkv = 4, .T = 67, .S = 67, .D = 64, .causal = true,
         .alibi = true, .seed = 13});
    add({.name = "ALiBi, non-causal, T != S", .B = 1, .H = 3, .Hkv = 3, .T = 40, .S = 130, .D = 8, .alibi = true,
         .seed = 14});
    {
        // Batch 0: keys 3, 4 and 60..66 padded; batch 1: every key but 0 and 66 padded, so causal
        // queries 0..65 of batch 1 see key 0 only.
        Case c{.name = "key padding", .B = 2, .H = 2, .Hkv = 2, .T = 67, .S = 67, .D = 8, .seed = 15};
        c.padding.assign(static_cast<size_t>(c.B * c.S), 0);
        c.padding[3] = c.padding[4] = 1;
        for (int64_t j = 60; j < c.S; ++j) c.padding[static_cast<size_t>(j)] = 1;
        for (int64_t j = 1; j < c.S - 1; ++j) c.padding[static_cast<size_t>(c.S + j)] = 1;
        add(c);
        c.name = "key padding, causal";
        c.causal = true;
        add(c);
        // Windowed queries of batch 1 that see neither key 0 nor key 66: rows with no visible key.
        c.name = "key padding, causal window 5, ALiBi, GQA";
        c.H = 4;
        c.window = 5;
        c.alibi = true;
        add(c);
    }
    {
        Case c{.name = "a fully padded batch row", .B = 2, .H = 2, .Hkv = 1, .T = 70, .S = 70, .D = 8, .seed = 16};
        c.padding.assign(static_cast<size_t>(c.B * c.S), 0);
        std::fill(c.padding.begin() + c.S, c.padding.end(), 1);
        add(c);
    }
    for (const Case& c : cases) {
        SECTION(c.name) { compare_with_composite(c); }
    }
}

TEST_CASE("fused attention: finite-difference gradients", "[attention][fused][gradcheck]") {
    HostBackend backend;
    struct Small {
        const char* name;
        Case c;
    };
    std::vector<Small> cases = {
        {"plain", {.B = 1, .H = 2, .Hkv = 2, .T = 3, .S = 4, .D = 3}},
        {"causal, GQA", {.B = 1, .H = 2, .Hkv = 1, .T = 4, .S = 4, .D = 3, .causal = true}},
        {"causal, T > S (queries without keys)", {.B = 1, .H = 1, .Hkv = 1, .T = 5, .S = 3, .D = 2, .causal = true}},
        {"window, ALiBi, padding", {.B = 2, .H = 2, .Hkv = 1, .T = 4, .S = 5, .D = 3, .window = 2, .alibi = true,
                                    .padding = {0, 0, 1, 0, 0, 0, 0, 0, 0, 1}}},
    };
    for (const Small& s : cases) {
        SECTION(s.name) {
            const Case& c = s.c;
            AttentionCoreArgs args = core_args(backend, c);
            Tensor slopes = c.alibi ? slopes_tensor(backend, c.H) : Tensor();
            auto f = [&](const std::vector<Tensor>& in) {
                return attention::fused_attention(in[0], in[1], in[2], args, c.window, slopes);
            };
            testing::gradcheck(s.name, f,
                               {testing::random_input(backend, {c.B, c.H, c.T, c.D}, 1),
                                testing::random_input(backend, {c.B, c.Hkv, c.S, c.D}, 2),
                                testing::random_input(backend, {c.B, c.Hkv, c.S, c.D}, 3)});
        }
    }
}

TEST_CASE("fused attention: dropout", "[attention][fused][dropout]") {
    HostBackend backend;
    const Case c{.B = 1, .H = 2, .Hkv = 1, .T = 67, .S = 70, .D = 8, .causal = true, .seed = 21};
    const float p = 0.3f;

    SECTION("the same generator state gives the same mask as softmax_attention's dropout") {
        Generator fused_rng(7, kStreamDropout), composite_rng(7, kStreamDropout);
        const Run fused = run_attention(backend, c, true, &fused_rng, p);
        const Run composite = run_attention(backend, c, false, &composite_rng, p);
        CHECK(fused_rng.offset() == composite_rng.offset());
        CHECK(fused_rng.offset() >= static_cast<uint64_t>(c.B * c.H * c.T * c.S));
        check_close(fused.out, composite.out, "dropout output");
        check_close(fused.dq, composite.dq, "dropout dq");
        check_close(fused.dk, composite.dk, "dropout dk");
        check_close(fused.dv, composite.dv, "dropout dv");
        // Dropout did something: the result differs from the one without it.
        const Run plain = run_attention(backend, c, true);
        CHECK(fused.out != plain.out);
    }
    SECTION("the same key gives identical results, another key different ones") {
        Generator a(5, kStreamDropout), b(5, kStreamDropout), other(6, kStreamDropout);
        const Run first = run_attention(backend, c, true, &a, p);
        const Run second = run_attention(backend, c, true, &b, p);
        const Run third = run_attention(backend, c, true, &other, p);
        CHECK(first.out == second.out);
        CHECK(first.dq == second.dq);
        CHECK(first.dk == second.dk);
        CHECK(first.dv == second.dv);
        CHECK(first.out != third.out);
    }
    SECTION("p = 0 and evaluation mode are exactly no dropout") {
        Generator rng(5, kStreamDropout);
        const Run plain = run_attention(backend, c, true);
        const Run zero = run_attention(backend, c, true, &rng, 0.0f);
        CHECK(zero.out == plain.out);
        CHECK(zero.dq == plain.dq);
        CHECK(zero.dk == plain.dk);
        CHECK(zero.dv == plain.dv);
        CHECK(rng.offset() == 0);  // nothing drawn

        Leaves leaves = make_leaves(backend, c, false);
        AttentionCoreArgs args = core_args(backend, c);
        args.dropout_rng = &rng;
        args.dropout = 0.5f;
        args.training = false;
        Tensor eval = attention::fused_attention(ops::transpose(leaves.q, 1, 2), ops::transpose(leaves.k, 1, 2),
                                                 ops::transpose(leaves.v, 1, 2), args);
        CHECK(eval.to_floats() == plain.out);
        CHECK(rng.offset() == 0);
    }
    SECTION("the expected output is preserved") {
        // Equal scores (q = 0) and v = 1: each output element is the mean of S dropout factors,
        // 1 in expectation with a standard deviation of sqrt(p / (1 - p) / S) = 0.036 per row;
        // the mean over 4 x 256 rows has a standard deviation of 0.0011.
        const int64_t B = 1, H = 4, T = 256, S = 256, D = 4;
        Tensor q = Tensor::zeros(backend, {B, H, T, D});
        Tensor k = testing::random_input(backend, {B, H, S, D}, 3);
        Tensor v = Tensor::full(backend, {B, H, S, D}, 1.0);
        Generator rng(11, kStreamDropout);
        AttentionCoreArgs args;
        args.scale = 0.5f;
        args.dropout = 0.25f;
        args.training = true;
        args.dropout_rng = &rng;
        const std::vector<float> out = attention::fused_attention(q, k, v, args).to_floats();
        double sum = 0.0, sum_sq = 0.0;
        for (float x : out) {
            sum += x;
            sum_sq += static_cast<double>(x) * x;
        }
        const double mean = sum / static_cast<double>(out.size());
        const double stddev = std::sqrt(sum_sq / static_cast<double>(out.size()) - mean * mean);
        CHECK(std::abs(mean - 1.0) < 0.01);
        CHECK(stddev > 0.02);  // the factors really vary per key
        CHECK(stddev < 0.06);
    }
    SECTION("finite-difference gradient with a fixed mask") {
        const Case s{.B = 1, .H = 2, .Hkv = 1, .T = 4, .S = 5, .D = 3, .causal = true};
        Generator rng(3, kStreamDropout);
        AttentionCoreArgs args = core_args(backend, s);
        args.dropout = 0.4f;
        args.training = true;
        args.dropout_rng = &rng;
        auto f = [&](const std::vector<Tensor>& in) {
            rng.set_offset(0);  // every evaluation draws the same mask
            return attention::fused_attention(in[0], in[1], in[2], args);
        };
        testing::gradcheck("fused attention with dropout", f,
                           {testing::random_input(backend, {s.B, s.H, s.T, s.D}, 4),
                            testing::random_input(backend, {s.B, s.Hkv, s.S, s.D}, 5),
                            testing::random_input(backend, {s.B, s.Hkv, s.S, s.D}, 6)});
    }
}

TEST_CASE("fused attention: a query with no visible key gets zero output, lse -inf and no gradient",
          "[attention][fused]") {
    HostBackend backend;
    // Causal with T = 70 > S = 6: query i sees keys j <= i - 64, so queries 0..63 see none.
    const Case c{.B = 1, .H = 2, .Hkv = 2, .T = 70, .S = 6, .D = 8, .causal = true, .seed = 31};
    Leaves leaves = make_leaves(backend, c);
    Tensor q = ops::transpose(leaves.q, 1, 2), k = ops::transpose(leaves.k, 1, 2), v = ops::transpose(leaves.v, 1, 2);
    Tensor out = attention::fused_attention(q, k, v, core_args(backend, c));
    const std::vector<float> r = normal_floats(static_cast<size_t>(out.numel()), 32);  // nonzero on every row
    lab::backward(out, Tensor::from_floats(backend, out.shape(), r));
    const std::vector<float> o = out.to_floats(), dq = leaves.q.grad().to_floats();
    for (int64_t h = 0; h < c.H; ++h)
        for (int64_t i = 0; i < c.T; ++i)
            for (int64_t d = 0; d < c.D; ++d) {
                const float value = o[static_cast<size_t>(((h * c.T) + i) * c.D + d)];
                const float grad = dq[static_cast<size_t>((i * c.H + h) * c.D + d)];  // dq in [B, T, H, D]
                INFO("head " << h << ", query " << i << ", d " << d);
                if (i < 64) {
                    CHECK(value == 0.0f);
                    CHECK(grad == 0.0f);
                } else {
                    CHECK(value != 0.0f);
                    CHECK(std::isfinite(grad));
                }
            }
    for (float x : leaves.k.grad().to_floats()) CHECK(std::isfinite(x));
    for (float x : leaves.v.grad().to_floats()) CHECK(std::isfinite(x));

    // The kernel itself: lse = -inf on those rows, finite elsewhere.
    Tensor o2 = Tensor::empty(backend, {c.B, c.H, c.T, c.D}), lse = Tensor::empty(backend, {c.B, c.H, c.T});
    AttentionKernelArgs kargs;
    kargs.scale = c.scale();
    kargs.causal = true;
    backend.attention(o2, lse, q.detach(), k.detach(), v.detach(), kargs);
    const std::vector<float> lse_values = lse.to_floats();
    for (int64_t h = 0; h < c.H; ++h)
        for (int64_t i = 0; i < c.T; ++i) {
            const float value = lse_values[static_cast<size_t>(h * c.T + i)];
            INFO("head " << h << ", query " << i << ": lse " << value);
            if (i < 64)
                CHECK((std::isinf(value) && value < 0));
            else
                CHECK(std::isfinite(value));
        }
    CHECK(o2.to_floats() == o);
}

TEST_CASE("fused attention: bit-identical results for any thread count", "[attention][fused]") {
    // One thread runs the one-pass backward, three threads (more than the two (b, kv head)
    // pairs) the two-pass one: both must give the same bits, with dropout on.
    HostBackend backend;
    std::vector<Case> cases = {
        {.name = "causal, ALiBi, GQA", .B = 1, .H = 4, .Hkv = 2, .T = 200, .S = 200, .D = 64, .causal = true,
         .alibi = true, .seed = 41},
        {.name = "window, padding, T != S", .B = 2, .H = 2, .Hkv = 1, .T = 100, .S = 130, .D = 8, .window = 20,
         .padding = std::vector<uint8_t>(260, 0), .seed = 42},
    };
    for (int64_t j = 120; j < 260; j += 3) cases[1].padding[static_cast<size_t>(j)] = 1;
    // Restores the thread count however the section ends.
    struct ThreadCount {
        int saved = omp_get_max_threads();
        ~ThreadCount() { omp_set_num_threads(saved); }
    } thread_count;
    for (const Case& c : cases) {
        SECTION(c.name) {
            omp_set_num_threads(1);
            Generator rng1(9, kStreamDropout);
            const Run one = run_attention(backend, c, true, &rng1, 0.1f);
            omp_set_num_threads(std::max(thread_count.saved, 3));
            Generator rng2(9, kStreamDropout), rng3(9, kStreamDropout);
            const Run many = run_attention(backend, c, true, &rng2, 0.1f);
            const Run again = run_attention(backend, c, true, &rng3, 0.1f);
            omp_set_num_threads(thread_count.saved);
            CHECK(one.out == many.out);
            CHECK(one.dq == many.dq);
            CHECK(one.dk == many.dk);
            CHECK(one.dv == many.dv);
            CHECK(many.out == again.out);
            CHECK(many.dq == again.dq);
            CHECK(many.dk == again.dk);
            CHECK(many.dv == again.dv);
        }
    }
}

TEST_CASE("fused attention: strided inputs give the same bits as contiguous ones", "[attention][fused]") {
    HostBackend backend;
    const int64_t B = 2, H = 2, T = 70, S = 67, D = 8;
    // q with a strided last dim (a transposed [B, H, D, T]), k a transposed [B, S, H, D] as the
    // projections give it, v a slice of a wider tensor.
    Tensor q = ops::transpose(testing::random_input(backend, {B, H, D, T}, 1), 2, 3);
    Tensor k = ops::transpose(testing::random_input(backend, {B, S, H, D}, 2), 1, 2);
    Tensor v = ops::slice(testing::random_input(backend, {B, H, S, 2 * D}, 3), 3, D, 2 * D);
    REQUIRE(q.strides()[3] == T);
    REQUIRE(!k.is_contiguous());
    REQUIRE(!v.is_contiguous());
    const Tensor qc = q.contiguous_copy(), kc = k.contiguous_copy(), vc = v.contiguous_copy();
    const Tensor dout = testing::random_input(backend, {B, H, T, D}, 4);
    AttentionKernelArgs args;
    args.scale = 0.35f;
    args.causal = true;
    args.window = 30;

    auto run = [&](const Tensor& q_in, const Tensor& k_in, const Tensor& v_in) {
        Tensor o = Tensor::empty(backend, {B, H, T, D}), lse = Tensor::empty(backend, {B, H, T});
        Tensor dq = Tensor::empty(backend, {B, H, T, D}), dk = Tensor::empty(backend, {B, H, S, D}),
               dv = Tensor::empty(backend, {B, H, S, D});
        backend.attention(o, lse, q_in, k_in, v_in, args);
        backend.attention_backward(dq, dk, dv, dout, q_in, k_in, v_in, o, lse, args);
        return std::vector<std::vector<float>>{o.to_floats(), lse.to_floats(), dq.to_floats(), dk.to_floats(),
                                               dv.to_floats()};
    };
    const auto strided = run(q, k, v), contiguous = run(qc, kc, vc);
    CHECK(strided == contiguous);
}

TEST_CASE("fused attention: wrong shapes throw ShapeError naming them", "[attention][fused]") {
    HostBackend backend;
    AttentionCoreArgs args;
    auto t = [&](const Shape& shape) { return Tensor::zeros(backend, shape); };
    const Tensor q = t({1, 4, 5, 8}), k = t({1, 2, 7, 8}), v = t({1, 2, 7, 8});
    using Catch::Matchers::Contains;
    CHECK_THROWS_AS(attention::fused_attention(t({4, 5, 8}), k, v, args), ShapeError);
    CHECK_THROWS_WITH(attention::fused_attention(t({4, 5, 8}), k, v, args), Contains("[4, 5, 8]"));
    CHECK_THROWS_WITH(attention::fused_attention(q, t({1, 2, 7, 6}), t({1, 2, 7, 6}), args),
                      Contains("[1, 2, 7, 6]") && Contains("[1, 4, 5, 8]"));
    CHECK_THROWS_WITH(attention::fused_attention(q, k, t({1, 2, 6, 8}), args), Contains("[1, 2, 6, 8]"));
    CHECK_THROWS_WITH(attention::fused_attention(q, t({2, 2, 7, 8}), t({2, 2, 7, 8}), args), Contains("[2, 2, 7, 8]"));
    CHECK_THROWS_WITH(attention::fused_attention(q, t({1, 3, 7, 8}), t({1, 3, 7, 8}), args),
                      Contains("3 kv heads") && Contains("[1, 3, 7, 8]"));
    CHECK_THROWS_AS(attention::fused_attention(q, k, v, args, -1), ShapeError);
    CHECK_THROWS_AS(attention::fused_attention(q.to(DType::bf16), k, v, args), ShapeError);

    AttentionCoreArgs padded = args;
    padded.key_padding_mask = Tensor::zeros(backend, {1, 5}, DType::u8);
    CHECK_THROWS_WITH(attention::fused_attention(q, k, v, padded), Contains("[1, 5]") && Contains("[1, 7]"));
    padded.key_padding_mask = Tensor::zeros(backend, {1, 7});  // f32, not u8
    CHECK_THROWS_AS(attention::fused_attention(q, k, v, padded), ShapeError);

    CHECK_THROWS_WITH(attention::fused_attention(q, k, v, args, 0, t({2})), Contains("[2]") && Contains("[4]"));

    // The kernel checks its outputs too.
    AttentionKernelArgs kargs;
    CHECK_THROWS_AS(backend.attention(t({1, 4, 5, 7}), t({1, 4, 5}), q, k, v, kargs), ShapeError);
    CHECK_THROWS_AS(backend.attention(t({1, 4, 5, 8}), t({1, 4, 6}), q, k, v, kargs), ShapeError);
}

TEST_CASE("fused attention: forward + backward memory grows with T, not T^2", "[attention][fused]") {
    HostBackend backend;
    const int64_t B = 1, H = 1, T = 2048, D = 64;
    const size_t score_matrix_bytes = static_cast<size_t>(T * T) * sizeof(float);  // 16 MiB
    Tensor q = testing::random_input(backend, {B, H, T, D}, 1).set_requires_grad(true);
    Tensor k = testing::random_input(backend, {B, H, T, D}, 2).set_requires_grad(true);
    Tensor v = testing::random_input(backend, {B, H, T, D}, 3).set_requires_grad(true);
    Tensor seed = testing::random_input(backend, {B, H, T, D}, 4);
    AttentionCoreArgs args;
    args.causal = true;
    args.scale = 0.125f;

    const size_t before = backend.stats().memory.bytes_in_use;
    backend.reset_peak_memory();
    {
        Tensor out = attention::fused_attention(q, k, v, args);
        lab::backward(out, seed);
    }
    const size_t fused_peak = backend.stats().memory.peak_bytes_in_use - before;
    REQUIRE(q.grad().defined());
    const size_t tensor_bytes = static_cast<size_t>(B * H * T * D) * sizeof(float);  // 512 KiB
    INFO("fused forward + backward peak: " << fused_peak << " bytes; one [T, T] matrix: " << score_matrix_bytes);
    CHECK(fused_peak < 16 * tensor_bytes);  // o, lse, dq, dk, dv and gradient copies: a few [T, D]
    CHECK(fused_peak < score_matrix_bytes / 2);

    // The measure sees a [T, T] matrix when there is one: the composite forward allocates several.
    backend.reset_peak_memory();
    const size_t before_composite = backend.stats().memory.bytes_in_use;
    {
        NoGradGuard no_grad;
        Tensor out = attention::softmax_attention(q, k, v, args);
    }
    const size_t composite_peak = backend.stats().memory.peak_bytes_in_use - before_composite;
    INFO("composite forward peak: " << composite_peak << " bytes");
    CHECK(composite_peak >= score_matrix_bytes);
}
