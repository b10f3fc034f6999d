// Test-only plugin (build/test_plugins/test_batch_mixing_attention.so): attention/batch_mixing, a
// deliberately broken variant for the conformance check's tests. Softmax attention whose values
// are averaged with the next sequence's of the batch (v_b <- (v_b + v_{b+1 mod B}) / 2: the bug of
// a kernel that indexes the batch with the wrong stride). With one sequence it is exact, and masks
// are applied per sequence, so the check must fail batch independence and nothing else; in
// particular padding, which compares a padded sequence with itself alone, must pass.
#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

class BatchMixingAttention : public MultiHeadAttention {
public:
    BatchMixingAttention(const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/batch_mixing", shape, ctx) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        const int64_t B = v.size(0);
        if (B == 1) return attention::softmax_attention(q, k, v, args);
        Tensor next = ops::concat({ops::slice(v, 0, 1, B), ops::slice(v, 0, 0, 1)}, 0);  // sequence b + 1 at b
        return attention::softmax_attention(q, k, ops::scale(ops::add(v, next), 0.5f), args);
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"batch_mixing", "0.1", "test plugin: attention that averages values across the batch", {}};
    decl.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(std::move(decl), [](const lab::Options&, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<BatchMixingAttention>(shape, ctx);
    });
}
