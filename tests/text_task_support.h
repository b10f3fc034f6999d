// Shared by the tests of the text tasks (test_mlm.cpp, test_classify.cpp): a whitespace tokenizer
// with BERT's five special tokens and the smallest bidirectional backbone, so that the tasks are
// tested without the real wordpiece and bert plugins (which have tests of their own).
#pragma once
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "lab/model.h"
#include "lab/ops.h"
#include "lab/rng.h"
#include "lab/tokenizer.h"

namespace text_task_test {

// The message of the E that `make` throws ("<nothing thrown>" when it returns); another exception
// type propagates and fails the test.
template <class E, class F>
inline std::string error_of(F&& make) {
    try {
        make();
    } catch (const E& e) {
        return e.what();
    }
    return "<nothing thrown>";
}

constexpr int32_t kPad = 0, kUnk = 1, kCls = 2, kSep = 3, kMask = 4;

// Whitespace words; ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK]. Trainable: an empty one learns
// the sorted words of its corpus.
class WordTokenizer : public lab::Tokenizer {
public:
    explicit WordTokenizer(const std::vector<std::string>& words = {}) {
        if (!words.empty()) build(words);
    }
    std::vector<int32_t> encode(std::string_view text) const override {
        std::vector<int32_t> ids;
        for (const std::string& word : split(text)) {
            auto it = ids_.find(word);
            ids.push_back(it == ids_.end() ? kUnk : it->second);
        }
        return ids;
    }
    std::string decode(const std::vector<int32_t>& ids) const override {
        std::string text;
        for (int32_t id : ids) {
            if (!text.empty()) text += ' ';
            text += words_.at(static_cast<size_t>(id));
        }
        return text;
    }
    int64_t vocab_size() const override { return static_cast<int64_t>(words_.size()); }
    bool ready() const override { return !words_.empty(); }
    bool trainable() const override { return true; }
    void train(std::string_view corpus) override {
        std::vector<std::string> words = split(corpus);
        std::sort(words.begin(), words.end());
        words.erase(std::unique(words.begin(), words.end()), words.end());
        build(words);
    }
    std::filesystem::path save(const std::filesystem::path& dir) const override {
        std::filesystem::create_directories(dir);
        std::ofstream out(dir / "vocab.txt");
        for (const std::string& word : words_) out << word << "\n";
        return dir / "vocab.txt";
    }
    std::map<std::string, int32_t> special_ids() const override {
        return {{"[PAD]", kPad}, {"[UNK]", kUnk}, {"[CLS]", kCls}, {"[SEP]", kSep}, {"[MASK]", kMask}};
    }

private:
    static std::vector<std::string> split(std::string_view text) {
        std::vector<std::string> words;
        std::string word;
        for (char c : text) {
            if (c == ' ' || c == '\n' || c == '\t') {
                if (!word.empty()) words.push_back(word);
                word.clear();
            } else {
                word += c;
            }
        }
        if (!word.empty()) words.push_back(word);
        return words;
    }
    void build(const std::vector<std::string>& words) {
        words_ = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
        words_.insert(words_.end(), words.begin(), words.end());
        for (size_t i = 0; i < words_.size(); ++i) ids_[words_[i]] = static_cast<int32_t>(i);
    }
    std::vector<std::string> words_;
    std::map<std::string, int32_t> ids_;
};

// Token + position + segment embeddings, then h_t = tanh(W x_t + b + M mean(x)) with the mean over
// the real (unpadded) positions: every position sees the whole sequence, the smallest
// bidirectional backbone. pool() is the default (position 0).
class MixModel : public lab::Model {
public:
    MixModel(lab::Backend& backend, int64_t vocab, int64_t hidden, int64_t max_len, uint64_t seed, bool causal = false)
        : backend_(backend), C_(hidden), max_T_(max_len), causal_(causal) {
        lab::Generator init(seed, lab::kStreamInit);
        float scale = 1.0f / std::sqrt(static_cast<float>(hidden));
        token_ = normal("token.weight", {vocab, hidden}, 0.5f, init);
        position_ = normal("position.weight", {max_len, hidden}, 0.1f, init);
        segment_ = normal("segment.weight", {2, hidden}, 0.5f, init);
        self_ = normal("self.weight", {hidden, hidden}, scale, init);
        mix_ = normal("mix.weight", {hidden, hidden}, scale, init);
        bias_ = add_parameter("bias", lab::Tensor::zeros(backend, {hidden}));
    }

    lab::Tensor forward(const lab::ModelInputs& in) override {
        int64_t B = in.ids.size(0), T = in.ids.size(1);
        std::vector<int64_t> positions(static_cast<size_t>(T));
        for (int64_t t = 0; t < T; ++t) positions[static_cast<size_t>(t)] = t;
        lab::Tensor x =
            lab::ops::add(lab::ops::embedding(in.ids, token_),
                          lab::ops::embedding(lab::Tensor::from_ints(backend_, {T}, positions, lab::DType::i32),
                                              position_));  // [B, T, C]
        if (in.segments.defined()) x = lab::ops::add(x, lab::ops::embedding(in.segments, segment_));
        std::vector<float> weights(static_cast<size_t>(B * T), 1.0f / static_cast<float>(T));
        if (in.padding_mask.defined()) {
            std::vector<int64_t> pad = in.padding_mask.to_ints();
            for (int64_t b = 0; b < B; ++b) {
                auto row = pad.begin() + b * T;
                auto real = static_cast<float>(std::count(row, row + T, 0));
                for (int64_t t = 0; t < T; ++t)
                    weights[static_cast<size_t>(b * T + t)] = row[t] ? 0.0f : 1.0f / real;
            }
        }
        lab::Tensor mean = lab::ops::sum(
            lab::ops::mul(x, lab::Tensor::from_floats(backend_, {B, T, 1}, weights)), 1, true);  // [B, 1, C]
        return lab::ops::tanh(lab::ops::add(lab::ops::linear(x, self_, bias_), lab::ops::linear(mean, mix_)));
    }
    lab::Tensor embedding_weight() const override { return token_; }
    int64_t hidden_size() const override { return C_; }
    int64_t max_seq_len() const override { return max_T_; }
    bool causal() const override { return causal_; }

private:
    lab::Tensor normal(const std::string& name, const lab::Shape& shape, float std, lab::Generator& init) {
        lab::Tensor t = add_parameter(name, lab::Tensor::empty(backend_, shape));
        lab::ops::fill_normal(t, 0.0f, std, init.next(static_cast<uint64_t>(t.numel())));
        return t;
    }
    lab::Backend& backend_;
    int64_t C_, max_T_;
    bool causal_;
    lab::Tensor token_, position_, segment_, self_, mix_, bias_;
};

}  // namespace text_task_test
