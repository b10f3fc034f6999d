// WordPiece vocabulary training the way Hugging Face tokenizers' WordPieceTrainer does it: it is
// their BpeTrainer with continuing_subword_prefix "##" (models/bpe/trainer.rs), followed by
// WordPiece::from_bpe, which keeps the BPE vocabulary and drops the merges.
//
//   1. the special tokens, in the order given
//   2. the alphabet: every character of the words, sorted by code point (no limit_alphabet)
//   3. "##c" for each character c that appears after the first position of a word, in the order
//      the words are met
//   4. merges: repeatedly the most frequent adjacent pair (ties: the pair of smaller ids) becomes
//      one token a + b (b without its "##"), until the vocabulary has vocab_size tokens, no pair is
//      left, or the best pair occurs fewer than min_frequency times.
//
// The one difference: Hugging Face meets the words in hash-map order, which changes from process
// to process (so its ids of "##c" tokens, and through the tie-break even which tokens are learned,
// differ between two runs on the same corpus); here the words are met in order of first
// appearance in the corpus, so training is deterministic.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace wordpiece {

struct TrainerSettings {
    int64_t vocab_size = 8000;
    int64_t min_frequency = 2;
    std::vector<std::string> special_tokens;
};

// `words`: each distinct pre-tokenized word (UTF-8) with its count, in order of first appearance.
// Returns the tokens in id order.
std::vector<std::string> train_wordpiece(const std::vector<std::pair<std::string, uint64_t>>& words,
                                         const TrainerSettings& settings);

}  // namespace wordpiece
