// attention/alibi: attention with linear biases (Press et al. 2022, "Train Short, Test Long:
// Attention with Linear Biases Enables Input Length Extrapolation", sec. 3). Each head h adds a
// fixed penalty proportional to the query-key distance to its scores:
//   softmax(Q K^T / sqrt(D) - m_h * |i - j|) V        (causal: i - j >= 0, so -m_h * (i - j))
// with slopes m_h = 2^(-8 (h + 1) / H) (attention::alibi_slopes; the paper's rule for H not a
// power of two). The bias is not learned, so the model has no parameters beyond softmax
// attention's. The paper drops position embeddings altogether; a model that keeps its own gets
// both signals.
//
// Cost: as softmax attention. fused = false (default) adds a cached [1, H, T, S] bias to the
// composite softmax_attention: O(T^2) time and memory. fused = true passes the slopes to the
// backend's tiled kernel, which computes the bias on the fly: O(T^2) time, O(T) memory.
#include <cmath>
#include <cstdlib>
#include <map>
#include <utility>
#include <vector>

#include "lab/plugin.h"

namespace {

using namespace lab;

class AlibiAttention : public MultiHeadAttention {
public:
    AlibiAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/alibi", shape, ctx), fused_(opts.get_bool("fused")),
          slopes_host_(attention::alibi_slopes(shape.heads)) {
        slopes_ = Tensor::from_floats(*ctx.backend, {shape.heads}, slopes_host_);  // [H]
    }

protected:
    // q [B, H, T, D]; k, v [B, H, S, D] -> [B, H, T, D].
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        if (fused_) return attention::fused_attention(q, k, v, args, 0, slopes_);
        return attention::softmax_attention(q, k, v, args, Tensor(), distance_bias(q.backend(), q.size(2), k.size(2)));
    }

private:
    // [1, H, T, S] f32: -m_h * |i + (S - T) - j| (queries aligned with the last keys, as the causal
    // mask and the fused kernel align them). Keys a causal query cannot see get a bias too; the
    // causal mask hides them anyway. Cached per (T, S): a model runs its blocks at one T per step.
    Tensor distance_bias(Backend& backend, int64_t T, int64_t S) {
        auto key = std::make_pair(T, S);
        auto found = biases_.find(key);
        if (found != biases_.end()) return found->second;
        int64_t H = static_cast<int64_t>(slopes_host_.size());
        std::vector<float> bias(static_cast<size_t>(H * T * S));
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < T; ++i)
                for (int64_t j = 0; j < S; ++j)
                    bias[static_cast<size_t>((h * T + i) * S + j)] =
                        -slopes_host_[static_cast<size_t>(h)] * static_cast<float>(std::llabs(i + (S - T) - j));
        Tensor t = Tensor::from_floats(backend, {1, H, T, S}, bias);
        biases_.emplace(key, t);
        return t;
    }

    bool fused_;
    std::vector<float> slopes_host_;  // m_h, h = 0 .. H - 1
    Tensor slopes_;                   // the same, [H] on the backend, for the fused kernel
    std::map<std::pair<int64_t, int64_t>, Tensor> biases_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl("alibi", "1.0",
                          "softmax attention with per-head linear distance biases (ALiBi, Press et al. 2022)");
    decl.schema.boolean("fused", false,
                        "tiled kernel computing the bias on the fly: memory O(T), not O(T^2); "
                        "false = a cached [H, T, T] bias on the composite softmax (the reference)");
    // kv_cache: the core aligns queries with the last keys (T <= S), which is what a KV cache hands it.
    decl.attention.supports = {.causal = true, .padding_mask = true, .kv_cache = true};
    // Not exact anywhere: the bias is always there (no option turns it off).
    decl.validate = [](const lab::PlanContext& plan) {
        lab::MultiHeadAttention::check_shape("attention/alibi", *plan.attention_shape);
    };
    // Composed: scores with the bias, and probabilities (2 H T per token); fused: the log-sum-exp.
    decl.estimate = [](const lab::PlanContext& plan) {
        const bool fused = plan.options->get_bool("fused");
        return lab::MultiHeadAttention::estimate(*plan.attention_shape, 0, fused ? static_cast<double>(plan.attention_shape->heads) : 2 * static_cast<double>(plan.attention_shape->heads * plan.train.seq_len));
    };
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<AlibiAttention>(opts, shape, ctx);
    });
}
