// `labrun --check attention/NAME [key=value ...] [--backend NAME] [--profile-lengths 128,256,...]
// [--no-profile] [--db FILE]`: the attention conformance check (lab/attention_check.h) from the
// command line. It prints the report and, with --db, records it in the results database as a run
// named "check attention/NAME": params for the plugin's options and the backend, metrics
// "check/<name>" (1 passed, 0 failed; a skipped check writes none) at step 0, the cost profile as
// "cost/forward_ms", "cost/train_ms" and "cost/peak_mem_mb" at step = sequence length, the whole
// report as the text "check/report", and the run finished (every check passed) or failed.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "lab/registry.h"

struct CheckCliOptions {
    std::string backend;          // --backend; empty: onednn when loaded, else reference
    std::string profile_lengths;  // --profile-lengths "128,256,..."; empty: the default lengths
    bool no_profile = false;      // --no-profile
    bool rope = false;            // --rope: blocks built with rotary position embeddings
    std::string db;               // --db FILE; empty: nothing is recorded
    uint64_t seed = 1;            // inputs and the check's parameters
    std::ostream* out = nullptr;  // where the report goes; null: std::cout
};

// `args` are what follows --check: the plugin ("attention/NAME", or just NAME) and then its
// options as key=value. Returns 0 when every check passed, 1 when one failed. Throws ConfigError
// for bad arguments or options, PluginError for an unknown plugin or backend.
int run_attention_check(const lab::Registry& registry, const std::vector<std::string>& args,
                        const CheckCliOptions& options);
