// attention/sigmoid: sigmoid attention (Ramapuram, Danieli, Dhekane, Weers, Busbridge, Ablin,
// Likhomanenko, Digani, Gu, Shidani and Webb 2024, "Theory, Analysis, and Best Practices for
// Sigmoid Self-Attention", arXiv:2409.04431, ICLR 2025). Each head replaces the row-wise softmax
// by an elementwise sigmoid with a scalar bias b (sec. 2, eq. (2), sigma(u) = sigmoid(u + b)),
// with b = -log(n), the value the paper recommends:
//   SigmoidAttn(Q, K, V) = sigmoid(Q K^T / sqrt(D) + b) V,   b = -log(n),   no normalisation over keys.
// sigmoid(s - log n) ~ exp(s) / n while exp(s) << n, so at initialisation (scores near 0) each
// weight is about 1 / n and the output norm matches softmax attention's over n keys; without the
// bias the initial attention norm grows with n, which the paper identifies as what destabilises
// training.
//
// What n is (option bias_n). The paper takes n = the sequence length. Here, by default (bias_n =
// 0), n is per query: the number of keys the query attends to, i.e. the real (unpadded) keys of
// its sequence, and under a causal mask only those up to the query (query i of T with S keys:
// j <= i + S - T). That is the count softmax normalises over, and it depends only on the query's
// own visible keys, so
//   - a padded sequence computes what the same sequence alone computes (padding never counts);
//   - decoding token by token with a KV cache computes what the full causal forward computes
//     (the query at position p sees p + 1 keys either way), which a sequence-length n could not (S grows while
//     decoding).
// bias_n > 0 fixes n for every query (e.g. the training context length, as one b for the whole
// model); that is consistent in both senses too. Masked keys (causal, padding) get weight exactly
// 0: the weights are multiplied by a 0/1 mask after the sigmoid, so no large negative constant is
// involved and their gradient is exactly 0 as well. Dropout acts on the weights, as in
// attention/softmax.
//
// Not implemented: the paper's FlashSigmoid kernel and its other stabilisers (LayerScale, QK norm,
// hybrid norm), which belong to the model, not to the attention core. Cost: composed of ops, the
// [B, H, T, S] scores and weights are materialised: O(T S) time and memory per head, as composite
// softmax attention (no fused path).
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

class SigmoidAttention : public MultiHeadAttention {
public:
    SigmoidAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/sigmoid", shape, ctx), fixed_n_(opts.get_int("bias_n")) {}

protected:
    // q [B, H, T, D]; k, v [B, Hkv, S, D] -> [B, H, T, D].
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        const int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2);
        Tensor kr = attention::repeat_kv(k, H), vr = attention::repeat_kv(v, H);
        Tensor scores = ops::scale(ops::matmul(q, ops::transpose(kr, -1, -2)), args.scale);  // [B, H, T, S]
        Tensor visible = visible_keys(q.backend(), args, B, T, S);  // [B or 1, 1, T, S], or undefined
        Tensor weights = ops::sigmoid(add_bias(scores, visible, S));
        if (visible.defined()) weights = ops::mul(weights, visible);
        if (args.dropout_rng) weights = ops::dropout(weights, args.dropout, args.training, *args.dropout_rng);
        return ops::matmul(weights, vr);  // [B, H, T, D]
    }

private:
    // scores [B, H, T, S] + b, b = -log(n): n fixed, or the number of keys each query attends to.
    Tensor add_bias(const Tensor& scores, const Tensor& visible, int64_t S) const {
        if (fixed_n_ > 0) return ops::add_scalar(scores, -std::log(static_cast<float>(fixed_n_)));
        if (!visible.defined()) return ops::add_scalar(scores, -std::log(static_cast<float>(S)));
        Tensor n = ops::sum(visible, -1, true);  // [B or 1, 1, T, 1], exact small integers in f32
        // max(n, 1) = n + relu(1 - n): a query with no visible key (a padded query under a causal
        // mask with left padding) gets b = 0 rather than +inf; its weights are all 0 anyway.
        Tensor n_at_least_1 = ops::add(n, ops::relu(ops::add_scalar(ops::neg(n), 1.0f)));
        return ops::sub(scores, ops::log(n_at_least_1));
    }

    // [B or 1, 1, T, S] f32: 1 where query i attends to key j, 0 where the causal mask (j > i + S -
    // T) or the key padding mask hides it; undefined when neither applies (every key is visible).
    Tensor visible_keys(Backend& backend, const AttentionCoreArgs& args, int64_t B, int64_t T, int64_t S) {
        Tensor visible = args.causal ? causal_visible(backend, T, S) : Tensor();
        if (args.key_padding_mask.defined()) {
            const Tensor& pad = args.key_padding_mask;  // [B, S] u8, nonzero = padding
            Tensor key_mask = pad.view({B, 1, 1, S}, {pad.strides()[0], 0, 0, pad.strides()[1]}, pad.offset());
            Tensor real_keys = ops::masked_fill(Tensor::full(backend, {B, 1, 1, S}, 1.0), key_mask, 0.0f);
            visible = visible.defined() ? ops::mul(visible, real_keys) : real_keys;
        }
        return visible;
    }

    // [1, 1, T, S] f32, 1 where j <= i + S - T (queries aligned with the last keys, as a KV cache
    // hands them). Cached per (T, S): a model runs its blocks at one T per step.
    Tensor causal_visible(Backend& backend, int64_t T, int64_t S) {
        auto key = std::make_pair(T, S);
        auto found = causal_.find(key);
        if (found != causal_.end()) return found->second;
        std::vector<float> visible(static_cast<size_t>(T * S), 0.0f);
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < S && j <= i + S - T; ++j) visible[static_cast<size_t>(i * S + j)] = 1.0f;
        Tensor t = Tensor::from_floats(backend, {1, 1, T, S}, visible);
        causal_.emplace(key, t);
        return t;
    }

    int64_t fixed_n_;  // 0: n per query
    std::map<std::pair<int64_t, int64_t>, Tensor> causal_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl("sigmoid", "1.0",
                          "sigmoid attention with bias -log(n), no normalisation over keys (Ramapuram et al. 2024)");
    decl.schema
        .integer("bias_n", 0,
                 "n of the bias b = -log(n) added to the scaled scores. 0 = per query, the number of keys it "
                 "attends to (its sequence's real keys; under a causal mask those up to the query), so padding "
                 "and KV-cache decoding do not change it; > 0 = this n for every query (e.g. the context length)")
        .at_least(0);
    // kv_cache: with a per-query n (or a fixed one) the last T of S queries compute what they
    // compute in a full causal forward, so a KV cache gives the same outputs.
    decl.attention.supports = {.causal = true, .padding_mask = true, .kv_cache = true};
    // Not exact anywhere: a sigmoid is no softmax for any option.
    decl.validate = [](const lab::PlanContext& plan) {
        lab::MultiHeadAttention::check_shape("attention/sigmoid", *plan.attention_shape);
    };
    // The scores and their sigmoid [B, H, T, T]: 2 H T per token.
    decl.estimate = [](const lab::PlanContext& plan) {
        return lab::MultiHeadAttention::estimate(*plan.attention_shape, 0, 2 * static_cast<double>(plan.attention_shape->heads * plan.train.seq_len));
    };
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<SigmoidAttention>(opts, shape, ctx);
    });
}
