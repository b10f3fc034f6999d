// CudaBackend elementwise kernels: copy and fill (any dtype, any layout), unary and binary maps,
// and the reductions (reduce_sum, sum_squares); masked_fill, dropout and the optimizer updates
// are in cuda_updates.cu. Each
// follows HostBackend (framework/src/kernels/host_backend.cpp) operation for operation, with the same
// argument checks (lab/kernel_checks.h), so that the two backends agree up to float rounding.
//
// Strided operands go through Strided<K> (cuda_strided.cuh).
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_strided.cuh"
#include "lab/element.h"
#include "lab/error.h"
#include "lab/kernel_checks.h"

namespace lab::cuda {

namespace {

// Copies convert elements with lab/element.h's convert, the host's own code (LAB_HOST_DEVICE).

// dst[i] = convert(src[i]). Grid-stride, kThreads per block.
template <DType D, DType S, bool kContiguous>
__global__ void copy_kernel(typename Elem<D>::T* dst, const typename Elem<S>::T* src, Strided<2> layout) {
    for (int64_t i = global_thread(); i < layout.numel; i += grid_threads()) {
        if constexpr (kContiguous) {
            dst[i] = convert<D, S>(src[i]);
        } else {
            int64_t off[2];
            element_offsets(layout, i, off);
            dst[off[0]] = convert<D, S>(src[off[1]]);
        }
    }
}

// dst[i] = value (already converted to dst's type on the host). Grid-stride.
template <class T, bool kContiguous> __global__ void fill_kernel(T* dst, T value, Strided<1> layout) {
    for (int64_t i = global_thread(); i < layout.numel; i += grid_threads()) {
        if constexpr (kContiguous) {
            dst[i] = value;
        } else {
            int64_t off[1];
            element_offsets(layout, i, off);
            dst[off[0]] = value;
        }
    }
}

// ---- f32 maps: y = f(x), c = f(a, b) over one shape, any strides ----

template <bool kContiguous, class F> __global__ void map1_kernel(float* y, const float* x, Strided<2> layout, F f) {
    for (int64_t i = global_thread(); i < layout.numel; i += grid_threads()) {
        if constexpr (kContiguous) {
            y[i] = f(x[i]);
        } else {
            int64_t off[2];
            element_offsets(layout, i, off);
            y[off[0]] = f(x[off[1]]);
        }
    }
}

template <bool kContiguous, class F>
__global__ void map2_kernel(float* c, const float* a, const float* b, Strided<3> layout, F f) {
    for (int64_t i = global_thread(); i < layout.numel; i += grid_threads()) {
        if constexpr (kContiguous) {
            c[i] = f(a[i], b[i]);
        } else {
            int64_t off[3];
            element_offsets(layout, i, off);
            c[off[0]] = f(a[off[1]], b[off[2]]);
        }
    }
}

template <class F> void map1(const CudaBackend& backend, const char* kernel, const Tensor& y, const Tensor& x, F f) {
    const Strided<2> layout = make_strided<2>(kernel, y.shape(), {&y.strides(), &x.strides()});
    if (layout.numel == 0) return;
    const int grid = grid_for(backend, layout.numel);
    if (layout.contiguous()) {
        map1_kernel<true><<<grid, kThreads, 0, backend.stream()>>>(y.data<float>(), x.data<float>(), layout, f);
    } else {
        map1_kernel<false><<<grid, kThreads, 0, backend.stream()>>>(y.data<float>(), x.data<float>(), layout, f);
    }
    LAB_CUDA_LAUNCHED("map1_kernel");
}

template <class F>
void map2(const CudaBackend& backend, const char* kernel, const Tensor& c, const Tensor& a, const Tensor& b, F f) {
    const Strided<3> layout = make_strided<3>(kernel, c.shape(), {&c.strides(), &a.strides(), &b.strides()});
    if (layout.numel == 0) return;
    const int grid = grid_for(backend, layout.numel);
    if (layout.contiguous()) {
        map2_kernel<true><<<grid, kThreads, 0, backend.stream()>>>(c.data<float>(), a.data<float>(),
                                                                   b.data<float>(), layout, f);
    } else {
        map2_kernel<false><<<grid, kThreads, 0, backend.stream()>>>(c.data<float>(), a.data<float>(),
                                                                    b.data<float>(), layout, f);
    }
    LAB_CUDA_LAUNCHED("map2_kernel");
}

constexpr float kSqrt2 = 1.41421356237309504880f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;  // 1/sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluTanhCoeff = 0.044715f;

// y = op(x), the host's formulas.
template <UnaryOp kOp> struct UnaryFn {
    float alpha;
    __device__ float operator()(float v) const {
        if constexpr (kOp == UnaryOp::relu) return v > 0.0f ? v : 0.0f;
        else if constexpr (kOp == UnaryOp::gelu) return 0.5f * v * (1.0f + erff(v / kSqrt2));
        else if constexpr (kOp == UnaryOp::gelu_tanh)
            return 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kGeluTanhCoeff * v * v * v)));
        else if constexpr (kOp == UnaryOp::tanh) return tanhf(v);
        else if constexpr (kOp == UnaryOp::sigmoid) return 1.0f / (1.0f + expf(-v));
        else if constexpr (kOp == UnaryOp::exp) return expf(v);
        else if constexpr (kOp == UnaryOp::log) return logf(v);
        else if constexpr (kOp == UnaryOp::sqrt) return sqrtf(v);
        else if constexpr (kOp == UnaryOp::neg) return -v;
        else if constexpr (kOp == UnaryOp::square) return v * v;
        else if constexpr (kOp == UnaryOp::scale) return alpha * v;
        else return v + alpha;  // add_scalar
    }
};

// dx = g * op'(v), where v is x or y as the host reads it (tanh, sigmoid, exp, sqrt: y).
template <UnaryOp kOp> struct UnaryGrad {
    __device__ float operator()(float g, float v) const {
        if constexpr (kOp == UnaryOp::relu) {
            return v > 0.0f ? g : 0.0f;
        } else if constexpr (kOp == UnaryOp::gelu) {
            const float cdf = 0.5f * (1.0f + erff(v / kSqrt2));
            const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
            return g * (cdf + v * pdf);
        } else if constexpr (kOp == UnaryOp::gelu_tanh) {
            const float t = tanhf(kSqrt2OverPi * (v + kGeluTanhCoeff * v * v * v));
            const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluTanhCoeff * v * v);
            return g * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
        } else if constexpr (kOp == UnaryOp::tanh) {
            return g * (1.0f - v * v);
        } else if constexpr (kOp == UnaryOp::sigmoid) {
            return g * v * (1.0f - v);
        } else if constexpr (kOp == UnaryOp::exp) {
            return g * v;
        } else if constexpr (kOp == UnaryOp::log) {
            return g / v;
        } else if constexpr (kOp == UnaryOp::sqrt) {
            return g * 0.5f / v;
        } else {
            static_assert(kOp == UnaryOp::square, "no derivative kernel for this op");
            return g * 2.0f * v;
        }
    }
};

template <BinaryOp kOp> struct BinaryFn {
    __device__ float operator()(float u, float v) const {
        if constexpr (kOp == BinaryOp::add) return u + v;
        else if constexpr (kOp == BinaryOp::sub) return u - v;
        else if constexpr (kOp == BinaryOp::mul) return u * v;
        else return u / v;  // div
    }
};

template <class F> void dispatch_unary(UnaryOp op, F&& f) {
    switch (op) {
        case UnaryOp::relu: f(std::integral_constant<UnaryOp, UnaryOp::relu>{}); return;
        case UnaryOp::gelu: f(std::integral_constant<UnaryOp, UnaryOp::gelu>{}); return;
        case UnaryOp::gelu_tanh: f(std::integral_constant<UnaryOp, UnaryOp::gelu_tanh>{}); return;
        case UnaryOp::tanh: f(std::integral_constant<UnaryOp, UnaryOp::tanh>{}); return;
        case UnaryOp::sigmoid: f(std::integral_constant<UnaryOp, UnaryOp::sigmoid>{}); return;
        case UnaryOp::exp: f(std::integral_constant<UnaryOp, UnaryOp::exp>{}); return;
        case UnaryOp::log: f(std::integral_constant<UnaryOp, UnaryOp::log>{}); return;
        case UnaryOp::sqrt: f(std::integral_constant<UnaryOp, UnaryOp::sqrt>{}); return;
        case UnaryOp::neg: f(std::integral_constant<UnaryOp, UnaryOp::neg>{}); return;
        case UnaryOp::square: f(std::integral_constant<UnaryOp, UnaryOp::square>{}); return;
        case UnaryOp::scale: f(std::integral_constant<UnaryOp, UnaryOp::scale>{}); return;
        case UnaryOp::add_scalar: f(std::integral_constant<UnaryOp, UnaryOp::add_scalar>{}); return;
    }
}

// ---- sums ----
//
// reduce_sum and sum_squares sum in double, as the host does, in a fixed order (no atomics), so
// a result is the same from run to run. x is read as outputs (the kept dims, in y's order) times
// a count of summed elements; the count is cut into `splits` ranges, each summed by its own
// blocks into a [splits, outputs] scratch of doubles that sum_finalize_kernel adds up in order.
// With one split the summing kernel writes the output itself.

// Threads of a block sum `value` (every thread gets the total). blockDim.x a multiple of 32, at
// most kThreads.
__device__ double block_sum(double value) {
    __shared__ double warp_sums[kThreads / 32];
    for (int mask = 16; mask > 0; mask >>= 1) value += __shfl_xor_sync(0xffffffffu, value, mask);
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = value;
    __syncthreads();
    double total = 0.0;
    for (unsigned w = 0; w < blockDim.x / 32; ++w) total += warp_sums[w];
    __syncthreads();  // warp_sums is written again by the caller's next call
    return total;
}

__device__ __forceinline__ double summand(float v, bool square) {
    const double d = v;
    return square ? d * d : d;
}

// The sum of split blockIdx.y for output o: the output itself when there is one split, else a
// partial.
__device__ __forceinline__ void store_sum(float* out, double* partials, int64_t outputs, int64_t o, double total,
                                          bool accumulate) {
    if (gridDim.y == 1) {
        out[o] = static_cast<float>(accumulate ? out[o] + total : total);
    } else {
        partials[blockIdx.y * outputs + o] = total;
    }
}

// Outputs whose summed elements are adjacent in x ([N, C] -> [N, 1], a whole tensor -> [1]):
// blockIdx.x picks an output (grid-stride), blockIdx.y a split; the block's threads stride through
// the split's elements (coalesced) and reduce with warp shuffles.
__global__ void sum_rows_kernel(float* out, double* partials, const float* x, Strided<1> kept, Strided<1> summed,
                                int64_t per_split, bool square, bool accumulate) {
    const int64_t outputs = kept.numel;
    const int64_t begin = blockIdx.y * per_split, end = min(summed.numel, begin + per_split);
    for (int64_t o = blockIdx.x; o < outputs; o += gridDim.x) {
        int64_t base[1];
        element_offsets(kept, o, base);
        double acc = 0.0;
        for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
            int64_t off[1];
            element_offsets(summed, r, off);
            acc += summand(x[base[0] + off[0]], square);
        }
        const double total = block_sum(acc);
        if (threadIdx.x == 0) store_sum(out, partials, outputs, o, total, accumulate);
    }
}

// Outputs adjacent in x, summed over a leading dim ([N, C] -> [1, C], bias gradients): a (32, 8)
// block; threadIdx.x picks one of 32 neighbouring outputs (coalesced reads), threadIdx.y one of 8
// interleaved slices of split blockIdx.y's elements; blockIdx.x walks groups of 32 outputs.
__global__ void sum_columns_kernel(float* out, double* partials, const float* x, Strided<1> kept,
                                   Strided<1> summed, int64_t per_split, bool square, bool accumulate) {
    __shared__ double slices[8][33];  // 33: no bank conflicts between rows
    const int64_t outputs = kept.numel;
    const int64_t begin = blockIdx.y * per_split, end = min(summed.numel, begin + per_split);
    for (int64_t group = blockIdx.x; group * 32 < outputs; group += gridDim.x) {
        const int64_t o = group * 32 + threadIdx.x;
        double acc = 0.0;
        if (o < outputs) {
            int64_t base[1];
            element_offsets(kept, o, base);
            for (int64_t r = begin + threadIdx.y; r < end; r += 8) {
                int64_t off[1];
                element_offsets(summed, r, off);
                acc += summand(x[base[0] + off[0]], square);
            }
        }
        slices[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && o < outputs) {
            double total = 0.0;
            for (int s = 0; s < 8; ++s) total += slices[s][threadIdx.x];
            store_sum(out, partials, outputs, o, total, accumulate);
        }
        __syncthreads();
    }
}

// out[o] = sum over splits of partials[s, o] (+ out[o] when accumulating). One thread per output;
// with no splits (nothing summed) it writes the empty sum.
__global__ void sum_finalize_kernel(float* out, const double* partials, int64_t outputs, int64_t splits,
                                    bool accumulate) {
    for (int64_t o = global_thread(); o < outputs; o += grid_threads()) {
        double total = 0.0;
        for (int64_t s = 0; s < splits; ++s) total += partials[s * outputs + o];
        out[o] = static_cast<float>(accumulate ? out[o] + total : total);
    }
}

// out[o] (+)= sum over the `summed` layout of x (squared when `square`) at output o's base offset.
void sum_reduce(CudaBackend& backend, float* out, const float* x, const Strided<1>& kept, const Strided<1>& summed,
                bool square, bool accumulate) {
    const int64_t outputs = kept.numel, count = summed.numel;
    if (outputs == 0) return;
    const int64_t target_blocks = 4LL * backend.properties().multiProcessorCount;
    const bool rows = summed.strides[0][summed.rank - 1] == 1;
    // Blocks along the outputs, and the fewest elements a split is worth.
    const int64_t groups = std::min(rows ? outputs : (outputs + 31) / 32, kMaxGrid);
    const int64_t min_per_split = rows ? 4096 : 64;
    int64_t splits = 0;
    if (count > 0) {
        splits = std::clamp<int64_t>((target_blocks + groups - 1) / groups, 1,
                                     std::min<int64_t>((count + min_per_split - 1) / min_per_split, 65535));
    }
    // DType has no f64: the scratch of doubles is an i64 tensor of the same size.
    Tensor scratch;
    double* partials = nullptr;
    if (splits > 1) {
        scratch = Tensor::empty(backend, {splits * outputs}, DType::i64);
        partials = static_cast<double*>(scratch.raw());
    }
    if (splits > 0) {
        const int64_t per_split = (count + splits - 1) / splits;
        const dim3 grid(static_cast<unsigned>(groups), static_cast<unsigned>(splits));
        if (rows) {
            const int threads = per_split >= 1024 ? kThreads : 32;
            sum_rows_kernel<<<grid, threads, 0, backend.stream()>>>(out, partials, x, kept, summed, per_split, square,
                                                                    accumulate);
            LAB_CUDA_LAUNCHED("sum_rows_kernel");
        } else {
            sum_columns_kernel<<<grid, dim3(32, 8), 0, backend.stream()>>>(out, partials, x, kept, summed,
                                                                          per_split, square, accumulate);
            LAB_CUDA_LAUNCHED("sum_columns_kernel");
        }
    }
    if (splits != 1) {
        sum_finalize_kernel<<<grid_for(backend, outputs), kThreads, 0, backend.stream()>>>(out, partials, outputs,
                                                                                           splits, accumulate);
        LAB_CUDA_LAUNCHED("sum_finalize_kernel");
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// memory

void CudaBackend::copy(const Tensor& dst, const Tensor& src) {
    checks::require_same_shape("copy", "dst", dst, "src", src);
    if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
        const size_t bytes = static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype());
        if (bytes > 0) LAB_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), bytes, cudaMemcpyDeviceToDevice, stream()));
        return;
    }
    const Strided<2> layout = make_strided<2>("copy", dst.shape(), {&dst.strides(), &src.strides()});
    if (layout.numel == 0) return;
    const int grid = grid_for(*this, layout.numel);
    dispatch_dtype(dst.dtype(), [&](auto d) {
        dispatch_dtype(src.dtype(), [&](auto s) {
            constexpr DType D = decltype(d)::value, S = decltype(s)::value;
            using DT = typename Elem<D>::T;
            using ST = typename Elem<S>::T;
            DT* dp = static_cast<DT*>(dst.raw());
            const ST* sp = static_cast<const ST*>(src.raw());
            if (layout.contiguous()) {
                copy_kernel<D, S, true><<<grid, kThreads, 0, stream()>>>(dp, sp, layout);
            } else {
                copy_kernel<D, S, false><<<grid, kThreads, 0, stream()>>>(dp, sp, layout);
            }
            LAB_CUDA_LAUNCHED("copy_kernel");
        });
    });
}

void CudaBackend::fill(const Tensor& dst, double value) {
    checks::require_defined("fill", "dst", dst);
    const Strided<1> layout = make_strided<1>("fill", dst.shape(), {&dst.strides()});
    if (layout.numel == 0) return;
    dispatch_dtype(dst.dtype(), [&](auto d) {
        constexpr DType D = decltype(d)::value;
        using T = typename Elem<D>::T;
        const T v = fill_value<D>(value);  // the host's conversion, done here once
        T* p = static_cast<T*>(dst.raw());
        unsigned char bytes[sizeof(T)];
        std::memcpy(bytes, &v, sizeof(T));
        const bool one_byte = std::all_of(bytes, bytes + sizeof(T), [&](unsigned char b) { return b == bytes[0]; });
        if (layout.contiguous() && one_byte) {  // zeros, mostly: cudaMemset is the fastest fill
            LAB_CUDA_CHECK(cudaMemsetAsync(p, bytes[0], static_cast<size_t>(layout.numel) * sizeof(T), stream()));
            return;
        }
        const int grid = grid_for(*this, layout.numel);
        if (layout.contiguous()) {
            fill_kernel<T, true><<<grid, kThreads, 0, stream()>>>(p, v, layout);
        } else {
            fill_kernel<T, false><<<grid, kThreads, 0, stream()>>>(p, v, layout);
        }
        LAB_CUDA_LAUNCHED("fill_kernel");
    });
}

// ---------------------------------------------------------------------------------------------
// elementwise

void CudaBackend::unary(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) {
    checks::require_same_shape("unary", "y", y, "x", x);
    checks::require_dtype("unary", "y", y, DType::f32);
    checks::require_dtype("unary", "x", x, DType::f32);
    dispatch_unary(op, [&](auto o) { map1(*this, unary_op_name(op), y, x, UnaryFn<decltype(o)::value>{alpha}); });
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y) {
    checks::require_same_shape("unary_backward", "dx", dx, "dy", dy);
    checks::require_same_shape("unary_backward", "dx", dx, "x", x);
    checks::require_dtype("unary_backward", "dx", dx, DType::f32);
    checks::require_dtype("unary_backward", "dy", dy, DType::f32);
    checks::require_dtype("unary_backward", "x", x, DType::f32);
    // Derivatives that are cheaper from y read it; when the caller kept no y it is recomputed.
    const bool needs_y = op == UnaryOp::tanh || op == UnaryOp::sigmoid || op == UnaryOp::exp || op == UnaryOp::sqrt;
    Tensor y_used = y;
    if (needs_y && !y.defined()) {
        y_used = Tensor::empty(*this, x.shape(), DType::f32);
        unary(op, y_used, x, 0.0f);
    }
    if (needs_y) {
        checks::require_same_shape("unary_backward", "dx", dx, "y", y_used);
        checks::require_dtype("unary_backward", "y", y_used, DType::f32);
    }
    const char* k = "unary_backward";
    switch (op) {
        case UnaryOp::relu: map2(*this, k, dx, dy, x, UnaryGrad<UnaryOp::relu>{}); return;
        case UnaryOp::gelu: map2(*this, k, dx, dy, x, UnaryGrad<UnaryOp::gelu>{}); return;
        case UnaryOp::gelu_tanh: map2(*this, k, dx, dy, x, UnaryGrad<UnaryOp::gelu_tanh>{}); return;
        case UnaryOp::tanh: map2(*this, k, dx, dy, y_used, UnaryGrad<UnaryOp::tanh>{}); return;
        case UnaryOp::sigmoid: map2(*this, k, dx, dy, y_used, UnaryGrad<UnaryOp::sigmoid>{}); return;
        case UnaryOp::exp: map2(*this, k, dx, dy, y_used, UnaryGrad<UnaryOp::exp>{}); return;
        case UnaryOp::log: map2(*this, k, dx, dy, x, UnaryGrad<UnaryOp::log>{}); return;
        case UnaryOp::sqrt: map2(*this, k, dx, dy, y_used, UnaryGrad<UnaryOp::sqrt>{}); return;
        case UnaryOp::square: map2(*this, k, dx, dy, x, UnaryGrad<UnaryOp::square>{}); return;
        case UnaryOp::neg: map1(*this, k, dx, dy, UnaryFn<UnaryOp::neg>{0.0f}); return;
        case UnaryOp::scale:
        case UnaryOp::add_scalar:
            break;
    }
    throw BackendError(std::string("unary_backward: no derivative kernel for '") + unary_op_name(op) +
                       "' (its alpha is not passed); hint: differentiate scale/add_scalar in ops with "
                       "unary(scale, ...) on dy");
}

void CudaBackend::binary(BinaryOp op, const Tensor& c, const Tensor& a, const Tensor& b) {
    checks::require_same_shape("binary", "c", c, "a", a);
    checks::require_same_shape("binary", "c", c, "b", b);
    checks::require_dtype("binary", "c", c, DType::f32);
    checks::require_dtype("binary", "a", a, DType::f32);
    checks::require_dtype("binary", "b", b, DType::f32);
    const char* k = binary_op_name(op);
    switch (op) {
        case BinaryOp::add: map2(*this, k, c, a, b, BinaryFn<BinaryOp::add>{}); return;
        case BinaryOp::sub: map2(*this, k, c, a, b, BinaryFn<BinaryOp::sub>{}); return;
        case BinaryOp::mul: map2(*this, k, c, a, b, BinaryFn<BinaryOp::mul>{}); return;
        case BinaryOp::div: map2(*this, k, c, a, b, BinaryFn<BinaryOp::div>{}); return;
    }
}

void CudaBackend::reduce_sum(const Tensor& y, const Tensor& x) {
    checks::require_reduce_sum(y, x);
    Shape kept_shape, kept_strides, summed_shape, summed_strides;
    for (int64_t d = 0; d < x.dim(); ++d) {
        const bool summed = y.size(d) == 1 && x.size(d) != 1;
        (summed ? summed_shape : kept_shape).push_back(x.size(d));
        (summed ? summed_strides : kept_strides).push_back(x.strides()[d]);
    }
    const Strided<1> kept = make_strided<1>("reduce_sum", kept_shape, {&kept_strides});
    const Strided<1> summed = make_strided<1>("reduce_sum", summed_shape, {&summed_strides});
    sum_reduce(*this, y.data<float>(), x.data<float>(), kept, summed, /*square=*/false, /*accumulate=*/false);
}

void CudaBackend::sum_squares(const Tensor& out, const Tensor& x, bool accumulate) {
    checks::require_sum_squares(out, x);
    const Shape none;
    const Shape flat_shape{x.numel()}, flat_strides{1};
    const Strided<1> single = make_strided<1>("sum_squares", none, {&none});
    const Strided<1> summed = x.is_contiguous() ? make_strided<1>("sum_squares", flat_shape, {&flat_strides})
                                                : make_strided<1>("sum_squares", x.shape(), {&x.strides()});
    sum_reduce(*this, out.data<float>(), x.data<float>(), single, summed, /*square=*/true, accumulate);
}
}  // namespace lab::cuda
