#include "lab/ops.h"

#include <algorithm>
#include <numeric>

#include "lab/error.h"
#include "matmul_input.h"

namespace lab::ops {

namespace {

Tensor new_f32(const Tensor& like, const Shape& shape) { return Tensor::empty(like.backend(), shape, DType::f32); }

Tensor contig(const Tensor& t) { return t.contiguous_copy(); }

void require_float(const Tensor& t, const char* op) {
    if (!t.defined()) throw ShapeError(std::string(op) + ": input tensor is undefined");
    if (t.dtype() != DType::f32)
        throw ShapeError(std::string(op) + ": expected an f32 tensor, got " + dtype_name(t.dtype()) + " " +
                         shape_str(t.shape()));
}

int64_t normalize_dim(int64_t dim, int64_t rank, const char* op) {
    if (dim < 0) dim += rank;
    if (dim < 0 || dim >= rank)
        throw ShapeError(std::string(op) + ": dimension " + std::to_string(dim) + " out of range for rank " +
                         std::to_string(rank));
    return dim;
}

// Sum `g` down to `shape` (the inverse of broadcasting): dims that were added or expanded from 1.
Tensor sum_to(const Tensor& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    Shape padded(g.shape().size(), 1);
    size_t lead = g.shape().size() - shape.size();
    for (size_t i = 0; i < shape.size(); ++i) padded[lead + i] = shape[i];
    Tensor reduced = new_f32(g, padded);
    g.backend().reduce_sum(reduced, contig(g));
    return reduced.view(shape, contiguous_strides(shape), reduced.offset());
}

// y = op(x), f32; or with out = bf16 rounded as it is written (Backend::unary_bf16). The gradient
// is f32 either way.
Tensor unary_op(UnaryOp op, const Tensor& x, float alpha, const char* name, DType out = DType::f32) {
    require_float(x, name);
    Tensor xc = contig(x);
    Tensor y = Tensor::empty(x.backend(), x.shape(), out);
    if (out == DType::bf16) x.backend().unary_bf16(op, y, xc, alpha);
    else x.backend().unary(op, y, xc, alpha);
    if (any_requires_grad({&x})) {
        // y is kept only for the derivatives that read it (Backend::unary_backward), and only in
        // f32; without it the backward recomputes it.
        const bool keep_y = out == DType::f32 && (op == UnaryOp::tanh || op == UnaryOp::sigmoid ||
                                                  op == UnaryOp::exp || op == UnaryOp::sqrt);
        Tensor saved_x = xc.detach(), saved_y = keep_y ? y.detach() : Tensor();
        record(y, name, {x}, [op, alpha, saved_x, saved_y](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dy = contig(dout);
            Tensor dx = new_f32(dy, dy.shape());
            switch (op) {
                case UnaryOp::scale: dy.backend().unary(UnaryOp::scale, dx, dy, alpha); break;
                case UnaryOp::neg: dy.backend().unary(UnaryOp::neg, dx, dy, 0.0f); break;
                case UnaryOp::add_scalar: dx = dy; break;
                default: dy.backend().unary_backward(op, dx, dy, saved_x, saved_y); break;
            }
            d[0] = dx;
        });
    }
    return y;
}

Tensor binary_op(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
    require_float(a, name);
    require_float(b, name);
    Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
    Tensor ea = expand(a.detach(), out_shape), eb = expand(b.detach(), out_shape);
    Tensor c = new_f32(a, out_shape);
    a.backend().binary(op, c, ea, eb);
    if (any_requires_grad({&a, &b})) {
        Tensor sa = a.detach(), sb = b.detach(), sc = c.detach();
        bool need_a = a.requires_grad(), need_b = b.requires_grad();
        record(c, name, {a, b}, [=](const Tensor& dout, std::vector<Tensor>& d) {
            Backend& be = dout.backend();
            auto apply = [&](BinaryOp bop, const Tensor& x, const Tensor& y) {
                Tensor r = new_f32(dout, out_shape);
                be.binary(bop, r, expand(x, out_shape), expand(y, out_shape));
                return r;
            };
            switch (op) {
                case BinaryOp::add:
                    if (need_a) d[0] = sum_to(dout, sa.shape());
                    if (need_b) d[1] = sum_to(dout, sb.shape());
                    break;
                case BinaryOp::sub:
                    if (need_a) d[0] = sum_to(dout, sa.shape());
                    if (need_b) {
                        Tensor g = sum_to(dout, sb.shape());
                        Tensor n = new_f32(g, g.shape());
                        be.unary(UnaryOp::neg, n, contig(g), 0.0f);
                        d[1] = n;
                    }
                    break;
                case BinaryOp::mul:
                    if (need_a) d[0] = sum_to(apply(BinaryOp::mul, dout, sb), sa.shape());
                    if (need_b) d[1] = sum_to(apply(BinaryOp::mul, dout, sa), sb.shape());
                    break;
                case BinaryOp::div:
                    if (need_a) d[0] = sum_to(apply(BinaryOp::div, dout, sb), sa.shape());
                    if (need_b) {  // d(a/b)/db = -(a/b)/b
                        Tensor t = apply(BinaryOp::mul, dout, sc);
                        Tensor q = apply(BinaryOp::div, t, sb);
                        Tensor g = contig(sum_to(q, sb.shape()));
                        Tensor n = new_f32(g, g.shape());
                        be.unary(UnaryOp::neg, n, g, 0.0f);
                        d[1] = n;
                    }
                    break;
            }
        });
    }
    return c;
}

// Gradient of a rank-padded, batch-broadcast operand back to the operand's own shape.
Tensor reduce_to_operand(const Tensor& g, const Shape& shape) {
    Shape padded(g.shape().size() - shape.size(), 1);
    padded.insert(padded.end(), shape.begin(), shape.end());
    Tensor r = contig(sum_to(g, padded));
    return r.view(shape, contiguous_strides(shape), r.offset());
}

// A matmul operand as the backend multiplies it: under mixed precision (Backend::matmul_inputs()
// bf16) a dense f32 tensor is rounded to bf16 here, once, keeping its layout, so that the forward
// and the backward multiply the same rounded copy (and the backward keeps half the bytes) instead
// of rounding it again in every matmul. Other tensors are left to the backend.
Tensor matmul_operand(const Tensor& t) {
    if (t.backend().matmul_inputs() != DType::bf16 || t.dtype() != DType::f32 || !t.is_dense()) return t;
    return t.to_like(DType::bf16);
}

// Rank-equalised, batch-broadcast matmul of a [..., M, K] and b [..., K, N] (ranks 2-4).
Tensor batched_matmul(const Tensor& a, const Tensor& b) {
    int64_t rank = std::max(a.dim(), b.dim());
    if (a.dim() < 2 || b.dim() < 2 || rank > 4)
        throw ShapeError("matmul: operands must have rank 2 to 4, got " + shape_str(a.shape()) + " and " +
                         shape_str(b.shape()));
    auto pad = [rank](const Tensor& t) {
        Shape s(static_cast<size_t>(rank - t.dim()), 1), st(static_cast<size_t>(rank - t.dim()), 0);
        s.insert(s.end(), t.shape().begin(), t.shape().end());
        st.insert(st.end(), t.strides().begin(), t.strides().end());
        return t.view(s, st, t.offset());
    };
    Tensor pa = matmul_operand(pad(a.detach())), pb = matmul_operand(pad(b.detach()));
    int64_t M = pa.size(-2), K = pa.size(-1), N = pb.size(-1);
    if (pb.size(-2) != K)
        throw ShapeError("matmul: inner dimensions differ: " + shape_str(a.shape()) + " @ " + shape_str(b.shape()));
    Shape out_shape(static_cast<size_t>(rank));
    for (int64_t i = 0; i < rank - 2; ++i) {
        int64_t da = pa.shape()[i], db = pb.shape()[i];
        if (da != db && da != 1 && db != 1)
            throw ShapeError("matmul: batch dimensions do not broadcast: " + shape_str(a.shape()) + " @ " +
                             shape_str(b.shape()));
        out_shape[i] = std::max(da, db);
    }
    out_shape[rank - 2] = M;
    out_shape[rank - 1] = N;
    Tensor c = new_f32(a, out_shape);
    a.backend().matmul(c, pa, pb, nullptr, 1.0f, false);
    if (any_requires_grad({&a, &b})) {
        bool need_a = a.requires_grad(), need_b = b.requires_grad();
        Shape a_shape = a.shape(), b_shape = b.shape();
        record(c, "matmul", {a, b}, [=](const Tensor& dout, std::vector<Tensor>& d) {
            // Under mixed precision a dense gradient (the attention output's arrives transposed) is
            // rounded in its own layout: one pass instead of a copy and then a rounding.
            const bool round_in_place = dout.backend().matmul_inputs() == DType::bf16 && dout.is_dense();
            const Tensor dc = matmul_operand(round_in_place ? dout : contig(dout));
            if (need_a) {  // dA = dC @ B^T, summed over the batch dims that a was broadcast along
                Shape s = out_shape;
                s.back() = K;
                Tensor da = new_f32(dc, s);
                dc.backend().matmul(da, dc, transpose(pb, -1, -2), nullptr, 1.0f, false);
                d[0] = reduce_to_operand(da, a_shape);
            }
            if (need_b) {  // dB = A^T @ dC
                Shape s = out_shape;
                s[rank - 2] = K;
                Tensor db = new_f32(dc, s);
                dc.backend().matmul(db, transpose(pa, -1, -2), dc, nullptr, 1.0f, false);
                d[1] = reduce_to_operand(db, b_shape);
            }
        });
    }
    return c;
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    size_t rank = std::max(a.size(), b.size());
    Shape out(rank);
    for (size_t i = 0; i < rank; ++i) {
        int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
        int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
        if (da != db && da != 1 && db != 1)
            throw ShapeError(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                             " do not broadcast");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// ---- linear algebra ----

Tensor matmul(const Tensor& a, const Tensor& b) {
    require_float(a, "matmul");
    require_float(b, "matmul");
    // [.., M, K] @ [K, N]: fold the batch into M so that the weight gradient is one 2-D matmul.
    if (b.dim() == 2 && a.dim() > 2) {
        Shape out_shape = a.shape();
        out_shape.back() = b.size(1);
        Tensor flat = reshape(a, {-1, a.size(-1)});
        return reshape(batched_matmul(flat, b), out_shape);
    }
    return batched_matmul(a, b);
}

namespace {

void check_linear(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
    // A bf16 x is matmul_input's rounding, multiplied as it is.
    if (!x.defined() || x.dtype() != DType::bf16) require_float(x, op);
    require_float(weight, op);
    if (weight.dim() != 2 || x.size(-1) != weight.size(1))
        throw ShapeError(std::string(op) + ": input " + shape_str(x.shape()) + " does not match weight " +
                         shape_str(weight.shape()) + " ([out, in])");
    if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0)))
        throw ShapeError(std::string(op) + ": bias " + shape_str(bias.shape()) + " does not match weight " +
                         shape_str(weight.shape()));
}

// The gradients of y = x2d @ w^T + bias given dy [N, out] (contiguous), into d[0..2]; d[0] has
// x_shape (x2d's rows), and when it arrives holding a gradient (Node::accumulate_into) dx is added
// into it by the product itself. x2d and w are the operands the forward multiplied
// (matmul_operand's).
void linear_gradients(const Tensor& dy, const Tensor& x2d, const Tensor& w, const Shape& x_shape, bool need_x,
                      bool need_w, bool need_b, std::vector<Tensor>& d) {
    Backend& be = dy.backend();
    const Tensor dy_in = matmul_operand(dy);  // rounded once for both products
    if (need_x) {  // dx (+)= dy @ W
        const bool add = d[0].defined();
        const Tensor dx = add ? d[0].view(x2d.shape(), contiguous_strides(x2d.shape()), d[0].offset())
                              : new_f32(dy, x2d.shape());
        be.matmul(dx, dy_in, w, nullptr, 1.0f, add);
        if (!add) d[0] = dx.view(x_shape, contiguous_strides(x_shape), dx.offset());
    }
    if (need_w) {  // dW = dy^T @ x
        Tensor dw = new_f32(dy, w.shape());
        be.matmul(dw, transpose(dy_in, 0, 1), x2d, nullptr, 1.0f, false);
        d[1] = dw;
    }
    if (need_b) {
        const int64_t out = w.size(0);
        Tensor db = new_f32(dy, {1, out});
        be.reduce_sum(db, dy);
        d[2] = db.view({out}, {1}, db.offset());
    }
}

// What follows the linear inside the same op: nothing, GPT-2's tanh GELU fused into the same
// backend call, or (under mixed precision only) the erf GELU written in bf16, whose derivative is
// written in bf16 straight into the gradient the linear's products read.
enum class LinearActivation { none, gelu_tanh, gelu_bf16 };

// With addend (activation none): y = addend + x W^T + bias in one product (Backend::matmul_add).
Tensor linear_impl(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                   LinearActivation activation, const Tensor& addend = Tensor()) {
    const bool gelu_tanh = activation == LinearActivation::gelu_tanh;
    check_linear(op, x, weight, bias);
    if (addend.defined()) {
        Shape out_shape = x.shape();
        out_shape.back() = weight.size(0);
        if (addend.shape() != out_shape)
            throw ShapeError(std::string(op) + ": residual " + shape_str(addend.shape()) +
                             " does not match the output " + shape_str(out_shape) + " of input " +
                             shape_str(x.shape()) + " and weight " + shape_str(weight.shape()));
    }
    const int64_t in = weight.size(1), out = weight.size(0);
    Tensor x2 = reshape(x, {-1, in});  // [N, in]
    // Under mixed precision both are rounded to bf16 once per forward: the weight's copy serves the
    // forward and the backward's dx of this pass (refreshed at the next forward, i.e. after the
    // optimizer's step), the input's is what the backward's dW multiplies (a bf16 x, rounded by
    // matmul_input for several linears, is used as it is).
    Tensor x2d = matmul_operand(x2.detach()), w = matmul_operand(weight.detach());
    Tensor bias_d = bias.defined() ? bias.detach() : Tensor();
    const bool gelu_bf16 = activation == LinearActivation::gelu_bf16;
    Tensor y = Tensor::empty(x.backend(), {x2.size(0), out}, gelu_bf16 ? DType::bf16 : DType::f32);  // [N, out]
    Tensor pre;  // the GELU's input, kept for the backward
    if (gelu_tanh) {
        pre = new_f32(x, {x2.size(0), out});
        x.backend().matmul_gelu_tanh(y, pre, x2d, transpose(w, 0, 1), bias.defined() ? &bias_d : nullptr);
    } else if (gelu_bf16) {
        pre = new_f32(x, {x2.size(0), out});
        x.backend().matmul(pre, x2d, transpose(w, 0, 1), bias.defined() ? &bias_d : nullptr, 1.0f, false);
        x.backend().unary_bf16(UnaryOp::gelu, y, pre, 0.0f);
    } else if (addend.defined()) {
        const Tensor addend_2d = reshape(addend.detach(), {x2.size(0), out});
        x.backend().matmul_add(y, x2d, transpose(w, 0, 1), bias.defined() ? &bias_d : nullptr, addend_2d);
    } else {
        x.backend().matmul(y, x2d, transpose(w, 0, 1), bias.defined() ? &bias_d : nullptr, 1.0f, false);
    }
    if (any_requires_grad({&x, &weight, &bias, &addend})) {
        const bool need_x = x.requires_grad(), need_w = weight.requires_grad(),
                   need_b = bias.defined() && bias.requires_grad();
        const bool need_addend = addend.defined() && addend.requires_grad();
        const Shape addend_shape = addend.defined() ? addend.shape() : Shape{};
        const Shape x_shape = x.shape();
        // x itself is the node's input (not its 2-D view), so that linears reading one x (q, k and
        // v) add their input gradients into one tensor (accumulate_into, bit 0).
        record(y, op, {x, weight, bias, addend}, [=](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dy = contig(dout);  // [N, out]
            if (need_addend) d[3] = dy.view(addend_shape, contiguous_strides(addend_shape), dy.offset());
            if (gelu_tanh) {
                // gelu_tanh's derivative is a function of its input alone, so y is not kept for
                // it: the [N, out] output lives on only as the next linear's bf16 rounding under
                // mixed precision (or the next op's own saved input).
                Tensor dpre = new_f32(dy, dy.shape());
                dy.backend().unary_backward(UnaryOp::gelu_tanh, dpre, dy, pre, Tensor());
                dy = dpre;
            } else if (gelu_bf16) {
                // The products read dy rounded to bf16, so the derivative is rounded as it is
                // written. A bias gradient sums the f32 values instead (the backends' reduce_sum
                // reads f32), as the two separate ops would.
                Tensor dpre = Tensor::empty(dy.backend(), dy.shape(), need_b ? DType::f32 : DType::bf16);
                if (need_b) dy.backend().unary_backward(UnaryOp::gelu, dpre, dy, pre, Tensor());
                else dy.backend().unary_backward_bf16(UnaryOp::gelu, dpre, dy, pre, Tensor());
                dy = dpre;
            }
            linear_gradients(dy, x2d, w, x_shape, need_x, need_w, need_b, d);
        }, 1u);
    }
    Shape out_shape = x.shape();
    out_shape.back() = out;
    return reshape(y, out_shape);
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    return linear_impl("linear", x, weight, bias, LinearActivation::none);
}

Tensor linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    return linear_impl("linear_gelu_tanh", x, weight, bias, LinearActivation::gelu_tanh);
}

Tensor linear_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual) {
    require_float(residual, "linear_residual");
    return linear_impl("linear_residual", x, weight, bias, LinearActivation::none, residual);
}

Tensor linear_dropout_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, float p, bool training,
                               Generator& gen, const Tensor& residual) {
    if (!training || p <= 0.0f) return linear_residual(x, weight, bias, residual);
    return add(residual, dropout(linear(x, weight, bias), p, training, gen));
}

Tensor linear_gelu_matmul_input(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    if (x.backend().matmul_inputs() != DType::bf16) return gelu(linear(x, weight, bias), false);
    return linear_impl("linear_gelu_matmul_input", x, weight, bias, LinearActivation::gelu_bf16);
}

Tensor matmul_input(const Tensor& x) {
    if (x.defined() && x.dtype() == DType::bf16) return x;  // already a matmul input
    require_float(x, "matmul_input");
    if (x.backend().matmul_inputs() != DType::bf16) return x;
    Tensor rounded = Tensor::empty(x.backend(), x.shape(), DType::bf16);
    rounded.copy_(x.detach());
    if (any_requires_grad({&x}))
        record(rounded, "matmul_input", {x}, [](const Tensor& dout, std::vector<Tensor>& d) { d[0] = dout; });
    return rounded;
}

// ---- elementwise ----

Tensor add(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::add, a, b, "add"); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::sub, a, b, "sub"); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::mul, a, b, "mul"); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::div, a, b, "div"); }
Tensor scale(const Tensor& x, float alpha) { return unary_op(UnaryOp::scale, x, alpha, "scale"); }
Tensor add_scalar(const Tensor& x, float alpha) { return unary_op(UnaryOp::add_scalar, x, alpha, "add_scalar"); }
Tensor neg(const Tensor& x) { return unary_op(UnaryOp::neg, x, 0.0f, "neg"); }
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::exp, x, 0.0f, "exp"); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::log, x, 0.0f, "log"); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::sqrt, x, 0.0f, "sqrt"); }
Tensor square(const Tensor& x) { return unary_op(UnaryOp::square, x, 0.0f, "square"); }
Tensor tanh(const Tensor& x) { return unary_op(UnaryOp::tanh, x, 0.0f, "tanh"); }
Tensor sigmoid(const Tensor& x) { return unary_op(UnaryOp::sigmoid, x, 0.0f, "sigmoid"); }
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::relu, x, 0.0f, "relu"); }
Tensor gelu(const Tensor& x, bool tanh_approximation) {
    return tanh_approximation ? unary_op(UnaryOp::gelu_tanh, x, 0.0f, "gelu_tanh")
                              : unary_op(UnaryOp::gelu, x, 0.0f, "gelu");
}

Tensor gelu_matmul_input(const Tensor& x) {
    if (x.backend().matmul_inputs() != DType::bf16) return gelu(x, false);
    return unary_op(UnaryOp::gelu, x, 0.0f, "gelu_matmul_input", DType::bf16);
}

// ---- shape ----

Tensor contiguous(const Tensor& x) {
    if (x.is_contiguous()) return x;
    Tensor y = x.contiguous_copy();
    if (any_requires_grad({&x}))
        record(y, "contiguous", {x}, [](const Tensor& dout, std::vector<Tensor>& d) { d[0] = dout; });
    return y;
}

Tensor reshape(const Tensor& x, Shape shape) {
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1) {
            if (infer >= 0) throw ShapeError("reshape: more than one -1 in " + shape_str(shape));
            infer = static_cast<int64_t>(i);
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || x.numel() % known != 0)
            throw ShapeError("reshape: cannot reshape " + shape_str(x.shape()) + " into " + shape_str(shape));
        shape[static_cast<size_t>(infer)] = x.numel() / known;
    }
    if (shape_numel(shape) != x.numel())
        throw ShapeError("reshape: cannot reshape " + shape_str(x.shape()) + " (" + std::to_string(x.numel()) +
                         " elements) into " + shape_str(shape));
    Tensor src = contiguous(x);
    Tensor y = src.view(shape, contiguous_strides(shape), src.offset());
    if (any_requires_grad({&src})) {
        Shape in_shape = src.shape();
        record(y, "reshape", {src}, [in_shape](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor g = contig(dout);
            d[0] = g.view(in_shape, contiguous_strides(in_shape), g.offset());
        });
    }
    return y;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
    d0 = normalize_dim(d0, x.dim(), "transpose");
    d1 = normalize_dim(d1, x.dim(), "transpose");
    Shape shape = x.shape(), strides = x.strides();
    std::swap(shape[d0], shape[d1]);
    std::swap(strides[d0], strides[d1]);
    Tensor y = x.view(shape, strides, x.offset());
    if (any_requires_grad({&x}))
        record(y, "transpose", {x}, [d0, d1](const Tensor& dout, std::vector<Tensor>& d) {
            d[0] = transpose(dout, d0, d1);
        });
    return y;
}

Tensor expand(const Tensor& x, const Shape& shape) {
    if (x.shape() == shape) return x;
    if (shape.size() < x.shape().size())
        throw ShapeError("expand: cannot expand " + shape_str(x.shape()) + " to " + shape_str(shape));
    size_t lead = shape.size() - x.shape().size();
    Shape strides(shape.size(), 0);
    for (size_t i = 0; i < x.shape().size(); ++i) {
        int64_t have = x.shape()[i], want = shape[lead + i];
        if (have == want) strides[lead + i] = x.strides()[i];
        else if (have != 1)
            throw ShapeError("expand: cannot expand " + shape_str(x.shape()) + " to " + shape_str(shape));
    }
    Tensor y = x.view(shape, strides, x.offset());
    if (any_requires_grad({&x})) {
        Shape in_shape = x.shape();
        record(y, "expand", {x}, [in_shape](const Tensor& dout, std::vector<Tensor>& d) {
            d[0] = contig(sum_to(dout, in_shape));
        });
    }
    return y;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
    dim = normalize_dim(dim, x.dim(), "slice");
    int64_t n = x.size(dim);
    if (start < 0) start += n;
    if (end < 0) end += n;
    if (start < 0 || end > n || start > end)
        throw ShapeError("slice: range [" + std::to_string(start) + ", " + std::to_string(end) +
                         ") out of bounds for dimension " + std::to_string(dim) + " of " + shape_str(x.shape()));
    Shape shape = x.shape();
    shape[dim] = end - start;
    Tensor y = x.view(shape, x.strides(), x.offset() + start * x.strides()[dim]);
    if (any_requires_grad({&x})) {
        Shape in_shape = x.shape();
        record(y, "slice", {x}, [=](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dx = Tensor::zeros(dout.backend(), in_shape);
            Tensor window = dx.view(shape, dx.strides(), start * dx.strides()[dim]);
            window.copy_(dout);
            d[0] = dx;
        });
    }
    return y;
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
    dim = normalize_dim(dim, x.dim(), "select");
    Tensor part = slice(x, dim, index, index + 1);
    Shape shape = part.shape(), strides = part.strides();
    shape.erase(shape.begin() + dim);
    strides.erase(strides.begin() + dim);
    Tensor y = part.view(shape, strides, part.offset());
    if (any_requires_grad({&part})) {
        Shape kept = part.shape();
        record(y, "select", {part}, [kept, dim](const Tensor& dout, std::vector<Tensor>& d) {
            Shape strides = dout.strides();
            strides.insert(strides.begin() + dim, 0);
            d[0] = dout.view(kept, strides, dout.offset());
        });
    }
    return y;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
    if (xs.empty()) throw ShapeError("concat: no tensors given");
    dim = normalize_dim(dim, xs[0].dim(), "concat");
    Shape shape = xs[0].shape();
    int64_t total = 0;
    for (const Tensor& x : xs) {
        Shape s = x.shape();
        if (s.size() != shape.size() || x.dtype() != xs[0].dtype())
            throw ShapeError("concat: " + shape_str(s) + " does not match " + shape_str(shape));
        for (size_t i = 0; i < s.size(); ++i)
            if (static_cast<int64_t>(i) != dim && s[i] != shape[i])
                throw ShapeError("concat: " + shape_str(s) + " does not match " + shape_str(shape) +
                                 " outside dimension " + std::to_string(dim));
        total += s[dim];
    }
    shape[dim] = total;
    Tensor y = Tensor::empty(xs[0].backend(), shape, xs[0].dtype());
    std::vector<int64_t> sizes;
    int64_t at = 0;
    for (const Tensor& x : xs) {
        Shape part = y.shape();
        part[dim] = x.size(dim);
        y.view(part, y.strides(), at * y.strides()[dim]).copy_(x);
        sizes.push_back(x.size(dim));
        at += x.size(dim);
    }
    bool any = false;
    for (const Tensor& x : xs) any = any || any_requires_grad({&x});
    if (any) {
        record(y, "concat", xs, [=](const Tensor& dout, std::vector<Tensor>& d) {
            int64_t offset = 0;
            for (size_t i = 0; i < sizes.size(); ++i) {
                Shape part = dout.shape();
                part[dim] = sizes[i];
                d[i] = dout.view(part, dout.strides(), dout.offset() + offset * dout.strides()[dim]);
                offset += sizes[i];
            }
        });
    }
    return y;
}

std::vector<Tensor> split(const Tensor& x, int64_t dim, const std::vector<int64_t>& sizes) {
    dim = normalize_dim(dim, x.dim(), "split");
    int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
    if (total != x.size(dim))
        throw ShapeError("split: sizes add up to " + std::to_string(total) + " but dimension " + std::to_string(dim) +
                         " of " + shape_str(x.shape()) + " is " + std::to_string(x.size(dim)));
    std::vector<Tensor> parts;
    int64_t start = 0;
    for (int64_t s : sizes) {
        parts.push_back(slice(x, dim, start, start + s));
        start += s;
    }
    return parts;
}

// ---- reductions ----

Tensor sum(const Tensor& x, int64_t dim, bool keepdim) {
    require_float(x, "sum");
    dim = normalize_dim(dim, x.dim(), "sum");
    Shape kept = x.shape();
    kept[dim] = 1;
    Tensor y = new_f32(x, kept);
    x.backend().reduce_sum(y, contig(x));
    Shape out_shape = kept;
    if (!keepdim) out_shape.erase(out_shape.begin() + dim);
    Tensor out = y.view(out_shape, contiguous_strides(out_shape), 0);
    if (any_requires_grad({&x})) {
        Shape in_shape = x.shape();
        record(out, "sum", {x}, [in_shape, kept](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor g = contig(dout);
            d[0] = contig(expand(g.view(kept, contiguous_strides(kept), g.offset()), in_shape));
        });
    }
    return out;
}

Tensor sum(const Tensor& x) {
    require_float(x, "sum");
    Shape ones(x.shape().size(), 1);
    Tensor y = new_f32(x, ones);
    x.backend().reduce_sum(y, contig(x));
    Tensor out = y.view({}, {}, 0);
    if (any_requires_grad({&x})) {
        Shape in_shape = x.shape();
        record(out, "sum", {x}, [in_shape, ones](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor g = contig(dout);
            d[0] = contig(expand(g.view(ones, Shape(ones.size(), 0), g.offset()), in_shape));
        });
    }
    return out;
}

Tensor mean(const Tensor& x) { return scale(sum(x), 1.0f / static_cast<float>(std::max<int64_t>(1, x.numel()))); }

Tensor mean(const Tensor& x, int64_t dim, bool keepdim) {
    int64_t n = x.size(dim);
    return scale(sum(x, dim, keepdim), 1.0f / static_cast<float>(std::max<int64_t>(1, n)));
}

// ---- normalisation, probabilities, losses ----

namespace {
Tensor softmax_impl(const Tensor& x, bool log, const char* name) {
    require_float(x, name);
    if (x.dim() < 1) throw ShapeError(std::string(name) + ": needs at least one dimension");
    int64_t C = x.size(-1), N = x.numel() / std::max<int64_t>(1, C);
    Tensor xc = contig(x).detach();
    Tensor x2 = xc.view({N, C}, {C, 1}, xc.offset());
    Tensor y = new_f32(x, {N, C});
    x.backend().softmax(y, x2, log);
    Tensor out = y.view(x.shape(), contiguous_strides(x.shape()), 0);
    if (any_requires_grad({&x})) {
        Tensor saved_y = y.detach();
        record(out, name, {x}, [=](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dy = contig(dout);
            Tensor dx = new_f32(dy, {N, C});
            dy.backend().softmax_backward(dx, dy.view({N, C}, {C, 1}, dy.offset()), saved_y, log);
            d[0] = dx.view(dout.shape(), contiguous_strides(dout.shape()), 0);
        });
    }
    return out;
}
}  // namespace

Tensor softmax(const Tensor& x) { return softmax_impl(x, false, "softmax"); }
Tensor log_softmax(const Tensor& x) { return softmax_impl(x, true, "log_softmax"); }

namespace {

// layer_norm, its output f32 or (layer_norm_matmul_input) bf16; the backward reads x, not y.
Tensor layer_norm_impl(const char* op, const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                       DType out_dtype) {
    require_float(x, op);
    int64_t C = x.size(-1), N = x.numel() / std::max<int64_t>(1, C);
    for (const Tensor* p : {&gamma, &beta})
        if (p->defined() && (p->dim() != 1 || p->size(0) != C))
            throw ShapeError(std::string(op) + ": parameter " + shape_str(p->shape()) + " does not match input " +
                             shape_str(x.shape()) + " (expected [" + std::to_string(C) + "])");
    Tensor xc = contig(x).detach();
    Tensor x2 = xc.view({N, C}, {C, 1}, xc.offset());
    Tensor y = Tensor::empty(x.backend(), {N, C}, out_dtype), mean_t = new_f32(x, {N}), rstd = new_f32(x, {N});
    Tensor g = gamma.defined() ? gamma.detach() : Tensor(), b = beta.defined() ? beta.detach() : Tensor();
    const Tensor* gp = gamma.defined() ? &g : nullptr;
    const Tensor* bp = beta.defined() ? &b : nullptr;
    if (out_dtype == DType::bf16) x.backend().layer_norm_bf16(y, mean_t, rstd, x2, gp, bp, eps);
    else x.backend().layer_norm(y, mean_t, rstd, x2, gp, bp, eps);
    Tensor out = y.view(x.shape(), contiguous_strides(x.shape()), 0);
    if (any_requires_grad({&x, &gamma, &beta})) {
        bool need_g = gamma.defined() && gamma.requires_grad(), need_b = beta.defined() && beta.requires_grad();
        Shape in_shape = x.shape();
        // accumulate_into, bit 0: x's gradient from its other reader (a pre-LN block's residual)
        // arrives in d[0], and the backward adds into it.
        record(out, op, {x, gamma, beta}, [=](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dyc = contig(dout);
            Tensor dy = dyc.view({N, C}, {C, 1}, dyc.offset());
            Backend& be = dy.backend();
            const bool add = d[0].defined();
            Tensor dx = add ? d[0].view({N, C}, {C, 1}, d[0].offset()) : new_f32(dy, {N, C});
            Tensor dg = need_g ? Tensor::zeros(be, {C}) : Tensor();
            Tensor db = need_b ? Tensor::zeros(be, {C}) : Tensor();
            const Tensor* gp = g.defined() ? &g : nullptr;
            if (add)
                be.layer_norm_backward_accumulate(dx, need_g ? &dg : nullptr, need_b ? &db : nullptr, dy, x2, mean_t,
                                                  rstd, gp);
            else
                be.layer_norm_backward(dx, need_g ? &dg : nullptr, need_b ? &db : nullptr, dy, x2, mean_t, rstd, gp);
            if (!add) d[0] = dx.view(in_shape, contiguous_strides(in_shape), 0);
            if (need_g) d[1] = dg;
            if (need_b) d[2] = db;
        }, 1u);
    }
    return out;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
    return layer_norm_impl("layer_norm", x, gamma, beta, eps, DType::f32);
}

Tensor layer_norm_matmul_input(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
    const DType out = x.defined() && x.backend().matmul_inputs() == DType::bf16 ? DType::bf16 : DType::f32;
    return layer_norm_impl("layer_norm_matmul_input", x, gamma, beta, eps, out);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
    require_float(logits, "cross_entropy");
    if (logits.dim() != 2 || targets.dim() != 1 || targets.size(0) != logits.size(0) ||
        !(targets.dtype() == DType::i32 || targets.dtype() == DType::i64))
        throw ShapeError("cross_entropy: expected logits [N, V] f32 and integer targets [N], got " +
                         shape_str(logits.shape()) + " and " + shape_str(targets.shape()) + " " +
                         dtype_name(targets.dtype()));
    Backend& be = logits.backend();
    int64_t N = logits.size(0);
    Tensor lg = contig(logits).detach(), tg = contig(targets);
    Tensor rows = new_f32(logits, {N}), lse = new_f32(logits, {N});
    be.cross_entropy(rows, lse, lg, tg, ignore_index);
    int64_t count = 0;
    for (int64_t t : tg.to_ints()) count += t != ignore_index;
    float inv = 1.0f / static_cast<float>(std::max<int64_t>(1, count));
    Tensor total = new_f32(logits, {1});
    be.reduce_sum(total, rows);
    Tensor loss = new_f32(logits, {1});
    be.unary(UnaryOp::scale, loss, total, inv);
    Tensor out = loss.view({}, {}, 0);
    if (any_requires_grad({&logits})) {
        record(out, "cross_entropy", {logits}, [=](const Tensor& dout, std::vector<Tensor>& d) {
            Backend& b = dout.backend();
            Tensor scaled = new_f32(dout, {1});
            Tensor dc = contig(dout);
            b.unary(UnaryOp::scale, scaled, dc.view({1}, {1}, dc.offset()), inv);
            Tensor drows = contig(expand(scaled, {N}));
            Tensor dlogits = new_f32(dout, lg.shape());
            b.cross_entropy_backward(dlogits, drows, lg, lse, tg, ignore_index);
            d[0] = dlogits;
        });
    }
    return out;
}

// ---- lookups, masks, dropout ----

Tensor embedding(const Tensor& ids, const Tensor& table) {
    require_float(table, "embedding");
    if (!(ids.dtype() == DType::i32 || ids.dtype() == DType::i64) || table.dim() != 2)
        throw ShapeError("embedding: expected integer ids and a table [V, C], got " + std::string(dtype_name(ids.dtype())) +
                         " ids and table " + shape_str(table.shape()));
    int64_t N = ids.numel(), C = table.size(1);
    Tensor flat_ids = contig(ids);
    flat_ids = flat_ids.view({N}, {1}, flat_ids.offset());
    Tensor tb = table.detach();
    Tensor y = new_f32(table, {N, C});
    table.backend().embedding(y, flat_ids, tb);
    Shape out_shape = ids.shape();
    out_shape.push_back(C);
    Tensor out = y.view(out_shape, contiguous_strides(out_shape), 0);
    if (any_requires_grad({&table})) {
        record(out, "embedding", {Tensor(), table}, [=](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dyc = contig(dout);
            Tensor dtable = Tensor::zeros(dyc.backend(), tb.shape());
            dyc.backend().embedding_backward(dtable, dyc.view({N, C}, {C, 1}, dyc.offset()), flat_ids);
            d[1] = dtable;
        });
    }
    return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, float value) {
    require_float(x, "masked_fill");
    if (mask.dtype() != DType::u8)
        throw ShapeError("masked_fill: mask must be u8, got " + std::string(dtype_name(mask.dtype())));
    Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
    if (shape != x.shape())
        throw ShapeError("masked_fill: mask " + shape_str(mask.shape()) + " does not broadcast to input " +
                         shape_str(x.shape()));
    Tensor m = expand(mask, shape);
    Tensor y = new_f32(x, shape);
    x.backend().masked_fill(y, contig(x), m, value);
    if (any_requires_grad({&x})) {
        record(y, "masked_fill", {x}, [m](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dy = contig(dout);
            Tensor dx = new_f32(dy, dy.shape());
            dy.backend().masked_fill(dx, dy, m, 0.0f);
            d[0] = dx;
        });
    }
    return y;
}

Tensor dropout(const Tensor& x, float p, bool training, Generator& gen) {
    if (!training || p <= 0.0f) return x;
    if (p >= 1.0f) throw ShapeError("dropout: probability must be below 1, got " + std::to_string(p));
    require_float(x, "dropout");
    Tensor xc = contig(x);
    Tensor keep = Tensor::empty(x.backend(), x.shape(), DType::u8);
    Tensor y = new_f32(x, x.shape());
    x.backend().dropout(y, keep, xc, p, gen.next(static_cast<uint64_t>(x.numel())));
    if (any_requires_grad({&x})) {
        record(y, "dropout", {x}, [keep, p](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dy = contig(dout);
            Tensor dx = new_f32(dy, dy.shape());
            dy.backend().dropout_backward(dx, dy, keep, p);
            d[0] = dx;
        });
    }
    return y;
}

// ---- positions ----

namespace {

// y = the pairs (x1, x2) of x's two halves rotated by the angles whose cosines and sines are given,
// or by minus them (inverse):  y1 = x1 cos -/+ x2 sin,  y2 = x2 cos +/- x1 sin.
// x [..., T, D] in any layout; y contiguous [..., T, D]; cos, sin [T, D/2]. Composed of binary
// kernels, each writing a contiguous half that a copy puts in place (binary outputs are
// contiguous), so every backend runs it.
void rotate_halves(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse) {
    Backend& be = x.backend();
    const int64_t half = x.size(-1) / 2;
    Shape half_shape = x.shape();
    half_shape.back() = half;
    const Tensor x1 = x.view(half_shape, x.strides(), x.offset());
    const Tensor x2 = x.view(half_shape, x.strides(), x.offset() + half * x.strides().back());
    const Tensor c = expand(cos, half_shape), s = expand(sin, half_shape);
    Tensor a = new_f32(x, half_shape), b = new_f32(x, half_shape), r = new_f32(x, half_shape);
    auto write = [&](const Tensor& first, const Tensor& second, BinaryOp combine, int64_t at) {
        be.binary(BinaryOp::mul, a, first, c);
        be.binary(BinaryOp::mul, b, second, s);
        be.binary(combine, r, a, b);
        y.view(half_shape, y.strides(), y.offset() + at).copy_(r);
    };
    write(x1, x2, inverse ? BinaryOp::add : BinaryOp::sub, 0);
    write(x2, x1, inverse ? BinaryOp::sub : BinaryOp::add, half);
}

}  // namespace

Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin) {
    require_float(x, "rotary");
    require_float(cos, "rotary");
    require_float(sin, "rotary");
    if (x.dim() < 2 || x.size(-1) % 2 != 0)
        throw ShapeError("rotary: expected x [..., T, D] with an even head size D, got " + shape_str(x.shape()));
    const Shape table{x.size(-2), x.size(-1) / 2};
    if (cos.shape() != table || sin.shape() != table)
        throw ShapeError("rotary: cos " + shape_str(cos.shape()) + " and sin " + shape_str(sin.shape()) +
                         " must be [T, D/2] = " + shape_str(table) + " for x " + shape_str(x.shape()));
    Tensor y = new_f32(x, x.shape());
    rotate_halves(y, x, cos, sin, false);
    if (any_requires_grad({&x})) {
        // A rotation's Jacobian is its transpose, the rotation by minus the angles: the backward
        // needs only the tables, not x.
        Tensor saved_cos = cos.detach(), saved_sin = sin.detach();
        record(y, "rotary", {x}, [saved_cos, saved_sin](const Tensor& dout, std::vector<Tensor>& d) {
            Tensor dx = new_f32(dout, dout.shape());
            rotate_halves(dx, dout, saved_cos, saved_sin, true);
            d[0] = dx;
        });
    }
    return y;
}

// ---- initialisation ----

void fill_normal(const Tensor& t, float mean_value, float std, RngKey key) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = mean_value + std * philox_normal(key, i);
    t.copy_(Tensor::from_floats(t.backend(), t.shape(), v));
}

void fill_uniform(const Tensor& t, float lo, float hi, RngKey key) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = lo + (hi - lo) * philox_uniform(key, i);
    t.copy_(Tensor::from_floats(t.backend(), t.shape(), v));
}

}  // namespace lab::ops
