#include "bert_text.h"

#include <algorithm>
#include <array>
#include <iterator>
#include <sstream>

#include "lab/utf8.h"
#include "unicode_tables.inc"

namespace wordpiece {

using lab::append_utf8;

namespace {

using namespace wordpiece_unicode;

constexpr char32_t kHangulFirst = 0xAC00, kHangulLast = 0xD7A3;

// Flags of the Basic Multilingual Plane in one array (64 KiB, built once): nearly every character
// of real text is there, and a lookup per character must not be a binary search.
const std::array<uint8_t, 0x10000>& bmp_flags() {
    static const std::array<uint8_t, 0x10000> table = [] {
        std::array<uint8_t, 0x10000> t{};
        for (const PropertyRange& r : kPropertyRanges) {
            if (r.first > 0xFFFF) break;
            for (uint32_t cp = r.first; cp <= std::min<uint32_t>(r.last, 0xFFFF); ++cp) t[cp] = r.flags;
        }
        return t;
    }();
    return table;
}

uint8_t flags_of(char32_t cp) {
    if (cp < 0x10000) return bmp_flags()[cp];
    auto it = std::upper_bound(std::begin(kPropertyRanges), std::end(kPropertyRanges), cp,
                               [](char32_t c, const PropertyRange& r) { return c < r.first; });
    if (it == std::begin(kPropertyRanges)) return 0;
    --it;
    return cp <= it->last ? it->flags : 0;
}

// The mapping of `cp` in a sorted table, or nullptr.
template <size_t N>
const Mapping* find_mapping(const Mapping (&table)[N], char32_t cp) {
    auto it = std::lower_bound(std::begin(table), std::end(table), cp,
                               [](const Mapping& m, char32_t c) { return m.code_point < c; });
    return it != std::end(table) && it->code_point == cp ? it : nullptr;
}

uint8_t combining_class(char32_t cp) {
    auto it = std::lower_bound(std::begin(kCombiningClasses), std::end(kCombiningClasses), cp,
                               [](const CombiningClass& c, char32_t v) { return c.code_point < v; });
    return it != std::end(kCombiningClasses) && it->code_point == cp ? it->value : 0;
}

void append_decomposition(std::u32string& out, char32_t cp) {
    if (cp >= kHangulFirst && cp <= kHangulLast) {
        // Unicode's algorithmic decomposition of Hangul syllables (chapter 3.12).
        char32_t index = cp - kHangulFirst;
        out.push_back(0x1100 + index / 588);
        out.push_back(0x1161 + (index % 588) / 28);
        if (index % 28 != 0) out.push_back(0x11A7 + index % 28);
        return;
    }
    const Mapping* m = find_mapping(kDecomposition, cp);
    out.append(kDecompositionPool + m->offset, m->length);
}

// NFD of `in` (decompose, then order each run of non-starters by combining class, stably), keeping
// only what is not a non-spacing mark: accent stripping as the reference does it.
void decompose_and_strip(const std::u32string& in, std::u32string& out) {
    std::u32string decomposed;
    decomposed.reserve(in.size() + in.size() / 4);
    for (char32_t cp : in) {
        if (flags_of(cp) & kDecomposes)
            append_decomposition(decomposed, cp);
        else
            decomposed.push_back(cp);
    }
    for (size_t i = 0; i < decomposed.size();) {
        if (!(flags_of(decomposed[i]) & kNonStarter)) {
            ++i;
            continue;
        }
        size_t end = i;
        while (end < decomposed.size() && (flags_of(decomposed[end]) & kNonStarter)) ++end;
        std::stable_sort(decomposed.begin() + static_cast<std::ptrdiff_t>(i),
                         decomposed.begin() + static_cast<std::ptrdiff_t>(end),
                         [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
        i = end;
    }
    out.clear();
    for (char32_t cp : decomposed)
        if (!(flags_of(cp) & kStrip)) out.push_back(cp);
}

void lowercase(const std::u32string& in, std::u32string& out) {
    out.clear();
    for (char32_t cp : in) {
        if (cp < 0x80) {
            out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        } else if (flags_of(cp) & kHasLower) {
            const Mapping* m = find_mapping(kLower, cp);
            out.append(kLowerPool + m->offset, m->length);
        } else {
            out.push_back(cp);
        }
    }
}

// Decodes one code point of valid UTF-8 at text[i] and advances i.
char32_t decode_utf8(std::string_view text, size_t& i) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char c = byte(i);
    if (c < 0x80) {
        ++i;
        return c;
    }
    size_t n = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
    char32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (byte(i + k) & 0x3F);
    i += n;
    return cp;
}

}  // namespace

size_t first_invalid_utf8(std::string_view text) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    for (size_t i = 0; i < text.size();) {
        unsigned char c = byte(i);
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t n = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || i + n > text.size()) return i;
        uint32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        for (size_t k = 1; k < n; ++k) {
            if ((byte(i + k) & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (byte(i + k) & 0x3F);
        }
        static const uint32_t min_for_length[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_length[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n;
    }
    return std::string_view::npos;
}

std::string describe_invalid_utf8(std::string_view text, size_t offset) {
    std::ostringstream os;
    os << "invalid UTF-8 at byte offset " << offset << " (byte 0x" << std::hex
       << static_cast<int>(static_cast<unsigned char>(text[offset])) << ")";
    return os.str();
}

void BasicTokenizer::for_each_word(std::string_view text,
                                   const std::function<void(std::string_view, size_t)>& word) const {
    // The steps run over the whole text in the reference's order (clean, CJK, strip, lower), each
    // writing a fresh buffer, before the split.
    std::u32string cleaned, scratch;
    cleaned.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        char32_t cp = decode_utf8(text, i);
        uint8_t f = flags_of(cp);
        if (f & kRemove) continue;
        if (f & kSpace) {
            cleaned.push_back(U' ');
        } else if (settings_.tokenize_cjk && (f & kCjk)) {
            cleaned.push_back(U' ');
            cleaned.push_back(cp);
            cleaned.push_back(U' ');
        } else {
            cleaned.push_back(cp);
        }
    }
    if (settings_.strip_accents) {
        decompose_and_strip(cleaned, scratch);
        cleaned.swap(scratch);
    }
    if (settings_.lowercase) {
        lowercase(cleaned, scratch);
        cleaned.swap(scratch);
    }

    std::string current;
    size_t current_chars = 0;
    auto flush = [&] {
        if (current_chars == 0) return;
        word(current, current_chars);
        current.clear();
        current_chars = 0;
    };
    for (char32_t cp : cleaned) {
        uint8_t f = flags_of(cp);
        if (f & kSpace) {
            flush();
        } else if (f & kPunct) {
            flush();
            append_utf8(current, cp);
            current_chars = 1;
            flush();
        } else {
            append_utf8(current, cp);
            ++current_chars;
        }
    }
    flush();
}

}  // namespace wordpiece
