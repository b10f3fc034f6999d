// A WordPiece vocabulary: vocab.txt, one token per line, the line index (from 0) is the id, as
// Hugging Face's BERT vocabularies are written.
//
// What a file must be (each violation is a DataError naming the file, and the line where there is
// one): readable, UTF-8, not empty, no token listed twice (both lines named), no empty line. Hugging
// Face would make an empty line the token "" and shift nothing, but an empty line in the middle of
// a vocabulary is nearly always a damaged file, so it is refused; the newline that ends the last
// line is fine (a file without it is fine too). Lines may end in "\r\n"; the "\r" is not part of
// the token. Whether the vocabulary holds [UNK] is checked by the tokenizer, which needs it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace wordpiece {

class Vocabulary {
public:
    Vocabulary() = default;
    // Throws lab::DataError as described above.
    static Vocabulary load(const std::filesystem::path& file);
    // Tokens from training; throws lab::DataError (naming `source`) for an empty list or a
    // duplicate.
    static Vocabulary from_tokens(std::vector<std::string> tokens, const std::string& source);

    // The id of `token`, or -1.
    int32_t find(const std::string& token) const {
        auto it = ids_.find(token);
        return it == ids_.end() ? -1 : it->second;
    }
    const std::string& token(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
    const std::vector<std::string>& tokens() const { return tokens_; }
    size_t size() const { return tokens_.size(); }
    bool empty() const { return tokens_.empty(); }
    // Bytes of the longest token: no candidate longer than this can match.
    size_t longest_token_bytes() const { return longest_; }

    // Writes one token per line to `file` through a temporary file and a rename, so that a reader
    // never sees half a vocabulary. Throws lab::DataError naming the file.
    void save(const std::filesystem::path& file) const;

private:
    std::vector<std::string> tokens_;
    std::unordered_map<std::string, int32_t> ids_;
    size_t longest_ = 0;
};

}  // namespace wordpiece
