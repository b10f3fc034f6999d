#include "cuda_matmul_plan.h"

#include <algorithm>

namespace lab::cuda {

namespace {

// The layout cuBLAS needs for X^T, X a rows x cols row-major view with strides (sr, sc), or
// false when there is none (the operand needs a copy). Strides of size-1 dims do not matter.
bool layout_of_transpose(int64_t rows, int64_t cols, int64_t sr, int64_t sc, OperandLayout* out) {
    // X^T as a plain column-major cols x rows matrix: element (u, v) at u * sc + v * sr.
    if (sc == 1 || cols == 1) {
        const int64_t ld = rows == 1 ? std::max<int64_t>(cols, 1) : sr;
        if (ld >= std::max<int64_t>(cols, 1)) {
            *out = {false, cols, rows, ld, 0};
            return true;
        }
    }
    // X^T = Q^T with Q a column-major rows x cols matrix: element (v, u) at v * sr + u * sc.
    if (sr == 1 || rows == 1) {
        const int64_t ld = cols == 1 ? std::max<int64_t>(rows, 1) : sc;
        if (ld >= std::max<int64_t>(rows, 1)) {
            *out = {true, rows, cols, ld, 0};
            return true;
        }
    }
    return false;
}

// Stride of batch dim d of an operand: 0 where it is broadcast (size 1 against c's size).
int64_t batch_stride(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, size_t d) {
    return shape[d] == 1 ? 0 : strides[d];
}

// True when the operand's two batch dims (sizes d0, d1 of c) step through memory with one stride.
bool batch_dims_merge(int64_t d0, int64_t d1, int64_t s0, int64_t s1) { return d0 == 1 || d1 == 1 || s0 == d1 * s1; }

}  // namespace

MatmulPlan plan_matmul(const std::vector<int64_t>& c_shape, const std::vector<int64_t>& a_shape,
                       const std::vector<int64_t>& a_strides, const std::vector<int64_t>& b_shape,
                       const std::vector<int64_t>& b_strides) {
    const size_t rank = c_shape.size();
    const int64_t M = c_shape[rank - 2], N = c_shape[rank - 1], K = a_shape[rank - 1];
    MatmulPlan plan;
    plan.m = N, plan.n = M, plan.k = K;
    plan.copy_b = !layout_of_transpose(K, N, b_strides[rank - 2], b_strides[rank - 1], &plan.A);
    plan.copy_a = !layout_of_transpose(M, K, a_strides[rank - 2], a_strides[rank - 1], &plan.B);
    if (plan.copy_a || plan.copy_b) return plan;

    const int64_t matrix = M * N;
    if (rank == 3) {
        plan.batch = c_shape[0];
        plan.A.batch_stride = batch_stride(b_shape, b_strides, 0);
        plan.B.batch_stride = batch_stride(a_shape, a_strides, 0);
        plan.c_batch_stride = matrix;
    } else if (rank == 4) {
        const int64_t d0 = c_shape[0], d1 = c_shape[1];
        const int64_t a0 = batch_stride(a_shape, a_strides, 0), a1 = batch_stride(a_shape, a_strides, 1);
        const int64_t b0 = batch_stride(b_shape, b_strides, 0), b1 = batch_stride(b_shape, b_strides, 1);
        if (batch_dims_merge(d0, d1, a0, a1) && batch_dims_merge(d0, d1, b0, b1)) {
            // One strided batch of d0 * d1: the stride of whichever dim is not trivially 1.
            plan.batch = d0 * d1;
            plan.A.batch_stride = d1 == 1 ? b0 : b1;
            plan.B.batch_stride = d1 == 1 ? a0 : a1;
        } else {
            plan.calls = d0, plan.batch = d1;
            plan.A.batch_stride = b1, plan.B.batch_stride = a1;
            plan.a_call_offset = a0, plan.b_call_offset = b0, plan.c_call_offset = d1 * matrix;
        }
        plan.c_batch_stride = matrix;
    }
    return plan;
}

}  // namespace lab::cuda
