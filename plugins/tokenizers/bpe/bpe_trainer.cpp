// Byte-level BPE training; see bpe_trainer.h.
//
// Pair counts are kept incrementally: a merge only touches the words that contain its pair (an
// index pair -> words), and a lazy max-heap holds (count, pair) entries that may overstate a count
// (merges only ever lower the count of an existing pair; new pairs get fresh entries), so a popped
// entry whose count is stale is pushed back with the current count.
#include "bpe_trainer.h"

#include <algorithm>
#include <queue>
#include <string>
#include <unordered_map>

#include "bpe_text.h"
#include "bpe_vocab.h"

namespace bpe {
namespace {

struct Word {
    std::vector<int32_t> symbols;
    int64_t count;
};

uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct HeapEntry {
    int64_t count;
    uint64_t pair;
    // Max-heap order: more frequent first, then the smaller (left, right).
    bool operator<(const HeapEntry& other) const {
        return count != other.count ? count < other.count : pair > other.pair;
    }
};

}  // namespace

std::vector<std::pair<int32_t, int32_t>> learn_merges(std::string_view corpus, size_t max_merges, int64_t min_frequency) {
    // Word frequencies over the pre-tokens of every document.
    StringMap<int64_t> frequency;
    std::vector<std::string_view> pieces;
    const std::string_view separator = kEndOfText;
    for (size_t start = 0; start <= corpus.size();) {
        size_t end = std::min(corpus.find(separator, start), corpus.size());
        pieces.clear();
        pretokenize(corpus.substr(start, end - start), pieces);
        for (std::string_view piece : pieces) {
            auto it = frequency.find(piece);
            if (it == frequency.end()) frequency.emplace(std::string(piece), 1);
            else ++it->second;
        }
        start = end + separator.size();
    }

    std::array<int32_t, 256> id_of_byte{};
    for (int k = 0; k < 256; ++k) id_of_byte[byte_order()[k]] = k;
    // Words in byte order, so that everything below is independent of the hash map's order.
    std::vector<std::pair<std::string, int64_t>> sorted(frequency.begin(), frequency.end());
    std::sort(sorted.begin(), sorted.end());
    std::vector<Word> words;
    words.reserve(sorted.size());
    for (const auto& [text, count] : sorted) {
        Word w{{}, count};
        for (unsigned char b : text) w.symbols.push_back(id_of_byte[b]);
        words.push_back(std::move(w));
    }

    std::unordered_map<uint64_t, int64_t> pair_count;
    std::unordered_map<uint64_t, std::vector<uint32_t>> pair_words;  // may list a word twice or stale
    for (uint32_t w = 0; w < words.size(); ++w) {
        const auto& s = words[w].symbols;
        for (size_t k = 0; k + 1 < s.size(); ++k) {
            uint64_t key = pair_key(s[k], s[k + 1]);
            pair_count[key] += words[w].count;
            pair_words[key].push_back(w);
        }
    }
    std::priority_queue<HeapEntry> heap;
    for (const auto& [key, count] : pair_count) heap.push({count, key});

    std::vector<std::pair<int32_t, int32_t>> merges;
    std::vector<uint64_t> touched;
    while (merges.size() < max_merges && !heap.empty()) {
        HeapEntry top = heap.top();
        heap.pop();
        auto found = pair_count.find(top.pair);
        int64_t current = found == pair_count.end() ? 0 : found->second;
        if (current != top.count) {
            if (current > 0) heap.push({current, top.pair});
            continue;
        }
        if (current < min_frequency) break;
        auto left = static_cast<int32_t>(top.pair >> 32), right = static_cast<int32_t>(top.pair & 0xFFFFFFFFu);
        auto made = static_cast<int32_t>(256 + merges.size());
        merges.emplace_back(left, right);

        std::vector<uint32_t> affected = std::move(pair_words[top.pair]);
        pair_words.erase(top.pair);
        std::sort(affected.begin(), affected.end());
        affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
        touched.clear();
        for (uint32_t w : affected) {
            auto& s = words[w].symbols;
            const int64_t count = words[w].count;
            bool present = false;
            for (size_t k = 0; k + 1 < s.size() && !present; ++k) present = s[k] == left && s[k + 1] == right;
            if (!present) continue;
            for (size_t k = 0; k + 1 < s.size(); ++k) pair_count[pair_key(s[k], s[k + 1])] -= count;
            size_t out = 0;
            for (size_t k = 0; k < s.size(); ++k) {
                if (k + 1 < s.size() && s[k] == left && s[k + 1] == right) {
                    s[out++] = made;
                    ++k;
                } else {
                    s[out++] = s[k];
                }
            }
            s.resize(out);
            for (size_t k = 0; k + 1 < s.size(); ++k) {
                uint64_t key = pair_key(s[k], s[k + 1]);
                pair_count[key] += count;
                if (s[k] == made || s[k + 1] == made) {
                    pair_words[key].push_back(w);
                    touched.push_back(key);
                }
            }
        }
        pair_count.erase(top.pair);
        std::sort(touched.begin(), touched.end());
        touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
        for (uint64_t key : touched) heap.push({pair_count[key], key});
    }
    return merges;
}

}  // namespace bpe
