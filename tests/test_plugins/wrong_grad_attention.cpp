// Test-only plugin (build/test_plugins/test_wrong_grad_attention.so): attention/wrong_grad, a
// deliberately broken variant for the conformance check's tests. Its forward is softmax
// attention, but it reads v through detach(), so no gradient flows back through the values: the
// v rows of c_attn.weight and c_attn.bias get none, and x misses that part of its gradient. The
// mistake of a core that "caches" a tensor without its history. Forward outputs are right, so
// only the gradient check can see it.
#include "lab/plugin.h"

namespace {

using namespace lab;

class WrongGradAttention : public MultiHeadAttention {
public:
    WrongGradAttention(const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/wrong_grad", shape, ctx) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        return attention::softmax_attention(q, k, v.detach(), args);
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"wrong_grad", "0.1", "test plugin: softmax attention whose values get no gradient", {}};
    decl.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(std::move(decl), [](const lab::Options&, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<WrongGradAttention>(shape, ctx);
    });
}
