// Helpers for tests that build plugins by hand, outside an experiment: a BuildContext seeded the
// way the trainer seeds it, and a tokenizer that only has a vocabulary size (for model tests that
// feed ids directly); tokenizers made from their plugin alone, and their JSON-lines fixtures.
#pragma once
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

// Tokenizer NAME built from key=value options, its plugin loaded alone from
// LAB_PLUGIN_DIR/tokenizer_NAME.so (once per name), so that a tokenizer's tests need no other plugin.
inline std::shared_ptr<lab::Tokenizer> make_tokenizer(const std::string& name,
                                                      const std::map<std::string, std::string>& values) {
    static std::map<std::string, lab::Registry> registries;
    auto it = registries.find(name);
    if (it == registries.end()) {
        it = registries.emplace(name, lab::Registry()).first;
        it->second.load_library(std::filesystem::path(LAB_PLUGIN_DIR) / ("tokenizer_" + name + ".so"));
    }
    lab::BuildContext ctx;
    lab::Options opts = lab::plugin_options(it->second, "tokenizer", name, values, "test");
    return it->second.factory<lab::TokenizerFactory>("tokenizer", name)(opts, ctx);
}

// The records of a JSON-lines fixture (tests/fixtures/...), blank lines skipped.
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    REQUIRE(in);
    std::vector<nlohmann::json> rows;
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
    return rows;
}

}  // namespace lab_test
