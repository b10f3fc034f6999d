// Test-only plugin (build/test_plugins/test_eval_leaky_attention.so): attention/eval_leaky, softmax
// attention that drops the causal mask in evaluation mode only, as a variant whose inference path
// (a kernel written for generation, say) forgot the mask while its training path keeps it. It
// declares causal support, as the buggy plugin would; the causality probe before a run must see
// the leak in evaluation mode although training mode is right.
#include "lab/plugin.h"

namespace {

class EvalLeakyAttention : public lab::MultiHeadAttention {
public:
    EvalLeakyAttention(const lab::AttentionShape& shape, lab::BuildContext& ctx)
        : MultiHeadAttention("attention/eval_leaky", shape, ctx) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    lab::Tensor core(const lab::Tensor& q, const lab::Tensor& k, const lab::Tensor& v,
                     const lab::AttentionCoreArgs& args) override {
        lab::AttentionCoreArgs used = args;
        if (!args.training) used.causal = false;  // the bug: every key is visible when evaluating
        return lab::attention::softmax_attention(q, k, v, used);
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl("eval_leaky", "0.1", "test plugin: causal attention that ignores causal in evaluation mode");
    decl.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(std::move(decl), [](const lab::Options&, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<EvalLeakyAttention>(shape, ctx);
    });
}
