// The attention conformance check: what `labrun --check attention/NAME` runs and what every
// attention plugin's tests call (tests/attention_conformance.h). It builds the plugin through the
// Registry at small sizes and checks, on the given backend:
//   shapes       output [B, T, C] for several B and T, finite values
//   gradients    input and parameter gradients against central finite differences (causal and not,
//                padded and not; T <= 5)
//   causality    (if supported) changing the input at a later position changes no earlier output,
//                at T = S = 1, 17, 63, 64, 65, 129, 257 (across the fused kernels' 64-wide tiles) and,
//                for kv_cache plugins, at T < S (queries the last T of S positions, through a cache);
//                every position changed alone up to T = 65, beyond that every position from t on
//                for t at and after each multiple of 32
//   batch_independence  changing one sequence of a batch changes no other sequence's outputs or
//                input gradients, at the same lengths
//   padding      (if supported) a padded sequence's outputs at its real positions equal those of the
//                same sequence run alone, and do not move when its padded inputs change
//   kv_cache     (if declared) decoding token by token and in chunks equals the full causal forward
//   dropout      at p = 0.1 in training, a share p of the attention weights is dropped (within five
//                binomial standard deviations) and the rest scaled by 1 / (1 - p); eval mode drops
//                nothing. Skipped where no weight changes and the plugin declares no softmax
//                equivalence (it has no probabilities to drop, e.g. attention/linear)
//   exact        (if the plugin declares AttentionTraits::equals_softmax_with) with those options
//                and the same parameters, outputs and gradients equal attention/softmax's
//   determinism  two identical forward+backward passes agree bit for bit
// Causality, batch independence and padding run in train and in eval mode (the block's training
// flag off, as validation and `labrun generate` run it), each with dropout 0 and 0.1; comparisons
// across shapes (padded against alone, cached against full) without dropout, whose masks depend on
// the shape. A failure names the property, the mode, the lengths (T and S)
// and the first offending position (sequence, query, key where known). Unless disabled, a cost
// profile follows: forward and forward+backward time and peak memory at sequence lengths 128 ... 4096.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lab/backend.h"
#include "lab/registry.h"

namespace lab {

struct AttentionCheckSettings {
    std::map<std::string, std::string> options;  // the plugin's options (validated against its schema)
    uint64_t seed = 1;
    // Build every block with rotary position embeddings (AttentionShape::rope, base 10000), as
    // model/gpt's position = rope does: the checks then cover the rotation under causal masks,
    // padding and the KV cache's positions.
    bool rope = false;
    // Cost profile: empty lengths = no profile.
    std::vector<int64_t> profile_lengths = {128, 256, 512, 1024, 2048, 4096};
    int64_t profile_batch = 1, profile_hidden = 256, profile_heads = 4;
    int profile_repeats = 3;  // timed repetitions per length (the fastest counts), after one warm-up
};

struct AttentionCheckResult {
    enum class Status { passed, failed, skipped };
    std::string name;    // "shapes", "gradients", "causality", "batch_independence", "padding", "kv_cache",
                         // "dropout", "exact", "determinism" (in that order)
    Status status = Status::skipped;
    std::string detail;  // what was measured (worst errors), or why it failed / was skipped
};

struct AttentionCostRow {
    int64_t seq_len = 0;
    double forward_ms = 0, train_ms = 0;  // forward alone; forward + backward
    double peak_mb = 0;                   // peak memory of forward + backward above what was in use before
    std::string error;                    // non-empty: this length failed (e.g. out of memory); the profile stopped
};

struct AttentionCheckReport {
    std::string plugin;   // "attention/gqa"
    std::string options;  // "kv_heads=1" as checked
    std::string backend;
    std::vector<AttentionCheckResult> checks;
    std::vector<AttentionCostRow> profile;

    bool passed() const;         // no check failed
    std::string format() const;  // the checks, one per line, then the profile as a table
};

// Runs the checks (and the profile) for attention/`name`. Throws PluginError for an unknown
// plugin and ConfigError for a bad option; a failing check is reported, not thrown.
AttentionCheckReport check_attention(const Registry& registry, Backend& backend, const std::string& name,
                                     const AttentionCheckSettings& settings = {});

}  // namespace lab
