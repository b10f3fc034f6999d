// Backend: a device's memory and the kernels that differentiable ops are built from.
//
// Kernel contract (every backend follows it; the conformance suite, tests/plugins/test_backend_ops*.cpp,
// checks every backend plugin against HostBackend):
//  - Outputs are preallocated by the caller with the documented shape and are contiguous.
//  - Inputs are contiguous f32 unless a kernel says otherwise. matmul, binary and masked_fill
//    accept arbitrary strides (stride 0 for broadcast dimensions); copy accepts any layout/dtype.
//  - Shapes use one letter vocabulary: N rows, C columns/channels, V vocabulary.
// The framework's HostBackend (host_backend.h) implements every kernel with plain C++ loops;
// optimised backends derive from it or implement the interface afresh. Kernels of operations that
// plugins define (AdamW and SGD updates among them) are in the kernel registry (lab/kernels.h).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lab/allocator.h"
#include "lab/rng.h"
#include "lab/tensor.h"

namespace lab {

enum class DeviceKind { cpu, cuda };

enum class UnaryOp {
    relu, gelu /* erf form */, gelu_tanh, tanh, sigmoid, exp, log, sqrt, neg, square,
    scale /* y = alpha * x */, add_scalar /* y = x + alpha */
};
enum class BinaryOp { add, sub, mul, div };

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);

// Options of the fused attention kernel (Backend::attention). Positions: query i of T, key j of
// S; a query's visible keys are those not hidden by any of:
//   causal:  j > i + (S - T)                (queries aligned with the last keys)
//   window:  causal: j <= i + (S - T) - window; otherwise |i + (S - T) - j| >= window  (0: none)
//   key_padding_mask[b, j] != 0
// Scores: s_ij = scale * q_i . k_j - slopes[h] * |i + (S - T) - j| (slopes optional, ALiBi).
// A query with no visible key gets a zero output and lse = -inf.
struct AttentionKernelArgs {
    float scale = 1.0f;
    bool causal = false;
    int64_t window = 0;
    const Tensor* key_padding_mask = nullptr;  // [B, S] u8, contiguous
    const Tensor* slopes = nullptr;            // [H] f32, contiguous
    // Dropout on the probabilities: p_ij is kept iff philox_uniform(dropout_key, ((b * H + h) * T
    // + i) * S + j) >= dropout, and kept ones are scaled by 1 / (1 - dropout). The backward
    // regenerates the same mask from the key.
    float dropout = 0.0f;
    RngKey dropout_key;
    // Set by a caller that will run attention_backward on this call's inputs: attention() may
    // keep there what its backward would otherwise recompute (the host's AMX kernel keeps q, k and
    // v packed in bf16), and attention_backward reads it. Null: nothing is kept.
    std::vector<Tensor>* saved = nullptr;
};

struct BackendStats {
    AllocatorStats memory;
    uint64_t primitives_created = 0;  // kernels/plans built (cached by shape after the first)
    uint64_t primitive_cache_hits = 0;
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual std::string name() const = 0;
    virtual std::string device_info() const = 0;      // e.g. "cpu: AMD ..., 2 threads, oneDNN 2.6.3"
    virtual DeviceKind device_kind() const = 0;
    virtual void synchronize() {}
    virtual BackendStats stats() const = 0;
    // Starts a new peak: stats().memory.peak_bytes_in_use becomes the bytes in use now.
    virtual void reset_peak_memory() = 0;
    // Versions of the libraries the backend computes with ({"oneDNN": "2.6.3"}), for provenance.
    virtual std::map<std::string, std::string> library_versions() const { return {}; }

    // ---- memory ----
    virtual std::shared_ptr<Storage> alloc(size_t bytes) = 0;
    virtual void copy_from_host(const Tensor& dst, const void* src) = 0;  // dst contiguous
    virtual void copy_to_host(void* dst, const Tensor& src) = 0;          // src contiguous
    // dst[i] = convert(src[i]) for any layouts and dtypes of equal shape.
    virtual void copy(const Tensor& dst, const Tensor& src) = 0;
    virtual void fill(const Tensor& dst, double value) = 0;               // dst contiguous, any dtype

    // ---- dense math ----
    // c[..., M, N] = alpha * a[..., M, K] @ b[..., K, N] (+ bias[N]) (+ c when accumulate).
    // a, b, c have equal rank (2 to 4); batch dims of a or b may be 1 (broadcast); a and b may
    // have any strides (transposed views included); a and b are f32 or bf16 (bf16: f32 accumulate).
    virtual void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias,
                        float alpha, bool accumulate) = 0;
    // c = a @ b (+ bias[N]) + addend, addend f32 of c's shape (any strides): a linear layer whose
    // output joins a residual stream (ops::linear_residual). The default copies addend into c and
    // multiplies with accumulate; backends override it where the product can start from addend
    // (the onednn backend's AMX kernel loads its tiles from it), so no separate add reads both.
    virtual void matmul_add(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias,
                            const Tensor& addend);

    // c = gelu_tanh(pre) with pre = a @ b (+ bias), both written: a linear layer followed
    // by GPT-2's tanh-approximated GELU, keeping the pre-activation for the backward. Operands as
    // for matmul; c and pre contiguous f32 of one shape. The default runs matmul, then unary; the
    // cuda backend computes both in one cuBLASLt call (GELU_AUX_BIAS epilogue).
    virtual void matmul_gelu_tanh(const Tensor& c, const Tensor& pre, const Tensor& a, const Tensor& b,
                                  const Tensor* bias);

    // Mixed precision ([experiment] precision = bf16): with DType::bf16, matmul rounds f32 a and b
    // to bf16 (nearest even) and multiplies those, accumulating and writing f32, as autocast does
    // for matmul inputs; weights, gradients and every other kernel stay f32. DType::f32 (the
    // default) leaves operands alone. Throws ConfigError for another dtype.
    void set_matmul_inputs(DType dtype);
    DType matmul_inputs() const { return matmul_inputs_; }

    // y = op(x) elementwise; alpha for scale/add_scalar.
    virtual void unary(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) = 0;
    // y = op(x) rounded to bf16 (nearest even) as it is written: y bf16, x f32 of y's shape. For a
    // result whose only readers are bf16 matmuls (ops::gelu_matmul_input), so that no f32 copy is
    // stored. The default runs unary into an f32 temporary and copies; backends override it where
    // one pass is faster (HostBackend: gelu).
    virtual void unary_bf16(UnaryOp op, const Tensor& y, const Tensor& x, float alpha);
    // dx = dy * op'(x) (y = op(x) given too, for ops whose derivative is cheaper from y).
    // Defined for relu, gelu, gelu_tanh, tanh, sigmoid, exp, log, sqrt, square.
    virtual void unary_backward(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x,
                                const Tensor& y) = 0;
    // unary_backward with dx rounded to bf16 (nearest even) as it is written: dx bf16; dy, x (and
    // y) f32 of dx's shape. For a gradient whose only readers are bf16 matmuls (the linear before
    // ops::linear_gelu_matmul_input's GELU). The default runs unary_backward into an f32 temporary
    // and copies; backends override it where one pass is faster (HostBackend: gelu).
    virtual void unary_backward_bf16(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x,
                                     const Tensor& y);
    // c = a op b; a and b have c's shape with any strides (stride 0 = broadcast).
    virtual void binary(BinaryOp op, const Tensor& c, const Tensor& a, const Tensor& b) = 0;
    // y = sum of x over the dims where y's size is 1 and x's is not (y has x's rank).
    virtual void reduce_sum(const Tensor& y, const Tensor& x) = 0;
    // out[0] (+)= sum(x^2); out is a one-element f32 tensor.
    virtual void sum_squares(const Tensor& out, const Tensor& x, bool accumulate) = 0;

    // ---- normalisation and probabilities (over the last dim; x is [N, C]) ----
    virtual void softmax(const Tensor& y, const Tensor& x, bool log) = 0;
    virtual void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) = 0;
    // y = (x - mean) * rstd * gamma + beta; mean, rstd: [N]; gamma, beta: [C] or null.
    virtual void layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                            const Tensor* gamma, const Tensor* beta, float eps) = 0;
    // layer_norm with y rounded to bf16 (nearest even) as it is written: y bf16, everything else as
    // there. For an output whose only readers are bf16 matmuls (ops::layer_norm_matmul_input). The
    // default runs layer_norm into an f32 temporary and copies; HostBackend writes it in one pass.
    virtual void layer_norm_bf16(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                                 const Tensor* gamma, const Tensor* beta, float eps);
    // dgamma, dbeta are accumulated into (+=) when given.
    virtual void layer_norm_backward(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta,
                                     const Tensor& dy, const Tensor& x, const Tensor& mean,
                                     const Tensor& rstd, const Tensor* gamma) = 0;
    // layer_norm_backward with dx added into (+=) instead of written: for the gradient the input
    // already has from another reader (autograd's Node::accumulate_into; a pre-LN block's
    // residual), so that no separate sum reads both. The default runs layer_norm_backward into an
    // f32 temporary and adds; HostBackend does it in one pass.
    virtual void layer_norm_backward_accumulate(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta,
                                                const Tensor& dy, const Tensor& x, const Tensor& mean,
                                                const Tensor& rstd, const Tensor* gamma);

    // ---- fused attention (FlashAttention-style: tiled, online softmax, no [T, S] matrix) ----
    // o [B, H, T, D] = softmax(scores, masked) v (see AttentionKernelArgs); lse [B, H, T] f32 =
    // logsumexp over visible keys of each query's scores (kept for the backward). q [B, H, T, D],
    // k and v [B, Hkv, S, D] f32 with any strides; Hkv divides H and head h reads kv head
    // h / (H / Hkv). lse contiguous; o's rows (its last dim) contiguous, in any order of rows.
    virtual void attention(const Tensor& o, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionKernelArgs& args) = 0;
    // Gradients of the above (dq [B, H, T, D], dk and dv [B, Hkv, S, D], overwritten; dense with
    // contiguous rows in any order, e.g. [B, T, H, D] memory, the layout of the projections q, k
    // and v come from) given dout [B, H, T, D] (rows contiguous) and the forward's inputs, o and
    // lse. Probabilities are
    // recomputed tile by tile (Dao et al. 2022, algorithm 2).
    virtual void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                    const Tensor& lse, const AttentionKernelArgs& args) = 0;
    // True when attention() and attention_backward() above are expected to be faster than the
    // composite (the matmul, softmax, mask and dropout ops of attention::softmax_attention) for T
    // queries, S keys and head size D with these masks and dropout (args' tensors may be null:
    // only which are given counts), under the current matmul inputs: what the attention variants'
    // `fused = auto` asks. Each backend answers from its kernels' measured speed; this default
    // keeps the composite.
    virtual bool prefers_fused_attention(int64_t T, int64_t S, int64_t D, const AttentionKernelArgs& args) const;

    // ---- lookups and losses ----
    // y[n, :] = table[ids[n], :]; ids i32 or i64 [N]; an id outside [0, V) throws ShapeError.
    virtual void embedding(const Tensor& y, const Tensor& ids, const Tensor& table) = 0;
    // dtable[ids[n], :] += dy[n, :]
    virtual void embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids) = 0;
    // loss[n] = logsumexp(logits[n]) - logits[n, t[n]], or 0 where t[n] == ignore_index;
    // lse[n] = logsumexp(logits[n]) is kept for the backward. targets i32 or i64 [N].
    virtual void cross_entropy(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                               const Tensor& targets, int64_t ignore_index) = 0;
    // dlogits[n, v] = dloss[n] * (softmax(logits[n])[v] - [v == t[n]]), 0 for ignored rows.
    virtual void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                                        const Tensor& lse, const Tensor& targets, int64_t ignore_index) = 0;

    // ---- masks and dropout ----
    // y = mask ? value : x; mask u8 with x's shape and any strides.
    virtual void masked_fill(const Tensor& y, const Tensor& x, const Tensor& mask, float value) = 0;
    // keep[i] = philox_uniform(key, i) >= p; y = keep ? x / (1 - p) : 0; keep is u8.
    virtual void dropout(const Tensor& y, const Tensor& keep, const Tensor& x, float p, RngKey key) = 0;
    virtual void dropout_backward(const Tensor& dx, const Tensor& dy, const Tensor& keep, float p) = 0;

    // ---- kernels that plugins add ----
    // Operations that plugins define (an optimizer's update, an attention variant's fused kernel)
    // are not Backend methods: their kernels live in the kernel registry (lab/kernels.h), by
    // (operation, backend name), with the operation's host kernel as the fallback.
    // The queue this backend's kernels run on, for the kernels other plugins add for it: a
    // cudaStream_t for cuda (work queued there stays ordered with the backend's own); null where
    // kernels run as they are called (the host backends).
    virtual void* native_stream() const { return nullptr; }

protected:
    // For matmul implementations: when matmul_inputs() is bf16 and a and b are f32, sets *a16 and
    // *b16 to their roundings to bf16 and returns true (the caller multiplies those instead): bf16
    // tensors where native_bf16_matmul(), else f32 tensors holding the bf16 values (the same
    // products, computed by the f32 kernels).
    bool round_matmul_operands(const Tensor& a, const Tensor& b, Tensor* a16, Tensor* b16) const;

public:
    // True when the device has bf16 instructions, so that bf16 operands multiply faster than f32
    // ones (a CPU with AVX512-BF16 or AMX, a GPU). Elsewhere precision = bf16 is emulated: the
    // operands are rounded to bf16 and multiplied as f32, which is slower than f32 alone, and the
    // trainer says so when a run starts.
    virtual bool native_bf16_matmul() const { return false; }

    // Bytes new tensors may still take on the device, for the memory check before a run builds
    // its model (lab/run_plan.h); 0 = unknown (nothing is refused). Default: for a cpu backend the
    // host's (host_available_memory: MemAvailable, or the cgroup's limit when lower), else 0; a
    // device backend overrides it with its free device memory plus the blocks its allocator caches.
    virtual size_t available_memory() const;

private:
    DType matmul_inputs_ = DType::f32;
};

}  // namespace lab
