"""Regenerate rubert_tf/unicode_tables.py from the HuggingFace `tokenizers` library.

Dev-time only: the package itself never imports `tokenizers`. We probe the real
BertNormalizer (clean_text, handle_chinese_chars, cased) and BertPreTokenizer on
every code point, so the tables follow the crate's own (possibly old) Unicode
data instead of whatever Unicode version TF/RE2/Python ship.

For the uncased path (lowercase / strip_accents) we probe, again on every code point,
the crate's NFD (`normalizers.NFD`, the same `NormalizedString::nfd` BertNormalizer
uses), its nonspacing-mark filter (BertNormalizer(strip_accents=True) on NFD-stable
chars) and Rust's `char::to_lowercase` (BertNormalizer(lowercase=True,
strip_accents=False)). The canonical combining classes that drive NFD's reordering
come from Python's `unicodedata`, restricted to and checked against the crate's
behaviour (its Unicode data is older than Python's).

Usage:  python tools/generate_unicode_tables.py [output_path]
"""

import os
import sys
import unicodedata

import tokenizers
from tokenizers import normalizers, pre_tokenizers

# Class codes, shared with rubert_tf.unicode_tables.
NORMAL, REMOVED, WHITESPACE, ISOLATED = 0, 1, 2, 3

DEFAULT_OUTPUT = os.path.join(os.path.dirname(__file__), "..", "rubert_tf", "unicode_tables.py")


def classify_all():
    """Returns a list of length 0x110000 with the class code of every code point."""
    norm = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=False)
    pre = pre_tokenizers.BertPreTokenizer()
    classes = [NORMAL] * 0x110000
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # surrogates cannot occur in valid UTF-8 text
        c = chr(cp)
        out = norm.normalize_str(c)
        if out == "":
            classes[cp] = REMOVED
        elif out == " ":
            classes[cp] = WHITESPACE
        elif out == f" {c} ":
            classes[cp] = ISOLATED  # CJK ideograph, padded with spaces by the normalizer
        elif out == c:
            # Between two letters: 1 word = normal, 2 = separator, 3 = punctuation.
            n_words = len(pre.pre_tokenize_str(f"a{c}b"))
            classes[cp] = {1: NORMAL, 2: WHITESPACE, 3: ISOLATED}[n_words]
        else:
            raise RuntimeError(f"unexpected normalization of U+{cp:04X}: {out!r}")
    return classes


def _code_points():
    return [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def hangul_decomposition(cp):
    """Algorithmic NFD of a precomposed Hangul syllable (Unicode ch. 3.12); None otherwise."""
    s = cp - 0xAC00
    if not 0 <= s < 11172:
        return None
    lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    return (lead, vowel) if trail == 0x11A7 else (lead, vowel, trail)


def probe_uncased():
    """The crate's NFD decompositions, nonspacing marks, combining classes and lowercasing.

    Returns (decomposition {cp: tuple} without Hangul syllables, nonspacing-mark code points
    (set), combining classes {cp: ccc > 0}, lowercase {cp: tuple}).
    """
    nfd = normalizers.NFD()
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                       strip_accents=True, lowercase=False)
    lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                       strip_accents=False, lowercase=True)
    decomposition, marks, lowercase = {}, set(), {}
    for cp in _code_points():
        c = chr(cp)
        d = nfd.normalize_str(c)
        if d != c:
            decomposition[cp] = tuple(map(ord, d))
        elif strip.normalize_str(c) == "":
            marks.add(cp)  # NFD-stable char dropped by strip_accents: a nonspacing mark
        low = lower.normalize_str(c)
        if low != c:
            lowercase[cp] = tuple(map(ord, low))

    # Hangul syllables decompose algorithmically; the package recomputes them.
    for cp in range(0xAC00, 0xAC00 + 11172):
        if decomposition.pop(cp, None) != hangul_decomposition(cp):
            raise RuntimeError(f"unexpected NFD of Hangul syllable U+{cp:04X}")
    for cp, d in decomposition.items():
        if any(x in decomposition or hangul_decomposition(x) for x in d):
            raise RuntimeError(f"NFD of U+{cp:04X} is not fully decomposed")
        expected = "".join(chr(x) for x in d if x not in marks)
        if strip.normalize_str(chr(cp)) != expected:
            raise RuntimeError(f"strip_accents of U+{cp:04X} is not NFD minus marks")

    # Combining classes: Python's values, where the crate agrees that the class is nonzero.
    # Two probes per code point tell 0 < ccc < 230 and ccc > 1 apart from ccc == 0.
    combining = {}
    for cp in _code_points():
        if cp in decomposition or hangul_decomposition(cp):
            continue  # never left after NFD
        c = chr(cp)
        below_230 = nfd.normalize_str("x\u0301" + c) != "x\u0301" + c
        above_1 = nfd.normalize_str("x" + c + "\u0334") != "x" + c + "\u0334"
        ccc = unicodedata.combining(c)
        if below_230 or above_1:
            if not (below_230 == (0 < ccc < 230) and above_1 == (ccc > 1)):
                raise RuntimeError(f"combining class of U+{cp:04X} disagrees with the crate")
            combining[cp] = ccc
        # else: ccc 0 for the crate (Python may know a newer, nonzero class)
    # Every pair of classes orders as the crate's canonical reordering does.
    references = {}
    for cp in sorted(combining):
        references.setdefault(combining[cp], cp)
    for cp, ccc in combining.items():
        for ref_ccc, ref in references.items():
            text = "x" + chr(cp) + chr(ref)
            expected = text if ccc <= ref_ccc else "x" + chr(ref) + chr(cp)
            if nfd.normalize_str(text) != expected:
                raise RuntimeError(f"canonical order of U+{cp:04X}, U+{ref:04X} disagrees")
    return decomposition, marks, combining, lowercase


def to_ranges(classes, code):
    """Inclusive (start, end) ranges of code points having class `code`."""
    ranges, start = [], None
    for cp, cls in enumerate(classes + [None]):
        if cls == code and start is None:
            start = cp
        elif cls != code and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return ranges


def format_ranges(name, ranges):
    lines = [f"{name} = ("]
    for i in range(0, len(ranges), 4):
        chunk = ranges[i:i + 4]
        lines.append("    " + " ".join(f"(0x{a:04X}, 0x{b:04X})," for a, b in chunk))
    lines.append(")")
    return "\n".join(lines)


def value_ranges(mapping):
    """{cp: value} -> inclusive (start, end, value) runs of consecutive code points."""
    runs = []
    for cp in sorted(mapping):
        if runs and runs[-1][1] == cp - 1 and runs[-1][2] == mapping[cp]:
            runs[-1] = (runs[-1][0], cp, mapping[cp])
        else:
            runs.append((cp, cp, mapping[cp]))
    return runs


def delta_runs(mapping):
    """{cp: (single cp,)} -> (first, last, step, delta) runs: cp in range(first, last + 1, step)
    maps to cp + delta (step 1 for blocks like A-Z, 2 for alternating upper/lower pairs)."""
    runs = []
    for cp in sorted(mapping):
        delta = mapping[cp][0] - cp
        if runs:
            first, last, step, d = runs[-1]
            if d == delta and (cp - last == step or (first == last and cp - last in (1, 2))):
                runs[-1] = (first, cp, cp - last, d)
                continue
        runs.append((cp, cp, 1, delta))
    return runs


def format_items(name, items, per_line, fmt, open_="(", close=")"):
    lines = [f"{name} = {open_}"]
    for i in range(0, len(items), per_line):
        lines.append("    " + " ".join(fmt(item) for item in items[i:i + per_line]))
    lines.append(close)
    return "\n".join(lines)


def _hex_tuple(values):
    return "(" + ", ".join(f"0x{v:04X}" for v in values) + ("," if len(values) == 1 else "") + ")"


def main(output_path=DEFAULT_OUTPUT):
    classes = classify_all()
    decomposition, marks, combining, lowercase = probe_uncased()
    parts = [
        '"""Unicode data of HuggingFace BertNormalizer + BertPreTokenizer, probed from the crate.',
        "",
        f"GENERATED by tools/generate_unicode_tables.py from tokenizers {tokenizers.__version__};",
        "do not edit by hand. Ranges are inclusive (start, end) code point pairs, sorted.",
        "",
        "REMOVED:    dropped by clean_text (controls, format chars, unassigned, \\0, U+FFFD);",
        "            they do not split words.",
        "WHITESPACE: word separators.",
        "ISOLATED:   punctuation and CJK ideographs; each is a word of its own.",
        "Every other code point is a normal word character.",
        "",
        "DECOMPOSITION, NONSPACING_MARKS, COMBINING_CLASSES and LOWERCASE_* drive the uncased",
        "path (lowercase / strip_accents: NFD, drop nonspacing marks, Rust char::to_lowercase).",
        '"""',
        "",
        f'TOKENIZERS_VERSION = "{tokenizers.__version__}"',
        "",
        "NORMAL, REMOVED_CLASS, WHITESPACE_CLASS, ISOLATED_CLASS = "
        f"{NORMAL}, {REMOVED}, {WHITESPACE}, {ISOLATED}",
        "",
    ]
    for name, code in (("REMOVED", REMOVED), ("WHITESPACE", WHITESPACE), ("ISOLATED", ISOLATED)):
        parts.append(format_ranges(name, to_ranges(classes, code)))
        parts.append("")

    single = {cp: v for cp, v in lowercase.items() if len(v) == 1}
    special = {cp: v for cp, v in lowercase.items() if len(v) != 1}
    is_mark = [0] * 0x110000
    for cp in marks:
        is_mark[cp] = 1
    parts += [
        "# ---- uncased path (BertNormalizer lowercase / strip_accents) ----",
        "",
        "# Canonical decompositions (NFD) as the crate does them, except the 11172 Hangul",
        "# syllables U+AC00..U+D7A3, which decompose algorithmically (computed by the package).",
        format_items("DECOMPOSITION", sorted(decomposition.items()), 3,
                     lambda kv: f"0x{kv[0]:04X}: {_hex_tuple(kv[1])},", "{", "}"),
        "",
        "# Nonspacing marks (Mn) as the crate sees them: dropped by strip_accents after NFD.",
        format_ranges("NONSPACING_MARKS", to_ranges(is_mark, 1)),
        "",
        "# Nonzero canonical combining classes (start, end, ccc): NFD's stable reordering key.",
        format_items("COMBINING_CLASSES", value_ranges(combining), 3,
                     lambda r: f"(0x{r[0]:04X}, 0x{r[1]:04X}, {r[2]}),"),
        "",
        "# Rust char::to_lowercase, one-char results: (first, last, step, delta) means every",
        "# cp in range(first, last + 1, step) lowercases to cp + delta.",
        format_items("LOWERCASE_RUNS", delta_runs(single), 3,
                     lambda r: f"(0x{r[0]:04X}, 0x{r[1]:04X}, {r[2]}, {r[3]}),"),
        "",
        "# Rust char::to_lowercase results of several chars.",
        format_items("LOWERCASE_SPECIAL", sorted(special.items()), 3,
                     lambda kv: f"0x{kv[0]:04X}: {_hex_tuple(kv[1])},", "{", "}"),
        "",
    ]
    with open(output_path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    print(f"wrote {os.path.abspath(output_path)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
