// The vocabulary of tokenizer/bpe: token bytes by id, the merge ranks, and the byte-pair merge of one
// pre-token, read from / written to GPT-2's two files (encoder.json + vocab.bpe).
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bpe {

inline constexpr const char* kEndOfText = "<|endoftext|>";

// Hash that lets unordered_map<std::string, ...> be searched with a string_view (no copy).
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

class Vocabulary {
public:
    // GPT-2's files. encoder.json: a JSON object {token: id} whose ids are exactly 0..N-1, tokens
    // spelled with GPT-2's byte alphabet, all 256 single bytes present. vocab.bpe: one merge
    // "A B" per line in rank order; a first line starting with "#version" is optional and skipped,
    // as are empty lines. Every merge must join two tokens of encoder.json into a third, and every
    // token must be a single byte, the result of a merge or <|endoftext|>. Throws DataError naming
    // the file (and line) otherwise.
    static Vocabulary load(const std::filesystem::path& encoder_file, const std::filesystem::path& merges_file);
    // A trained vocabulary: ids 0..255 are the bytes in GPT-2's order, then one token per merge
    // (pairs of ids, rank order), then <|endoftext|>.
    static Vocabulary from_merges(const std::vector<std::pair<int32_t, int32_t>>& merges);

    // Appends the ids of one pre-token: tiktoken's byte_pair_merge (a pre-token that is itself a
    // token is that token; otherwise repeatedly join the adjacent parts whose concatenation has the
    // lowest rank, leftmost first).
    void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

    int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
    const std::string& token(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
    const std::map<std::string, int32_t>& specials() const { return specials_; }
    size_t merge_count() const { return merges_.size(); }

    // Writes encoder.json and vocab.bpe into `dir`; returns the path of encoder.json.
    std::filesystem::path save(const std::filesystem::path& dir) const;

private:
    struct Mergeable {
        uint32_t rank;  // 0 for single bytes, 1 + line index for merge results
        int32_t id;
    };
    std::vector<std::string> tokens_;                   // id -> bytes
    StringMap<Mergeable> ranks_;                        // bytes -> rank and id (bytes and merge results)
    std::vector<std::pair<int32_t, int32_t>> merges_;   // (left id, right id) in rank order
    std::map<std::string, int32_t> specials_;           // <|endoftext|> when present
    std::array<int32_t, 256> byte_ids_{};
};

}  // namespace bpe
