// A test-only attention that supports padding masks but not causal masking (an encoder-only
// variant): experiments that pair it with a causal model must be refused before they start.
#include "lab/plugin.h"

namespace {

class BidirectionalAttention : public lab::MultiHeadAttention {
public:
    BidirectionalAttention(const lab::AttentionShape& shape, lab::BuildContext& ctx)
        : MultiHeadAttention("attention/bidirectional", shape, ctx) {}

protected:
    lab::Tensor core(const lab::Tensor& q, const lab::Tensor& k, const lab::Tensor& v,
                     const lab::AttentionCoreArgs& args) override {
        lab::AttentionCoreArgs both_ways = args;
        both_ways.causal = false;  // what it declares: no causal masking
        return lab::attention::softmax_attention(q, k, v, both_ways);
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl("bidirectional", "1.0", "test: attention without causal masking");
    decl.attention.supports.padding_mask = true;
    registry.add_attention(std::move(decl), [](const lab::Options&, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<BidirectionalAttention>(shape, ctx);
    });
}
