// The attention conformance check's dropout property (attention_check.h): in training mode at
// p = 0.1 a plugin drops a share p of its attention weights and scales the rest by 1 / (1 - p)
// (inverted dropout keeps each weight's expectation); in eval mode it drops nothing.
//
// The weights are observed from outside the core through a probe: MultiHeadAttention's parameters
// are set so that the output exposes them. With q = k = 0 every score is 0 (plus whatever bias or
// window the variant adds), x_t = e_t (one-hot position, t < D) and the value projection the
// identity in every head, v_j = e_j, so the context of head h is row t of its weights:
// context[t, h D + j] = weight(h, t, j). The output projection is the identity with bias 1:
// y = dropout_out(context + 1). The block's own output dropout (framework code) zeroes whole
// elements; context + 1 >= 1 elsewhere, so y = 0 marks exactly the output-dropped elements, and
// every other one gives the weight as y (1 - p) - 1. Each weight is compared with the same
// weight without dropout (a second block built at p = 0): exactly 0 is dropped, anything else
// must be the weight times 1 / (1 - p). That last part holds only for a core whose context is
// linear in v (doubling v doubles it); a core that normalises its context (differential
// attention's per-head RMSNorm) shows which weights it dropped but not their scale, and for it the
// check says so instead of judging the scale.
#include <map>
#include <string>

#include "attention_check_checker.h"

namespace lab::attention_check_detail {
namespace {

// Probe sizes: D must be at least S for one-hot values; 4 heads of 32 over 32 positions give
// 4096 weights per forward, and 16 forwards (fresh dropout masks each) ~59,000 that the output
// dropout leaves visible.
constexpr int64_t kProbeHeads = 4, kProbeHeadDim = 32, kProbeSeqLen = 32, kProbeForwards = 16;
// A weight below this is not observed (a far key under ALiBi, f32 rounding of y (1 - p) - 1 ~1e-7
// would be a sizable fraction of it).
constexpr double kObservable = 1e-3;
// Dropped: within 1e-3 of the weight from 0; kept: within 1e-3 (relative) of weight / (1 - p).
// f32 rounding of y (1 - p) - 1 is ~1e-7 absolute, <= 1e-4 of any observed weight.
constexpr double kWeightTolerance = 1e-3;
// The dropped share of n observed weights is binomial: standard deviation sqrt(p (1 - p) / n),
// 0.0012 at n = 59,000. Five of them (0.006) fail a right plugin with probability < 1e-6 (and the
// draws are seeded, so a verdict reproduces); a rate off by a fifth (0.08 or 0.12) is ~17 away.
constexpr double kDropSigmas = 5.0;

// Sets the probe parameters, with v_j = value_gain e_j; returns what is missing ("" when the block
// can be probed).
std::string set_probe_parameters(Attention& module, Backend& backend, float value_gain = 1.0f) {
    auto* block = dynamic_cast<MultiHeadAttention*>(&module);
    if (!block) return "it is no MultiHeadAttention";
    std::map<std::string, Tensor> params;
    for (auto& [name, p] : module.named_parameters()) params[name] = p;
    const int64_t H = block->heads(), Hkv = block->kv_heads(), D = block->head_dim(), C = H * D;
    const Shape qkv_shape{(H + 2 * Hkv) * D, C};
    for (const auto& [name, shape] : std::vector<std::pair<std::string, Shape>>{
             {"c_attn.weight", qkv_shape},
             {"c_attn.bias", {qkv_shape[0]}},
             {"c_proj.weight", {C, C}},
             {"c_proj.bias", {C}}}) {
        auto it = params.find(name);
        if (it == params.end()) return "it has no parameter " + name;
        if (it->second.shape() != shape)
            return name + " is " + shape_str(it->second.shape()) + ", not " + shape_str(shape);
    }
    NoGradGuard no_grad;
    std::vector<float> qkv(static_cast<size_t>(shape_numel(qkv_shape)), 0.0f);  // q, k rows 0
    for (int64_t g = 0; g < Hkv; ++g)
        for (int64_t d = 0; d < D; ++d) qkv[static_cast<size_t>(((H + Hkv + g) * D + d) * C + d)] = value_gain;
    std::vector<float> proj(static_cast<size_t>(C * C), 0.0f);
    for (int64_t c = 0; c < C; ++c) proj[static_cast<size_t>(c * C + c)] = 1.0f;
    params["c_attn.weight"].copy_(Tensor::from_floats(backend, qkv_shape, qkv));
    params["c_attn.bias"].copy_(Tensor::zeros(backend, {qkv_shape[0]}));
    params["c_proj.weight"].copy_(Tensor::from_floats(backend, {C, C}, proj));
    params["c_proj.bias"].copy_(Tensor::full(backend, {C}, 1.0));
    return "";
}

}  // namespace

AttentionCheckResult Checker::dropout() {
    AttentionCheckResult result{"dropout", Status::skipped, ""};
    const int64_t H = kProbeHeads, D = kProbeHeadDim, T = kProbeSeqLen, C = H * D;
    const double p = kCheckDropout;
    Instance dropped = build(name_, options_, AttentionShape{C, H, kCheckDropout, true}, 1, T, false);
    Instance plain = build(name_, options_, AttentionShape{C, H, 0.0f, true}, 1, T, false);
    for (Instance* inst : {&dropped, &plain}) {
        const std::string missing = set_probe_parameters(*inst->module, backend_);
        if (!missing.empty()) {
            result.detail = "the probe sets MultiHeadAttention's c_attn.* and c_proj.* to expose the attention "
                            "weights in the output, and attention/" + name_ + " cannot be probed: " + missing;
            return result;
        }
    }
    const Shape shape{1, T, C};
    std::vector<float> x(static_cast<size_t>(T * C), 0.0f);
    for (int64_t t = 0; t < T; ++t) x[static_cast<size_t>(t * C + t)] = 1.0f;
    const Call call{false, {}};
    // The weights without dropout: y = context + 1 (plain has no output dropout either).
    const std::vector<float> reference = forward_values(*plain.module, shape, x, call);
    // Is the context linear in v? Then the kept weights' scale shows in the output.
    set_probe_parameters(*plain.module, backend_, 2.0f);
    const std::vector<float> doubled = forward_values(*plain.module, shape, x, call);
    set_probe_parameters(*plain.module, backend_);
    bool linear_in_values = true;
    for (size_t i = 0; i < reference.size() && linear_in_values; ++i) {
        const double context = reference[i] - 1.0;
        linear_in_values = std::fabs((doubled[i] - 1.0) - 2.0 * context) <=
                           kWeightTolerance * std::max(std::fabs(context), kObservable);
    }
    auto weight_text = [&](size_t i) {  // element [t, h D + j] of the output
        const int64_t t = static_cast<int64_t>(i) / C, c = static_cast<int64_t>(i) % C;
        return "head " + std::to_string(c / D) + ", query " + std::to_string(t) + ", key " + std::to_string(c % D);
    };

    result.status = Status::failed;
    const std::string train_where = "non-causal, " + Mode{true, kCheckDropout}.label() + ", " + lengths_text(T, T);
    int64_t observed = 0, dropped_count = 0, changed = 0, unscaled = 0;
    std::string first_unscaled;
    for (int64_t r = 0; r < kProbeForwards; ++r) {
        const std::vector<float> y = forward_values(*dropped.module, shape, x, call);
        for (size_t i = 0; i < y.size(); ++i) {
            const double weight = reference[i] - 1.0;
            if (y[i] == 0.0f || !(weight > kObservable)) continue;  // dropped by the output dropout, or too small
            const double seen = static_cast<double>(y[i]) * (1.0 - p) - 1.0;
            ++observed;
            if (std::fabs(seen - weight) > kWeightTolerance * weight) ++changed;
            if (std::fabs(seen) <= kWeightTolerance * weight) {
                ++dropped_count;
            } else if (linear_in_values && !(std::fabs(seen * (1.0 - p) - weight) <= kWeightTolerance * weight)) {
                if (unscaled++ == 0)
                    first_unscaled = weight_text(i) + " (sequence 0) is " + num(weight) + " without dropout and " +
                                     num(seen) + " with it (ratio " + num(seen / weight) + ")";
            }
        }
    }
    if (observed == 0) {
        result.status = Status::skipped;
        result.detail = "no attention weight above " + num(kObservable) + " to observe in the probe";
        return result;
    }
    if (changed == 0) {
        // The context equals the no-dropout context exactly: no dropout on attention weights.
        if (info_.attention.equals_softmax_with.empty()) {
            result.status = Status::skipped;
            result.detail = "no attention weight changes in training at dropout " + num(p) + " (" +
                            std::to_string(observed) + " observed): attention/" + name_ +
                            " applies no dropout to attention weights (e.g. it has no probabilities, as linear "
                            "attention); only the block's output dropout applies";
            return result;
        }
        return fail(result, train_where + ": no attention weight changes (" + std::to_string(observed) +
                                " observed), yet attention/" + name_ +
                                " declares equals_softmax_with, so it computes softmax attention, whose "
                                "probabilities take AttentionCoreArgs::dropout when training");
    }
    const double share = static_cast<double>(dropped_count) / static_cast<double>(observed);
    const double sigma = std::sqrt(p * (1.0 - p) / static_cast<double>(observed));
    if (!(std::fabs(share - p) <= kDropSigmas * sigma))
        return fail(result, train_where + ": " + std::to_string(dropped_count) + " of " + std::to_string(observed) +
                                " observed attention weights are dropped, a share of " + num(share) + ", expected " +
                                num(p) + " +- " + num(kDropSigmas * sigma) + " (" + num(kDropSigmas) +
                                " binomial standard deviations); drop each weight with probability "
                                "AttentionCoreArgs::dropout");
    if (unscaled > 0)
        return fail(result, train_where + ": " + std::to_string(unscaled) + " of " +
                                std::to_string(observed - dropped_count) +
                                " kept attention weights are not scaled by 1 / (1 - p) = " + num(1.0 / (1.0 - p)) +
                                "; first: " + first_unscaled +
                                "; inverted dropout scales what it keeps so that each weight keeps its expectation");

    // Eval mode drops nothing (validation and `labrun generate` run in eval mode).
    dropped.module->eval();
    const std::vector<float> y = forward_values(*dropped.module, shape, x, call);
    const double scale = std::max(max_abs(reference), 1e-30);
    for (size_t i = 0; i < y.size(); ++i) {
        const double d = std::fabs(static_cast<double>(y[i]) - static_cast<double>(reference[i]));
        if (d <= kAgreementTolerance * scale) continue;
        return fail(result, "non-causal, " + Mode{false, kCheckDropout}.label() + ", " + lengths_text(T, T) + ": " +
                                weight_text(i) + " (sequence 0) is " + num(static_cast<double>(y[i]) - 1.0) +
                                ", without dropout " + num(reference[i] - 1.0) +
                                ": eval mode must drop nothing (AttentionCoreArgs::training is false)");
    }
    result.status = Status::passed;
    result.detail = "train, dropout " + num(p) + ": " + std::to_string(dropped_count) + " of " +
                    std::to_string(observed) + " observed attention weights dropped (share " + num(share) +
                    ", expected " + num(p) + " +- " + num(kDropSigmas * sigma) + "), " +
                    (linear_in_values ? "every kept one scaled by " + num(1.0 / (1.0 - p))
                                      : std::string("the scale of kept ones not observable (the context is not "
                                                    "linear in v: the core normalises it)")) +
                    "; eval: none dropped";
    return result;
}

}  // namespace lab::attention_check_detail
