// Test-only plugin (build/test_plugins/test_cache_offset_attention.so): attention/cache_offset, a
// deliberately broken variant for the conformance check's tests. It declares kv_cache, but its
// causal mask ignores the cache's offset: query i sees keys j <= i instead of j <= i + S - T, so
// with T < S new queries miss the last keys (a decoded token sees only the first cached
// positions). Without a cache (S == T) it is right: the check must fail kv_cache and nothing else.
#include "lab/plugin.h"

namespace {

using namespace lab;

class CacheOffsetAttention : public MultiHeadAttention {
public:
    CacheOffsetAttention(const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/cache_offset", shape, ctx) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        if (!args.causal) return attention::softmax_attention(q, k, v, args);
        const int64_t T = q.size(2), S = k.size(2);
        std::vector<int64_t> hidden(static_cast<size_t>(T * S));  // [T, S], 1 = not visible
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < S; ++j) hidden[static_cast<size_t>(i * S + j)] = j > i;
        AttentionCoreArgs open = args;
        open.causal = false;
        return attention::softmax_attention(q, k, v, open, Tensor::from_ints(q.backend(), {T, S}, hidden, DType::u8));
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"cache_offset", "0.1", "test plugin: KV-cache attention whose causal mask ignores S - T", {}};
    decl.attention.supports = {.causal = true, .padding_mask = true, .kv_cache = true};
    registry.add_attention(std::move(decl), [](const lab::Options&, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<CacheOffsetAttention>(shape, ctx);
    });
}
