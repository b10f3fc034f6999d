// Planning a run from its options alone, before anything is built: every plugin's cross-option
// rules (PluginDecl::validate) and a memory estimate (PluginDecl::estimate) checked against the
// memory the run may use. `labrun --dry-run` and the run share this code, so that --dry-run
// refuses what building the run would refuse, and a run too large for the machine is refused in
// milliseconds instead of after minutes of allocating.
//
// The plugins are planned in the order they are built: tokenizer, model, then the model's
// attention with the shape the model builds it with (PluginEstimate::attention_shape), task,
// optimizer, schedule, backend. Each hook sees what the earlier ones planned (PlanContext).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "lab/memory.h"
#include "lab/registry.h"

namespace lab {

struct RunSpec;

// The [train] section as the factories see it (BuildContext::train).
TrainSettings train_settings(const Options& train);

// Runs the framework's rules that span sections and every plugin's validate hook. Throws
// ConfigError naming the key(s), what was expected and what to change. resolve_run calls it.
void validate_run(const RunSpec& run, const Registry& registry);

// What a run will hold in memory at its peak (bytes; f32 everywhere).
struct MemoryEstimate {
    int64_t parameters = 0;       // trainable elements: model, its attention, task heads
    int64_t vocab_size = 0;       // the vocabulary counted; 0: not known before the data is read
    int64_t tokens_per_pass = 0;  // sequences per forward pass ([train] micro_batch or batch) x seq_len
    int64_t optimizer_floats_per_parameter = 0;
    double parameter_bytes = 0, gradient_bytes = 0, optimizer_bytes = 0, activation_bytes = 0;

    double total_bytes() const { return parameter_bytes + gradient_bytes + optimizer_bytes + activation_bytes; }
    // "parameters 1.2 M (4.6 MiB), gradients ..., optimizer state ..., activations ..., total ..."
    std::string str() const;
};

// The estimate of `run` from its plugins' estimate hooks. `vocab_size` > 0 is the built
// tokenizer's vocabulary; 0 takes the tokenizer's or the task's estimate (0 when neither knows:
// the embeddings and logits are then left out, so the estimate is a lower bound).
MemoryEstimate estimate_memory(const RunSpec& run, const Registry& registry, int64_t vocab_size = 0);

// Throws ConfigError when the estimate exceeds `available_bytes` (0: unknown, nothing is refused),
// printing the estimate against it; `where` says whose memory ("host memory", "cuda device ...").
void check_memory(const MemoryEstimate& estimate, size_t available_bytes, const std::string& where);

// What Backend::available_memory counts, for messages: "host memory" or "cuda device memory".
std::string memory_name(const Backend& backend);

}  // namespace lab
