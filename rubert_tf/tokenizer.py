"""In-graph BERT WordPiece tokenizer with the exact ids and offsets of HF BertTokenizerFast.

The pipeline reproduces the `tokenizers` crate step by step, using only TF / TF-Text ops so it
runs eagerly, in tf.function, in tf.data and in a SavedModel:

1. added-token matching: literal "[PAD]" "[UNK]" "[CLS]" "[SEP]" "[MASK]" in the raw text become
   their special ids (HF splits them out before normalization);
2. BertNormalizer (clean_text, CJK padding): drop REMOVED chars, WHITESPACE separates; then,
   for uncased vocabularies, the crate's accent stripping (NFD with canonical reordering, drop
   nonspacing marks) and lowercasing (Rust char::to_lowercase), with the crate's alignments;
3. BertPreTokenizer: punctuation/CJK (ISOLATED) chars are one-char words;
4. WordPiece (max 100 chars per word, whole word -> [UNK] on failure) via FastWordpieceTokenizer;
5. [CLS] A [SEP] (B [SEP]) template, LongestFirst truncation, padding.

Unicode data comes from `unicode_tables.py`, generated from the crate itself
(tools/generate_unicode_tables.py), so we follow its Unicode data, not RE2's, ICU's or Python's.
Offsets are code-point offsets into the original string, exactly like `encoding.offsets`.
"""

import functools
import json
import os
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from rubert_tf import hub, unicode_tables

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 100  # HF WordPiece default: longer words become a single [UNK]
SUFFIX = "##"

# Character classes (the first four match unicode_tables); the last two mark added-token matches.
_NORMAL = unicode_tables.NORMAL
_REMOVED = unicode_tables.REMOVED_CLASS
_WHITESPACE = unicode_tables.WHITESPACE_CLASS
_ISOLATED = unicode_tables.ISOLATED_CLASS
_SPECIAL_START = 4
_SPECIAL_CONT = 5

# tokenizer_config.json classes for which transformers' AutoTokenizer uses tokenizer.json as is
# (BertTokenizer / BertTokenizerFast rebuild the normalizer from do_lower_case instead).
_GENERIC_FAST_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _class_boundaries():
    """Piecewise-constant code point -> class map as (sorted starts, class of each segment)."""
    ranges = sorted(
        [(a, b, _REMOVED) for a, b in unicode_tables.REMOVED]
        + [(a, b, _WHITESPACE) for a, b in unicode_tables.WHITESPACE]
        + [(a, b, _ISOLATED) for a, b in unicode_tables.ISOLATED])
    starts, classes, cur = [], [], 0
    for a, b, cls in ranges:
        if a > cur:
            starts.append(cur)
            classes.append(_NORMAL)
        starts.append(a)
        classes.append(cls)
        cur = b + 1
    starts.append(cur)
    classes.append(_NORMAL)
    return starts, classes


_CLASS_STARTS, _CLASS_VALUES = _class_boundaries()


def _class_pages(page_bits=8):
    """The class map as two lookup tables: page of each code point >> page_bits -> row of `blocks`
    (identical pages share a row), blocks [rows, 2 ** page_bits] int32. Two gathers per code point
    instead of a binary search over the range starts (~370)."""
    import bisect

    size = 1 << page_bits
    blocks, index, pages = [], {}, []
    for page in range(0x110000 >> page_bits):
        base = page << page_bits
        first = bisect.bisect_right(_CLASS_STARTS, base) - 1
        last = bisect.bisect_right(_CLASS_STARTS, base + size - 1) - 1
        if first == last:  # the whole page is one class
            block = (_CLASS_VALUES[first],) * size
        else:
            block = tuple(_CLASS_VALUES[bisect.bisect_right(_CLASS_STARTS, base + i) - 1] for i in range(size))
        if block not in index:
            index[block] = len(blocks)
            blocks.append(block)
        pages.append(index[block])
    return pages, blocks


_PAGE_BITS = 8
_CLASS_PAGES, _CLASS_BLOCKS = _class_pages(_PAGE_BITS)
_CLASS_BLOCK_VALUES = [c for block in _CLASS_BLOCKS for c in block]


def _char_class(cp):
    """Class of each code point (int32 tensor; U+0000..U+10FFFF) from the two-level table."""
    cp = tf.clip_by_value(cp, 0, 0x10FFFF)
    size = 1 << _PAGE_BITS  # (// and % rather than bit ops: exports keep to the ops listed in tests)
    flat = tf.gather(tf.constant(_CLASS_PAGES, tf.int32), cp // size) * size + cp % size
    return tf.gather(tf.constant(_CLASS_BLOCK_VALUES, tf.int32), flat)


# ---------------------------------------------------------------- uncased normalization tables


def _hangul_decomposition(cp):
    s = cp - 0xAC00
    lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    return (lead, vowel) if trail == 0x11A7 else (lead, vowel, trail)


def _expansion_table(mapping):
    """{cp: tuple of cps} -> (sorted keys, row splits, flat values) as numpy int32 arrays."""
    keys = sorted(mapping)
    lengths = [len(mapping[k]) for k in keys]
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.array([v for k in keys for v in mapping[k]], dtype=np.int32)
    return np.array(keys, dtype=np.int32), splits, values


def _piecewise(ranges, default=0):
    """Inclusive (start, end, value) ranges -> (segment starts, segment values) for searchsorted."""
    starts, values, cur = [], [], 0
    for a, b, v in sorted(ranges):
        if a > cur:
            starts.append(cur)
            values.append(default)
        starts.append(a)
        values.append(v)
        cur = b + 1
    starts.append(cur)
    values.append(default)
    return np.array(starts, dtype=np.int32), np.array(values, dtype=np.int32)


@functools.lru_cache(maxsize=None)
def _uncased_tables():
    """numpy tables of the crate's NFD, nonspacing marks, combining classes and lowercasing."""
    decomposition = dict(unicode_tables.DECOMPOSITION)
    decomposition.update((cp, _hangul_decomposition(cp)) for cp in range(0xAC00, 0xAC00 + 11172))
    lowercase = {}
    for first, last, step, delta in unicode_tables.LOWERCASE_RUNS:
        lowercase.update((cp, (cp + delta,)) for cp in range(first, last + 1, step))
    lowercase.update(unicode_tables.LOWERCASE_SPECIAL)
    # Combining class (0..254) * 2 + 1 if the char is a nonspacing mark, in one range lookup.
    marks = {cp for a, b in unicode_tables.NONSPACING_MARKS for cp in range(a, b + 1)}
    combining = {cp: ccc for a, b, ccc in unicode_tables.COMBINING_CLASSES
                 for cp in range(a, b + 1)}
    props = {cp: 2 * combining.get(cp, 0) + (cp in marks) for cp in marks | set(combining)}
    return {
        "nfd": _expansion_table(decomposition),
        "lower": _expansion_table(lowercase),
        "props": _piecewise([(cp, cp, v) for cp, v in props.items()]),
    }


def _expand(cp, active, table):
    """Replaces each active code point by its expansion in `table` (others stay as they are).

    Returns (new code points, index of the source char of each, whether it is the first char
    of its source's expansion)."""
    keys, splits, values = (tf.constant(t) for t in table)
    idx = tf.minimum(tf.searchsorted(keys, cp, side="left", out_type=tf.int32),
                     tf.size(keys) - 1)
    found = active & (tf.gather(keys, idx) == cp)
    start = tf.gather(splits, idx)
    count = tf.where(found, tf.gather(splits, idx + 1) - start, 1)
    src = tf.repeat(tf.range(tf.size(cp)), count)
    k = tf.range(tf.size(src)) - tf.gather(tf.cumsum(count, exclusive=True), src)
    replaced = tf.gather(values, tf.gather(start, src) + k)
    new_cp = tf.where(tf.gather(found, src), replaced, tf.gather(cp, src))
    return new_cp, src, k == 0


def _normalize_uncased(cp, cls, pos, row, strip_accents, lowercase):
    """BertNormalizer's strip_accents (NFD, drop nonspacing marks) and lowercase steps.

    Works on the flat chars left after clean_text; separators and added tokens pass unchanged
    (HF turns separators into " " and never normalizes added tokens). Each output char keeps
    the original position the crate's alignments give it: the char it came from, except
    after NFD's canonical reordering, where the k-th reordered char that starts an expansion
    takes the position of the k-th input char (NormalizedString::transform is positional).
    """
    tables = _uncased_tables()
    active = (cls == _NORMAL) | (cls == _ISOLATED)
    if strip_accents:
        cp, src, first = _expand(cp, active, tables["nfd"])
        src_active, src_row = tf.gather(active, src), tf.gather(row, src)
        prop_starts, prop_values = (tf.constant(t) for t in tables["props"])
        seg = tf.searchsorted(prop_starts, cp, side="right", out_type=tf.int32) - 1
        prop = tf.where(src_active, tf.gather(prop_values, seg), 0)
        ccc = prop // 2
        # Canonical reordering: stable sort by combining class inside each run of marks that
        # follows a starter (ccc 0); a new text starts a new run. Skipped when already sorted.
        new_row = tf.concat([[True], src_row[1:] != src_row[:-1]], 0)
        run = tf.cumsum(tf.cast((ccc == 0) | new_row, tf.int64))
        key = run * 256 + tf.cast(ccc, tf.int64)
        n = tf.size(key)
        unsorted = tf.reduce_any(key[1:] < key[:-1])
        order = tf.cond(unsorted, lambda: tf.argsort(key, stable=True),
                        lambda: tf.range(n))
        cp, first, prop = (tf.gather(t, order) for t in (cp, first, prop))
        # Positional alignment: every input char yields exactly one expansion-first char.
        src = tf.cumsum(tf.cast(first, tf.int32)) - 1
        keep = prop % 2 == 0  # drop nonspacing marks
        cp, src = tf.boolean_mask(cp, keep), tf.boolean_mask(src, keep)
        cls, pos, row, active = (tf.gather(t, src) for t in (cls, pos, row, active))
    if lowercase:
        cp, src, _ = _expand(cp, active, tables["lower"])
        cls, pos, row, active = (tf.gather(t, src) for t in (cls, pos, row, active))
    # The pre-tokenizer sees the normalized chars: classify them anew (clean_text already ran,
    # so a "removed" class here is just a normal char).
    new_cls = _char_class(cp)
    new_cls = tf.where(new_cls == _REMOVED, _NORMAL, new_cls)
    cls = tf.where(active, new_cls, cls)
    return cp, cls, pos, row


def _cleanup(text):
    """The WordPiece decoder's `cleanup` replacements (tokenizers crate, applied per token)."""
    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                     (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"),
                     (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(old, new)
    return text


def prefix_bytes(budget):
    """Bytes of a text that certainly hold its first `budget` tokens (see bounded_prefix): `budget` + 1
    words of at most 101 characters (a longer word is one [UNK]) of at most 4 bytes each."""
    return (int(budget) + 1) * (MAX_INPUT_CHARS_PER_WORD + 1) * 4


# ASCII whitespace and punctuation: every one ends a pre-token in BERT's pre-tokenizer, and no byte of a
# multi-byte UTF-8 character is ASCII, so a cut right after one never splits a word or a character.
_BOUNDARY_BYTES = np.zeros(256, bool)
_BOUNDARY_BYTES[[9, 10, 13, 32]] = True
_BOUNDARY_BYTES[[c for c in range(33, 127) if not chr(c).isalnum()]] = True


def bounded_prefix(texts, budget):
    """tf.string [B] -> the prefix of each text that its first `budget` tokens come from, so a huge text
    costs what `budget` tokens cost (hostile input: a 50 MB text under the request limit).

    Texts of at most prefix_bytes(budget) bytes are unchanged. A longer one is cut right after its last
    ASCII whitespace or punctuation byte within that many bytes (when that is in the second half; else at
    the last character start): every pre-token before the cut is complete, and there are far more than
    `budget` of them in any text but a hostile one, so the first `budget` ids are exactly the full text's.
    Offsets are into the original text. What a cut can change: the end offset of a giant (over 100
    characters, so [UNK]) word at the cut, and, for pairs where both texts are cut and the budget is odd,
    which of the two keeps the extra token (LongestFirst compares the true lengths)."""
    cap = prefix_bytes(budget)
    lengths = tf.strings.length(texts)
    long_rows = tf.where(lengths > cap)[:, 0]

    def cut_long_rows():
        head = tf.strings.substr(tf.gather(texts, long_rows), 0, cap)
        raw = tf.cast(tf.io.decode_raw(head, tf.uint8, fixed_length=cap), tf.int32)  # [L, cap]
        index = tf.range(cap, dtype=tf.int32)[tf.newaxis, :]
        is_boundary = tf.gather(tf.constant(_BOUNDARY_BYTES), raw)
        after_boundary = tf.reduce_max(tf.where(is_boundary, index + 1, 0), axis=1)
        starts_char = (raw < 0x80) | (raw >= 0xC0)  # not a UTF-8 continuation byte
        char_start = tf.reduce_max(tf.where(starts_char, index, 0), axis=1)  # drops a partial char
        cut = tf.where(after_boundary > cap // 2, after_boundary, char_start)
        return tf.tensor_scatter_nd_update(lengths, long_rows[:, tf.newaxis], cut)

    # Usually no text is that long: then none of the [L, cap] work runs.
    cut = tf.cond(tf.size(long_rows) > 0, cut_long_rows, lambda: lengths)
    return tf.strings.substr(texts, tf.zeros_like(cut), cut)


def _read_vocab_file(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline
    return [line.rstrip("\r") for line in lines]


def _as_string_batch(x, name):
    """str / list[str] / tf.string tensor of rank 0 or 1 -> tf.string tensor of shape [B]."""
    if isinstance(x, (str, bytes)):
        x = [x]
    if isinstance(x, (list, tuple)):
        for i, s in enumerate(x):
            if not isinstance(s, (str, bytes)):
                raise TypeError(f"`{name}` must contain strings, but element {i} is "
                                f"{type(s).__name__}: {s!r:.80}")
        x = tf.constant(list(x), dtype=tf.string, shape=[len(x)])
    elif isinstance(x, (tf.Tensor, tf.Variable, np.ndarray)) or tf.is_tensor(x):
        if isinstance(x, tf.RaggedTensor):
            raise TypeError(f"`{name}` must be a dense tf.string tensor, got a RaggedTensor")
        if isinstance(x, np.ndarray) and x.dtype.kind not in ("U", "S", "O"):
            raise TypeError(f"`{name}` must hold strings, got a numpy array of dtype {x.dtype}")
        x = tf.convert_to_tensor(x)
        if x.dtype != tf.string:
            raise TypeError(f"`{name}` must be a tf.string tensor, got dtype {x.dtype.name}")
    else:
        raise TypeError(f"`{name}` must be a str, a list of str or a tf.string tensor, "
                        f"got {type(x).__name__}")
    rank = x.shape.rank
    if rank == 0:
        return x[tf.newaxis]
    if rank is not None and rank != 1:
        raise ValueError(f"`{name}` must be a scalar or a 1-D batch of strings, "
                         f"got shape {x.shape}")
    return tf.ensure_shape(x, [None])


def _split_words(texts, special_patterns=(), lowercase=False, strip_accents=False):
    """Normalizer + pre-tokenizer: tf.string [B] -> (words, word_row, char_pos).

    words: ragged int32 code points [W, None] (normalized); word_row: int64 [W] batch row of
    each word; char_pos: int32 position of each word char (aligned with words.flat_values)
    in its original text. `special_patterns` are (id, code points) of added tokens to keep
    whole. `lowercase` / `strip_accents` (effective bools) select the uncased normalization.
    """
    # Invalid UTF-8 becomes U+FFFD, which clean_text removes (as HF would for that char).
    cps = tf.strings.unicode_decode(texts, "UTF-8", errors="replace", replacement_char=0xFFFD)
    cp = cps.flat_values
    row = cps.value_rowids()
    pos = tf.cast(tf.ragged.range(cps.row_lengths()).flat_values, tf.int32)

    cls = _mark_added_tokens(_char_class(cp), cp, pos, row, cps.row_lengths(), special_patterns)

    # clean_text: removed chars vanish without splitting the word around them.
    keep = cls != _REMOVED
    cp, cls, pos, row = (tf.boolean_mask(t, keep) for t in (cp, cls, pos, row))
    if lowercase or strip_accents:
        cp, cls, pos, row = _normalize_uncased(cp, cls, pos, row, strip_accents, lowercase)

    # Words: maximal runs of normal chars; isolated chars and added tokens start their own.
    prev_cls = tf.concat([[-1], cls[:-1]], 0)
    prev_row = tf.concat([[-1], row[:-1]], 0)
    starts_word = (((cls == _NORMAL) & ((prev_cls != _NORMAL) | (prev_row != row)))
                   | (cls == _ISOLATED) | (cls == _SPECIAL_START))
    in_word = cls != _WHITESPACE
    cp, pos, row, starts_word = (tf.boolean_mask(t, in_word) for t in (cp, pos, row, starts_word))
    word_of_char = tf.cumsum(tf.cast(starts_word, tf.int64)) - 1
    num_words = tf.reduce_sum(tf.cast(starts_word, tf.int64))
    words = tf.RaggedTensor.from_value_rowids(cp, word_of_char, nrows=num_words, validate=False)
    word_row = tf.gather(row, words.row_starts())
    return words, word_row, pos


def _mark_added_tokens(cls, cp, pos, row, text_lengths, special_patterns):
    """cls with _SPECIAL_START where an added token ("[MASK]") starts in the raw text and
    _SPECIAL_CONT on its other characters. HF matches the literal added tokens first; they are
    bracketed, so two matches never overlap. Only positions holding a pattern's first character are
    compared (a handful per text), not every code point once per pattern character."""
    if not special_patterns:
        return cls
    longest = max(len(pattern) for _, pattern in special_patterns)
    firsts = sorted({pattern[0] for _, pattern in special_patterns})
    candidate = cp == firsts[0]
    for c in firsts[1:]:
        candidate |= cp == c
    at = tf.cast(tf.where(candidate)[:, 0], tf.int32)  # [m]
    padded = tf.concat([cp, tf.fill([longest], -1)], 0)
    window = tf.gather(padded, at[:, tf.newaxis] + tf.range(longest)[tf.newaxis, :])  # [m, longest]
    # characters left in the text from each candidate on
    room = tf.cast(tf.gather(text_lengths, tf.gather(row, at)), tf.int32) - tf.gather(pos, at)
    length = tf.zeros_like(at)  # length of the token matched at each candidate, 0: none
    for _, pattern in special_patterns:
        size = len(pattern)
        match = (room >= size) & tf.reduce_all(window[:, :size] == tf.constant(pattern, tf.int32), axis=1)
        length = tf.where(match & (length == 0), size, length)
    matched = length > 0
    starts, length = tf.boolean_mask(at, matched), tf.boolean_mask(length, matched)
    inside = tf.ragged.range(starts + 1, starts + length).flat_values
    cls = tf.tensor_scatter_nd_update(cls, starts[:, tf.newaxis], tf.fill(tf.shape(starts), _SPECIAL_START))
    return tf.tensor_scatter_nd_update(cls, inside[:, tf.newaxis], tf.fill(tf.shape(inside), _SPECIAL_CONT))


def _check_normalizer_args(lowercase, strip_accents):
    if not isinstance(lowercase, (bool, np.bool_)):
        raise TypeError(f"`lowercase` must be a bool, got {lowercase!r}")
    if strip_accents is not None and not isinstance(strip_accents, (bool, np.bool_)):
        raise TypeError(f"`strip_accents` must be None or a bool, got {strip_accents!r}")
    # HF BertNormalizer: strip_accents=None follows lowercase.
    return bool(lowercase), bool(lowercase if strip_accents is None else strip_accents)


def pretokenize(texts, lowercase=False, strip_accents=None):
    """HF BertNormalizer + BertPreTokenizer in TF: texts -> ragged tf.string words [B, None]
    (cased by default; `lowercase` / `strip_accents` as in BertNormalizer). Used to count
    words for vocabulary training."""
    lowercase, strip_accents = _check_normalizer_args(lowercase, strip_accents)
    texts = _as_string_batch(texts, "texts")
    words, word_row, _ = _split_words(texts, lowercase=lowercase, strip_accents=strip_accents)
    return tf.RaggedTensor.from_value_rowids(
        tf.strings.unicode_encode(words, "UTF-8"), word_row,
        nrows=tf.shape(texts, out_type=tf.int64)[0], validate=False)


def _bert_normalizer_of(json_file):
    """The BertNormalizer dict of a tokenizer.json, or None if it has another normalizer."""
    with open(json_file, encoding="utf-8") as f:
        normalizer = json.load(f).get("normalizer") or {}
    return normalizer if normalizer.get("type") == "BertNormalizer" else None


def _normalizer_settings(config, config_file, json_file):
    """{"lowercase", "strip_accents"} as transformers (5.x, same rule as 4.x) would use them."""
    if config.get("tokenizer_class") in _GENERIC_FAST_CLASSES and json_file is not None:
        # AutoTokenizer builds a plain fast tokenizer from tokenizer.json: its normalizer rules.
        normalizer = _bert_normalizer_of(json_file)
        if normalizer is None:
            raise NotImplementedError(
                f"{json_file} has no BertNormalizer; only BERT normalization is implemented")
        if not normalizer.get("clean_text", True):
            raise NotImplementedError(f"{json_file} sets clean_text=false, which is not "
                                      "implemented")
        if not normalizer.get("handle_chinese_chars", True):
            raise NotImplementedError(f"{json_file} sets handle_chinese_chars=false, which "
                                      "is not implemented")
        return {"lowercase": bool(normalizer.get("lowercase", True)),
                "strip_accents": normalizer.get("strip_accents")}

    source = config_file or "the default tokenizer settings"
    if not config.get("tokenize_chinese_chars", True):
        raise NotImplementedError(
            f"{source} sets tokenize_chinese_chars=false, which is not implemented")
    # BertTokenizer(Fast)'s defaults: do_lower_case=True, strip_accents=None.
    settings = {"lowercase": bool(config.get("do_lower_case", True)),
                "strip_accents": config.get("strip_accents")}
    normalizer = _bert_normalizer_of(json_file) if json_file is not None else None
    if normalizer is not None and (
            bool(normalizer.get("lowercase", True)) != settings["lowercase"]
            or normalizer.get("strip_accents") != settings["strip_accents"]):
        reason = ("tokenizer_config.json" if config_file is not None
                  else "no tokenizer_config.json, so HF's default do_lower_case=True")
        warnings.warn(
            f"{json_file} has lowercase={normalizer.get('lowercase')}, "
            f"strip_accents={normalizer.get('strip_accents')}, but transformers' "
            f"BertTokenizerFast ignores it and uses lowercase={settings['lowercase']}, "
            f"strip_accents={settings['strip_accents']} ({reason}); so does RuBertTokenizer. "
            "Pass lowercase=/strip_accents= to override.", stacklevel=3)
    return settings


class _PlainVocab:
    """Python-side vocabulary, kept in a plain object so tf.Module does not walk its 80k+
    entries (that made `.variables` and tf.saved_model.save take seconds)."""

    def __init__(self, tokens, ids):
        self.tokens = tokens
        self.ids = ids


class RuBertTokenizer(tf.Module):
    """BERT WordPiece tokenizer (RuBERT), in-graph, id- and offset-exact with HF BertTokenizerFast.

    `lowercase` and `strip_accents` are BertNormalizer's (HF's do_lower_case / strip_accents):
    cased by default; lowercase=True also strips accents unless strip_accents=False
    (strip_accents=None follows lowercase), so "Ёжик" -> "ежик" as in HF's uncased path.

    Example (a vocabulary list in memory; `from_pretrained(path)` reads a vocab.txt):

    >>> import rubert_tf as rt
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Привет", ",", "мир", "!", "как", "дела", "?"]
    >>> tokenizer = rt.RuBertTokenizer(vocab)
    >>> batch = tokenizer(["Привет, мир!", "как дела?"], max_length=8)
    >>> sorted(batch)
    ['padding_mask', 'segment_ids', 'token_ids']
    >>> batch["token_ids"].numpy().tolist()
    [[2, 5, 6, 7, 8, 3, 0, 0], [2, 9, 10, 11, 3, 0, 0, 0]]
    >>> pair = tokenizer(["Привет, мир!"], ["как дела?"], padding="longest")
    >>> pair["segment_ids"].numpy().tolist()
    [[0, 0, 0, 0, 0, 0, 1, 1, 1, 1]]
    >>> tokenizer.detokenize([[2, 5, 6, 7, 8, 3]]).numpy()[0].decode("utf-8")
    'Привет, мир!'
    """

    def __init__(self, vocabulary, lowercase=False, strip_accents=None, name=None):
        super().__init__(name=name)
        # Effective BertNormalizer steps; the attributes keep the HF settings as given.
        self._lowercase_flag, self._strip_flag = _check_normalizer_args(lowercase, strip_accents)
        self.lowercase = self._lowercase_flag
        self.strip_accents = None if strip_accents is None else bool(strip_accents)
        if isinstance(vocabulary, (str, os.PathLike)):
            path = os.fspath(vocabulary)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"vocabulary file not found: {path}")
            tokens = _read_vocab_file(path)
        elif isinstance(vocabulary, (list, tuple)):
            tokens = list(vocabulary)
        else:
            raise TypeError("`vocabulary` must be a list of tokens or a path to vocab.txt, "
                            f"got {type(vocabulary).__name__}")
        token_to_id = {}
        for i, tok in enumerate(tokens):
            if not isinstance(tok, str) or not tok:
                raise ValueError(f"vocabulary entry {i} must be a non-empty str, got {tok!r}")
            if tok in token_to_id:
                raise ValueError(f"vocabulary has duplicate token {tok!r} "
                                 f"(ids {token_to_id[tok]} and {i})")
            token_to_id[tok] = i
        missing = [t for t in SPECIAL_TOKENS if t not in token_to_id]
        if missing:
            raise ValueError(f"vocabulary lacks the special token(s) {missing}; "
                             f"RuBERT needs all of {list(SPECIAL_TOKENS)}")

        self._py = _PlainVocab(tuple(tokens), token_to_id)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            token_to_id[t] for t in SPECIAL_TOKENS)
        self.model_max_length = None
        # Added-token patterns as code points: (id, [cp, ...]).
        self._special_patterns = tuple(
            (token_to_id[t], tuple(ord(c) for c in t)) for t in SPECIAL_TOKENS)

        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=list(tokens), suffix_indicator=SUFFIX, unknown_token="[UNK]",
            no_pretokenization=True, support_detokenization=True,
            max_bytes_per_word=1000, token_out_type=tf.int32)

        # Characters each token covers in its word (without the "##" prefix): piece offsets.
        self._token_chars = tf.constant(
            [len(t) - len(SUFFIX) if t.startswith(SUFFIX) else len(t) for t in tokens],
            dtype=tf.int32)
        # The crate decodes token by token: precompute each token's text as first / later token.
        self._decode_first = tf.constant([_cleanup(t) for t in tokens])
        self._decode_next = tf.constant(
            [_cleanup(t[len(SUFFIX):] if t.startswith(SUFFIX) else " " + t) for t in tokens])
        self._is_special = tf.constant([t in SPECIAL_TOKENS for t in tokens])

        # autograph off: the pipeline has no tensor-dependent Python control flow.
        self._tokenize_fn = tf.function(
            self._tokenize_batch, input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False)

    # ------------------------------------------------------------------ loading / saving

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        """Loads from a directory with vocab.txt (+ optional tokenizer_config.json /
        tokenizer.json) or a hub id, normalizing as transformers' BertTokenizerFast would.

        Casing follows tokenizer_config.json's do_lower_case / strip_accents; without that
        file (ai-forever/ruBert-base, ruBert-large) HF's default do_lower_case=True applies.
        Like transformers, tokenizer.json's normalizer is ignored for Bert tokenizer classes
        (they rebuild it from do_lower_case), and used only when tokenizer_config.json names
        the generic PreTrainedTokenizerFast. `lowercase=` / `strip_accents=` override both.
        """
        # A hub id or short name ("rubert-tiny2") becomes the cache snapshot of its tokenizer files,
        # by the resolver the models use; a local directory is used as is.
        path = hub.resolve(path, files="tokenizer")
        vocab_file = os.path.join(path, "vocab.txt")
        config_file = os.path.join(path, "tokenizer_config.json")
        json_file = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(f"no vocab.txt in {path} (expected {vocab_file})")
        if not os.path.isfile(config_file):
            config_file = None
        if not os.path.isfile(json_file):
            json_file = None

        config = {}
        if config_file is not None:
            with open(config_file, encoding="utf-8") as f:
                config = json.load(f)
        settings = _normalizer_settings(config, config_file, json_file)
        for key in ("lowercase", "strip_accents"):
            kwargs.setdefault(key, settings[key])
        tok = cls(vocab_file, **kwargs)
        tok.model_max_length = config.get("model_max_length")
        return tok

    def save_pretrained(self, directory):
        """Writes vocab.txt and an HF BertTokenizer-style tokenizer_config.json."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in self._py.tokens))
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "do_basic_tokenize": True,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": True,
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
            "clean_up_tokenization_spaces": True,
        }
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=2)
        return directory

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self):
        return len(self._py.tokens)

    @property
    def vocabulary(self):
        return list(self._py.tokens)

    def token_to_id(self, token):
        try:
            return self._py.ids[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None

    def id_to_token(self, token_id):
        token_id = int(token_id)
        if not 0 <= token_id < len(self._py.tokens):
            raise ValueError(f"token id {token_id} is out of range [0, {len(self._py.tokens)})")
        return self._py.tokens[token_id]

    # ------------------------------------------------------------------ core (graph) pipeline

    def _tokenize_batch(self, texts):
        """tf.string [B] -> (ids, starts, ends) ragged int32 [B, None], char offsets."""
        batch = tf.shape(texts, out_type=tf.int64)[0]
        words, word_row, pos = _split_words(texts, self._special_patterns,
                                            lowercase=self._lowercase_flag,
                                            strip_accents=self._strip_flag)
        word_first_char = words.row_starts()
        word_len = tf.cast(words.row_lengths(), tf.int32)

        # WordPiece; words over 100 chars are a single [UNK] in HF.
        word_text = tf.strings.unicode_encode(words, "UTF-8")
        word_text = tf.where(word_len > MAX_INPUT_CHARS_PER_WORD, "[UNK]", word_text)
        pieces = self._wordpiece.tokenize(word_text)
        ids = pieces.flat_values
        piece_word = pieces.value_rowids()

        # Char span of each piece inside its word; an [UNK] piece spans the whole word.
        piece_len = tf.where(ids == self.unk_id, tf.gather(word_len, piece_word),
                             tf.gather(self._token_chars, ids))
        cum = tf.cumsum(piece_len, exclusive=True)
        start_in_word = cum - tf.gather(cum, tf.gather(pieces.row_starts(), piece_word))
        first = tf.gather(word_first_char, piece_word) + tf.cast(start_in_word, tf.int64)
        last = first + tf.cast(piece_len, tf.int64) - 1
        starts = tf.gather(pos, first)
        ends = tf.gather(pos, last) + 1  # removed chars after the piece are not included

        piece_row = tf.gather(word_row, piece_word)

        def by_row(values):
            return tf.RaggedTensor.from_value_rowids(values, piece_row, nrows=batch,
                                                     validate=False)

        return by_row(ids), by_row(starts), by_row(ends)

    # ------------------------------------------------------------------ public API

    def tokenize(self, texts):
        """Word-piece ids without special tokens: tf.RaggedTensor int32 [B, None]."""
        return self._tokenize_fn(_as_string_batch(texts, "texts"))[0]

    def tokenize_with_offsets(self, texts):
        """(ids, starts, ends), ragged int32 [B, None]; char offsets into the original texts."""
        return self._tokenize_fn(_as_string_batch(texts, "texts"))

    # Plain TF ops only: skip autograph's (slow) source conversion inside user tf.functions.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, texts, text_pairs=None, max_length=512, padding="max_length",
                 truncation=True, return_offsets=False):
        """Model inputs: dict of int32 "token_ids", "segment_ids", "padding_mask" [B, T]
        (+ "offsets" [B, T, 2] with return_offsets=True)."""
        texts = _as_string_batch(texts, "texts")
        pairs = None if text_pairs is None else _as_string_batch(text_pairs, "text_pairs")
        num_special = 2 if pairs is None else 3
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
            raise TypeError(f"`max_length` must be an int, got {type(max_length).__name__}")
        if max_length < num_special:
            raise ValueError(f"`max_length`={max_length} is too small: at least {num_special} "
                             "is needed for the special tokens")
        if padding not in ("max_length", "longest"):
            raise ValueError(f"`padding` must be 'max_length' or 'longest', got {padding!r}")
        if pairs is not None and texts.shape[0] is not None and pairs.shape[0] is not None \
                and texts.shape[0] != pairs.shape[0]:
            raise ValueError(f"`texts` has {texts.shape[0]} items but `text_pairs` has "
                             f"{pairs.shape[0]}")

        budget = max_length - num_special
        if truncation:  # only what the kept tokens can come from is normalised and tokenized
            texts = bounded_prefix(texts, budget)
            pairs = None if pairs is None else bounded_prefix(pairs, budget)
        seqs = [self._tokenize_fn(texts)]
        if pairs is not None:
            tf.debugging.assert_equal(tf.shape(texts)[0], tf.shape(pairs)[0],
                                      message="`texts` and `text_pairs` differ in batch size")
            seqs.append(self._tokenize_fn(pairs))
        lengths = [tf.cast(s[0].row_lengths(), tf.int32) for s in seqs]
        if truncation:
            keep = self._truncated_lengths(lengths, budget)
        else:
            keep = lengths
            tf.debugging.assert_less_equal(
                tf.add_n(lengths), budget,
                message=f"input is longer than max_length={max_length} tokens and "
                        "truncation=False")
        # Width of the output: fixed, or the longest row ([CLS] + each part + its [SEP]).
        if padding == "max_length":
            width = max_length
        else:
            width = tf.reduce_max(tf.concat([[0], tf.add_n(keep)], 0)) + num_special

        # Template [CLS] A [SEP] (B [SEP]) filled position by position with dense ops (far
        # fewer graph ops than ragged concat); segment 1 covers B and its [SEP].
        col = tf.range(width)[tf.newaxis, :]  # [1, T]
        is_cls = tf.broadcast_to(col == 0, [tf.shape(texts)[0], width])
        token_ids = tf.where(is_cls, self.cls_id, self.pad_id)
        real = is_cls
        segment_ids = tf.zeros_like(token_ids)
        starts_out = ends_out = tf.zeros_like(token_ids)
        first = tf.ones_like(keep[0])[:, tf.newaxis]  # output column of the part's first token
        for segment, ((ids, starts, ends), count) in enumerate(zip(seqs, keep)):
            count = count[:, tf.newaxis]
            inside = (col >= first) & (col < first + count)
            is_sep = col == first + count
            # Index into the flat values; the appended dummy keeps gathers valid when empty.
            index = tf.cast(ids.row_starts(), tf.int32)[:, tf.newaxis] + col - first
            index = tf.clip_by_value(index, 0, tf.size(ids.flat_values))
            ids, starts, ends = (tf.gather(tf.concat([t.flat_values, [0]], 0), index)
                                 for t in (ids, starts, ends))
            token_ids = tf.where(inside, ids, tf.where(is_sep, self.sep_id, token_ids))
            segment_ids = tf.where(inside | is_sep, segment, segment_ids)
            starts_out = tf.where(inside, starts, starts_out)
            ends_out = tf.where(inside, ends, ends_out)
            real |= inside | is_sep
            first += count + 1

        out = {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": tf.cast(real, tf.int32),
        }
        if return_offsets:
            out["offsets"] = tf.stack([starts_out, ends_out], axis=-1)
        return out

    @staticmethod
    def _truncated_lengths(lengths, budget):
        """Tokens kept per sequence, as the crate's TruncationStrategy::LongestFirst does."""
        if len(lengths) == 1:
            return [tf.minimum(lengths[0], budget)]
        la, lb = lengths
        shorter = tf.minimum(la, lb)
        a_is_shorter = la <= lb  # the crate swaps only when len(A) > len(B)
        half, other_half = budget // 2, budget - budget // 2
        # If the shorter one fits in half the budget it is kept whole and the longer one is cut.
        fits = 2 * shorter <= budget
        keep_short = tf.where(fits, shorter, half)
        keep_long = tf.where(fits, budget - shorter, other_half)
        keep_a = tf.where(a_is_shorter, keep_short, keep_long)
        keep_b = tf.where(a_is_shorter, keep_long, keep_short)
        return [tf.minimum(la, keep_a), tf.minimum(lb, keep_b)]

    @tf.autograph.experimental.do_not_convert
    def detokenize(self, ids):
        """Ids [B, T] (dense, ragged or lists) -> tf.string [B], like tokenizers'
        decode(ids, skip_special_tokens=True) with the WordPiece decoder (cleanup on).
        Special tokens (incl. padding and [UNK]) and out-of-range ids are skipped."""
        if isinstance(ids, (list, tuple)):
            ids = tf.ragged.constant(ids, dtype=tf.int64) if ids and isinstance(
                ids[0], (list, tuple)) else tf.constant(ids, dtype=tf.int64)
        elif not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise TypeError(f"`ids` must be integer token ids, got dtype {ids.dtype.name}")
        single = ids.shape.rank == 1
        if single:
            ids = ids[tf.newaxis]
        if ids.shape.rank != 2:
            raise ValueError(f"`ids` must have shape [B, T] or [T], got rank {ids.shape.rank}")
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        ids = tf.cast(ids, tf.int32)

        flat = ids.flat_values
        valid = (flat >= 0) & (flat < self.vocab_size)
        safe = tf.where(valid, flat, 0)
        keep = valid & ~tf.gather(self._is_special, safe)
        kept = tf.ragged.boolean_mask(ids, ids.with_flat_values(keep))
        is_first = tf.ragged.range(kept.row_lengths()).flat_values == 0
        text = tf.where(is_first, tf.gather(self._decode_first, kept.flat_values),
                        tf.gather(self._decode_next, kept.flat_values))
        out = tf.strings.reduce_join(kept.with_flat_values(text), axis=1)
        return out[0] if single else out
