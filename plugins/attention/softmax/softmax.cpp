// attention/softmax: multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1),
// softmax(Q K^T / sqrt(D)) V, with causal and key-padding masks. The reference that other
// attention variants are compared against.
//
// fused = false composes it of ops (the [T, T] score matrix is materialised: memory grows with
// T^2); fused = true runs the backend's tiled kernel with an online softmax and its own backward
// (FlashAttention, Dao et al. 2022): memory grows with T. Both compute the same function; the
// default, fused = auto, runs whichever the backend expects to be faster for the call
// (Backend::prefers_fused_attention).
#include "lab/plugin.h"

namespace {

using namespace lab;

class SoftmaxAttention : public MultiHeadAttention {
public:
    SoftmaxAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/softmax", shape, ctx), fused_(attention::fused_choice(opts)) {}

protected:
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        return attention::run_fused(fused_, q, k, args) ? attention::fused_attention(q, k, v, args)
                                                            : attention::softmax_attention(q, k, v, args);
    }

private:
    attention::FusedChoice fused_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"softmax", "1.2", "multi-head scaled dot-product attention (causal and padding masks)", {}};
    lab::attention::declare_fused_option(decl.schema);
    // kv_cache: the core handles S > T (causal offset S - T), which is what a KV cache hands it.
    decl.attention.supports = {.causal = true, .padding_mask = true, .kv_cache = true};
    decl.attention.equals_softmax_with = {{"fused", "true"}};
    decl.validate = [](const lab::PlanContext& plan) {
        lab::MultiHeadAttention::check_shape("attention/softmax", *plan.attention_shape);
    };
    // Composed: the scores and probabilities [B, H, T, T] (2 H T per token); fused: the log-sum-exp;
    // auto: the composite's, the larger (the backend chooses per call).
    decl.estimate = [](const lab::PlanContext& plan) {
        return lab::MultiHeadAttention::estimate(
            *plan.attention_shape, 0,
            lab::attention::core_floats_per_token(*plan.options, plan.attention_shape->heads, plan.train.seq_len));
    };
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<SoftmaxAttention>(opts, shape, ctx);
    });
}
