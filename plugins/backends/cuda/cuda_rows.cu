// CudaBackend row kernels: softmax, layer norm, embedding and cross entropy. Each follows
// HostBackend (framework/src/kernels/host_rows.cpp) with the same argument checks and messages.
//
// Launch shape of the per-row kernels: 256-thread blocks in which a team of threads owns one
// row; a team is one warp (8 rows per block) for rows up to kWarpRowCols columns, the whole block
// for longer rows (a 50257-word vocabulary). Row reductions are warp shuffles, plus one pass
// through shared memory for a block-wide team.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "lab/error.h"
#include "lab/kernel_checks.h"

namespace lab::cuda {

namespace {

constexpr int kBlockThreads = 256;
constexpr int64_t kWarpRowCols = 1024;
constexpr int64_t kMaxGrid = 1 << 30;  // under the 2^31 - 1 blocks of grid.x; kernels grid-stride past it

// Runs launch(std::integral_constant<int, team>) with the team size for rows of `cols` columns.
template <class Launch> void with_row_team(int64_t cols, Launch&& launch) {
    if (cols <= kWarpRowCols) launch(std::integral_constant<int, 32>{});
    else launch(std::integral_constant<int, kBlockThreads>{});
}

// Blocks for `rows` rows with teams of kTeam threads.
template <int kTeam> unsigned row_blocks(int64_t rows) {
    constexpr int64_t rows_per_block = kBlockThreads / kTeam;
    return static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
}

// The row a thread's team owns and the thread's place in the team.
template <int kTeam> __device__ __forceinline__ int64_t team_row() {
    return static_cast<int64_t>(blockIdx.x) * (kBlockThreads / kTeam) + threadIdx.x / kTeam;
}
template <int kTeam> __device__ __forceinline__ int team_lane() { return static_cast<int>(threadIdx.x % kTeam); }

// Running max and sum of exp(x - max) of a row's values (online softmax, Milakov & Gimelshein
// 2018). Empty: max -inf, sum 0.
struct MaxSum {
    float max;
    float sum;
};

// Adds x. A -inf term contributes exactly 0, as the host's exp gives for it, so an all -inf row
// ends with sum 0 (its max -inf); a NaN makes the sum NaN.
__device__ __forceinline__ MaxSum push(MaxSum a, float x) {
    if (x > a.max) {
        a.sum = a.sum * expf(a.max - x) + 1.0f;
        a.max = x;
    } else if (x != -INFINITY) {
        a.sum += expf(x - a.max);
    }
    return a;
}

// Merges two partial rows. __fmul_rn keeps the products out of an FMA, so combine(a, b) and
// combine(b, a) round alike and every lane of a butterfly ends with the same bits.
__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
    const float max = fmaxf(a.max, b.max);
    if (max == -INFINITY) return {max, a.sum + b.sum};
    return {max, __fmul_rn(a.sum, expf(a.max - max)) + __fmul_rn(b.sum, expf(b.max - max))};
}

__device__ __forceinline__ float shuffle_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ double shuffle_xor(double v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ MaxSum shuffle_xor(MaxSum v, int mask) {
    return {shuffle_xor(v.max, mask), shuffle_xor(v.sum, mask)};
}

struct Add {
    template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct Combine {
    __device__ MaxSum operator()(MaxSum a, MaxSum b) const { return combine(a, b); }
};

// Reduces one value per team thread with op; every thread of the team gets the result. A
// block-wide team goes through shared memory once, all threads reading the warps' results in the
// same order; the trailing barrier lets the caller reduce again at once.
template <int kTeam, class T, class Op> __device__ T team_reduce(T value, Op op) {
#pragma unroll
    for (int mask = 16; mask > 0; mask >>= 1) value = op(value, shuffle_xor(value, mask));
    if constexpr (kTeam == 32) {
        return value;
    } else {
        static_assert(kTeam == kBlockThreads, "a team is a warp or the block");
        __shared__ T warp_results[kTeam / 32];
        if (threadIdx.x % 32 == 0) warp_results[threadIdx.x / 32] = value;
        __syncthreads();
        T total = warp_results[0];
        for (int w = 1; w < kTeam / 32; ++w) total = op(total, warp_results[w]);
        __syncthreads();
        return total;
    }
}

template <int kTeam> __device__ __forceinline__ float team_sum(float v) { return team_reduce<kTeam>(v, Add{}); }
template <int kTeam> __device__ __forceinline__ double team_sum(double v) { return team_reduce<kTeam>(v, Add{}); }

// ---- softmax ----

// y = softmax(x) or log_softmax(x) per row: one read for the running max and sum, one to write.
template <int kTeam> __global__ void softmax_kernel(float* y, const float* x, int64_t rows, int64_t cols, bool log) {
    const int64_t row = team_row<kTeam>();
    if (row >= rows) return;
    const int lane = team_lane<kTeam>();
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    MaxSum acc{-INFINITY, 0.0f};
    for (int64_t j = lane; j < cols; j += kTeam) acc = push(acc, xr[j]);
    acc = team_reduce<kTeam>(acc, Combine{});
    // A +inf makes the host's sum NaN (inf - inf in the shifted exp), so every output NaN.
    if (acc.max == INFINITY) acc.sum = NAN;
    if (log) {
        const float shift = acc.max + logf(acc.sum);
        for (int64_t j = lane; j < cols; j += kTeam) yr[j] = xr[j] - shift;
    } else {
        const float inv = 1.0f / acc.sum;
        for (int64_t j = lane; j < cols; j += kTeam) yr[j] = expf(xr[j] - acc.max) * inv;
    }
}

// log: dx = dy - exp(y) * sum(dy); else dx = y * (dy - sum(dy * y)). Per row.
template <int kTeam>
__global__ void softmax_backward_kernel(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols,
                                        bool log) {
    const int64_t row = team_row<kTeam>();
    if (row >= rows) return;
    const int lane = team_lane<kTeam>();
    float* dxr = dx + row * cols;
    const float* dyr = dy + row * cols;
    const float* yr = y + row * cols;
    float acc = 0.0f;
    for (int64_t j = lane; j < cols; j += kTeam) acc += log ? dyr[j] : dyr[j] * yr[j];
    const float total = team_sum<kTeam>(acc);
    if (log) {
        for (int64_t j = lane; j < cols; j += kTeam) dxr[j] = dyr[j] - expf(yr[j]) * total;
    } else {
        for (int64_t j = lane; j < cols; j += kTeam) dxr[j] = yr[j] * (dyr[j] - total);
    }
}

// ---- layer norm ----

// Per row: mean and variance in two passes in double, as the host (a one-pass E[x^2] - E[x]^2
// cancels badly for large means); y = (x - mean) * rstd * gamma + beta.
template <int kTeam>
__global__ void layer_norm_kernel(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                                  const float* beta, int64_t rows, int64_t cols, float eps) {
    const int64_t row = team_row<kTeam>();
    if (row >= rows) return;
    const int lane = team_lane<kTeam>();
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    double sum = 0.0;
    for (int64_t j = lane; j < cols; j += kTeam) sum += xr[j];
    const double mu = team_sum<kTeam>(sum) / static_cast<double>(cols);
    double sq = 0.0;
    for (int64_t j = lane; j < cols; j += kTeam) sq += (xr[j] - mu) * (xr[j] - mu);
    sq = team_sum<kTeam>(sq);
    const float m = static_cast<float>(mu);
    const float rs = static_cast<float>(1.0 / sqrt(sq / static_cast<double>(cols) + eps));
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
    for (int64_t j = lane; j < cols; j += kTeam) {
        const float normed = (xr[j] - m) * rs;
        yr[j] = normed * (gamma ? gamma[j] : 1.0f) + (beta ? beta[j] : 0.0f);
    }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) per row, g = dy * gamma, xhat the normalised x.
template <int kTeam>
__global__ void layer_norm_backward_kernel(float* dx, const float* dy, const float* x, const float* mean,
                                           const float* rstd, const float* gamma, int64_t rows, int64_t cols) {
    const int64_t row = team_row<kTeam>();
    if (row >= rows) return;
    const int lane = team_lane<kTeam>();
    const float* xr = x + row * cols;
    const float* dyr = dy + row * cols;
    float* dxr = dx + row * cols;
    const float m = mean[row], rs = rstd[row];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int64_t j = lane; j < cols; j += kTeam) {
        const float g = dyr[j] * (gamma ? gamma[j] : 1.0f);
        sum_g += g;
        sum_gx += g * (xr[j] - m) * rs;
    }
    const float inv_cols = 1.0f / static_cast<float>(cols);
    const float mean_g = team_sum<kTeam>(sum_g) * inv_cols;
    const float mean_gx = team_sum<kTeam>(sum_gx) * inv_cols;
    for (int64_t j = lane; j < cols; j += kTeam) {
        const float g = dyr[j] * (gamma ? gamma[j] : 1.0f);
        dxr[j] = rs * (g - mean_g - (xr[j] - m) * rs * mean_gx);
    }
}

// Column sums for dgamma (dy * xhat) and dbeta (dy) over one range of rows, in double as the host:
// a (32, 8) block; threadIdx.x picks one of 32 neighbouring columns (coalesced reads), threadIdx.y
// one of 8 interleaved slices of the rows of split blockIdx.y; blockIdx.x a group of 32 columns.
// Writes partials [splits, C] (null for a gradient not asked for); no atomics, so the sums are
// the same from run to run.
__global__ void layer_norm_params_kernel(double* partial_gamma, double* partial_beta, const float* dy,
                                         const float* x, const float* mean, const float* rstd, int64_t rows,
                                         int64_t cols, int64_t rows_per_split) {
    __shared__ double slices_gamma[8][33], slices_beta[8][33];  // 33: no bank conflicts between rows
    const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
    const int64_t begin = blockIdx.y * rows_per_split, end = min(rows, begin + rows_per_split);
    double acc_gamma = 0.0, acc_beta = 0.0;
    if (c < cols) {
        for (int64_t r = begin + threadIdx.y; r < end; r += 8) {
            const float d = dy[r * cols + c];
            acc_gamma += d * ((x[r * cols + c] - mean[r]) * rstd[r]);
            acc_beta += d;
        }
    }
    slices_gamma[threadIdx.y][threadIdx.x] = acc_gamma;
    slices_beta[threadIdx.y][threadIdx.x] = acc_beta;
    __syncthreads();
    if (threadIdx.y != 0 || c >= cols) return;
    double total_gamma = 0.0, total_beta = 0.0;
    for (int s = 0; s < 8; ++s) {
        total_gamma += slices_gamma[s][threadIdx.x];
        total_beta += slices_beta[s][threadIdx.x];
    }
    if (partial_gamma) partial_gamma[blockIdx.y * cols + c] = total_gamma;
    if (partial_beta) partial_beta[blockIdx.y * cols + c] = total_beta;
}

// dgamma[c] += sum over splits of partial_gamma[s, c]; dbeta likewise. One thread per column.
__global__ void layer_norm_params_finalize_kernel(float* dgamma, float* dbeta, const double* partial_gamma,
                                                  const double* partial_beta, int64_t cols, int64_t splits) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    double total_gamma = 0.0, total_beta = 0.0;
    for (int64_t s = 0; s < splits; ++s) {
        if (dgamma) total_gamma += partial_gamma[s * cols + c];
        if (dbeta) total_beta += partial_beta[s * cols + c];
    }
    if (dgamma) dgamma[c] += static_cast<float>(total_gamma);
    if (dbeta) dbeta[c] += static_cast<float>(total_beta);
}

// ---- ids: embedding and cross-entropy targets ----

// Records in *first_bad the lowest position whose id is outside [0, limit) (ids equal to
// ignore_index excepted when allow_ignore). atomicMin on an integer: the result does not depend
// on the order. Grid-stride, kBlockThreads per block.
template <class Index>
__global__ void find_bad_id_kernel(unsigned long long* first_bad, const Index* ids, int64_t n, int64_t limit,
                                   bool allow_ignore, int64_t ignore_index) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t id = ids[i];
        if (allow_ignore && id == ignore_index) continue;
        if (id < 0 || id >= limit) atomicMin(first_bad, static_cast<unsigned long long>(i));
    }
}

// Calls f with the ids' data as const int32_t* or const int64_t*.
template <class F> void with_index_type(const Tensor& ids, F&& f) {
    if (ids.dtype() == DType::i32) f(ids.data<int32_t>());
    else f(ids.data<int64_t>());
}

// The host's require_ids_in_range: every id is checked before anything is written, so a bad id
// leaves the outputs untouched, and the first bad one is reported in the host's words. Costs a
// wait for the stream (read_back).
void require_ids_in_range(CudaBackend& backend, const char* kernel, const char* what, const Tensor& ids,
                          int64_t limit, const Shape& table_shape, bool allow_ignore, int64_t ignore_index) {
    const int64_t n = ids.numel();
    if (n == 0) return;
    const Tensor flag = Tensor::empty(backend, {1}, DType::i64);
    auto* first_bad = static_cast<unsigned long long*>(flag.raw());
    LAB_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof(unsigned long long), backend.stream()));  // none yet
    const int64_t blocks = std::min<int64_t>((n + kBlockThreads - 1) / kBlockThreads,
                                             4LL * backend.properties().multiProcessorCount);
    with_index_type(ids, [&](const auto* id_data) {
        find_bad_id_kernel<<<static_cast<unsigned>(blocks), kBlockThreads, 0, backend.stream()>>>(
            first_bad, id_data, n, limit, allow_ignore, ignore_index);
        LAB_CUDA_LAUNCHED("find_bad_id_kernel");
    });
    unsigned long long position = ULLONG_MAX;
    backend.read_back(&position, first_bad, sizeof position);
    if (position == ULLONG_MAX) return;
    int64_t id = 0;
    with_index_type(ids, [&](const auto* id_data) {
        std::remove_cv_t<std::remove_pointer_t<decltype(id_data)>> value = 0;
        backend.read_back(&value, id_data + position, sizeof value);
        id = value;
    });
    throw checks::id_out_of_range(kernel, what, id, position, limit, table_shape);
}

// y[n, :] = table[ids[n], :]: one block per row (grid-stride over rows), threads across columns.
template <class Index>
__global__ void embedding_kernel(float* y, const Index* ids, const float* table, int64_t rows, int64_t cols) {
    for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
        const float* src = table + static_cast<int64_t>(ids[n]) * cols;
        float* dst = y + n * cols;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) dst[j] = src[j];
    }
}

// dtable[ids[n], :] += dy[n, :]: one block per row of dy, threads across columns. Rows with the
// same id add into one row of dtable, so the adds are atomicAdd: the order of those float adds
// (and so the last bits of a repeated token's gradient) varies from run to run. The host orders
// them; matching it would need a sort of the ids first.
template <class Index>
__global__ void embedding_backward_kernel(float* dtable, const float* dy, const Index* ids, int64_t rows,
                                          int64_t cols) {
    for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
        float* dst = dtable + static_cast<int64_t>(ids[n]) * cols;
        const float* src = dy + n * cols;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) atomicAdd(dst + j, src[j]);
    }
}

// ---- cross entropy ----

// Per row, in one pass with a running max and sum (no probability matrix): lse = logsumexp(x)
// (an infinite max gives itself, as the host), loss = lse - x[t], 0 where t == ignore_index.
template <int kTeam, class Index>
__global__ void cross_entropy_kernel(float* loss, float* lse, const float* logits, const Index* targets,
                                     int64_t rows, int64_t vocab, int64_t ignore_index) {
    const int64_t row = team_row<kTeam>();
    if (row >= rows) return;
    const int lane = team_lane<kTeam>();
    const float* xr = logits + row * vocab;
    MaxSum acc{-INFINITY, 0.0f};
    for (int64_t j = lane; j < vocab; j += kTeam) acc = push(acc, xr[j]);
    acc = team_reduce<kTeam>(acc, Combine{});
    if (lane != 0) return;
    const float row_lse = isinf(acc.max) ? acc.max : acc.max + logf(acc.sum);
    const int64_t t = targets[row];
    lse[row] = row_lse;
    loss[row] = t == ignore_index ? 0.0f : row_lse - xr[t];
}

// dlogits[n, v] = dloss[n] * (exp(x - lse[n]) - [v == t]), zeros for an ignored row. Per row.
template <int kTeam, class Index>
__global__ void cross_entropy_backward_kernel(float* dlogits, const float* dloss, const float* logits,
                                              const float* lse, const Index* targets, int64_t rows, int64_t vocab,
                                              int64_t ignore_index) {
    const int64_t row = team_row<kTeam>();
    if (row >= rows) return;
    const int lane = team_lane<kTeam>();
    float* dxr = dlogits + row * vocab;
    const int64_t t = targets[row];
    if (t == ignore_index) {
        for (int64_t j = lane; j < vocab; j += kTeam) dxr[j] = 0.0f;
        return;
    }
    const float* xr = logits + row * vocab;
    const float g = dloss[row], shift = lse[row];
    for (int64_t j = lane; j < vocab; j += kTeam) {
        const float d = expf(xr[j] - shift) * g;
        dxr[j] = j == t ? d - g : d;
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// softmax

void CudaBackend::softmax(const Tensor& y, const Tensor& x, bool log) {
    checks::require_f32_contiguous("softmax", "y", y);
    checks::require_f32_contiguous("softmax", "x", x);
    checks::require_same_shape("softmax", "y", y, "x", x);
    const int64_t rows = checks::row_count(x), cols = checks::row_size(x);
    if (rows == 0) return;
    with_row_team(cols, [&](auto team) {
        constexpr int kTeam = decltype(team)::value;
        softmax_kernel<kTeam><<<row_blocks<kTeam>(rows), kBlockThreads, 0, stream()>>>(
            y.data<float>(), x.data<float>(), rows, cols, log);
        LAB_CUDA_LAUNCHED("softmax_kernel");
    });
}

void CudaBackend::softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
    checks::require_f32_contiguous("softmax_backward", "dx", dx);
    checks::require_f32_contiguous("softmax_backward", "dy", dy);
    checks::require_f32_contiguous("softmax_backward", "y", y);
    checks::require_same_shape("softmax_backward", "dx", dx, "dy", dy);
    checks::require_same_shape("softmax_backward", "dx", dx, "y", y);
    const int64_t rows = checks::row_count(y), cols = checks::row_size(y);
    if (rows == 0) return;
    with_row_team(cols, [&](auto team) {
        constexpr int kTeam = decltype(team)::value;
        softmax_backward_kernel<kTeam><<<row_blocks<kTeam>(rows), kBlockThreads, 0, stream()>>>(
            dx.data<float>(), dy.data<float>(), y.data<float>(), rows, cols, log);
        LAB_CUDA_LAUNCHED("softmax_backward_kernel");
    });
}

// ---------------------------------------------------------------------------------------------
// layer norm

void CudaBackend::layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                             const Tensor* gamma, const Tensor* beta, float eps) {
    checks::require_f32_contiguous("layer_norm", "x", x);
    checks::require_f32_contiguous("layer_norm", "y", y);
    checks::require_same_shape("layer_norm", "y", y, "x", x);
    const int64_t rows = checks::row_count(x), cols = checks::row_size(x);
    checks::require_one_per_row("layer_norm", "mean", mean, rows);
    checks::require_one_per_row("layer_norm", "rstd", rstd, rows);
    checks::require_one_per_column("layer_norm", "gamma", gamma, cols);
    checks::require_one_per_column("layer_norm", "beta", beta, cols);
    if (rows == 0) return;
    with_row_team(cols, [&](auto team) {
        constexpr int kTeam = decltype(team)::value;
        layer_norm_kernel<kTeam><<<row_blocks<kTeam>(rows), kBlockThreads, 0, stream()>>>(
            y.data<float>(), mean.data<float>(), rstd.data<float>(), x.data<float>(),
            gamma ? gamma->data<float>() : nullptr, beta ? beta->data<float>() : nullptr, rows, cols, eps);
        LAB_CUDA_LAUNCHED("layer_norm_kernel");
    });
}

void CudaBackend::layer_norm_backward(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta, const Tensor& dy,
                                      const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor* gamma) {
    checks::require_f32_contiguous("layer_norm_backward", "x", x);
    checks::require_f32_contiguous("layer_norm_backward", "dx", dx);
    checks::require_f32_contiguous("layer_norm_backward", "dy", dy);
    checks::require_same_shape("layer_norm_backward", "dx", dx, "x", x);
    checks::require_same_shape("layer_norm_backward", "dy", dy, "x", x);
    const int64_t rows = checks::row_count(x), cols = checks::row_size(x);
    checks::require_one_per_row("layer_norm_backward", "mean", mean, rows);
    checks::require_one_per_row("layer_norm_backward", "rstd", rstd, rows);
    checks::require_one_per_column("layer_norm_backward", "gamma", gamma, cols);
    checks::require_one_per_column("layer_norm_backward", "dgamma", dgamma, cols);
    checks::require_one_per_column("layer_norm_backward", "dbeta", dbeta, cols);
    if (rows == 0) return;
    with_row_team(cols, [&](auto team) {
        constexpr int kTeam = decltype(team)::value;
        layer_norm_backward_kernel<kTeam><<<row_blocks<kTeam>(rows), kBlockThreads, 0, stream()>>>(
            dx.data<float>(), dy.data<float>(), x.data<float>(), mean.data<float>(), rstd.data<float>(),
            gamma ? gamma->data<float>() : nullptr, rows, cols);
        LAB_CUDA_LAUNCHED("layer_norm_backward_kernel");
    });
    if (dgamma == nullptr && dbeta == nullptr) return;
    // Enough splits of the rows to give every SM a few blocks, each split at least 64 rows.
    const int64_t column_groups = (cols + 31) / 32;
    const int64_t target_blocks = 4LL * properties().multiProcessorCount;
    const int64_t splits = std::clamp<int64_t>((target_blocks + column_groups - 1) / column_groups, 1,
                                               std::min<int64_t>((rows + 63) / 64, 65535));
    const int64_t rows_per_split = (rows + splits - 1) / splits;
    // DType has no f64: the partial sums (doubles) live in i64 tensors of the same size.
    Tensor partial_gamma, partial_beta;
    if (dgamma) partial_gamma = Tensor::empty(*this, {splits * cols}, DType::i64);
    if (dbeta) partial_beta = Tensor::empty(*this, {splits * cols}, DType::i64);
    double* pg = dgamma ? static_cast<double*>(partial_gamma.raw()) : nullptr;
    double* pb = dbeta ? static_cast<double*>(partial_beta.raw()) : nullptr;
    const dim3 grid(static_cast<unsigned>(column_groups), static_cast<unsigned>(splits));
    layer_norm_params_kernel<<<grid, dim3(32, 8), 0, stream()>>>(pg, pb, dy.data<float>(), x.data<float>(),
                                                                 mean.data<float>(), rstd.data<float>(), rows,
                                                                 cols, rows_per_split);
    LAB_CUDA_LAUNCHED("layer_norm_params_kernel");
    layer_norm_params_finalize_kernel<<<static_cast<unsigned>((cols + kBlockThreads - 1) / kBlockThreads),
                                        kBlockThreads, 0, stream()>>>(
        dgamma ? dgamma->data<float>() : nullptr, dbeta ? dbeta->data<float>() : nullptr, pg, pb, cols, splits);
    LAB_CUDA_LAUNCHED("layer_norm_params_finalize_kernel");
}

// ---------------------------------------------------------------------------------------------
// embedding

void CudaBackend::embedding(const Tensor& y, const Tensor& ids, const Tensor& table) {
    checks::require_embedding("embedding", "y", y, ids, "table", table);
    const int64_t rows = ids.numel(), vocab = table.size(0), cols = table.size(1);
    require_ids_in_range(*this, "embedding", "id", ids, vocab, table.shape(), false, 0);
    if (rows == 0 || cols == 0) return;
    const unsigned grid = static_cast<unsigned>(std::min(rows, kMaxGrid));
    with_index_type(ids, [&](const auto* id_data) {
        embedding_kernel<<<grid, kBlockThreads, 0, stream()>>>(y.data<float>(), id_data, table.data<float>(), rows,
                                                               cols);
        LAB_CUDA_LAUNCHED("embedding_kernel");
    });
}

void CudaBackend::embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids) {
    checks::require_embedding("embedding_backward", "dy", dy, ids, "dtable", dtable);
    const int64_t rows = ids.numel(), vocab = dtable.size(0), cols = dtable.size(1);
    require_ids_in_range(*this, "embedding_backward", "id", ids, vocab, dtable.shape(), false, 0);
    if (rows == 0 || cols == 0) return;
    const unsigned grid = static_cast<unsigned>(std::min(rows, kMaxGrid));
    with_index_type(ids, [&](const auto* id_data) {
        embedding_backward_kernel<<<grid, kBlockThreads, 0, stream()>>>(dtable.data<float>(), dy.data<float>(),
                                                                        id_data, rows, cols);
        LAB_CUDA_LAUNCHED("embedding_backward_kernel");
    });
}

// ---------------------------------------------------------------------------------------------
// cross entropy

void CudaBackend::cross_entropy(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                                int64_t ignore_index) {
    checks::require_f32_contiguous("cross_entropy", "logits", logits);
    const int64_t rows = checks::row_count(logits), vocab = checks::row_size(logits);
    checks::require_one_per_row("cross_entropy", "loss", loss, rows);
    checks::require_one_per_row("cross_entropy", "lse", lse, rows);
    checks::require_targets("cross_entropy", targets, logits, rows);
    require_ids_in_range(*this, "cross_entropy", "target", targets, vocab, logits.shape(), true, ignore_index);
    if (rows == 0) return;
    with_row_team(vocab, [&](auto team) {
        constexpr int kTeam = decltype(team)::value;
        with_index_type(targets, [&](const auto* target_data) {
            cross_entropy_kernel<kTeam><<<row_blocks<kTeam>(rows), kBlockThreads, 0, stream()>>>(
                loss.data<float>(), lse.data<float>(), logits.data<float>(), target_data, rows, vocab, ignore_index);
            LAB_CUDA_LAUNCHED("cross_entropy_kernel");
        });
    });
}

void CudaBackend::cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                                         const Tensor& lse, const Tensor& targets, int64_t ignore_index) {
    checks::require_f32_contiguous("cross_entropy_backward", "logits", logits);
    checks::require_f32_contiguous("cross_entropy_backward", "dlogits", dlogits);
    checks::require_same_shape("cross_entropy_backward", "dlogits", dlogits, "logits", logits);
    const int64_t rows = checks::row_count(logits), vocab = checks::row_size(logits);
    checks::require_one_per_row("cross_entropy_backward", "dloss", dloss, rows);
    checks::require_one_per_row("cross_entropy_backward", "lse", lse, rows);
    checks::require_targets("cross_entropy_backward", targets, logits, rows);
    require_ids_in_range(*this, "cross_entropy_backward", "target", targets, vocab, logits.shape(), true,
                         ignore_index);
    if (rows == 0) return;
    with_row_team(vocab, [&](auto team) {
        constexpr int kTeam = decltype(team)::value;
        with_index_type(targets, [&](const auto* target_data) {
            cross_entropy_backward_kernel<kTeam><<<row_blocks<kTeam>(rows), kBlockThreads, 0, stream()>>>(
                dlogits.data<float>(), dloss.data<float>(), logits.data<float>(), lse.data<float>(), target_data,
                rows, vocab, ignore_index);
            LAB_CUDA_LAUNCHED("cross_entropy_backward_kernel");
        });
    });
}

}  // namespace lab::cuda
