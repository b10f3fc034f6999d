// tokenizer/bpe: GPT-2's byte-level BPE, giving the ids of tiktoken's "gpt2" encoding.
//
//   [tokenizer]
//   type = bpe
//   encoder = ${data}/gpt2/encoder.json
//   merges = ${data}/gpt2/vocab.bpe
//
// encode: pre-tokenize with GPT-2's regex (bpe_text.cpp, by hand over UTF-8 with tables read off
// tiktoken), then byte-pair merge each pre-token as tiktoken does (bpe_vocab.cpp), with a cache of
// pre-token -> ids. Text is taken as bytes: a byte that is not part of valid UTF-8 is a one-byte
// character that is neither letter, number nor space, so every byte string encodes and decodes
// back to itself (tiktoken's Python API only takes str, so this case has no reference).
// <|endoftext|> in the text is plain text unless allow_special = true (tiktoken's encode_ordinary
// vs encode(text, allowed_special={"<|endoftext|>"})).
// Training (corpus = ..., or a task calling train()) learns merges from the 256 bytes up to
// vocab_size (bpe_trainer.cpp); save() writes encoder.json + vocab.bpe, loadable by encoder/merges.
#include <memory>
#include <mutex>
#include <optional>

#include "bpe_text.h"
#include "bpe_trainer.h"
#include "bpe_vocab.h"
#include "lab/error.h"
#include "lab/plugin.h"
#include "lab/text_file.h"

namespace {

using namespace lab;

// Which files go together (the validate hook and the constructor).
void check_bpe_options(const Options& opts) {
    const std::string& encoder = opts.get_string("encoder");
    const std::string& merges = opts.get_string("merges");
    if (encoder.empty() != merges.empty())
        throw ConfigError("tokenizer/bpe: " + std::string(encoder.empty() ? "merges" : "encoder") + " is set (" +
                          opts.origin(encoder.empty() ? "merges" : "encoder") + ") but " +
                          (encoder.empty() ? "encoder" : "merges") +
                          " is not; GPT-2's BPE needs both files (encoder.json and vocab.bpe)");
    if (!encoder.empty() && !opts.get_string("corpus").empty())
        throw ConfigError("tokenizer/bpe: encoder (" + opts.origin("encoder") + ") and corpus (" +
                          opts.origin("corpus") +
                          ") are both set; set either encoder/merges (a vocabulary) or corpus (train one), not both");
}

class BpeTokenizer : public Tokenizer {
public:
    explicit BpeTokenizer(const Options& opts)
        : allow_special_(opts.get_bool("allow_special")),
          vocab_size_target_(opts.get_int("vocab_size")),
          min_frequency_(opts.get_int("min_frequency")) {
        check_bpe_options(opts);
        const std::string& encoder = opts.get_string("encoder");
        const std::string& merges = opts.get_string("merges");
        const std::string& corpus = opts.get_string("corpus");
        if (!encoder.empty()) {
            vocab_ = bpe::Vocabulary::load(encoder, merges);
        } else if (!corpus.empty()) {
            train(read_text_file(corpus, "tokenizer/bpe", "corpus file", "check the path"));
        }
    }

    std::vector<int32_t> encode(std::string_view text) const override {
        require_ready();
        std::vector<int32_t> ids;
        ids.reserve(text.size() / 3);
        std::lock_guard<std::mutex> lock(cache_mutex_);
        size_t start = 0;
        while (start < text.size()) {
            // The next allowed special token, if any: the ordinary text before it is encoded alone.
            size_t special_at = text.size();
            const std::pair<const std::string, int32_t>* special = nullptr;
            if (allow_special_) {
                for (const auto& entry : vocab_->specials()) {
                    size_t at = text.find(entry.first, start);
                    if (at < special_at) {
                        special_at = at;
                        special = &entry;
                    }
                }
            }
            encode_ordinary(text.substr(start, special_at - start), ids);
            if (!special) break;
            ids.push_back(special->second);
            start = special_at + special->first.size();
        }
        return ids;
    }

    std::string decode(const std::vector<int32_t>& ids) const override {
        require_ready();
        std::string text;
        for (size_t k = 0; k < ids.size(); ++k) {
            if (ids[k] < 0 || ids[k] >= vocab_->size())
                throw DataError("tokenizer/bpe: id " + std::to_string(ids[k]) + " at position " + std::to_string(k) +
                                " is outside the vocabulary [0, " + std::to_string(vocab_->size()) +
                                "); the ids must come from this vocabulary");
            text += vocab_->token(ids[k]);
        }
        return text;
    }

    int64_t vocab_size() const override { return vocab_ ? vocab_->size() : 0; }
    bool ready() const override { return vocab_.has_value(); }
    bool trainable() const override { return true; }

    void train(std::string_view corpus) override {
        // 256 byte tokens + merges + <|endoftext|>.
        auto merges = bpe::learn_merges(corpus, static_cast<size_t>(vocab_size_target_ - 257), min_frequency_);
        std::lock_guard<std::mutex> lock(cache_mutex_);
        vocab_ = bpe::Vocabulary::from_merges(merges);
        cache_.clear();
    }

    std::filesystem::path save(const std::filesystem::path& dir) const override {
        require_ready();
        return vocab_->save(dir);
    }

    std::map<std::string, int32_t> special_ids() const override {
        return vocab_ ? vocab_->specials() : std::map<std::string, int32_t>{};
    }

private:
    // Pre-tokens -> ids through the cache (the caller holds cache_mutex_).
    void encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const {
        pieces_.clear();
        bpe::pretokenize(text, pieces_);
        for (std::string_view piece : pieces_) {
            if (piece.size() == 1) {  // a byte is its own token; not worth a cache entry
                vocab_->encode_piece(piece, ids);
                continue;
            }
            if (auto hit = cache_.find(piece); hit != cache_.end()) {
                ids.insert(ids.end(), hit->second.begin(), hit->second.end());
                continue;
            }
            size_t first = ids.size();
            vocab_->encode_piece(piece, ids);
            // Bounded memory on endless streams of new words: start over when the cache is large.
            if (cache_.size() >= kMaxCacheEntries) cache_.clear();
            cache_.emplace(std::string(piece), std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end()));
        }
    }

    void require_ready() const {
        if (!ready())
            throw DataError("tokenizer/bpe has no vocabulary: set encoder = <encoder.json> and merges = <vocab.bpe> "
                            "(GPT-2: data/gpt2/), or corpus = <text file> to train one");
    }

    static constexpr size_t kMaxCacheEntries = 1 << 20;
    bool allow_special_;
    int64_t vocab_size_target_, min_frequency_;
    std::optional<bpe::Vocabulary> vocab_;
    mutable std::mutex cache_mutex_;  // guards cache_ and pieces_: encode is const and may run on several threads
    mutable bpe::StringMap<std::vector<int32_t>> cache_;
    mutable std::vector<std::string_view> pieces_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.path("encoder", std::string(), "GPT-2 encoder.json ({token: id}); needs merges too");
    schema.path("merges", std::string(), "GPT-2 vocab.bpe (one merge 'A B' per line, rank order)");
    schema.boolean("allow_special", false,
                   "encode <|endoftext|> in the text as its special id (else as plain text, like encode_ordinary)");
    schema.path("corpus", std::string(), "train a vocabulary on this text file (instead of encoder/merges)");
    schema.integer("vocab_size", 1000, "training: size of the learned vocabulary (256 bytes + merges + <|endoftext|>)")
        .at_least(257);
    schema.integer("min_frequency", 2, "training: stop when the most frequent pair occurs fewer times").at_least(1);
    lab::PluginDecl decl{"bpe", "1.0", "GPT-2 byte-level BPE (tiktoken gpt2 ids); trainable", schema};
    decl.validate = [](const lab::PlanContext& plan) { check_bpe_options(*plan.options); };
    registry.add_tokenizer(std::move(decl),
                           [](const lab::Options& opts, lab::BuildContext&) {
                               return std::make_shared<BpeTokenizer>(opts);
                           });
}
