// The non-virtual parts of the Backend interface: the mixed-precision setting of matmul, and the
// defaults of the fused kernels matmul_add and matmul_gelu_tanh, of the bf16-output kernels unary_bf16,
// unary_backward_bf16 and layer_norm_bf16 and of layer_norm_backward_accumulate (in terms of the
// others) and of prefers_fused_attention.
#include "lab/backend.h"

#include "lab/error.h"
#include "lab/memory.h"

namespace lab {

void Backend::set_matmul_inputs(DType dtype) {
    if (dtype != DType::f32 && dtype != DType::bf16)
        throw ConfigError(std::string("backend ") + name() + ": matmul inputs can be f32 or bf16, not " +
                          dtype_name(dtype));
    matmul_inputs_ = dtype;
}

size_t Backend::available_memory() const {
    return device_kind() == DeviceKind::cpu ? host_available_memory() : 0;  // a device's own is unknown here
}

bool Backend::round_matmul_operands(const Tensor& a, const Tensor& b, Tensor* a16, Tensor* b16) const {
    if (matmul_inputs_ != DType::bf16 || a.dtype() != DType::f32 || b.dtype() != DType::f32) return false;
    const bool native = native_bf16_matmul();
    *a16 = native ? a.to_like(DType::bf16) : a.to_like(DType::bf16).to_like(DType::f32);
    *b16 = native ? b.to_like(DType::bf16) : b.to_like(DType::bf16).to_like(DType::f32);
    return true;
}

bool Backend::prefers_fused_attention(int64_t, int64_t, int64_t, const AttentionKernelArgs&) const { return false; }

void Backend::unary_bf16(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) {
    if (y.dtype() != DType::bf16 || y.shape() != x.shape())
        throw ShapeError(std::string("unary_bf16: y is ") + dtype_name(y.dtype()) + " " + shape_str(y.shape()) +
                         ", expected bf16 of x's shape " + shape_str(x.shape()));
    Tensor y32 = Tensor::empty(*this, x.shape(), DType::f32);
    unary(op, y32, x, alpha);
    copy(y, y32);
}

void Backend::unary_backward_bf16(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y) {
    if (dx.dtype() != DType::bf16 || dx.shape() != dy.shape())
        throw ShapeError(std::string("unary_backward_bf16: dx is ") + dtype_name(dx.dtype()) + " " +
                         shape_str(dx.shape()) + ", expected bf16 of dy's shape " + shape_str(dy.shape()));
    Tensor dx32 = Tensor::empty(*this, dy.shape(), DType::f32);
    unary_backward(op, dx32, dy, x, y);
    copy(dx, dx32);
}

void Backend::layer_norm_bf16(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                              const Tensor* gamma, const Tensor* beta, float eps) {
    if (y.dtype() != DType::bf16 || y.shape() != x.shape())
        throw ShapeError(std::string("layer_norm_bf16: y is ") + dtype_name(y.dtype()) + " " + shape_str(y.shape()) +
                         ", expected bf16 of x's shape " + shape_str(x.shape()));
    Tensor y32 = Tensor::empty(*this, x.shape(), DType::f32);
    layer_norm(y32, mean, rstd, x, gamma, beta, eps);
    copy(y, y32);
}

void Backend::layer_norm_backward_accumulate(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta,
                                             const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                                             const Tensor* gamma) {
    if (dx.dtype() != DType::f32 || dx.shape() != x.shape())
        throw ShapeError(std::string("layer_norm_backward_accumulate: dx is ") + dtype_name(dx.dtype()) + " " +
                         shape_str(dx.shape()) + ", expected f32 of x's shape " + shape_str(x.shape()));
    Tensor part = Tensor::empty(*this, x.shape(), DType::f32);
    layer_norm_backward(part, dgamma, dbeta, dy, x, mean, rstd, gamma);
    binary(BinaryOp::add, dx, dx, part);
}

void Backend::matmul_add(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias,
                         const Tensor& addend) {
    if (addend.dtype() != DType::f32 || addend.shape() != c.shape())
        throw ShapeError(std::string("matmul_add: addend is ") + dtype_name(addend.dtype()) + " " +
                         shape_str(addend.shape()) + ", expected f32 of c's shape " + shape_str(c.shape()));
    copy(c, addend);
    matmul(c, a, b, bias, 1.0f, true);
}

void Backend::matmul_gelu_tanh(const Tensor& c, const Tensor& pre, const Tensor& a, const Tensor& b,
                               const Tensor* bias) {
    matmul(pre, a, b, bias, 1.0f, false);
    unary(UnaryOp::gelu_tanh, c, pre, 0.0f);
}

}  // namespace lab
