#include "lab/sentence_pair.h"

#include <algorithm>

#include "lab/error.h"

namespace lab {

SpecialTokens SpecialTokens::of(const Tokenizer& tokenizer, const std::string& who) {
    auto ids = tokenizer.special_ids();
    std::string missing;
    auto find = [&](const char* name) -> int32_t {
        auto it = ids.find(name);
        if (it != ids.end()) return it->second;
        missing += missing.empty() ? name : std::string(", ") + name;
        return -1;
    };
    SpecialTokens s;
    s.pad = find("[PAD]");
    s.unk = find("[UNK]");
    s.cls = find("[CLS]");
    s.sep = find("[SEP]");
    s.mask = find("[MASK]");
    if (!missing.empty())
        throw ConfigError(who + " needs the special tokens [PAD], [UNK], [CLS], [SEP] and [MASK]; the tokenizer lacks " +
                          missing + "; use tokenizer/wordpiece with a BERT vocabulary");
    return s;
}

EncodedPair make_pair_input(std::vector<int32_t> a, std::vector<int32_t> b, int64_t max_len,
                            const SpecialTokens& special, bool has_b) {
    int64_t specials = has_b ? 3 : 2;
    if (max_len < specials + 1)
        throw ConfigError("a BERT input of at most " + std::to_string(max_len) + " tokens cannot hold " +
                          std::to_string(specials) + " special tokens and any text; raise [train] seq_len");
    // Hugging Face tokenizers' longest_first (truncation.rs), which transformers 5's BertTokenizer
    // uses: the shorter part keeps min(its length, budget / 2 rounded down) or more when the
    // longer one leaves room; the longer part gets the rest.
    auto budget = static_cast<size_t>(max_len - specials);
    if (a.size() + b.size() > budget) {
        size_t n1 = a.size(), n2 = b.size();
        bool swap = n1 > n2;
        if (swap) std::swap(n1, n2);
        n2 = n1 > budget ? n1 : std::max(n1, budget - n1);
        if (n1 + n2 > budget) {
            n1 = budget / 2;
            n2 = n1 + budget % 2;
        }
        if (swap) std::swap(n1, n2);
        a.resize(std::min(a.size(), n1));
        b.resize(std::min(b.size(), n2));
    }
    EncodedPair out;
    out.ids.reserve(a.size() + b.size() + static_cast<size_t>(specials));
    out.ids.push_back(special.cls);
    out.ids.insert(out.ids.end(), a.begin(), a.end());
    out.ids.push_back(special.sep);
    out.segments.assign(out.ids.size(), 0);
    if (has_b) {
        out.ids.insert(out.ids.end(), b.begin(), b.end());
        out.ids.push_back(special.sep);
        out.segments.resize(out.ids.size(), 1);
    }
    return out;
}

EncodedPair encode_pair(const Tokenizer& tokenizer, const std::string& a, const std::string* b, int64_t max_len,
                        const SpecialTokens& special) {
    return make_pair_input(tokenizer.encode(a), b ? tokenizer.encode(*b) : std::vector<int32_t>{}, max_len, special,
                           b != nullptr);
}

ModelInputs pad_batch(Backend& backend, const std::vector<const EncodedPair*>& rows, int32_t pad_id) {
    if (rows.empty()) throw ShapeError("pad_batch: the batch is empty");
    size_t T = 0;
    for (const EncodedPair* r : rows) T = std::max(T, r->ids.size());
    size_t B = rows.size();
    std::vector<int32_t> ids(B * T, pad_id), segments(B * T, 0);
    std::vector<uint8_t> padding(B * T, 1);
    for (size_t b = 0; b < B; ++b) {
        const EncodedPair& r = *rows[b];
        std::copy(r.ids.begin(), r.ids.end(), ids.begin() + static_cast<std::ptrdiff_t>(b * T));
        std::copy(r.segments.begin(), r.segments.end(), segments.begin() + static_cast<std::ptrdiff_t>(b * T));
        std::fill_n(padding.begin() + static_cast<std::ptrdiff_t>(b * T), r.ids.size(), uint8_t{0});
    }
    Shape shape{static_cast<int64_t>(B), static_cast<int64_t>(T)};
    ModelInputs in;
    in.ids = Tensor::from_host(backend, shape, DType::i32, ids.data());
    in.segments = Tensor::from_host(backend, shape, DType::i32, segments.data());
    in.padding_mask = Tensor::from_host(backend, shape, DType::u8, padding.data());
    return in;
}

}  // namespace lab
