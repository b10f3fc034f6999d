// Test-only plugin (build/test_plugins/test_bad_dropout_attention.so): attention/bad_dropout, a
// deliberately broken variant for the conformance check's tests. Softmax attention whose dropout
// on the attention probabilities is wrong in the way `defect` says:
//   rate      drops with probability 2p (and scales by 1 / (1 - 2p));
//   unscaled  drops with probability p but keeps the rest unscaled (no 1 / (1 - p));
//   eval      drops in eval mode too (ignores AttentionCoreArgs::training).
// Without dropout it is exact, so the check must fail dropout and nothing else.
#include <algorithm>

#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

class BadDropoutAttention : public MultiHeadAttention {
public:
    BadDropoutAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/bad_dropout", shape, ctx), defect_(opts.get_string("defect")) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        AttentionCoreArgs wrong = args;
        if (defect_ == "rate") wrong.dropout = std::min(2.0f * args.dropout, 0.9f);
        if (defect_ == "eval") wrong.training = true;
        Tensor context = attention::softmax_attention(q, k, v, wrong);
        // Undoes the 1 / (1 - p) that softmax_attention's dropout applied to the kept weights.
        if (defect_ == "unscaled" && args.training && args.dropout > 0.0f)
            context = ops::scale(context, 1.0f - args.dropout);
        return context;
    }

private:
    std::string defect_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"bad_dropout", "0.1", "test plugin: attention whose dropout is wrong as `defect` says", {}};
    decl.schema.choice("defect", "rate", {"rate", "unscaled", "eval"},
                       "rate: drops with 2p; unscaled: no 1 / (1 - p); eval: drops in eval mode too");
    decl.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<BadDropoutAttention>(opts, shape, ctx);
    });
}
