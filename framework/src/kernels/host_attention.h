// The pieces of the fused attention kernels (host_attention.cpp, f32; host_attention_amx.cpp,
// bf16 on AMX) that both share: the problem and its masking rules, the views of the inputs, the
// row math between the tile products (online softmax, output rows, P and dS), the forward's task
// loop, and per-thread scratch. Internal to the kernels layer.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "host_kernels.h"
#include "lab/backend.h"

namespace lab::attention_kernel {

using host::ExpVec;

// The AMX kernel (host_attention_amx.cpp) is compiled where the compiler targets AMX-BF16 and
// AVX512-BF16 (-march=native on such a CPU); elsewhere only the f32 kernel exists.
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define LAB_HAVE_AMX_ATTENTION 1
#else
#define LAB_HAVE_AMX_ATTENTION 0
#endif

// Tiles of 64 queries (Br) and 64 keys (Bc): a [64, 64] score tile and the [64, D] tiles around
// it fit in L2 with room to spare for D up to 128, and 64 rows amortise the per-row softmax work.
constexpr int64_t kTile = 64;
constexpr int64_t kQueryTile = kTile;  // Br
constexpr int64_t kKeyTile = kTile;    // Bc
constexpr int64_t kRowBlock = 4;    // row counts handed to gemm_tile are padded to a multiple of this
constexpr int64_t kColBlock = 16;   // gemm_tile's columns per register block (two 8-float vectors)
constexpr float kMinusInf = -INFINITY;

inline ExpVec load8(const float* p) {
    ExpVec v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void store8(float* p, ExpVec v) { std::memcpy(p, &v, sizeof v); }

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Element (b, h, t, d) of a [B, H, T, D] f32 tensor with any strides.
struct HeadView {
    const float* base;
    int64_t sb, sh, st, sd;
    explicit HeadView(const Tensor& x)
        : base(x.data<float>()), sb(x.strides()[0]), sh(x.strides()[1]), st(x.strides()[2]), sd(x.strides()[3]) {}
    const float* row(int64_t b, int64_t h, int64_t t) const { return base + b * sb + h * sh + t * st; }
};

// Where row (b, n, t) of a [B, N, L, D] f32 output with contiguous rows goes (o, dq, dk and dv
// may be laid out as [B, L, N, D], the projections' layout, as the fused op allocates them).
struct OutRows {
    float* base;
    int64_t sb, sh, st;
    explicit OutRows(const Tensor& x)
        : base(x.data<float>()), sb(x.strides()[0]), sh(x.strides()[1]), st(x.strides()[2]) {}
    float* row(int64_t b, int64_t h, int64_t t) const { return base + b * sb + h * sh + t * st; }
};

// Everything the tile loops need to know about one call, with the masking rules of
// AttentionKernelArgs in one place.
struct Problem {
    int64_t B = 0, H = 0, Hkv = 0, T = 0, S = 0, D = 0;
    int64_t Dp = 0;  // D rounded up to gemm_tile's column block; the padding is zeros
    float scale = 1.0f;
    bool causal = false;
    int64_t window = 0;
    const uint8_t* key_padding = nullptr;  // [B, S] or null
    const float* slopes = nullptr;         // [H] or null
    float dropout = 0.0f;
    float keep_scale = 1.0f;  // 1 / (1 - dropout)
    RngKey dropout_key;

    int64_t query_tiles() const { return (T + kQueryTile - 1) / kQueryTile; }
    int64_t key_tiles() const { return (S + kKeyTile - 1) / kKeyTile; }
    int64_t kv_head(int64_t h) const { return h / (H / Hkv); }

    // Keys query i may see form one interval [lo, hi] (empty when lo > hi): causality and the
    // window bound it; padding is handled per key.
    void key_range(int64_t i, int64_t& lo, int64_t& hi) const {
        const int64_t pos = i + (S - T);
        hi = causal ? pos : (window > 0 ? pos + window - 1 : S - 1);
        lo = window > 0 ? pos - window + 1 : 0;
        lo = std::max<int64_t>(lo, 0);
        hi = std::min<int64_t>(hi, S - 1);
    }
    // The union over queries i0 .. i0 + rows (lo and hi grow with i).
    void tile_key_range(int64_t i0, int64_t rows, int64_t& lo, int64_t& hi) const {
        int64_t unused = 0;
        key_range(i0, lo, unused);
        key_range(i0 + rows - 1, unused, hi);
    }

    // col_mask[c] = 0 for key j0 + c if it exists and is not padding, else -inf. Returns how many
    // keys of the tile are visible (0: the tile can be skipped).
    int64_t key_tile_mask(float* col_mask, int64_t b, int64_t j0, bool& any_masked) const {
        int64_t visible = 0;
        for (int64_t c = 0; c < kKeyTile; ++c) {
            const int64_t j = j0 + c;
            const bool hidden = j >= S || (key_padding && key_padding[b * S + j] != 0);
            col_mask[c] = hidden ? kMinusInf : 0.0f;
            visible += hidden ? 0 : 1;
        }
        any_masked = visible < kKeyTile;
        return visible;
    }

    // s [kQueryTile, kKeyTile] holds the scaled q . k for queries i0 + r and keys j0 + c: add the
    // ALiBi bias and set hidden entries to -inf (rows < rows only). Nothing to do, and no pass over
    // the tile, when there is no bias and every query of the tile sees every key of it.
    void finish_scores(float* s, int64_t h, int64_t i0, int64_t rows, int64_t j0, const float* col_mask,
                       bool any_col_masked) const {
        int64_t first_lo = 0, first_hi = 0, last_lo = 0, last_hi = 0;
        key_range(i0, first_lo, first_hi);
        key_range(i0 + rows - 1, last_lo, last_hi);
        if (!slopes && !any_col_masked && last_lo <= j0 && first_hi >= j0 + kKeyTile - 1) return;
        static const std::array<float, kKeyTile> column = [] {
            std::array<float, kKeyTile> c{};
            for (int64_t i = 0; i < kKeyTile; ++i) c[static_cast<size_t>(i)] = static_cast<float>(i);
            return c;
        }();
        const float slope = slopes ? slopes[h] : 0.0f;
        for (int64_t r = 0; r < rows; ++r) {
            float* row = s + r * kKeyTile;
            const int64_t pos = i0 + r + (S - T);
            if (slopes) {
                // -slope * |pos - j|, exact as in the composite's bias tensor: the distance is an
                // integer held exactly in a float.
                const float first = static_cast<float>(pos - j0);
                for (int64_t c = 0; c < kKeyTile; ++c)
                    row[c] -= slope * std::fabs(first - column[static_cast<size_t>(c)]);
            }
            if (any_col_masked)
                for (int64_t c = 0; c < kKeyTile; ++c) row[c] += col_mask[c];
            int64_t lo = 0, hi = 0;
            key_range(i0 + r, lo, hi);
            const int64_t first_visible = std::clamp<int64_t>(lo - j0, 0, kKeyTile);
            const int64_t last_visible = std::clamp<int64_t>(hi - j0, -1, kKeyTile - 1);
            if (first_visible > last_visible) {
                std::fill(row, row + kKeyTile, kMinusInf);
                continue;
            }
            std::fill(row, row + first_visible, kMinusInf);
            std::fill(row + last_visible + 1, row + kKeyTile, kMinusInf);
        }
    }

    // z[c] = the dropout factor of probability (b, h, i, j0 + c): 0 or 1 / (1 - p), from the
    // Philox number at ((b * H + h) * T + i) * S + j (one block of four numbers per four keys).
    void dropout_factors(float* z, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t cols) const {
        const uint64_t first =
            dropout_key.offset + static_cast<uint64_t>(((b * H + h) * T + i) * S + j0);
        std::array<uint32_t, 4> words{};
        for (int64_t c = 0; c < cols; ++c) {
            const uint64_t counter = first + static_cast<uint64_t>(c);
            if (c == 0 || (counter & 3) == 0) words = philox_block(dropout_key.seed, dropout_key.stream, counter >> 2);
            const float u = static_cast<float>(words[counter & 3] >> 8) * (1.0f / 16777216.0f);
            z[c] = u >= dropout ? keep_scale : 0.0f;
        }
        std::fill(z + cols, z + kKeyTile, 0.0f);
    }
};

// The row math of a [64, 64] tile the f32 kernel uses: 8-float vectors (lab/host_kernels.h).
// The AMX kernel passes its own (AVX-512) to the functions below.
struct TileRowMath {
    static float row_max(const float* row) {
        ExpVec m = load8(row);
        for (int64_t c = 8; c < kKeyTile; c += 8) {
            const ExpVec v = load8(row + c);
            m = v > m ? v : m;
        }
        float out = m[0];
        for (int i = 1; i < host::kExpLanes; ++i) out = std::max(out, m[i]);
        return out;
    }
    // out[c] = exp(row[c] - shift) over the tile's 64 keys; returns their sum.
    static float exp_shifted(const float* row, float shift, float* out) {
        return host::exp_shifted(row, shift, out, kKeyTile);
    }
};

// The online softmax of one score tile s [64, 64] (Dao et al. 2022, algorithm 1, with the loops of
// FlashAttention-2): for each of the first `rows` rows, update the running maximum row_m and sum
// row_l, rescale the row's unnormalised output acc [64, Dp] by what the maximum moved, and turn the
// row into its probabilities under the new maximum, times the dropout factors. Rows that see
// nothing yet become zeros.
template <class RowMath = TileRowMath>
void online_softmax(const Problem& pb, float* s, int64_t rows, float* row_m, float* row_l, float* acc, int64_t Dp,
                    float* z, int64_t b, int64_t h, int64_t i0, int64_t j0, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
        float* row = s + r * kKeyTile;
        const float m_new = std::max(row_m[r], RowMath::row_max(row));
        if (m_new == kMinusInf) {  // nothing visible yet
            std::fill(row, row + kKeyTile, 0.0f);
            continue;
        }
        // Online softmax: rescale what was summed under the old maximum.
        const float correction = std::exp(row_m[r] - m_new);
        row_l[r] = row_l[r] * correction + RowMath::exp_shifted(row, m_new, row);
        row_m[r] = m_new;
        if (correction != 1.0f) {
            float* arow = acc + r * Dp;
            for (int64_t d = 0; d < Dp; ++d) arow[d] *= correction;
        }
        if (pb.dropout > 0.0f) {  // l sums the undropped probabilities, as softmax does
            pb.dropout_factors(z, b, h, i0 + r, j0, cols);
            for (int64_t c = 0; c < kKeyTile; ++c) row[c] *= z[c];
        }
    }
}

// The forward's last step for query rows i0 .. i0 + rows of head (b, h): o = acc / l and
// lse = m + log l; a query that saw no key gets a zero output and lse = -inf.
inline void write_output(const Problem& pb, const OutRows& o_rows, float* lse, const float* acc, int64_t Dp,
                         const float* row_m, const float* row_l, int64_t b, int64_t h, int64_t i0, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t row_index = (b * pb.H + h) * pb.T + i0 + r;
        float* out = o_rows.row(b, h, i0 + r);
        if (row_l[r] > 0.0f) {
            const float inv = 1.0f / row_l[r];
            for (int64_t d = 0; d < pb.D; ++d) out[d] = acc[r * Dp + d] * inv;
            lse[row_index] = row_m[r] + std::log(row_l[r]);
        } else {  // no visible key
            std::fill(out, out + pb.D, 0.0f);
            lse[row_index] = kMinusInf;
        }
    }
}

// The backward's elementwise step for one tile pair: s [64, 64] holds the scores (masked) and dp
// dO V^T. Afterwards s holds P = exp(S - lse) and dp dS = P * (dP * Z - D_i) (Z the dropout
// factors); pd gets P * Z with dropout. Rows from `rows` to rows_padded are zeroed.
template <class RowMath = TileRowMath>
void probs_and_dscores_rows(const Problem& pb, float* s, float* dp, float* pd, int64_t rows, int64_t rows_padded,
                            const float* tile_lse, const float* tile_delta, float* z, int64_t b, int64_t h,
                            int64_t i0, int64_t j0, int64_t cols) {
    for (int64_t r = 0; r < rows_padded; ++r) {
        float* prow = s + r * kKeyTile;
        float* dprow = dp + r * kKeyTile;
        float* pdrow = pd ? pd + r * kKeyTile : nullptr;
        if (r >= rows || tile_lse[r] == kMinusInf) {  // padding, or a query that sees no key
            std::fill(prow, prow + kKeyTile, 0.0f);
            std::fill(dprow, dprow + kKeyTile, 0.0f);
            if (pdrow) std::fill(pdrow, pdrow + kKeyTile, 0.0f);
            continue;
        }
        RowMath::exp_shifted(prow, tile_lse[r], prow);
        const float delta = tile_delta[r];
        if (pdrow) {
            pb.dropout_factors(z, b, h, i0 + r, j0, cols);
            for (int64_t c = 0; c < kKeyTile; ++c) {
                pdrow[c] = prow[c] * z[c];
                dprow[c] = prow[c] * (dprow[c] * z[c] - delta);
            }
        } else {
            for (int64_t c = 0; c < kKeyTile; ++c) dprow[c] = prow[c] * (dprow[c] - delta);
        }
    }
}

inline Problem make_problem(const char* kernel, const Tensor& q, const Tensor& k, const Tensor& v,
                            const AttentionKernelArgs& args) {
    const checks::AttentionSizes sizes = checks::attention_sizes(kernel, q, k, v, args);
    Problem p;
    p.B = sizes.B, p.H = sizes.H, p.T = sizes.T, p.D = sizes.D;
    p.Hkv = sizes.Hkv, p.S = sizes.S;
    p.Dp = round_up(std::max<int64_t>(p.D, 1), kColBlock);
    p.scale = args.scale;
    p.causal = args.causal;
    p.window = std::max<int64_t>(args.window, 0);
    if (args.key_padding_mask) p.key_padding = args.key_padding_mask->data<uint8_t>();
    if (args.slopes) p.slopes = args.slopes->data<float>();
    if (args.dropout > 0.0f) {
        p.dropout = args.dropout;
        p.keep_scale = 1.0f / (1.0f - args.dropout);
        p.dropout_key = args.dropout_key;
    }
    return p;
}

using checks::require_output;
using checks::require_output_rows;

// o and dout: [B, H, T, D] f32 whose rows (the D values of one (b, h, t)) are contiguous, in any
// order of rows (the fused op keeps them as [B, T, H, D], the layout the output projection reads).
inline HeadView require_rows(const char* kernel, const char* name, const Tensor& t, const Shape& shape) {
    checks::require_rows(kernel, name, t, shape);
    return HeadView(t);
}

// Per-thread tile buffers, carved from one allocation (f32, or bf16 bits for the AMX kernel).
template <class T>
struct ScratchOf {
    std::vector<T> storage;
    T* next;
    explicit ScratchOf(size_t count) : storage(count), next(storage.data()) {}
    T* take(int64_t n) {
        T* p = next;
        next += n;
        return p;
    }
};
using Scratch = ScratchOf<float>;

// One thread's buffers for forward tasks.
struct ForwardTiles {
    float* acc;       // [Br, Dp] unnormalised output
    float* s;         // [Br, Bc] scores, then probabilities
    float* col_mask;  // [Bc]
    float* z;         // [Bc] dropout factors
    float* row_m;     // [Br] running maximum
    float* row_l;     // [Br] running sum
    static size_t floats(int64_t Dp) {
        return static_cast<size_t>(kQueryTile * Dp + kQueryTile * kKeyTile + 2 * kKeyTile + 2 * kQueryTile);
    }
    ForwardTiles(Scratch& scratch, int64_t Dp)
        : acc(scratch.take(kQueryTile * Dp)), s(scratch.take(kQueryTile * kKeyTile)), col_mask(scratch.take(kKeyTile)),
          z(scratch.take(kKeyTile)), row_m(scratch.take(kQueryTile)), row_l(scratch.take(kQueryTile)) {}
};

// One forward task, task = (b, h, query tile), as both kernels run it: the key tiles its queries
// can see, each as scores, masks, the online softmax and the product with v, then o and lse. The
// kernel supplies the two products: score_tile(s, b, h, g, i0, j0) writes the [64, 64] scores
// (scale q) k^T of query tile i0 and key tile j0 (g: the kv head), and add_pv(acc, p, b, g, i0, j0)
// adds the probabilities p [64, 64] (zero past the last query) times v's key tile to acc.
template <class RowMath, class ScoreTile, class AddPv>
void forward_task(const Problem& pb, int64_t task, int64_t Dp, const ForwardTiles& t, const OutRows& o_rows,
                  float* lse, ScoreTile&& score_tile, AddPv&& add_pv) {
    const int64_t tiles = pb.query_tiles();
    const int64_t b = task / (pb.H * tiles), h = task / tiles % pb.H, i0 = task % tiles * kQueryTile;
    const int64_t rows = std::min(kQueryTile, pb.T - i0), g = pb.kv_head(h);
    std::fill(t.acc, t.acc + kQueryTile * Dp, 0.0f);
    std::fill(t.row_m, t.row_m + kQueryTile, kMinusInf);
    std::fill(t.row_l, t.row_l + kQueryTile, 0.0f);
    int64_t lo = 0, hi = -1;
    if (pb.S > 0) pb.tile_key_range(i0, rows, lo, hi);
    for (int64_t j0 = lo / kKeyTile * kKeyTile; lo <= hi && j0 <= hi; j0 += kKeyTile) {
        const int64_t cols = std::min(kKeyTile, pb.S - j0);
        bool any_masked = false;
        if (pb.key_tile_mask(t.col_mask, b, j0, any_masked) == 0) continue;
        score_tile(t.s, b, h, g, i0, j0);
        pb.finish_scores(t.s, h, i0, rows, j0, t.col_mask, any_masked);
        online_softmax<RowMath>(pb, t.s, rows, t.row_m, t.row_l, t.acc, Dp, t.z, b, h, i0, j0, cols);
        std::fill(t.s + rows * kKeyTile, t.s + kQueryTile * kKeyTile, 0.0f);
        add_pv(t.acc, t.s, b, g, i0, j0);
    }
    write_output(pb, o_rows, lse, t.acc, Dp, t.row_m, t.row_l, b, h, i0, rows);
}

// ---- the AMX kernel (host_attention_amx.cpp) ----

// True when this build has the AMX kernel, the CPU has AMX-BF16 and AVX512-BF16, and the OS grants
// the process AMX's tile state (asked once).
bool amx_attention_ready();

// HostBackend::attention with bf16 tile products on AMX: o rows and lse [B, H, T] as the f32 kernel
// writes them; with `saved` (AttentionKernelArgs::saved), the packed inputs the backward reads are
// kept there. Call only when amx_attention_ready().
void amx_attention(Backend& backend, Problem pb, const OutRows& o_rows, float* lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, std::vector<Tensor>* saved);

// HostBackend::attention_backward likewise: dq, dk, dv [B, H(kv), T(S), D] rows wherever OutRows
// puts them; lse and delta (D_i = dO_i . O_i) [B, H, T].
void amx_attention_backward(Backend& backend, Problem pb, const OutRows& dq, const OutRows& dk, const OutRows& dv,
                            const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const float* lse,
                            const float* delta, const std::vector<Tensor>* saved);

}  // namespace lab::attention_kernel
