#include "wordpiece_trainer.h"

#include <algorithm>
#include <map>
#include <string_view>
#include <unordered_map>

#include "bert_text.h"

namespace wordpiece {

namespace {

constexpr std::string_view kContinuation = "##";

// A pair of adjacent token ids (a, b) as one key; comparing keys compares (a, b) lexicographically,
// which is the tie-break of the reference's queue.
using Pair = uint64_t;
Pair pair_of(uint32_t a, uint32_t b) { return (static_cast<uint64_t>(a) << 32) | b; }
uint32_t left_of(Pair p) { return static_cast<uint32_t>(p >> 32); }
uint32_t right_of(Pair p) { return static_cast<uint32_t>(p & 0xFFFFFFFFu); }

// A candidate merge: the pair, its count when queued, and the words that may hold it.
struct Merge {
    int64_t count = 0;
    Pair pair = 0;
    std::vector<uint32_t> words;
};
// Heap order: the larger count first; on equal counts the smaller pair.
bool less_urgent(const Merge& a, const Merge& b) {
    if (a.count != b.count) return a.count < b.count;
    return a.pair > b.pair;
}

struct PairChange {
    Pair pair;
    int32_t change;
};

// Replaces each non-overlapping (first, second), left to right, by `replacement` and records how the
// counts of the neighbouring pairs change (the reference's Word::merge, without a length limit).
void merge_word(std::vector<uint32_t>& symbols, uint32_t first, uint32_t second, uint32_t replacement,
                std::vector<PairChange>& changes) {
    for (size_t i = 0; i < symbols.size(); ++i) {
        if (symbols[i] != first || i + 1 >= symbols.size() || symbols[i + 1] != second) continue;
        if (i > 0) {
            changes.push_back({pair_of(symbols[i - 1], first), -1});
            changes.push_back({pair_of(symbols[i - 1], replacement), 1});
        }
        symbols[i] = replacement;
        symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        if (i + 1 < symbols.size()) {
            changes.push_back({pair_of(second, symbols[i + 1]), -1});
            changes.push_back({pair_of(replacement, symbols[i + 1]), 1});
        }
    }
}

class VocabularyBuilder {
public:
    // The id of `token`, added at the end when new.
    uint32_t intern(const std::string& token) {
        auto [it, inserted] = ids_.emplace(token, static_cast<uint32_t>(tokens_.size()));
        if (inserted) tokens_.push_back(token);
        return it->second;
    }
    bool contains(const std::string& token) const { return ids_.count(token) != 0; }
    const std::string& token(uint32_t id) const { return tokens_[id]; }
    size_t size() const { return tokens_.size(); }
    std::vector<std::string> release() { return std::move(tokens_); }

private:
    std::unordered_map<std::string, uint32_t> ids_;
    std::vector<std::string> tokens_;
};

// Adds the word's pairs to where_to_update[pair] (once per word; a word's changes come together).
void note_word(std::unordered_map<Pair, std::vector<uint32_t>>& where_to_update, Pair pair, uint32_t word) {
    std::vector<uint32_t>& words = where_to_update[pair];
    if (words.empty() || words.back() != word) words.push_back(word);
}

}  // namespace

std::vector<std::string> train_wordpiece(const std::vector<std::pair<std::string, uint64_t>>& words,
                                         const TrainerSettings& settings) {
    VocabularyBuilder vocab;
    for (const std::string& special : settings.special_tokens) vocab.intern(special);

    // The alphabet, sorted by code point (UTF-8 byte order is code point order).
    std::map<std::string, uint64_t> alphabet;
    for (const auto& [word, count] : words)
        for (size_t i = 0; i < word.size();) {
            size_t n = utf8_char_bytes(static_cast<unsigned char>(word[i]));
            alphabet[word.substr(i, n)] += count;
            i += n;
        }
    for (const auto& entry : alphabet) vocab.intern(entry.first);

    // Each word as ids: its first character, then "##c" for the others.
    std::vector<std::vector<uint32_t>> symbols(words.size());
    std::vector<int64_t> counts(words.size());
    std::string piece;
    for (size_t w = 0; w < words.size(); ++w) {
        const std::string& word = words[w].first;
        counts[w] = static_cast<int64_t>(words[w].second);
        for (size_t i = 0; i < word.size();) {
            size_t n = utf8_char_bytes(static_cast<unsigned char>(word[i]));
            piece.assign(i == 0 ? std::string_view() : kContinuation);
            piece.append(word, i, n);
            symbols[w].push_back(vocab.intern(piece));
            i += n;
        }
    }

    std::unordered_map<Pair, int64_t> pair_counts;
    std::unordered_map<Pair, std::vector<uint32_t>> where_to_update;
    for (size_t w = 0; w < symbols.size(); ++w)
        for (size_t i = 0; i + 1 < symbols[w].size(); ++i) {
            Pair pair = pair_of(symbols[w][i], symbols[w][i + 1]);
            pair_counts[pair] += counts[w];
            note_word(where_to_update, pair, static_cast<uint32_t>(w));
        }
    std::vector<Merge> queue;
    auto queue_updates = [&] {
        for (auto& [pair, positions] : where_to_update) {
            int64_t count = pair_counts[pair];
            if (count <= 0) continue;
            queue.push_back({count, pair, std::move(positions)});
            std::push_heap(queue.begin(), queue.end(), less_urgent);
        }
        where_to_update.clear();
    };
    queue_updates();

    const auto target = static_cast<size_t>(settings.vocab_size);
    std::vector<PairChange> changes;
    while (vocab.size() < target && !queue.empty()) {
        std::pop_heap(queue.begin(), queue.end(), less_urgent);
        Merge top = std::move(queue.back());
        queue.pop_back();
        // Counts in the queue go stale as merges change them: requeue with the current count.
        int64_t current = pair_counts[top.pair];
        if (top.count != current) {
            top.count = current;
            queue.push_back(std::move(top));
            std::push_heap(queue.begin(), queue.end(), less_urgent);
            continue;
        }
        if (top.count < 1 || settings.min_frequency > top.count) break;

        std::string right = vocab.token(right_of(top.pair));
        if (right.compare(0, kContinuation.size(), kContinuation) == 0) right.erase(0, kContinuation.size());
        uint32_t merged = vocab.intern(vocab.token(left_of(top.pair)) + right);

        for (uint32_t w : top.words) {
            changes.clear();
            merge_word(symbols[w], left_of(top.pair), right_of(top.pair), merged, changes);
            for (const PairChange& c : changes) {
                pair_counts[c.pair] += c.change * counts[w];
                if (c.change > 0) note_word(where_to_update, c.pair, w);
            }
        }
        queue_updates();
    }
    return vocab.release();
}

}  // namespace wordpiece
