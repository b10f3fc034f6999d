// The causality probe (causality_probe.h): random tokens through the assembled model, the tokens
// from a cut on replaced, the outputs before the cut compared; on a leak, each attention module
// probed on its own to name the first one that leaks.
#include "lab/causality_probe.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <vector>

#include "lab/attention.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/options.h"
#include "lab/registry.h"
#include "lab/rng.h"

namespace lab {

namespace {

using Clock = std::chrono::steady_clock;

// The probe's own random stream ("probe"): its tokens and inputs never shift the run's
// initialisation, dropout or data streams for the same seed.
constexpr uint64_t kStreamProbe = 0x70726f6265ULL;

// An output before the replaced tokens may move by at most this fraction of the output scale.
// Every kernel computes a position's output from its own row and the rows before it, in an order
// fixed by the shapes, and a later key's masked probability is an exact 0, so on the CPU backends
// the earlier outputs come out bitwise equal; 1e-6 (a few f32 ulps of the scale) leaves room for a
// backend that picks its reduction order at run time. A real leak moves an output by a sizable
// fraction of the scale: at GPT-2's N(0, 0.02) initialisation one later token seen through a
// nearly uniform softmax of 16 keys moves the final hidden state by ~1e-2 of its scale.
constexpr double kLeakTolerance = 1e-6;

// A leak must stand this far above the difference between two passes over the same tokens, which
// is 0 on a deterministic forward; a model that draws dropout masks from a generator of its own
// (not BuildContext::dropout_rng) moves every output by as much as the "leak" in training mode.
constexpr double kLeakOverRepeat = 10.0;

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2g", v);
    return buf;
}

struct Mode {
    bool training;
    const char* name;
};
constexpr Mode kModes[] = {{true, "training mode"}, {false, "evaluation mode"}};

// The cuts t: the inputs from position t on are replaced and no output before t may move. t = 1
// sees a leak into the first position, t = T - 1 one from the last token into any earlier (the
// off-by-one of a mask), t = T / 2 one across the middle of the sequence.
std::vector<int64_t> cut_positions(int64_t T) {
    std::vector<int64_t> cuts{1, T / 2, T - 1};
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    cuts.erase(std::remove_if(cuts.begin(), cuts.end(), [T](int64_t t) { return t < 1 || t >= T; }), cuts.end());
    return cuts;
}

// Puts the run's dropout stream back where it was, however the probe ends.
class RewindOnExit {
public:
    explicit RewindOnExit(Generator& rng) : rng_(rng), offset_(rng.offset()) {}
    ~RewindOnExit() { rng_.set_offset(offset_); }
    RewindOnExit(const RewindOnExit&) = delete;
    RewindOnExit& operator=(const RewindOnExit&) = delete;

private:
    Generator& rng_;
    uint64_t offset_;
};

// Puts the model back in the mode it was in, however the probe ends.
class RestoreMode {
public:
    explicit RestoreMode(Module& m) : m_(m), training_(m.training()) {}
    ~RestoreMode() { m_.train(training_); }
    RestoreMode(const RestoreMode&) = delete;
    RestoreMode& operator=(const RestoreMode&) = delete;

private:
    Module& m_;
    bool training_;
};

struct Leak {
    int64_t position = 0;  // the earliest output that moved
    int64_t cut = 0;       // the first replaced position
    double change = 0.0;   // by how much (max |difference| over the batch and channels)
};

struct ModeProbe {
    double max_change = 0.0, scale = 0.0;
    int64_t passes = 0;
    std::optional<Leak> leak;
    double repeat_change = 0.0;  // at the leak's position: two passes over the same inputs

    // A leak that the forward's own noise cannot explain.
    bool leaks() const { return leak && leak->change > kLeakOverRepeat * repeat_change; }
    bool undecided() const { return leak && !leaks(); }
};

// One mode of a probe. `forward(cut)` runs the module on the inputs whose positions from `cut` on
// are replaced (cut = T: the original inputs) and returns its outputs [B, T, ...] as floats. Every
// pass starts at the same offset of the dropout stream, so that training-mode passes draw the same
// masks (a mask element depends only on its index and the offset, not on the values it drops).
ModeProbe probe_mode(const std::function<std::vector<float>(int64_t)>& forward, int64_t B, int64_t T,
                     Generator& dropout_rng) {
    const uint64_t start = dropout_rng.offset();
    ModeProbe out;
    auto pass = [&](int64_t cut) {
        dropout_rng.set_offset(start);
        ++out.passes;
        return forward(cut);
    };
    const std::vector<float> y = pass(T);
    const size_t row = y.size() / static_cast<size_t>(B * T);  // outputs per position
    for (float v : y) out.scale = std::max(out.scale, static_cast<double>(std::fabs(v)));
    const double tolerance = kLeakTolerance * std::max(out.scale, 1e-30);
    auto change_at = [&](const std::vector<float>& other, int64_t p) {  // over the batch and channels
        double d = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const size_t begin = static_cast<size_t>(b * T + p) * row;
            for (size_t i = begin; i < begin + row; ++i)
                d = std::max(d, std::fabs(static_cast<double>(y[i]) - static_cast<double>(other[i])));
        }
        return d;
    };
    for (int64_t cut : cut_positions(T)) {
        const std::vector<float> changed = pass(cut);
        for (int64_t p = 0; p < cut; ++p) {
            const double d = change_at(changed, p);
            out.max_change = std::max(out.max_change, d);
            if (d > tolerance && (!out.leak || p < out.leak->position)) out.leak = Leak{p, cut, d};
        }
    }
    if (out.leak) out.repeat_change = change_at(pass(T), out.leak->position);
    return out;
}

// The outputs of a forward as floats, after checking that they are [B, T, ...].
std::vector<float> position_outputs(const Tensor& y, int64_t B, int64_t T, const std::string& who) {
    if (y.dim() < 2 || y.size(0) != B || y.size(1) != T)
        throw ShapeError("causality probe: " + who + " returned " + shape_str(y.shape()) + " for a batch of [" +
                         std::to_string(B) + ", " + std::to_string(T) + "]; expected [B, T, ...] (one output per position)");
    return y.to_floats();
}

// `original` with the positions from `cut` on of each row taken from `replacement` (both [B, T, W]).
template <class V>
std::vector<V> replaced_from(const std::vector<V>& original, const std::vector<V>& replacement, int64_t B, int64_t T,
                             int64_t cut) {
    std::vector<V> out = original;
    const size_t width = original.size() / static_cast<size_t>(B * T);
    for (int64_t b = 0; b < B; ++b) {
        const size_t begin = static_cast<size_t>(b * T + cut) * width, end = static_cast<size_t>(b * T + T) * width;
        std::copy(replacement.begin() + static_cast<std::ptrdiff_t>(begin),
                  replacement.begin() + static_cast<std::ptrdiff_t>(end), out.begin() + static_cast<std::ptrdiff_t>(begin));
    }
    return out;
}

// The rows the model's token embedding accepts (the tokenizer's vocabulary when it has none).
int64_t vocabulary(const Model& model, const BuildContext& ctx) {
    const Tensor wte = model.embedding_weight();
    if (wte.defined() && wte.dim() == 2) return wte.size(0);
    return ctx.tokenizer ? ctx.tokenizer->vocab_size() : 0;
}

// Each attention module of `model` (in the mode the model is in) probed alone on random inputs [B, T, C]
// with a causal AttentionContext: "h.3.attn (attention/leaky: ...)" for the first that leaks, or
// what was probed when none does.
std::string find_leaking_attention(Model& model, BuildContext& ctx, int64_t B, int64_t T, Generator& probe_rng) {
    std::vector<std::string> probed;
    for (const auto& [path, module] : model.named_modules()) {
        auto* attention = dynamic_cast<Attention*>(module.get());
        if (!attention) continue;
        const auto* heads = dynamic_cast<const MultiHeadAttention*>(attention);
        const int64_t C = heads ? heads->shape().hidden : model.hidden_size();
        const std::string who = heads ? path + " (" + heads->name() + ")" : path;
        const size_t n = static_cast<size_t>(B * T * C);
        const std::vector<float> x = probe_rng.normals(n), fresh = probe_rng.normals(n);
        ModeProbe r;
        try {
            r = probe_mode(
                [&](int64_t cut) {
                    NoGradGuard no_grad;
                    Tensor input = Tensor::from_floats(*ctx.backend, {B, T, C}, replaced_from(x, fresh, B, T, cut));
                    return position_outputs(attention->forward(input, AttentionContext{true, {}, nullptr}), B, T, who);
                },
                B, T, ctx.dropout_rng);
        } catch (const Error&) {
            continue;  // an attention block the probe cannot run on its own (another width, say): not named
        }
        probed.push_back(path);
        if (r.leaks())
            return "the first attention block that leaks on its own is " + who + ": its output at position " +
                   std::to_string(r.leak->position) + " changed by " + num(r.leak->change) + " (output scale " +
                   num(r.scale) + ") when its inputs from position " + std::to_string(r.leak->cut) +
                   " on changed, under causal = true";
    }
    if (probed.empty()) return "the model has no attention module the probe could run on its own";
    return "no attention block leaks on its own (probed " + join(probed, ", ") + "), so the leak is in the model's own code";
}

}  // namespace

std::string CausalityProbeResult::summary(const std::string& model) const {
    if (forward_passes == 0) return "causality probe: skipped for " + model + " (" + notes + ")";
    std::string cuts;
    for (int64_t t : cut_positions(seq_len)) cuts += (cuts.empty() ? "" : ", ") + std::to_string(t);
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.1f ms", 1e3 * seconds);
    std::string text = "causality probe: " + model + " sees no later token in training or evaluation mode (" +
                       std::to_string(batch) + " x " + std::to_string(seq_len) + " random tokens, replaced from t = " +
                       cuts + " on: " + std::to_string(forward_passes) + " forward passes, " + ms + "; outputs before t " +
                       (max_change == 0.0 ? std::string("bitwise equal")
                                          : "moved at most " + num(max_change) + " of scale " + num(scale)) +
                       ")";
    return notes.empty() ? text : text + "; " + notes;
}

CausalityProbeResult probe_causality(Model& model, BuildContext& ctx, const CausalityProbeSettings& settings) {
    const auto t0 = Clock::now();
    CausalityProbeResult result;
    const int64_t B = std::max<int64_t>(1, settings.batch);
    const int64_t T = std::min(settings.seq_len, model.max_seq_len());
    const int64_t V = vocabulary(model, ctx);
    result.batch = B;
    result.seq_len = T;
    if (T < 2 || V < 2) {
        result.notes = T < 2 ? "sequences of " + std::to_string(T) + " position: no later token to see"
                             : "a vocabulary of " + std::to_string(V) + " token: no other token to put in";
        return result;
    }

    // The batch and its replacement: every replaced token differs from the original.
    Generator probe_rng(ctx.seed, kStreamProbe);
    std::vector<int64_t> ids(static_cast<size_t>(B * T)), other(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        ids[i] = static_cast<int64_t>(probe_rng.uniform_int(static_cast<uint64_t>(V)));
        other[i] = (ids[i] + 1 + static_cast<int64_t>(probe_rng.uniform_int(static_cast<uint64_t>(V - 1)))) % V;
    }
    auto model_forward = [&](int64_t cut) {
        NoGradGuard no_grad;
        ModelInputs in;
        in.ids = Tensor::from_ints(*ctx.backend, {B, T}, replaced_from(ids, other, B, T, cut), DType::i32);
        return position_outputs(model.forward(in), B, T, settings.model);
    };

    RestoreMode restore_mode(model);
    RewindOnExit rewind(ctx.dropout_rng);
    for (const Mode& mode : kModes) {
        model.train(mode.training);
        ModeProbe r = probe_mode(model_forward, B, T, ctx.dropout_rng);
        result.forward_passes += r.passes;
        result.scale = std::max(result.scale, r.scale);
        if (r.undecided()) {
            result.notes += std::string(result.notes.empty() ? "" : "; ") + "not decided in " + mode.name +
                            ": two passes over the same tokens differ by " + num(r.repeat_change) +
                            " (randomness outside BuildContext::dropout_rng, or a non-deterministic kernel)";
            continue;
        }
        result.max_change = std::max(result.max_change, r.max_change);
        if (!r.leaks()) continue;
        const std::string layer = find_leaking_attention(model, ctx, B, T, probe_rng);
        throw TrainingError("causality probe: " + settings.model + " sees the future in " + mode.name + ": its output at position " +
                            std::to_string(r.leak->position) + " changed by " + num(r.leak->change) + " (output scale " +
                            num(r.scale) + ") when only the tokens from position " + std::to_string(r.leak->cut) +
                            " on changed (" + std::to_string(B) + " x " + std::to_string(T) + " random tokens); " + layer +
                            ". Training it would learn from the tokens it is asked to predict; fix the plugin (labrun "
                            "--check attention/NAME tests an attention plugin's causality) and run again");
    }
    result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return result;
}

}  // namespace lab
