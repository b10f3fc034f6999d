// The attention conformance check's mask properties (attention_check.h): which keys a query may
// see. Causality, batch independence, padding and the KV cache each run at the lengths where
// kernels change behaviour (kMaskLengths: across the fused kernels' tile boundaries) and in train
// and eval mode, with dropout on where the runs compared have the same shape. A failure names the
// property, the mode, the lengths (T queries of S keys) and the first offending position.
#include <set>

#include "attention_check_checker.h"

namespace lab::attention_check_detail {
namespace {

// x [B, T, C] with position t of every row replaced by fresh N(0, 1) values.
std::vector<float> replace_position(std::vector<float> x, Generator& gen, int64_t B, int64_t T, int64_t C,
                                    int64_t t) {
    const std::vector<float> fresh = normal_values(gen, B * C);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c)
            x[static_cast<size_t>((b * T + t) * C + c)] = fresh[static_cast<size_t>(b * C + c)];
    return x;
}

// x [B, T, C] with every position of row `row` replaced by fresh N(0, 1) values.
std::vector<float> replace_row(std::vector<float> x, Generator& gen, int64_t T, int64_t C, int64_t row) {
    const std::vector<float> fresh = normal_values(gen, T * C);
    std::copy(fresh.begin(), fresh.end(), x.begin() + static_cast<std::ptrdiff_t>(row * T * C));
    return x;
}

// The first n positions of row b of x [B, T, C], as [n, C].
std::vector<float> sequence_start(const std::vector<float>& x, int64_t b, int64_t T, int64_t C, int64_t n) {
    const auto begin = x.begin() + static_cast<std::ptrdiff_t>(b * T * C);
    return std::vector<float>(begin, begin + static_cast<std::ptrdiff_t>(n * C));
}

// The C values of position t of row b of x [B, T, C].
std::vector<float> at_position(const std::vector<float>& x, int64_t b, int64_t T, int64_t C, int64_t t) {
    const auto begin = x.begin() + static_cast<std::ptrdiff_t>((b * T + t) * C);
    return std::vector<float>(begin, begin + static_cast<std::ptrdiff_t>(C));
}

// max |a - b| over the C channels of position t of row `row`, both [., T, C] (infinite on NaN).
double position_diff(const std::vector<float>& a, const std::vector<float>& b, int64_t row, int64_t T, int64_t C,
                     int64_t t) {
    return max_abs_diff(at_position(a, row, T, C, t), at_position(b, row, T, C, t));
}

// Rows [first, first + n) of every sequence of x [B, T, C], as [B, n, C].
std::vector<float> positions(const std::vector<float>& x, int64_t B, int64_t T, int64_t C, int64_t first, int64_t n) {
    std::vector<float> out;
    out.reserve(static_cast<size_t>(B * n * C));
    for (int64_t b = 0; b < B; ++b) {
        const auto begin = x.begin() + static_cast<std::ptrdiff_t>((b * T + first) * C);
        out.insert(out.end(), begin, begin + static_cast<std::ptrdiff_t>(n * C));
    }
    return out;
}

// "3, 4, 5, 6, 7, 8, 9, 10, ... (13 in all)"
std::string positions_text(const std::set<int64_t>& set) {
    std::string out;
    size_t shown = 0;
    for (int64_t p : set) {
        if (shown++ == 8) return out + ", ... (" + std::to_string(set.size()) + " in all)";
        out += (out.empty() ? "" : ", ") + std::to_string(p);
    }
    return out;
}

std::string modes_text(const std::vector<Mode>& modes) {
    std::string out;
    for (const Mode& mode : modes) out += (out.empty() ? "" : "; ") + mode.label();
    return out;
}

std::string lengths_list(const std::vector<int64_t>& lengths) {
    std::string out;
    for (int64_t T : lengths) out += (out.empty() ? "" : ", ") + std::to_string(T);
    return out;
}

}  // namespace

AttentionCheckResult Checker::causality() {
    AttentionCheckResult result{"causality", Status::skipped, ""};
    if (!supports().causal) {
        result.detail = "attention/" + name_ + " does not declare causal support";
        return result;
    }
    const int64_t C = kHidden;
    std::vector<std::pair<int64_t, int64_t>> cases;  // (T, S)
    for (int64_t T : kMaskLengths) cases.emplace_back(T, T);
    if (supports().kv_cache) cases.insert(cases.end(), kCachedLengths.begin(), kCachedLengths.end());
    double worst = 0.0;
    for (const Mode& mode : kSameShapeModes) {
        Instance inst = build_small(kBatch, kMaskLengths.back(), mode);
        for (auto [T, S] : cases) {
            // Two sequences where every forward is short; one where a forward costs ~T^2.
            const int64_t B = T <= 17 ? kBatch : 1;
            const std::string where = "causal, " + mode.label() + ", " + lengths_text(T, S);
            const Shape shape{B, T, C};
            // S > T: the first S - T positions go through the cache once, and every run starts from
            // a copy of that cache (forward() replaces the copy's tensors, never the prefill's).
            KvCache prefill;
            if (S > T) {
                reseed_dropout(inst);
                forward_values(*inst.module, {B, S - T, C}, normal_values(inputs_, B * (S - T) * C), Call{true, {}},
                               &prefill);
            }
            auto run = [&](const std::vector<float>& x) {
                KvCache cache = prefill;
                reseed_dropout(inst);
                return forward_values(*inst.module, shape, x, Call{true, {}}, S > T ? &cache : nullptr);
            };
            const std::vector<float> x = normal_values(inputs_, shape_numel(shape));
            const std::vector<float> y = run(x);
            const double scale = std::max(max_abs(y), 1e-30), tolerance = kInvarianceTolerance * scale;
            // Changes position `first` alone (single) or every position from `first` on; returns
            // the earliest (query, batch) before `first` whose output moved, and notes all of them.
            std::set<int64_t> leaking;
            auto probe = [&](int64_t first, bool single, int64_t* query, int64_t* batch, double* moved) -> bool {
                std::vector<float> changed = x;
                for (int64_t t = first; t < (single ? first + 1 : T); ++t)
                    changed = replace_position(std::move(changed), inputs_, B, T, C, t);
                const std::vector<float> y2 = run(changed);
                double own = 0.0;
                *query = -1;
                for (int64_t b = 0; b < B; ++b) {
                    own = std::max(own, position_diff(y, y2, b, T, C, first));
                    for (int64_t i = 0; i < first; ++i) {
                        const double d = position_diff(y, y2, b, T, C, i);
                        worst = std::max(worst, d / scale);
                        if (d <= tolerance) continue;
                        leaking.insert(i + S - T);
                        if (*query < 0 || i < *query) {
                            *query = i;
                            *batch = b;
                            *moved = d;
                        }
                    }
                }
                // The changed position itself must move, or the check could not see a leak at all.
                return own > tolerance;
            };
            const bool every_key = T <= kCausalEveryKey;
            std::vector<int64_t> starts;
            for (int64_t t = 1; t < T; ++t) {
                const int64_t from_boundary = std::min(t % kCausalStride, kCausalStride - t % kCausalStride);
                if (every_key || t <= 2 || t >= T - 2 || from_boundary <= 1) starts.push_back(t);
            }
            int64_t leak_batch = -1, leak_query = -1, leak_key = -1;
            double leak_diff = 0.0;
            for (int64_t t : starts) {
                int64_t query = -1, batch = -1;
                double moved = 0.0;
                if (!probe(t, every_key, &query, &batch, &moved))
                    return fail(result, where + ": the output at position " + std::to_string(t + S - T) +
                                            " does not change when its input changes; an attention block must "
                                            "depend on its own position's input");
                if (query < 0 || (leak_query >= 0 && query >= leak_query)) continue;
                leak_batch = batch;
                leak_query = query;
                leak_diff = moved;
                leak_key = t;
                // From t on: the first single key position that moves this query is the offending key.
                for (int64_t j = t; !every_key && j < T; ++j) {
                    std::set<int64_t> kept = leaking;
                    int64_t q = -1, b = -1;
                    double d = 0.0;
                    probe(j, true, &q, &b, &d);
                    leaking = kept;
                    if (q >= 0 && q <= leak_query) {
                        leak_key = j;
                        leak_batch = b;
                        leak_diff = d;
                        break;
                    }
                }
            }
            if (leak_query >= 0) {
                return fail(result, where + ": query " + std::to_string(leak_query + S - T) + " of sequence " +
                                        std::to_string(leak_batch) + " sees the later key " +
                                        std::to_string(leak_key + S - T) + ": its output moves by " + num(leak_diff) +
                                        " (output scale " + num(scale) + ", tolerance " +
                                        num(kInvarianceTolerance) + " of it) when only the input at position " +
                                        std::to_string(leak_key + S - T) + " changes; queries seen to leak: " +
                                        positions_text(leaking));
            }
        }
    }
    result.status = Status::passed;
    std::string cached;
    for (auto [T, S] : kCachedLengths) cached += (cached.empty() ? "" : ", ") + lengths_text(T, S);
    result.detail = "no query sees a later key at T = S = " + lengths_list(kMaskLengths) +
                    (supports().kv_cache ? " and through the KV cache at " + cached : "") +
                    " (every key changed alone up to T = " + std::to_string(kCausalEveryKey) +
                    ", beyond the inputs from t on, t within 2 of either end or 1 of a multiple of " +
                    std::to_string(kCausalStride) + "); " + modes_text(kSameShapeModes) + ": max |difference| " +
                    num(worst) + " of the output scale" + (worst == 0.0 ? " (bitwise equal)" : "") + ", tolerance " +
                    num(kInvarianceTolerance);
    return result;
}

AttentionCheckResult Checker::batch_independence() {
    AttentionCheckResult result{"batch_independence", Status::failed, ""};
    batch_independent_ = false;
    const int64_t B = kIndependenceBatch, C = kHidden, changed_row = 1;
    std::vector<Call> mask_calls = {Call{false, {}}};
    if (supports().causal) mask_calls.push_back(Call{true, {}});
    double worst = 0.0;
    for (const Mode& mode : kSameShapeModes) {
        Instance inst = build_small(B, kMaskLengths.back(), mode);
        for (int64_t T : kMaskLengths) {
            for (const Call& call : mask_calls) {
                const std::string where = call.label() + ", " + mode.label() + ", " + lengths_text(T, T);
                const Shape shape{B, T, C};
                const std::vector<float> x = normal_values(inputs_, shape_numel(shape));
                const std::vector<float> dy = normal_values(inputs_, shape_numel(shape));
                reseed_dropout(inst);
                const Pass before = forward_backward(*inst.module, shape, x, call, dy);
                reseed_dropout(inst);
                const Pass after =
                    forward_backward(*inst.module, shape, replace_row(x, inputs_, T, C, changed_row), call, dy);
                // The output, then the gradient of x (where both runs have one: the gradients check
                // judges a missing one), at the earliest position of any unchanged sequence.
                auto compare = [&](const std::string& what, const std::vector<float>& a, const std::vector<float>& b) {
                    if (a.size() != static_cast<size_t>(shape_numel(shape)) || b.size() != a.size()) return true;
                    const double scale = std::max(max_abs(a), 1e-30);
                    for (int64_t t = 0; t < T; ++t)
                        for (int64_t row = 0; row < B; ++row) {
                            if (row == changed_row) continue;
                            const double d = position_diff(a, b, row, T, C, t);
                            worst = std::max(worst, d / scale);
                            if (d <= kInvarianceTolerance * scale) continue;
                            fail(result, where + ": changing only sequence " + std::to_string(changed_row) + " of " +
                                             std::to_string(B) + " moves " + what + " of sequence " +
                                             std::to_string(row) + " at position " + std::to_string(t) + " by " +
                                             num(d) + " (scale " + num(scale) + ", tolerance " +
                                             num(kInvarianceTolerance) +
                                             " of it): information crosses between the sequences of a batch; a "
                                             "core must compute each sequence from its own q, k and v alone");
                            return false;
                        }
                    return true;
                };
                if (!compare("the output", before.y, after.y)) return result;
                if (!compare("the gradient of x", before.dx.values, after.dx.values)) return result;
            }
        }
    }
    batch_independent_ = true;
    result.status = Status::passed;
    result.detail = "changing sequence " + std::to_string(changed_row) + " of " + std::to_string(B) +
                    " moves no output or gradient of x of the others at T = S = " + lengths_list(kMaskLengths) + " (" +
                    labels(mask_calls) + "; " + modes_text(kSameShapeModes) + "): max |difference| " + num(worst) +
                    " of the scale" + (worst == 0.0 ? " (bitwise equal)" : "") + ", tolerance " +
                    num(kInvarianceTolerance);
    return result;
}

AttentionCheckResult Checker::padding() {
    AttentionCheckResult result{"padding", Status::skipped, ""};
    if (!supports().padding_mask) {
        result.detail = "attention/" + name_ + " does not declare padding-mask support";
        return result;
    }
    const int64_t C = kHidden;
    std::vector<bool> causal_modes = {false};
    if (supports().causal) causal_modes.push_back(true);
    double worst_alone = 0.0, worst_invariance = 0.0;
    for (const Mode& mode : kSameShapeModes) {
        Instance inst = build_small(2, kPaddedLengths.back().first, mode);
        Attention& m = *inst.module;
        // A dropout mask depends on the shape: sequences of different shapes are compared without.
        const bool compare_alone = mode.dropout == 0.0f;
        for (auto [T, len] : kPaddedLengths) {
            for (bool causal : causal_modes) {
                const std::string where = std::string(causal ? "causal" : "non-causal") + ", " + mode.label() + ", " +
                                          lengths_text(T, T) + ", " + std::to_string(len) + " real positions";
                // Outputs y [n, T, C] of x at the real positions (`lengths`) against each sequence run
                // alone ([1, real length, C], no mask): the first position that differs fails.
                auto against_alone = [&](const std::vector<float>& x, const std::vector<float>& y,
                                         const std::vector<int64_t>& lengths, const std::string& what) -> bool {
                    const double scale = std::max(max_abs(y), 1e-30);
                    for (size_t row = 0; row < lengths.size(); ++row) {
                        const int64_t n = lengths[row], b = static_cast<int64_t>(row);
                        const std::vector<float> alone =
                            forward_values(m, {1, n, C}, sequence_start(x, b, T, C, n), Call{causal, {}});
                        for (int64_t t = 0; t < n; ++t) {
                            const double d =
                                max_abs_diff(at_position(y, b, T, C, t), at_position(alone, 0, n, C, t)) / scale;
                            worst_alone = std::max(worst_alone, d);
                            if (d <= kAgreementTolerance) continue;
                            fail(result, where + ": " + what + " the output at position " + std::to_string(t) +
                                             " of sequence " + std::to_string(b) + " (" + std::to_string(n) +
                                             " real positions) differs from the same sequence run alone (" +
                                             lengths_text(n, n) + ", no padding) by " + num(d) +
                                             " of the output scale (tolerance " + num(kAgreementTolerance) +
                                             "): padded keys are attended to or counted; anything that depends on "
                                             "the number of keys must count only real keys");
                            return false;
                        }
                    }
                    return true;
                };
                // Sequences that are not independent: one padded sequence (B = 1, nothing to mix with)
                // against itself alone; otherwise the batch of two below compares the same and more.
                if (compare_alone && !batch_independent_) {
                    const std::vector<float> x = normal_values(inputs_, T * C);
                    const std::vector<float> y = forward_values(m, {1, T, C}, x, Call{causal, {len}});
                    if (!against_alone(x, y, {len}, "one padded sequence:")) return result;
                }
                // Rows of lengths {len, T}: when sequences are independent, each row equals its
                // sequence alone (a core that applies one row's mask to every row fails here); and
                // changing the padded inputs of row 0 moves none of its real outputs.
                const std::vector<int64_t> lengths = {len, T};
                const Shape shape{2, T, C};
                const std::vector<float> x = normal_values(inputs_, shape_numel(shape));
                reseed_dropout(inst);
                const std::vector<float> y = forward_values(m, shape, x, Call{causal, lengths});
                if (compare_alone && batch_independent_ && !against_alone(x, y, lengths, "a batch of two:"))
                    return result;
                const double scale = std::max(max_abs(y), 1e-30);
                reseed_dropout(inst);
                const std::vector<float> y2 =
                    forward_values(m, shape, replace_from(x, inputs_, T, C, lengths), Call{causal, lengths});
                for (int64_t t = 0; t < len; ++t) {
                    const double d = position_diff(y, y2, 0, T, C, t) / scale;
                    worst_invariance = std::max(worst_invariance, d);
                    if (d <= kInvarianceTolerance) continue;
                    return fail(result, where + ": the output at position " + std::to_string(t) +
                                            " of sequence 0 moves by " + num(d) +
                                            " of the output scale (tolerance " + num(kInvarianceTolerance) +
                                            ") when only its padded inputs (positions " + std::to_string(len) + ".." +
                                            std::to_string(T - 1) + ") change: padded keys are attended to");
                }
            }
        }
    }
    result.status = Status::passed;
    std::string cases;
    for (auto [T, len] : kPaddedLengths)
        cases += (cases.empty() ? "" : ", ") + std::to_string(len) + " of " + std::to_string(T);
    result.detail = "real lengths " + cases + (causal_modes.size() > 1 ? ", non-causal and causal" : ", non-causal") +
                    ": padded sequences equal the same sequences alone (" + modes_text(kNoDropoutModes) +
                    (batch_independent_ ? "; in a batch of two" : "; one sequence alone: batch independence failed") +
                    ") within " + num(worst_alone) + " of the output scale (tolerance " + num(kAgreementTolerance) +
                    ") and move by " + num(worst_invariance) + " when padded inputs change (" +
                    modes_text(kSameShapeModes) + "; tolerance " + num(kInvarianceTolerance) + ")";
    return result;
}

AttentionCheckResult Checker::kv_cache() {
    AttentionCheckResult result{"kv_cache", Status::skipped, ""};
    if (!supports().kv_cache) {
        result.detail = "attention/" + name_ + " does not declare kv_cache support";
        return result;
    }
    result.status = Status::failed;
    if (!supports().causal) {
        result.detail = "attention/" + name_ + " declares kv_cache without causal support; decoding with a cache "
                        "is causal (query i of T new ones sees keys j <= i + S - T): declare causal too";
        return result;
    }
    const int64_t B = kBatch, S = kCacheSeqLen, C = kHidden;
    const std::vector<std::pair<std::string, std::vector<int64_t>>> schedules = {
        {"token by token", std::vector<int64_t>(static_cast<size_t>(S), 1)},
        {"in chunks of " + lengths_list(kCacheChunks), kCacheChunks}};
    double worst = 0.0;
    for (const Mode& mode : kNoDropoutModes) {
        Instance inst = build_small(B, S, mode);
        const Shape shape{B, S, C};
        const std::vector<float> x = normal_values(inputs_, shape_numel(shape));
        const std::vector<float> full = forward_values(*inst.module, shape, x, Call{true, {}});
        const double scale = std::max(max_abs(full), 1e-30);
        for (const auto& [schedule, chunks] : schedules) {
            KvCache cache;
            int64_t done = 0;
            for (int64_t n : chunks) {
                const std::string where = "causal, " + mode.label() + ", decoding " + schedule + ", " +
                                          lengths_text(n, done + n);
                const std::vector<float> y = forward_values(*inst.module, {B, n, C}, positions(x, B, S, C, done, n),
                                                            Call{true, {}}, &cache);
                if (cache.length() != done + n)
                    return fail(result, where + ": the cache holds " + std::to_string(cache.length()) +
                                            " positions after " + std::to_string(done + n) +
                                            "; forward() must append the new keys and values");
                const std::vector<float> want = positions(full, B, S, C, done, n);
                for (int64_t t = 0; t < n; ++t)
                    for (int64_t b = 0; b < B; ++b) {
                        const double d = position_diff(y, want, b, n, C, t) / scale;
                        worst = std::max(worst, d);
                        if (d <= kAgreementTolerance) continue;
                        return fail(result, where + ": the output at position " + std::to_string(done + t) +
                                                " of sequence " + std::to_string(b) +
                                                " differs from the full causal forward's (" + lengths_text(S, S) +
                                                ") by " + num(d) + " of the output scale (tolerance " +
                                                num(kAgreementTolerance) +
                                                "): the cached keys and values are dropped or misaligned; query i of "
                                                "the T new positions must see keys j <= i + S - T");
                    }
                done += n;
            }
        }
    }
    result.status = Status::passed;
    result.detail = "decoding " + std::to_string(S) + " positions token by token and in chunks of " +
                    lengths_list(kCacheChunks) + " (" + modes_text(kNoDropoutModes) +
                    ") equals the full causal forward within " + num(worst) + " of the output scale (tolerance " +
                    num(kAgreementTolerance) + ")";
    return result;
}

}  // namespace lab::attention_check_detail
