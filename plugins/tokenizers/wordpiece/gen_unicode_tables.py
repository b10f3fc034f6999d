#!/usr/bin/env python3
"""Writes unicode_tables.inc: the per-code-point data tokenizer/wordpiece needs, for all of Unicode.

    python3 plugins/tokenizers/wordpiece/gen_unicode_tables.py  # rewrites unicode_tables.inc beside it

Why the tables come from the reference implementation and not from unicodedata alone: the
BertTokenizer of transformers 5.x is backed by the Rust `tokenizers` library, whose BertNormalizer
and BertPreTokenizer mix Unicode versions. Control/punctuation/non-spacing-mark categories come
from an old `unicode_categories` crate (unassigned code points are *not* treated as control
characters), NFD from an old `unicode-normalization-alignments` crate, lower-case mappings from the
Rust standard library (newer than Python 3.11's Unicode 14, and per character: no final-sigma
rule), and the CJK ranges differ from transformers' Python _is_chinese_char (0x2B920..0x2CEAF,
not 0x2B820..0x2CEAF). Tables computed from unicodedata would disagree with the real BertTokenizer
on about a thousand code points (the counts are printed and written into the .inc header), so every
property is read off the installed `tokenizers` library, one code point at a time; unicodedata is
used to list the candidate combining marks and to report where the reference departs from it.

Properties per code point (flags in kPropertyRanges):
  remove      dropped by clean_text (U+0000, U+FFFD, control/format/private-use as the reference sees them)
  space       turned into ' ' by clean_text, and a split point of the pre-tokenizer
  punct       split off as its own word by the pre-tokenizer
  cjk         surrounded by spaces when tokenize_cjk is on
  strip       a non-spacing mark dropped after NFD when accents are stripped
  has_lower   has a lower-case mapping different from itself (kLowerMappings; may be several code points)
  decomposes  has a canonical decomposition (kDecompositions; Hangul syllables are computed instead)
  nonstarter  canonical combining class != 0 (kCombiningClasses), for NFD's canonical reordering
"""
import os
import sys
import unicodedata

import tokenizers
from tokenizers import normalizers, pre_tokenizers

REMOVE, SPACE, PUNCT, CJK, STRIP, HAS_LOWER, DECOMPOSES, NONSTARTER = (1 << k for k in range(8))
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3


def bert_normalizer(**kwargs):
    base = dict(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    base.update(kwargs)
    return normalizers.BertNormalizer(**base)


def probe():
    clean = bert_normalizer(clean_text=True)
    cjk = bert_normalizer(handle_chinese_chars=True)
    strip = bert_normalizer(strip_accents=True)
    lower = bert_normalizer(lowercase=True)
    nfd = normalizers.NFD()
    pre = pre_tokenizers.BertPreTokenizer()

    flags, lower_map, decomposition = {}, {}, {}
    stripped_result = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        f = 0
        cleaned = clean.normalize_str(ch)
        if cleaned == "":
            f |= REMOVE
        elif cleaned == " ":
            f |= SPACE
        elif cleaned != ch:
            sys.exit(f"U+{cp:04X}: clean_text gives {cleaned!r}, neither removed, a space nor kept")
        if cjk.normalize_str(ch) == f" {ch} ":
            f |= CJK
        pieces = pre.pre_tokenize_str("a" + ch + "a")
        if len(pieces) == 3 and pieces[1][0] == ch:
            f |= PUNCT
        elif len(pieces) == 2 and not (f & (SPACE | REMOVE)):
            sys.exit(f"U+{cp:04X}: the pre-tokenizer splits on it but clean_text does not make it a space")
        lowered = lower.normalize_str(ch)
        if lowered != ch:
            f |= HAS_LOWER
            lower_map[cp] = [ord(c) for c in lowered]
        decomposed = nfd.normalize_str(ch)
        if decomposed != ch:
            f |= DECOMPOSES
            if not HANGUL_FIRST <= cp <= HANGUL_LAST:
                decomposition[cp] = [ord(c) for c in decomposed]
        elif strip.normalize_str(ch) == "":
            f |= STRIP
        stripped_result[cp] = strip.normalize_str(ch)
        flags[cp] = f

    # Canonical combining classes are immutable once assigned, so the reference's class of a mark is
    # unicodedata's when the reference knows the mark at all; a mark newer than its NFD tables is a
    # starter there. Known = it reorders against a mark of another class (U+0301 is 230, U+0316 220).
    combining = {}
    for cp, f in flags.items():
        value = unicodedata.combining(chr(cp))
        if value == 0 or f & DECOMPOSES:
            continue
        ch = chr(cp)
        if value < 230:
            known = nfd.normalize_str("\u0301" + ch) == ch + "\u0301"
        else:
            known = nfd.normalize_str(ch + "\u0316") == "\u0316" + ch
        if known:
            combining[cp] = value
            flags[cp] |= NONSTARTER

    # Self-checks: the composed model (decompose, drop marks) equals the reference's strip_accents,
    # and the Hangul algorithm equals its decomposition.
    for cp, result in stripped_result.items():
        parts = decomposition.get(cp)
        if parts is None:
            parts = hangul_decomposition(cp) if HANGUL_FIRST <= cp <= HANGUL_LAST else [cp]
        model = "".join(chr(p) for p in parts if not flags[p] & STRIP)
        if model != result:
            sys.exit(f"U+{cp:04X}: decompose-then-strip gives {model!r}, the reference {result!r}")
    for cp in range(HANGUL_FIRST, HANGUL_LAST + 1):
        if nfd.normalize_str(chr(cp)) != "".join(map(chr, hangul_decomposition(cp))):
            sys.exit(f"U+{cp:04X}: Hangul decomposition differs from the reference")
    return flags, lower_map, decomposition, combining


def hangul_decomposition(cp):
    index = cp - HANGUL_FIRST
    lead, vowel, trail = 0x1100 + index // 588, 0x1161 + (index % 588) // 28, 0x11A7 + index % 28
    return [lead, vowel] if trail == 0x11A7 else [lead, vowel, trail]


def unicodedata_differences(flags, lower_map, decomposition):
    """How many code points the reference treats differently from Python's unicodedata."""
    counts = dict(remove_unassigned=0, remove_other=0, punct=0, strip=0, lower=0, decomposition=0)
    for cp, f in flags.items():
        ch = chr(cp)
        category = unicodedata.category(ch)
        py_remove = cp in (0, 0xFFFD) or (category.startswith("C") and ch not in "\t\n\r")
        py_punct = 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or category.startswith("P")
        if py_remove != bool(f & REMOVE):
            counts["remove_unassigned" if category == "Cn" else "remove_other"] += 1
        counts["punct"] += py_punct != bool(f & PUNCT)
        py_nfd = unicodedata.normalize("NFD", ch)
        counts["strip"] += (py_nfd == ch and category == "Mn") != bool(f & STRIP)
        counts["lower"] += [ord(c) for c in ch.lower()] != lower_map.get(cp, [cp])
        if not HANGUL_FIRST <= cp <= HANGUL_LAST:
            counts["decomposition"] += [ord(c) for c in py_nfd] != decomposition.get(cp, [cp])
    return counts


def ranges_of(flags):
    out, start, current = [], None, 0
    for cp in range(0x110001):
        f = flags.get(cp, 0) if cp <= 0x10FFFF else -1
        if f != current:
            if current:
                out.append((start, cp - 1, current))
            start, current = cp, f
    return out


def mapping_table(name, mapping):
    entries, pool = [], []
    for cp in sorted(mapping):
        entries.append((cp, len(pool), len(mapping[cp])))
        pool.extend(mapping[cp])
    if len(pool) > 0xFFFF or max(e[2] for e in entries) > 0xFF:
        sys.exit(f"{name}: pool too large for the uint16_t offsets")
    lines = [f"inline constexpr Mapping k{name}[] = {{"]
    lines += wrap([f"{{0x{cp:X},{off},{n}}}" for cp, off, n in entries])
    lines += ["};", f"inline constexpr char32_t k{name}Pool[] = {{"]
    lines += wrap([f"0x{c:X}" for c in pool])
    lines.append("};")
    return lines


def wrap(items, width=110):
    lines, line = [], "   "
    for item in items:
        if len(line) + len(item) + 2 > width:
            lines.append(line)
            line = "   "
        line += " " + item + ","
    if line.strip():
        lines.append(line)
    return lines


def main():
    flags, lower_map, decomposition, combining = probe()
    diff = unicodedata_differences(flags, lower_map, decomposition)
    ranges = ranges_of(flags)
    import transformers  # only for the version line: it is the BertTokenizer these tables follow

    out = [
        "// Generated by plugins/tokenizers/wordpiece/gen_unicode_tables.py; do not edit, rerun it.",
        f"// Python {sys.version.split()[0]} (unicodedata {unicodedata.unidata_version}), "
        f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}.",
        "// Every property is what the reference BertTokenizer (transformers 5.x = Rust tokenizers' BertNormalizer",
        "// + BertPreTokenizer) does with each code point; see the script for why not unicodedata alone.",
        f"// Code points where the reference departs from unicodedata {unicodedata.unidata_version}: "
        + ", ".join(f"{k} {v}" for k, v in diff.items()) + ".",
        "#pragma once",
        "#include <cstdint>",
        "",
        "namespace wordpiece_unicode {",
        "",
        "inline constexpr uint8_t kRemove = 1, kSpace = 2, kPunct = 4, kCjk = 8, kStrip = 16, kHasLower = 32,",
        "                         kDecomposes = 64, kNonStarter = 128;",
        "struct PropertyRange { uint32_t first, last; uint8_t flags; };",
        "struct Mapping { uint32_t code_point; uint16_t offset; uint8_t length; };",
        "struct CombiningClass { uint32_t code_point; uint8_t value; };",
        "",
        f"// {len(ranges)} ranges of code points with the same non-zero flags, sorted; a gap means flags 0.",
        "inline constexpr PropertyRange kPropertyRanges[] = {",
    ]
    out += wrap([f"{{0x{a:X},0x{b:X},{f}}}" for a, b, f in ranges])
    out += ["};", "", f"// {len(lower_map)} lower-case mappings (code point -> kLowerPool[offset, offset + length)).", ""]
    out += mapping_table("Lower", lower_map)
    out += ["", f"// {len(decomposition)} full canonical decompositions (Hangul syllables excluded: computed).", ""]
    out += mapping_table("Decomposition", decomposition)
    out += ["", f"// {len(combining)} canonical combining classes != 0.",
            "inline constexpr CombiningClass kCombiningClasses[] = {"]
    out += wrap([f"{{0x{cp:X},{v}}}" for cp, v in sorted(combining.items())])
    out += ["};", "", "}  // namespace wordpiece_unicode", ""]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unicode_tables.inc")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    print(f"wrote {path}: {len(ranges)} ranges, {len(lower_map)} lower, {len(decomposition)} decompositions, "
          f"{len(combining)} combining classes; differences from unicodedata: {diff}")


if __name__ == "__main__":
    main()
