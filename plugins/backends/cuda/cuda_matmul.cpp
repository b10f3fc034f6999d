// CudaBackend::matmul and matmul_gelu_tanh on cuBLASLt. plan_matmul (cuda_matmul_plan.h) maps the strided row-major
// views onto cuBLASLt's column-major layouts; the descriptors (operation, three layouts) and the
// algorithm the heuristic picks are built once per configuration and cached, so a training step's
// matmuls after the first step cost a hash look-up and one cublasLtMatmul each.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_matmul_plan.h"
#include "lab/error.h"
#include "lab/kernel_checks.h"

namespace lab::cuda {

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLAS's recommendation for Hopper

// Largest power of two (up to 256) that divides the address: the alignment the heuristic may
// assume for an operand (its default, 256, would pick kernels that fault on a view's offset).
uint32_t alignment_of(const void* ptr) {
    const auto address = reinterpret_cast<uintptr_t>(ptr);
    uint32_t alignment = 256;
    while (alignment > 1 && address % alignment != 0) alignment /= 2;
    return alignment;
}

cudaDataType_t cuda_type(DType dtype) {
    return dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
}

// Everything a cached entry depends on.
struct Key {
    std::vector<int64_t> fields;
    bool operator==(const Key& other) const { return fields == other.fields; }
};
struct KeyHash {
    size_t operator()(const Key& key) const {
        size_t h = 1469598103934665603ull;
        for (int64_t f : key.fields) h = (h ^ static_cast<size_t>(f)) * 1099511628211ull;
        return h;
    }
};

}  // namespace

// The cuBLASLt handle, the workspace and the cached descriptors.
class MatmulCache {
public:
    struct Entry {
        cublasLtMatmulDesc_t operation = nullptr;
        cublasLtMatrixLayout_t A = nullptr, B = nullptr, C = nullptr;
        cublasLtMatmulAlgo_t algo{};
        // Destructors cannot report a failure, and there is nothing to do about one at teardown.
        ~Entry() {
            if (C) (void)cublasLtMatrixLayoutDestroy(C);
            if (B) (void)cublasLtMatrixLayoutDestroy(B);
            if (A) (void)cublasLtMatrixLayoutDestroy(A);
            if (operation) (void)cublasLtMatmulDescDestroy(operation);
        }
    };

    explicit MatmulCache(CudaBackend& backend)
        : workspace(Tensor::empty(backend, {int64_t(kWorkspaceBytes)}, DType::u8)) {
        LAB_CUDA_CHECK(cublasLtCreate(&handle));
    }
    ~MatmulCache() {
        entries.clear();
        if (handle) (void)cublasLtDestroy(handle);
    }

    cublasLtHandle_t handle = nullptr;
    Tensor workspace;
    std::unordered_map<Key, std::unique_ptr<Entry>, KeyHash> entries;
};

void MatmulCacheDeleter::operator()(MatmulCache* cache) const {
    delete cache;
}

namespace {

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t batch_stride) {
    cublasLtMatrixLayout_t layout = nullptr;
    LAB_CUDA_CHECK(
        cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
    if (batch > 1) {
        const int32_t count = static_cast<int32_t>(batch);
        LAB_CUDA_CHECK(
            cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
        LAB_CUDA_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                        &batch_stride, sizeof batch_stride));
    }
    return layout;
}

}  // namespace

void CudaBackend::matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                         bool accumulate) {
    Tensor a16, b16;
    if (round_matmul_operands(a, b, &a16, &b16))
        multiply(c, a16, b16, bias, alpha, accumulate, nullptr);
    else
        multiply(c, a, b, bias, alpha, accumulate, nullptr);
}

void CudaBackend::matmul_gelu_tanh(const Tensor& c, const Tensor& pre, const Tensor& a, const Tensor& b,
                                   const Tensor* bias) {
    // cuBLASLt's GELU epilogue (the tanh form, as UnaryOp::gelu_tanh) writes c and, as its aux
    // matrix, pre. It takes a plain 2-D f32 output whose width is a multiple of 8 (the aux
    // matrix's leading dimension must be); anything else runs matmul, then the GELU kernel.
    checks::require_f32_contiguous("matmul_gelu_tanh", "pre", pre);
    checks::require_same_shape("matmul_gelu_tanh", "c", c, "pre", pre);
    if (c.dim() != 2 || c.dtype() != DType::f32 || c.size(1) % 8 != 0 || c.numel() == 0) {
        Backend::matmul_gelu_tanh(c, pre, a, b, bias);
        return;
    }
    Tensor a16, b16;
    if (round_matmul_operands(a, b, &a16, &b16))
        multiply(c, a16, b16, bias, 1.0f, false, &pre);
    else
        multiply(c, a, b, bias, 1.0f, false, &pre);
}

void CudaBackend::multiply(const Tensor& c, const Tensor& a_in, const Tensor& b_in, const Tensor* bias, float alpha,
                           bool accumulate, const Tensor* gelu_pre) {
    checks::require_matmul(c, a_in, b_in, bias);
    if (c.numel() == 0) return;
    // cuBLASLt's bias epilogue reads N contiguous f32 values; the contract also allows bf16 or a
    // strided view.
    Tensor bias32;
    if (bias != nullptr && (bias->dtype() != DType::f32 || !bias->is_contiguous())) {
        bias32 = bias->to(DType::f32);
        bias = &bias32;
    }
    // Mixed operand types multiply as f32 (a bf16 value is exactly an f32 one), as on the host.
    Tensor a = a_in, b = b_in;
    if (a.dtype() != b.dtype()) {
        if (a.dtype() == DType::bf16)
            a = a.to(DType::f32);
        else
            b = b.to(DType::f32);
    }
    // A bf16 output is computed in f32 and rounded once at the end.
    if (c.dtype() == DType::bf16) {
        Tensor c32 = accumulate ? c.to(DType::f32) : Tensor::empty(*this, c.shape(), DType::f32);
        multiply(c32, a, b, bias, alpha, accumulate, nullptr);
        copy(c, c32);
        return;
    }
    const int64_t K = a.size(-1);
    if (K == 0) {  // an empty sum: c = bias (or 0), plus c when accumulating
        if (!accumulate) fill(c, 0.0);
        if (bias != nullptr) {
            const Shape shape = c.shape();
            Shape strides(shape.size(), 0);
            strides.back() = 1;
            binary(BinaryOp::add, c, c, bias->view(shape, strides, bias->offset()));
        }
        return;
    }

    MatmulPlan plan = plan_matmul(c.shape(), a.shape(), a.strides(), b.shape(), b.strides());
    if (plan.copy_a || plan.copy_b) {
        if (plan.copy_a) a = a.contiguous_copy();
        if (plan.copy_b) b = b.contiguous_copy();
        plan = plan_matmul(c.shape(), a.shape(), a.strides(), b.shape(), b.strides());
        if (plan.copy_a || plan.copy_b)
            throw BackendError("backend cuda: matmul: no cuBLASLt layout for contiguous copies of a " +
                               shape_str(a.shape()) + " and b " + shape_str(b.shape()) +
                               " (a bug in plan_matmul); hint: report it with these shapes");
    }

    if (!matmul_) matmul_.reset(new MatmulCache(*this));
    MatmulCache& cache = *matmul_;
    const DType in = a.dtype();
    const bool tf32 = settings_.tf32 && in == DType::f32;
    const size_t element = dtype_size(in);
    const char* a_data = static_cast<const char*>(a.raw());
    const char* b_data = static_cast<const char*>(b.raw());
    char* c_data = static_cast<char*>(c.raw());
    // Every call of the outer loop shares the alignment of the first, unless an offset breaks it.
    uint32_t align_a = alignment_of(b_data), align_b = alignment_of(a_data), align_c = alignment_of(c_data);
    for (int64_t call = 1; call < plan.calls; ++call) {
        align_a = std::min(align_a, alignment_of(b_data + call * plan.b_call_offset * element));
        align_b = std::min(align_b, alignment_of(a_data + call * plan.a_call_offset * element));
        align_c = std::min(align_c, alignment_of(c_data + call * plan.c_call_offset * sizeof(float)));
    }

    const Key key{{plan.m,
                   plan.n,
                   plan.k,
                   plan.A.transpose,
                   plan.A.rows,
                   plan.A.cols,
                   plan.A.ld,
                   plan.A.batch_stride,
                   plan.B.transpose,
                   plan.B.rows,
                   plan.B.cols,
                   plan.B.ld,
                   plan.B.batch_stride,
                   plan.c_batch_stride,
                   plan.batch,
                   static_cast<int64_t>(in),
                   tf32,
                   bias != nullptr,
                   gelu_pre != nullptr,
                   align_a,
                   align_b,
                   align_c}};
    auto found = cache.entries.find(key);
    MatmulCache::Entry* entry = nullptr;
    if (found != cache.entries.end()) {
        entry = found->second.get();
        count_plan_reused();
    } else {
        auto made = std::make_unique<MatmulCache::Entry>();
        const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
        LAB_CUDA_CHECK(cublasLtMatmulDescCreate(&made->operation, compute, CUDA_R_32F));
        const cublasOperation_t op_a = plan.A.transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
        const cublasOperation_t op_b = plan.B.transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
        LAB_CUDA_CHECK(
            cublasLtMatmulDescSetAttribute(made->operation, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
        LAB_CUDA_CHECK(
            cublasLtMatmulDescSetAttribute(made->operation, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
        // D = alpha * A B + beta * C (+ bias, indexed by D's rows: our columns, N); with gelu_pre,
        // D = gelu_tanh(A B + bias) and the aux matrix (D's shape, f32) = A B + bias.
        const cublasLtEpilogue_t epilogue =
            gelu_pre != nullptr ? (bias != nullptr ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
                                : (bias != nullptr ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
        LAB_CUDA_CHECK(cublasLtMatmulDescSetAttribute(made->operation, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                      sizeof epilogue));
        if (gelu_pre != nullptr) {
            const int64_t aux_ld = plan.m;
            const int32_t aux_type = CUDA_R_32F;
            LAB_CUDA_CHECK(cublasLtMatmulDescSetAttribute(made->operation, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                          &aux_ld, sizeof aux_ld));
            LAB_CUDA_CHECK(cublasLtMatmulDescSetAttribute(made->operation, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE,
                                                          &aux_type, sizeof aux_type));
        }
        if (bias != nullptr) {
            const cudaDataType_t bias_type = CUDA_R_32F;
            const int64_t bias_batch_stride = 0;
            LAB_CUDA_CHECK(cublasLtMatmulDescSetAttribute(made->operation, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                          &bias_type, sizeof bias_type));
            LAB_CUDA_CHECK(cublasLtMatmulDescSetAttribute(made->operation, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                          &bias_batch_stride, sizeof bias_batch_stride));
        }
        made->A = make_layout(cuda_type(in), plan.A.rows, plan.A.cols, plan.A.ld, plan.batch, plan.A.batch_stride);
        made->B = make_layout(cuda_type(in), plan.B.rows, plan.B.cols, plan.B.ld, plan.batch, plan.B.batch_stride);
        made->C = make_layout(CUDA_R_32F, plan.m, plan.n, plan.m, plan.batch, plan.c_batch_stride);

        cublasLtMatmulPreference_t raw_preference = nullptr;
        LAB_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&raw_preference));
        // Destroyed on every way out, a throwing check included.
        const std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, decltype(&cublasLtMatmulPreferenceDestroy)> owner(
            raw_preference, &cublasLtMatmulPreferenceDestroy);
        cublasLtMatmulPreference_t preference = owner.get();
        const uint64_t workspace_bytes = kWorkspaceBytes;
        LAB_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                            &workspace_bytes, sizeof workspace_bytes));
        LAB_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                            &align_a, sizeof align_a));
        LAB_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                            &align_b, sizeof align_b));
        LAB_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                            &align_c, sizeof align_c));
        LAB_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                            &align_c, sizeof align_c));
        cublasLtMatmulHeuristicResult_t result{};
        int returned = 0;
        const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
            cache.handle, made->operation, made->A, made->B, made->C, made->C, preference, 1, &result, &returned);
        LAB_CUDA_CHECK(status);
        if (returned == 0)
            throw BackendError("backend cuda: matmul: cuBLASLt has no algorithm for c " + shape_str(c.shape()) +
                               " = a " + shape_str(a.shape()) + " (strides " + shape_str(a.strides()) + ") @ b " +
                               shape_str(b.shape()) + " (strides " + shape_str(b.strides()) + "), " + dtype_name(in) +
                               (bias ? " with bias" : "") + "; hint: try contiguous operands or backend.tf32 = false");
        made->algo = result.algo;
        entry = made.get();
        cache.entries.emplace(key, std::move(made));
        count_plan_built();
    }

    if (bias != nullptr) {
        const void* bias_pointer = bias->raw();
        LAB_CUDA_CHECK(cublasLtMatmulDescSetAttribute(entry->operation, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &bias_pointer, sizeof bias_pointer));
    }
    if (gelu_pre != nullptr) {
        void* aux_pointer = gelu_pre->raw();
        LAB_CUDA_CHECK(cublasLtMatmulDescSetAttribute(entry->operation, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                      &aux_pointer, sizeof aux_pointer));
    }
    const float beta = accumulate ? 1.0f : 0.0f;
    for (int64_t call = 0; call < plan.calls; ++call) {
        const void* A = b_data + call * plan.b_call_offset * element;
        const void* B = a_data + call * plan.a_call_offset * element;
        void* C = c_data + call * plan.c_call_offset * sizeof(float);
        LAB_CUDA_CHECK(cublasLtMatmul(cache.handle, entry->operation, &alpha, A, entry->A, B, entry->B, &beta, C,
                                      entry->C, C, entry->C, &entry->algo, cache.workspace.raw(), kWorkspaceBytes,
                                      stream_));
    }
}

}  // namespace lab::cuda
