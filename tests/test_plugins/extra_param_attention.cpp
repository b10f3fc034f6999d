// Test-only plugin (build/test_plugins/test_extra_param_attention.so): attention/extra_param, a
// deliberately broken variant for the conformance check's tests. It learns a per-head temperature
// (scores scaled by scale * temperature[h]) and declares itself equal to attention/softmax with
// learn_temperature = false, but registers the parameter either way: with the temperature fixed
// at 1 it computes softmax attention, yet its parameters no longer map onto softmax's by name, which
// the exact check must report (and nothing else fails).
#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

class ExtraParamAttention : public MultiHeadAttention {
public:
    ExtraParamAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/extra_param", shape, ctx), learn_(opts.get_bool("learn_temperature")) {
        temperature_ = add_parameter("temperature", Tensor::full(*ctx.backend, {shape.heads}, 1.0));
    }

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        if (!learn_) return attention::softmax_attention(q, k, v, args);
        // Scaling q by temperature[h] scales head h's scores by it: [H] -> [1, H, 1, 1].
        int64_t H = q.size(1);
        Tensor scaled_q = ops::mul(q, ops::reshape(temperature_, {1, H, 1, 1}));
        return attention::softmax_attention(scaled_q, k, v, args);
    }

private:
    bool learn_;
    Tensor temperature_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"extra_param", "0.1", "test plugin: softmax attention with a learned per-head temperature", {}};
    decl.schema.boolean("learn_temperature", true, "multiply each head's scores by a learned temperature");
    decl.attention.supports = {.causal = true, .padding_mask = true};
    decl.attention.equals_softmax_with = {{"learn_temperature", "false"}};
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<ExtraParamAttention>(opts, shape, ctx);
    });
}
