// BERT's basic tokenization (what runs before WordPiece), as the BertTokenizer of transformers 5.x
// does it (the Rust tokenizers library's BertNormalizer + BertPreTokenizer):
//   1. clean: drop U+0000, U+FFFD and control/format/private-use characters; whitespace -> ' '
//   2. CJK: put spaces around every CJK ideograph (tokenize_cjk)
//   3. strip accents: NFD, then drop non-spacing marks (strip_accents)
//   4. lower-case, one character at a time, multi-character results included (lowercase)
//   5. split on whitespace, and make every punctuation character a word of its own.
// The per-code-point data (unicode_tables.inc) cover all of Unicode; gen_unicode_tables.py says
// where they come from and why.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace wordpiece {

// Byte offset of the first byte that does not start a valid UTF-8 sequence (bad lead byte,
// truncated or bad continuation, overlong form, surrogate, > U+10FFFF), or npos when all is valid.
size_t first_invalid_utf8(std::string_view text);
// "invalid UTF-8 at byte offset 12 (byte 0xc3)"
std::string describe_invalid_utf8(std::string_view text, size_t offset);
// Bytes of the UTF-8 sequence a (valid) lead byte starts.
inline size_t utf8_char_bytes(unsigned char lead) {
    return lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : 4;
}

struct NormalizerSettings {
    bool lowercase = true;
    bool strip_accents = true;
    bool tokenize_cjk = true;
};

class BasicTokenizer {
public:
    explicit BasicTokenizer(NormalizerSettings settings) : settings_(settings) {}

    // Calls word(utf8, number of code points) for every word of `text`, which must be valid UTF-8
    // (check with first_invalid_utf8 first). The view is only valid during the call.
    void for_each_word(std::string_view text, const std::function<void(std::string_view, size_t)>& word) const;

    const NormalizerSettings& settings() const { return settings_; }

private:
    NormalizerSettings settings_;
};

}  // namespace wordpiece
