#include "lab/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/ops.h"
#include "lab/rng.h"

namespace lab {

int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, double u) {
    if (logits.empty()) throw ShapeError("sample_token: no logits");
    if (options.temperature <= 0)
        return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    // Candidates by descending logit (ties: lower id first, so the order is deterministic).
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
    });
    size_t keep = order.size();
    if (options.top_k > 0) keep = std::min(keep, static_cast<size_t>(options.top_k));
    double top = logits[static_cast<size_t>(order[0])];
    std::vector<double> p(keep);
    double sum = 0;
    for (size_t i = 0; i < keep; ++i)
        sum += p[i] = std::exp((logits[static_cast<size_t>(order[i])] - top) / options.temperature);
    if (options.top_p < 1.0) {
        // The nucleus: the smallest prefix whose probability reaches top_p (at least one token).
        double mass = 0;
        size_t n = 0;
        while (n < keep && mass < options.top_p * sum) mass += p[n++];
        keep = std::max<size_t>(1, n);
        sum = mass > 0 ? mass : p[0];
    }
    double target = u * sum, acc = 0;
    for (size_t i = 0; i < keep; ++i) {
        acc += p[i];
        if (acc > target) return order[i];
    }
    return order[keep - 1];
}

Generation generate(Model& model, const std::vector<int32_t>& prompt, const SamplingOptions& options) {
    if (prompt.empty()) throw ConfigError("generate: the prompt encodes to no tokens; give some text");
    if (options.max_tokens < 1) throw ConfigError("generate: --max-tokens must be at least 1");
    if (options.temperature < 0) throw ConfigError("generate: --temperature must be >= 0");
    if (options.top_k < 0) throw ConfigError("generate: --top-k must be >= 0 (0 keeps every token)");
    if (!(options.top_p > 0 && options.top_p <= 1)) throw ConfigError("generate: --top-p must be in (0, 1]");
    const int64_t context = model.max_seq_len();
    if (static_cast<int64_t>(prompt.size()) > context)
        throw ConfigError("generate: the prompt has " + std::to_string(prompt.size()) +
                          " tokens, more than the model's context of " + std::to_string(context) +
                          "; shorten the prompt");
    NoGradGuard no_grad;
    bool was_training = model.training();
    model.eval();
    Backend& backend = model.embedding_weight().backend();
    Generator rng(options.seed, kStreamSample);
    Generation out;
    out.ids = prompt;
    out.used_kv_cache = options.kv_cache && model.supports_kv_cache();
    DecodeState state;
    auto t0 = std::chrono::steady_clock::now();
    out.stop_reason = "max_tokens";
    while (out.new_tokens < options.max_tokens) {
        if (static_cast<int64_t>(out.ids.size()) >= context) {
            out.stop_reason = "context";
            break;
        }
        // With the cache only the tokens it has not seen go in (the whole prompt first, then one).
        size_t first = out.used_kv_cache ? static_cast<size_t>(state.length) : 0;
        std::vector<int32_t> window(out.ids.begin() + static_cast<std::ptrdiff_t>(first), out.ids.end());
        auto T = static_cast<int64_t>(window.size());
        ModelInputs in;
        in.ids = Tensor::from_host(backend, {1, T}, DType::i32, window.data());
        Tensor hidden = out.used_kv_cache ? model.forward_cached(in, state) : model.forward(in);  // [1, T, C]
        Tensor last = ops::reshape(ops::slice(hidden, 1, T - 1, T), {1, model.hidden_size()});
        std::vector<float> logits = ops::linear(last, model.embedding_weight()).to_floats();  // [V]
        out.ids.push_back(sample_token(logits, options, rng.uniform()));
        ++out.new_tokens;
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    model.train(was_training);
    return out;
}

}  // namespace lab
