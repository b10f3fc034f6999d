// Attention (plugin kind "attention"): one attention block, input [B, T, C] -> output [B, T, C].
// The model decides the shape (AttentionShape); the experiment's [attention] section picks the
// variant and its options, so an ablation swaps one line.
//
// Writing a variant: derive from MultiHeadAttention, which owns the projections, the split into
// heads, the masks and the output projection, and write only the core
//   (q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, D], args) -> context [B, H, T, D].
// Declare what the variant supports (AttentionTraits) when registering it; models and tasks
// declare what they need, and an experiment that pairs them wrongly is refused before it starts.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lab/module.h"
#include "lab/options.h"
#include "lab/rng.h"
#include "lab/tensor.h"

namespace lab {

struct BuildContext;
class Registry;
struct PlanContext;
struct PluginEstimate;

// Rotary position embedding (RoPE, Su et al. 2021, "RoFormer"), when `rope` is on:
// MultiHeadAttention::forward rotates q and k after the projection, before core(), so every
// variant gets it without a line of its own. Position p turns the channel pair (i, i + D/2) of
// each head, i < D/2, by the angle p * rope_base^(-2i / D): the half-split pairing of GPT-NeoX
// and Hugging Face Llama (`rotate_half`), not the paper's adjacent pairs (2i, 2i + 1), so Llama
// weights would load as they are. Then q_m . k_n depends on m - n only (eq. 16). Positions are
// AttentionContext::position_offset + the KV cache's length + t; cached keys are stored rotated.
// Needs an even head size D.
struct AttentionShape {
    int64_t hidden = 0;    // C
    int64_t heads = 0;     // H (D = C / H)
    float dropout = 0.0f;  // on attention probabilities and the output projection
    bool bias = true;      // biases on the projections
    bool rope = false;            // rotary position embedding on q and k (above)
    float rope_base = 10000.0f;   // RoPE's base: pair i turns by base^(-2i / D) per position (> 1)
    int64_t layer = 0;            // 0-based index of the block the attention sits in (depth-dependent init)
};

// Keys and values of the positions decoded so far (incremental decoding, one per attention
// layer). With a cache, forward() takes only the new positions, appends their keys and values,
// and attends over all of them; causal masking then lets new position i see keys j <= i + S - T.
struct KvCache {
    Tensor k, v;  // [B, Hkv, S, D]; undefined before the first step
    int64_t length() const { return k.defined() ? k.size(2) : 0; }
};

struct AttentionContext {
    bool causal = false;
    Tensor padding_mask;        // optional [B, T] u8, nonzero = padding (never attended to)
    KvCache* kv_cache = nullptr;  // incremental decoding (variants that declare kv_cache)
    // Position of the first input (after the KV cache's length); only AttentionShape::rope reads
    // positions. >= 0.
    int64_t position_offset = 0;
};

// What an attention implementation supports, or what a model or task needs of one.
struct AttentionCapabilities {
    bool causal = false;           // AttentionContext::causal (a query sees no later key)
    bool padding_mask = false;     // AttentionContext::padding_mask (padded keys are never attended to)
    bool kv_cache = false;         // incremental decoding with cached keys and values
    bool cross_attention = false;  // queries from one sequence, keys and values from another

    // Names of the capabilities `needed` has and this one lacks ("causal", "padding mask", ...).
    std::vector<std::string> missing(const AttentionCapabilities& needed) const;
    std::string str() const;  // "causal, padding mask" or "none"
};

// What an attention plugin declares when it registers (PluginDecl::attention).
struct AttentionTraits {
    AttentionCapabilities supports;
    // Options under which the variant computes exactly what attention/softmax (default options)
    // computes with the same parameters, e.g. gqa {kv_heads: "0"} or local {window: "1000000"}.
    // Empty: the variant is not exact anywhere (linear). The conformance check compares the two.
    std::map<std::string, std::string> equals_softmax_with;
};

// ---- the base class ----

// What a core sees besides q, k and v.
struct AttentionCoreArgs {
    bool causal = false;
    Tensor key_padding_mask;  // [B, S] u8, nonzero = padded key; undefined when there is none
    float scale = 1.0f;       // 1 / sqrt(D)
    float dropout = 0.0f;     // on attention probabilities, when training
    bool training = false;
    Generator* dropout_rng = nullptr;
};

class Attention : public Module {
public:
    virtual Tensor forward(const Tensor& x, const AttentionContext& ctx) = 0;

    // What the plugin declared when it registered (PluginDecl::attention.supports). The registry
    // hands it to every object the plugin's factory builds, so the declaration is the one place a
    // capability is stated: forward() and the models that hold the block read it from here.
    const AttentionCapabilities& capabilities() const { return capabilities_; }

private:
    friend class Registry;  // sets capabilities_ on what an attention factory returns
    AttentionCapabilities capabilities_;
};

// Multi-head attention with a pluggable core. Parameters (GPT-2 / nanoGPT names):
//   c_attn.weight [(H + 2 Hkv) D, C] (+ c_attn.bias): Q, K and V projections, packed;
//   c_proj.weight [C, C] (+ c_proj.bias): the output projection.
// Hkv = kv_heads (grouped-query attention when below H; must divide H), H by default. With
// Hkv = H the layout equals Hugging Face GPT2Attention's (c_attn holds q, k, v in that order).
// Initialisation: N(0, 0.02), biases zero (the model may rescale c_proj).
class MultiHeadAttention : public Attention {
public:
    // `name` ("attention/gqa") prefixes errors. Throws ConfigError when heads do not divide hidden,
    // kv_heads does not divide heads, or rope is on with an odd head size or a base <= 1.
    MultiHeadAttention(std::string name, const AttentionShape& shape, BuildContext& ctx, int64_t kv_heads = 0);
    // The constructor's refusals, for a variant's validate hook (PluginDecl::validate), which
    // runs with the shape the model will build before anything is built.
    static void check_shape(const std::string& name, const AttentionShape& shape, int64_t kv_heads = 0);
    // For a variant's estimate hook: the parameters of the projections (exact) and the floats per
    // token that forward keeps for backward (projections, context, output), plus what the core
    // keeps per token: `core_floats_per_token` (e.g. 2 H T for a composed softmax's scores and
    // probabilities, H for a fused kernel's log-sum-exp). `extra_parameters`: the variant's own.
    static PluginEstimate estimate(const AttentionShape& shape, int64_t kv_heads, double core_floats_per_token,
                                   int64_t extra_parameters = 0);

    // Checks x [B, T, C] and the mask, projects, rotates q and k (AttentionShape::rope), calls
    // core(), merges heads, projects out, applies output dropout. x is read only by the three
    // projections, so it may be bf16 already under mixed precision
    // (LayerNorm::forward_matmul_input). A KV cache is refused unless the plugin declared kv_cache
    // (capabilities()): only then does core() handle queries that are the last T of S > T
    // positions.
    Tensor forward(const Tensor& x, const AttentionContext& ctx) final;
    // residual + forward(x, ctx), for a pre-LN block: without output dropout in effect the
    // residual joins inside the output projection (ops::linear_residual), so no separate add
    // reads the two [B, T, C] tensors.
    Tensor forward_residual(const Tensor& x, const AttentionContext& ctx, const Tensor& residual);

    int64_t heads() const { return shape_.heads; }
    int64_t kv_heads() const { return kv_heads_; }
    int64_t head_dim() const { return shape_.hidden / shape_.heads; }
    const AttentionShape& shape() const { return shape_; }
    const std::string& name() const { return name_; }

protected:
    // q [B, H, T, D]; k, v [B, Hkv, S, D] (strided views of the projection; S == T for
    // self-attention). Returns the context [B, H, T, D] in any layout.
    virtual Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) = 0;

private:
    Tensor attend(const Tensor& x, const AttentionContext& ctx, const Tensor& residual);
    std::string name_;
    AttentionShape shape_;
    int64_t kv_heads_;
    Generator* dropout_rng_;
    Tensor qkv_weight_, qkv_bias_, proj_weight_, proj_bias_;
    // RoPE's cos and sin [P, D/2] for positions 0 .. P - 1, grown (doubled) on demand; a step
    // reads rows as views, so decoding token by token builds nothing.
    Tensor rope_cos_, rope_sin_;
};

// ---- building blocks for cores (differentiable) ----
namespace attention {

// k or v [B, Hkv, S, D] -> [B, H, S, D], each kv head repeated H / Hkv times (head h uses kv
// head h / (H / Hkv)). Returns the input when Hkv == H.
Tensor repeat_kv(const Tensor& kv, int64_t heads);

// softmax(q k^T * scale + bias, masked) v, composed of ops (memory grows with T * S): the
// reference every other core is checked against. Handles Hkv < H, args.causal (query i sees keys
// j <= i + S - T), args.key_padding_mask and dropout on the probabilities. `mask` (u8,
// broadcastable to [B, H, T, S], nonzero = hidden) and `bias` (f32, broadcastable to
// [B, H, T, S], added to the scaled scores) are optional extras (local windows, ALiBi).
Tensor softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args,
                         const Tensor& mask = Tensor(), const Tensor& bias = Tensor());

// The same function as softmax_attention computed by the backend's fused kernel
// (Backend::attention): tiled, with an online softmax, so memory grows with T, not T * S; the
// backward recomputes probabilities tile by tile. `window` > 0 restricts each query to keys
// within that distance (causal: i - window < j <= i; otherwise |i - j| < window); `slopes` [H]
// adds the ALiBi bias -slope_h * |i - j| (Press et al. 2022).
Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args,
                       int64_t window = 0, const Tensor& slopes = Tensor());

// The `fused` option of the attention variants that can run either form: auto (the default)
// runs fused_attention where the backend expects it to be the faster
// (Backend::prefers_fused_attention: it depends on the device, the precision and the shapes),
// true and false force one form. Both compute the same function.
enum class FusedChoice { automatic, fused, composite };
// Declares `fused` in a variant's schema, and reads it back.
void declare_fused_option(OptionSchema& schema);
FusedChoice fused_choice(const Options& options);
// Whether this call runs fused_attention: the choice, with auto asked of q's backend.
bool run_fused(FusedChoice choice, const Tensor& q, const Tensor& k, const AttentionCoreArgs& args);
// What the core keeps per token for the backward, for a variant's estimate hook: H floats (the
// log-sum-exp) fused, 2 H T (scores and probabilities) composed. auto counts the composite, the
// larger: which form runs is known only to the backend at run time.
double core_floats_per_token(const Options& options, int64_t heads, int64_t seq_len);

// RoPE's tables (AttentionShape::rope): cos and sin [T, D/2] f32 of the angles
// (first + t) * base^(-2i / D), t < T, i < D/2, for ops::rotary. Computed in double and rounded
// once, so large positions lose no accuracy to an f32 product.
struct RotaryTables {
    Tensor cos, sin;
};
RotaryTables rotary_tables(Backend& backend, int64_t head_dim, float base, int64_t first, int64_t T);

// x [B, H, T, D] at positions first .. first + T - 1 rotated as MultiHeadAttention rotates q and
// k: ops::rotary with rotary_tables (made per call; the layer caches its own).
Tensor rotary_embedding(const Tensor& x, int64_t first, float base);

// ALiBi slopes for `heads` heads: the geometric sequence 2^(-8 h / n) of Press et al. (2022),
// with their interleaving rule when heads is not a power of two.
std::vector<float> alibi_slopes(int64_t heads);

}  // namespace attention

}  // namespace lab
