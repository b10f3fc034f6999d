// GPT-2 pre-tokenizer and byte mapping; see bpe_text.h.
#include "bpe_text.h"

#include <algorithm>
#include <unordered_map>

#include "lab/utf8.h"
#include "unicode_tables.inc"

namespace bpe {
namespace {

using bpe_unicode::kLetter;
using bpe_unicode::kNumber;
using bpe_unicode::kOther;
using bpe_unicode::kSpace;

struct Char {
    size_t length;  // bytes
    uint8_t cls;    // kOther/kLetter/kNumber/kSpace
};

uint8_t class_of(char32_t cp) {
    const auto* begin = std::begin(bpe_unicode::kClassRanges);
    const auto* end = std::end(bpe_unicode::kClassRanges);
    const auto* it = std::upper_bound(begin, end, cp, [](char32_t c, const bpe_unicode::ClassRange& r) {
        return c < r.first;
    });
    if (it == begin) return kOther;
    --it;
    return cp <= it->last ? it->cls : kOther;
}

// The ASCII classes, looked up without the binary search (most text is ASCII).
const std::array<uint8_t, 128>& ascii_classes() {
    static const std::array<uint8_t, 128> table = [] {
        std::array<uint8_t, 128> t{};
        for (char32_t c = 0; c < 128; ++c) t[c] = class_of(c);
        return t;
    }();
    return table;
}

// The character at text[i]: a valid UTF-8 sequence, or one invalid byte of class other.
Char char_at(std::string_view text, size_t i) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char c = byte(i);
    if (c < 0x80) return {1, ascii_classes()[c]};
    size_t n = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > text.size()) return {1, kOther};
    char32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) return {1, kOther};
        cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    static const char32_t min_for_length[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {1, kOther};
    return {n, class_of(cp)};
}

// Length of a contraction ('s 't 'm 'd 're 've 'll; lower case only, as the pattern) at text[i], or 0.
size_t contraction_at(std::string_view text, size_t i) {
    if (text[i] != '\'' || i + 1 >= text.size()) return 0;
    char a = text[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= text.size()) return 0;
    char b = text[i + 2];
    if ((a == 'l' && b == 'l') || (a == 'v' && b == 'e') || (a == 'r' && b == 'e')) return 3;
    return 0;
}

}  // namespace

void pretokenize(std::string_view text, std::vector<std::string_view>& pieces) {
    size_t i = 0;
    while (i < text.size()) {
        if (size_t n = contraction_at(text, i)) {
            pieces.push_back(text.substr(i, n));
            i += n;
            continue;
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020, then a run of one class.
        size_t run_start = i;
        if (text[i] == ' ' && i + 1 < text.size()) run_start = i + 1;
        Char first = char_at(text, run_start);
        if (first.cls == kSpace && run_start != i) {  // "  x": the space is not an optional prefix
            run_start = i;
            first = char_at(text, i);
        }
        if (first.cls != kSpace) {
            size_t j = run_start + first.length;
            while (j < text.size()) {
                Char next = char_at(text, j);
                if (next.cls != first.cls) break;
                j += next.length;
            }
            pieces.push_back(text.substr(i, j - i));
            i = j;
            continue;
        }
        // `\s+(?!\S)|\s+`: a run of white space; when a non-space follows, the run gives up its last
        // character (which then starts the next piece), unless the run is that one character.
        size_t j = i, last_start = i, count = 0;
        while (j < text.size()) {
            Char next = char_at(text, j);
            if (next.cls != kSpace) break;
            last_start = j;
            j += next.length;
            ++count;
        }
        size_t end = (j < text.size() && count >= 2) ? last_start : j;
        pieces.push_back(text.substr(i, end - i));
        i = end;
    }
}

const std::array<char32_t, 256>& unicode_of_byte() {
    static const std::array<char32_t, 256> table = [] {
        std::array<char32_t, 256> t{};
        char32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            t[b] = printable ? static_cast<char32_t>(b) : next++;
        }
        return t;
    }();
    return table;
}

const std::array<uint8_t, 256>& byte_order() {
    static const std::array<uint8_t, 256> order = [] {
        // bytes_to_unicode lists the printable bytes first, then the others, each in byte order.
        std::array<uint8_t, 256> o{};
        size_t k = 0;
        for (int pass = 0; pass < 2; ++pass)
            for (int b = 0; b < 256; ++b)
                if ((unicode_of_byte()[b] == static_cast<char32_t>(b)) == (pass == 0)) o[k++] = static_cast<uint8_t>(b);
        return o;
    }();
    return order;
}

std::string bytes_to_symbol(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) lab::append_utf8(out, unicode_of_byte()[b]);  // < U+0800: 1 or 2 bytes
    return out;
}

bool symbol_to_bytes(std::string_view symbol, std::string* bytes) {
    static const std::unordered_map<char32_t, uint8_t> byte_of = [] {
        std::unordered_map<char32_t, uint8_t> m;
        for (int b = 0; b < 256; ++b) m[unicode_of_byte()[b]] = static_cast<uint8_t>(b);
        return m;
    }();
    bytes->clear();
    for (size_t i = 0; i < symbol.size();) {
        auto c = static_cast<unsigned char>(symbol[i]);
        char32_t cp;
        if (c < 0x80) {
            cp = c;
            i += 1;
        } else if ((c >> 5) == 0x6 && i + 1 < symbol.size() &&
                   (static_cast<unsigned char>(symbol[i + 1]) & 0xC0) == 0x80) {
            cp = (static_cast<char32_t>(c & 0x1F) << 6) | (static_cast<unsigned char>(symbol[i + 1]) & 0x3F);
            if (cp < 0x80) return false;  // overlong form
            i += 2;
        } else {
            return false;
        }
        auto it = byte_of.find(cp);
        if (it == byte_of.end()) return false;
        *bytes += static_cast<char>(it->second);
    }
    return true;
}

}  // namespace bpe
