// How a matmul of strided row-major views maps onto one cuBLASLt call (or a few). Pure host logic
// with no CUDA types, so that tests/unit/test_cuda_matmul_plan.cpp checks it on any machine.
//
// cuBLASLt is column-major. A row-major c[M, N] = a[M, K] @ b[K, N] is, read column-major,
// c^T[N, M] = b^T[N, K] @ a^T[K, M]: cuBLAS's A is our b, its B is our a, and m = N, n = M, k = K.
// A row-major view X[i, j] at i * sr + j * sc is, as cuBLAS needs it (X^T, column-major), either
//   - a plain column-major matrix with ld = sr, when sc == 1 (rows of X contiguous), or
//   - the transpose (CUBLAS_OP_T) of a column-major matrix with ld = sc, when sr == 1 (a
//     transposed view, such as k^T in attention scores);
// anything else (both strides > 1, stride-0 rows) needs a contiguous copy first.
// Batch dims (rank 3 and 4) become cuBLASLt's strided batch, with stride 0 for a broadcast operand;
// two batch dims that do not merge into one stride for both operands become an outer loop of calls.
#pragma once
#include <cstdint>
#include <vector>

namespace lab::cuda {

// One operand as stored, in cuBLAS's column-major terms.
struct OperandLayout {
    bool transpose = false;    // CUBLAS_OP_T
    int64_t rows = 0, cols = 0;  // of the stored matrix (before the transpose)
    int64_t ld = 0;            // leading dimension of the stored matrix, in elements
    int64_t batch_stride = 0;  // elements to the next matrix of the batch (0: broadcast)
};

struct MatmulPlan {
    // cuBLAS's problem: D (m x n, column-major, ld m) = op(A) (m x k) @ op(B) (k x n).
    int64_t m = 0, n = 0, k = 0;
    OperandLayout A;  // our b
    OperandLayout B;  // our a
    int64_t c_batch_stride = 0;
    int64_t batch = 1;  // matrices per call
    int64_t calls = 1;  // calls, each `batch` matrices further into the outer batch dim
    int64_t a_call_offset = 0, b_call_offset = 0, c_call_offset = 0;  // elements between calls
    bool copy_a = false, copy_b = false;  // our a / b must be made contiguous and planned again
};

// Shapes are validated already: equal ranks 2 to 4, a [..., M, K], b [..., K, N], c [..., M, N]
// contiguous, each batch dim of a and b equal to c's or 1.
MatmulPlan plan_matmul(const std::vector<int64_t>& c_shape, const std::vector<int64_t>& a_shape,
                       const std::vector<int64_t>& a_strides, const std::vector<int64_t>& b_shape,
                       const std::vector<int64_t>& b_strides);

}  // namespace lab::cuda
