// HostBackend::attention and attention_backward: FlashAttention (Dao et al. 2022) on the CPU.
//
// The forward is algorithm 1 with the loops swapped as in FlashAttention-2: one task per
// (b, h, query tile) walks the key tiles that its queries can see, keeping a running row maximum
// m, a running sum l and an unnormalised output; o = acc / l and lse = m + log l at the end. The
// backward is algorithm 2 with D_i = rowsum(dO_i * O_i), arranged so that no two threads ever
// add into the same gradient element: when there are enough (b, kv head) pairs to keep the threads
// busy, one task per pair walks its key tiles and owns the pair's dk, dv and dq; otherwise pass 1
// runs one task per (b, kv head, key tile) for dk and dv (summed over the query heads of the
// group) and pass 2 one task per (b, h, query tile) for dq, recomputing the probabilities once
// more. Both forms add the same terms in the same order, so the gradients are bit-identical
// whichever runs and however the tasks are scheduled. Probabilities are recomputed from lse tile
// by tile: nothing of size [T, S] is ever allocated.
//
// Why hand-written rather than oneDNN: a fused kernel must keep the [64, 64] score tile between
// the two matmuls and apply the online softmax in between, which a library matmul cannot do.
// The tile products use one small register-blocked kernel (gemm_tile) on contiguous buffers:
// q, k and v (strided views of the [B, T, H, D] projection) and dout are first packed tile by tile
// (PackedTiles), so the loops over tile pairs copy nothing.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include <omp.h>

#include "host_attention.h"
#include "host_kernels.h"
#include "lab/host_backend.h"

namespace lab {

namespace {

using namespace attention_kernel;

// R rows of c [., n] (+)= A[R, k] @ b[k, n]; see gemm_tile. An R x 16 block of c stays in 2R
// vector registers while x runs: each step loads two vectors of b, broadcasts R values of A and
// issues 2R FMAs. R = 6 gives twelve independent accumulators, enough to cover the FMA latency
// (4-5 cycles at two FMAs per cycle) with registers to spare on AVX2's sixteen.
template <int R>
inline void gemm_rows(float* __restrict c, int64_t ldc, const float* __restrict a, int64_t a_row, int64_t a_k,
                      const float* __restrict b, int64_t ldb, int64_t k, int64_t n, bool accumulate) {
    for (int64_t col = 0; col < n; col += kColBlock) {
        ExpVec acc[R][2];
        for (int rr = 0; rr < R; ++rr) {
            float* crow = c + rr * ldc + col;
            acc[rr][0] = accumulate ? load8(crow) : ExpVec{};
            acc[rr][1] = accumulate ? load8(crow + 8) : ExpVec{};
        }
        for (int64_t x = 0; x < k; ++x) {
            ExpVec b0 = load8(b + x * ldb + col), b1 = load8(b + x * ldb + col + 8);
#if defined(__x86_64__) && defined(__AVX__)
            // Keep b0 and b1 in registers: otherwise GCC folds a fresh load of them into every
            // FMA, and the loop becomes bound by loads rather than by FMAs. (Without AVX an
            // 8-float vector fits no one register, and the constraint cannot be met.)
            asm("" : "+x"(b0), "+x"(b1));
#endif
            const float* ax = a + x * a_k;
            for (int rr = 0; rr < R; ++rr) {
                const float s = ax[rr * a_row];
                acc[rr][0] += s * b0;
                acc[rr][1] += s * b1;
            }
        }
        for (int rr = 0; rr < R; ++rr) {
            float* crow = c + rr * ldc + col;
            store8(crow, acc[rr][0]);
            store8(crow + 8, acc[rr][1]);
        }
    }
}

#if defined(__AVX512F__)
// The AVX-512 form of gemm_rows: an R x 16 block of c in R 16-float registers, one vector of b and
// R FMAs per step. R = 12 gives twelve independent accumulators (of AVX-512's 32 registers), and
// each FMA does twice the work of the 8-float form: the tile products run at about twice the speed.
typedef float Vec16 __attribute__((vector_size(64)));

template <int R>
inline void gemm_rows16(float* __restrict c, int64_t ldc, const float* __restrict a, int64_t a_row, int64_t a_k,
                        const float* __restrict b, int64_t ldb, int64_t k, int64_t n, bool accumulate) {
    for (int64_t col = 0; col < n; col += kColBlock) {
        Vec16 acc[R];
        for (int rr = 0; rr < R; ++rr) {
            if (accumulate) std::memcpy(&acc[rr], c + rr * ldc + col, sizeof(Vec16));
            else acc[rr] = Vec16{};
        }
        for (int64_t x = 0; x < k; ++x) {
            Vec16 b0;
            std::memcpy(&b0, b + x * ldb + col, sizeof b0);
            asm("" : "+v"(b0));  // as in gemm_rows: one load of b per step, not one per FMA
            const float* ax = a + x * a_k;
            for (int rr = 0; rr < R; ++rr) acc[rr] += ax[rr * a_row] * b0;
        }
        for (int rr = 0; rr < R; ++rr) std::memcpy(c + rr * ldc + col, &acc[rr], sizeof(Vec16));
    }
}
#endif

// c[rows, n] (+)= A[rows, k] @ b[k, n], A(r, x) = a[r * a_row + x * a_k] (so A may be a transposed
// buffer), b and c row-major with row strides ldb and ldc. rows % 4 == 0 and n % 16 == 0: the
// callers pad their buffers.
void gemm_tile(float* __restrict c, int64_t ldc, const float* __restrict a, int64_t a_row, int64_t a_k,
               const float* __restrict b, int64_t ldb, int64_t rows, int64_t k, int64_t n, bool accumulate) {
    int64_t r = 0;
#if defined(__AVX512F__)
    for (; r + 12 <= rows; r += 12)
        gemm_rows16<12>(c + r * ldc, ldc, a + r * a_row, a_row, a_k, b, ldb, k, n, accumulate);
    if (rows - r == 8) gemm_rows16<8>(c + r * ldc, ldc, a + r * a_row, a_row, a_k, b, ldb, k, n, accumulate);
    if (rows - r == 4) gemm_rows16<4>(c + r * ldc, ldc, a + r * a_row, a_row, a_k, b, ldb, k, n, accumulate);
#else
    for (; r + 6 <= rows; r += 6) gemm_rows<6>(c + r * ldc, ldc, a + r * a_row, a_row, a_k, b, ldb, k, n, accumulate);
    if (rows - r == 4) gemm_rows<4>(c + r * ldc, ldc, a + r * a_row, a_row, a_k, b, ldb, k, n, accumulate);
    if (rows - r == 2) gemm_rows<2>(c + r * ldc, ldc, a + r * a_row, a_row, a_k, b, ldb, k, n, accumulate);
#endif
}

// The heads of a [B, N, L, D] tensor (any strides) copied into backend memory in the layout
// gemm_tile reads: tile t of head (b, n) holds rows t * 64 .. t * 64 + 63, zero-padded to a whole
// tile and to Dp columns, row-major [64, Dp] or transposed [Dp, 64]. One pass per call instead of a
// copy per tile pair (copying a transposed k tile for every query tile cost some 6% of the
// forward). The memory is B * N * L * Dp floats, like the input's. q is packed multiplied by the
// softmax scale, which saves a pass over every score tile (scores are (scale q) . k).
class PackedTiles {
public:
    PackedTiles(Backend& backend, const Tensor& x, int64_t Dp, bool transposed, float multiplier = 1.0f)
        : heads_(x.size(1)), tiles_((x.size(2) + kTile - 1) / kTile), tile_floats_(kTile * Dp) {
        const int64_t B = x.size(0), L = x.size(2), D = x.size(3);
        const int64_t count = B * heads_ * tiles_;
        storage_ = Tensor::empty(backend, {std::max<int64_t>(count * tile_floats_, 1)});
        float* data = storage_.data<float>();
        data_ = data;
        const HeadView view(x);
#pragma omp parallel for schedule(static) if (count * tile_floats_ >= host::kParallelElems)
        for (int64_t task = 0; task < count; ++task) {
            const int64_t b = task / (heads_ * tiles_), n = task / tiles_ % heads_, t0 = task % tiles_ * kTile;
            const int64_t rows = std::min(kTile, L - t0);
            float* dst = data + task * tile_floats_;
            std::fill(dst, dst + tile_floats_, 0.0f);
            for (int64_t r = 0; r < rows; ++r) {
                const float* in = view.row(b, n, t0 + r);
                if (transposed) {
                    for (int64_t d = 0; d < D; ++d) dst[d * kTile + r] = in[d * view.sd] * multiplier;
                } else {
                    for (int64_t d = 0; d < D; ++d) dst[r * Dp + d] = in[d * view.sd] * multiplier;
                }
            }
        }
    }
    // Tile `t` (rows t * 64 ..) of head (b, n).
    const float* tile(int64_t b, int64_t n, int64_t t) const {
        return data_ + ((b * heads_ + n) * tiles_ + t) * tile_floats_;
    }

private:
    Tensor storage_;
    const float* data_ = nullptr;
    int64_t heads_, tiles_, tile_floats_;
};

// What every backward task reads: the inputs packed into tiles once per call.
struct BackwardInputs {
    const Problem& pb;
    PackedTiles q, dout;     // [Br, Dp] tiles
    PackedTiles k;           // [Bc, Dp] tiles (for dq)
    PackedTiles k_t, v_t;    // [Dp, Bc] tiles
    const float* lse;        // [B, H, T]
    const float* delta;      // [B, H, T]: D_i = dO_i . O_i
};

// One thread's tile buffers for the backward.
struct BackwardTiles {
    const float* q_tile = nullptr;    // [Br, Dp], in BackwardInputs
    const float* do_tile = nullptr;   // [Br, Dp]
    const float* k_tile = nullptr;    // [Bc, Dp]
    const float* k_tile_t = nullptr;  // [Dp, Bc]
    const float* v_tile_t = nullptr;  // [Dp, Bc]
    float* dk_acc;      // [Bc, Dp]
    float* dv_acc;      // [Bc, Dp]
    float* s;           // [Br, Bc] S, then P
    float* dp;          // [Br, Bc] dP, then dS
    float* pd;          // [Br, Bc] P * Z, only with dropout
    float* col_mask;    // [Bc]
    float* z;           // [Bc]
    float* tile_lse;    // [Br]
    float* tile_delta;  // [Br]
    bool any_masked = false;

    static size_t floats(int64_t Dp) {
        return static_cast<size_t>(2 * kKeyTile * Dp + 3 * kQueryTile * kKeyTile + 2 * kKeyTile + 2 * kQueryTile);
    }
    BackwardTiles(Scratch& scratch, int64_t Dp, bool dropout)
        : dk_acc(scratch.take(kKeyTile * Dp)),
          dv_acc(scratch.take(kKeyTile * Dp)), s(scratch.take(kQueryTile * kKeyTile)),
          dp(scratch.take(kQueryTile * kKeyTile)), pd(dropout ? scratch.take(kQueryTile * kKeyTile) : nullptr),
          col_mask(scratch.take(kKeyTile)), z(scratch.take(kKeyTile)), tile_lse(scratch.take(kQueryTile)),
          tile_delta(scratch.take(kQueryTile)) {}

    void load_queries(const BackwardInputs& in, int64_t b, int64_t h, int64_t i0, int64_t rows) {
        const Problem& pb = in.pb;
        q_tile = in.q.tile(b, h, i0 / kQueryTile);
        do_tile = in.dout.tile(b, h, i0 / kQueryTile);
        const int64_t row_index = (b * pb.H + h) * pb.T + i0;
        std::copy(in.lse + row_index, in.lse + row_index + rows, tile_lse);
        std::copy(in.delta + row_index, in.delta + row_index + rows, tile_delta);
    }
    // Returns false when every key of the tile is hidden (padding or past S).
    bool load_keys(const BackwardInputs& in, int64_t b, int64_t g, int64_t j0) {
        if (in.pb.key_tile_mask(col_mask, b, j0, any_masked) == 0) return false;
        k_tile = in.k.tile(b, g, j0 / kKeyTile);
        k_tile_t = in.k_t.tile(b, g, j0 / kKeyTile);
        v_tile_t = in.v_t.tile(b, g, j0 / kKeyTile);
        return true;
    }

    // P = exp(S - lse) and dS = P * (dP * Z - D_i) of the loaded query and key tiles (Z the
    // dropout factors, dP = dO V^T); pd gets P * Z with dropout. Rows past `rows` are zeroed.
    void probs_and_dscores(const Problem& pb, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t rows4,
                           int64_t j0, int64_t cols) {
        const int64_t Dp = pb.Dp;
        gemm_tile(s, kKeyTile, q_tile, Dp, 1, k_tile_t, kKeyTile, rows4, Dp, kKeyTile, false);
        pb.finish_scores(s, h, i0, rows, j0, col_mask, any_masked);
        gemm_tile(dp, kKeyTile, do_tile, Dp, 1, v_tile_t, kKeyTile, rows4, Dp, kKeyTile, false);
        probs_and_dscores_rows(pb, s, dp, pd, rows, rows4, tile_lse, tile_delta, z, b, h, i0, j0, cols);
    }
};

// dk and dv of key tile j0 of kv head g (summed over the query heads of its group and every
// query tile that sees the tile). With dq_acc (one [Tp, Dp] block per head of the group) it also
// adds the tile's dS K into dq_acc: the one-pass backward.
void key_tile_backward(const BackwardInputs& in, BackwardTiles& t, int64_t b, int64_t g, int64_t j0,
                       float* dq_acc, int64_t Tp, const OutRows& dk_out, const OutRows& dv_out) {
    const Problem& pb = in.pb;
    const int64_t Dp = pb.Dp, D = pb.D, group = pb.H / pb.Hkv, cols = std::min(kKeyTile, pb.S - j0);
    std::fill(t.dk_acc, t.dk_acc + kKeyTile * Dp, 0.0f);
    std::fill(t.dv_acc, t.dv_acc + kKeyTile * Dp, 0.0f);
    if (t.load_keys(in, b, g, j0)) {
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
            for (int64_t i0 = 0; i0 < pb.T; i0 += kQueryTile) {
                const int64_t rows = std::min(kQueryTile, pb.T - i0), rows4 = round_up(rows, kRowBlock);
                int64_t lo = 0, hi = 0;
                pb.tile_key_range(i0, rows, lo, hi);
                if (lo > hi || hi < j0 || lo >= j0 + cols) continue;
                t.load_queries(in, b, h, i0, rows);
                t.probs_and_dscores(pb, b, h, i0, rows, rows4, j0, cols);
                // dV += (P * Z)^T dO and dK += dS^T (scale Q): the probability tiles read transposed.
                gemm_tile(t.dv_acc, Dp, t.pd ? t.pd : t.s, 1, kKeyTile, t.do_tile, Dp, kKeyTile, rows4, Dp, true);
                gemm_tile(t.dk_acc, Dp, t.dp, 1, kKeyTile, t.q_tile, Dp, kKeyTile, rows4, Dp, true);
                if (dq_acc) {
                    float* dq_rows = dq_acc + ((h - g * group) * Tp + i0) * Dp;
                    gemm_tile(dq_rows, Dp, t.dp, kKeyTile, 1, t.k_tile, Dp, rows4, kKeyTile, Dp, true);
                }
            }
        }
    }
    for (int64_t c = 0; c < cols; ++c) {
        float* dk_row = dk_out.row(b, g, j0 + c);
        float* dv_row = dv_out.row(b, g, j0 + c);
        for (int64_t d = 0; d < D; ++d) {
            dk_row[d] = t.dk_acc[c * Dp + d];  // q was packed scaled
            dv_row[d] = t.dv_acc[c * Dp + d];
        }
    }
}

// dq of query tile i0 of head h: scale * sum over the key tiles it sees of dS K, tile by tile in
// key order, the same sums in the same order as the one-pass backward.
void query_tile_dq(const BackwardInputs& in, BackwardTiles& t, float* dq_acc, int64_t b, int64_t h, int64_t i0,
                   const OutRows& dq_out) {
    const Problem& pb = in.pb;
    const int64_t Dp = pb.Dp, rows = std::min(kQueryTile, pb.T - i0), rows4 = round_up(rows, kRowBlock);
    std::fill(dq_acc, dq_acc + rows4 * Dp, 0.0f);
    int64_t lo = 0, hi = -1;
    if (pb.S > 0) pb.tile_key_range(i0, rows, lo, hi);
    if (lo <= hi) t.load_queries(in, b, h, i0, rows);
    for (int64_t j0 = lo / kKeyTile * kKeyTile; lo <= hi && j0 <= hi; j0 += kKeyTile) {
        const int64_t cols = std::min(kKeyTile, pb.S - j0);
        if (!t.load_keys(in, b, pb.kv_head(h), j0)) continue;
        t.probs_and_dscores(pb, b, h, i0, rows, rows4, j0, cols);
        gemm_tile(dq_acc, Dp, t.dp, kKeyTile, 1, t.k_tile, Dp, rows4, kKeyTile, Dp, true);
    }
    for (int64_t r = 0; r < rows; ++r) {
        float* dq_row = dq_out.row(b, h, i0 + r);
        for (int64_t d = 0; d < pb.D; ++d) dq_row[d] = dq_acc[r * Dp + d] * pb.scale;
    }
}

// Mixed precision on a CPU whose bf16 products are native and that has AMX: the AMX kernel
// (host_attention_amx.cpp). The forward and the backward decide alike, so the backward recomputes
// the probabilities the forward used.
bool bf16_on_amx(const Backend& backend) {
    return backend.matmul_inputs() == DType::bf16 && backend.native_bf16_matmul() && amx_attention_ready();
}

}  // namespace

void HostBackend::attention(const Tensor& o, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                            const AttentionKernelArgs& args) {
    const Problem pb = make_problem("attention", q, k, v, args);
    checks::require_rows("attention", "o", o, q.shape());
    const OutRows o_rows(o);
    require_output("attention", "lse", lse, {pb.B, pb.H, pb.T});
    float* lse_data = lse.data<float>();
    if (bf16_on_amx(*this)) {
        amx_attention(*this, pb, o_rows, lse_data, q, k, v, args.saved);
        return;
    }
    const int64_t Dp = pb.Dp, tiles = pb.query_tiles(), tasks = pb.B * pb.H * tiles;
    const PackedTiles q_tiles(*this, q, Dp, false, pb.scale);  // [Br, Dp] tiles of scale * q
    const PackedTiles k_tiles_t(*this, k, Dp, true);           // [Dp, Bc]
    const PackedTiles v_tiles(*this, v, Dp, false);            // [Bc, Dp]
#pragma omp parallel if (tasks > 1)
    {
        Scratch scratch(ForwardTiles::floats(Dp));
        const ForwardTiles tiles_of_thread(scratch, Dp);
        // gemm_tile's rows: the tile's queries, padded to its row block.
        auto rows4 = [&pb](int64_t i0) { return round_up(std::min(kQueryTile, pb.T - i0), kRowBlock); };
        auto score_tile = [&](float* s, int64_t b, int64_t h, int64_t g, int64_t i0, int64_t j0) {
            gemm_tile(s, kKeyTile, q_tiles.tile(b, h, i0 / kQueryTile), Dp, 1, k_tiles_t.tile(b, g, j0 / kKeyTile),
                      kKeyTile, rows4(i0), Dp, kKeyTile, false);
        };
        auto add_pv = [&](float* acc, const float* p, int64_t b, int64_t g, int64_t i0, int64_t j0) {
            gemm_tile(acc, Dp, p, kKeyTile, 1, v_tiles.tile(b, g, j0 / kKeyTile), Dp, rows4(i0), kKeyTile, Dp, true);
        };
        // Causal tiles differ in cost (later queries see more keys): hand them out one by one.
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; ++task)
            forward_task<TileRowMath>(pb, task, Dp, tiles_of_thread, o_rows, lse_data, score_tile, add_pv);
    }
}

// [attention] fused = auto, from lab_bench_attention and lab_bench_step (onednn backend, 2 threads,
// Intel Xeon with AMX; the figures are in bench/README.md). Attention dropout makes the fused
// kernels slower than the composite (they draw each probability's Philox number one at a time,
// in the forward and again in the backward), so it keeps the composite. Otherwise, under mixed
// precision the AMX kernel wins from T = 128 with a causal mask (whose hidden tiles it skips) and
// from T = 256 without (1.2x at T = 256, 1.9x at T = 256 causal, 3.6x at T = 1024 causal; at
// T = 128 without a mask the composite is ahead by 5-15%). In f32 the composite's oneDNN matmuls
// win unless a causal mask lets the tiled kernel skip the hidden half of the tiles, from T = 256.
bool HostBackend::prefers_fused_attention(int64_t T, int64_t /*S*/, int64_t /*D*/,
                                          const AttentionKernelArgs& args) const {
    if (args.dropout > 0.0f) return false;
    if (bf16_on_amx(*this)) return T >= (args.causal ? 128 : 256);
    return args.causal && T >= 256;
}

void HostBackend::attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                     const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                     const Tensor& lse, const AttentionKernelArgs& args) {
    const Problem pb = make_problem("attention_backward", q, k, v, args);
    require_output_rows("attention_backward", "dq", dq, q.shape());
    require_output_rows("attention_backward", "dk", dk, k.shape());
    require_output_rows("attention_backward", "dv", dv, v.shape());
    const HeadView dout_rows = require_rows("attention_backward", "dout", dout, q.shape());
    const HeadView o_rows = require_rows("attention_backward", "o", o, q.shape());
    require_output("attention_backward", "lse", lse, {pb.B, pb.H, pb.T});
    const OutRows dq_rows(dq), dk_rows(dk), dv_rows(dv);
    const int64_t Dp = pb.Dp, D = pb.D, group = pb.H / pb.Hkv;
    const bool dropout = pb.dropout > 0.0f;

    // delta [B, H, T]: D_i = dO_i . O_i (= rowsum(dP * P), Dao et al. 2022, eq. 4), O(T) memory.
    // Rows in (b, t, h) order, the order of o's and dout's [B, T, H, D] memory; eight partial sums
    // per row (a vector), since a float sum in order is not vectorised. From the backend's cache:
    // a vector of this size (1.5 MB at the shakespeare_char shape) was mapped and zeroed per call.
    const int64_t query_rows = pb.B * pb.H * pb.T;
    const Tensor delta_storage = Tensor::empty(*this, {std::max<int64_t>(query_rows, 1)});
    float* delta = delta_storage.data<float>();
#pragma omp parallel for schedule(static) if (query_rows * D >= host::kParallelElems)
    for (int64_t row = 0; row < query_rows; ++row) {
        const int64_t b = row / (pb.T * pb.H), t = row / pb.H % pb.T, h = row % pb.H;
        const float* a = dout_rows.row(b, h, t);
        const float* c = o_rows.row(b, h, t);
        ExpVec partial = {};
        int64_t d = 0;
        for (; d + host::kExpLanes <= D; d += host::kExpLanes) partial += load8(a + d) * load8(c + d);
        float sum = 0.0f;
        for (int i = 0; i < host::kExpLanes; ++i) sum += partial[i];
        for (; d < D; ++d) sum += a[d] * c[d];
        delta[(b * pb.H + h) * pb.T + t] = sum;
    }
    if (bf16_on_amx(*this)) {
        amx_attention_backward(*this, pb, dq_rows, dk_rows, dv_rows, dout, q, k, v, lse.data<float>(), delta,
                               args.saved);
        return;
    }
    const BackwardInputs in{pb,
                            PackedTiles(*this, q, Dp, false, pb.scale),
                            PackedTiles(*this, dout, Dp, false),
                            PackedTiles(*this, k, Dp, false),
                            PackedTiles(*this, k, Dp, true),
                            PackedTiles(*this, v, Dp, true),
                            lse.data<float>(),
                            delta};

    // One pass per (b, kv head) computes dq along with dk and dv (5 tile products per tile pair);
    // the two-pass form needs 7 but parallelises over tiles. Both add the same terms in the same
    // order, so they give bit-identical gradients and the choice may follow the thread count: one
    // pass when the (b, kv head) tasks keep more than 5/7 of the threads busy.
    const int64_t threads = omp_get_max_threads(), head_tasks = pb.B * pb.Hkv;
    const int64_t rounds = (head_tasks + threads - 1) / threads;
    const bool one_pass = 7 * head_tasks > 5 * rounds * threads;
    const int64_t key_tiles = pb.key_tiles(), query_tiles = pb.query_tiles();

    if (one_pass) {
        const int64_t Tp = round_up(pb.T, kRowBlock);  // dq rows of a head, padded for gemm_tile
#pragma omp parallel if (head_tasks > 1)
        {
            Scratch scratch(BackwardTiles::floats(Dp) + static_cast<size_t>(group * Tp * Dp));
            BackwardTiles tiles(scratch, Dp, dropout);
            float* dq_acc = scratch.take(group * Tp * Dp);  // [group, Tp, Dp]
#pragma omp for schedule(dynamic, 1)
            for (int64_t task = 0; task < head_tasks; ++task) {
                const int64_t b = task / pb.Hkv, g = task % pb.Hkv;
                std::fill(dq_acc, dq_acc + group * Tp * Dp, 0.0f);
                for (int64_t j0 = 0; j0 < pb.S; j0 += kKeyTile)
                    key_tile_backward(in, tiles, b, g, j0, dq_acc, Tp, dk_rows, dv_rows);
                for (int64_t h = g * group; h < (g + 1) * group; ++h)
                    for (int64_t i = 0; i < pb.T; ++i) {
                        const float* acc = dq_acc + ((h - g * group) * Tp + i) * Dp;
                        float* dq_row = dq_rows.row(b, h, i);
                        for (int64_t d = 0; d < D; ++d) dq_row[d] = acc[d] * pb.scale;
                    }
            }
        }
        return;
    }

    // Pass 1: dk and dv, one task per (b, kv head, key tile).
    const int64_t kv_tasks = pb.B * pb.Hkv * key_tiles;
#pragma omp parallel if (kv_tasks > 1)
    {
        Scratch scratch(BackwardTiles::floats(Dp));
        BackwardTiles tiles(scratch, Dp, dropout);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < kv_tasks; ++task) {
            const int64_t b = task / (pb.Hkv * key_tiles), g = task / key_tiles % pb.Hkv;
            key_tile_backward(in, tiles, b, g, task % key_tiles * kKeyTile, nullptr, 0, dk_rows, dv_rows);
        }
    }
    // Pass 2: dq, one task per (b, h, query tile).
    const int64_t q_tasks = pb.B * pb.H * query_tiles;
#pragma omp parallel if (q_tasks > 1)
    {
        Scratch scratch(BackwardTiles::floats(Dp) + static_cast<size_t>(kQueryTile * Dp));
        BackwardTiles tiles(scratch, Dp, dropout);
        float* dq_acc = scratch.take(kQueryTile * Dp);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < q_tasks; ++task) {
            const int64_t b = task / (pb.H * query_tiles), h = task / query_tiles % pb.H;
            query_tile_dq(in, tiles, dq_acc, b, h, task % query_tiles * kQueryTile, dq_rows);
        }
    }
}

}  // namespace lab
