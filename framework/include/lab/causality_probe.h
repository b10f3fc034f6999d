// The causality probe: before a run whose model or task needs causal attention trains, the
// assembled model (the plugins as they are built now, with the run's weights) is checked for a
// leak of the future. A short batch of random token ids goes through Model::forward; then the
// tokens from position t on are replaced (t = 1, T / 2 and T - 1) and every output before t must
// stay as it was, in training mode (dropout on, with the same masks in both passes) and in
// evaluation mode. A model that leaks is refused with a TrainingError naming the mode, the
// earliest leaking position and, found by probing each attention module of the model on its own
// with a causal AttentionContext, the first attention block that leaks ("h.3.attn").
//
// `labrun --check attention/NAME` checks one attention plugin in isolation, once; the probe checks
// every run, so a plugin rebuilt wrongly after a passing check cannot train a model that sees the
// tokens it predicts (a character-level model reaching a loss no honest model can).
//
// The probe changes nothing the run computes: it draws its tokens from a random stream of its own,
// rewinds the dropout stream after each pass (the run's masks stay those of a run without it),
// restores the model's train/eval mode, updates no parameter and records no gradient. There is no
// switch to turn it off: a causal task trained on a model that sees the future measures nothing,
// and the probe costs a few milliseconds (8 forward passes of 2 x min(seq_len, 32) tokens).
#pragma once
#include <cstdint>
#include <string>

#include "lab/model.h"

namespace lab {

struct BuildContext;

struct CausalityProbeSettings {
    std::string model = "model";  // "model/gpt": how messages name the model
    int64_t batch = 2;            // B
    int64_t seq_len = 32;         // T at most; also at most the model's max_seq_len()
};

struct CausalityProbeResult {
    int64_t batch = 0, seq_len = 0;  // the probe batch [B, T]
    int64_t forward_passes = 0;      // 0: skipped (T < 2 or a vocabulary of one token; `notes` says which)
    double max_change = 0.0;  // largest |change| of an output before the replaced tokens (0: bitwise equal)
    double scale = 0.0;       // largest |output| of the unchanged batch
    double seconds = 0.0;
    std::string notes;        // why it was skipped, or a mode it could not decide (two identical passes differed)
    // "causality probe: model/gpt sees no later token in training or evaluation mode (...)"
    std::string summary(const std::string& model) const;
};

// Probes `model` (built with `ctx`: its backend, seed and dropout stream). Returns what it measured
// when no output depends on a later token; throws TrainingError naming the mode, the position and
// the first leaking attention module otherwise.
CausalityProbeResult probe_causality(Model& model, BuildContext& ctx, const CausalityProbeSettings& settings = {});

}  // namespace lab
