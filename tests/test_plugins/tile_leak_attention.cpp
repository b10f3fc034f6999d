// Test-only plugin (build/test_plugins/test_tile_leak_attention.so): attention/tile_leak, a
// deliberately broken variant for the conformance check's tests. Softmax attention whose causal
// mask is applied the way a tiled kernel with a boundary bug applies it: keys in 64-wide tiles,
// a tile after the query's skipped, and inside the diagonal tile the mask applied only in the
// first tile. From query 64 on, a query sees the later keys of its own tile, so the leak shows
// only when a sequence reaches past position 65 (query 64 sees key 65 at T = 129, not at T = 65).
// Everything else is right: the check must fail causality and nothing else.
#include "lab/plugin.h"

namespace {

using namespace lab;

constexpr int64_t kTile = 64;

class TileLeakAttention : public MultiHeadAttention {
public:
    TileLeakAttention(const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/tile_leak", shape, ctx) {}

protected:
    // q [B, H, T, D], k and v [B, H, S, D] -> [B, H, T, D]
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        if (!args.causal) return attention::softmax_attention(q, k, v, args);
        const int64_t T = q.size(2), S = k.size(2);
        std::vector<int64_t> hidden(static_cast<size_t>(T * S));  // [T, S], 1 = not visible
        for (int64_t i = 0; i < T; ++i) {
            const int64_t position = i + S - T, tile = position / kTile;
            const int64_t last_visible = tile == 0 ? position : std::min(S - 1, (tile + 1) * kTile - 1);
            for (int64_t j = 0; j < S; ++j) hidden[static_cast<size_t>(i * S + j)] = j > last_visible;
        }
        AttentionCoreArgs open = args;
        open.causal = false;
        return attention::softmax_attention(q, k, v, open, Tensor::from_ints(q.backend(), {T, S}, hidden, DType::u8));
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl{"tile_leak", "0.1",
                         "test plugin: causal attention whose diagonal 64-key tile is unmasked past tile 0", {}};
    decl.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(std::move(decl), [](const lab::Options&, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<TileLeakAttention>(shape, ctx);
    });
}
