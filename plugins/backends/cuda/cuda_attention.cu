// CudaBackend::attention and attention_backward: cuDNN's fused attention where it applies
// (cuda_sdpa.cpp), otherwise the backend's own FlashAttention-2 kernels below, in f32, which follow
// the CPU kernel (framework/src/kernels/host_attention.cpp) term for term: the same masks, ALiBi bias,
// Philox dropout mask, online softmax and the backward of Dao et al. 2022, algorithm 2, with
// D_i = rowsum(dO_i * O_i).
//
// Why hand-written: the cuDNN graph covers bf16 inputs without dropout, windows or ALiBi, and
// padding only as sequence lengths; f32 attention and every one of those options (with our Philox
// mask, which must equal the CPU's bit for bit) need a kernel of our own.
//
// Layout of every kernel: 256 threads as a 16 x 16 grid, ty = tid / 16, tx = tid % 16. A score
// tile [Br, Bc] is split into micro tiles: thread (ty, tx) holds queries ty + 16 a and keys
// tx + 16 j, so a query row lives in the 16 lanes of one half warp and its max and sum are two
// shuffle reductions. Accumulators over the head dimension [rows, D] hold rows ty + 16 a and
// dims tx + 16 x. The [rows, D] tiles sit in shared memory with an odd row stride (DMax + 1), so
// the 16 rows a half warp reads at one d fall in 16 different banks. Tiles are zero-padded to
// whole rows and to DMax columns: the products then run over DMax without bounds checks and the
// padding adds exact zeros.
//
// The backward is deterministic: dK and dV are summed by one block per key tile (over the query
// heads of its group and the query tiles that see it) and dQ by one block per query tile, each in
// a fixed order, with no atomics; the probabilities are recomputed in both passes.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_philox.h"
#include "lab/error.h"
#include "lab/kernel_checks.h"

namespace lab::cuda {

namespace {

constexpr int kThreads = 256;  // per block, a 16 x 16 grid
constexpr int kLanes = 16;     // threads sharing one query row (a half warp)
constexpr unsigned kFullWarp = 0xffffffffu;

// Tile sizes per head-size bucket DMax (the largest D the bucket holds). Every kernel's shared
// memory stays under 99 KB, the smallest opt-in limit among sm_80+ GPUs (sm_86, sm_89): forward
// 34 / 50 / 83 / 70 KB, backward 43 / 67 / 75 / 68 KB for DMax = 32 / 64 / 128 / 256. Register
// tiles stay at 16-64 floats per thread. Br and Bc are multiples of 16 (the thread grid).
constexpr int forward_query_tile(int dmax) { return dmax <= 128 ? 64 : 32; }
constexpr int forward_key_tile(int dmax) { return dmax <= 128 ? 64 : 32; }
constexpr int backward_query_tile(int dmax) { return dmax <= 128 ? 32 : 16; }
constexpr int backward_key_tile(int dmax) { return dmax <= 64 ? 64 : (dmax <= 128 ? 32 : 16); }

template <int DMax, int Br, int Bc>
struct TileShape {
    static_assert(Br % kLanes == 0 && Bc % kLanes == 0 && DMax % kLanes == 0 && Bc <= kThreads);
    static constexpr int ld = DMax + 1;  // row stride of [rows, DMax] tiles (odd: no bank conflicts)
    static constexpr int ldp = Bc + 1;   // row stride of [Br, Bc] probability tiles
    static constexpr int rows = Br / kLanes;  // query rows per thread: ty + 16 a
    static constexpr int keys = Bc / kLanes;  // keys per thread: tx + 16 j (scores), ty + 16 a (dK, dV)
    static constexpr int dims = DMax / kLanes;  // head dims per thread: tx + 16 x
};

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Element (b, n, t, d) of a [B, N, L, D] f32 tensor with any strides (q, k, v, dout).
struct HeadTensor {
    const float* data;
    int64_t sb, sn, st, sd;
    __device__ float at(int64_t b, int64_t n, int64_t t, int64_t d) const {
        return data[b * sb + n * sn + t * st + d * sd];
    }
};

HeadTensor head_tensor(const Tensor& x) {
    return {x.data<float>(), x.strides()[0], x.strides()[1], x.strides()[2], x.strides()[3]};
}

// Row (b, n, t) of a [B, N, L, D] f32 tensor whose rows are contiguous, in any order (o).
struct HeadRows {
    float* data;
    int64_t sb, sn, st;
    __device__ float* row(int64_t b, int64_t n, int64_t t) const { return data + b * sb + n * sn + t * st; }
};

// The sizes and options of one call, with the masking rules of AttentionKernelArgs in one place.
struct Problem {
    int64_t B, H, Hkv, T, S, D;
    float scale;
    bool causal;
    int64_t window;                // 0: none
    const uint8_t* key_padding;    // [B, S] or null
    const float* slopes;           // [H] or null
    float dropout, keep_scale;     // dropout == 0: none; keep_scale = 1 / (1 - dropout)
    RngKey dropout_key;

    __device__ int64_t kv_head(int64_t h) const { return h / (H / Hkv); }

    // Keys query i may see form one interval [lo, hi] (empty when lo > hi): causality and the
    // window bound it; padding is checked per key.
    __device__ void key_range(int64_t i, int64_t& lo, int64_t& hi) const {
        const int64_t pos = i + (S - T);
        hi = causal ? pos : (window > 0 ? pos + window - 1 : S - 1);
        lo = window > 0 ? pos - window + 1 : 0;
        lo = max64(lo, 0);
        hi = min64(hi, S - 1);
    }
    // The union over queries i0 .. i0 + rows - 1 (lo and hi grow with i).
    __device__ void tile_key_range(int64_t i0, int64_t rows, int64_t& lo, int64_t& hi) const {
        int64_t unused = 0;
        key_range(i0, lo, unused);
        key_range(i0 + rows - 1, unused, hi);
    }
    __device__ bool key_hidden(int64_t b, int64_t j) const {
        return j >= S || (key_padding != nullptr && key_padding[b * S + j] != 0);
    }
    // 0 or 1 / (1 - p) for probability (b, h, i, j): Philox number ((b * H + h) * T + i) * S + j.
    __device__ float dropout_factor(int64_t b, int64_t h, int64_t i, int64_t j) const {
        const uint64_t element = static_cast<uint64_t>(((b * H + h) * T + i) * S + j);
        const float u = philox_uniform(dropout_key.seed, dropout_key.stream, dropout_key.offset, element);
        return u >= dropout ? keep_scale : 0.0f;
    }
};

Problem make_problem(const checks::AttentionSizes& sizes, const AttentionKernelArgs& args) {
    Problem p{};
    p.B = sizes.B, p.H = sizes.H, p.Hkv = sizes.Hkv, p.T = sizes.T, p.S = sizes.S, p.D = sizes.D;
    p.scale = args.scale;
    p.causal = args.causal;
    p.window = args.window > 0 ? args.window : 0;
    p.key_padding = args.key_padding_mask ? args.key_padding_mask->data<uint8_t>() : nullptr;
    p.slopes = args.slopes ? args.slopes->data<float>() : nullptr;
    p.dropout = 0.0f;
    p.keep_scale = 1.0f;
    if (args.dropout > 0.0f) {
        p.dropout = args.dropout;
        p.keep_scale = 1.0f / (1.0f - args.dropout);
        p.dropout_key = args.dropout_key;
    }
    return p;
}

// dst [Rows, DMax] (row stride DMax + 1) = multiplier * x[b, n, t0 + r, d] for r < count and
// d < D, zero elsewhere. All threads of the block take part; the caller synchronises.
template <int DMax, int Rows>
__device__ void load_tile(float* dst, const HeadTensor& x, int64_t b, int64_t n, int64_t t0, int64_t count,
                          int64_t D, float multiplier) {
    for (int index = static_cast<int>(threadIdx.x); index < Rows * DMax; index += kThreads) {
        const int r = index / DMax, d = index % DMax;
        dst[r * (DMax + 1) + d] = (r < count && d < D) ? x.at(b, n, t0 + r, d) * multiplier : 0.0f;
    }
}

// hidden[c] = 1 where key j0 + c does not exist or is padding, else 0. A barrier for the whole
// block (so also for tiles loaded just before); returns the number of visible keys.
template <int Bc>
__device__ int load_key_flags(float* hidden, const Problem& p, int64_t b, int64_t j0) {
    const int c = static_cast<int>(threadIdx.x);
    bool visible = false;
    if (c < Bc) {
        const bool is_hidden = p.key_hidden(b, j0 + c);
        hidden[c] = is_hidden ? 1.0f : 0.0f;
        visible = !is_hidden;
    }
    return __syncthreads_count(visible);
}

// out[a][j] = sum over d of a_s[ty + 16 a][d] * b_s[tx + 16 j][d] for [rows, DMax] tiles.
template <int DMax, int RowsA, int RowsB>
__device__ void row_products(float (&out)[RowsA][RowsB], const float* a_s, const float* b_s, int ty, int tx) {
    constexpr int ld = DMax + 1;
#pragma unroll
    for (int a = 0; a < RowsA; ++a)
#pragma unroll
        for (int j = 0; j < RowsB; ++j) out[a][j] = 0.0f;
#pragma unroll 8
    for (int d = 0; d < DMax; ++d) {
        float av[RowsA], bv[RowsB];
#pragma unroll
        for (int a = 0; a < RowsA; ++a) av[a] = a_s[(ty + kLanes * a) * ld + d];
#pragma unroll
        for (int j = 0; j < RowsB; ++j) bv[j] = b_s[(tx + kLanes * j) * ld + d];
#pragma unroll
        for (int a = 0; a < RowsA; ++a)
#pragma unroll
            for (int j = 0; j < RowsB; ++j) out[a][j] += av[a] * bv[j];
    }
}

// s[a][j] = the score of query i0 + ty + 16 a and key j0 + tx + 16 j (q_s holds scale * q, so
// this is scale * q . k, minus the ALiBi bias), or -inf where the key is hidden from the query or
// either does not exist.
template <int DMax, int Br, int Bc>
__device__ void tile_scores(float (&s)[Br / kLanes][Bc / kLanes], const Problem& p, const float* q_s,
                            const float* k_s, const float* hidden_s, int64_t h, int64_t i0, int64_t j0, int ty,
                            int tx) {
    row_products<DMax>(s, q_s, k_s, ty, tx);
    const float slope = p.slopes != nullptr ? p.slopes[h] : 0.0f;
#pragma unroll
    for (int a = 0; a < Br / kLanes; ++a) {
        const int64_t i = i0 + ty + kLanes * a, pos = i + (p.S - p.T);
        int64_t lo = 0, hi = -1;
        if (i < p.T) p.key_range(i, lo, hi);
#pragma unroll
        for (int j = 0; j < Bc / kLanes; ++j) {
            const int c = tx + kLanes * j;
            const int64_t key = j0 + c;
            if (key < lo || key > hi || hidden_s[c] != 0.0f) {
                s[a][j] = -INFINITY;
            } else if (p.slopes != nullptr) {
                // The distance is an integer, exact in a float, as in the CPU kernel's bias.
                s[a][j] -= slope * fabsf(static_cast<float>(pos - key));
            }
        }
    }
}

// For the loaded query and key tiles: P = exp(S - lse) (0 where hidden or the query sees no key),
// Z the dropout factors (1 without dropout), dP = dO V^T, and stores
//   ds_s[r][c] = P * (dP * Z - D_i)   (dS, Dao et al. 2022, algorithm 2 with dropout)
//   pz_s[r][c] = P * Z                (when pz_s is given)
// for queries r = ty + 16 a and keys c = tx + 16 j. lse_s and delta_s hold -inf and 0 for rows
// past T.
template <int DMax, int Br, int Bc>
__device__ void store_probabilities_and_dscores(float* pz_s, float* ds_s, const Problem& p, const float* q_s,
                                                const float* do_s, const float* k_s, const float* v_s,
                                                const float* hidden_s, const float* lse_s, const float* delta_s,
                                                int64_t b, int64_t h, int64_t i0, int64_t j0, int ty, int tx) {
    using Tile = TileShape<DMax, Br, Bc>;
    float s[Tile::rows][Tile::keys], dp[Tile::rows][Tile::keys];
    tile_scores<DMax, Br, Bc>(s, p, q_s, k_s, hidden_s, h, i0, j0, ty, tx);
    row_products<DMax>(dp, do_s, v_s, ty, tx);
#pragma unroll
    for (int a = 0; a < Tile::rows; ++a) {
        const int r = ty + kLanes * a;
        const float lse = lse_s[r], delta = delta_s[r];
#pragma unroll
        for (int j = 0; j < Tile::keys; ++j) {
            const int c = tx + kLanes * j;
            const float prob = lse == -INFINITY ? 0.0f : expf(s[a][j] - lse);
            // A zero probability needs no factor: its products are zero either way.
            const float z = (p.dropout > 0.0f && prob != 0.0f) ? p.dropout_factor(b, h, i0 + r, j0 + c) : 1.0f;
            ds_s[r * Tile::ldp + c] = prob * (dp[a][j] * z - delta);
            if (pz_s != nullptr) pz_s[r * Tile::ldp + c] = prob * z;
        }
    }
}

// lse_s[r], delta_s[r] for queries i0 + r of head (b, h): the forward's lse and D_i; -inf and 0
// past T.
template <int Br>
__device__ void load_row_stats(float* lse_s, float* delta_s, const Problem& p, const float* lse, const float* delta,
                               int64_t b, int64_t h, int64_t i0) {
    for (int r = static_cast<int>(threadIdx.x); r < Br; r += kThreads) {
        const int64_t i = i0 + r, row = (b * p.H + h) * p.T + i;
        lse_s[r] = i < p.T ? lse[row] : -INFINITY;
        delta_s[r] = i < p.T ? delta[row] : 0.0f;
    }
}

// ---- forward ----

// o and lse of query tile (b, h, i0 .. i0 + Br - 1): FlashAttention-2's forward. The block walks
// the key tiles its queries can see (skipping tiles hidden by causality, the window or padding),
// keeping per query a running maximum m, a running sum l of exp(s - m) (undropped, as softmax
// sums) and an unnormalised output; o = acc / l and lse = m + log l at the end, o = 0 and
// lse = -inf for a query that sees no key.
// Launch: one block of 256 threads per (b, h, query tile), blocks ordered (b, h, tile);
// shared memory forward_shared_bytes<DMax>().
template <int DMax, int Br, int Bc>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(Problem p, HeadTensor q, HeadTensor k, HeadTensor v, HeadRows o, float* lse) {
    using Tile = TileShape<DMax, Br, Bc>;
    extern __shared__ float shared[];
    float* q_s = shared;                       // [Br, ld] scale * q
    float* kv_s = q_s + Br * Tile::ld;         // [Bc, ld] keys, then values
    float* p_s = kv_s + Bc * Tile::ld;         // [Br, ldp] probabilities times dropout factors
    float* hidden_s = p_s + Br * Tile::ldp;    // [Bc]

    const int ty = threadIdx.x / kLanes, tx = threadIdx.x % kLanes;
    const int64_t tiles = (p.T + Br - 1) / Br, bh = blockIdx.x / tiles;
    const int64_t b = bh / p.H, h = bh % p.H, g = p.kv_head(h);
    const int64_t i0 = blockIdx.x % tiles * Br, rows = min64(Br, p.T - i0);
    load_tile<DMax, Br>(q_s, q, b, h, i0, rows, p.D, p.scale);

    float m[Tile::rows], l[Tile::rows], acc[Tile::rows][Tile::dims];
#pragma unroll
    for (int a = 0; a < Tile::rows; ++a) {
        m[a] = -INFINITY;
        l[a] = 0.0f;
#pragma unroll
        for (int x = 0; x < Tile::dims; ++x) acc[a][x] = 0.0f;
    }

    int64_t lo = 0, hi = -1;
    if (p.S > 0) p.tile_key_range(i0, rows, lo, hi);
    for (int64_t j0 = lo / Bc * Bc; lo <= hi && j0 <= hi; j0 += Bc) {
        __syncthreads();  // the previous tile's values and probabilities are read (and q_s written)
        load_tile<DMax, Bc>(kv_s, k, b, g, j0, min64(Bc, p.S - j0), p.D, 1.0f);
        if (load_key_flags<Bc>(hidden_s, p, b, j0) == 0) continue;  // only padding: nothing to add

        float s[Tile::rows][Tile::keys];
        tile_scores<DMax, Br, Bc>(s, p, q_s, kv_s, hidden_s, h, i0, j0, ty, tx);
#pragma unroll
        for (int a = 0; a < Tile::rows; ++a) {
            float tile_max = s[a][0];
#pragma unroll
            for (int j = 1; j < Tile::keys; ++j) tile_max = fmaxf(tile_max, s[a][j]);
#pragma unroll
            for (int offset = kLanes / 2; offset > 0; offset /= 2)
                tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullWarp, tile_max, offset));
            const float m_new = fmaxf(m[a], tile_max);
            // Online softmax: rescale what was summed under the old maximum. While nothing is
            // visible (m_new = -inf) the exponentials are taken against 0, which makes every
            // probability 0 and leaves l and acc as they were, as the CPU kernel's skip does;
            // every lane still runs the shuffles below.
            const bool none_visible = m_new == -INFINITY;
            const float shift = none_visible ? 0.0f : m_new;
            const float correction = none_visible ? 1.0f : expf(m[a] - m_new);
            float tile_sum = 0.0f;
#pragma unroll
            for (int j = 0; j < Tile::keys; ++j) {
                s[a][j] = expf(s[a][j] - shift);
                tile_sum += s[a][j];
            }
#pragma unroll
            for (int offset = kLanes / 2; offset > 0; offset /= 2)
                tile_sum += __shfl_xor_sync(kFullWarp, tile_sum, offset);
            l[a] = l[a] * correction + tile_sum;
            m[a] = m_new;
#pragma unroll
            for (int x = 0; x < Tile::dims; ++x) acc[a][x] *= correction;
            const int r = ty + kLanes * a;
#pragma unroll
            for (int j = 0; j < Tile::keys; ++j) {
                const int c = tx + kLanes * j;
                float prob = s[a][j];
                // l sums the undropped probabilities, as softmax does; the output the dropped ones.
                if (p.dropout > 0.0f && prob != 0.0f) prob *= p.dropout_factor(b, h, i0 + r, j0 + c);
                p_s[r * Tile::ldp + c] = prob;
            }
        }
        __syncthreads();  // every thread is done with the keys
        load_tile<DMax, Bc>(kv_s, v, b, g, j0, min64(Bc, p.S - j0), p.D, 1.0f);
        __syncthreads();
        // acc += P V
        for (int c = 0; c < Bc; ++c) {
            float pv[Tile::rows], vv[Tile::dims];
#pragma unroll
            for (int a = 0; a < Tile::rows; ++a) pv[a] = p_s[(ty + kLanes * a) * Tile::ldp + c];
#pragma unroll
            for (int x = 0; x < Tile::dims; ++x) vv[x] = kv_s[c * Tile::ld + tx + kLanes * x];
#pragma unroll
            for (int a = 0; a < Tile::rows; ++a)
#pragma unroll
                for (int x = 0; x < Tile::dims; ++x) acc[a][x] += pv[a] * vv[x];
        }
    }

#pragma unroll
    for (int a = 0; a < Tile::rows; ++a) {
        const int r = ty + kLanes * a;
        if (r >= rows) continue;
        const int64_t i = i0 + r;
        const bool seen = l[a] > 0.0f;
        const float inv = seen ? 1.0f / l[a] : 0.0f;
        float* out = o.row(b, h, i);
#pragma unroll
        for (int x = 0; x < Tile::dims; ++x) {
            const int d = tx + kLanes * x;
            if (d < p.D) out[d] = seen ? acc[a][x] * inv : 0.0f;
        }
        if (tx == 0) lse[(b * p.H + h) * p.T + i] = seen ? m[a] + logf(l[a]) : -INFINITY;
    }
}

// ---- backward ----

// delta[row] = sum over d of dout[row, d] * o[row, d] for the B * H * T rows (D_i of Dao et al.
// 2022, eq. 4; equal to rowsum(dP * P), with O(T) memory).
// Launch: 256 threads per block, one warp per row (8 rows per block).
__global__ void __launch_bounds__(kThreads)
    attention_delta_kernel(float* delta, HeadTensor dout, HeadTensor o, Problem p) {
    constexpr int kWarps = kThreads / 32;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= p.B * p.H * p.T) return;  // whole warps leave: the shuffles below stay converged
    const int64_t b = row / (p.H * p.T), h = row / p.T % p.H, t = row % p.T;
    float sum = 0.0f;
    for (int64_t d = lane; d < p.D; d += 32) sum += dout.at(b, h, t, d) * o.at(b, h, t, d);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFullWarp, sum, offset);
    if (lane == 0) delta[row] = sum;
}

// dk and dv of key tile (b, kv head g, keys j0 .. j0 + Bc - 1), contiguous [B, Hkv, S, D]:
//   dV = sum over (P * Z)^T dO,  dK = sum over dS^T (scale Q)
// over the query heads of the group and the query tiles that see the tile, in that order. The
// key and value tiles stay in shared memory; dK and dV accumulate in registers (keys ty + 16 a,
// dims tx + 16 x). A tile no query sees gets zeros.
// Launch: one block of 256 threads per (b, g, key tile), ordered (b, g, tile); shared memory
// dkdv_shared_bytes<DMax>().
template <int DMax, int Br, int Bc>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(Problem p, HeadTensor q, HeadTensor k, HeadTensor v, HeadTensor dout, const float* lse,
                          const float* delta, float* dk, float* dv) {
    using Tile = TileShape<DMax, Br, Bc>;
    extern __shared__ float shared[];
    float* k_s = shared;                      // [Bc, ld]
    float* v_s = k_s + Bc * Tile::ld;         // [Bc, ld]
    float* q_s = v_s + Bc * Tile::ld;         // [Br, ld] scale * q
    float* do_s = q_s + Br * Tile::ld;        // [Br, ld]
    float* pz_s = do_s + Br * Tile::ld;       // [Br, ldp] P * Z
    float* ds_s = pz_s + Br * Tile::ldp;      // [Br, ldp] dS
    float* lse_s = ds_s + Br * Tile::ldp;     // [Br]
    float* delta_s = lse_s + Br;              // [Br]
    float* hidden_s = delta_s + Br;           // [Bc]

    const int ty = threadIdx.x / kLanes, tx = threadIdx.x % kLanes;
    const int64_t key_tiles = (p.S + Bc - 1) / Bc, bg = blockIdx.x / key_tiles;
    const int64_t b = bg / p.Hkv, g = bg % p.Hkv;
    const int64_t j0 = blockIdx.x % key_tiles * Bc, cols = min64(Bc, p.S - j0);
    load_tile<DMax, Bc>(k_s, k, b, g, j0, cols, p.D, 1.0f);
    load_tile<DMax, Bc>(v_s, v, b, g, j0, cols, p.D, 1.0f);
    const int visible = load_key_flags<Bc>(hidden_s, p, b, j0);

    float dk_acc[Tile::keys][Tile::dims], dv_acc[Tile::keys][Tile::dims];
#pragma unroll
    for (int a = 0; a < Tile::keys; ++a)
#pragma unroll
        for (int x = 0; x < Tile::dims; ++x) dk_acc[a][x] = dv_acc[a][x] = 0.0f;

    const int64_t group = p.H / p.Hkv;
    for (int64_t h = g * group; visible > 0 && h < (g + 1) * group; ++h) {
        for (int64_t i0 = 0; i0 < p.T; i0 += Br) {
            const int64_t rows = min64(Br, p.T - i0);
            int64_t lo = 0, hi = 0;
            p.tile_key_range(i0, rows, lo, hi);
            if (lo > hi || hi < j0 || lo >= j0 + cols) continue;  // no query of the tile sees these keys
            __syncthreads();  // the previous query tile is read
            load_tile<DMax, Br>(q_s, q, b, h, i0, rows, p.D, p.scale);
            load_tile<DMax, Br>(do_s, dout, b, h, i0, rows, p.D, 1.0f);
            load_row_stats<Br>(lse_s, delta_s, p, lse, delta, b, h, i0);
            __syncthreads();
            store_probabilities_and_dscores<DMax, Br, Bc>(pz_s, ds_s, p, q_s, do_s, k_s, v_s, hidden_s, lse_s,
                                                          delta_s, b, h, i0, j0, ty, tx);
            __syncthreads();
            for (int r = 0; r < Br; ++r) {
                float pz[Tile::keys], ds[Tile::keys], dov[Tile::dims], qv[Tile::dims];
#pragma unroll
                for (int a = 0; a < Tile::keys; ++a) {
                    pz[a] = pz_s[r * Tile::ldp + ty + kLanes * a];
                    ds[a] = ds_s[r * Tile::ldp + ty + kLanes * a];
                }
#pragma unroll
                for (int x = 0; x < Tile::dims; ++x) {
                    dov[x] = do_s[r * Tile::ld + tx + kLanes * x];
                    qv[x] = q_s[r * Tile::ld + tx + kLanes * x];
                }
#pragma unroll
                for (int a = 0; a < Tile::keys; ++a)
#pragma unroll
                    for (int x = 0; x < Tile::dims; ++x) {
                        dv_acc[a][x] += pz[a] * dov[x];
                        dk_acc[a][x] += ds[a] * qv[x];
                    }
            }
        }
    }

#pragma unroll
    for (int a = 0; a < Tile::keys; ++a) {
        const int c = ty + kLanes * a;
        if (c >= cols) continue;
        const int64_t row = (b * p.Hkv + g) * p.S + j0 + c;
#pragma unroll
        for (int x = 0; x < Tile::dims; ++x) {
            const int d = tx + kLanes * x;
            if (d < p.D) {
                dk[row * p.D + d] = dk_acc[a][x];  // q_s held scale * q
                dv[row * p.D + d] = dv_acc[a][x];
            }
        }
    }
}

// dq of query tile (b, h, i0 .. i0 + Br - 1), contiguous [B, H, T, D]: scale * sum over the key
// tiles the queries see of dS K, in key order. A query that sees no key gets zeros.
// Launch: one block of 256 threads per (b, h, query tile), ordered (b, h, tile); shared memory
// dq_shared_bytes<DMax>().
template <int DMax, int Br, int Bc>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(Problem p, HeadTensor q, HeadTensor k, HeadTensor v, HeadTensor dout, const float* lse,
                        const float* delta, float* dq) {
    using Tile = TileShape<DMax, Br, Bc>;
    extern __shared__ float shared[];
    float* q_s = shared;                      // [Br, ld] scale * q
    float* do_s = q_s + Br * Tile::ld;        // [Br, ld]
    float* k_s = do_s + Br * Tile::ld;        // [Bc, ld]
    float* v_s = k_s + Bc * Tile::ld;         // [Bc, ld]
    float* ds_s = v_s + Bc * Tile::ld;        // [Br, ldp] dS
    float* lse_s = ds_s + Br * Tile::ldp;     // [Br]
    float* delta_s = lse_s + Br;              // [Br]
    float* hidden_s = delta_s + Br;           // [Bc]

    const int ty = threadIdx.x / kLanes, tx = threadIdx.x % kLanes;
    const int64_t tiles = (p.T + Br - 1) / Br, bh = blockIdx.x / tiles;
    const int64_t b = bh / p.H, h = bh % p.H, g = p.kv_head(h);
    const int64_t i0 = blockIdx.x % tiles * Br, rows = min64(Br, p.T - i0);
    load_tile<DMax, Br>(q_s, q, b, h, i0, rows, p.D, p.scale);
    load_tile<DMax, Br>(do_s, dout, b, h, i0, rows, p.D, 1.0f);
    load_row_stats<Br>(lse_s, delta_s, p, lse, delta, b, h, i0);

    float dq_acc[Tile::rows][Tile::dims];
#pragma unroll
    for (int a = 0; a < Tile::rows; ++a)
#pragma unroll
        for (int x = 0; x < Tile::dims; ++x) dq_acc[a][x] = 0.0f;

    int64_t lo = 0, hi = -1;
    if (p.S > 0) p.tile_key_range(i0, rows, lo, hi);
    for (int64_t j0 = lo / Bc * Bc; lo <= hi && j0 <= hi; j0 += Bc) {
        __syncthreads();  // the previous key tile and its dS are read (and the query rows written)
        load_tile<DMax, Bc>(k_s, k, b, g, j0, min64(Bc, p.S - j0), p.D, 1.0f);
        load_tile<DMax, Bc>(v_s, v, b, g, j0, min64(Bc, p.S - j0), p.D, 1.0f);
        if (load_key_flags<Bc>(hidden_s, p, b, j0) == 0) continue;
        store_probabilities_and_dscores<DMax, Br, Bc>(nullptr, ds_s, p, q_s, do_s, k_s, v_s, hidden_s, lse_s,
                                                      delta_s, b, h, i0, j0, ty, tx);
        __syncthreads();
        for (int c = 0; c < Bc; ++c) {
            float ds[Tile::rows], kv[Tile::dims];
#pragma unroll
            for (int a = 0; a < Tile::rows; ++a) ds[a] = ds_s[(ty + kLanes * a) * Tile::ldp + c];
#pragma unroll
            for (int x = 0; x < Tile::dims; ++x) kv[x] = k_s[c * Tile::ld + tx + kLanes * x];
#pragma unroll
            for (int a = 0; a < Tile::rows; ++a)
#pragma unroll
                for (int x = 0; x < Tile::dims; ++x) dq_acc[a][x] += ds[a] * kv[x];
        }
    }

#pragma unroll
    for (int a = 0; a < Tile::rows; ++a) {
        const int r = ty + kLanes * a;
        if (r >= rows) continue;
        float* out = dq + ((b * p.H + h) * p.T + i0 + r) * p.D;
#pragma unroll
        for (int x = 0; x < Tile::dims; ++x) {
            const int d = tx + kLanes * x;
            if (d < p.D) out[d] = dq_acc[a][x] * p.scale;
        }
    }
}

// ---- launches ----

template <int DMax>
constexpr size_t forward_shared_bytes() {
    using Tile = TileShape<DMax, forward_query_tile(DMax), forward_key_tile(DMax)>;
    constexpr int Br = forward_query_tile(DMax), Bc = forward_key_tile(DMax);
    return sizeof(float) * static_cast<size_t>(Br * Tile::ld + Bc * Tile::ld + Br * Tile::ldp + Bc);
}
template <int DMax>
constexpr size_t dkdv_shared_bytes() {
    using Tile = TileShape<DMax, backward_query_tile(DMax), backward_key_tile(DMax)>;
    constexpr int Br = backward_query_tile(DMax), Bc = backward_key_tile(DMax);
    return sizeof(float) *
           static_cast<size_t>(2 * Bc * Tile::ld + 2 * Br * Tile::ld + 2 * Br * Tile::ldp + 2 * Br + Bc);
}
template <int DMax>
constexpr size_t dq_shared_bytes() {
    using Tile = TileShape<DMax, backward_query_tile(DMax), backward_key_tile(DMax)>;
    constexpr int Br = backward_query_tile(DMax), Bc = backward_key_tile(DMax);
    return sizeof(float) * static_cast<size_t>(2 * Br * Tile::ld + 2 * Bc * Tile::ld + Br * Tile::ldp + 2 * Br + Bc);
}

// The head-size bucket (DMax) of head size D.
int head_bucket(int64_t D) {
    if (D <= 32) return 32;
    if (D <= 64) return 64;
    if (D <= 128) return 128;
    if (D <= 256) return 256;
    throw BackendError("backend cuda: attention with head size D = " + std::to_string(D) +
                       " is not supported by the cuda backend's kernels (D <= 256); hint: use more heads of a "
                       "smaller size, or the cpu backend");
}

unsigned grid_blocks(int64_t blocks, const char* kernel) {
    if (blocks > 0x7fffffff)
        throw BackendError(std::string("backend cuda: ") + kernel + " would need " + std::to_string(blocks) +
                           " blocks, more than a grid holds; hint: split the batch");
    return static_cast<unsigned>(blocks);
}

// Lets `kernel` use `bytes` of dynamic shared memory (above the 48 KB default).
template <class Kernel>
void allow_shared_memory(const CudaBackend& backend, Kernel* kernel, size_t bytes, int64_t D) {
    const size_t limit = backend.properties().sharedMemPerBlockOptin;
    if (bytes > limit)
        throw BackendError("backend cuda: attention with head size D = " + std::to_string(D) + " needs " +
                           std::to_string(bytes) + " bytes of shared memory per block, but " +
                           backend.properties().name + " offers " + std::to_string(limit) +
                           "; hint: use a smaller head size, or the cpu backend");
    LAB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <int DMax>
void run_forward(const CudaBackend& backend, const Problem& p, const Tensor& o, const Tensor& lse, const Tensor& q,
                 const Tensor& k, const Tensor& v) {
    constexpr int Br = forward_query_tile(DMax), Bc = forward_key_tile(DMax);
    constexpr size_t bytes = forward_shared_bytes<DMax>();
    auto* kernel = attention_forward_kernel<DMax, Br, Bc>;
    allow_shared_memory(backend, kernel, bytes, p.D);
    const HeadRows o_rows{o.data<float>(), o.strides()[0], o.strides()[1], o.strides()[2]};
    const unsigned blocks = grid_blocks(p.B * p.H * ((p.T + Br - 1) / Br), "attention_forward_kernel");
    kernel<<<blocks, kThreads, bytes, backend.stream()>>>(p, head_tensor(q), head_tensor(k), head_tensor(v), o_rows,
                                                          lse.data<float>());
    LAB_CUDA_LAUNCHED("attention_forward_kernel");
}

template <int DMax>
void run_backward(const CudaBackend& backend, const Problem& p, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                  const HeadTensor& dout, const HeadTensor& q, const HeadTensor& k, const HeadTensor& v,
                  const float* lse, const float* delta) {
    constexpr int Br = backward_query_tile(DMax), Bc = backward_key_tile(DMax);
    if (dk.numel() > 0) {
        constexpr size_t bytes = dkdv_shared_bytes<DMax>();
        auto* kernel = attention_dkdv_kernel<DMax, Br, Bc>;
        allow_shared_memory(backend, kernel, bytes, p.D);
        const unsigned blocks = grid_blocks(p.B * p.Hkv * ((p.S + Bc - 1) / Bc), "attention_dkdv_kernel");
        kernel<<<blocks, kThreads, bytes, backend.stream()>>>(p, q, k, v, dout, lse, delta, dk.data<float>(),
                                                              dv.data<float>());
        LAB_CUDA_LAUNCHED("attention_dkdv_kernel");
    }
    if (dq.numel() > 0) {
        constexpr size_t bytes = dq_shared_bytes<DMax>();
        auto* kernel = attention_dq_kernel<DMax, Br, Bc>;
        allow_shared_memory(backend, kernel, bytes, p.D);
        const unsigned blocks = grid_blocks(p.B * p.H * ((p.T + Br - 1) / Br), "attention_dq_kernel");
        kernel<<<blocks, kThreads, bytes, backend.stream()>>>(p, q, k, v, dout, lse, delta, dq.data<float>());
        LAB_CUDA_LAUNCHED("attention_dq_kernel");
    }
}


// ---- key padding as sequence lengths (for cuDNN's padding mask, cuda_sdpa.cpp) ----

// One block per batch row b of mask [B, S] (nonzero = padded key): seq_kv[b] = the number of
// leading visible keys, seq_q[b] = T, and *unusable = 1 when the row is not of the form "visible
// keys, then padding" (a padded key before a visible one) or has no visible key, which lengths
// cannot express.
__global__ void padding_lengths_kernel(const uint8_t* mask, int64_t S, int32_t T, int32_t* seq_q, int32_t* seq_kv,
                                       int32_t* unusable) {
    __shared__ int first_padded;
    const int64_t b = blockIdx.x;
    const uint8_t* row = mask + b * S;
    if (threadIdx.x == 0) first_padded = static_cast<int>(S);
    __syncthreads();
    for (int64_t j = threadIdx.x; j < S; j += blockDim.x)
        if (row[j] != 0) atomicMin(&first_padded, static_cast<int>(j));
    __syncthreads();
    const int length = first_padded;
    bool visible_after = false;
    for (int64_t j = length + static_cast<int64_t>(threadIdx.x); j < S; j += blockDim.x) visible_after |= row[j] == 0;
    const int any_visible_after = __syncthreads_or(visible_after);
    if (threadIdx.x == 0) {
        seq_kv[b] = length;
        seq_q[b] = T;
        if (any_visible_after || length == 0) atomicOr(unusable, 1);
    }
}

}  // namespace

bool padding_lengths(CudaBackend& backend, const Tensor& mask, int64_t T, const Tensor& seq_q, const Tensor& seq_kv) {
    const int64_t B = mask.size(0), S = mask.size(1);
    if (S > 0x7fffffff || T > 0x7fffffff) return false;
    const Tensor unusable = Tensor::zeros(backend, {1}, DType::i32);
    padding_lengths_kernel<<<grid_blocks(B, "padding_lengths_kernel"), kThreads, 0, backend.stream()>>>(
        mask.data<uint8_t>(), S, static_cast<int32_t>(T), seq_q.data<int32_t>(), seq_kv.data<int32_t>(),
        unusable.data<int32_t>());
    LAB_CUDA_LAUNCHED("padding_lengths_kernel");
    int32_t flag = 1;
    backend.read_back(&flag, unusable.raw(), sizeof flag);
    return flag == 0;
}

void CudaBackend::attention(const Tensor& o, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                            const AttentionKernelArgs& args) {
    const checks::AttentionSizes sizes = checks::attention_sizes("attention", q, k, v, args);
    checks::require_rows("attention", "o", o, q.shape());
    checks::require_output("attention", "lse", lse, {sizes.B, sizes.H, sizes.T});
    if (sizes.B * sizes.H * sizes.T == 0) return;  // no query: nothing to write
    if (settings().cudnn_attention && cudnn_attention(o, lse, q, k, v, args)) return;

    const Problem p = make_problem(sizes, args);
    switch (head_bucket(p.D)) {
        case 32: run_forward<32>(*this, p, o, lse, q, k, v); break;
        case 64: run_forward<64>(*this, p, o, lse, q, k, v); break;
        case 128: run_forward<128>(*this, p, o, lse, q, k, v); break;
        default: run_forward<256>(*this, p, o, lse, q, k, v); break;
    }
}

void CudaBackend::attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                     const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                     const Tensor& lse, const AttentionKernelArgs& args) {
    const checks::AttentionSizes sizes = checks::attention_sizes("attention_backward", q, k, v, args);
    checks::require_output_rows("attention_backward", "dq", dq, q.shape());
    checks::require_output_rows("attention_backward", "dk", dk, k.shape());
    checks::require_output_rows("attention_backward", "dv", dv, v.shape());
    if (!dq.is_contiguous() || !dk.is_contiguous() || !dv.is_contiguous()) {
        // The kernels below and cuDNN's write [B, H, T, D] in order: gradients laid out otherwise
        // (the fused op's [B, T, H, D], the projections' layout) are computed contiguous and copied.
        Tensor dq_c = Tensor::empty(*this, dq.shape()), dk_c = Tensor::empty(*this, dk.shape()),
               dv_c = Tensor::empty(*this, dv.shape());
        attention_backward(dq_c, dk_c, dv_c, dout, q, k, v, o, lse, args);
        copy(dq, dq_c);
        copy(dk, dk_c);
        copy(dv, dv_c);
        return;
    }
    checks::require_rows("attention_backward", "dout", dout, q.shape());
    checks::require_rows("attention_backward", "o", o, q.shape());
    checks::require_output("attention_backward", "lse", lse, {sizes.B, sizes.H, sizes.T});
    if (dq.numel() == 0 && dk.numel() == 0) return;  // nothing to write
    if (settings().cudnn_attention && cudnn_attention_backward(dq, dk, dv, dout, q, k, v, o, lse, args)) return;

    const Problem p = make_problem(sizes, args);
    const int bucket = head_bucket(p.D);
    const int64_t query_rows = p.B * p.H * p.T;
    Tensor delta;  // [B, H, T]: D_i = dO_i . O_i
    const HeadTensor dout_t = head_tensor(dout);
    if (query_rows > 0) {
        delta = Tensor::empty(*this, {p.B, p.H, p.T});
        constexpr int kRowsPerBlock = kThreads / 32;
        const unsigned blocks = grid_blocks((query_rows + kRowsPerBlock - 1) / kRowsPerBlock, "attention_delta_kernel");
        attention_delta_kernel<<<blocks, kThreads, 0, stream()>>>(delta.data<float>(), dout_t, head_tensor(o), p);
        LAB_CUDA_LAUNCHED("attention_delta_kernel");
    }
    const float* delta_data = delta.defined() ? delta.data<float>() : nullptr;
    const float* lse_data = lse.data<float>();
    const HeadTensor q_t = head_tensor(q), k_t = head_tensor(k), v_t = head_tensor(v);
    switch (bucket) {
        case 32: run_backward<32>(*this, p, dq, dk, dv, dout_t, q_t, k_t, v_t, lse_data, delta_data); break;
        case 64: run_backward<64>(*this, p, dq, dk, dv, dout_t, q_t, k_t, v_t, lse_data, delta_data); break;
        case 128: run_backward<128>(*this, p, dq, dk, dv, dout_t, q_t, k_t, v_t, lse_data, delta_data); break;
        default: run_backward<256>(*this, p, dq, dk, dv, dout_t, q_t, k_t, v_t, lse_data, delta_data); break;
    }
}

}  // namespace lab::cuda
