// lab::attention::fused_attention: the differentiable op over Backend::attention and
// Backend::attention_backward. It checks shapes and dtypes (errors name them), draws the dropout
// key, runs the fused forward and records one autograd node
// whose backward is the fused backward: the node saves q, k, v (views, no copies), o and lse, that
// is O(B H T D) memory, never a [T, S] probability matrix. Also the variants' `fused` option and
// its auto choice.
#include <memory>
#include <string>
#include <vector>

#include "lab/attention.h"
#include "lab/autograd.h"
#include "lab/backend.h"
#include "lab/error.h"
#include "lab/options.h"

namespace lab::attention {

namespace {

void require_f32_4d(const Tensor& t, const char* name, const char* expected) {
    if (!t.defined())
        throw ShapeError(std::string("fused_attention: ") + name + " is undefined; hint: pass " + expected);
    if (t.dtype() != DType::f32 || t.dim() != 4)
        throw ShapeError(std::string("fused_attention: ") + name + " is " + dtype_name(t.dtype()) + " " +
                         shape_str(t.shape()) + ", expected f32 " + expected + "; hint: split heads with " +
                         "reshape + transpose and convert with Tensor::to(DType::f32)");
}

// An uninitialised f32 gradient for x [B, N, L, D] in x's own layout where x is dense with
// contiguous rows (the projections' [B, L, N, D] memory seen as heads): its way back through the
// head transpose and the reshape to [B, L, C] is then views, where a contiguous [B, N, L, D]
// gradient is copied there, three f32 activations per layer. Otherwise contiguous.
Tensor gradient_like(const Tensor& x) {
    Backend& backend = x.backend();
    if (!x.is_dense() || x.strides()[3] != 1 || x.is_contiguous()) return Tensor::empty(backend, x.shape());
    const Tensor storage = Tensor::empty(backend, {x.numel()});
    return storage.view(x.shape(), x.strides(), 0);
}

}  // namespace

Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args,
                       int64_t window, const Tensor& slopes) {
    require_f32_4d(q, "q", "[B, H, T, D]");
    require_f32_4d(k, "k", "[B, Hkv, S, D]");
    require_f32_4d(v, "v", "[B, Hkv, S, D]");
    const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
    const int64_t Hkv = k.size(1), S = k.size(2);
    if (k.size(0) != B || k.size(3) != D || v.shape() != k.shape())
        throw ShapeError("fused_attention: q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + " and v " +
                         shape_str(v.shape()) + " do not fit q [B, H, T, D], k and v [B, Hkv, S, D]; hint: k and v " +
                         "must have equal shapes and share B and D with q");
    if (Hkv < 1 || H % Hkv != 0)
        throw ShapeError("fused_attention: k " + shape_str(k.shape()) + " has " + std::to_string(Hkv) +
                         " kv heads, which do not divide the " + std::to_string(H) + " query heads of q " +
                         shape_str(q.shape()) + "; hint: choose kv_heads dividing heads");
    if (D < 1)
        throw ShapeError("fused_attention: q " + shape_str(q.shape()) + " has head size 0; hint: D must be >= 1");
    if (window < 0)
        throw ShapeError("fused_attention: window = " + std::to_string(window) +
                         " is negative; hint: use 0 for no window or a positive key count");

    Backend& backend = q.backend();
    AttentionKernelArgs kernel_args;
    kernel_args.scale = args.scale;
    kernel_args.causal = args.causal;
    kernel_args.window = window;

    Tensor key_padding;  // kept alive by the backward closure; the kernel args hold pointers
    if (args.key_padding_mask.defined()) {
        const Tensor& mask = args.key_padding_mask;
        if (mask.dtype() != DType::u8 || mask.shape() != Shape{B, S})
            throw ShapeError("fused_attention: key padding mask is " + std::string(dtype_name(mask.dtype())) + " " +
                             shape_str(mask.shape()) + ", expected u8 [B, S] = " + shape_str({B, S}) +
                             "; hint: one flag per key, nonzero = padding");
        key_padding = mask.contiguous_copy();
    }
    Tensor slopes_c;
    if (slopes.defined()) {
        if (slopes.dtype() != DType::f32 || slopes.shape() != Shape{H})
            throw ShapeError("fused_attention: ALiBi slopes are " + std::string(dtype_name(slopes.dtype())) + " " +
                             shape_str(slopes.shape()) + ", expected f32 [H] = " + shape_str({H}) +
                             "; hint: build them with attention::alibi_slopes(H)");
        slopes_c = slopes.detach().contiguous_copy();
    }
    if (args.training && args.dropout > 0.0f && args.dropout_rng) {
        if (!(args.dropout < 1.0f))
            throw ShapeError("fused_attention: dropout = " + std::to_string(args.dropout) +
                             " must be below 1; hint: use a probability in [0, 1)");
        kernel_args.dropout = args.dropout;
        // The same count and element numbering as softmax_attention's dropout over [B, H, T, S]
        // probabilities, so both draw the same mask from the same generator state.
        kernel_args.dropout_key = args.dropout_rng->next(static_cast<uint64_t>(B * H * T * S));
    }
    auto point_at = [](AttentionKernelArgs& ka, const Tensor& pad, const Tensor& sl) {
        ka.key_padding_mask = pad.defined() ? &pad : nullptr;
        ka.slopes = sl.defined() ? &sl : nullptr;
    };
    point_at(kernel_args, key_padding, slopes_c);

    // o [B, H, T, D] as a view of [B, T, H, D] memory: transposed back to [B, T, C] for the
    // output projection it is contiguous, so no copy is needed there (nor for its gradient here).
    Tensor o = Tensor::empty(backend, {B, T, H, D}).view({B, H, T, D}, {T * H * D, D, H * D, 1}, 0);
    Tensor lse = Tensor::empty(backend, {B, H, T});
    const bool backward = any_requires_grad({&q, &k, &v});
    // What the forward keeps for the backward (AttentionKernelArgs::saved), freed once it ran.
    auto saved = backward ? std::make_shared<std::vector<Tensor>>() : nullptr;
    kernel_args.saved = saved.get();
    backend.attention(o, lse, q, k, v, kernel_args);

    if (backward) {
        Tensor saved_q = q.detach(), saved_k = k.detach(), saved_v = v.detach(), saved_o = o.detach();
        record(o, "fused_attention", {q, k, v},
               [=](const Tensor& dout, std::vector<Tensor>& d) {
                   AttentionKernelArgs ka = kernel_args;
                   point_at(ka, key_padding, slopes_c);
                   Backend& be = dout.backend();
                   Tensor dout_c = dout.strides()[3] == 1 ? dout : dout.contiguous_copy();
                   Tensor dq = gradient_like(saved_q), dk = gradient_like(saved_k), dv = gradient_like(saved_v);
                   ka.saved = saved.get();
                   be.attention_backward(dq, dk, dv, dout_c, saved_q, saved_k, saved_v, saved_o, lse, ka);
                   saved->clear();
                   d[0] = dq;
                   d[1] = dk;
                   d[2] = dv;
               });
    }
    return o;
}

void declare_fused_option(OptionSchema& schema) {
    schema.choice("fused", "auto", {"auto", "true", "false"},
                  "true: the backend's tiled kernel with an online softmax and its own backward, memory O(T); "
                  "false: composed of matmul and softmax ops, memory O(T^2); auto: whichever the backend "
                  "expects to be faster for the precision and shapes of each call");
}

FusedChoice fused_choice(const Options& options) {
    const std::string& value = options.get_string("fused");
    return value == "true" ? FusedChoice::fused : value == "false" ? FusedChoice::composite : FusedChoice::automatic;
}

bool run_fused(FusedChoice choice, const Tensor& q, const Tensor& k, const AttentionCoreArgs& args) {
    if (choice != FusedChoice::automatic) return choice == FusedChoice::fused;
    AttentionKernelArgs kernel_args;  // what the call would pass: which masks, and dropout
    kernel_args.scale = args.scale;
    kernel_args.causal = args.causal;
    if (args.key_padding_mask.defined()) kernel_args.key_padding_mask = &args.key_padding_mask;
    if (args.training && args.dropout > 0.0f && args.dropout_rng) kernel_args.dropout = args.dropout;
    return q.backend().prefers_fused_attention(q.size(2), k.size(2), q.size(3), kernel_args);
}

double core_floats_per_token(const Options& options, int64_t heads, int64_t seq_len) {
    const double h = static_cast<double>(heads);
    return fused_choice(options) == FusedChoice::fused ? h : 2 * h * static_cast<double>(seq_len);
}

}  // namespace lab::attention
