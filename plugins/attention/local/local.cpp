// attention/local: sliding-window attention, softmax(Q K^T / sqrt(D)) V restricted to a band of
// keys around each query, as in Longformer's local attention (Beltagy et al. 2020, "Longformer:
// The Long-Document Transformer", sec. 3.1) and Mistral 7B's sliding window (Jiang et al. 2023).
// Query i sees key j when
//   causal:        i - window < j <= i   (itself and the window - 1 keys before it)
//   bidirectional: |i - j| < window      (2 window - 1 keys centred on it)
// With the key padding mask on top. Stacking L layers lets information travel L * (window - 1)
// positions.
//
// Cost: fused = true (default) runs the backend's tiled kernel, which skips tiles outside the
// band: time O(T * window * D) per head and memory O(T). fused = false builds the [T, S] band mask
// and calls the composite softmax_attention: O(T^2) time and memory, the reference the fused
// path is checked against.
#include <cstdlib>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "lab/plugin.h"

namespace {

using namespace lab;

class LocalAttention : public MultiHeadAttention {
public:
    LocalAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/local", shape, ctx), window_(opts.get_int("window")),
          fused_(opts.get_bool("fused")) {}

protected:
    // q [B, H, T, D]; k, v [B, H, S, D] -> [B, H, T, D].
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        if (fused_) return attention::fused_attention(q, k, v, args, window_);
        return attention::softmax_attention(q, k, v, args, band_mask(q.backend(), q.size(2), k.size(2), args.causal));
    }

private:
    // [T, S] u8, 1 where key j lies outside query i's window. Queries are aligned with the last
    // keys (query i sits at key position i + S - T), as in the causal mask and the fused kernel.
    // Cached: a model calls its blocks with the same T every step.
    Tensor band_mask(Backend& backend, int64_t T, int64_t S, bool causal) {
        auto key = std::make_tuple(T, S, causal);
        auto found = band_masks_.find(key);
        if (found != band_masks_.end()) return found->second;
        std::vector<int64_t> hidden(static_cast<size_t>(T * S));
        for (int64_t i = 0; i < T; ++i) {
            int64_t at = i + (S - T);
            for (int64_t j = 0; j < S; ++j) {
                // Causal: later keys are hidden by the causal mask itself; only too-old ones here.
                bool outside = causal ? j <= at - window_ : std::llabs(at - j) >= window_;
                hidden[static_cast<size_t>(i * S + j)] = outside ? 1 : 0;
            }
        }
        Tensor mask = Tensor::from_ints(backend, {T, S}, hidden, DType::u8);
        band_masks_.emplace(key, mask);
        return mask;
    }

    int64_t window_;
    bool fused_;
    std::map<std::tuple<int64_t, int64_t, bool>, Tensor> band_masks_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl("local", "1.0",
                          "sliding-window attention (Longformer, Mistral): each query sees keys within `window`");
    decl.schema
        .integer("window", 64,
                 "keys each query sees, counting itself: causal i - window < j <= i, otherwise |i - j| < window "
                 "(1000000 or anything >= the sequence length = full attention)")
        .at_least(1);
    decl.schema.boolean("fused", true,
                        "tiled kernel that skips tiles outside the window: time O(T * window), memory O(T); "
                        "false = band mask on the composite softmax (O(T^2), the reference)");
    // kv_cache: the core aligns queries with the last keys (T <= S), which is what a KV cache hands it.
    decl.attention.supports = {.causal = true, .padding_mask = true, .kv_cache = true};
    decl.attention.equals_softmax_with = {{"window", "1000000"}};
    decl.validate = [](const lab::PlanContext& plan) {
        lab::MultiHeadAttention::check_shape("attention/local", *plan.attention_shape);
    };
    // Composed: masked scores and probabilities over all T keys (2 H T per token); fused: the log-sum-exp.
    decl.estimate = [](const lab::PlanContext& plan) {
        const bool fused = plan.options->get_bool("fused");
        return lab::MultiHeadAttention::estimate(*plan.attention_shape, 0, fused ? static_cast<double>(plan.attention_shape->heads) : 2 * static_cast<double>(plan.attention_shape->heads * plan.train.seq_len));
    };
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<LocalAttention>(opts, shape, ctx);
    });
}
