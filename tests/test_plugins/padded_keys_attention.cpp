// Test-only plugin (build/test_plugins/test_padded_keys_attention.so): attention/padded_keys, a
// deliberately broken variant for the conformance check's tests. Softmax attention that drops
// the key padding mask (the bug of a core that forgets to pass AttentionCoreArgs::key_padding_mask
// on), yet declares padding-mask support: the check must fail padding and nothing else.
#include "lab/plugin.h"

namespace {

using namespace lab;

class PaddedKeysAttention : public MultiHeadAttention {
public:
    PaddedKeysAttention(const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/padded_keys", shape, ctx) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        AttentionCoreArgs unmasked = args;
        unmasked.key_padding_mask = Tensor();
        return attention::softmax_attention(q, k, v, unmasked);
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"padded_keys", "0.1", "test plugin: attention that ignores the padding mask", {}};
    decl.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(std::move(decl), [](const lab::Options&, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<PaddedKeysAttention>(shape, ctx);
    });
}
