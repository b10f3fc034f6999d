// attention/gqa: grouped-query attention (Ainslie et al. 2023, "GQA: Training Generalized
// Multi-Query Transformer Models from Multi-Head Checkpoints"). The H query heads share
// Hkv = kv_heads key/value heads, H / Hkv query heads per group (head h reads kv head
// h / (H / Hkv)); kv_heads = 1 is multi-query attention (Shazeer 2019, "Fast Transformer
// Decoding: One Write-Head is All You Need"), kv_heads = 0 (= H) plain multi-head attention.
//
// Computes softmax(Q K^T / sqrt(D)) V per head with the shared K and V. Cost: the same
// O(T^2 D H) time as multi-head attention; what shrinks is the K/V projection (c_attn.weight has
// (H + 2 Hkv) D rows instead of 3 H D) and the K/V activations and cache, by a factor H / Hkv.
// fused = false composes the scores of ops (memory O(T^2) per head); fused = true runs the
// backend's tiled kernel (memory O(T)), which reads the shared kv heads in place; fused = auto
// (the default) whichever the backend expects to be faster.
#include <string>

#include "lab/error.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

// kv_heads as the base class wants it (0 = heads), refused here with the option's name and
// origin when it cannot group the query heads.
int64_t checked_kv_heads(const Options& opts, const AttentionShape& shape) {
    int64_t kv_heads = opts.get_int("kv_heads");
    if (kv_heads == 0) return 0;
    if (kv_heads > shape.heads || shape.heads % kv_heads != 0)
        throw ConfigError("attention/gqa: option kv_heads = " + std::to_string(kv_heads) + " (" +
                          opts.origin("kv_heads") + ") does not divide heads = " + std::to_string(shape.heads) +
                          "; choose a divisor of heads (1 = multi-query attention) or 0 for plain multi-head");
    return kv_heads;
}

class GroupedQueryAttention : public MultiHeadAttention {
public:
    GroupedQueryAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/gqa", shape, ctx, checked_kv_heads(opts, shape)),
          fused_(attention::fused_choice(opts)) {}

protected:
    // q [B, H, T, D]; k, v [B, Hkv, S, D] -> [B, H, T, D]. Both paths take Hkv < H directly.
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        return attention::run_fused(fused_, q, k, args) ? attention::fused_attention(q, k, v, args)
                                                            : attention::softmax_attention(q, k, v, args);
    }

private:
    attention::FusedChoice fused_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl("gqa", "1.1",
                          "grouped-query attention (Ainslie et al. 2023): query heads share kv_heads key/value heads");
    decl.schema
        .integer("kv_heads", 0,
                 "key/value heads shared by the query heads; must divide [model] heads. 1 = multi-query "
                 "attention (Shazeer 2019), 0 = as many as heads (plain multi-head attention)")
        .at_least(0);
    lab::attention::declare_fused_option(decl.schema);
    // kv_cache: the core handles S > T (causal offset S - T), which is what a KV cache hands it.
    decl.attention.supports = {.causal = true, .padding_mask = true, .kv_cache = true};
    decl.attention.equals_softmax_with = {{"kv_heads", "0"}};
    decl.validate = [](const lab::PlanContext& plan) {
        lab::MultiHeadAttention::check_shape("attention/gqa", *plan.attention_shape,
                                             checked_kv_heads(*plan.options, *plan.attention_shape));
    };
    // Composed: the scores and probabilities [B, H, T, T] (2 H T per token); fused: the log-sum-exp;
    // auto: the composite's, the larger (the backend chooses per call).
    decl.estimate = [](const lab::PlanContext& plan) {
        return lab::MultiHeadAttention::estimate(
            *plan.attention_shape, plan.options->get_int("kv_heads"),
            lab::attention::core_floats_per_token(*plan.options, plan.attention_shape->heads, plan.train.seq_len));
    };
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<GroupedQueryAttention>(opts, shape, ctx);
    });
}
