// Argument checks of the Backend kernel contract (lab/backend.h), shared by every backend so that a
// bad call gets the same ShapeError, naming the kernel, the tensor and both shapes, whichever
// backend runs it.
#pragma once
#include <cstdint>
#include <string>

#include "lab/backend.h"
#include "lab/error.h"
#include "lab/tensor.h"

namespace lab::checks {

inline void require_defined(const char* kernel, const char* name, const Tensor& t) {
    if (!t.defined()) {
        throw ShapeError(std::string(kernel) + ": tensor '" + name +
                         "' is undefined; hint: the caller must allocate it");
    }
}

inline void require_same_shape(const char* kernel, const char* name_a, const Tensor& a, const char* name_b,
                               const Tensor& b) {
    require_defined(kernel, name_a, a);
    require_defined(kernel, name_b, b);
    if (a.shape() != b.shape()) {
        throw ShapeError(std::string(kernel) + ": " + name_a + " has shape " + shape_str(a.shape()) + " but " + name_b +
                         " has shape " + shape_str(b.shape()) +
                         "; hint: they must be equal (broadcast with a stride-0 view)");
    }
}

inline void require_dtype(const char* kernel, const char* name, const Tensor& t, DType dtype) {
    require_defined(kernel, name, t);
    if (t.dtype() != dtype) {
        throw ShapeError(std::string(kernel) + ": " + name + " " + shape_str(t.shape()) + " has dtype " +
                         dtype_name(t.dtype()) + ", expected " + dtype_name(dtype) +
                         "; hint: convert it with Tensor::to()");
    }
}

inline void require_contiguous(const char* kernel, const char* name, const Tensor& t) {
    require_defined(kernel, name, t);
    if (!t.is_contiguous()) {
        throw ShapeError(std::string(kernel) + ": " + name + " " + shape_str(t.shape()) +
                         " must be contiguous; hint: pass contiguous_copy() of the view");
    }
}

inline void require_f32_contiguous(const char* kernel, const char* name, const Tensor& t) {
    require_dtype(kernel, name, t, DType::f32);
    require_contiguous(kernel, name, t);
}

inline void require_index_dtype(const char* kernel, const char* name, const Tensor& t) {
    require_contiguous(kernel, name, t);
    if (t.dtype() != DType::i32 && t.dtype() != DType::i64) {
        throw ShapeError(std::string(kernel) + ": " + name + " " + shape_str(t.shape()) + " has dtype " +
                         dtype_name(t.dtype()) + ", expected i32 or i64; hint: build ids with Tensor::from_ints");
    }
}

// Last-dim size and number of rows of a tensor read as [N, C].
inline int64_t row_size(const Tensor& t) { return t.dim() == 0 ? 1 : t.size(-1); }
inline int64_t row_count(const Tensor& t) {
    const int64_t c = row_size(t);
    return c == 0 ? 0 : t.numel() / c;
}

// ---- matmul and the optimizer updates ----
// The ShapeError of a matmul c = a @ b, saying why.
[[noreturn]] void matmul_shape_error(const Tensor& c, const Tensor& a, const Tensor& b, const std::string& why);
// matmul's operands: equal ranks 2 to 4, f32 or bf16, a [..., M, K], b [..., K, N], c [..., M, N]
// contiguous, batch dims of a and b equal to c's or 1; bias (optional) f32 or bf16 with N elements.
void require_matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias);
// adamw.step (optimizer/adamw), per parameter: w, g, m, v f32 contiguous of one shape, step t >= 1.
void require_adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, int64_t t);
// sgd.step (optimizer/sgd), per parameter: w and g f32 contiguous of one shape; buf too when momentum != 0.
void require_sgd_update(const Tensor& w, const Tensor& g, const Tensor& buf, float momentum);
// A strided kernel walks at most max_dims dims.
void require_at_most_dims(const char* kernel, const Shape& shape, int max_dims);

// ---- reductions ----
// reduce_sum: f32 y (contiguous) and x of one rank, y's size 1 in the summed dims.
void require_reduce_sum(const Tensor& y, const Tensor& x);
// sum_squares: f32 out of one element, f32 x.
void require_sum_squares(const Tensor& out, const Tensor& x);

// ---- row kernels (softmax, layer norm, cross entropy) ----
// A per-row statistic (mean, rstd, loss, lse): f32, contiguous, one element per row.
void require_one_per_row(const char* kernel, const char* name, const Tensor& t, int64_t rows);
// An optional per-column parameter (gamma, beta and their gradients): f32, contiguous, [C].
void require_one_per_column(const char* kernel, const char* name, const Tensor* t, int64_t cols);
// Cross entropy's targets: i32 or i64, contiguous, one per row of logits.
void require_targets(const char* kernel, const Tensor& targets, const Tensor& logits, int64_t rows);
// embedding's y (or embedding_backward's dy) [..., C], ids [...] and table (dtable) [V, C]: f32
// contiguous rows and table, i32/i64 contiguous ids, shapes that fit.
void require_embedding(const char* kernel, const char* rows_name, const Tensor& rows, const Tensor& ids,
                       const char* table_name, const Tensor& table);
// The error for an id (embedding) or target (cross entropy) outside [0, limit) at `position`.
ShapeError id_out_of_range(const char* kernel, const char* what, int64_t id, int64_t position, int64_t limit,
                           const Shape& table_shape);

// The sizes of a fused attention call (Backend::attention): q [B, H, T, D], k and v [B, Hkv, S, D].
struct AttentionSizes {
    int64_t B = 0, H = 0, T = 0, D = 0, Hkv = 0, S = 0;
};

// Checks q, k, v and the optional mask, slopes and dropout of AttentionKernelArgs against the
// contract and returns the sizes.
AttentionSizes attention_sizes(const char* kernel, const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionKernelArgs& args);
// An output or gradient of the attention kernels: f32, contiguous, of `shape` (lse, dq, dk, dv).
void require_output(const char* kernel, const char* name, const Tensor& t, const Shape& shape);
// o and dout: [B, H, T, D] f32 with contiguous rows (last dim stride 1), rows in any order.
void require_rows(const char* kernel, const char* name, const Tensor& t, const Shape& shape);
// dq, dk and dv: as require_rows, and dense (Tensor::is_dense: no two rows overlap, no gaps).
void require_output_rows(const char* kernel, const char* name, const Tensor& t, const Shape& shape);

}  // namespace lab::checks
