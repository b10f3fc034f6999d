// tokenizer/wordpiece: BERT's WordPiece tokenizer, giving exactly the ids of Hugging Face's
// BertTokenizer (transformers 5.x, which is the Rust tokenizers library underneath) for a
// vocab.txt: special tokens split out of the raw text, BERT's basic tokenization (bert_text.h),
// then greedy longest-match-first WordPiece with "##" continuations. It can also train a
// vocabulary from a corpus as Hugging Face's WordPieceTrainer does (wordpiece_trainer.h).
// tests/plugins/test_wordpiece.cpp compares every id with fixtures made by transformers
// (tools/fixtures/make_wordpiece_fixtures.py).
#include <bitset>
#include <memory>
#include <unordered_map>

#include "bert_text.h"
#include "lab/error.h"
#include "lab/plugin.h"
#include "lab/text_file.h"
#include "wordpiece_trainer.h"
#include "wordpiece_vocab.h"

namespace {

using namespace lab;
using namespace wordpiece;

// The tokens SpecialTokens::of (lab/sentence_pair.h) asks for, in the order training puts them
// first. Hugging Face registers them as "added tokens": wherever one appears verbatim in the raw
// text (before any normalization, even inside a word) it is that token.
const std::vector<std::string> kSpecialTokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
constexpr std::string_view kContinuation = "##";

std::string read_corpus(const std::string& path, const char* what) {
    return lab::read_text_file(path, "tokenizer/wordpiece", what, "check the path (datasets come from tools/get_data.sh)");
}

bool parse_strip_accents(const Options& opts) {
    const std::string& choice = opts.get_string("strip_accents");
    return choice == "auto" ? opts.get_bool("lowercase") : choice == "true";
}

// Cuts `text` at every verbatim occurrence of a special token (leftmost, then longest, as the
// reference's Aho-Corasick search): on_text(piece) for the text between, on_special(index into
// `specials`) for each occurrence.
template <class OnText, class OnSpecial>
void split_specials(std::string_view text, const std::vector<std::string>& specials, OnText on_text,
                    OnSpecial on_special) {
    std::bitset<256> first_bytes;
    for (const std::string& s : specials) first_bytes.set(static_cast<unsigned char>(s[0]));
    size_t piece_start = 0;
    for (size_t i = 0; i < text.size();) {
        size_t match = specials.size();
        if (first_bytes.test(static_cast<unsigned char>(text[i])))
            for (size_t k = 0; k < specials.size(); ++k)
                if (text.compare(i, specials[k].size(), specials[k]) == 0 &&
                    (match == specials.size() || specials[k].size() > specials[match].size()))
                    match = k;
        if (match == specials.size()) {
            ++i;
            continue;
        }
        if (i > piece_start) on_text(text.substr(piece_start, i - piece_start));
        on_special(match);
        i += specials[match].size();
        piece_start = i;
    }
    if (piece_start < text.size()) on_text(text.substr(piece_start));
}

// A vocabulary is loaded or trained, not both (the validate hook and the constructor).
void check_wordpiece_options(const Options& opts) {
    if (!opts.get_string("vocab").empty() && !opts.get_string("corpus").empty())
        throw ConfigError("tokenizer/wordpiece: both vocab (" + opts.origin("vocab") + ") and corpus (" +
                          opts.origin("corpus") +
                          ") are set; give vocab to use a vocabulary or corpus to train one, not both");
}

class WordPieceTokenizer : public Tokenizer {
public:
    explicit WordPieceTokenizer(const Options& opts)
        : basic_({opts.get_bool("lowercase"), parse_strip_accents(opts), opts.get_bool("tokenize_cjk")}),
          max_chars_per_word_(static_cast<size_t>(opts.get_int("max_chars_per_word"))) {
        trainer_.vocab_size = opts.get_int("vocab_size");
        trainer_.min_frequency = opts.get_int("min_frequency");
        trainer_.special_tokens = kSpecialTokens;
        check_wordpiece_options(opts);
        const std::string& vocab = opts.get_string("vocab");
        const std::string& corpus = opts.get_string("corpus");
        if (!vocab.empty()) {
            set_vocabulary(Vocabulary::load(vocab), "vocabulary '" + vocab + "'");
        } else if (!corpus.empty()) {
            train(read_corpus(corpus, "corpus"));
        }
    }

    std::vector<int32_t> encode(std::string_view text) const override {
        require_ready();
        size_t bad = first_invalid_utf8(text);
        if (bad != std::string_view::npos)
            throw DataError("tokenizer/wordpiece: " + describe_invalid_utf8(text, bad) +
                            "; the text must be UTF-8 (convert it, e.g. with iconv)");
        std::vector<int32_t> ids;
        ids.reserve(text.size() / 3);
        std::string candidate;
        split_specials(
            text, special_tokens_,
            [&](std::string_view piece) {
                basic_.for_each_word(piece, [&](std::string_view word, size_t chars) {
                    append_word_pieces(word, chars, candidate, ids);
                });
            },
            [&](size_t k) { ids.push_back(special_ids_[k]); });
        return ids;
    }

    // Tokens joined as transformers' convert_tokens_to_string does for BERT:
    // " ".join(tokens).replace(" ##", "").strip().
    std::string decode(const std::vector<int32_t>& ids) const override {
        require_ready();
        std::string joined;
        for (size_t k = 0; k < ids.size(); ++k) {
            if (ids[k] < 0 || static_cast<size_t>(ids[k]) >= vocab_.size())
                throw DataError("tokenizer/wordpiece: id " + std::to_string(ids[k]) + " at position " +
                                std::to_string(k) + " is outside the vocabulary [0, " + std::to_string(vocab_.size()) +
                                "); decode ids made with the same vocabulary");
            if (k > 0) joined += ' ';
            joined += vocab_.token(ids[k]);
        }
        std::string text;
        text.reserve(joined.size());
        for (size_t i = 0; i < joined.size();) {
            if (joined.compare(i, 3, " ##") == 0) {
                i += 3;
            } else {
                text += joined[i++];
            }
        }
        const char* whitespace = " \t\n\r\v\f";
        size_t first = text.find_first_not_of(whitespace);
        if (first == std::string::npos) return {};
        return text.substr(first, text.find_last_not_of(whitespace) - first + 1);
    }

    int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
    bool ready() const override { return !vocab_.empty(); }
    bool trainable() const override { return true; }

    void train(std::string_view corpus) override {
        size_t bad = first_invalid_utf8(corpus);
        if (bad != std::string_view::npos)
            throw DataError("tokenizer/wordpiece: the training text has " + describe_invalid_utf8(corpus, bad) +
                            "; convert it to UTF-8");
        std::unordered_map<std::string, size_t> index_of;
        std::vector<std::pair<std::string, uint64_t>> words;  // in order of first appearance
        // Special tokens in the text are already in the vocabulary: they are not words to learn from.
        split_specials(
            corpus, kSpecialTokens,
            [&](std::string_view piece) {
                basic_.for_each_word(piece, [&](std::string_view word, size_t) {
                    auto [it, inserted] = index_of.emplace(std::string(word), words.size());
                    if (inserted) words.emplace_back(it->first, 0);
                    ++words[it->second].second;
                });
            },
            [](size_t) {});
        if (words.empty())
            throw DataError("tokenizer/wordpiece: the training text has no words; give a corpus with some text");
        set_vocabulary(Vocabulary::from_tokens(train_wordpiece(words, trainer_), "training text"), "training text");
    }

    std::filesystem::path save(const std::filesystem::path& dir) const override {
        require_ready();
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec)
            throw DataError("tokenizer/wordpiece: cannot create folder '" + dir.string() + "': " + ec.message() +
                            "; check the path and its permissions");
        std::filesystem::path file = dir / "vocab.txt";
        vocab_.save(file);
        return file;
    }

    std::map<std::string, int32_t> special_ids() const override {
        std::map<std::string, int32_t> out;
        for (size_t k = 0; k < special_tokens_.size(); ++k) out[special_tokens_[k]] = special_ids_[k];
        return out;
    }

private:
    void set_vocabulary(Vocabulary vocab, const std::string& source) {
        int32_t unk = vocab.find("[UNK]");
        if (unk < 0)
            throw DataError("tokenizer/wordpiece: " + source +
                            " has no [UNK] token; WordPiece needs it for words it cannot split, add a line [UNK]");
        std::vector<std::string> names;
        std::vector<int32_t> ids;
        for (const std::string& name : kSpecialTokens) {
            int32_t id = vocab.find(name);
            if (id < 0) continue;
            names.push_back(name);
            ids.push_back(id);
        }
        vocab_ = std::move(vocab);
        unk_id_ = unk;
        special_tokens_ = std::move(names);
        special_ids_ = std::move(ids);
    }

    // Greedy longest-match-first: the longest vocabulary token that starts the rest of the word
    // ("##"-prefixed after the first piece); a word with a rest no token starts is [UNK] as a whole.
    void append_word_pieces(std::string_view word, size_t chars, std::string& candidate,
                            std::vector<int32_t>& ids) const {
        if (chars > max_chars_per_word_) {
            ids.push_back(unk_id_);
            return;
        }
        auto continuation_byte = [&](size_t i) { return (static_cast<unsigned char>(word[i]) & 0xC0) == 0x80; };
        const size_t longest = vocab_.longest_token_bytes();
        const size_t first_piece = ids.size();
        for (size_t start = 0; start < word.size();) {
            // No candidate longer than the longest token can match: start at that length.
            size_t budget = start == 0 ? longest : (longest > kContinuation.size() ? longest - kContinuation.size() : 0);
            size_t end = std::min(word.size(), start + budget);
            while (end > start && end < word.size() && continuation_byte(end)) --end;
            int32_t id = -1;
            while (end > start) {
                candidate.assign(start == 0 ? std::string_view() : kContinuation);
                candidate.append(word.substr(start, end - start));
                id = vocab_.find(candidate);
                if (id >= 0) break;
                do {
                    --end;
                } while (end > start && continuation_byte(end));
            }
            if (id < 0) {
                ids.resize(first_piece);
                ids.push_back(unk_id_);
                return;
            }
            ids.push_back(id);
            start = end;
        }
    }

    void require_ready() const {
        if (!ready())
            throw DataError("tokenizer/wordpiece has no vocabulary: set vocab = <vocab.txt> or corpus = <text file>, "
                            "or let the task train it on its training text");
    }

    BasicTokenizer basic_;
    size_t max_chars_per_word_;
    TrainerSettings trainer_;
    Vocabulary vocab_;
    int32_t unk_id_ = -1;
    std::vector<std::string> special_tokens_;  // the kSpecialTokens the vocabulary has
    std::vector<int32_t> special_ids_;         // their ids
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.path("vocab", std::string(),
                "vocab.txt: one token per line, the line index is the id (e.g. ${data}/bert-base-uncased/vocab.txt)");
    schema.boolean("lowercase", true, "lower-case the text, for uncased vocabularies (BertTokenizer's do_lower_case)");
    schema.choice("strip_accents", "auto", {"auto", "true", "false"},
                  "drop accents (NFD, then non-spacing marks); auto: when lowercase is on");
    schema.boolean("tokenize_cjk", true, "make every CJK ideograph a word of its own");
    schema.integer("max_chars_per_word", 100, "a longer word becomes [UNK]").at_least(1);
    schema.path("corpus", std::string(), "train a vocabulary on this UTF-8 text file instead of loading one");
    schema.integer("vocab_size", 8000, "training: target vocabulary size, special tokens and alphabet included")
        .at_least(1);
    schema.integer("min_frequency", 2, "training: a pair must occur at least this often to be merged").at_least(0);
    lab::PluginDecl decl{"wordpiece", "1.0",
                         "BERT WordPiece with Hugging Face BertTokenizer parity; loads vocab.txt or trains one", schema};
    decl.validate = [](const lab::PlanContext& plan) { check_wordpiece_options(*plan.options); };
    registry.add_tokenizer(std::move(decl),
                           [](const lab::Options& opts, lab::BuildContext&) {
                               return std::make_shared<WordPieceTokenizer>(opts);
                           });
}
