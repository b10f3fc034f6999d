// Private to the framework's layers (framework/src/nn): a tensor that several matmuls read,
// rounded for mixed precision once instead of once per matmul. Not in lab/ops.h: plugins reach it
// through the layers that use it (MultiHeadAttention's projections), and the installed headers
// stay as they are.
#pragma once
#include "lab/tensor.h"

namespace lab::ops {

// x as the matmuls multiply it: under mixed precision (Backend::matmul_inputs() bf16) an f32 x
// becomes a contiguous bf16 copy, rounded to nearest even as each matmul would have rounded it
// (from any layout, so a transposed view is rounded and made contiguous in one pass); otherwise
// x itself. ops::linear multiplies a bf16 input as it is. Differentiable: the gradient passes to
// x unchanged (f32), so the input gradients of the matmuls that read the copy sum into x's.
Tensor matmul_input(const Tensor& x);

}  // namespace lab::ops
