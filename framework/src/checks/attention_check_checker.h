// Internal to the attention conformance check (attention_check*.cpp): the sizes, tolerances and
// helpers every check shares, and the Checker whose member functions are the checks. Split from
// attention_check.cpp by concept: the mask properties (causality, padding, batch independence, KV
// cache) live in attention_check_masks.cpp, dropout in attention_check_dropout.cpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lab/attention.h"
#include "lab/attention_check.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/rng.h"

namespace lab::attention_check_detail {

// Sizes of the small checks: four heads of size 4, so that head bookkeeping errors (a kv head
// repeated in the wrong order, heads merged in the wrong order) show, and few enough elements that
// the finite-difference check perturbs every one of them in well under a second.
inline constexpr int64_t kHidden = 16, kHeads = 4;
inline constexpr int64_t kBatch = 2, kSeqLen = 9;              // exact, determinism (kBatch: causality, kv_cache)
inline const std::vector<int64_t> kPadLengths = {5, 9};        // right padding: row 0 has 4 padded positions
inline constexpr int64_t kGradBatch = 2, kGradSeqLen = 5;
inline const std::vector<int64_t> kGradPadLengths = {3, 5};
inline const std::vector<std::pair<int64_t, int64_t>> kShapeCases = {{1, 1}, {2, 5}, {3, 17}};  // (B, T)
// The mask properties (causality, padding, batch independence) run at the lengths where kernels
// change behaviour: the fused CPU kernel works in tiles of 64 queries x 64 keys, the CUDA kernel in
// tiles of 64, 32 or 16 by head size, so 63, 64 and 65 straddle one tile boundary and 129 and 257
// end in a one-position tile; 1 is a decoding step, 17 a short sequence inside one tile.
inline const std::vector<int64_t> kMaskLengths = {1, 17, 63, 64, 65, 129, 257};
// (T, S): queries that are the last T of S positions, what a KV cache hands a core (plugins that
// declare kv_cache); 33 of 97 puts the queries (positions 64 .. 96) across a tile boundary.
inline const std::vector<std::pair<int64_t, int64_t>> kCachedLengths = {{17, 80}, {33, 97}};
// Causality changes every key position alone up to T = 17 (every query-key pair seen). Beyond, one
// forward per position would be ~600 forwards per mode, each with several multi-threaded ops (on a
// loaded machine every parallel region waits for a descheduled thread: the check took ~40 s),
// so it changes the inputs from position t on, for t next to the sequence's start and end and
// within one of every multiple of kCausalStride: a leak shows when its query is before t and its
// key at or after. That catches every leak across a tile boundary (32 and 64 are multiples) or
// near the ends, and every leak from the query just before a boundary; a failure then locates the
// key by changing positions one by one.
inline constexpr int64_t kCausalEveryKey = 17, kCausalStride = 32;
// (T, real length) of the padded sequence in the padding check, straddling the same boundaries.
inline const std::vector<std::pair<int64_t, int64_t>> kPaddedLengths = {{17, 9}, {64, 63}, {65, 64}, {129, 65},
                                                                         {257, 129}};
// The KV cache check decodes S = 67 positions (across the first tile boundary) token by token and
// in chunks whose boundaries fall at 1, 17, 64 and 67.
inline constexpr int64_t kCacheSeqLen = 67;
inline const std::vector<int64_t> kCacheChunks = {1, 16, 47, 3};
// Batch independence changes one of 3 sequences, so that a mixer in either direction (from the
// next sequence or the previous one) shows in a sequence that did not change.
inline constexpr int64_t kIndependenceBatch = 3;

// Finite differences, the method of tests/gradcheck.h: central differences on f32 forwards of
// L = sum(f(x) * R), R ~ N(0, 1) fixed, accumulated in double. Pass when |analytic - numeric| <=
// 1e-2 * max(1, |numeric|) for every element; a wrong gradient (a missing factor, a dropped
// term, a detached input) errs by the order of the gradient itself, ~0.1 - 1. The step is half
// gradcheck.h's: a whole attention block with unit-gain weights has larger third derivatives
// than one op, and on attention/softmax (reference backend) the worst scaled error measured
// 1.7e-3 at eps = 1e-2 (truncation, ~eps^2), 3.8e-4 at 5e-3, and grew again below (6e-4 at
// 2.5e-3, 1.3e-3 at 1e-3: f32 rounding of L divided by 2 eps). 5e-3 keeps it ~25x below.
inline constexpr float kGradEps = 5e-3f;
inline constexpr double kGradTolerance = 1e-2;
// Causality and padding invariance compare two runs of the same shape that differ only in inputs
// that must not matter. Every kernel here computes an output row from its own inputs, so the
// earlier rows come out bitwise equal; 1e-6 of the output scale (a few f32 ulps) leaves room for
// a backend that picks its reduction order by value, while a real leak moves an output by a sizable
// fraction of the scale (one attention weight of order 1 / T times a value of order the scale).
inline constexpr double kInvarianceTolerance = 1e-6;
// Agreement across different shapes (a padded batch against one sequence alone) and across
// implementations (the variant against attention/softmax): the same sums in another order, another
// blocking or an online softmax differ by f32 rounding, ~1e-7 relative; 1e-5 is 100x that.
inline constexpr double kAgreementTolerance = 1e-5;

// Streams of the counter-based generator of the check's own, so that its draws never coincide
// with a model's initialisation, dropout or data streams for the same seed.
inline constexpr uint64_t kStreamCheckParams = 0x636865636b01ULL, kStreamCheckInputs = 0x636865636b02ULL;

inline std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2g", v);
    return buf;
}

// "(2, 5)" or "[32, 1]"
inline std::string list_text(const std::vector<int64_t>& values, const char* open = "(", const char* close = ")") {
    std::string out = open;
    for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
    return out + close;
}

// The position of flat element `flat` in a tensor of `shape`, as "[b, t, c]".
inline std::string index_text(const Shape& shape, size_t flat) {
    std::vector<int64_t> index(shape.size());
    int64_t rest = static_cast<int64_t>(flat);
    for (size_t d = shape.size(); d-- > 0;) {
        index[d] = shape[d] > 0 ? rest % shape[d] : 0;
        rest = shape[d] > 0 ? rest / shape[d] : 0;
    }
    return list_text(index, "[", "]");
}

inline std::vector<float> normal_values(Generator& gen, int64_t n, float std_dev = 1.0f) {
    return gen.normals(static_cast<size_t>(n), std_dev);
}

inline double max_abs(const std::vector<float>& v) {
    double m = 0.0;
    for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
    return m;
}

// max |a - b|; NaN anywhere makes it infinite, so that no comparison passes on NaN.
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
    double m = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
        if (!(d <= m)) m = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
    }
    return m;
}

// x [B, T, C] with the positions t >= from[b] of each row b replaced by fresh N(0, 1) values.
inline std::vector<float> replace_from(std::vector<float> x, Generator& gen, int64_t T, int64_t C,
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

inline AttentionCheckResult fail(AttentionCheckResult& result, std::string detail) {
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

inline std::string labels(const std::vector<Call>& calls) {
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

inline Gradient gradient_of(const Tensor& t) {
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

inline void clear_grads(const Module& m) {
    for (auto& [name, p] : m.named_parameters()) p.set_grad(Tensor());
}

// The mode a block runs in: kernels branch on both the training flag (an inference fast path, what
// validation and `labrun generate` run) and on dropout (a fused kernel's dropout path), so the mask
// properties hold in each. Eval mode with dropout set must behave as without dropout.
struct Mode {
    bool training = true;
    float dropout = 0.0f;
    std::string label() const {
        return std::string(training ? "train" : "eval") + (dropout > 0.0f ? ", dropout " + num(dropout) : "");
    }
};
inline constexpr float kCheckDropout = 0.1f;
// Properties that compare runs of the same shape: dropout masks match when the generator is
// reseeded before each run (Checker::reseed_dropout), so they hold with dropout on too. Both modes
// with dropout on and off: a core may branch on the rate even where it must not drop.
inline const std::vector<Mode> kSameShapeModes = {
    {true, 0.0f}, {true, kCheckDropout}, {false, 0.0f}, {false, kCheckDropout}};
// Properties that compare runs of different shapes (a padded sequence with itself alone, a cached
// decode with the full forward): a dropout mask depends on the shape, so dropout stays off.
inline const std::vector<Mode> kNoDropoutModes = {{true, 0.0f}, {false, 0.0f}};

// "T = S = 65" or "T = 17 of S = 80"
inline std::string lengths_text(int64_t T, int64_t S) {
    return T == S ? "T = S = " + std::to_string(T) : "T = " + std::to_string(T) + " of S = " + std::to_string(S);
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
        AttentionShape built = shape;
        built.rope = settings_.rope;
        inst.module = registry_.factory<AttentionFactory>("attention", plugin)(options, built, ctx);
        if (!inst.module)
            throw PluginError("attention/" + plugin + ": the factory returned no module; it must return the "
                              "attention block it built");
        if (condition) condition_parameters(*inst.module);
        return inst;
    }

    Instance build_small(int64_t batch, int64_t seq_len, const Mode& mode = {}) {
        AttentionShape shape = small_shape();
        shape.dropout = mode.dropout;
        Instance inst = build(name_, options_, shape, batch, seq_len, true);
        inst.module->train(mode.training);
        return inst;
    }

    // The dropout generator back to its start, so that two runs of the same shape draw the same
    // dropout masks (the block holds a pointer to the context's generator).
    void reseed_dropout(Instance& inst) const { inst.ctx->dropout_rng = Generator(settings_.seed, kStreamDropout); }

    static AttentionShape small_shape() { return AttentionShape{kHidden, kHeads, 0.0f, true}; }

    AttentionCheckResult shapes();
    AttentionCheckResult gradients();
    AttentionCheckResult causality();
    AttentionCheckResult padding();
    AttentionCheckResult batch_independence();
    AttentionCheckResult kv_cache();
    AttentionCheckResult dropout();
    AttentionCheckResult exact();
    AttentionCheckResult determinism();
    std::vector<AttentionCostRow> profile();

private:
    // Unit-gain weights (see the top of attention_check.cpp); the same numbers for every build.
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

    Tensor forward(Attention& m, const Tensor& x, const Call& call, KvCache* cache = nullptr) {
        AttentionContext ctx;
        ctx.causal = call.causal;
        ctx.kv_cache = cache;
        if (!call.lengths.empty()) ctx.padding_mask = padding_mask(call.lengths, x.size(1));
        Tensor y = m.forward(x, ctx);
        if (y.shape() != x.shape())
            throw ShapeError("attention/" + name_ + " returned output " + shape_str(y.shape()) + " for input " +
                             shape_str(x.shape()) + "; an attention block maps [B, T, C] to [B, T, C]");
        return y;
    }

    std::vector<float> forward_values(Attention& m, const Shape& shape, const std::vector<float>& x, const Call& call,
                                      KvCache* cache = nullptr) {
        NoGradGuard no_grad;
        return forward(m, Tensor::from_floats(backend_, shape, x), call, cache).to_floats();
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
    // Whether batch_independence() passed: padding compares the rows of a padded batch with each
    // sequence alone only when the sequences of a batch are independent, so that a batch mixer
    // fails batch independence and not padding.
    bool batch_independent_ = true;
};

}  // namespace lab::attention_check_detail
