// HostBackend: the reference kernels. Plain C++ loops, OpenMP across rows or chunks where the
// work is large enough to pay for the threads, contiguous fast paths, and a generic strided
// walker (up to 8 dims) so that views are always handled correctly. The contract each kernel
// follows is in backend.h. This file holds memory, copies, elementwise kernels, dropout and the
// optimizer updates; matmul is in host_matmul.cpp, the row kernels (softmax, layer norm,
// embedding, cross entropy) in host_rows.cpp, shared helpers in host_kernels.h.
#include "lab/host_backend.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <type_traits>

#include "host_gelu.h"
#include "host_kernels.h"
#include "host_lanes.h"
#include "lab/element.h"
#include "lab/error.h"

namespace lab {

const char* unary_op_name(UnaryOp op) {
    switch (op) {
        case UnaryOp::relu: return "relu";
        case UnaryOp::gelu: return "gelu";
        case UnaryOp::gelu_tanh: return "gelu_tanh";
        case UnaryOp::tanh: return "tanh";
        case UnaryOp::sigmoid: return "sigmoid";
        case UnaryOp::exp: return "exp";
        case UnaryOp::log: return "log";
        case UnaryOp::sqrt: return "sqrt";
        case UnaryOp::neg: return "neg";
        case UnaryOp::square: return "square";
        case UnaryOp::scale: return "scale";
        case UnaryOp::add_scalar: return "add_scalar";
    }
    return "?";
}

const char* binary_op_name(BinaryOp op) {
    switch (op) {
        case BinaryOp::add: return "add";
        case BinaryOp::sub: return "sub";
        case BinaryOp::mul: return "mul";
        case BinaryOp::div: return "div";
    }
    return "?";
}

using namespace host;

namespace {

template <DType D, DType S> void copy_typed(const Tensor& dst, const Tensor& src) {
    using DT = typename Elem<D>::T;
    using ST = typename Elem<S>::T;
    DT* dp = static_cast<DT*>(dst.raw());
    const ST* sp = static_cast<const ST*>(src.raw());
    StridedLoop<2> loop("copy", dst.shape(), {&dst.strides(), &src.strides()});
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        DT* d = dp + off[0];
        const ST* s = sp + off[1];
        if (st[0] == 1 && st[1] == 1) {
            // Rounding runs of a strided f32 tensor too (ops::matmul_input merging attention heads).
            // Vectorised (host_lanes.h): the rounding feeds every bf16 matmul, and its scalar form
            // had cost a third of a bf16 training step.
            if constexpr (D == DType::bf16 && S == DType::f32)
                round_run_to_bf16(d, s, n);
            else
                for (int64_t i = 0; i < n; ++i) d[i] = convert<D, S>(s[i]);
        } else {
            for (int64_t i = 0; i < n; ++i) d[i * st[0]] = convert<D, S>(s[i * st[1]]);
        }
    });
}

// dst[i] = f32_to_bf16(src[i]) over n consecutive elements.
void round_to_bf16(uint16_t* __restrict dst, const float* __restrict src, int64_t n) {
    constexpr int64_t kChunk = 4096;
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
    for (int64_t s = 0; s < n; s += kChunk) round_run_to_bf16(dst + s, src + s, std::min(kChunk, n - s));
}

// True when dst and src (of one shape) are dense and lay their elements out alike: equal strides
// on every dim of size > 1 (a size-1 dim's stride addresses nothing).
bool same_dense_layout(const Tensor& dst, const Tensor& src) {
    for (int64_t d = 0; d < dst.dim(); ++d)
        if (dst.size(d) != 1 && dst.strides()[d] != src.strides()[d]) return false;
    return dst.is_dense();
}

// ---- elementwise maps over f32 tensors of one shape, any strides ----
template <class F> void map1(const char* kernel, const Tensor& y, const Tensor& x, F f) {
    float* yp = y.data<float>();
    const float* xp = x.data<float>();
    StridedLoop<2> loop(kernel, y.shape(), {&y.strides(), &x.strides()});
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        float* yo = yp + off[0];
        const float* xo = xp + off[1];
        if (st[0] == 1 && st[1] == 1) {
            for (int64_t i = 0; i < n; ++i) yo[i] = f(xo[i]);
        } else {
            for (int64_t i = 0; i < n; ++i) yo[i * st[0]] = f(xo[i * st[1]]);
        }
    });
}

template <class F> void map2(const char* kernel, const Tensor& c, const Tensor& a, const Tensor& b, F f) {
    float* cp = c.data<float>();
    const float* ap = a.data<float>();
    const float* bp = b.data<float>();
    StridedLoop<3> loop(kernel, c.shape(), {&c.strides(), &a.strides(), &b.strides()});
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        float* co = cp + off[0];
        const float* ao = ap + off[1];
        const float* bo = bp + off[2];
        if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
            for (int64_t i = 0; i < n; ++i) co[i] = f(ao[i], bo[i]);
        } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {  // b broadcast along the run
            const float bv = *bo;
            for (int64_t i = 0; i < n; ++i) co[i] = f(ao[i], bv);
        } else {
            for (int64_t i = 0; i < n; ++i) co[i * st[0]] = f(ao[i * st[1]], bo[i * st[2]]);
        }
    });
}

template <class F>
void map3(const char* kernel, const Tensor& d, const Tensor& a, const Tensor& b, const Tensor& c, F f) {
    float* dp = d.data<float>();
    const float* ap = a.data<float>();
    const float* bp = b.data<float>();
    const float* cp = c.data<float>();
    StridedLoop<4> loop(kernel, d.shape(), {&d.strides(), &a.strides(), &b.strides(), &c.strides()});
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        float* dd = dp + off[0];
        const float* ao = ap + off[1];
        const float* bo = bp + off[2];
        const float* co = cp + off[3];
        if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {
            for (int64_t i = 0; i < n; ++i) dd[i] = f(ao[i], bo[i], co[i]);
        } else {
            for (int64_t i = 0; i < n; ++i) dd[i * st[0]] = f(ao[i * st[1]], bo[i * st[2]], co[i * st[3]]);
        }
    });
}

// A run kernel, run(out, in..., n) over n consecutive elements, mapped over tensors of one shape
// with any strides: unit-stride runs go to it directly, strided ones through gathered blocks. Out
// is float, or uint16_t for a bf16 y. For the vectorised kernels (host_gelu.h), whose results must
// not depend on the layout.
template <class Out, class Run> void map_runs(const char* kernel, const Tensor& y, const Tensor& x, Run run) {
    Out* yp = static_cast<Out*>(y.raw());
    const float* xp = x.data<float>();
    StridedLoop<2> loop(kernel, y.shape(), {&y.strides(), &x.strides()});
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        Out* yo = yp + off[0];
        const float* xo = xp + off[1];
        if (st[0] == 1 && st[1] == 1) return run(yo, xo, n);
        constexpr int64_t kBlock = 256;
        float xb[kBlock];
        Out yb[kBlock];
        for (int64_t s = 0; s < n; s += kBlock) {
            const int64_t m = std::min(kBlock, n - s);
            for (int64_t i = 0; i < m; ++i) xb[i] = xo[(s + i) * st[1]];
            run(yb, xb, m);
            for (int64_t i = 0; i < m; ++i) yo[(s + i) * st[0]] = yb[i];
        }
    });
}

template <class Out, class Run>
void map_runs(const char* kernel, const Tensor& y, const Tensor& a, const Tensor& b, Run run) {
    Out* yp = static_cast<Out*>(y.raw());
    const float* ap = a.data<float>();
    const float* bp = b.data<float>();
    StridedLoop<3> loop(kernel, y.shape(), {&y.strides(), &a.strides(), &b.strides()});
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        Out* yo = yp + off[0];
        const float* ao = ap + off[1];
        const float* bo = bp + off[2];
        if (st[0] == 1 && st[1] == 1 && st[2] == 1) return run(yo, ao, bo, n);
        constexpr int64_t kBlock = 256;
        float ab[kBlock], bb[kBlock];
        Out yb[kBlock];
        for (int64_t s = 0; s < n; s += kBlock) {
            const int64_t m = std::min(kBlock, n - s);
            for (int64_t i = 0; i < m; ++i) {
                ab[i] = ao[(s + i) * st[1]];
                bb[i] = bo[(s + i) * st[2]];
            }
            run(yb, ab, bb, m);
            for (int64_t i = 0; i < m; ++i) yo[(s + i) * st[0]] = yb[i];
        }
    });
}

constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluTanhCoeff = 0.044715f;

std::string cpu_model_name() {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                const auto start = line.find_first_not_of(" \t", colon + 1);
                if (start != std::string::npos) return line.substr(start);
            }
        }
    }
    return "unknown CPU";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// memory

HostBackend::HostBackend()
    : allocator_(std::make_unique<CachingAllocator>(
          // round_size() makes every request a multiple of 64, as aligned_alloc requires.
          [](size_t bytes) { return std::aligned_alloc(64, CachingAllocator::round_size(bytes)); },
          [](void* ptr) { std::free(ptr); })) {}

HostBackend::~HostBackend() = default;

std::string HostBackend::device_info() const {
    return "cpu: " + cpu_model_name() + ", " + std::to_string(omp_get_max_threads()) +
           " OpenMP threads";
}

void HostBackend::reset_peak_memory() { allocator_->reset_peak(); }

BackendStats HostBackend::stats() const {
    BackendStats s;
    s.memory = allocator_->stats();
    s.primitives_created = primitives_created_;
    s.primitive_cache_hits = primitive_cache_hits_;
    return s;
}

std::shared_ptr<Storage> HostBackend::alloc(size_t bytes) {
    size_t block_bytes = 0;
    void* ptr = allocator_->alloc(bytes, &block_bytes);
    CachingAllocator* cache = allocator_.get();
    return std::make_shared<Storage>(ptr, block_bytes, this,
                                     [cache](void* p, size_t b) { cache->release(p, b); });
}

void HostBackend::copy_from_host(const Tensor& dst, const void* src) {
    require_contiguous("copy_from_host", "dst", dst);
    const size_t bytes = static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype());
    if (bytes > 0) std::memcpy(dst.raw(), src, bytes);
}

void HostBackend::copy_to_host(void* dst, const Tensor& src) {
    require_contiguous("copy_to_host", "src", src);
    const size_t bytes = static_cast<size_t>(src.numel()) * dtype_size(src.dtype());
    if (bytes > 0) std::memcpy(dst, src.raw(), bytes);
}

void HostBackend::copy(const Tensor& dst, const Tensor& src) {
    require_same_shape("copy", "dst", dst, "src", src);
    if (same_dense_layout(dst, src)) {
        // Equal dense layouts (contiguous ones, or a conversion made by Tensor::to_like): one pass
        // over consecutive memory, whatever the order of the dims.
        const int64_t n = dst.numel();
        if (dst.dtype() == src.dtype()) {
            const int64_t bytes = n * static_cast<int64_t>(dtype_size(dst.dtype()));
            char* d = static_cast<char*>(dst.raw());
            const char* s = static_cast<const char*>(src.raw());
            constexpr int64_t kBlock = 1 << 20;
            const int64_t blocks = (bytes + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (blocks > 1)
            for (int64_t blk = 0; blk < blocks; ++blk) {
                std::memcpy(d + blk * kBlock, s + blk * kBlock, std::min(kBlock, bytes - blk * kBlock));
            }
            return;
        }
        if (dst.dtype() == DType::bf16 && src.dtype() == DType::f32) {
            round_to_bf16(static_cast<uint16_t*>(dst.raw()), src.data<float>(), n);
            return;
        }
        Tensor flat_dst = dst.view({n}, {1}, dst.offset()), flat_src = src.view({n}, {1}, src.offset());
        dispatch_dtype(dst.dtype(), [&](auto d) {
            dispatch_dtype(src.dtype(), [&](auto s) {
                copy_typed<decltype(d)::value, decltype(s)::value>(flat_dst, flat_src);
            });
        });
        return;
    }
    dispatch_dtype(dst.dtype(), [&](auto d) {
        dispatch_dtype(src.dtype(), [&](auto s) { copy_typed<decltype(d)::value, decltype(s)::value>(dst, src); });
    });
}

void HostBackend::fill(const Tensor& dst, double value) {
    dispatch_dtype(dst.dtype(), [&](auto d) {
        constexpr DType D = decltype(d)::value;
        using T = typename Elem<D>::T;
        const T v = fill_value<D>(value);
        T* p = static_cast<T*>(dst.raw());
        StridedLoop<1> loop("fill", dst.shape(), {&dst.strides()});
        loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
            for (int64_t i = 0; i < n; ++i) p[off[0] + i * st[0]] = v;
        });
    });
}

// ---------------------------------------------------------------------------------------------
// elementwise

void HostBackend::unary(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) {
    require_same_shape("unary", "y", y, "x", x);
    require_dtype("unary", "y", y, DType::f32);
    require_dtype("unary", "x", x, DType::f32);
    const char* k = unary_op_name(op);
    switch (op) {
        case UnaryOp::relu: map1(k, y, x, [](float v) { return v > 0.0f ? v : 0.0f; }); return;
        case UnaryOp::gelu: map_runs<float>(k, y, x, [](float* o, const float* i, int64_t n) { gelu_run(o, i, n); }); return;
        case UnaryOp::gelu_tanh:
            map1(k, y, x, [](float v) {
                return 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + kGeluTanhCoeff * v * v * v)));
            });
            return;
        case UnaryOp::tanh: map1(k, y, x, [](float v) { return std::tanh(v); }); return;
        case UnaryOp::sigmoid: map1(k, y, x, [](float v) { return 1.0f / (1.0f + std::exp(-v)); }); return;
        case UnaryOp::exp: map1(k, y, x, [](float v) { return std::exp(v); }); return;
        case UnaryOp::log: map1(k, y, x, [](float v) { return std::log(v); }); return;
        case UnaryOp::sqrt: map1(k, y, x, [](float v) { return std::sqrt(v); }); return;
        case UnaryOp::neg: map1(k, y, x, [](float v) { return -v; }); return;
        case UnaryOp::square: map1(k, y, x, [](float v) { return v * v; }); return;
        case UnaryOp::scale: map1(k, y, x, [alpha](float v) { return alpha * v; }); return;
        case UnaryOp::add_scalar: map1(k, y, x, [alpha](float v) { return v + alpha; }); return;
    }
}

void HostBackend::unary_bf16(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) {
    if (op != UnaryOp::gelu) return Backend::unary_bf16(op, y, x, alpha);
    require_same_shape("unary_bf16", "y", y, "x", x);
    require_dtype("unary_bf16", "y", y, DType::bf16);
    require_dtype("unary_bf16", "x", x, DType::f32);
    map_runs<uint16_t>("unary_bf16", y, x, [](uint16_t* o, const float* i, int64_t n) { gelu_run(o, i, n); });
}

void HostBackend::unary_backward(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x,
                                 const Tensor& y) {
    require_same_shape("unary_backward", "dx", dx, "dy", dy);
    require_same_shape("unary_backward", "dx", dx, "x", x);
    require_dtype("unary_backward", "dx", dx, DType::f32);
    require_dtype("unary_backward", "dy", dy, DType::f32);
    require_dtype("unary_backward", "x", x, DType::f32);
    // Derivatives that are cheaper from y read it; when the caller kept no y it is recomputed.
    const bool needs_y = op == UnaryOp::tanh || op == UnaryOp::sigmoid || op == UnaryOp::exp || op == UnaryOp::sqrt;
    Tensor y_used = y;
    if (needs_y && !y.defined()) {
        y_used = Tensor::empty(*this, x.shape(), DType::f32);
        unary(op, y_used, x, 0.0f);
    }
    if (needs_y) {
        require_same_shape("unary_backward", "dx", dx, "y", y_used);
        require_dtype("unary_backward", "y", y_used, DType::f32);
    }
    const char* k = "unary_backward";
    switch (op) {
        case UnaryOp::relu: map2(k, dx, dy, x, [](float g, float v) { return v > 0.0f ? g : 0.0f; }); return;
        case UnaryOp::gelu:
            map_runs<float>(k, dx, dy, x, [](float* o, const float* g, const float* v, int64_t n) {
                gelu_backward_run(o, g, v, n);
            });
            return;
        case UnaryOp::gelu_tanh:
            map2(k, dx, dy, x, [](float g, float v) {
                const float t = std::tanh(kSqrt2OverPi * (v + kGeluTanhCoeff * v * v * v));
                const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluTanhCoeff * v * v);
                return g * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
            });
            return;
        case UnaryOp::tanh: map2(k, dx, dy, y_used, [](float g, float t) { return g * (1.0f - t * t); }); return;
        case UnaryOp::sigmoid:
            map2(k, dx, dy, y_used, [](float g, float s) { return g * s * (1.0f - s); });
            return;
        case UnaryOp::exp: map2(k, dx, dy, y_used, [](float g, float e) { return g * e; }); return;
        case UnaryOp::log: map2(k, dx, dy, x, [](float g, float v) { return g / v; }); return;
        case UnaryOp::sqrt: map2(k, dx, dy, y_used, [](float g, float r) { return g * 0.5f / r; }); return;
        case UnaryOp::square: map2(k, dx, dy, x, [](float g, float v) { return g * 2.0f * v; }); return;
        case UnaryOp::neg: map1(k, dx, dy, [](float g) { return -g; }); return;
        case UnaryOp::scale:
        case UnaryOp::add_scalar:
            break;
    }
    throw BackendError(std::string("unary_backward: no derivative kernel for '") + unary_op_name(op) +
                       "' (its alpha is not passed); hint: differentiate scale/add_scalar in ops with "
                       "unary(scale, ...) on dy");
}

void HostBackend::unary_backward_bf16(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x,
                                      const Tensor& y) {
    if (op != UnaryOp::gelu) return Backend::unary_backward_bf16(op, dx, dy, x, y);
    require_same_shape("unary_backward_bf16", "dx", dx, "dy", dy);
    require_same_shape("unary_backward_bf16", "dx", dx, "x", x);
    require_dtype("unary_backward_bf16", "dx", dx, DType::bf16);
    require_dtype("unary_backward_bf16", "dy", dy, DType::f32);
    require_dtype("unary_backward_bf16", "x", x, DType::f32);
    map_runs<uint16_t>("unary_backward_bf16", dx, dy, x,
                       [](uint16_t* o, const float* g, const float* v, int64_t n) { gelu_backward_run(o, g, v, n); });
}

void HostBackend::binary(BinaryOp op, const Tensor& c, const Tensor& a, const Tensor& b) {
    require_same_shape("binary", "c", c, "a", a);
    require_same_shape("binary", "c", c, "b", b);
    require_dtype("binary", "c", c, DType::f32);
    require_dtype("binary", "a", a, DType::f32);
    require_dtype("binary", "b", b, DType::f32);
    const char* k = binary_op_name(op);
    switch (op) {
        case BinaryOp::add: map2(k, c, a, b, [](float u, float v) { return u + v; }); return;
        case BinaryOp::sub: map2(k, c, a, b, [](float u, float v) { return u - v; }); return;
        case BinaryOp::mul: map2(k, c, a, b, [](float u, float v) { return u * v; }); return;
        case BinaryOp::div: map2(k, c, a, b, [](float u, float v) { return u / v; }); return;
    }
}

void HostBackend::reduce_sum(const Tensor& y, const Tensor& x) {
    require_reduce_sum(y, x);
    Shape kept_shape, kept_strides, reduced_shape, reduced_strides;
    int64_t last_reduced = -1;
    for (int64_t d = 0; d < x.dim(); ++d) {
        if (y.size(d) == 1 && x.size(d) != 1) {
            reduced_shape.push_back(x.size(d));
            reduced_strides.push_back(x.strides()[d]);
            last_reduced = d;
        } else {
            kept_shape.push_back(x.size(d));
            kept_strides.push_back(x.strides()[d]);
        }
    }
    float* yp = y.data<float>();
    const float* xp = x.data<float>();
    const int64_t outputs = y.numel();
    const int64_t reduced = shape_numel(reduced_shape);
    // A contiguous x whose summed dims are one block, x = [outer, R, inner] -> y = [outer, 1, inner]:
    // bias gradients ([B, T, C] -> [1, 1, C], outer = 1) and broadcast-view gradients such as
    // grouped-query attention's repeated heads ([B, Hkv, G, S * D] -> [B, Hkv, 1, S * D]). Rows are
    // streamed, each thread summing its own block of columns.
    int64_t first_reduced = -1;
    for (int64_t d = 0; d < x.dim() && first_reduced < 0; ++d)
        if (y.size(d) == 1 && x.size(d) != 1) first_reduced = d;
    bool one_block = x.is_contiguous() && first_reduced >= 0;
    for (int64_t d = first_reduced; one_block && d <= last_reduced; ++d) one_block = y.size(d) == 1;
    if (one_block) {
        int64_t outer = 1, inner_size = 1;
        for (int64_t d = 0; d < first_reduced; ++d) outer *= x.size(d);
        for (int64_t d = last_reduced + 1; d < x.dim(); ++d) inner_size *= x.size(d);
        constexpr int64_t kCols = 256;
        const int64_t col_blocks = (inner_size + kCols - 1) / kCols, tasks = outer * col_blocks;
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelElems)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t o = task / col_blocks, c0 = (task % col_blocks) * kCols;
            const int64_t width = std::min(kCols, inner_size - c0);
            double acc[kCols] = {};
            for (int64_t r = 0; r < reduced; ++r) {
                const float* row = xp + (o * reduced + r) * inner_size + c0;
                for (int64_t j = 0; j < width; ++j) acc[j] += row[j];
            }
            for (int64_t j = 0; j < width; ++j) yp[o * inner_size + c0 + j] = static_cast<float>(acc[j]);
        }
        return;
    }
    StridedLoop<1> inner("reduce_sum", reduced_shape, {&reduced_strides});
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelElems)
    for (int64_t o = 0; o < outputs; ++o) {
        int64_t base = 0, rest = o;
        for (int64_t d = static_cast<int64_t>(kept_shape.size()) - 1; d >= 0; --d) {
            base += (rest % kept_shape[d]) * kept_strides[d];
            rest /= kept_shape[d];
        }
        double acc = 0.0;
        inner.run([&](const int64_t* off, int64_t n, const int64_t* st) {
            const float* p = xp + base + off[0];
            for (int64_t i = 0; i < n; ++i) acc += p[i * st[0]];
        }, /*parallel=*/false);
        yp[o] = static_cast<float>(acc);
    }
}

void HostBackend::sum_squares(const Tensor& out, const Tensor& x, bool accumulate) {
    require_sum_squares(out, x);
    double total = 0.0;
    const float* xp = x.data<float>();
    if (x.is_contiguous()) {
        const int64_t n = x.numel();
#pragma omp parallel for reduction(+ : total) schedule(static) if (n >= kParallelElems)
        for (int64_t i = 0; i < n; ++i) total += static_cast<double>(xp[i]) * xp[i];
    } else {
        StridedLoop<1> loop("sum_squares", x.shape(), {&x.strides()});
        loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
            for (int64_t i = 0; i < n; ++i) {
                const double value = xp[off[0] + i * st[0]];
                total += value * value;
            }
        }, /*parallel=*/false);
    }
    float* o = out.data<float>();
    *o = static_cast<float>(accumulate ? *o + total : total);
}

// ---------------------------------------------------------------------------------------------
// masks, dropout, optimizer updates

void HostBackend::masked_fill(const Tensor& y, const Tensor& x, const Tensor& mask, float value) {
    require_same_shape("masked_fill", "y", y, "x", x);
    require_same_shape("masked_fill", "y", y, "mask", mask);
    require_dtype("masked_fill", "y", y, DType::f32);
    require_dtype("masked_fill", "x", x, DType::f32);
    require_dtype("masked_fill", "mask", mask, DType::u8);
    float* yp = y.data<float>();
    const float* xp = x.data<float>();
    const uint8_t* mp = mask.data<uint8_t>();
    StridedLoop<3> loop("masked_fill", y.shape(), {&y.strides(), &x.strides(), &mask.strides()});
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        if (st[0] == 1 && st[1] == 1 && st[2] == 1) {  // the usual case; vectorised
            float* yo = yp + off[0];
            const float* xo = xp + off[1];
            const uint8_t* mo = mp + off[2];
            for (int64_t i = 0; i < n; ++i) yo[i] = mo[i] ? value : xo[i];
            return;
        }
        for (int64_t i = 0; i < n; ++i) {
            yp[off[0] + i * st[0]] = mp[off[2] + i * st[2]] ? value : xp[off[1] + i * st[1]];
        }
    });
}

void HostBackend::dropout(const Tensor& y, const Tensor& keep, const Tensor& x, float p, RngKey key) {
    require_f32_contiguous("dropout", "y", y);
    require_f32_contiguous("dropout", "x", x);
    require_same_shape("dropout", "y", y, "x", x);
    require_same_shape("dropout", "keep", keep, "x", x);
    require_dtype("dropout", "keep", keep, DType::u8);
    require_contiguous("dropout", "keep", keep);
    float* yp = y.data<float>();
    uint8_t* kp = keep.data<uint8_t>();
    const float* xp = x.data<float>();
    const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const int64_t n = x.numel();
    constexpr int64_t kChunk = 4096;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        const int64_t begin = chunk * kChunk, end = std::min(n, begin + kChunk);
        // Element e from its random word: uniform u = word's top 24 bits (philox_uniform), kept when u >= p.
        auto drop = [&](int64_t e, uint32_t word) {
            const bool kept = static_cast<float>(word >> 8) * (1.0f / 16777216.0f) >= p;
            kp[e] = kept ? 1 : 0;
            yp[e] = kept ? xp[e] * scale : 0.0f;
        };
        int64_t i = begin;
        // 32 elements (8 Philox blocks) at a time while the counters are block-aligned (the
        // Generator hands out aligned keys), then one block per 4 elements: the same values as
        // philox_uniform(key, i) either way.
        if ((key.offset & 3) == 0) {
            uint32_t words[4][8];
            for (; i + 32 <= end; i += 32) {
                philox_blocks8(key.seed, key.stream, (key.offset + static_cast<uint64_t>(i)) >> 2, words);
                for (int j = 0; j < 8; ++j)
                    for (int w = 0; w < 4; ++w) drop(i + 4 * j + w, words[w][j]);
            }
        }
        std::array<uint32_t, 4> words{};
        for (const int64_t first = i; i < end; ++i) {
            const uint64_t counter = key.offset + static_cast<uint64_t>(i);
            if (i == first || (counter & 3) == 0) words = philox_block(key.seed, key.stream, counter >> 2);
            drop(i, words[counter & 3]);
        }
    }
}

void HostBackend::dropout_backward(const Tensor& dx, const Tensor& dy, const Tensor& keep, float p) {
    require_f32_contiguous("dropout_backward", "dx", dx);
    require_f32_contiguous("dropout_backward", "dy", dy);
    require_same_shape("dropout_backward", "dx", dx, "dy", dy);
    require_same_shape("dropout_backward", "keep", keep, "dy", dy);
    require_dtype("dropout_backward", "keep", keep, DType::u8);
    require_contiguous("dropout_backward", "keep", keep);
    float* dxp = dx.data<float>();
    const float* dyp = dy.data<float>();
    const uint8_t* kp = keep.data<uint8_t>();
    const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const int64_t n = dx.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
    for (int64_t i = 0; i < n; ++i) dxp[i] = kp[i] ? dyp[i] * scale : 0.0f;
}

}  // namespace lab
