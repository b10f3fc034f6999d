// Helpers for tests that build plugins by hand, outside an experiment: a BuildContext seeded the
// way the trainer seeds it, and a tokenizer that only has a vocabulary size (for model tests that
// feed ids directly).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/registry.h"
#include "lab/rng.h"
#include "lab/tokenizer.h"

namespace lab_test {

// backend, registry, seed and the three random streams, as run_experiment sets them.
inline void seed_context(lab::BuildContext& ctx, lab::Backend& backend, const lab::Registry& registry, uint64_t seed) {
    ctx.backend = &backend;
    ctx.registry = &registry;
    ctx.seed = seed;
    ctx.init_rng = lab::Generator(seed, lab::kStreamInit);
    ctx.dropout_rng = lab::Generator(seed, lab::kStreamDropout);
    ctx.data_rng = lab::Generator(seed, lab::kStreamData);
}

class FixedVocabTokenizer : public lab::Tokenizer {
public:
    explicit FixedVocabTokenizer(int64_t vocab) : vocab_(vocab) {}
    std::vector<int32_t> encode(std::string_view) const override {
        throw lab::DataError("FixedVocabTokenizer encodes no text; the model tests pass ids directly");
    }
    std::string decode(const std::vector<int32_t>&) const override {
        throw lab::DataError("FixedVocabTokenizer decodes no ids; the model tests read hidden states");
    }
    int64_t vocab_size() const override { return vocab_; }
    std::filesystem::path save(const std::filesystem::path&) const override {
        throw lab::DataError("FixedVocabTokenizer has no vocabulary file to save");
    }

private:
    int64_t vocab_;
};

}  // namespace lab_test
