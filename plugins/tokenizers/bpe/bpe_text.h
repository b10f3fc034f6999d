// GPT-2's text layer: the pre-tokenizer regex written out by hand over UTF-8, and the byte <-> unicode
// character mapping of encoder.json / vocab.bpe.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bpe {

// Appends to `pieces` the pre-tokens of `text` that GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// finds (tiktoken's r50k_pat_str). The views point into `text`; together they cover it exactly.
// A byte that does not start a valid UTF-8 sequence counts as a one-byte character of class
// "other" (neither letter, number nor space), so any byte string splits and round-trips.
void pretokenize(std::string_view text, std::vector<std::string_view>& pieces);

// GPT-2's bytes_to_unicode: byte b is written in encoder.json / vocab.bpe as the UTF-8 of
// unicode_of_byte()[b] (printable Latin-1 bytes as themselves, the rest as U+0100 + n).
const std::array<char32_t, 256>& unicode_of_byte();
// The order of the 256 single-byte tokens in GPT-2's encoder.json (ids 0..255): byte_order()[id].
const std::array<uint8_t, 256>& byte_order();

// Token bytes -> the encoder.json spelling (UTF-8 of the mapped characters).
std::string bytes_to_symbol(std::string_view bytes);
// The inverse; false when `symbol` holds a character outside the 256 of the mapping.
bool symbol_to_bytes(std::string_view symbol, std::string* bytes);

}  // namespace bpe
