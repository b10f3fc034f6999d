// The attention conformance check (attention_check.h). Each check builds attention/NAME through
// the registry at a small size, drives it with seeded random inputs and compares what it computes
// with what any attention block must compute. The sizes are small so that all checks together
// take about a second on the reference backend; the cost profile measures real sizes.
//
// Parameters: a plugin initialises its weights N(0, 0.02), at which q.k is ~1e-3, every softmax
// is nearly uniform and gradients with respect to the projections are ~1e-3: a wrong scale or a
// dropped gradient term would hide below any sensible tolerance. The checks therefore redraw
// every weight of rank >= 2 from N(0, 1 / fan_in) (unit gain: activations, scores and gradients
// of order one) and keep the plugin's own rank-0/1 parameters (biases, gains, per-head constants,
// which may have to stay in a range). The profile uses the plugin's own initialisation.
#include "lab/attention_check.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <set>
#include <sstream>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/finite_difference.h"
#include "lab/rng.h"

namespace lab {
namespace {

// Sizes of the small checks: four heads of size 4, so that head bookkeeping errors (a kv head
// repeated in the wrong order, heads merged in the wrong order) show, and few enough elements that
// the finite-difference check perturbs every one of them in well under a second.
constexpr int64_t kHidden = 16, kHeads = 4;
constexpr int64_t kBatch = 2, kSeqLen = 9;              // causality, padding, exact, determinism
const std::vector<int64_t> kPadLengths = {5, 9};        // right padding: row 0 has 4 padded positions
constexpr int64_t kGradBatch = 2, kGradSeqLen = 5;
const std::vector<int64_t> kGradPadLengths = {3, 5};
const std::vector<std::pair<int64_t, int64_t>> kShapeCases = {{1, 1}, {2, 5}, {3, 17}};  // (B, T)

// Finite differences, the method of tests/gradcheck.h: central differences on f32 forwards of
// L = sum(f(x) * R), R ~ N(0, 1) fixed, accumulated in double. Pass when |analytic - numeric| <=
// 1e-2 * max(1, |numeric|) for every element; a wrong gradient (a missing factor, a dropped
// term, a detached input) errs by the order of the gradient itself, ~0.1 - 1. The step is half
// gradcheck.h's: a whole attention block with unit-gain weights has larger third derivatives
// than one op, and on attention/softmax (reference backend) the worst scaled error measured
// 1.7e-3 at eps = 1e-2 (truncation, ~eps^2), 3.8e-4 at 5e-3, and grew again below (6e-4 at
// 2.5e-3, 1.3e-3 at 1e-3: f32 rounding of L divided by 2 eps). 5e-3 keeps it ~25x below.
constexpr float kGradEps = 5e-3f;
constexpr double kGradTolerance = 1e-2;
// Causality and padding invariance compare two runs of the same shape that differ only in inputs
// that must not matter. Every kernel here computes an output row from its own inputs, so the
// earlier rows come out bitwise equal; 1e-6 of the output scale (a few f32 ulps) leaves room for
// a backend that picks its reduction order by value, while a real leak moves an output by a sizable
// fraction of the scale (one attention weight of order 1 / T times a value of order the scale).
constexpr double kInvarianceTolerance = 1e-6;
// Agreement across different shapes (a padded batch against one sequence alone) and across
// implementations (the variant against attention/softmax): the same sums in another order, another
// blocking or an online softmax differ by f32 rounding, ~1e-7 relative; 1e-5 is 100x that.
constexpr double kAgreementTolerance = 1e-5;

// Streams of the counter-based generator of the check's own, so that its draws never coincide
// with a model's initialisation, dropout or data streams for the same seed.
constexpr uint64_t kStreamCheckParams = 0x636865636b01ULL, kStreamCheckInputs = 0x636865636b02ULL;

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2g", v);
    return buf;
}

// "(2, 5)" or "[32, 1]"
std::string list_text(const std::vector<int64_t>& values, const char* open = "(", const char* close = ")") {
    std::string out = open;
    for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
    return out + close;
}

// The position of flat element `flat` in a tensor of `shape`, as "[b, t, c]".
std::string index_text(const Shape& shape, size_t flat) {
    std::vector<int64_t> index(shape.size());
    int64_t rest = static_cast<int64_t>(flat);
    for (size_t d = shape.size(); d-- > 0;) {
        index[d] = shape[d] > 0 ? rest % shape[d] : 0;
        rest = shape[d] > 0 ? rest / shape[d] : 0;
    }
    return list_text(index, "[", "]");
}

std::vector<float> normal_values(Generator& gen, int64_t n, float std_dev = 1.0f) {
    RngKey key = gen.next(2 * static_cast<uint64_t>(n));  // philox_normal uses two numbers per value
    std::vector<float> v(static_cast<size_t>(n));
    for (size_t i = 0; i < v.size(); ++i) v[i] = std_dev * philox_normal(key, i);
    return v;
}

double max_abs(const std::vector<float>& v) {
    double m = 0.0;
    for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
    return m;
}

// max |a - b|; NaN anywhere makes it infinite, so that no comparison passes on NaN.
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
    double m = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
        if (!(d <= m)) m = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
    }
    return m;
}

// x [B, T, C] with the positions t >= from[b] of each row b replaced by fresh N(0, 1) values.
std::vector<float> replace_from(std::vector<float> x, Generator& gen, int64_t T, int64_t C,
                                const std::vector<int64_t>& from) {
    std::vector<float> fresh = normal_values(gen, static_cast<int64_t>(x.size()));
    for (size_t b = 0; b < from.size(); ++b)
        for (int64_t t = from[b]; t < T; ++t)
            for (int64_t c = 0; c < C; ++c) {
                size_t i = static_cast<size_t>((static_cast<int64_t>(b) * T + t) * C + c);
                x[i] = fresh[i];
            }
    return x;
}

using Status = AttentionCheckResult::Status;

AttentionCheckResult fail(AttentionCheckResult& result, std::string detail) {
    result.status = Status::failed;
    result.detail = std::move(detail);
    return result;
}

// How one forward is called: causal or not, and the real length of each row (empty: no padding).
struct Call {
    bool causal = false;
    std::vector<int64_t> lengths;
    std::string label() const {
        return std::string(causal ? "causal" : "non-causal") + (lengths.empty() ? "" : ", padded");
    }
};

std::string labels(const std::vector<Call>& calls) {
    std::string out;
    for (const Call& call : calls) out += (out.empty() ? "" : "; ") + call.label();
    return out;
}

// A module and the BuildContext it was made with: MultiHeadAttention keeps a pointer to the
// context's dropout generator, so the context lives as long as the module (declared first, so it
// is destroyed last).
struct Instance {
    std::unique_ptr<BuildContext> ctx;
    std::shared_ptr<Attention> module;
};

struct Gradient {
    bool present = false;
    std::string problem;  // a gradient of the wrong shape
    std::vector<float> values;
};

// One forward + backward: the output, and the gradients of x and of every parameter (by name).
struct Pass {
    std::vector<float> y;
    Gradient dx;
    std::vector<std::pair<std::string, Gradient>> dparams;
};

Gradient gradient_of(const Tensor& t) {
    Gradient g;
    Tensor grad = t.grad();
    if (!grad.defined()) return g;
    g.present = true;
    if (grad.shape() != t.shape())
        g.problem = "gradient shape " + shape_str(grad.shape()) + " differs from " + shape_str(t.shape());
    else
        g.values = grad.to_floats();
    return g;
}

void clear_grads(const Module& m) {
    for (auto& [name, p] : m.named_parameters()) p.set_grad(Tensor());
}

class Checker {
public:
    Checker(const Registry& registry, Backend& backend, const std::string& name, const AttentionCheckSettings& settings)
        : registry_(registry), backend_(backend), name_(name), settings_(settings),
          info_(registry.find("attention", name)),
          options_(plugin_options(registry, "attention", name, settings.options, "check")),
          inputs_(settings.seed, kStreamCheckInputs) {}

    const AttentionCapabilities& supports() const { return info_.attention.supports; }

    Instance build(const std::string& plugin, const Options& options, const AttentionShape& shape, int64_t batch,
                   int64_t seq_len, bool condition) {
        Instance inst;
        inst.ctx = std::make_unique<BuildContext>();
        BuildContext& ctx = *inst.ctx;
        ctx.backend = &backend_;
        ctx.registry = &registry_;
        ctx.seed = settings_.seed;
        ctx.init_rng = Generator(settings_.seed, kStreamInit);
        ctx.dropout_rng = Generator(settings_.seed, kStreamDropout);
        ctx.data_rng = Generator(settings_.seed, kStreamData);
        ctx.train.batch = batch;  // for plugins that size buffers by the longest sequence
        ctx.train.seq_len = seq_len;
        inst.module = registry_.factory<AttentionFactory>("attention", plugin)(options, shape, ctx);
        if (!inst.module)
            throw PluginError("attention/" + plugin + ": the factory returned no module; it must return the "
                              "attention block it built");
        if (condition) condition_parameters(*inst.module);
        return inst;
    }

    Instance build_small(int64_t batch, int64_t seq_len) {
        return build(name_, options_, small_shape(), batch, seq_len, true);
    }

    static AttentionShape small_shape() { return AttentionShape{kHidden, kHeads, 0.0f, true}; }

    AttentionCheckResult shapes();
    AttentionCheckResult gradients();
    AttentionCheckResult causality();
    AttentionCheckResult padding();
    AttentionCheckResult exact();
    AttentionCheckResult determinism();
    std::vector<AttentionCostRow> profile();

private:
    // Unit-gain weights (see the top of the file); the same numbers for every build.
    void condition_parameters(const Module& m) {
        NoGradGuard no_grad;
        Generator gen(settings_.seed, kStreamCheckParams);
        for (auto& [name, p] : m.named_parameters()) {
            if (p.dim() < 2) continue;
            float std_dev = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(1, p.size(-1))));
            p.copy_(Tensor::from_floats(backend_, p.shape(), normal_values(gen, p.numel(), std_dev)));
        }
    }

    Tensor padding_mask(const std::vector<int64_t>& lengths, int64_t T) {
        std::vector<int64_t> mask;
        for (int64_t len : lengths)
            for (int64_t t = 0; t < T; ++t) mask.push_back(t >= len ? 1 : 0);
        return Tensor::from_ints(backend_, {static_cast<int64_t>(lengths.size()), T}, mask, DType::u8);
    }

    Tensor forward(Attention& m, const Tensor& x, const Call& call) {
        AttentionContext ctx;
        ctx.causal = call.causal;
        if (!call.lengths.empty()) ctx.padding_mask = padding_mask(call.lengths, x.size(1));
        Tensor y = m.forward(x, ctx);
        if (y.shape() != x.shape())
            throw ShapeError("attention/" + name_ + " returned output " + shape_str(y.shape()) + " for input " +
                             shape_str(x.shape()) + "; an attention block maps [B, T, C] to [B, T, C]");
        return y;
    }

    std::vector<float> forward_values(Attention& m, const Shape& shape, const std::vector<float>& x, const Call& call) {
        NoGradGuard no_grad;
        return forward(m, Tensor::from_floats(backend_, shape, x), call).to_floats();
    }

    Pass forward_backward(Attention& m, const Shape& shape, const std::vector<float>& x_values, const Call& call,
                          const std::vector<float>& dy_values) {
        clear_grads(m);
        Tensor x = Tensor::from_floats(backend_, shape, x_values);
        x.set_requires_grad(true);
        Tensor y = forward(m, x, call);
        backward(y, Tensor::from_floats(backend_, shape, dy_values));
        Pass pass;
        pass.y = y.to_floats();
        pass.dx = gradient_of(x);
        for (auto& [name, p] : m.named_parameters()) pass.dparams.emplace_back(name, gradient_of(p));
        clear_grads(m);
        return pass;
    }

    std::vector<Call> calls(bool with_padding, const std::vector<int64_t>& lengths) const {
        std::vector<Call> out = {Call{false, {}}};
        if (supports().causal) out.push_back(Call{true, {}});
        if (with_padding && supports().padding_mask) {
            out.push_back(Call{false, lengths});
            if (supports().causal) out.push_back(Call{true, lengths});
        }
        return out;
    }

    const Registry& registry_;
    Backend& backend_;
    std::string name_;
    const AttentionCheckSettings& settings_;
    const PluginInfo& info_;
    Options options_;
    Generator inputs_;  // random inputs of every check, drawn in order
};

AttentionCheckResult Checker::shapes() {
    AttentionCheckResult result{"shapes", Status::passed, ""};
    Instance inst = build_small(3, 17);
    std::vector<Call> modes = calls(false, {});
    double scale = 0.0;
    for (const Call& call : modes) {
        for (auto [B, T] : kShapeCases) {
            std::string where = "(B, T) = " + list_text({B, T}) + ", " + call.label();
            Shape shape{B, T, kHidden};
            std::vector<float> y;
            try {
                y = forward_values(*inst.module, shape, normal_values(inputs_, shape_numel(shape)), call);
            } catch (const std::exception& e) {
                return fail(result, where + ": " + e.what());
            }
            for (size_t i = 0; i < y.size(); ++i) {
                if (std::isfinite(y[i])) continue;
                return fail(result, where + ": output" + index_text(shape, i) + " = " + num(y[i]) + " is not finite");
            }
            scale = std::max(scale, max_abs(y));
        }
    }
    result.detail = "output [B, T, " + std::to_string(kHidden) + "], finite, for (B, T) = (1, 1), (2, 5), (3, 17), " +
                    (modes.size() > 1 ? "non-causal and causal" : "non-causal") + "; max |output| " + num(scale);
    return result;
}

AttentionCheckResult Checker::gradients() {
    AttentionCheckResult result{"gradients", Status::passed, ""};
    Instance inst = build_small(kGradBatch, kGradSeqLen);
    Attention& m = *inst.module;
    const Shape shape{kGradBatch, kGradSeqLen, kHidden};
    const auto params = m.named_parameters();
    std::vector<std::string> failures;
    double worst = 0.0;
    std::string worst_where = "x";
    std::vector<Call> modes = calls(true, kGradPadLengths);
    for (const Call& call : modes) {
        std::vector<float> x = normal_values(inputs_, shape_numel(shape));
        const std::vector<float> weights = normal_values(inputs_, shape_numel(shape));
        Pass analytic = forward_backward(m, shape, x, call, weights);

        // One input's elements perturbed in turn; `loss` evaluates L with `values` as they are now.
        auto compare = [&](const std::string& input, const Shape& input_shape, const Gradient& grad,
                           std::vector<float>& values, const std::function<double()>& loss) {
            std::string where = input + " (" + call.label() + ")";
            if (!grad.problem.empty()) {
                failures.push_back(where + ": " + grad.problem);
                return;
            }
            // No gradient at all means zero: right only where L does not depend on the input.
            const std::vector<float> zeros(values.size(), 0.0f);
            const std::vector<float>& a = grad.present ? grad.values : zeros;
            const FiniteDifferenceReport r = central_differences(a, values, kGradEps, loss);
            if (r.worst_ratio > worst) {
                worst = r.worst_ratio;
                worst_where = where;
            }
            if (r.worst_ratio > kGradTolerance)
                failures.push_back(where + ": element " + index_text(input_shape, static_cast<size_t>(r.worst_index)) +
                                   " analytic " + num(r.worst_analytic) + " vs numeric " + num(r.worst_numeric) +
                                   " (scaled error " + num(r.worst_ratio) + ")" +
                                   (grad.present ? "" : ", no gradient reached it"));
        };

        compare("x", shape, analytic.dx, x, [&] { return weighted_sum(forward_values(m, shape, x, call), weights); });
        for (size_t i = 0; i < params.size(); ++i) {
            const std::string& name = params[i].first;
            const Tensor& p = params[i].second;
            std::vector<float> values = p.to_floats();
            const std::vector<float> original = values;
            auto loss = [&] {
                p.copy_(Tensor::from_floats(backend_, p.shape(), values));
                return weighted_sum(forward_values(m, shape, x, call), weights);
            };
            compare(name, p.shape(), analytic.dparams[i].second, values, loss);
            p.copy_(Tensor::from_floats(backend_, p.shape(), original));
        }
    }
    if (!failures.empty()) {
        std::string detail = "autograd disagrees with central differences (tolerance " + num(kGradTolerance) +
                             " * max(1, |numeric|)): ";
        for (size_t i = 0; i < failures.size() && i < 6; ++i) detail += (i ? "; " : "") + failures[i];
        if (failures.size() > 6) detail += "; and " + std::to_string(failures.size() - 6) + " more";
        return fail(result, detail);
    }
    result.detail = "x and " + std::to_string(params.size()) + " parameters agree with central differences (" +
                    labels(modes) + "): worst scaled error " + num(worst) + " (" + worst_where + "), tolerance " +
                    num(kGradTolerance);
    return result;
}

AttentionCheckResult Checker::causality() {
    AttentionCheckResult result{"causality", Status::skipped, ""};
    if (!supports().causal) {
        result.detail = "attention/" + name_ + " does not declare causal support";
        return result;
    }
    Instance inst = build_small(kBatch, kSeqLen);
    const Shape shape{kBatch, kSeqLen, kHidden};
    const Call call{true, {}};
    const std::vector<float> x = normal_values(inputs_, shape_numel(shape));
    const std::vector<float> y = forward_values(*inst.module, shape, x, call);
    const double scale = std::max(max_abs(y), 1e-30), tolerance = kInvarianceTolerance * scale;
    auto position_diff = [&](const std::vector<float>& other, int64_t t) {  // over the batch and channels
        double d = 0.0;
        for (int64_t b = 0; b < kBatch; ++b) {
            size_t begin = static_cast<size_t>((b * kSeqLen + t) * kHidden);
            d = std::max(d, max_abs_diff({y.begin() + begin, y.begin() + begin + kHidden},
                                         {other.begin() + begin, other.begin() + begin + kHidden}));
        }
        return d;
    };

    std::set<int64_t> leaking;
    int64_t first_p = -1, first_t = -1;
    double first_diff = 0.0, worst = 0.0;
    for (int64_t t = 1; t < kSeqLen; ++t) {
        std::vector<float> changed = replace_from(x, inputs_, kSeqLen, kHidden, std::vector<int64_t>(kBatch, t));
        std::vector<float> y2 = forward_values(*inst.module, shape, changed, call);
        for (int64_t p = 0; p < t; ++p) {
            double d = position_diff(y2, p);
            worst = std::max(worst, d);
            if (d > tolerance) {
                if (leaking.empty() || p < first_p) {
                    first_p = p;
                    first_t = t;
                    first_diff = d;
                }
                leaking.insert(p);
            }
        }
        // The perturbed position itself must move, or the check could not see a leak at all.
        if (position_diff(y2, t) <= tolerance) {
            return fail(result, "the output at position " + std::to_string(t) +
                                    " does not change when the inputs from that position on change; an attention "
                                    "block must depend on its own position's input");
        }
    }
    if (!leaking.empty()) {
        std::string positions;
        for (int64_t p : leaking) positions += (positions.empty() ? "" : ", ") + std::to_string(p);
        return fail(result, "earliest leaking position " + std::to_string(first_p) + ": its output changes (by " +
                                num(first_diff) + ", output scale " + num(scale) +
                                ") when only inputs at positions >= " + std::to_string(first_t) +
                                " change, so a query sees later tokens under causal = true; leaking positions: " +
                                positions);
    }
    result.status = Status::passed;
    result.detail = "changing inputs from position t on (t = 1.." + std::to_string(kSeqLen - 1) +
                    ") changed no earlier output: max |difference| " + num(worst) +
                    (worst == 0.0 ? " (bitwise equal)" : "") + ", tolerance " + num(kInvarianceTolerance) +
                    " of the output scale " + num(scale);
    return result;
}

AttentionCheckResult Checker::padding() {
    AttentionCheckResult result{"padding", Status::skipped, ""};
    if (!supports().padding_mask) {
        result.detail = "attention/" + name_ + " does not declare padding-mask support";
        return result;
    }
    Instance inst = build_small(kBatch, kSeqLen);
    Attention& m = *inst.module;
    const Shape shape{kBatch, kSeqLen, kHidden};
    auto row = [&](const std::vector<float>& v, int64_t b, int64_t len) {  // [len, C] of row b
        auto begin = v.begin() + static_cast<std::ptrdiff_t>(b * kSeqLen * kHidden);
        return std::vector<float>(begin, begin + static_cast<std::ptrdiff_t>(len * kHidden));
    };
    double worst_alone = 0.0, worst_invariance = 0.0;
    std::vector<Call> modes;
    modes.push_back(Call{false, kPadLengths});
    if (supports().causal) modes.push_back(Call{true, kPadLengths});
    for (const Call& call : modes) {
        const std::vector<float> x = normal_values(inputs_, shape_numel(shape));
        const std::vector<float> y = forward_values(m, shape, x, call);
        const double scale = std::max(max_abs(y), 1e-30);
        for (int64_t b = 0; b < kBatch; ++b) {
            const int64_t len = kPadLengths[static_cast<size_t>(b)];
            const Shape alone_shape{1, len, kHidden};
            std::vector<float> alone = forward_values(m, alone_shape, row(x, b, len), Call{call.causal, {}});
            double d = max_abs_diff(row(y, b, len), alone) / scale;
            worst_alone = std::max(worst_alone, d);
            if (d > kAgreementTolerance) {
                return fail(result, call.label() + ": row " + std::to_string(b) + " (length " +
                                        std::to_string(len) + " of " + std::to_string(kSeqLen) +
                                        ") differs from the same sequence run alone by " + num(d) +
                                        " of the output scale (tolerance " + num(kAgreementTolerance) +
                                        "): padded keys are attended to");
            }
        }
        const std::vector<float> changed = replace_from(x, inputs_, kSeqLen, kHidden, kPadLengths);
        const std::vector<float> y2 = forward_values(m, shape, changed, call);
        for (int64_t b = 0; b < kBatch; ++b) {
            const int64_t len = kPadLengths[static_cast<size_t>(b)];
            double d = max_abs_diff(row(y, b, len), row(y2, b, len)) / scale;
            worst_invariance = std::max(worst_invariance, d);
            if (d > kInvarianceTolerance) {
                return fail(result, call.label() + ": outputs at the real positions of row " + std::to_string(b) +
                                        " change by " + num(d) +
                                        " of the output scale when only its padded inputs change (tolerance " +
                                        num(kInvarianceTolerance) + ")");
            }
        }
    }
    result.status = Status::passed;
    result.detail = "lengths 5 and 9 of 9, non-causal" + std::string(modes.size() > 1 ? " and causal" : "") +
                    ": real positions equal the unpadded sequence's outputs within " + num(worst_alone) +
                    " of the output scale (tolerance " + num(kAgreementTolerance) +
                    ") and move by " + num(worst_invariance) + " when padded inputs change (tolerance " +
                    num(kInvarianceTolerance) + ")";
    return result;
}

AttentionCheckResult Checker::exact() {
    AttentionCheckResult result{"exact", Status::skipped, ""};
    const auto& equal_with = info_.attention.equals_softmax_with;
    if (equal_with.empty()) {
        result.detail = "attention/" + name_ + " declares no options under which it equals attention/softmax " +
                        "(AttentionTraits::equals_softmax_with)";
        return result;
    }
    if (!registry_.has("attention", "softmax")) {
        result.detail = "attention/softmax, the reference, is not loaded";
        return result;
    }
    std::map<std::string, std::string> merged = settings_.options;
    std::string with;
    for (const auto& [key, value] : equal_with) {
        merged[key] = value;
        with += (with.empty() ? "" : " ") + key + "=" + value;
    }
    Options variant_options =
        plugin_options(registry_, "attention", name_, merged, "equals_softmax_with of attention/" + name_);
    Instance variant = build(name_, variant_options, small_shape(), kBatch, kSeqLen, true);
    Instance reference = build("softmax", plugin_options(registry_, "attention", "softmax", {}, "check"),
                               small_shape(), kBatch, kSeqLen, false);

    // The same parameters by name: an exact variant keeps MultiHeadAttention's and adds none.
    std::map<std::string, Tensor> variant_state = variant.module->state_dict();
    std::map<std::string, Tensor> reference_state = reference.module->state_dict();
    std::vector<std::string> mismatches;
    for (const auto& [key, t] : reference_state) {
        auto it = variant_state.find(key);
        if (it == variant_state.end()) mismatches.push_back("missing " + key);
        else if (it->second.shape() != t.shape())
            mismatches.push_back(key + " is " + shape_str(it->second.shape()) + ", attention/softmax's is " +
                                 shape_str(t.shape()));
    }
    for (const auto& [key, t] : variant_state)
        if (!reference_state.count(key)) mismatches.push_back("extra " + key);
    if (!mismatches.empty()) {
        return fail(result, "with " + with + " the parameters do not map onto attention/softmax's by name (" +
                                join(mismatches, "; ") + "); an exact variant must keep c_attn.* and c_proj.* of " +
                                "MultiHeadAttention and add no parameter");
    }
    reference.module->load_state_dict(variant_state);

    const Shape shape{kBatch, kSeqLen, kHidden};
    std::vector<Call> modes = calls(true, kPadLengths);
    double worst = 0.0;
    std::string worst_where = "output";
    for (const Call& call : modes) {
        const std::vector<float> x = normal_values(inputs_, shape_numel(shape));
        std::vector<float> dy = normal_values(inputs_, shape_numel(shape));
        // Outputs at padded positions are unspecified: they neither count nor send gradients.
        std::vector<bool> padded(dy.size(), false);
        for (size_t b = 0; b < call.lengths.size(); ++b)
            for (int64_t t = call.lengths[b]; t < kSeqLen; ++t)
                for (int64_t c = 0; c < kHidden; ++c)
                    padded[static_cast<size_t>((static_cast<int64_t>(b) * kSeqLen + t) * kHidden + c)] = true;
        for (size_t i = 0; i < dy.size(); ++i)
            if (padded[i]) dy[i] = 0.0f;
        Pass got = forward_backward(*variant.module, shape, x, call, dy);
        Pass want = forward_backward(*reference.module, shape, x, call, dy);
        for (size_t i = 0; i < got.y.size(); ++i)
            if (padded[i]) got.y[i] = want.y[i] = 0.0f;

        auto compare = [&](const std::string& what, const Gradient& a, const Gradient& b) -> bool {
            std::string where = what + ", " + call.label();
            if (!a.problem.empty() || a.present != b.present) {
                std::string what_differs = !a.problem.empty() ? a.problem
                                           : a.present            ? "a gradient where attention/softmax has none"
                                                                  : "no gradient where attention/softmax has one";
                fail(result, "with " + with + ", " + where + ": " + what_differs);
                return false;
            }
            double rel = max_abs_diff(a.values, b.values) / std::max(max_abs(b.values), 1e-30);
            if (rel > worst || std::isnan(rel)) {
                worst = rel;
                worst_where = where;
            }
            if (!(rel <= kAgreementTolerance)) {
                fail(result, "with " + with + ", " + where + " differs from attention/softmax's by " + num(rel) +
                                 " relative to its largest element (tolerance " + num(kAgreementTolerance) + ")");
                return false;
            }
            return true;
        };
        Gradient got_y{true, "", got.y}, want_y{true, "", want.y};
        if (!compare("output", got_y, want_y) || !compare("gradient of x", got.dx, want.dx)) return result;
        for (size_t i = 0; i < got.dparams.size(); ++i) {
            const std::string& pname = got.dparams[i].first;
            auto it = std::find_if(want.dparams.begin(), want.dparams.end(),
                                   [&](const auto& entry) { return entry.first == pname; });
            if (it == want.dparams.end()) continue;  // a buffer in the state, not a parameter of softmax
            if (!compare("gradient of " + pname, got.dparams[i].second, it->second)) return result;
        }
    }
    result.status = Status::passed;
    result.detail = "with " + with + ", outputs and gradients equal attention/softmax's (" + labels(modes) +
                    "): worst relative error " + num(worst) + " (" + worst_where + "), tolerance " +
                    num(kAgreementTolerance);
    return result;
}

AttentionCheckResult Checker::determinism() {
    AttentionCheckResult result{"determinism", Status::failed, ""};
    Instance inst = build_small(kBatch, kSeqLen);
    const Shape shape{kBatch, kSeqLen, kHidden};
    Call call{supports().causal, {}};
    if (supports().padding_mask) call.lengths = kPadLengths;
    const std::vector<float> x = normal_values(inputs_, shape_numel(shape));
    const std::vector<float> dy = normal_values(inputs_, shape_numel(shape));
    Pass first = forward_backward(*inst.module, shape, x, call, dy);
    Pass second = forward_backward(*inst.module, shape, x, call, dy);
    auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    auto differ = [&](const std::string& what, const std::vector<float>& a, const std::vector<float>& b) {
        result.detail = what + " differs between two identical forward+backward passes (" + call.label() +
                        "): max |difference| " + num(max_abs_diff(a, b)) +
                        "; a deterministic plugin draws no unseeded randomness and reduces in a fixed order";
        return result;
    };
    if (!same_bits(first.y, second.y)) return differ("the output", first.y, second.y);
    if (first.dx.present != second.dx.present || !same_bits(first.dx.values, second.dx.values))
        return differ("the gradient of x", first.dx.values, second.dx.values);
    for (size_t i = 0; i < first.dparams.size(); ++i) {
        const Gradient &a = first.dparams[i].second, &b = second.dparams[i].second;
        if (a.present != b.present || !same_bits(a.values, b.values))
            return differ("the gradient of " + first.dparams[i].first, a.values, b.values);
    }
    result.status = Status::passed;
    result.detail = "outputs and the gradients of x and " + std::to_string(first.dparams.size()) +
                    " parameters are bitwise equal over two forward+backward passes (" + call.label() + ")";
    return result;
}

std::vector<AttentionCostRow> Checker::profile() {
    std::vector<AttentionCostRow> rows;
    const AttentionShape shape{settings_.profile_hidden, settings_.profile_heads, 0.0f, true};
    const bool causal = supports().causal;
    using Clock = std::chrono::steady_clock;
    for (int64_t T : settings_.profile_lengths) {
        AttentionCostRow row;
        row.seq_len = T;
        try {
            if (T < 1 || settings_.profile_batch < 1)
                throw ConfigError("profile: sequence length " + std::to_string(T) + " and batch " +
                                  std::to_string(settings_.profile_batch) + " must be >= 1");
            Instance inst = build(name_, options_, shape, settings_.profile_batch, T, false);
            Attention& m = *inst.module;
            const Shape x_shape{settings_.profile_batch, T, settings_.profile_hidden};
            Tensor x = Tensor::from_floats(backend_, x_shape, normal_values(inputs_, shape_numel(x_shape)));
            x.set_requires_grad(true);
            const Tensor dy = Tensor::from_floats(backend_, x_shape, normal_values(inputs_, shape_numel(x_shape)));
            AttentionContext ctx;
            ctx.causal = causal;
            // Each step ends with synchronize() while its outputs are alive, so the timer sees the
            // device's work and not only the launches.
            auto forward_only = [&] {
                NoGradGuard no_grad;
                Tensor y = m.forward(x, ctx);
                backend_.synchronize();
            };
            auto train_step = [&] {
                Tensor y = m.forward(x, ctx);
                backward(y, dy);
                backend_.synchronize();
            };
            auto clear = [&] {
                clear_grads(m);
                x.set_grad(Tensor());
            };
            auto timed_ms = [&](const std::function<void()>& step) {
                backend_.synchronize();
                auto start = Clock::now();
                step();
                return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
            };
            // Warm-up: primitive caches, the allocator's cached blocks, first-touch page faults.
            forward_only();
            train_step();
            clear();
            row.forward_ms = row.train_ms = std::numeric_limits<double>::infinity();
            for (int r = 0; r < std::max(1, settings_.profile_repeats); ++r) {
                row.forward_ms = std::min(row.forward_ms, timed_ms(forward_only));
                const size_t before = backend_.stats().memory.bytes_in_use;
                backend_.reset_peak_memory();
                row.train_ms = std::min(row.train_ms, timed_ms(train_step));
                const size_t peak = backend_.stats().memory.peak_bytes_in_use;
                row.peak_mb = std::max(row.peak_mb, static_cast<double>(peak > before ? peak - before : 0) /
                                                        (1024.0 * 1024.0));
                clear();
            }
        } catch (const std::bad_alloc&) {
            row.error = "out of memory";
        } catch (const std::exception& e) {
            row.error = e.what();
        }
        if (!row.error.empty()) row.forward_ms = row.train_ms = row.peak_mb = 0;
        rows.push_back(row);
        if (!row.error.empty()) break;  // longer sequences would fail the same way
    }
    return rows;
}

// A check that throws has failed, with what it threw as the detail.
AttentionCheckResult guarded(const std::string& name, const std::function<AttentionCheckResult()>& check) {
    try {
        return check();
    } catch (const std::bad_alloc&) {
        return {name, Status::failed, "out of memory"};
    } catch (const std::exception& e) {
        return {name, Status::failed, std::string("threw: ") + e.what()};
    }
}

}  // namespace

bool AttentionCheckReport::passed() const {
    return std::none_of(checks.begin(), checks.end(),
                        [](const AttentionCheckResult& c) { return c.status == Status::failed; });
}

std::string AttentionCheckReport::format() const {
    std::ostringstream out;
    out << plugin << " (" << (options.empty() ? "default options" : options) << ") on " << backend << "\n";
    int counts[3] = {0, 0, 0};
    for (const AttentionCheckResult& c : checks) {
        const char* tag = c.status == Status::passed   ? "PASS"
                          : c.status == Status::failed ? "FAIL"
                                                                             : "SKIP";
        ++counts[static_cast<int>(c.status)];
        out << "  " << tag << " " << c.name << ": " << c.detail << "\n";
    }
    out << "  " << (passed() ? "passed" : "FAILED") << ": " << counts[0] << " passed, " << counts[1] << " failed, "
        << counts[2] << " skipped\n";
    if (profile.empty()) {
        out << "  (no cost profile)\n";
        return out.str();
    }
    out << "  seq_len  forward ms  fwd+bwd ms  peak MB\n";
    for (const AttentionCostRow& row : profile) {
        char line[160];
        if (row.error.empty())
            std::snprintf(line, sizeof line, "  %7lld  %10.3f  %10.3f  %7.1f\n", static_cast<long long>(row.seq_len),
                          row.forward_ms, row.train_ms, row.peak_mb);
        else
            std::snprintf(line, sizeof line, "  %7lld  failed: ", static_cast<long long>(row.seq_len));
        out << line;
        if (!row.error.empty()) out << row.error << " (profile stopped)\n";
    }
    return out.str();
}

AttentionCheckReport check_attention(const Registry& registry, Backend& backend, const std::string& name,
                                     const AttentionCheckSettings& settings) {
    Checker checker(registry, backend, name, settings);  // unknown plugin, bad option: thrown
    AttentionCheckReport report;
    report.plugin = "attention/" + name;
    for (const auto& [key, value] : settings.options)
        report.options += (report.options.empty() ? "" : " ") + key + "=" + value;
    report.backend = backend.name();
    // A plugin that cannot be built at the checks' shape is a configuration problem, not a
    // failed check: let its ConfigError through before any check runs.
    checker.build_small(kBatch, kSeqLen);

    report.checks.push_back(guarded("shapes", [&] { return checker.shapes(); }));
    report.checks.push_back(guarded("gradients", [&] { return checker.gradients(); }));
    report.checks.push_back(guarded("causality", [&] { return checker.causality(); }));
    report.checks.push_back(guarded("padding", [&] { return checker.padding(); }));
    report.checks.push_back(guarded("exact", [&] { return checker.exact(); }));
    report.checks.push_back(guarded("determinism", [&] { return checker.determinism(); }));
    report.profile = checker.profile();
    return report;
}

}  // namespace lab
