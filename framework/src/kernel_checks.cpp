// The shared argument checks of lab/kernel_checks.h that are too long to inline.
#include "lab/kernel_checks.h"

#include <utility>

namespace lab::checks {

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

}  // namespace lab::checks
