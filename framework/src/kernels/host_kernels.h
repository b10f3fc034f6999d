// Internal helpers shared by the HostBackend kernel files (host_backend.cpp, host_matmul.cpp,
// host_rows.cpp): a strided walker over up to 8 dims and a vectorisable exp, plus the argument
// checks of lab/kernel_checks.h. Not part of the plugin SDK.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "lab/error.h"
#include "lab/kernel_checks.h"
#include "lab/tensor.h"

namespace lab::host {

// The argument checks every backend shares (lab/kernel_checks.h), as host::require_... here.
using namespace lab::checks;

// Below this many elements a kernel stays on one thread: starting a team costs more than it saves.
constexpr int64_t kParallelElems = 1 << 15;
constexpr int kMaxDims = 8;

// Element n of a contiguous i32/i64 tensor.
inline int64_t load_index(const Tensor& ids, int64_t n) {
    return ids.dtype() == DType::i32 ? ids.data<int32_t>()[n] : ids.data<int64_t>()[n];
}

// Walks K tensors of one shape in lockstep. Size-1 dims are dropped and dims that are
// contiguous in every operand are merged, so a contiguous tensor is one long run; runs are cut
// into chunks that OpenMP shares out.
template <int K>
class StridedLoop {
public:
    StridedLoop(const char* kernel, const Shape& shape, const std::array<const Shape*, K>& strides) {
        require_at_most_dims(kernel, shape, kMaxDims);
        for (size_t d = 0; d < shape.size(); ++d) {
            if (shape[d] == 0) numel_ = 0;
            if (shape[d] == 1) continue;
            bool mergeable = rank_ > 0;
            for (int k = 0; k < K && mergeable; ++k) {
                mergeable = strides_[k][rank_ - 1] == (*strides[k])[d] * shape[d];
            }
            if (mergeable) {
                shape_[rank_ - 1] *= shape[d];
                for (int k = 0; k < K; ++k) strides_[k][rank_ - 1] = (*strides[k])[d];
            } else {
                shape_[rank_] = shape[d];
                for (int k = 0; k < K; ++k) strides_[k][rank_] = (*strides[k])[d];
                ++rank_;
            }
        }
        if (rank_ == 0) {  // a scalar or all dims of size 1: one run of one element
            shape_[0] = 1;
            for (int k = 0; k < K; ++k) strides_[k][0] = 0;
            rank_ = 1;
        }
        if (numel_ != 0) {
            for (int d = 0; d < rank_; ++d) numel_ *= shape_[d];
        }
        for (int k = 0; k < K; ++k) inner_strides_[k] = strides_[k][rank_ - 1];
    }

    int64_t numel() const { return numel_; }

    // body(offsets[K], count, inner_strides[K]) for each chunk of a run of the innermost dim.
    template <class Body>
    void run(Body&& body, bool parallel = true) const {
        if (numel_ == 0) return;
        constexpr int64_t kChunk = 4096;
        const int64_t inner = shape_[rank_ - 1];
        const int64_t chunks = (inner + kChunk - 1) / kChunk;
        const int64_t tasks = numel_ / inner * chunks;
#pragma omp parallel for schedule(static) if (parallel && numel_ >= kParallelElems)
        for (int64_t task = 0; task < tasks; ++task) {
            int64_t outer = task / chunks;
            const int64_t start = (task % chunks) * kChunk;
            int64_t offsets[K];
            for (int k = 0; k < K; ++k) offsets[k] = start * inner_strides_[k];
            for (int d = rank_ - 2; d >= 0; --d) {
                const int64_t i = outer % shape_[d];
                outer /= shape_[d];
                for (int k = 0; k < K; ++k) offsets[k] += i * strides_[k][d];
            }
            body(static_cast<const int64_t*>(offsets), std::min(kChunk, inner - start),
                 static_cast<const int64_t*>(inner_strides_));
        }
    }

private:
    int rank_ = 0;
    int64_t numel_ = 1;
    int64_t shape_[kMaxDims] = {};
    int64_t strides_[K][kMaxDims] = {};
    int64_t inner_strides_[K] = {};
};

// exp over arrays, written with GCC/Clang vector extensions: the compiler keeps scalar std::exp
// (and, under the default -ftrapping-math, any float compare-and-select) out of vector code, so
// the softmax and cross-entropy loops would otherwise run one element at a time. Cody-Waite
// reduction x = n ln2 + r, |r| <= ln2/2, and the Cephes expf polynomial: relative error about
// 1e-7. Inputs below -87 (e^x near FLT_MIN) and -inf give exactly 0, so masked softmax entries
// are exact zeros; inputs above 88 saturate near FLT_MAX; NaN stays NaN.
typedef float ExpVec __attribute__((vector_size(32)));
typedef int32_t ExpVecInt __attribute__((vector_size(32)));
constexpr int kExpLanes = 8;

// exp over any float vector type V whose int32 vector of the same width is I.
template <class V, class I> inline V exp_lanes(V x) {
    const V zero = {}, lo = zero - 87.0f, hi = zero + 88.0f, magic = zero + 12582912.0f;
    V xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    V n = (xc * 1.44269504088896341f + magic) - magic;  // round to nearest
    n = n == n ? n : zero;  // NaN propagates through r; keep the int conversion defined
    V r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    V p = zero + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const V e = p * r * r + r + 1.0f;
    const I bits = (__builtin_convertvector(n, I) + 127) << 23;
    V scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x < lo ? zero : e * scale;
}

inline ExpVec exp_vec(ExpVec x) { return exp_lanes<ExpVec, ExpVecInt>(x); }

// out[j] = exp(x[j] - shift); returns the sum of out (out may be x).
inline float exp_shifted(const float* x, float shift, float* out, int64_t n) {
    ExpVec acc = {};
    int64_t j = 0;
    for (; j + kExpLanes <= n; j += kExpLanes) {
        ExpVec v;
        std::memcpy(&v, x + j, sizeof v);
        v = exp_vec(v - shift);
        std::memcpy(out + j, &v, sizeof v);
        acc += v;
    }
    if (j < n) {  // tail: pad with -inf, whose exp is 0
        float tail[kExpLanes];
        for (int i = 0; i < kExpLanes; ++i) tail[i] = j + i < n ? x[j + i] - shift : -INFINITY;
        ExpVec v;
        std::memcpy(&v, tail, sizeof v);
        v = exp_vec(v);
        std::memcpy(tail, &v, sizeof v);
        for (int64_t i = 0; j + i < n; ++i) out[j + i] = tail[i];
        acc += v;
    }
    float sum = 0.0f;
    for (int i = 0; i < kExpLanes; ++i) sum += acc[i];
    return sum;
}

// sum_j exp(x[j] - shift) without storing the terms.
inline float sum_exp_shifted(const float* x, float shift, int64_t n) {
    ExpVec acc = {};
    int64_t j = 0;
    for (; j + kExpLanes <= n; j += kExpLanes) {
        ExpVec v;
        std::memcpy(&v, x + j, sizeof v);
        acc += exp_vec(v - shift);
    }
    float tail[kExpLanes];
    for (int i = 0; i < kExpLanes; ++i) tail[i] = j + i < n ? x[j + i] - shift : -INFINITY;
    ExpVec v;
    std::memcpy(&v, tail, sizeof v);
    acc += exp_vec(v);
    float sum = 0.0f;
    for (int i = 0; i < kExpLanes; ++i) sum += acc[i];
    return sum;
}

}  // namespace lab::host
