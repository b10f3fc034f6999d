// attention/differential: differential attention (Ye, Dong, Xia, Sun, Zhu, Huang and Wei 2024,
// "Differential Transformer", arXiv:2410.05258, ICLR 2025). Each head splits its query and key
// into halves q1, q2, k1, k2 of D / 2 and subtracts two softmax maps, cancelling the attention
// both give to irrelevant context ("attention noise"):
//   DiffAttn = (softmax(q1 k1^T / sqrt(D/2)) - lambda softmax(q2 k2^T / sqrt(D/2))) v     eq. (1)
//   lambda   = exp(lambda_q1 . lambda_k1) - exp(lambda_q2 . lambda_k2) + lambda_init       eq. (2)
//   lambda_init = 0.8 - 0.6 exp(-0.3 (l - 1)),  l the 1-based layer (AttentionShape::layer + 1)
//   head     = (1 - lambda_init) RMSNorm(DiffAttn), the norm over each head's D outputs   eq. (3)
// followed by MultiHeadAttention's output projection. lambda_q1, lambda_k1, lambda_q2, lambda_k2
// are learned vectors of D / 2 drawn N(0, 0.1), shared by the heads of one layer; the RMSNorm
// (eps = norm_eps) has one learned weight of D, initialised to 1, also shared by the heads. Names
// and these choices follow the authors' reference code (microsoft/unilm, Diff-Transformer:
// multihead_diffattn.py, parameters lambda_q1 ... and subln.weight).
//
// Deviations and choices:
//   - Heads: the paper halves the number of heads against a softmax baseline (a head's v is 2d
//     for q1, k1 of d) to match parameters; here [model] heads decides (D = hidden / heads, q1
//     and k1 of D / 2, v of D), so at equal heads the parameter count equals attention/softmax's
//     plus 3 D per layer (the four lambda vectors and the norm weight). Halve heads yourself for
//     the paper's setting.
//   - The value is not split: both maps multiply the same v of D, as in the paper's eq. (1).
//   - Dropout (AttentionShape::dropout) acts on the difference map, as in the authors' code: both
//     maps draw the same mask (the generator is rewound between them), so dropping each map's
//     weights is dropping A1 - lambda A2's.
//   - The paper's SwiGLU and pre-RMSNorm of the surrounding block belong to the model.
// Each map is attention::softmax_attention (fused = false: q1 and k1 as D / 2 slices) or
// attention::fused_attention (fused = true: the backend's tiled kernel takes q, k and v of one
// head size, so the other half of q is zeroed rather than sliced; q k^T then equals q1 k1^T), so
// causal and padding masks and queries that are the last T of S keys (a KV cache) are theirs.
// A1 v - lambda A2 v = (A1 - lambda A2) v: each map is applied to v on its own.
//
// Cost per head: two softmax maps, q.k over D / 2 each, each applied to v of D: about 1.5x the
// matmul work of attention/softmax. fused = false keeps two [B, H, T, S] maps (O(T S) memory, about
// 2x attention/softmax's); fused = true has O(T) memory and two kernel calls, each as costly as
// attention/softmax's one (q.k over D with half of q zero).
#include <cmath>
#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

// What the variant needs of the shape beyond MultiHeadAttention's rules (its validate hook and
// constructor both call it).
void check_differential_shape(const AttentionShape& shape) {
    MultiHeadAttention::check_shape("attention/differential", shape);
    const int64_t D = shape.hidden / shape.heads;
    if (D % 2 != 0)
        throw ConfigError("attention/differential: head size D = hidden / heads = " +
                          std::to_string(shape.hidden) + " / " + std::to_string(shape.heads) + " = " +
                          std::to_string(D) + " is odd, but q and k split into two halves of D / 2; choose [model] "
                          "heads so that hidden / heads is even");
    if (shape.layer < 0)
        throw ConfigError("attention/differential: layer = " + std::to_string(shape.layer) +
                          " is negative; the model must set AttentionShape::layer to the 0-based block index");
}

class DifferentialAttention : public MultiHeadAttention {
public:
    DifferentialAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/differential", shape, ctx), fused_(opts.get_bool("fused")),
          norm_eps_(static_cast<float>(opts.get_float("norm_eps"))),
          lambda_init_(0.8f - 0.6f * std::exp(-0.3f * static_cast<float>(shape.layer))) {
        const int64_t D = head_dim(), half = D / 2;
        check_differential_shape(shape);
        Backend& be = *ctx.backend;
        for (const char* name : {"lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"}) {
            Tensor p = add_parameter(name, Tensor::empty(be, {half}));
            ops::fill_normal(p, 0.0f, 0.1f, ctx.init_rng.next(static_cast<uint64_t>(half)));
            lambdas_.push_back(p);
        }
        norm_weight_ = add_parameter("subln.weight", Tensor::full(be, {D}, 1.0));
        // Masks that keep one half of a query for the fused path (q1 = q * first, q2 = q * second).
        std::vector<float> first(static_cast<size_t>(D), 0.0f), second(static_cast<size_t>(D), 1.0f);
        for (int64_t d = 0; d < half; ++d) first[static_cast<size_t>(d)] = 1.0f, second[static_cast<size_t>(d)] = 0.0f;
        first_half_ = Tensor::from_floats(be, {D}, first);
        second_half_ = Tensor::from_floats(be, {D}, second);
    }

    float lambda_init() const { return lambda_init_; }

protected:
    // q [B, H, T, D]; k, v [B, Hkv, S, D] -> [B, H, T, D].
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        const int64_t D = q.size(3), half = D / 2;
        AttentionCoreArgs map_args = args;
        map_args.scale = 1.0f / std::sqrt(static_cast<float>(half));
        // Dropout acts on the difference map A1 - lambda A2 (as in the authors' code), i.e. one mask
        // for both maps: the second map draws from the generator position the first drew from, so
        // (M A1 / (1 - p)) v - lambda (M A2 / (1 - p)) v = (M (A1 - lambda A2) / (1 - p)) v.
        Generator* rng = args.training && args.dropout > 0.0f ? args.dropout_rng : nullptr;
        const uint64_t mask_offset = rng ? rng->offset() : 0;
        auto same_mask = [&] { if (rng) rng->set_offset(mask_offset); };
        Tensor a1v, a2v;  // A1 v, A2 v: [B, H, T, D]
        if (fused_) {
            a1v = attention::fused_attention(ops::mul(q, first_half_), k, v, map_args);
            same_mask();
            a2v = attention::fused_attention(ops::mul(q, second_half_), k, v, map_args);
        } else {
            a1v = attention::softmax_attention(ops::slice(q, 3, 0, half), ops::slice(k, 3, 0, half), v, map_args);
            same_mask();
            a2v = attention::softmax_attention(ops::slice(q, 3, half, D), ops::slice(k, 3, half, D), v, map_args);
        }
        Tensor diff = ops::sub(a1v, ops::mul(a2v, lambda()));  // eq. (1)
        // RMSNorm over each head's D outputs, then (1 - lambda_init): eq. (3).
        Tensor mean_square = ops::mean(ops::square(diff), -1, true);  // [B, H, T, 1]
        Tensor normed = ops::div(diff, ops::sqrt(ops::add_scalar(mean_square, norm_eps_)));
        return ops::scale(ops::mul(normed, norm_weight_), 1.0f - lambda_init_);
    }

private:
    // eq. (2): one scalar per layer, shared by its heads; differentiable in the four vectors.
    Tensor lambda() const {
        Tensor first = ops::exp(ops::sum(ops::mul(lambdas_[0], lambdas_[1])));
        Tensor second = ops::exp(ops::sum(ops::mul(lambdas_[2], lambdas_[3])));
        return ops::add_scalar(ops::sub(first, second), lambda_init_);
    }

    bool fused_;
    float norm_eps_;
    float lambda_init_;            // 0.8 - 0.6 exp(-0.3 (l - 1)), l = layer + 1
    std::vector<Tensor> lambdas_;  // lambda_q1, lambda_k1, lambda_q2, lambda_k2: [D / 2] each
    Tensor norm_weight_;           // subln.weight [D]
    Tensor first_half_, second_half_;  // [D] 0/1 masks of the fused path
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl("differential", "1.0",
                          "differential attention: the difference of two softmax maps, per-head RMSNorm "
                          "(Ye et al. 2024, Differential Transformer)");
    decl.schema.boolean("fused", false,
                        "each of the two maps by the backend's tiled kernel with an online softmax: memory O(T), "
                        "not O(T^2); false = two composite softmax_attention maps (the reference)");
    decl.schema
        .real("norm_eps", 1e-5, "eps of the per-head RMSNorm, x / sqrt(mean(x^2) + eps) (the reference code's 1e-5)")
        .range(1e-12, 1.0);
    // kv_cache: both maps are softmax_attention / fused_attention, which align queries with the last keys.
    decl.attention.supports = {.causal = true, .padding_mask = true, .kv_cache = true};
    // Not exact anywhere: no option removes the second map or the norm.
    decl.validate = [](const lab::PlanContext& plan) { check_differential_shape(*plan.attention_shape); };
    // Two maps: composed, their scores and probabilities (4 H T per token); fused, two log-sum-exps.
    // Its own parameters: lambda_q1, k1, q2, k2 (D / 2 each) and the norm's gain (D).
    decl.estimate = [](const lab::PlanContext& plan) {
        const lab::AttentionShape& shape = *plan.attention_shape;
        const bool fused = plan.options->get_bool("fused");
        const int64_t D = shape.hidden / shape.heads;
        return lab::MultiHeadAttention::estimate(shape, 0, fused ? 2 * static_cast<double>(plan.attention_shape->heads) : 4 * static_cast<double>(plan.attention_shape->heads * plan.train.seq_len), 4 * (D / 2) + D);
    };
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<DifferentialAttention>(opts, shape, ctx);
    });
}
