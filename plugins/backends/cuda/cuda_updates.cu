// CudaBackend kernels that update tensors from masks or random numbers: masked_fill and dropout
// (the CPU's Philox numbers, cuda_philox.h). Each follows HostBackend (framework/src/kernels/host_backend.cpp)
// with the same argument checks (lab/kernel_checks.h). The optimizer updates are the optimizer
// plugins' kernels (plugins/optimizers/adamw/adamw_cuda.cu, plugins/optimizers/sgd/sgd_cuda.cu).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_philox.h"
#include "cuda_strided.cuh"
#include "lab/error.h"
#include "lab/kernel_checks.h"

namespace lab::cuda {

namespace {

// ---- masks, dropout ----

// y = mask ? value : x. Grid-stride.
template <bool kContiguous>
__global__ void masked_fill_kernel(float* y, const float* x, const uint8_t* mask, float value, Strided<3> layout) {
    for (int64_t i = global_thread(); i < layout.numel; i += grid_threads()) {
        if constexpr (kContiguous) {
            y[i] = mask[i] ? value : x[i];
        } else {
            int64_t off[3];
            element_offsets(layout, i, off);
            y[off[0]] = mask[off[2]] ? value : x[off[1]];
        }
    }
}

// One thread per Philox block (4 counters, 4 elements): keep[i] = philox_uniform(key, i) >= p,
// y[i] = keep ? x[i] * scale : 0. Drawing the block once for its 4 words gives the numbers of
// philox_uniform(key, i) for each i at a quarter of the cost. Grid-stride over the blocks that
// counters offset .. offset + n - 1 touch.
__global__ void dropout_kernel(float* y, uint8_t* keep, const float* x, int64_t n, float p, float scale,
                               RngKey key) {
    const uint64_t first_block = key.offset >> 2;
    const uint64_t blocks = ((key.offset + static_cast<uint64_t>(n) - 1) >> 2) - first_block + 1;
    for (uint64_t b = global_thread(); b < blocks; b += grid_threads()) {
        const PhiloxWords words = philox_block(key.seed, key.stream, first_block + b);
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            const uint64_t counter = ((first_block + b) << 2) + w;
            const uint64_t i = counter - key.offset;
            if (counter < key.offset || i >= static_cast<uint64_t>(n)) continue;
            const bool kept = static_cast<float>(words.w[w] >> 8) * (1.0f / 16777216.0f) >= p;
            keep[i] = kept ? 1 : 0;
            y[i] = kept ? x[i] * scale : 0.0f;
        }
    }
}

// dx = keep ? dy * scale : 0. Grid-stride.
__global__ void dropout_backward_kernel(float* dx, const float* dy, const uint8_t* keep, int64_t n, float scale) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) dx[i] = keep[i] ? dy[i] * scale : 0.0f;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// masks, dropout

void CudaBackend::masked_fill(const Tensor& y, const Tensor& x, const Tensor& mask, float value) {
    checks::require_same_shape("masked_fill", "y", y, "x", x);
    checks::require_same_shape("masked_fill", "y", y, "mask", mask);
    checks::require_dtype("masked_fill", "y", y, DType::f32);
    checks::require_dtype("masked_fill", "x", x, DType::f32);
    checks::require_dtype("masked_fill", "mask", mask, DType::u8);
    const Strided<3> layout =
        make_strided<3>("masked_fill", y.shape(), {&y.strides(), &x.strides(), &mask.strides()});
    if (layout.numel == 0) return;
    const int grid = grid_for(*this, layout.numel);
    if (layout.contiguous()) {
        masked_fill_kernel<true><<<grid, kThreads, 0, stream()>>>(y.data<float>(), x.data<float>(),
                                                                  mask.data<uint8_t>(), value, layout);
    } else {
        masked_fill_kernel<false><<<grid, kThreads, 0, stream()>>>(y.data<float>(), x.data<float>(),
                                                                   mask.data<uint8_t>(), value, layout);
    }
    LAB_CUDA_LAUNCHED("masked_fill_kernel");
}

void CudaBackend::dropout(const Tensor& y, const Tensor& keep, const Tensor& x, float p, RngKey key) {
    checks::require_f32_contiguous("dropout", "y", y);
    checks::require_f32_contiguous("dropout", "x", x);
    checks::require_same_shape("dropout", "y", y, "x", x);
    checks::require_same_shape("dropout", "keep", keep, "x", x);
    checks::require_dtype("dropout", "keep", keep, DType::u8);
    checks::require_contiguous("dropout", "keep", keep);
    const int64_t n = x.numel();
    if (n == 0) return;
    const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const int64_t philox_blocks = static_cast<int64_t>(((key.offset + n - 1) >> 2) - (key.offset >> 2) + 1);
    dropout_kernel<<<grid_for(*this, philox_blocks), kThreads, 0, stream()>>>(y.data<float>(), keep.data<uint8_t>(),
                                                                              x.data<float>(), n, p, scale, key);
    LAB_CUDA_LAUNCHED("dropout_kernel");
}

void CudaBackend::dropout_backward(const Tensor& dx, const Tensor& dy, const Tensor& keep, float p) {
    checks::require_f32_contiguous("dropout_backward", "dx", dx);
    checks::require_f32_contiguous("dropout_backward", "dy", dy);
    checks::require_same_shape("dropout_backward", "dx", dx, "dy", dy);
    checks::require_same_shape("dropout_backward", "keep", keep, "dy", dy);
    checks::require_dtype("dropout_backward", "keep", keep, DType::u8);
    checks::require_contiguous("dropout_backward", "keep", keep);
    const int64_t n = dx.numel();
    if (n == 0) return;
    const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    dropout_backward_kernel<<<grid_for(*this, n), kThreads, 0, stream()>>>(dx.data<float>(), dy.data<float>(),
                                                                           keep.data<uint8_t>(), n, scale);
    LAB_CUDA_LAUNCHED("dropout_backward_kernel");
}

}  // namespace lab::cuda
