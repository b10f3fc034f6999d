// Differentiable ops. Each runs backend kernels and, when an input requires grad, records its
// backward. Plugin authors write forward code with these and get gradients for free.
// Shapes: B batch, T time, C channels, H heads, D head size, V vocabulary, N rows.
#pragma once
#include <cstdint>
#include <vector>

#include "lab/autograd.h"
#include "lab/backend.h"
#include "lab/rng.h"
#include "lab/tensor.h"

namespace lab::ops {

// ---- linear algebra ----
// [..., M, K] @ [..., K, N] -> [..., M, N]; batch dims broadcast; b may be 2-D.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ weight[out, in]^T + bias[out] -> [..., out] (PyTorch / Hugging Face layout).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// gelu(linear(x, weight, bias), true) as one backend call (Backend::matmul_gelu_tanh: the cuda
// backend runs the GELU in cuBLASLt's epilogue), with the same values and gradients.
Tensor linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// residual + linear(x, weight, bias) as one op, for a block's output projection: the product
// starts from the residual (Backend::matmul_add) instead of a separate add reading both. The same
// gradients; the values may differ from add(residual, linear(...)) in the last bit (the sum's order).
Tensor linear_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual);
// residual + dropout(linear(x, weight, bias), p, training, gen): linear_residual when the dropout
// does nothing (not training, or p = 0), else the three ops.
Tensor linear_dropout_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, float p, bool training,
                               Generator& gen, const Tensor& residual);
// gelu_matmul_input(linear(x, weight, bias)) as one op, for an MLP's hidden layer. Under mixed
// precision the GELU's derivative is written straight into the bf16 gradient that the linear's
// backward products read (Backend::unary_backward_bf16): one pass, where a GELU op of its own
// wrote an f32 gradient for the linear to round. The same values; the gradients differ from the
// two ops' only in where the GELU's gradient is rounded (once, as the linear would round it).
// Without mixed precision it is gelu(linear(x, weight, bias)).
Tensor linear_gelu_matmul_input(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- elementwise (numpy broadcasting) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float alpha);       // alpha * x
Tensor add_scalar(const Tensor& x, float alpha);  // x + alpha
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
// gelu(x) (erf form) for a tensor that only matmuls read (the MLP's hidden layer, feeding its
// projection). Under mixed precision (Backend::matmul_inputs() bf16) the result is a bf16 tensor,
// rounded as each value is computed (Backend::unary_bf16): the f32 activation is never stored and
// the matmuls that read it round nothing, since ops::linear multiplies a bf16 input as it is.
// Otherwise it is gelu(x). Its gradient is f32 either way; the backward reads x.
Tensor gelu_matmul_input(const Tensor& x);

// ---- shape (views where the layout allows; copies otherwise) ----
Tensor reshape(const Tensor& x, Shape shape);  // one dim may be -1
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
Tensor select(const Tensor& x, int64_t dim, int64_t index);  // drops `dim` (a view)
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t dim, const std::vector<int64_t>& sizes);
Tensor contiguous(const Tensor& x);
Tensor expand(const Tensor& x, const Shape& shape);  // broadcast view (stride 0)

// ---- reductions ----
Tensor sum(const Tensor& x);                                    // all -> one element
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);

// ---- normalisation, probabilities, losses ----
Tensor softmax(const Tensor& x);      // over the last dim
Tensor log_softmax(const Tensor& x);  // over the last dim
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps = 1e-5f);
// layer_norm(x, gamma, beta) for a tensor that only matmuls read (a pre-LN block's normalised input
// to its attention or MLP). Under mixed precision the result is bf16, rounded as each value is
// written (Backend::layer_norm_bf16): no f32 output is stored and the linears that read it round
// nothing. Otherwise it is layer_norm(x, gamma, beta). Its gradient is f32 either way.
Tensor layer_norm_matmul_input(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps = 1e-5f);
// Mean cross entropy of logits [N, V] against integer targets [N]; rows whose target equals
// ignore_index are left out of the mean.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

// ---- lookups, masks, dropout ----
Tensor embedding(const Tensor& ids, const Tensor& table);  // ids [...] -> [..., C]
// mask (u8, broadcastable to x): where nonzero, the output is value.
Tensor masked_fill(const Tensor& x, const Tensor& mask, float value);
// Inverted dropout; identity when p == 0 or !training. Draws numel numbers from gen.
Tensor dropout(const Tensor& x, float p, bool training, Generator& gen);

// ---- positions ----
// Rotary position embedding (Su et al. 2021, eq. 34) in the half-split pairing of GPT-NeoX and
// Hugging Face Llama ("rotate_half"): channel i < D/2 turns together with channel i + D/2, by
// the angle whose cosine and sine are cos[t, i] and sin[t, i] at position t:
//   x [..., T, D], cos and sin [T, D/2] (constants, no gradient)
//   -> y[..., :D/2] = x1 cos - x2 sin,  y[..., D/2:] = x2 cos + x1 sin   (x1, x2 = x's halves)
// attention::rotary_tables makes the tables. Differentiable in x; the backward rotates back.
Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin);

// ---- initialisation (no autograd) ----
void fill_normal(const Tensor& t, float mean, float std, RngKey key);
void fill_uniform(const Tensor& t, float lo, float hi, RngKey key);

// Broadcast shape of a and b; throws ShapeError naming both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace lab::ops
