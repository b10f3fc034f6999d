// Tokenizer (plugin kind "tokenizer"): text <-> ids.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace lab {

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // Throws DataError for text the tokenizer cannot represent (naming the byte offset).
    virtual std::vector<int32_t> encode(std::string_view text) const = 0;
    // Throws DataError for an id outside [0, vocab_size).
    virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
    virtual int64_t vocab_size() const = 0;
    // False until a vocabulary is loaded or trained.
    virtual bool ready() const { return true; }
    virtual bool trainable() const { return false; }
    // Builds the vocabulary from a corpus (trainable tokenizers only).
    virtual void train(std::string_view corpus);
    // Writes the vocabulary into `dir` (one or more files) and returns the main file's path.
    virtual std::filesystem::path save(const std::filesystem::path& dir) const = 0;
    virtual std::map<std::string, int32_t> special_ids() const { return {}; }
};

}  // namespace lab
