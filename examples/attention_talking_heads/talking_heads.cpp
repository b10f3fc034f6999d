// attention/talking_heads: talking-heads attention (Shazeer, Lan, Cheng, Ding and Hou 2020,
// arXiv:2003.02436). The heads of multi-head attention exchange information around the softmax:
// a learned [H, H] map mixes the attention logits across heads before the softmax (P_l in the
// paper), and another mixes the attention weights after it (P_w):
//   logits_h  = sum_g logits_mix[h, g] * q_g k_g^T / sqrt(D)
//   weights_h = sum_g weights_mix[h, g] * softmax(logits_g)
//   context_h = weights_h v_h
// Both maps start as the identity, so training starts from plain multi-head attention. The
// option `mix` keeps one map, both or neither (mix = none is exactly attention/softmax).
#include <cmath>
#include <string>
#include <vector>

#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

// [H, H] identity, row-major.
std::vector<float> identity(int64_t heads) {
    std::vector<float> values(static_cast<size_t>(heads * heads), 0.0f);
    for (int64_t h = 0; h < heads; ++h) values[static_cast<size_t>(h * heads + h)] = 1.0f;
    return values;
}

// mix [H, H] (output head, input head), x [B, H, T, S] -> [B, H, T, S]: y_h = sum_g mix[h, g] x_g.
// One [H, H] @ [H, T * S] product per batch element; the map broadcasts over B.
Tensor mix_heads(const Tensor& mix, const Tensor& x) {
    int64_t B = x.size(0), H = x.size(1), T = x.size(2), S = x.size(3);
    return ops::reshape(ops::matmul(mix, ops::reshape(x, {B, H, T * S})), {B, H, T, S});
}

class TalkingHeadsAttention : public MultiHeadAttention {
public:
    TalkingHeadsAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/talking_heads", shape, ctx) {
        const std::string& mix = opts.get_string("mix");
        int64_t H = shape.heads;
        if (mix == "logits" || mix == "both")
            logits_mix_ = add_parameter("logits_mix", Tensor::from_floats(*ctx.backend, {H, H}, identity(H)));
        if (mix == "weights" || mix == "both")
            weights_mix_ = add_parameter("weights_mix", Tensor::from_floats(*ctx.backend, {H, H}, identity(H)));
    }

protected:
    // q [B, H, T, D]; k, v [B, H, S, D] -> context [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        int64_t B = q.size(0), T = q.size(2), S = k.size(2);
        Tensor logits = ops::scale(ops::matmul(q, ops::transpose(k, -1, -2)), args.scale);  // [B, H, T, S]
        if (logits_mix_.defined()) logits = mix_heads(logits_mix_, logits);
        // Masks go after the logit mix: a -inf logit mixed into other heads would turn them into
        // -inf or NaN.
        if (args.causal) logits = ops::masked_fill(logits, causal_mask(q.backend(), T, S), -INFINITY);
        if (args.key_padding_mask.defined()) {
            // A large finite value, as in attention/softmax: a query whose keys are all padding stays finite.
            Tensor padded_key = ops::reshape(args.key_padding_mask, {B, 1, 1, S});
            logits = ops::masked_fill(logits, padded_key, -1e30f);
        }
        Tensor weights = ops::softmax(logits);  // [B, H, T, S]
        // A masked key has weight 0 in every head, so mixing the weights keeps it hidden.
        if (weights_mix_.defined()) weights = mix_heads(weights_mix_, weights);
        if (args.dropout_rng) weights = ops::dropout(weights, args.dropout, args.training, *args.dropout_rng);
        return ops::matmul(weights, v);  // [B, H, T, D]
    }

private:
    // [T, S] u8, 1 where query i must not see key j (j > i + S - T); kept for the next call.
    const Tensor& causal_mask(Backend& backend, int64_t T, int64_t S) {
        if (!causal_mask_.defined() || causal_mask_.size(0) != T || causal_mask_.size(1) != S) {
            std::vector<int64_t> hidden(static_cast<size_t>(T * S));
            for (int64_t i = 0; i < T; ++i)
                for (int64_t j = 0; j < S; ++j) hidden[static_cast<size_t>(i * S + j)] = j > i + (S - T);
            causal_mask_ = Tensor::from_ints(backend, {T, S}, hidden, DType::u8);
        }
        return causal_mask_;
    }

    Tensor logits_mix_, weights_mix_;  // [H, H] each; undefined when `mix` leaves it out
    Tensor causal_mask_;               // [T, S] u8
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"talking_heads", "1.0",
                         "talking-heads attention: heads mix their logits and weights (Shazeer et al. 2020)"};
    decl.schema.choice("mix", "both", {"both", "logits", "weights", "none"},
                       "which learned [heads, heads] maps mix the heads: logits (before the softmax), "
                       "weights (after it), both, or none (plain multi-head attention)");
    decl.attention.supports = {.causal = true, .padding_mask = true};
    decl.attention.equals_softmax_with = {{"mix", "none"}};
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<TalkingHeadsAttention>(opts, shape, ctx);
    });
}
