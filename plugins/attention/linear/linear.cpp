// attention/linear: linear attention (Katharopoulos et al. 2020, "Transformers are RNNs: Fast
// Autoregressive Transformers with Linear Attention"). The softmax kernel exp(q . k) is replaced
// by phi(q) . phi(k) with the feature map phi(x) = elu(x) + 1 (sec. 3.2.1), so the sum over keys
// can be taken once for all queries (sec. 3.2):
//   non-causal: out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j) + eps)
//   causal:     the same with both sums over j <= i only (sec. 3.3-3.4, the "RNN" form).
// Not equal to softmax attention under any option; it is a different model.
//
// Causal sums are computed by chunks of c tokens (as in the chunked forms of later linear-
// attention work, e.g. Hua et al. 2022, "Transformer Quality in Linear Time"): inside
// chunk n the masked quadratic form (phi(Q_n) phi(K_n)^T, lower triangular incl. the diagonal)
// V_n; across chunks the state S_n = sum over earlier chunks m < n of phi(K_m)^T V_m (and the
// normaliser z_n likewise: V carries an extra column of ones, so z_n is S_n's last column), all
// chunks' exclusive prefix sums at once as one matmul with the strictly lower-triangular [N, N]
// matrix of ones. Everything is made of ops, so autograd gives the backward.
// Cost per head, N = T / c: time O(T c D + T D^2 + N^2 D^2), memory O(T c + N D^2 + N^2). Keep
// c >= D (else the per-chunk [D, D] states outweigh the tokens) and near sqrt(T) or above (the
// default 64 suits T up to a few thousand). Non-causal: time O(T D^2), memory O(T D + D^2).
//
// Choices: no 1 / sqrt(D) scale on q (Katharopoulos et al. use none; phi is applied to the raw
// projections). Dropout on attention probabilities does not apply (there are none); the block's
// output dropout still does. Padded keys get phi(k) = 0, so they add nothing to either sum.
// Plain multi-head only (kv_heads = heads).
#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

// elu(x) + 1 = relu(x) + exp(min(x, 0)), with min(x, 0) written as x - relu(x): its gradient
// relu'(x) + exp(min(x, 0)) (1 - relu'(x)) is right everywhere, x = 0 included (1), whichever
// value relu' takes at 0.
Tensor elu_plus_one(const Tensor& x) {
    Tensor positive = ops::relu(x);
    return ops::add(positive, ops::exp(ops::sub(x, positive)));
}

class LinearAttention : public MultiHeadAttention {
public:
    LinearAttention(const Options& opts, const AttentionShape& shape, BuildContext& ctx)
        : MultiHeadAttention("attention/linear", shape, ctx), chunk_(opts.get_int("chunk")),
          eps_(static_cast<float>(opts.get_float("eps"))) {}

protected:
    // q [B, H, T, D]; k, v [B, H, S, D] -> [B, H, T, D].
    Tensor core(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionCoreArgs& args) override {
        Tensor phi_q = elu_plus_one(q), phi_k = elu_plus_one(k);
        if (args.key_padding_mask.defined()) {
            const Tensor& pad = args.key_padding_mask;  // [B, S] -> [B, 1, S, 1]
            Tensor key_mask = pad.view({pad.size(0), 1, pad.size(1), 1}, {pad.strides()[0], 0, pad.strides()[1], 0},
                                       pad.offset());
            phi_k = ops::masked_fill(phi_k, key_mask, 0.0f);
        }
        // v with a column of ones, [B, H, S, D + 1]: every sum of phi(k_j) v_j^T then carries
        // sum phi(k_j) in its last column, so one matmul gives numerator and normaliser together
        // (one [c, c] product per chunk kept for the backward, not two).
        Tensor v_ones = ops::concat({v, Tensor::full(v.backend(), {v.size(0), v.size(1), v.size(2), 1}, 1.0)}, -1);
        Tensor sums = args.causal ? causal_sums(phi_q, phi_k, v_ones) : global_sums(phi_q, phi_k, v_ones);
        int64_t D = v.size(3);
        return ops::div(ops::slice(sums, -1, 0, D), ops::add_scalar(ops::slice(sums, -1, D, D + 1), eps_));
    }

private:
    // Every query sees every key: one [D, D + 1] sum shared by all queries.
    // phi_q [B, H, T, D], phi_k [B, H, S, D], v_ones [B, H, S, D + 1] -> [B, H, T, D + 1].
    Tensor global_sums(const Tensor& phi_q, const Tensor& phi_k, const Tensor& v_ones) {
        Tensor kv = ops::matmul(ops::transpose(phi_k, -1, -2), v_ones);  // [B, H, D, D + 1]
        return ops::matmul(phi_q, kv);
    }

    // Query i sees keys j <= i (S == T: self-attention). Shapes as global_sums.
    Tensor causal_sums(const Tensor& phi_q, const Tensor& phi_k, const Tensor& v_ones) {
        Backend& be = phi_q.backend();
        int64_t B = phi_q.size(0), H = phi_q.size(1), T = phi_q.size(2), D = phi_q.size(3), E = D + 1;
        int64_t c = std::min(chunk_, T), N = (T + c - 1) / c, padded = N * c;
        Tensor pq = phi_q, pk = phi_k, pv = v_ones;
        if (padded > T) {
            // Zero rows: a padded key has phi(k) = 0 (and comes after every real query anyway);
            // a padded query's sums are 0 and are cut off below.
            pq = ops::concat({pq, Tensor::zeros(be, {B, H, padded - T, D})}, 2);
            pk = ops::concat({pk, Tensor::zeros(be, {B, H, padded - T, D})}, 2);
            pv = ops::concat({pv, Tensor::zeros(be, {B, H, padded - T, E})}, 2);
        }
        Tensor qc = ops::reshape(pq, {B * H, N, c, D});  // [BH, N, c, D]
        Tensor kc = ops::reshape(pk, {B * H, N, c, D});  // [BH, N, c, D]
        Tensor vc = ops::reshape(pv, {B * H, N, c, E});  // [BH, N, c, D + 1]

        // Inside each chunk: the masked quadratic form.
        Tensor kernel = ops::matmul(qc, ops::transpose(kc, -1, -2));  // [BH, N, c, c]
        kernel = ops::masked_fill(kernel, later_in_chunk(be, c), 0.0f);
        Tensor sums = ops::matmul(kernel, vc);                         // [BH, N, c, D + 1]

        if (N > 1) {
            // Across chunks: each chunk's own sum phi(K_m)^T [V_m, 1], then the exclusive prefix
            // sums over chunks, S_n = sum_{m < n}, as one matmul with [N, N] ones below the diagonal.
            Tensor chunk_kv = ops::matmul(ops::transpose(kc, -1, -2), vc);                  // [BH, N, D, D + 1]
            Tensor state = ops::matmul(earlier_chunks(be, N), ops::reshape(chunk_kv, {B * H, N, D * E}));
            sums = ops::add(sums, ops::matmul(qc, ops::reshape(state, {B * H, N, D, E})));  // [BH, N, c, D + 1]
        }
        sums = ops::reshape(sums, {B, H, padded, E});
        return padded > T ? ops::slice(sums, 2, 0, T) : sums;
    }

    // [c, c] u8, 1 where key j comes after query i inside a chunk (j > i). Cached per c.
    const Tensor& later_in_chunk(Backend& be, int64_t c) {
        auto found = later_masks_.find(c);
        if (found != later_masks_.end()) return found->second;
        std::vector<int64_t> hidden(static_cast<size_t>(c * c));
        for (int64_t i = 0; i < c; ++i)
            for (int64_t j = 0; j < c; ++j) hidden[static_cast<size_t>(i * c + j)] = j > i ? 1 : 0;
        return later_masks_.emplace(c, Tensor::from_ints(be, {c, c}, hidden, DType::u8)).first->second;
    }

    // [N, N] f32, 1 where m < n: row n sums the chunks before chunk n. Cached per N.
    const Tensor& earlier_chunks(Backend& be, int64_t N) {
        auto found = earlier_.find(N);
        if (found != earlier_.end()) return found->second;
        std::vector<float> ones(static_cast<size_t>(N * N), 0.0f);
        for (int64_t n = 0; n < N; ++n)
            for (int64_t m = 0; m < n; ++m) ones[static_cast<size_t>(n * N + m)] = 1.0f;
        return earlier_.emplace(N, Tensor::from_floats(be, {N, N}, ones)).first->second;
    }

    int64_t chunk_;
    float eps_;
    std::map<int64_t, Tensor> later_masks_, earlier_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::PluginDecl decl("linear", "1.0",
                          "linear attention with phi = elu + 1 (Katharopoulos et al. 2020): O(T) time and memory");
    decl.schema
        .integer("chunk", 64,
                 "causal only: tokens per chunk; quadratic inside a chunk, running sums across chunks. "
                 "Time O(T chunk D + (T / chunk)^2 D^2), memory O(T chunk + (T / chunk) D^2): keep it at "
                 "least the head size D and near sqrt(T) or above")
        .at_least(1);
    decl.schema
        .real("eps", 1e-6,
              "added to the normaliser phi(q) . sum phi(k), so a query whose keys are all padding gets 0. "
              "No dropout on attention probabilities here (there are none)")
        .range(1e-12, 1.0);
    decl.attention.supports = {.causal = true, .padding_mask = true};
    // Not exact anywhere: equals_softmax_with stays empty.
    decl.validate = [](const lab::PlanContext& plan) {
        lab::MultiHeadAttention::check_shape("attention/linear", *plan.attention_shape);
    };
    // phi(q), phi(k), [v, 1] and the sums per token (about 4 (D + 1) per head), the in-chunk scores
    // (2 H chunk per token); the (T / chunk) D^2 running states are left out.
    decl.estimate = [](const lab::PlanContext& plan) {
        const lab::AttentionShape& shape = *plan.attention_shape;
        const double D = static_cast<double>(shape.hidden / std::max<int64_t>(1, shape.heads));
        const double chunk = static_cast<double>(std::min(plan.options->get_int("chunk"), plan.train.seq_len));
        return lab::MultiHeadAttention::estimate(shape, 0, static_cast<double>(shape.heads) * (4 * (D + 1) + 2 * chunk));
    };
    registry.add_attention(std::move(decl), [](const lab::Options& opts, const lab::AttentionShape& shape,
                                               lab::BuildContext& ctx) {
        return std::make_shared<LinearAttention>(opts, shape, ctx);
    });
}
