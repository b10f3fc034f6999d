// HostBackend row kernels: softmax, layer norm, embedding and cross entropy. Each treats its
// input as [N, C] rows (all leading dims flattened) and gives rows to OpenMP threads; row
// reductions use `omp simd` so the compiler may reorder the float sums into vector lanes.
#include <omp.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "host_kernels.h"
#include "host_lanes.h"
#include "lab/host_backend.h"

namespace lab {

using namespace host;

namespace {

// Checks every id before anything is written, so a bad id leaves the output untouched.
void require_ids_in_range(const char* kernel, const char* what, const Tensor& ids, int64_t limit,
                          const Shape& table_shape, bool allow_ignore, int64_t ignore_index) {
    const int64_t n = ids.numel();
    for (int64_t i = 0; i < n; ++i) {
        const int64_t id = load_index(ids, i);
        if (allow_ignore && id == ignore_index) continue;
        if (id < 0 || id >= limit) {
            throw id_out_of_range(kernel, what, id, i, limit, table_shape);
        }
    }
}

float row_max(const float* x, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
    return m;
}

// log(sum(exp(x - max))) + max, the stable logsumexp of one row.
float row_logsumexp(const float* x, int64_t n) {
    const float m = row_max(x, n);
    if (std::isinf(m)) return m;  // all -inf gives -inf; any +inf gives +inf
    return m + std::log(sum_exp_shifted(x, m, n));
}

}  // namespace

void HostBackend::softmax(const Tensor& y, const Tensor& x, bool log) {
    require_f32_contiguous("softmax", "y", y);
    require_f32_contiguous("softmax", "x", x);
    require_same_shape("softmax", "y", y, "x", x);
    const int64_t rows = row_count(x), cols = row_size(x);
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelElems)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = xp + r * cols;
        float* yr = yp + r * cols;
        const float m = row_max(xr, cols);  // subtracting the max keeps exp() from overflowing
        const float s = exp_shifted(xr, m, yr, cols);
        if (log) {
            const float shift = m + std::log(s);
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] - shift;
        } else {
            const float inv = 1.0f / s;
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
        }
    }
}

void HostBackend::softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
    require_f32_contiguous("softmax_backward", "dx", dx);
    require_f32_contiguous("softmax_backward", "dy", dy);
    require_f32_contiguous("softmax_backward", "y", y);
    require_same_shape("softmax_backward", "dx", dx, "dy", dy);
    require_same_shape("softmax_backward", "dx", dx, "y", y);
    const int64_t rows = row_count(y), cols = row_size(y);
    float* dxp = dx.data<float>();
    const float* dyp = dy.data<float>();
    const float* yp = y.data<float>();
#pragma omp parallel for schedule(static) if (y.numel() >= kParallelElems)
    for (int64_t r = 0; r < rows; ++r) {
        float* dxr = dxp + r * cols;
        const float* dyr = dyp + r * cols;
        const float* yr = yp + r * cols;
        if (log) {  // y = log p: dx = dy - p * sum(dy)
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < cols; ++j) s += dyr[j];
            exp_shifted(yr, 0.0f, dxr, cols);
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) dxr[j] = dyr[j] - dxr[j] * s;
        } else {  // dx = p * (dy - sum(dy * p))
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int64_t j = 0; j < cols; ++j) dot += dyr[j] * yr[j];
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
        }
    }
}

namespace {

// A row's mean and 1 / sqrt(var + eps), in two passes in double: the one-pass E[x^2] - E[x]^2
// cancels badly for large means.
void row_statistics(const float* xr, int64_t cols, float eps, float* mean, float* rstd) {
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < cols; ++j) sum += xr[j];
    const double mu = sum / static_cast<double>(cols);
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < cols; ++j) sq += (xr[j] - mu) * (xr[j] - mu);
    *mean = static_cast<float>(mu);
    *rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(cols) + eps));
}

// y = (x - mean) * rstd * gamma + beta over n values of a row (gamma, beta may be null).
void normalize_run(float* y, const float* x, const float* gamma, const float* beta, float mean, float rstd,
                   int64_t n) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
        const float normed = (x[j] - mean) * rstd;
        y[j] = normed * (gamma ? gamma[j] : 1.0f) + (beta ? beta[j] : 0.0f);
    }
}

// The checks both layer norms make; returns rows and columns.
std::pair<int64_t, int64_t> check_layer_norm(const char* kernel, const Tensor& y, const Tensor& mean,
                                             const Tensor& rstd, const Tensor& x, const Tensor* gamma,
                                             const Tensor* beta) {
    require_f32_contiguous(kernel, "x", x);
    require_same_shape(kernel, "y", y, "x", x);
    const int64_t rows = row_count(x), cols = row_size(x);
    require_one_per_row(kernel, "mean", mean, rows);
    require_one_per_row(kernel, "rstd", rstd, rows);
    require_one_per_column(kernel, "gamma", gamma, cols);
    require_one_per_column(kernel, "beta", beta, cols);
    return {rows, cols};
}

}  // namespace

void HostBackend::layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                             const Tensor* gamma, const Tensor* beta, float eps) {
    require_f32_contiguous("layer_norm", "y", y);
    // Not a structured binding: clang before 16 refuses those in the OpenMP region below.
    const std::pair<int64_t, int64_t> dims = check_layer_norm("layer_norm", y, mean, rstd, x, gamma, beta);
    const int64_t rows = dims.first, cols = dims.second;
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    float* meanp = mean.data<float>();
    float* rstdp = rstd.data<float>();
    const float* gp = gamma ? gamma->data<float>() : nullptr;
    const float* bp = beta ? beta->data<float>() : nullptr;
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelElems)
    for (int64_t r = 0; r < rows; ++r) {
        row_statistics(xp + r * cols, cols, eps, meanp + r, rstdp + r);
        normalize_run(yp + r * cols, xp + r * cols, gp, bp, meanp[r], rstdp[r], cols);
    }
}

void HostBackend::layer_norm_bf16(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                                  const Tensor* gamma, const Tensor* beta, float eps) {
    require_dtype("layer_norm_bf16", "y", y, DType::bf16);
    if (!y.is_contiguous()) return Backend::layer_norm_bf16(y, mean, rstd, x, gamma, beta, eps);
    const std::pair<int64_t, int64_t> dims = check_layer_norm("layer_norm_bf16", y, mean, rstd, x, gamma, beta);
    const int64_t rows = dims.first, cols = dims.second;
    const float* xp = x.data<float>();
    uint16_t* yp = static_cast<uint16_t*>(y.raw());
    float* meanp = mean.data<float>();
    float* rstdp = rstd.data<float>();
    const float* gp = gamma ? gamma->data<float>() : nullptr;
    const float* bp = beta ? beta->data<float>() : nullptr;
    // The f32 kernel's values, each rounded as it is written (through an L1 buffer).
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelElems)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = xp + r * cols;
        row_statistics(xr, cols, eps, meanp + r, rstdp + r);
        const float m = meanp[r], rs = rstdp[r];
        bf16_through_buffer(yp + r * cols, cols, [&](float* out, int64_t first, int64_t n) {
            normalize_run(out, xr + first, gp ? gp + first : nullptr, bp ? bp + first : nullptr, m, rs, n);
        });
    }
}

namespace {

// dx (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma, xhat the normalised x;
// dgamma += sum over rows of dy * xhat, dbeta += sum of dy. One pass: each thread sums the parameter
// gradients of its rows in double, and the threads' sums are added in thread order.
void layer_norm_backward_rows(const char* kernel, bool add, const Tensor& dx, const Tensor* dgamma,
                              const Tensor* dbeta, const Tensor& dy, const Tensor& x, const Tensor& mean,
                              const Tensor& rstd, const Tensor* gamma) {
    require_f32_contiguous(kernel, "x", x);
    require_f32_contiguous(kernel, "dx", dx);
    require_f32_contiguous(kernel, "dy", dy);
    require_same_shape(kernel, "dx", dx, "x", x);
    require_same_shape(kernel, "dy", dy, "x", x);
    const int64_t rows = row_count(x), cols = row_size(x);
    require_one_per_row(kernel, "mean", mean, rows);
    require_one_per_row(kernel, "rstd", rstd, rows);
    require_one_per_column(kernel, "gamma", gamma, cols);
    require_one_per_column(kernel, "dgamma", dgamma, cols);
    require_one_per_column(kernel, "dbeta", dbeta, cols);
    const float* xp = x.data<float>();
    const float* dyp = dy.data<float>();
    float* dxp = dx.data<float>();
    const float* meanp = mean.data<float>();
    const float* rstdp = rstd.data<float>();
    const float* gp = gamma ? gamma->data<float>() : nullptr;
    const float inv_cols = cols > 0 ? 1.0f / static_cast<float>(cols) : 0.0f;
    const bool parallel = x.numel() >= kParallelElems;
    const int threads = parallel ? omp_get_max_threads() : 1;
    const bool sums = dgamma || dbeta;
    std::vector<double> partial(sums ? static_cast<size_t>(2 * cols * threads) : 0, 0.0);
#pragma omp parallel num_threads(threads) if (parallel)
    {
        double* part_gamma = sums ? partial.data() + 2 * cols * omp_get_thread_num() : nullptr;
        double* part_beta = sums ? part_gamma + cols : nullptr;
        // The rows' terms are summed in f32 over blocks of kBlockRows rows, each block's sum
        // added in double: double's accuracy over many rows without a conversion per term.
        constexpr int64_t kBlockRows = 16;
        std::vector<float> block(sums ? static_cast<size_t>(2 * cols) : 0, 0.0f);
        float* block_gamma = block.data();
        float* block_beta = sums ? block_gamma + cols : nullptr;
        int64_t in_block = 0;
        auto flush = [&] {
            for (int64_t j = 0; j < cols; ++j) {
                part_gamma[j] += block_gamma[j];
                part_beta[j] += block_beta[j];
                block_gamma[j] = block_beta[j] = 0.0f;
            }
            in_block = 0;
        };
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            const float* xr = xp + r * cols;
            const float* dyr = dyp + r * cols;
            float* dxr = dxp + r * cols;
            const float m = meanp[r], rs = rstdp[r];
            float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
            for (int64_t j = 0; j < cols; ++j) {
                const float g = dyr[j] * (gp ? gp[j] : 1.0f);
                sum_g += g;
                sum_gx += g * (xr[j] - m) * rs;
            }
            const float mean_g = sum_g * inv_cols, mean_gx = sum_gx * inv_cols;
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) {
                const float g = dyr[j] * (gp ? gp[j] : 1.0f);
                const float v = rs * (g - mean_g - (xr[j] - m) * rs * mean_gx);
                dxr[j] = add ? dxr[j] + v : v;
            }
            if (sums) {
#pragma omp simd
                for (int64_t j = 0; j < cols; ++j) {
                    block_gamma[j] += dyr[j] * ((xr[j] - m) * rs);
                    block_beta[j] += dyr[j];
                }
                if (++in_block == kBlockRows) flush();
            }
        }
        if (sums && in_block > 0) flush();
    }
    float* dgp = dgamma ? dgamma->data<float>() : nullptr;
    float* dbp = dbeta ? dbeta->data<float>() : nullptr;
    for (int64_t j = 0; j < cols && sums; ++j) {
        double total_gamma = 0.0, total_beta = 0.0;
        for (int t = 0; t < threads; ++t) {
            total_gamma += partial[static_cast<size_t>(2 * cols * t + j)];
            total_beta += partial[static_cast<size_t>(2 * cols * t + cols + j)];
        }
        if (dgp) dgp[j] += static_cast<float>(total_gamma);
        if (dbp) dbp[j] += static_cast<float>(total_beta);
    }
}

}  // namespace

void HostBackend::layer_norm_backward(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta,
                                      const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                                      const Tensor* gamma) {
    layer_norm_backward_rows("layer_norm_backward", false, dx, dgamma, dbeta, dy, x, mean, rstd, gamma);
}

void HostBackend::layer_norm_backward_accumulate(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta,
                                                 const Tensor& dy, const Tensor& x, const Tensor& mean,
                                                 const Tensor& rstd, const Tensor* gamma) {
    layer_norm_backward_rows("layer_norm_backward_accumulate", true, dx, dgamma, dbeta, dy, x, mean, rstd, gamma);
}

void HostBackend::embedding(const Tensor& y, const Tensor& ids, const Tensor& table) {
    require_embedding("embedding", "y", y, ids, "table", table);
    const int64_t rows = ids.numel(), vocab = table.size(0), cols = table.size(1);
    require_ids_in_range("embedding", "id", ids, vocab, table.shape(), false, 0);
    const float* tp = table.data<float>();
    float* yp = y.data<float>();
#pragma omp parallel for schedule(static) if (y.numel() >= kParallelElems)
    for (int64_t n = 0; n < rows; ++n) {
        std::memcpy(yp + n * cols, tp + load_index(ids, n) * cols, static_cast<size_t>(cols) * sizeof(float));
    }
}

void HostBackend::embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids) {
    require_embedding("embedding_backward", "dy", dy, ids, "dtable", dtable);
    const int64_t rows = ids.numel(), vocab = dtable.size(0), cols = dtable.size(1);
    require_ids_in_range("embedding_backward", "id", ids, vocab, dtable.shape(), false, 0);
    float* tp = dtable.data<float>();
    const float* dyp = dy.data<float>();
    // Repeated ids would race if threads took rows; threads take column blocks instead, which
    // also keeps the summation order fixed (deterministic gradients).
    constexpr int64_t kCols = 64;
    const int64_t blocks = (cols + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (dy.numel() >= kParallelElems)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t c0 = blk * kCols, width = std::min(kCols, cols - c0);
        for (int64_t n = 0; n < rows; ++n) {
            float* dst = tp + load_index(ids, n) * cols + c0;
            const float* src = dyp + n * cols + c0;
#pragma omp simd
            for (int64_t j = 0; j < width; ++j) dst[j] += src[j];
        }
    }
}

void HostBackend::cross_entropy(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                                int64_t ignore_index) {
    require_f32_contiguous("cross_entropy", "logits", logits);
    const int64_t rows = row_count(logits), vocab = row_size(logits);
    require_one_per_row("cross_entropy", "loss", loss, rows);
    require_one_per_row("cross_entropy", "lse", lse, rows);
    require_targets("cross_entropy", targets, logits, rows);
    require_ids_in_range("cross_entropy", "target", targets, vocab, logits.shape(), true, ignore_index);
    const float* xp = logits.data<float>();
    float* lossp = loss.data<float>();
    float* lsep = lse.data<float>();
#pragma omp parallel for schedule(static) if (logits.numel() >= kParallelElems)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = xp + r * vocab;
        const float row_lse = row_logsumexp(xr, vocab);
        const int64_t t = load_index(targets, r);
        lsep[r] = row_lse;
        lossp[r] = t == ignore_index ? 0.0f : row_lse - xr[t];
    }
}

void HostBackend::cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                                         const Tensor& lse, const Tensor& targets, int64_t ignore_index) {
    require_f32_contiguous("cross_entropy_backward", "logits", logits);
    require_f32_contiguous("cross_entropy_backward", "dlogits", dlogits);
    require_same_shape("cross_entropy_backward", "dlogits", dlogits, "logits", logits);
    const int64_t rows = row_count(logits), vocab = row_size(logits);
    require_one_per_row("cross_entropy_backward", "dloss", dloss, rows);
    require_one_per_row("cross_entropy_backward", "lse", lse, rows);
    require_targets("cross_entropy_backward", targets, logits, rows);
    require_ids_in_range("cross_entropy_backward", "target", targets, vocab, logits.shape(), true, ignore_index);
    const float* xp = logits.data<float>();
    float* dxp = dlogits.data<float>();
    const float* dlp = dloss.data<float>();
    const float* lsep = lse.data<float>();
#pragma omp parallel for schedule(static) if (logits.numel() >= kParallelElems)
    for (int64_t r = 0; r < rows; ++r) {
        float* dxr = dxp + r * vocab;
        const int64_t t = load_index(targets, r);
        if (t == ignore_index) {
            std::fill(dxr, dxr + vocab, 0.0f);
            continue;
        }
        const float* xr = xp + r * vocab;
        const float g = dlp[r], shift = lsep[r];
        exp_shifted(xr, shift, dxr, vocab);
#pragma omp simd
        for (int64_t j = 0; j < vocab; ++j) dxr[j] *= g;
        dxr[t] -= g;
    }
}

}  // namespace lab
