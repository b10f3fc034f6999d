// attention/softmax: multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1),
// softmax(Q K^T / sqrt(D)) V, with causal and key-padding masks. The reference that other
// attention variants are compared against.
#include <cmath>
#include <limits>
#include <map>

#include "lab/error.h"
#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

class SoftmaxAttention : public Attention {
public:
    SoftmaxAttention(const AttentionShape& shape, BuildContext& ctx)
        : shape_(shape), dropout_rng_(&ctx.dropout_rng) {
        if (shape.heads < 1 || shape.hidden % shape.heads != 0)
            throw ConfigError("attention/softmax: hidden size " + std::to_string(shape.hidden) +
                              " is not divisible by heads = " + std::to_string(shape.heads) +
                              "; choose [model] heads that divides [model] hidden");
        Backend& be = *ctx.backend;
        int64_t C = shape.hidden;
        // c_attn: [3C, C] packs the Q, K and V projections (GPT-2 / nanoGPT naming).
        qkv_weight_ = add_parameter("c_attn.weight", Tensor::empty(be, {3 * C, C}));
        proj_weight_ = add_parameter("c_proj.weight", Tensor::empty(be, {C, C}));
        ops::fill_normal(qkv_weight_, 0.0f, 0.02f, ctx.init_rng.next(3 * C * C));
        ops::fill_normal(proj_weight_, 0.0f, 0.02f, ctx.init_rng.next(C * C));
        if (shape.bias) {
            qkv_bias_ = add_parameter("c_attn.bias", Tensor::zeros(be, {3 * C}));
            proj_bias_ = add_parameter("c_proj.bias", Tensor::zeros(be, {C}));
        }
    }

    Tensor forward(const Tensor& x, const AttentionContext& ctx) override {
        int64_t C = shape_.hidden, H = shape_.heads, D = C / H;
        if (x.dim() != 3 || x.size(2) != C)
            throw ShapeError("attention/softmax: expected input [B, T, " + std::to_string(C) + "], got " +
                             shape_str(x.shape()));
        int64_t B = x.size(0), T = x.size(1);
        Tensor qkv = ops::reshape(ops::linear(x, qkv_weight_, qkv_bias_), {B, T, 3, H, D});
        // Views [B, H, T, D] straight out of the packed projection; matmul takes the strides.
        Tensor q = ops::transpose(ops::select(qkv, 2, 0), 1, 2);
        Tensor k = ops::transpose(ops::select(qkv, 2, 1), 1, 2);
        Tensor v = ops::transpose(ops::select(qkv, 2, 2), 1, 2);
        Tensor scores = ops::scale(ops::matmul(q, ops::transpose(k, -1, -2)), 1.0f / std::sqrt(float(D)));  // [B,H,T,T]
        if (ctx.causal) scores = ops::masked_fill(scores, causal_mask(x.backend(), T), -INFINITY);
        if (ctx.padding_mask.defined()) {
            if (ctx.padding_mask.shape() != Shape{B, T})
                throw ShapeError("attention/softmax: padding mask " + shape_str(ctx.padding_mask.shape()) +
                                 " does not match input [B, T] = " + shape_str({B, T}));
            // A large finite value rather than -inf: a row whose keys are all padding stays finite.
            Tensor key_mask = ctx.padding_mask.view({B, 1, 1, T}, {T, 0, 0, 1}, ctx.padding_mask.offset());
            scores = ops::masked_fill(scores, key_mask, -1e30f);
        }
        Tensor att = ops::dropout(ops::softmax(scores), shape_.dropout, training(), *dropout_rng_);
        Tensor y = ops::matmul(att, v);                                       // [B, H, T, D]
        y = ops::reshape(ops::transpose(y, 1, 2), {B, T, C});                 // [B, T, C]
        y = ops::linear(y, proj_weight_, proj_bias_);
        return ops::dropout(y, shape_.dropout, training(), *dropout_rng_);
    }

private:
    // [T, T] u8: 1 above the diagonal (a query never sees later keys). Cached per length.
    const Tensor& causal_mask(Backend& be, int64_t T) {
        auto it = causal_masks_.find(T);
        if (it != causal_masks_.end()) return it->second;
        std::vector<int64_t> m(static_cast<size_t>(T * T));
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < T; ++j) m[static_cast<size_t>(i * T + j)] = j > i;
        return causal_masks_.emplace(T, Tensor::from_ints(be, {T, T}, m, DType::u8)).first->second;
    }

    AttentionShape shape_;
    Generator* dropout_rng_;
    Tensor qkv_weight_, qkv_bias_, proj_weight_, proj_bias_;
    std::map<int64_t, Tensor> causal_masks_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;  // no options: dropout and sizes come from the model
    registry.add_attention({"softmax", "1.0", "multi-head scaled dot-product attention (causal and padding masks)",
                            schema},
                           [](const lab::Options&, const lab::AttentionShape& shape, lab::BuildContext& ctx) {
                               return std::make_shared<SoftmaxAttention>(shape, ctx);
                           });
}
