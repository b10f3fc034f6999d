// The attention conformance check (attention_check.h). Each check builds attention/NAME through
// the registry at a small size, drives it with seeded random inputs and compares what it computes
// with what any attention block must compute. The sizes are small so that all checks together
// take one to two seconds on the reference backend (one thread); the cost profile measures real
// sizes. The mask properties are in attention_check_masks.cpp, dropout in attention_check_dropout.cpp.
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
#include <sstream>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/finite_difference.h"
#include "lab/rng.h"
#include "attention_check_checker.h"

namespace lab {
namespace attention_check_detail {

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

}  // namespace attention_check_detail

using namespace attention_check_detail;

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
    if (settings.rope) report.options += std::string(report.options.empty() ? "" : " ") + "rope";
    report.backend = backend.name();
    // A plugin that cannot be built at the checks' shape is a configuration problem, not a
    // failed check: let its ConfigError through before any check runs.
    checker.build_small(kBatch, kSeqLen);

    report.checks.push_back(guarded("shapes", [&] { return checker.shapes(); }));
    report.checks.push_back(guarded("gradients", [&] { return checker.gradients(); }));
    report.checks.push_back(guarded("causality", [&] { return checker.causality(); }));
    // Before padding, which relies on its verdict (Checker::batch_independent_).
    report.checks.push_back(guarded("batch_independence", [&] { return checker.batch_independence(); }));
    report.checks.push_back(guarded("padding", [&] { return checker.padding(); }));
    report.checks.push_back(guarded("kv_cache", [&] { return checker.kv_cache(); }));
    report.checks.push_back(guarded("dropout", [&] { return checker.dropout(); }));
    report.checks.push_back(guarded("exact", [&] { return checker.exact(); }));
    report.checks.push_back(guarded("determinism", [&] { return checker.determinism(); }));
    report.profile = checker.profile();
    return report;
}

}  // namespace lab
