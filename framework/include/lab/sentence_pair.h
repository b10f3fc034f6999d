// BERT-style inputs: [CLS] a [SEP] (b [SEP]) with segment ids, truncated to a length budget the way
// Hugging Face tokenizers do it (truncation="longest_first"), and padded batches of them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lab/model.h"
#include "lab/tokenizer.h"

namespace lab {

// The special tokens a BERT-style task needs, looked up in Tokenizer::special_ids(). Throws
// ConfigError naming the tokenizer's missing token(s) and `who` (the task asking).
struct SpecialTokens {
    int32_t pad = 0, unk = 0, cls = 0, sep = 0, mask = 0;
    static SpecialTokens of(const Tokenizer& tokenizer, const std::string& who);
};

struct EncodedPair {
    std::vector<int32_t> ids;       // [CLS] a [SEP] or [CLS] a [SEP] b [SEP]
    std::vector<int32_t> segments;  // 0 for [CLS] a [SEP], 1 for b [SEP]
};

// Joins already-tokenised a and b (b may be empty: a single sentence) into at most max_len ids.
// Truncation cuts the ends of the parts as Hugging Face tokenizers' longest_first does (the
// shorter part keeps up to half the budget, the longer one the rest), which is what
// transformers' BertTokenizer gives. Throws ConfigError when max_len cannot hold the special tokens
// (3 for a pair, 2 for a single sentence) plus one token.
EncodedPair make_pair_input(std::vector<int32_t> a, std::vector<int32_t> b, int64_t max_len,
                            const SpecialTokens& special, bool has_b);

// Tokenises and joins: make_pair_input(tokenizer.encode(a), tokenizer.encode(b), ...).
EncodedPair encode_pair(const Tokenizer& tokenizer, const std::string& a, const std::string* b, int64_t max_len,
                        const SpecialTokens& special);

// Pads a batch to its longest sequence: ids [B, T] (pad id), segments [B, T], padding_mask [B, T]
// u8 (1 = padding), on `backend`.
ModelInputs pad_batch(Backend& backend, const std::vector<const EncodedPair*>& rows, int32_t pad_id);

}  // namespace lab
