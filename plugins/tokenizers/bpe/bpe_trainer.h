// Learning byte-level BPE merges from a corpus (tokenizer/bpe's train()).
#pragma once
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace bpe {

// Merges (pairs of token ids, in the order learned) for a vocabulary whose ids 0..255 are the bytes
// in GPT-2's order (byte_order()) and whose k-th merge makes id 256 + k. The corpus is cut at every
// <|endoftext|> (document separators are not learned), pre-tokenized with GPT-2's pattern, and
// merges are learned within pre-tokens: each step joins the most frequent adjacent pair, ties
// broken by the smallest (left id, right id), until `max_merges` are learned or the best pair
// occurs fewer than `min_frequency` times. Deterministic: the result depends on the corpus only.
std::vector<std::pair<int32_t, int32_t>> learn_merges(std::string_view corpus, size_t max_merges, int64_t min_frequency);

}  // namespace bpe
