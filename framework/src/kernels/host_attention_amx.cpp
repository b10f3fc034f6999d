// HostBackend::attention and attention_backward under mixed precision, on AMX: the tiled
// FlashAttention of host_attention.cpp with its tile products on Intel AMX (tdpbf16ps: bf16
// operands, f32 accumulation) instead of f32 FMAs.
//
// What is bf16: q, k, v and dout, rounded once per call as they are packed, and the probabilities
// P and score gradients dS of each tile pair, rounded where they enter a product. Everything else
// is f32, as in the f32 kernel: scores, the online softmax and its running maximum and sum, lse,
// D_i = rowsum(dO * O), and every accumulator (o, dq, dk, dv). That is what torch.autocast does
// around scaled_dot_product_attention, and the same tile loops, masks and dropout numbering as
// the f32 kernel (the shared pieces are in host_attention.h).
//
// AMX multiplies C [16, 16] f32 += A [16, 32] bf16 . B, where B [32, 16] is stored as 16 rows of
// pairs: row x holds (B[2x][n], B[2x + 1][n]) for n = 0 .. 15 ("pairs" layout below). So each input
// is packed, once per call, in the layouts its products read:
//   S    = (scale q) k^T       A = q rows [64, Dp]      B = k as pairs over D
//   O   += P v                 A = P rows [64, 64]      B = v as pairs over keys
//   dP   = dO v^T              A = dO rows              B = v as pairs over D
//   dV^T += dO^T (P * Z)       A = dO columns [Dp, 64]  B = P * Z as pairs over queries
//   dK^T += (scale q)^T dS     A = q columns            B = dS as pairs over queries
//   dQ  += dS k                A = dS rows              B = k as pairs over keys
// dK and dV are accumulated transposed so that P and dS, the [64, 64] tiles made once per tile
// pair, never need a transpose: their pairs layout interleaves two rows, one vector permute.
// When a backward will follow (AttentionKernelArgs::saved), the forward packs q, k and v in the
// backward's layouts too, from the same read, and keeps them; the backward then packs only dout.
// The tile softmax runs 16 lanes wide (exp16). The task loops are the f32 kernel's (forward_task,
// and the one-pass backward over (b, kv head)); the tile products are AMX calls.
#include "host_attention.h"
#include "host_amx.h"
#include "host_lanes.h"

#include <utility>

#if LAB_HAVE_AMX_ATTENTION
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cpuid.h>
#endif

namespace lab::attention_kernel {

#if LAB_HAVE_AMX_ATTENTION

// GCC 12's own AVX-512 intrinsics (_mm512_reduce_max_ps, _mm512_roundscale_ps, ...) start from
// _mm512_undefined_ps(), which -Wmaybe-uninitialized reports inside the compiler's headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

// exp(x) over 16 lanes (host::exp_fast: host::exp_vec's polynomial with AVX-512's scalef for the
// 2^n). Below -87 (and -inf) exactly 0.
inline __m512 exp16(__m512 x) { return host::exp_fast(x); }

// The tile row math (TileRowMath in host_attention.h) in 16-float vectors.
struct Avx512RowMath {
    static float row_max(const float* row) {
        __m512 m = _mm512_loadu_ps(row);
        for (int64_t c = 16; c < kKeyTile; c += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(row + c));
        return _mm512_reduce_max_ps(m);
    }
    static float exp_shifted(const float* row, float shift, float* out) {
        const __m512 s = _mm512_set1_ps(shift);
        __m512 sum = _mm512_setzero_ps();
        for (int64_t c = 0; c < kKeyTile; c += 16) {
            const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + c), s));
            _mm512_storeu_ps(out + c, e);
            sum = _mm512_add_ps(sum, e);
        }
        return _mm512_reduce_add_ps(sum);
    }
};

// n (a multiple of 16) f32 values rounded to bf16 (nearest even), in order.
inline void rows_to_bf16(uint16_t* out, const float* in, int64_t n) {
    for (int64_t c = 0; c < n; c += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(in + c)));
}

// Values c .. c + 15 of two f32 rows rounded to bf16 and interleaved: 16 pairs (even[c + i],
// odd[c + i]) of 4 bytes.
inline __m512i rounded_pairs(const float* even, const float* odd, int64_t c) {
    return interleave_pairs((__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(odd + c), _mm512_loadu_ps(even + c)));
}

// Two rows of n (a multiple of 16) f32 values rounded to bf16 and interleaved, the pairs layout:
// out[2c] = even[c], out[2c + 1] = odd[c].
inline void pair_rows_to_bf16(uint16_t* out, const float* even, const float* odd, int64_t n) {
    for (int64_t c = 0; c < n; c += 16) _mm512_storeu_si512(out + 2 * c, rounded_pairs(even, odd, c));
}

// dst [cols, D] (rows ld apart) = the transpose of src [Dp, 64]'s first D rows and cols columns,
// in 16 x 16 blocks transposed in registers (a gather per 16 values cost a tenth of the backward).
inline void transpose_out(float* dst, int64_t ld, const float* src, int64_t cols, int64_t D) {
    __m512 r[16];
    for (int64_t d0 = 0; d0 < D; d0 += 16) {
        const __mmask16 lanes = D - d0 >= 16 ? __mmask16(0xffff) : __mmask16((1u << (D - d0)) - 1);
        for (int64_t c0 = 0; c0 < cols; c0 += 16) {
            for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + (d0 + i) * kTile + c0);
            transpose16(r);
            for (int64_t j = 0; j < 16 && c0 + j < cols; ++j)
                _mm512_mask_storeu_ps(dst + (c0 + j) * ld + d0, lanes, r[j]);
        }
    }
}

// A [64, Dp] tile of f32 values (rows: keys or queries) in the layouts the products read, each
// 64 * Dp bf16 values.
enum class Layout {
    rows,         // [64, Dp]: A operand
    columns,      // [Dp, 64]: A operand of the transposed tile
    pairs_depth,  // [Dp / 2, 64, 2]: B operand of the transposed tile (products over D)
    pairs_rows,   // [32, Dp, 2]: B operand (products over the tile's rows)
};

// The heads of a [B, N, L, D] f32 tensor (any strides) packed into bf16 tiles of 64 rows, in one
// or two layouts, rows zero-padded to whole tiles and columns to Dp, times `multiplier` (the softmax
// scale for q, which then need not touch the scores). Like PackedTiles in host_attention.cpp; both
// layouts come from one read of the input, which is what packing costs (the inputs are far larger
// than the caches).
class PackedBf16 {
public:
    PackedBf16(Backend& backend, const Tensor& x, int64_t Dp, std::vector<Layout> layouts, float multiplier = 1.0f)
        : layouts_(std::move(layouts)), heads_(x.size(1)), tiles_((x.size(2) + kTile - 1) / kTile),
          tile_elems_(kTile * Dp) {
        const int64_t B = x.size(0), L = x.size(2), D = x.size(3);
        const int64_t count = B * heads_ * tiles_;
        for (size_t i = 0; i < layouts_.size(); ++i) {
            storage_[i] = Tensor::empty(backend, {std::max<int64_t>(count * tile_elems_, 1)}, DType::bf16);
            data_[i] = static_cast<uint16_t*>(storage_[i].raw());
        }
        const HeadView view(x);
        // Rows are read in memory order. In the projections' [B, T, H, D] output the heads of one
        // position sit side by side and one head's consecutive rows a page or more apart, which
        // the hardware prefetcher does not follow: there the heads are the inner loop (walking
        // head by head made packing three times slower). A [B, H, T, D] tensor walks head by head.
        const bool heads_inner = view.sh < view.st;
        const bool need_rounded = std::find(layouts_.begin(), layouts_.end(), Layout::pairs_depth) != layouts_.end();
        const int64_t tasks = heads_inner ? B * tiles_ : count;
#pragma omp parallel if (count * tile_elems_ >= host::kParallelElems)
        {
            std::vector<float> rows_f32(static_cast<size_t>(2 * Dp));
            std::vector<uint16_t> rows_bf16(static_cast<size_t>(2 * Dp));
            // Rows r and r + 1 of head n's tile t0 / 64 into every layout.
            auto pack_pair = [&](int64_t b, int64_t n, int64_t t0, int64_t r) {
                float* even = rows_f32.data();
                float* odd = even + Dp;
                for (int64_t half = 0; half < 2; ++half) {  // Dp f32 values: scaled, zero past D and L
                    float* out = half ? odd : even;
                    if (t0 + r + half >= L) {
                        std::fill(out, out + Dp, 0.0f);
                        continue;
                    }
                    const float* in = view.row(b, n, t0 + r + half);
                    for (int64_t d = 0; d < D; ++d) out[d] = in[d * view.sd] * multiplier;
                    std::fill(out + D, out + Dp, 0.0f);
                }
                if (need_rounded) rows_to_bf16(rows_bf16.data(), rows_f32.data(), 2 * Dp);
                const int64_t offset = ((b * heads_ + n) * tiles_ + t0 / kTile) * tile_elems_;
                for (size_t i = 0; i < layouts_.size(); ++i)
                    write(layouts_[i], const_cast<uint16_t*>(data_[i]) + offset, r, even, odd, rows_bf16.data(),
                          Dp);
            };
#pragma omp for schedule(static)
            for (int64_t task = 0; task < tasks; ++task) {
                if (heads_inner) {  // task = (b, tile)
                    const int64_t b = task / tiles_, t0 = task % tiles_ * kTile;
                    for (int64_t r = 0; r < kTile; r += 2)
                        for (int64_t n = 0; n < heads_; ++n) pack_pair(b, n, t0, r);
                } else {  // task = (b, n, tile)
                    const int64_t b = task / (heads_ * tiles_), n = task / tiles_ % heads_;
                    for (int64_t r = 0; r < kTile; r += 2) pack_pair(b, n, task % tiles_ * kTile, r);
                }
            }
        }
    }
    // x's tiles as an earlier PackedBf16 of x left them (storage(i) of each layout).
    PackedBf16(const Tensor& x, int64_t Dp, std::vector<Layout> layouts, const Tensor* storage)
        : layouts_(std::move(layouts)), heads_(x.size(1)), tiles_((x.size(2) + kTile - 1) / kTile),
          tile_elems_(kTile * Dp) {
        for (size_t i = 0; i < layouts_.size(); ++i) {
            storage_[i] = storage[i];
            data_[i] = static_cast<const uint16_t*>(storage_[i].raw());
        }
    }
    const Tensor& storage(size_t i) const { return storage_[i]; }
    const uint16_t* tile(Layout layout, int64_t b, int64_t n, int64_t t) const {
        const size_t i = layouts_[0] == layout ? 0 : 1;
        return data_[i] + ((b * heads_ + n) * tiles_ + t) * tile_elems_;
    }

private:
    // Rows r and r + 1 of a tile (f32 one after the other, and rounded to bf16 for the
    // pairs_depth layout) into `layout`.
    static __m512i lane_numbers() { return _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0); }
    static void write(Layout layout, uint16_t* dst, int64_t r, const float* even, const float* odd,
                      const uint16_t* rounded, int64_t Dp) {
        switch (layout) {
            case Layout::rows:  // the two rows are adjacent there too
                rows_to_bf16(dst + r * Dp, even, 2 * Dp);
                return;
            case Layout::pairs_rows:  // pair-row r / 2 starts at r * Dp
                pair_rows_to_bf16(dst + r * Dp, even, odd, Dp);
                return;
            case Layout::columns: {  // (row r, row r + 1) of column d: 4 bytes at [d, r]
                const __m512i step = _mm512_set1_epi32(kTile / 2);  // a column, in 4-byte units
                __m512i at = _mm512_add_epi32(_mm512_mullo_epi32(lane_numbers(), step), _mm512_set1_epi32(r / 2));
                for (int64_t c = 0; c < Dp; c += 16) {
                    _mm512_i32scatter_epi32(dst, at, rounded_pairs(even, odd, c), 4);
                    at = _mm512_add_epi32(at, _mm512_mullo_epi32(_mm512_set1_epi32(16), step));
                }
                return;
            }
            case Layout::pairs_depth:  // the pair (d, d + 1) of a row: 4 bytes at [d / 2, row]
                for (int64_t half = 0; half < 2; ++half) {
                    __m512i at = _mm512_add_epi32(_mm512_mullo_epi32(lane_numbers(), _mm512_set1_epi32(kTile)),
                                                  _mm512_set1_epi32(r + half));
                    for (int64_t d = 0; d < Dp; d += 32) {  // 16 pairs
                        _mm512_i32scatter_epi32(dst, at, _mm512_loadu_si512(rounded + half * Dp + d), 4);
                        at = _mm512_add_epi32(at, _mm512_set1_epi32(16 * kTile));
                    }
                }
                return;
        }
    }

    std::vector<Layout> layouts_;
    Tensor storage_[2];
    const uint16_t* data_[2] = {nullptr, nullptr};
    int64_t heads_, tiles_, tile_elems_;
};

using Bf16Scratch = ScratchOf<uint16_t>;  // bf16 bits

// The OS hands out AMX's tile state on request only (Linux 5.16 and later).
bool request_amx_permission() {
    constexpr long kRequestPermission = 0x1023;  // ARCH_REQ_XCOMP_PERM
    constexpr long kTileData = 18;               // XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
}

bool cpu_has_amx_bf16() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool amx_tile = d & (1u << 24), amx_bf16 = d & (1u << 22);
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    const bool avx512_bf16 = a & (1u << 5);
    return amx_tile && amx_bf16 && avx512_bf16;
}

}  // namespace

bool amx_attention_ready() {
    static const bool ready = cpu_has_amx_bf16() && request_amx_permission();
    return ready;
}

void amx_attention(Backend& backend, Problem pb, const OutRows& o_rows, float* lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, std::vector<Tensor>* saved) {
    pb.Dp = round_up(std::max<int64_t>(pb.D, 1), kDepthBlock);
    const int64_t Dp = pb.Dp, tiles = pb.query_tiles(), tasks = pb.B * pb.H * tiles;
    // For a backward to come, each input is packed in the backward's second layout too, from the
    // same read, and kept: the backward then packs only dout.
    auto layouts = [saved](Layout forward, Layout backward) {
        return saved ? std::vector<Layout>{forward, backward} : std::vector<Layout>{forward};
    };
    const PackedBf16 q_tiles(backend, q, Dp, layouts(Layout::rows, Layout::columns), pb.scale);
    const PackedBf16 k_tiles(backend, k, Dp, layouts(Layout::pairs_depth, Layout::pairs_rows));
    const PackedBf16 v_tiles(backend, v, Dp, layouts(Layout::pairs_rows, Layout::pairs_depth));
    if (saved)
        *saved = {q_tiles.storage(0), q_tiles.storage(1), k_tiles.storage(0),
                  k_tiles.storage(1), v_tiles.storage(0), v_tiles.storage(1)};

#pragma omp parallel if (tasks > 1)
    {
        Scratch scratch(ForwardTiles::floats(Dp));
        const ForwardTiles tiles_of_thread(scratch, Dp);
        Bf16Scratch bf16(static_cast<size_t>(kQueryTile * kKeyTile));
        uint16_t* p16 = bf16.take(kQueryTile * kKeyTile);  // [Br, Bc] probabilities, rows
        auto score_tile = [&](float* s, int64_t b, int64_t h, int64_t g, int64_t i0, int64_t j0) {
            amx_gemm(s, kKeyTile, q_tiles.tile(Layout::rows, b, h, i0 / kQueryTile), Dp,
                     k_tiles.tile(Layout::pairs_depth, b, g, j0 / kKeyTile), kQueryTile, kKeyTile, Dp, false);
        };
        auto add_pv = [&](float* acc, const float* p, int64_t b, int64_t g, int64_t, int64_t j0) {
            rows_to_bf16(p16, p, kQueryTile * kKeyTile);
            amx_gemm(acc, Dp, p16, kKeyTile, v_tiles.tile(Layout::pairs_rows, b, g, j0 / kKeyTile), kQueryTile, Dp,
                     kKeyTile, true);
        };
        configure_tiles();
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; ++task)
            forward_task<Avx512RowMath>(pb, task, Dp, tiles_of_thread, o_rows, lse, score_tile, add_pv);
        _tile_release();
    }
}

void amx_attention_backward(Backend& backend, Problem pb, const OutRows& dq, const OutRows& dk, const OutRows& dv,
                            const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const float* lse,
                            const float* delta, const std::vector<Tensor>* saved) {
    pb.Dp = round_up(std::max<int64_t>(pb.D, 1), kDepthBlock);
    const int64_t Dp = pb.Dp, D = pb.D, group = pb.H / pb.Hkv, head_tasks = pb.B * pb.Hkv;
    const int64_t Tp = round_up(pb.T, kQueryTile);
    const bool dropout = pb.dropout > 0.0f;
    // q, k and v as the forward kept them (see amx_attention), or packed here.
    const bool kept = saved && saved->size() == 6;
    auto inputs = [&](const Tensor& x, std::vector<Layout> layouts, size_t first, float multiplier) {
        return kept ? PackedBf16(x, Dp, std::move(layouts), saved->data() + first)
                    : PackedBf16(backend, x, Dp, std::move(layouts), multiplier);
    };
    const PackedBf16 q_tiles = inputs(q, {Layout::rows, Layout::columns}, 0, pb.scale);
    const PackedBf16 k_tiles = inputs(k, {Layout::pairs_depth, Layout::pairs_rows}, 2, 1.0f);
    const PackedBf16 v_tiles = inputs(v, {Layout::pairs_rows, Layout::pairs_depth}, 4, 1.0f);
    const PackedBf16 do_tiles(backend, dout, Dp, {Layout::rows, Layout::columns});
    constexpr int64_t kPair = kQueryTile * kKeyTile;

    // One task per (b, kv head) owns its dk, dv and (for the group's query heads) dq: no two
    // threads add into one gradient element, as in the f32 kernel's one-pass form.
#pragma omp parallel if (head_tasks > 1)
    {
        Scratch scratch(static_cast<size_t>(3 * kPair + 2 * Dp * kKeyTile + group * Tp * Dp + 2 * kKeyTile +
                                            2 * kQueryTile));
        float* s = scratch.take(kPair);                     // [Br, Bc] S, then P
        float* dp = scratch.take(kPair);                    // [Br, Bc] dP, then dS
        float* pd = dropout ? scratch.take(kPair) : nullptr;  // [Br, Bc] P * Z
        float* dk_t = scratch.take(Dp * kKeyTile);          // [Dp, Bc] dK^T of the key tile
        float* dv_t = scratch.take(Dp * kKeyTile);          // [Dp, Bc] dV^T
        float* dq_acc = scratch.take(group * Tp * Dp);      // [group, Tp, Dp]
        float* col_mask = scratch.take(kKeyTile);
        float* z = scratch.take(kKeyTile);
        float* tile_lse = scratch.take(kQueryTile);
        float* tile_delta = scratch.take(kQueryTile);
        Bf16Scratch bf16(static_cast<size_t>(3 * kPair));
        uint16_t* p_pairs = bf16.take(kPair);   // [Br / 2, Bc, 2] P * Z
        uint16_t* ds_pairs = bf16.take(kPair);  // [Br / 2, Bc, 2] dS
        uint16_t* ds_rows = bf16.take(kPair);   // [Br, Bc] dS
        configure_tiles();

#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < head_tasks; ++task) {
            const int64_t b = task / pb.Hkv, g = task % pb.Hkv;
            std::fill(dq_acc, dq_acc + group * Tp * Dp, 0.0f);
            for (int64_t j0 = 0; j0 < pb.S; j0 += kKeyTile) {
                const int64_t cols = std::min(kKeyTile, pb.S - j0), j = j0 / kKeyTile;
                std::fill(dk_t, dk_t + Dp * kKeyTile, 0.0f);
                std::fill(dv_t, dv_t + Dp * kKeyTile, 0.0f);
                bool any_masked = false;
                const bool visible = pb.key_tile_mask(col_mask, b, j0, any_masked) > 0;
                for (int64_t h = g * group; visible && h < (g + 1) * group; ++h) {
                    for (int64_t i0 = 0; i0 < pb.T; i0 += kQueryTile) {
                        const int64_t rows = std::min(kQueryTile, pb.T - i0), i = i0 / kQueryTile;
                        int64_t lo = 0, hi = 0;
                        pb.tile_key_range(i0, rows, lo, hi);
                        if (lo > hi || hi < j0 || lo >= j0 + cols) continue;
                        const int64_t row_index = (b * pb.H + h) * pb.T + i0;
                        std::copy(lse + row_index, lse + row_index + rows, tile_lse);
                        std::copy(delta + row_index, delta + row_index + rows, tile_delta);
                        amx_gemm(s, kKeyTile, q_tiles.tile(Layout::rows, b, h, i), Dp,
                                 k_tiles.tile(Layout::pairs_depth, b, g, j), kQueryTile, kKeyTile, Dp, false);
                        pb.finish_scores(s, h, i0, rows, j0, col_mask, any_masked);
                        amx_gemm(dp, kKeyTile, do_tiles.tile(Layout::rows, b, h, i), Dp,
                                 v_tiles.tile(Layout::pairs_depth, b, g, j), kQueryTile, kKeyTile, Dp, false);
                        probs_and_dscores_rows<Avx512RowMath>(pb, s, dp, pd, rows, kQueryTile, tile_lse, tile_delta, z,
                                                              b, h, i0, j0, cols);
                        const float* probs = pd ? pd : s;  // P * Z: what dV multiplies
                        for (int64_t r = 0; r < kQueryTile; r += 2) {
                            pair_rows_to_bf16(p_pairs + r * kKeyTile, probs + r * kKeyTile, probs + (r + 1) * kKeyTile,
                                              kKeyTile);
                            pair_rows_to_bf16(ds_pairs + r * kKeyTile, dp + r * kKeyTile, dp + (r + 1) * kKeyTile,
                                              kKeyTile);
                        }
                        rows_to_bf16(ds_rows, dp, kPair);
                        // dV^T += dO^T (P * Z) and dK^T += (scale q)^T dS, over the tile's queries.
                        amx_gemm(dv_t, kKeyTile, do_tiles.tile(Layout::columns, b, h, i), kQueryTile, p_pairs, Dp,
                                 kKeyTile, kQueryTile, true);
                        amx_gemm(dk_t, kKeyTile, q_tiles.tile(Layout::columns, b, h, i), kQueryTile, ds_pairs, Dp,
                                 kKeyTile, kQueryTile, true);
                        // dQ += dS k, over the tile's keys.
                        float* dq_rows = dq_acc + ((h - g * group) * Tp + i0) * Dp;
                        amx_gemm(dq_rows, Dp, ds_rows, kKeyTile, k_tiles.tile(Layout::pairs_rows, b, g, j), kQueryTile,
                                 Dp, kKeyTile, true);
                    }
                }
                transpose_out(dk.row(b, g, j0), dk.st, dk_t, cols, D);
                transpose_out(dv.row(b, g, j0), dv.st, dv_t, cols, D);
            }
            for (int64_t h = g * group; h < (g + 1) * group; ++h)
                for (int64_t t = 0; t < pb.T; ++t) {
                    const float* acc = dq_acc + ((h - g * group) * Tp + t) * Dp;
                    float* dq_row = dq.row(b, h, t);
                    for (int64_t d = 0; d < D; ++d) dq_row[d] = acc[d] * pb.scale;
                }
        }
        _tile_release();
    }
}

#else  // built without AMX: the f32 kernel serves every call

bool amx_attention_ready() { return false; }

void amx_attention(Backend&, Problem, const OutRows&, float*, const Tensor&, const Tensor&, const Tensor&,
                   std::vector<Tensor>*) {
    throw BackendError("attention: this labrun was built without the AMX kernel; hint: amx_attention_ready() is false");
}

void amx_attention_backward(Backend&, Problem, const OutRows&, const OutRows&, const OutRows&, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&, const float*, const float*,
                            const std::vector<Tensor>*) {
    throw BackendError(
        "attention_backward: this labrun was built without the AMX kernel; hint: amx_attention_ready() is false");
}

#endif

}  // namespace lab::attention_kernel
