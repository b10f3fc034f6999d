// What a plugin's factory and its checks are handed: BuildContext while the run is built, and
// PlanContext / PluginEstimate when it is planned from options alone (PluginDecl::validate and
// ::estimate, lab/registry.h; lab/run_plan.h runs them). In the nn layer, below the registry, so
// that modules and attention (nn) take a BuildContext without depending on the registry above them.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "lab/attention.h"
#include "lab/backend.h"
#include "lab/options.h"
#include "lab/rng.h"

namespace lab {

class Registry;
class Tokenizer;

// Everything a factory may need while an experiment is being built.
struct TrainSettings {
    int64_t steps = 0, batch = 0, seq_len = 0, eval_every = 0, log_every = 0;
    int64_t micro_batch = 0;  // sequences per forward/backward pass (0: a rank's whole slice of the batch)
    double grad_clip = 0;
};

struct BuildContext {
    Backend* backend = nullptr;
    const Registry* registry = nullptr;
    uint64_t seed = 0;
    Generator init_rng;     // parameter initialisation
    Generator dropout_rng;  // dropout masks
    Generator data_rng;     // batch sampling
    TrainSettings train;
    std::filesystem::path data_dir;
    std::filesystem::path run_dir;  // where the run keeps files (vocabulary, samples)
    Tokenizer* tokenizer = nullptr;
    // Builds the experiment's [attention] choice for a model's shape.
    std::function<std::shared_ptr<Attention>(const AttentionShape&)> make_attention;
    std::function<void(const std::string&)> log = [](const std::string&) {};
};

// What a plugin's validate and estimate hooks see of the run they are part of: the resolved
// options of every section and what the plugins planned before this one (tokenizer, model,
// attention, task, optimizer, schedule, backend: in that order).
struct PlanContext {
    const Options* options = nullptr;                 // this plugin's resolved options
    std::map<std::string, const Options*> sections;  // "experiment", "train", "model", ... -> options
    std::map<std::string, std::string> plugins;      // plugin sections -> the plugin chosen ("tokenizer" -> "char")
    TrainSettings train;
    std::string attention_plugin;  // the experiment's [attention] type
    AttentionTraits attention;     // and what it declares
    // Attention plugins: the shape the model builds its blocks' attention with.
    const AttentionShape* attention_shape = nullptr;
    // Tasks, attention and optimizers: the model's estimate (hidden, causal, max_seq_len).
    const PluginEstimate* model = nullptr;
    // The vocabulary: the tokenizer's or the task's when options fix it, the built tokenizer's in
    // the run; 0 when it is known only after the data is read.
    int64_t vocab_size = 0;

    // The options of `section`; throws ConfigError when the run has no such section.
    const Options& section(const std::string& name) const;
};

// What a plugin will allocate, from its options (PluginDecl::estimate). Counts are elements, f32.
struct PluginEstimate {
    // Trainable parameters the plugin itself creates. Exact: a test compares it with the built
    // model. A model leaves out its blocks' attention, which the attention plugin counts. A double,
    // so that hostile options (layers = 100000000) give a huge count, not an overflow.
    double parameters = 0;
    // Floats the forward pass keeps for the backward pass, per token of a micro-batch.
    double activation_floats_per_token = 0;
    // Model plugins: the attention shape of every block and how many blocks; the width, the
    // longest sequence and whether positions see only earlier ones (tasks check theirs against it).
    std::optional<AttentionShape> attention_shape;
    int64_t attention_layers = 0;
    int64_t hidden = 0, max_seq_len = 0;
    bool causal = false;
    // Task plugins: which models they can train (checked against the model's `causal`).
    bool needs_causal_model = false, needs_bidirectional_model = false;
    // Tokenizer or task plugins: the vocabulary size when the options fix it (0: unknown).
    int64_t vocab_size = 0;
    // Optimizer plugins: f32 state per parameter (AdamW: 2 moments; SGD with momentum: 1).
    int64_t state_floats_per_parameter = 0;
};

}  // namespace lab
