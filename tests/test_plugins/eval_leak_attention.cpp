// Test-only plugin (build/test_plugins/test_eval_leak_attention.so): attention/eval_leak, a
// deliberately broken variant for the conformance check's tests. Softmax attention with an
// "inference path" whose causal mask is one position too wide: in eval mode (Module training
// flag off: what validation and `labrun generate` run) query i also sees key i + 1. Training is
// right, so only the check's eval-mode runs can see it: it must fail causality and nothing else.
#include "lab/plugin.h"

namespace {

using namespace lab;

class EvalLeakAttention : public MultiHeadAttention {
public:
    EvalLeakAttention(const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/eval_leak", shape, ctx) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        if (args.training || !args.causal) return attention::softmax_attention(q, k, v, args);
        const int64_t T = q.size(2), S = k.size(2);
        std::vector<int64_t> hidden(static_cast<size_t>(T * S));  // [T, S], 1 = not visible
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < S; ++j) hidden[static_cast<size_t>(i * S + j)] = j > i + (S - T) + 1;
        AttentionCoreArgs open = args;
        open.causal = false;
        return attention::softmax_attention(q, k, v, open, Tensor::from_ints(q.backend(), {T, S}, hidden, DType::u8));
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"eval_leak", "0.1", "test plugin: causal attention that sees the next token in eval mode", {}};
    decl.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(std::move(decl), [](const lab::Options&, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<EvalLeakAttention>(shape, ctx);
    });
}
