// tokenizer/char: one token per Unicode character (code point), as nanoGPT's shakespeare_char.
// The vocabulary is the sorted set of characters of a training text (UTF-8 byte order equals code
// point order, so ids match Python's sorted(set(text))). Saved as JSON: {"type": "char", "tokens": [...]}.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include "lab/error.h"
#include "lab/plugin.h"
#include "lab/text_file.h"

namespace {

using namespace lab;

// Length of the UTF-8 sequence starting at text[i], or 0 when it is not valid UTF-8
// (bad lead byte, truncated, bad continuation, overlong form, surrogate or > U+10FFFF).
size_t utf8_length(std::string_view text, size_t i) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char c = byte(i);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > text.size()) return 0;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    static const uint32_t min_for_length[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

std::string describe_byte_error(std::string_view text, size_t i) {
    std::ostringstream os;
    os << "invalid UTF-8 at byte offset " << i << " (byte 0x" << std::hex
       << static_cast<int>(static_cast<unsigned char>(text[i])) << ")";
    return os.str();
}

class CharTokenizer : public Tokenizer {
public:
    explicit CharTokenizer(const Options& opts) {
        if (!opts.get_string("vocab").empty()) {
            load(opts.get_string("vocab"));
        } else if (!opts.get_string("corpus").empty()) {
            train(read_file(opts.get_string("corpus"), "corpus"));
        }
    }

    std::vector<int32_t> encode(std::string_view text) const override {
        require_ready();
        std::vector<int32_t> ids;
        ids.reserve(text.size());
        for (size_t i = 0; i < text.size();) {
            size_t n = utf8_length(text, i);
            if (n == 0) throw DataError("tokenizer/char: " + describe_byte_error(text, i) + "; the text must be UTF-8");
            auto it = ids_.find(std::string(text.substr(i, n)));
            if (it == ids_.end())
                throw DataError("tokenizer/char: character '" + std::string(text.substr(i, n)) + "' at byte offset " +
                                std::to_string(i) + " is not in the vocabulary of " + std::to_string(tokens_.size()) +
                                " characters; build the vocabulary from a text that contains it");
            ids.push_back(it->second);
            i += n;
        }
        return ids;
    }

    std::string decode(const std::vector<int32_t>& ids) const override {
        require_ready();
        std::string text;
        for (size_t k = 0; k < ids.size(); ++k) {
            if (ids[k] < 0 || ids[k] >= static_cast<int32_t>(tokens_.size()))
                throw DataError("tokenizer/char: id " + std::to_string(ids[k]) + " at position " + std::to_string(k) +
                                " is outside the vocabulary [0, " + std::to_string(tokens_.size()) + ")");
            text += tokens_[static_cast<size_t>(ids[k])];
        }
        return text;
    }

    int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
    bool ready() const override { return !tokens_.empty(); }
    bool trainable() const override { return true; }

    void train(std::string_view corpus) override {
        std::set<std::string> chars;
        for (size_t i = 0; i < corpus.size();) {
            size_t n = utf8_length(corpus, i);
            if (n == 0)
                throw DataError("tokenizer/char: training text has " + describe_byte_error(corpus, i) +
                                "; convert it to UTF-8");
            chars.emplace(corpus.substr(i, n));
            i += n;
        }
        if (chars.empty()) throw DataError("tokenizer/char: cannot build a vocabulary from an empty text");
        set_tokens({chars.begin(), chars.end()}, "training text");
    }

    std::filesystem::path save(const std::filesystem::path& dir) const override {
        require_ready();
        std::filesystem::create_directories(dir);
        std::filesystem::path file = dir / "vocab.json";
        std::filesystem::path tmp = file;
        tmp += ".tmp";
        {
            std::ofstream out(tmp, std::ios::binary);
            out << nlohmann::json{{"type", "char"}, {"tokens", tokens_}}.dump() << "\n";
            if (!out) throw DataError("tokenizer/char: cannot write '" + tmp.string() + "'");
        }
        std::filesystem::rename(tmp, file);
        return file;
    }

private:
    static std::string read_file(const std::string& path, const char* what) {
        return read_text_file(path, "tokenizer/char", std::string(what) + " file",
                              "check the path (datasets come from tools/get_data.sh)");
    }

    void load(const std::string& path) {
        std::string text = read_file(path, "vocab");
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            throw DataError("tokenizer/char: vocabulary '" + path + "' is not valid JSON: " + e.what());
        }
        if (!j.is_object() || j.value("type", "") != "char" || !j.contains("tokens") || !j["tokens"].is_array())
            throw DataError("tokenizer/char: vocabulary '" + path +
                            "' must be {\"type\": \"char\", \"tokens\": [...]} as written by this tokenizer");
        std::vector<std::string> tokens;
        for (const auto& t : j["tokens"]) {
            if (!t.is_string())
                throw DataError("tokenizer/char: vocabulary '" + path + "' holds a token that is not a string");
            std::string s = t.get<std::string>();
            if (s.empty() || utf8_length(s, 0) != s.size())
                throw DataError("tokenizer/char: vocabulary '" + path + "' entry " + std::to_string(tokens.size()) +
                                " is not exactly one UTF-8 character");
            tokens.push_back(std::move(s));
        }
        set_tokens(std::move(tokens), "'" + path + "'");
    }

    void set_tokens(std::vector<std::string> tokens, const std::string& source) {
        std::unordered_map<std::string, int32_t> ids;
        for (size_t i = 0; i < tokens.size(); ++i)
            if (!ids.emplace(tokens[i], static_cast<int32_t>(i)).second)
                throw DataError("tokenizer/char: vocabulary from " + source + " lists '" + tokens[i] + "' twice");
        if (tokens.empty()) throw DataError("tokenizer/char: vocabulary from " + source + " is empty");
        tokens_ = std::move(tokens);
        ids_ = std::move(ids);
    }

    void require_ready() const {
        if (!ready())
            throw DataError("tokenizer/char has no vocabulary: set vocab = <vocab.json> or corpus = <text file>, "
                            "or let the task build it from its training text");
    }

    std::vector<std::string> tokens_;
    std::unordered_map<std::string, int32_t> ids_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.path("vocab", std::string(), "vocabulary file written by a previous run (vocab.json)");
    schema.path("corpus", std::string(), "build the vocabulary from the characters of this UTF-8 text file");
    registry.add_tokenizer({"char", "1.0", "one token per Unicode character; vocabulary from a training text", schema},
                           [](const lab::Options& opts, lab::BuildContext&) {
                               return std::make_shared<CharTokenizer>(opts);
                           });
}
