// Test-only plugin (build/test_plugins/test_leaky_attention.so): attention/leaky, a deliberately
// broken variant for the conformance check's tests. It is softmax attention whose causal mask is
// one position too wide from query `from` on: query i >= from also sees key i + 1, the next token
// (the off-by-one of a mask written as j > i + 1). Everything else is right, so the check must
// fail causality and nothing else. It declares causal support, as the buggy plugin would.
#include "lab/error.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

class LeakyAttention : public MultiHeadAttention {
public:
    LeakyAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/leaky", shape, ctx), from_(opts.get_int("from")) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        if (!args.causal) return attention::softmax_attention(q, k, v, args);
        int64_t T = q.size(2), S = k.size(2);
        std::vector<int64_t> hidden(static_cast<size_t>(T * S));  // [T, S], 1 = not visible
        for (int64_t i = 0; i < T; ++i) {
            int64_t last_visible = i + (S - T) + (i >= from_ ? 1 : 0);
            for (int64_t j = 0; j < S; ++j) hidden[static_cast<size_t>(i * S + j)] = j > last_visible;
        }
        AttentionCoreArgs open = args;
        open.causal = false;
        return attention::softmax_attention(q, k, v, open, Tensor::from_ints(q.backend(), {T, S}, hidden, DType::u8));
    }

private:
    int64_t from_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"leaky", "0.1", "test plugin: causal attention whose query i >= from also sees key i + 1", {}};
    decl.schema.integer("from", 0, "first query position that sees the next token").at_least(0);
    decl.attention.supports = {.causal = true, .padding_mask = true};
    // Exact while the leak starts beyond every sequence the check uses: the leak then shows in
    // the causality check alone.
    decl.attention.equals_softmax_with = {{"from", "1000000"}};
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<LeakyAttention>(opts, shape, ctx);
    });
}
