// Text generation from a causal language model whose output layer is tied to its token embedding
// (logits = hidden · embedding_weight^T, as task/causal_lm trains it): ancestral sampling with
// temperature, top-k and nucleus (top-p) filtering, with the model's KV cache or by recomputing
// the whole context for every token (the two give the same tokens).
//
// Length: a prompt longer than the model's context (max_seq_len) is refused; generation stops
// after max_tokens new tokens or when prompt + new tokens fill the context, whichever is first
// (learned positions cannot go past it; model/gpt keeps the limit with rope or no positions too).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lab/model.h"

namespace lab {

struct SamplingOptions {
    int64_t max_tokens = 100;
    double temperature = 1.0;  // 0: greedy (argmax)
    int64_t top_k = 0;         // keep the k most likely tokens (0: all)
    double top_p = 1.0;        // keep the smallest set of tokens whose probability reaches top_p
    uint64_t seed = 1;         // the sampling stream (kStreamSample)
    bool kv_cache = true;      // use the model's KV cache when it has one
};

struct Generation {
    std::vector<int32_t> ids;  // prompt followed by the new tokens
    int64_t new_tokens = 0;
    double seconds = 0;        // wall time of the generation loop
    bool used_kv_cache = false;
    std::string stop_reason;   // "max_tokens" or "context"
};

// Throws ConfigError for an empty prompt, a prompt longer than the context, or bad options.
Generation generate(Model& model, const std::vector<int32_t>& prompt, const SamplingOptions& options);

// The token that u in [0, 1) picks from `logits` under the options' temperature, top_k and top_p.
int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, double u);

}  // namespace lab
