// The shared argument checks of lab/kernel_checks.h that are too long to inline.
#include "lab/kernel_checks.h"

#include <utility>

namespace lab::checks {

void matmul_shape_error(const Tensor& c, const Tensor& a, const Tensor& b, const std::string& why) {
    throw ShapeError("matmul: c " + shape_str(c.shape()) + " = a " + shape_str(a.shape()) + " @ b " +
                     shape_str(b.shape()) + ": " + why +
                     "; hint: a is [..., M, K], b is [..., K, N], c is [..., M, N] with equal ranks 2 to 4");
}

void require_matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias) {
    require_defined("matmul", "a", a);
    require_defined("matmul", "b", b);
    require_contiguous("matmul", "c", c);
    const int64_t rank = c.dim();
    if (rank < 2 || rank > 4 || a.dim() != rank || b.dim() != rank) {
        matmul_shape_error(c, a, b, "ranks differ or are outside 2..4");
    }
    for (const auto& [name, t] : {std::pair{"a", &a}, std::pair{"b", &b}, std::pair{"c", &c}}) {
        if (t->dtype() != DType::f32 && t->dtype() != DType::bf16) {
            matmul_shape_error(c, a, b,
                               std::string(name) + " has dtype " + dtype_name(t->dtype()) + ", expected f32 or bf16");
        }
    }
    const int64_t M = c.size(-2), N = c.size(-1), K = a.size(-1);
    if (a.size(-2) != M || b.size(-2) != K || b.size(-1) != N) matmul_shape_error(c, a, b, "inner sizes do not match");
    for (int64_t d = 0; d < rank - 2; ++d) {
        if ((a.size(d) != c.size(d) && a.size(d) != 1) || (b.size(d) != c.size(d) && b.size(d) != 1)) {
            matmul_shape_error(c, a, b, "batch dim " + std::to_string(d) + " is neither equal to c's nor 1");
        }
    }
    if (bias != nullptr) {
        require_defined("matmul", "bias", *bias);
        if (bias->numel() != N || (bias->dtype() != DType::f32 && bias->dtype() != DType::bf16)) {
            matmul_shape_error(c, a, b, "bias " + shape_str(bias->shape()) + " " + dtype_name(bias->dtype()) +
                                            " must be f32 or bf16 with N elements");
        }
    }
}

void require_adamw_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, int64_t t) {
    for (const auto& [name, tensor] : {std::pair{"g", &g}, std::pair{"m", &m}, std::pair{"v", &v}}) {
        require_same_shape("adamw.step", "w", w, name, *tensor);
        require_f32_contiguous("adamw.step", name, *tensor);
    }
    require_f32_contiguous("adamw.step", "w", w);
    if (t < 1) {
        throw ShapeError("adamw.step: step t = " + std::to_string(t) + " must be >= 1; hint: count steps from 1");
    }
}

void require_sgd_update(const Tensor& w, const Tensor& g, const Tensor& buf, float momentum) {
    require_f32_contiguous("sgd.step", "w", w);
    require_f32_contiguous("sgd.step", "g", g);
    require_same_shape("sgd.step", "w", w, "g", g);
    if (momentum != 0.0f) {
        if (!buf.defined()) {
            throw ShapeError("sgd.step: momentum = " + std::to_string(momentum) +
                             " needs a momentum buffer but none was given; hint: allocate buf like w");
        }
        require_f32_contiguous("sgd.step", "buf", buf);
        require_same_shape("sgd.step", "w", w, "buf", buf);
    }
}

void require_at_most_dims(const char* kernel, const Shape& shape, int max_dims) {
    if (shape.size() > static_cast<size_t>(max_dims)) {
        throw ShapeError(std::string(kernel) + ": shape " + shape_str(shape) + " has more than " +
                         std::to_string(max_dims) + " dims; hint: reshape to fewer dims first");
    }
}

void require_reduce_sum(const Tensor& y, const Tensor& x) {
    require_dtype("reduce_sum", "y", y, DType::f32);
    require_dtype("reduce_sum", "x", x, DType::f32);
    require_contiguous("reduce_sum", "y", y);
    bool shapes_ok = y.dim() == x.dim();
    for (int64_t d = 0; shapes_ok && d < x.dim(); ++d) shapes_ok = y.size(d) == x.size(d) || y.size(d) == 1;
    if (!shapes_ok) {
        throw ShapeError("reduce_sum: y " + shape_str(y.shape()) + " cannot be a sum of x " + shape_str(x.shape()) +
                         "; hint: y must have x's rank with size 1 in the summed dims");
    }
}

void require_sum_squares(const Tensor& out, const Tensor& x) {
    require_dtype("sum_squares", "out", out, DType::f32);
    require_dtype("sum_squares", "x", x, DType::f32);
    if (out.numel() != 1) {
        throw ShapeError("sum_squares: out " + shape_str(out.shape()) +
                         " must have one element; hint: pass a [1] tensor");
    }
}

void require_one_per_row(const char* kernel, const char* name, const Tensor& t, int64_t rows) {
    require_f32_contiguous(kernel, name, t);
    if (t.numel() != rows) {
        throw ShapeError(std::string(kernel) + ": " + name + " " + shape_str(t.shape()) +
                         " must have one element per row (" + std::to_string(rows) +
                         " rows); hint: allocate it as [N]");
    }
}

void require_one_per_column(const char* kernel, const char* name, const Tensor* t, int64_t cols) {
    if (t == nullptr) return;
    require_f32_contiguous(kernel, name, *t);
    if (t->numel() != cols) {
        throw ShapeError(std::string(kernel) + ": " + name + " " + shape_str(t->shape()) + " must have " +
                         std::to_string(cols) + " elements (the last dim of x); hint: allocate it as [C]");
    }
}

void require_targets(const char* kernel, const Tensor& targets, const Tensor& logits, int64_t rows) {
    require_index_dtype(kernel, "targets", targets);
    if (targets.numel() != rows) {
        throw ShapeError(std::string(kernel) + ": targets " + shape_str(targets.shape()) +
                         " must have one id per row of logits " + shape_str(logits.shape()) +
                         "; hint: flatten logits to [N, V] and targets to [N]");
    }
}

void require_embedding(const char* kernel, const char* rows_name, const Tensor& rows, const Tensor& ids,
                       const char* table_name, const Tensor& table) {
    require_f32_contiguous(kernel, table_name, table);
    require_f32_contiguous(kernel, rows_name, rows);
    require_index_dtype(kernel, "ids", ids);
    if (table.dim() != 2 || rows.dim() == 0 || rows.size(-1) != table.size(1) ||
        rows.numel() != ids.numel() * table.size(1)) {
        throw ShapeError(std::string(kernel) + ": " + rows_name + " " + shape_str(rows.shape()) +
                         " does not match ids " + shape_str(ids.shape()) + " and " + table_name + " " +
                         shape_str(table.shape()) + "; hint: " + rows_name + " is [..., C] for ids [...] and " +
                         table_name + " [V, C]");
    }
}

ShapeError id_out_of_range(const char* kernel, const char* what, int64_t id, int64_t position, int64_t limit,
                           const Shape& table_shape) {
    return ShapeError(std::string(kernel) + ": " + what + " " + std::to_string(id) + " at position " +
                      std::to_string(position) + " is outside [0, " + std::to_string(limit) + ") for " +
                      shape_str(table_shape) + "; hint: the tokenizer's vocabulary must fit the model's "
                      "vocab_size (or mark padding with the ignore index)");
}

AttentionSizes attention_sizes(const char* kernel, const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionKernelArgs& args) {
    for (const auto& [name, t] : {std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}}) {
        require_dtype(kernel, name, *t, DType::f32);
        if (t->dim() != 4)
            throw ShapeError(std::string(kernel) + ": " + name + " " + shape_str(t->shape()) +
                             " must have 4 dims ([B, H, T, D] or [B, Hkv, S, D]); hint: split heads first");
    }
    require_same_shape(kernel, "k", k, "v", v);
    AttentionSizes p;
    p.B = q.size(0), p.H = q.size(1), p.T = q.size(2), p.D = q.size(3);
    p.Hkv = k.size(1), p.S = k.size(2);
    if (k.size(0) != p.B || k.size(3) != p.D || p.Hkv < 1 || p.H % p.Hkv != 0)
        throw ShapeError(std::string(kernel) + ": q " + shape_str(q.shape()) + " and k " + shape_str(k.shape()) +
                         " do not fit [B, H, T, D] and [B, Hkv, S, D] with Hkv dividing H; hint: check the head split");
    if (args.key_padding_mask) {
        const Tensor& mask = *args.key_padding_mask;
        require_dtype(kernel, "key_padding_mask", mask, DType::u8);
        require_contiguous(kernel, "key_padding_mask", mask);
        if (mask.shape() != Shape{p.B, p.S})
            throw ShapeError(std::string(kernel) + ": key_padding_mask " + shape_str(mask.shape()) +
                             " must be [B, S] = " + shape_str({p.B, p.S}) + "; hint: one flag per key");
    }
    if (args.slopes) {
        require_f32_contiguous(kernel, "slopes", *args.slopes);
        if (args.slopes->shape() != Shape{p.H})
            throw ShapeError(std::string(kernel) + ": slopes " + shape_str(args.slopes->shape()) +
                             " must be [H] = " + shape_str({p.H}) + "; hint: one ALiBi slope per query head");
    }
    if (args.dropout > 0.0f && !(args.dropout < 1.0f))
        throw ShapeError(std::string(kernel) + ": dropout " + std::to_string(args.dropout) +
                         " must be below 1; hint: use a probability in [0, 1)");
    return p;
}

void require_output(const char* kernel, const char* name, const Tensor& t, const Shape& shape) {
    require_f32_contiguous(kernel, name, t);
    if (t.shape() != shape)
        throw ShapeError(std::string(kernel) + ": " + name + " " + shape_str(t.shape()) + " must be " +
                         shape_str(shape) + "; hint: allocate it with the documented shape");
}

void require_rows(const char* kernel, const char* name, const Tensor& t, const Shape& shape) {
    require_dtype(kernel, name, t, DType::f32);
    if (t.shape() != shape)
        throw ShapeError(std::string(kernel) + ": " + name + " " + shape_str(t.shape()) + " must be " +
                         shape_str(shape) + "; hint: allocate it with the documented shape");
    if (t.strides()[3] != 1 && t.size(3) > 1)
        throw ShapeError(std::string(kernel) + ": " + name + " has strides " + shape_str(t.strides()) +
                         "; its last dimension must be contiguous (stride 1)");
}

void require_output_rows(const char* kernel, const char* name, const Tensor& t, const Shape& shape) {
    require_rows(kernel, name, t, shape);
    if (!t.is_dense())
        throw ShapeError(std::string(kernel) + ": " + name + " has strides " + shape_str(t.strides()) +
                         "; an output must be dense (its rows may not overlap or leave gaps)");
}

}  // namespace lab::checks
