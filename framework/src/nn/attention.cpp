#include "lab/attention.h"

#include <algorithm>
#include <cmath>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/ops.h"
#include "lab/build_context.h"
#include "matmul_input.h"

namespace lab {

void MultiHeadAttention::check_shape(const std::string& name, const AttentionShape& shape, int64_t kv_heads) {
    if (shape.heads < 1 || shape.hidden % shape.heads != 0)
        throw ConfigError(name + ": [model] hidden = " + std::to_string(shape.hidden) +
                          " is not divisible by heads = " + std::to_string(shape.heads) +
                          "; choose [model] heads that divides [model] hidden");
    const int64_t groups = kv_heads > 0 ? kv_heads : shape.heads, head_dim = shape.hidden / shape.heads;
    if (groups > shape.heads || shape.heads % groups != 0)
        throw ConfigError(name + ": kv_heads = " + std::to_string(groups) + " must divide heads = " +
                          std::to_string(shape.heads) + " (e.g. 1 for multi-query attention)");
    if (shape.rope && head_dim % 2 != 0)
        throw ConfigError(name + ": rotary position embedding turns channel pairs, but the head size " +
                          "hidden / heads = " + std::to_string(head_dim) +
                          " is odd; choose [model] hidden and heads with an even quotient");
    if (shape.rope && !(shape.rope_base > 1.0f))
        throw ConfigError(name + ": rope_base = " + std::to_string(shape.rope_base) +
                          " must be above 1 (RoPE's usual base is 10000)");
}

PluginEstimate MultiHeadAttention::estimate(const AttentionShape& shape, int64_t kv_heads,
                                            double core_floats_per_token, int64_t extra_parameters) {
    const double C = static_cast<double>(shape.hidden), H = static_cast<double>(shape.heads);
    const double D = shape.heads > 0 ? C / H : 0, Hkv = kv_heads > 0 ? static_cast<double>(kv_heads) : H;
    const double rows = (H + 2 * Hkv) * D;  // c_attn's output: q, k and v
    PluginEstimate estimate;
    estimate.parameters = rows * C + C * C + (shape.bias ? rows + C : 0) + static_cast<double>(extra_parameters);
    // q, k, v (and rotated copies with rope), the merged context, the projected output and its
    // dropout mask: what the backward reads.
    estimate.activation_floats_per_token =
        rows * (shape.rope ? 2 : 1) + 2 * C + (shape.dropout > 0 ? 2 * C : C) + core_floats_per_token;
    return estimate;
}

MultiHeadAttention::MultiHeadAttention(std::string name, const AttentionShape& shape, BuildContext& ctx,
                                       int64_t kv_heads)
    : name_(std::move(name)), shape_(shape), kv_heads_(kv_heads > 0 ? kv_heads : shape.heads),
      dropout_rng_(&ctx.dropout_rng) {
    check_shape(name_, shape, kv_heads);
    Backend& be = *ctx.backend;
    int64_t C = shape.hidden, D = head_dim(), rows = (shape.heads + 2 * kv_heads_) * D;
    qkv_weight_ = add_parameter("c_attn.weight", Tensor::empty(be, {rows, C}));
    proj_weight_ = add_parameter("c_proj.weight", Tensor::empty(be, {C, C}));
    ops::fill_normal(qkv_weight_, 0.0f, 0.02f, ctx.init_rng.next(rows * C));
    ops::fill_normal(proj_weight_, 0.0f, 0.02f, ctx.init_rng.next(C * C));
    if (shape.bias) {
        qkv_bias_ = add_parameter("c_attn.bias", Tensor::zeros(be, {rows}));
        proj_bias_ = add_parameter("c_proj.bias", Tensor::zeros(be, {C}));
    }
}

Tensor MultiHeadAttention::forward(const Tensor& x, const AttentionContext& ctx) { return attend(x, ctx, Tensor()); }

Tensor MultiHeadAttention::forward_residual(const Tensor& x, const AttentionContext& ctx, const Tensor& residual) {
    return attend(x, ctx, residual);
}

Tensor MultiHeadAttention::attend(const Tensor& x, const AttentionContext& ctx, const Tensor& residual) {
    int64_t C = shape_.hidden, H = shape_.heads, Hkv = kv_heads_, D = head_dim();
    if (x.dim() != 3 || x.size(2) != C)
        throw ShapeError(name_ + ": expected input [B, T, " + std::to_string(C) + "], got " + shape_str(x.shape()));
    int64_t B = x.size(0), T = x.size(1);
    AttentionCoreArgs args;
    args.causal = ctx.causal;
    if (ctx.padding_mask.defined()) {
        if (ctx.padding_mask.shape() != Shape{B, T} || ctx.padding_mask.dtype() != DType::u8)
            throw ShapeError(name_ + ": padding mask " + shape_str(ctx.padding_mask.shape()) + " " +
                             dtype_name(ctx.padding_mask.dtype()) + " does not match input [B, T] = " +
                             shape_str({B, T}) + " u8");
        args.key_padding_mask = ctx.padding_mask;
    }
    args.scale = 1.0f / std::sqrt(static_cast<float>(D));
    args.dropout = shape_.dropout;
    args.training = training();
    args.dropout_rng = dropout_rng_;

    // q [B, H, T, D], k and v [B, Hkv, T, D]: one matmul each with its rows of the packed c_attn
    // weight (views), transposed as views. Three products rather than one [B, T, (H + 2 Hkv) D]
    // split in three: the split's backward would assemble the gradient by zero-filling and adding
    // three full-size tensors, where the weight rows' backward touches only the small weight.
    // Under mixed precision the three read one bf16 rounding of x (each linear would round x
    // again), and their input gradients sum into x's through the rounding's backward.
    const Tensor x_in = ops::matmul_input(x);
    auto project = [&](int64_t first_head, int64_t heads) {
        Tensor w = ops::slice(qkv_weight_, 0, first_head * D, (first_head + heads) * D);
        Tensor b = qkv_bias_.defined() ? ops::slice(qkv_bias_, 0, first_head * D, (first_head + heads) * D) : Tensor();
        return ops::transpose(ops::reshape(ops::linear(x_in, w, b), {B, T, heads, D}), 1, 2);
    };
    Tensor q = project(0, H), k = project(H, Hkv), v = project(H + Hkv, Hkv);
    if (shape_.rope) {
        // New keys are rotated before they join the cache, so cached keys keep their positions.
        if (ctx.position_offset < 0)
            throw ShapeError(name_ + ": position_offset = " + std::to_string(ctx.position_offset) +
                             " is negative; positions start at 0");
        const int64_t first = ctx.position_offset + (ctx.kv_cache ? ctx.kv_cache->length() : 0);
        if (!rope_cos_.defined() || rope_cos_.size(0) < first + T) {
            const int64_t P = std::max(first + T, rope_cos_.defined() ? 2 * rope_cos_.size(0) : int64_t{0});
            attention::RotaryTables tables = attention::rotary_tables(x.backend(), D, shape_.rope_base, 0, P);
            rope_cos_ = tables.cos;
            rope_sin_ = tables.sin;
        }
        Tensor cos = ops::slice(rope_cos_, 0, first, first + T), sin = ops::slice(rope_sin_, 0, first, first + T);
        q = ops::rotary(q, cos, sin);
        k = ops::rotary(k, cos, sin);
    }
    if (KvCache* cache = ctx.kv_cache) {
        if (!capabilities().kv_cache)
            throw ConfigError(name_ + " has no KV cache (its core assumes queries and keys of the same positions); "
                              "generate without the cache, or use an attention variant that declares kv_cache "
                              "(softmax, gqa, local, alibi)");
        if (ctx.padding_mask.defined())
            throw ShapeError(name_ + ": a KV cache takes no padding mask (incremental decoding of unpadded rows)");
        if (cache->k.defined()) {
            k = ops::concat({cache->k, k}, 2);
            v = ops::concat({cache->v, v}, 2);
        } else {
            k = ops::contiguous(k);
            v = ops::contiguous(v);
        }
        cache->k = k;
        cache->v = v;
    }

    Tensor y = core(q, k, v, args);
    if (y.shape() != Shape{B, H, T, D})
        throw ShapeError(name_ + ": core returned " + shape_str(y.shape()) + ", expected [B, H, T, D] = " +
                         shape_str({B, H, T, D}));
    // Under mixed precision the heads are rounded to bf16 as they are merged: one pass from the
    // [B, H, T, D] layout, where the f32 copy into [B, T, C] and the linear's rounding took two.
    y = ops::reshape(ops::matmul_input(ops::transpose(y, 1, 2)), {B, T, C});
    if (residual.defined())
        return ops::linear_dropout_residual(y, proj_weight_, proj_bias_, shape_.dropout, training(), *dropout_rng_,
                                            residual);
    return ops::dropout(ops::linear(y, proj_weight_, proj_bias_), shape_.dropout, training(), *dropout_rng_);
}

namespace attention {

Tensor repeat_kv(const Tensor& kv, int64_t heads) {
    int64_t B = kv.size(0), Hkv = kv.size(1), S = kv.size(2), D = kv.size(3);
    if (Hkv == heads) return kv;
    if (heads % Hkv != 0)
        throw ShapeError("repeat_kv: " + std::to_string(Hkv) + " kv heads do not divide " + std::to_string(heads) +
                         " heads");
    Tensor e = ops::expand(ops::reshape(kv, {B, Hkv, 1, S * D}), {B, Hkv, heads / Hkv, S * D});
    return ops::reshape(e, {B, heads, S, D});
}

namespace {

// [T, S] u8, 1 where query i must not see key j (j > i + S - T). Built per call, as bytes: T * S
// bytes against the H * T * S floats the masked_fill that uses it writes.
Tensor causal_mask(Backend& be, int64_t T, int64_t S) {
    std::vector<uint8_t> m(static_cast<size_t>(T * S), 0);
    for (int64_t i = 0; i < T; ++i) {
        const int64_t first_hidden = std::max<int64_t>(0, i + (S - T) + 1);
        if (first_hidden < S) std::fill(m.begin() + i * S + first_hidden, m.begin() + (i + 1) * S, uint8_t{1});
    }
    return Tensor::from_host(be, {T, S}, DType::u8, m.data());
}

// softmax(masked_fill(scores, causal, -inf)) over the last dim. Every query sees at least the key
// at its own position, so each row's maximum is finite and a hidden key's probability is exactly 0;
// the softmax backward, y * (dy - sum(y * dy)), then gives that key a zero gradient by itself. So
// the fill passes the gradient through unchanged instead of running masked_fill's backward, a pass
// over [B, H, T, S] that would only write those zeros again.
Tensor causal_softmax(const Tensor& scores, const Tensor& causal) {
    const Tensor masked = ops::masked_fill(scores.detach(), causal, -INFINITY);
    if (any_requires_grad({&scores}))
        record(masked, "causal_fill", {scores}, [](const Tensor& dout, std::vector<Tensor>& d) { d[0] = dout; });
    return ops::softmax(masked);
}

}  // namespace

Tensor softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args,
                         const Tensor& mask, const Tensor& bias) {
    int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2);
    Tensor kr = repeat_kv(k, H), vr = repeat_kv(v, H);
    // The scale applied to q [B, H, T, D] rather than to the scores [B, H, T, S]: a pass over
    // D values per query instead of S, forward and backward (exact when the scale is a power of
    // two, as 1/sqrt(D) is for D = 64).
    Tensor scores = ops::matmul(ops::scale(q, args.scale), ops::transpose(kr, -1, -2));  // [B, H, T, S]
    if (bias.defined()) scores = ops::add(scores, bias);
    if (mask.defined()) scores = ops::masked_fill(scores, mask, -INFINITY);
    if (args.key_padding_mask.defined()) {
        const Tensor& pad = args.key_padding_mask;
        // A large finite value rather than -inf: a row whose keys are all padding stays finite.
        Tensor key_mask = pad.view({B, 1, 1, S}, {pad.strides()[0], 0, 0, pad.strides()[1]}, pad.offset());
        scores = ops::masked_fill(scores, key_mask, -1e30f);
    }
    // The causal mask last (the masks commute), fused with the softmax.
    Tensor probs = args.causal ? causal_softmax(scores, causal_mask(q.backend(), T, S)) : ops::softmax(scores);
    if (args.dropout_rng) probs = ops::dropout(probs, args.dropout, args.training, *args.dropout_rng);
    return ops::matmul(probs, vr);  // [B, H, T, D]
}

RotaryTables rotary_tables(Backend& backend, int64_t head_dim, float base, int64_t first, int64_t T) {
    if (head_dim < 2 || head_dim % 2 != 0)
        throw ShapeError("rotary_tables: head size " + std::to_string(head_dim) + " must be even and at least 2");
    const int64_t half = head_dim / 2;
    std::vector<float> cos(static_cast<size_t>(T * half)), sin(cos.size());
    for (int64_t i = 0; i < half; ++i) {
        // Su et al. (2021), eq. 15: theta_i = base^(-2i / D).
        const double theta =
            std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
        for (int64_t t = 0; t < T; ++t) {
            const double angle = static_cast<double>(first + t) * theta;
            cos[static_cast<size_t>(t * half + i)] = static_cast<float>(std::cos(angle));
            sin[static_cast<size_t>(t * half + i)] = static_cast<float>(std::sin(angle));
        }
    }
    return {Tensor::from_floats(backend, {T, half}, cos), Tensor::from_floats(backend, {T, half}, sin)};
}

Tensor rotary_embedding(const Tensor& x, int64_t first, float base) {
    if (x.dim() != 4) throw ShapeError("rotary_embedding: expected x [B, H, T, D], got " + shape_str(x.shape()));
    RotaryTables tables = rotary_tables(x.backend(), x.size(3), base, first, x.size(2));
    return ops::rotary(x, tables.cos, tables.sin);
}

std::vector<float> alibi_slopes(int64_t heads) {
    // Press et al. (2022), as in their reference code: for n a power of two, slope_h =
    // 2^(-8 (h + 1) / n); otherwise the slopes of the closest smaller power of two followed by
    // every other slope of twice that power.
    auto power_of_two = [](int64_t n) {
        std::vector<float> s;
        double start = std::pow(2.0, -8.0 / static_cast<double>(n));
        for (int64_t i = 0; i < n; ++i) s.push_back(static_cast<float>(std::pow(start, static_cast<double>(i + 1))));
        return s;
    };
    int64_t p = 1;
    while (p * 2 <= heads) p *= 2;
    std::vector<float> out = power_of_two(p);
    if (p != heads) {
        std::vector<float> extra = power_of_two(2 * p);
        for (int64_t i = 0; static_cast<int64_t>(out.size()) < heads; i += 2) out.push_back(extra[static_cast<size_t>(i)]);
    }
    return out;
}

}  // namespace attention

}  // namespace lab
