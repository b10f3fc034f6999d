// CudaBackend kernels that update tensors from masks, random numbers or gradients: masked_fill,
// dropout (the CPU's Philox numbers, cuda_philox.h) and the optimizer updates (AdamW over all
// parameters in a few launches, SGD). Each follows HostBackend (framework/src/kernels/host_backend.cpp)
// with the same argument checks (lab/kernel_checks.h).
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

// ---- masks, dropout, optimizers ----

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

// AdamW over many tensors in one launch. The batch rides in the kernel's parameter space (under
// the 4 KB limit for kernel arguments): per tensor its pointers, size and decay (lr * weight
// decay), and the prefix sums of its block counts, from which a block finds its tensor.
constexpr int kAdamWMaxTensors = 64;
constexpr int kAdamWBlockElems = kThreads * 4;  // elements per block: 4 per thread

struct AdamWTensor {
    float* w;
    const float* g;
    float* m;
    float* v;
    int64_t numel;
    float decay;
};

struct AdamWBatch {
    int count = 0;
    int64_t first_block[kAdamWMaxTensors + 1] = {};  // first_block[count]: blocks in all
    AdamWTensor tensors[kAdamWMaxTensors];
};

struct AdamWStep {
    float lr, beta1, beta2, eps, bias_correction1, bias_correction2;
};

static_assert(sizeof(AdamWBatch) + sizeof(AdamWStep) <= 4000, "AdamW kernel arguments must stay under 4 KB");

// The host's adamw_update per element: decoupled decay first, then the Adam step from the
// updated moments and the bias corrections. Block b updates elements [j * 1024, (j + 1) * 1024)
// of the tensor whose block range holds b (j its block within that tensor).
__global__ void adamw_kernel(AdamWBatch batch, AdamWStep step) {
    const int64_t block = blockIdx.x;
    int lo = 0, hi = batch.count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (batch.first_block[mid] <= block) lo = mid;
        else hi = mid - 1;
    }
    const AdamWTensor& t = batch.tensors[lo];
    const int64_t begin = (block - batch.first_block[lo]) * kAdamWBlockElems;
    for (int64_t i = begin + threadIdx.x; i < min(t.numel, begin + kAdamWBlockElems); i += blockDim.x) {
        const float grad = t.g[i];
        float weight = t.w[i] - t.decay * t.w[i];
        const float m_new = step.beta1 * t.m[i] + (1.0f - step.beta1) * grad;
        const float v_new = step.beta2 * t.v[i] + (1.0f - step.beta2) * grad * grad;
        const float m_hat = m_new / step.bias_correction1;
        const float v_hat = v_new / step.bias_correction2;
        weight -= step.lr * m_hat / (sqrtf(v_hat) + step.eps);
        t.m[i] = m_new;
        t.v[i] = v_new;
        t.w[i] = weight;
    }
}

// SGD with momentum as the host's sgd_update (buf null without momentum). Grid-stride.
__global__ void sgd_kernel(float* w, const float* g, float* buf, int64_t n, float lr, float momentum,
                           float weight_decay, bool nesterov) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        float step = g[i] + weight_decay * w[i];
        if (buf != nullptr) {
            const float b = momentum * buf[i] + step;
            buf[i] = b;
            step = nesterov ? step + momentum * b : b;
        }
        w[i] -= lr * step;
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// masks, dropout, optimizer updates

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

void CudaBackend::adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, float lr,
                               float beta1, float beta2, float eps, float weight_decay, int64_t t) {
    adamw_update_all({AdamWTensors{w, g, m, v, weight_decay}}, lr, beta1, beta2, eps, t);
}

void CudaBackend::adamw_update_all(const std::vector<AdamWTensors>& params, float lr, float beta1, float beta2,
                                   float eps, int64_t t) {
    // Every entry is checked before any is updated (the host's loop checks each just before it).
    for (const AdamWTensors& p : params) checks::require_adamw_update(p.w, p.g, p.m, p.v, t);
    const double steps = static_cast<double>(t);
    AdamWStep step{lr, beta1, beta2, eps,
                   static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), steps)),
                   static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), steps))};
    AdamWBatch batch;
    auto launch = [&] {
        if (batch.count == 0) return;
        adamw_kernel<<<static_cast<unsigned>(batch.first_block[batch.count]), kThreads, 0, stream()>>>(batch, step);
        LAB_CUDA_LAUNCHED("adamw_kernel");
        batch = AdamWBatch{};
    };
    for (const AdamWTensors& p : params) {
        const int64_t n = p.w.numel();
        if (n == 0) continue;
        batch.tensors[batch.count] = {p.w.data<float>(), p.g.data<float>(), p.m.data<float>(), p.v.data<float>(), n,
                                      lr * p.weight_decay};
        const int64_t blocks = (n + kAdamWBlockElems - 1) / kAdamWBlockElems;
        batch.first_block[batch.count + 1] = batch.first_block[batch.count] + blocks;
        if (++batch.count == kAdamWMaxTensors) launch();
    }
    launch();
}

void CudaBackend::sgd_update(const Tensor& w, const Tensor& g, const Tensor& buf, float lr, float momentum,
                             float weight_decay, bool nesterov) {
    checks::require_sgd_update(w, g, buf, momentum);
    const bool use_momentum = momentum != 0.0f;
    const int64_t n = w.numel();
    if (n == 0) return;
    sgd_kernel<<<grid_for(*this, n), kThreads, 0, stream()>>>(w.data<float>(), g.data<float>(),
                                                             use_momentum ? buf.data<float>() : nullptr, n, lr,
                                                             momentum, weight_decay, nesterov);
    LAB_CUDA_LAUNCHED("sgd_kernel");
}

}  // namespace lab::cuda
