// Launch shapes and strided layouts shared by the elementwise kernel files (cuda_elementwise.cu,
// cuda_updates.cu): grid-stride loops over n items, and Strided<K>, the shape and strides of K
// tensors packed on the host the way the host's StridedLoop packs them (size-1 dims dropped, dims
// contiguous in every operand merged) and passed to a kernel by value. A layout that collapses to
// one unit-stride run takes the kernels' contiguous path, which indexes without dividing.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "cuda_backend.h"
#include "lab/error.h"
#include "lab/kernel_checks.h"

namespace lab::cuda {

namespace {

constexpr int kThreads = 256;    // threads per block of the elementwise kernels
constexpr int kMaxDims = 8;      // as the host's StridedLoop
constexpr int64_t kMaxGrid = 1 << 30;  // under the 2^31 - 1 blocks of grid.x; kernels grid-stride past it

// Blocks for a grid-stride loop over n items: enough to fill the device, not one per item.
int grid_for(const CudaBackend& backend, int64_t n) {
    const int64_t blocks = (n + kThreads - 1) / kThreads;
    const int64_t cap = static_cast<int64_t>(backend.properties().multiProcessorCount) * 32;
    return static_cast<int>(std::max<int64_t>(1, std::min(blocks, cap)));
}

__device__ __forceinline__ int64_t global_thread() {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ---- strided layouts ----

template <int K> struct Strided {
    int rank = 0;
    int64_t numel = 1;
    int64_t shape[kMaxDims] = {};
    int64_t strides[K][kMaxDims] = {};

    bool contiguous() const {
        if (rank != 1) return false;
        for (int k = 0; k < K; ++k)
            if (strides[k][0] != 1 && shape[0] != 1) return false;
        return true;
    }
};

// The host's StridedLoop constructor, packing instead of walking: same dims dropped and merged,
// same ShapeError past 8 dims.
template <int K>
Strided<K> make_strided(const char* kernel, const Shape& shape, const std::array<const Shape*, K>& strides) {
    checks::require_at_most_dims(kernel, shape, kMaxDims);
    Strided<K> s;
    bool empty = false;
    for (size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] == 0) empty = true;
        if (shape[d] == 1) continue;
        bool mergeable = s.rank > 0;
        for (int k = 0; k < K && mergeable; ++k) mergeable = s.strides[k][s.rank - 1] == (*strides[k])[d] * shape[d];
        if (mergeable) {
            s.shape[s.rank - 1] *= shape[d];
            for (int k = 0; k < K; ++k) s.strides[k][s.rank - 1] = (*strides[k])[d];
        } else {
            s.shape[s.rank] = shape[d];
            for (int k = 0; k < K; ++k) s.strides[k][s.rank] = (*strides[k])[d];
            ++s.rank;
        }
    }
    if (s.rank == 0) {  // a scalar or all dims of size 1: one element
        s.shape[0] = 1;
        s.rank = 1;
    }
    s.numel = empty ? 0 : 1;
    for (int d = 0; d < s.rank; ++d) s.numel *= s.shape[d];
    return s;
}

// Element offsets of linear index i (row-major over the packed shape) in each operand. The
// unrolled loop keeps the layout's arrays in registers (a dynamic index would copy them to
// local memory); the outermost dim needs no division.
template <int K>
__device__ __forceinline__ void element_offsets(const Strided<K>& s, int64_t i, int64_t (&offsets)[K]) {
#pragma unroll
    for (int k = 0; k < K; ++k) offsets[k] = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d > 0; --d) {
        if (d < s.rank) {
            const int64_t q = i / s.shape[d];
            const int64_t index = i - q * s.shape[d];
            i = q;
#pragma unroll
            for (int k = 0; k < K; ++k) offsets[k] += index * s.strides[k][d];
        }
    }
#pragma unroll
    for (int k = 0; k < K; ++k) offsets[k] += i * s.strides[k][0];
}

}  // namespace

}  // namespace lab::cuda
