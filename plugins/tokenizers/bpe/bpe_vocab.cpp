// tokenizer/bpe vocabulary: GPT-2's encoder.json + vocab.bpe; see bpe_vocab.h.
#include "bpe_vocab.h"

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bpe_text.h"
#include "lab/error.h"
#include "lab/text_file.h"

namespace bpe {
namespace {

using lab::DataError;
namespace fs = std::filesystem;

std::string read_text(const fs::path& path, const char* what) {
    return lab::read_text_file(path, "tokenizer/bpe", std::string(what) + " file",
                          "check the path (GPT-2's files are data/gpt2/encoder.json and data/gpt2/vocab.bpe)");
}

void write_atomically(const fs::path& file, const std::string& content) {
    fs::path tmp = file;
    tmp += ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary);
        out << content;
        out.flush();
        if (!out) throw DataError("tokenizer/bpe: cannot write '" + tmp.string() + "'; check the folder is writable");
    }
    fs::rename(tmp, file);
}

}  // namespace

Vocabulary Vocabulary::load(const fs::path& encoder_file, const fs::path& merges_file) {
    std::string where = "'";  // (not "'" + ...: GCC 12 warns falsely about that operator+)
    where += encoder_file.string();
    where += '\'';
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_text(encoder_file, "encoder"));
    } catch (const nlohmann::json::exception& e) {
        throw DataError("tokenizer/bpe: encoder " + where + " is not valid JSON: " + e.what() +
                        "; it must be GPT-2's encoder.json, an object {token: id}");
    }
    if (!j.is_object() || j.empty())
        throw DataError("tokenizer/bpe: encoder " + where + " must be a non-empty JSON object {token: id} (GPT-2's encoder.json)");

    Vocabulary v;
    std::vector<const std::string*> name_of_id(j.size(), nullptr);  // the spelling, for error messages
    v.tokens_.assign(j.size(), std::string());
    for (const auto& [name, value] : j.items()) {
        if (!value.is_number_integer())
            throw DataError("tokenizer/bpe: encoder " + where + " maps '" + name + "' to " + value.dump() +
                            ", not an integer id");
        int64_t id = value.get<int64_t>();
        if (id < 0 || id >= static_cast<int64_t>(j.size()))
            throw DataError("tokenizer/bpe: encoder " + where + " gives '" + name + "' id " + std::to_string(id) +
                            ", outside [0, " + std::to_string(j.size()) + "); the ids must be exactly 0..N-1 for N tokens");
        auto slot = static_cast<size_t>(id);
        if (name_of_id[slot])
            throw DataError("tokenizer/bpe: encoder " + where + " gives both '" + *name_of_id[slot] + "' and '" + name +
                            "' id " + std::to_string(id) + "; every token needs its own id");
        name_of_id[slot] = &name;
        if (name == kEndOfText) {
            v.tokens_[slot] = name;
            v.specials_[name] = static_cast<int32_t>(id);
        } else if (!symbol_to_bytes(name, &v.tokens_[slot]) || name.empty()) {
            throw DataError("tokenizer/bpe: encoder " + where + " token '" + name + "' (id " + std::to_string(id) +
                            ") is not spelled in GPT-2's byte alphabet (bytes_to_unicode); is this a GPT-2-style file?");
        }
    }
    // Ids are in range and distinct, and there are j.size() of them, so every slot is filled.

    // Token bytes -> id, for the merge lines.
    StringMap<int32_t> id_of;
    for (size_t id = 0; id < v.tokens_.size(); ++id)
        if (!v.specials_.count(*name_of_id[id])) id_of.emplace(v.tokens_[id], static_cast<int32_t>(id));
    for (int b = 0; b < 256; ++b) {
        auto it = id_of.find(std::string_view(std::string(1, static_cast<char>(b))));
        if (it == id_of.end())
            throw DataError("tokenizer/bpe: encoder " + where + " has no token for byte " + std::to_string(b) + " ('" +
                            bytes_to_symbol(std::string(1, static_cast<char>(b))) +
                            "'); a byte-level vocabulary needs all 256 bytes");
        v.byte_ids_[b] = it->second;
        v.ranks_.emplace(it->first, Mergeable{0, it->second});
    }

    const std::string merges_text = read_text(merges_file, "merges");
    std::istringstream lines(merges_text);
    std::string line;
    size_t line_number = 0;
    StringMap<size_t> made_at_line;  // result bytes -> line that made it
    while (std::getline(lines, line)) {
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || (line_number == 1 && line.rfind("#version", 0) == 0)) continue;
        const std::string at = "tokenizer/bpe: " + merges_file.string() + ":" + std::to_string(line_number) + ": ";
        size_t space = line.find(' ');
        if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
            line.find(' ', space + 1) != std::string::npos)
            throw DataError(at + "expected two symbols separated by one space, got '" + line +
                            "'; each line of vocab.bpe is one merge 'A B'");
        std::string_view symbols[2] = {std::string_view(line).substr(0, space), std::string_view(line).substr(space + 1)};
        int32_t ids[2];
        std::string joined;
        for (int k = 0; k < 2; ++k) {
            std::string bytes;
            auto it = symbol_to_bytes(symbols[k], &bytes) ? id_of.find(bytes) : id_of.end();
            if (it == id_of.end())
                throw DataError(at + "symbol '" + std::string(symbols[k]) + "' is not a token of " + where +
                                "; the merges and the encoder must come from the same tokenizer");
            ids[k] = it->second;
            joined += bytes;
        }
        auto result = id_of.find(joined);
        if (result == id_of.end())
            throw DataError(at + "merging '" + std::string(symbols[0]) + "' and '" + std::string(symbols[1]) + "' gives '" +
                            bytes_to_symbol(joined) + "', which is not a token of " + where +
                            "; the merges and the encoder must come from the same tokenizer");
        auto [previous, fresh] = made_at_line.emplace(joined, line_number);
        if (!fresh)
            throw DataError(at + "makes '" + bytes_to_symbol(joined) + "', which line " + std::to_string(previous->second) +
                            " already makes; every merge must make a new token");
        v.merges_.emplace_back(ids[0], ids[1]);
        v.ranks_.emplace(joined, Mergeable{static_cast<uint32_t>(v.merges_.size()), result->second});
    }
    for (size_t id = 0; id < v.tokens_.size(); ++id) {
        if (v.specials_.count(*name_of_id[id]) || v.ranks_.count(v.tokens_[id])) continue;
        throw DataError("tokenizer/bpe: encoder " + where + " token '" + *name_of_id[id] + "' (id " + std::to_string(id) +
                        ") is neither a single byte, the result of a merge in '" + merges_file.string() +
                        "' nor <|endoftext|>; the two files do not belong together (or vocab.bpe is truncated)");
    }
    return v;
}

Vocabulary Vocabulary::from_merges(const std::vector<std::pair<int32_t, int32_t>>& merges) {
    Vocabulary v;
    for (int k = 0; k < 256; ++k) {
        uint8_t b = byte_order()[k];
        v.tokens_.emplace_back(1, static_cast<char>(b));
        v.byte_ids_[b] = k;
        v.ranks_.emplace(v.tokens_.back(), Mergeable{0, k});
    }
    for (const auto& [left, right] : merges) {
        auto id = static_cast<int32_t>(v.tokens_.size());
        std::string joined = v.tokens_[static_cast<size_t>(left)] + v.tokens_[static_cast<size_t>(right)];
        v.merges_.emplace_back(left, right);
        v.ranks_.emplace(joined, Mergeable{static_cast<uint32_t>(v.merges_.size()), id});
        v.tokens_.push_back(std::move(joined));
    }
    v.specials_[kEndOfText] = static_cast<int32_t>(v.tokens_.size());
    v.tokens_.emplace_back(kEndOfText);
    return v;
}

void Vocabulary::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.size() == 1) {
        out.push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
        return;
    }
    if (auto whole = ranks_.find(piece); whole != ranks_.end()) {
        out.push_back(whole->second.id);
        return;
    }
    constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
    auto rank_of = [&](size_t begin, size_t end) {
        auto it = ranks_.find(piece.substr(begin, end - begin));
        return it == ranks_.end() ? kNone : it->second.rank;
    };
    // parts[k] = (start byte of part k, rank of joining parts k and k+1); two sentinels at the end.
    thread_local std::vector<std::pair<size_t, uint32_t>> parts;
    parts.clear();
    for (size_t i = 0; i + 1 < piece.size(); ++i) parts.emplace_back(i, rank_of(i, i + 2));
    parts.emplace_back(piece.size() - 1, kNone);
    parts.emplace_back(piece.size(), kNone);
    auto joined_rank = [&](size_t k) { return k + 3 < parts.size() ? rank_of(parts[k].first, parts[k + 3].first) : kNone; };
    while (true) {
        uint32_t best = kNone;
        size_t at = 0;
        for (size_t k = 0; k + 1 < parts.size(); ++k)
            if (parts[k].second < best) {
                best = parts[k].second;
                at = k;
            }
        if (best == kNone) break;
        // Join parts at and at+1; the ranks of the joins around the new part change.
        if (at > 0) parts[at - 1].second = joined_rank(at - 1);
        parts[at].second = joined_rank(at);
        parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    for (size_t k = 0; k + 1 < parts.size(); ++k)
        out.push_back(ranks_.find(piece.substr(parts[k].first, parts[k + 1].first - parts[k].first))->second.id);
}

fs::path Vocabulary::save(const fs::path& dir) const {
    fs::create_directories(dir);
    nlohmann::ordered_json encoder = nlohmann::ordered_json::object();
    for (size_t id = 0; id < tokens_.size(); ++id) {
        bool special = specials_.count(tokens_[id]) && specials_.at(tokens_[id]) == static_cast<int32_t>(id);
        encoder[special ? tokens_[id] : bytes_to_symbol(tokens_[id])] = id;
    }
    std::string merges = "#version: 0.2\n";
    for (const auto& [left, right] : merges_)
        merges += bytes_to_symbol(token(left)) + " " + bytes_to_symbol(token(right)) + "\n";
    fs::path encoder_file = dir / "encoder.json";
    write_atomically(dir / "vocab.bpe", merges);
    write_atomically(encoder_file, encoder.dump() + "\n");
    return encoder_file;
}

}  // namespace bpe
