"""Learn a cased WordPiece vocabulary with RuBERT's special-token layout.

Words are counted with exactly the splitting RuBertTokenizer uses (BertNormalizer +
BertPreTokenizer, cased), then a WordPiece vocabulary is grown the way HF's WordPieceTrainer
does it: BPE merges on "##"-prefixed continuation symbols, most frequent pair first.
"""

import bisect
import collections
import heapq
import os

from rubert_tf import tokenizer as _tok

SPECIAL_TOKENS = _tok.SPECIAL_TOKENS  # ids 0..4: [PAD] [UNK] [CLS] [SEP] [MASK]
PREFIX = _tok.SUFFIX


def _is_word_char(ch):
    """True if `ch` can be part of a longer word (so it also needs a "##ch" token)."""
    i = bisect.bisect_right(_tok._CLASS_STARTS, ord(ch)) - 1
    return _tok._CLASS_VALUES[i] == _tok._NORMAL


def expand_files(files):
    """Sorted files of paths, globs and directories (any tf.io.gfile URL, e.g. gs://bucket/*.txt).

    A path that matches nothing is a FileNotFoundError naming it."""
    import tensorflow as tf

    if isinstance(files, (str, os.PathLike)):
        files = [files]
    found = []
    for pattern in files:
        pattern = os.fspath(pattern)
        if tf.io.gfile.isdir(pattern):
            matched = [p for p in tf.io.gfile.glob(pattern.rstrip("/") + "/*") if not tf.io.gfile.isdir(p)]
        elif any(ch in pattern for ch in "*?["):
            matched = [p for p in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(p)]
        else:
            matched = [pattern] if tf.io.gfile.exists(pattern) else []
        if not matched:
            raise FileNotFoundError(f"training file not found: {pattern}" if not any(ch in pattern for ch in "*?[")
                                    else f"no training file matches {pattern!r}")
        found.extend(sorted(matched))
    return list(dict.fromkeys(found))


def count_words(files, batch_size=4096):
    """Counter of words in UTF-8 text files (one paragraph a line), split as the tokenizer does.

    `files`: paths, globs or directories, local or any tf.io.gfile URL (see `expand_files`)."""
    import tensorflow as tf

    counts = collections.Counter()
    for path in expand_files(files):
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 at byte offset {error.start}") from None
        lines = [line for line in text.split("\n") if line.strip()]
        for i in range(0, len(lines), batch_size):
            words = _tok.pretokenize(lines[i:i + batch_size]).flat_values.numpy().tolist()
            counts.update(words)
    return collections.Counter({w.decode("utf-8"): c for w, c in counts.items()})


def learn_wordpiece(word_counts, vocab_size, min_frequency=2,
                    max_word_chars=_tok.MAX_INPUT_CHARS_PER_WORD):
    """WordPiece vocabulary from {word: count}: specials, the full alphabet, then merges."""
    # Alphabet: every character seen, most frequent first; word characters also as "##c" so
    # that any word made of seen characters can be tokenized without [UNK].
    char_counts = collections.Counter()
    for word, count in word_counts.items():
        for ch in word:
            char_counts[ch] += count
    vocab = list(SPECIAL_TOKENS)
    for ch, _ in sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        vocab.append(ch)
        if _is_word_char(ch):
            vocab.append(PREFIX + ch)
    if len(vocab) > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is too small: the special tokens and the "
                         f"corpus alphabet alone need {len(vocab)} entries")
    ids = {tok: i for i, tok in enumerate(vocab)}

    def token_id(token):
        if token not in ids:
            ids[token] = len(vocab)
            vocab.append(token)
        return ids[token]

    # Words as symbol-id lists: first char plain, the rest "##"-prefixed.
    words, counts = [], []
    for word, count in word_counts.items():
        if 1 < len(word) <= max_word_chars:
            words.append([ids[word[0]]] + [ids[PREFIX + ch] for ch in word[1:]])
            counts.append(count)

    pair_count = collections.defaultdict(int)
    pair_words = collections.defaultdict(set)
    for wi, syms in enumerate(words):
        for pair in zip(syms, syms[1:]):
            pair_count[pair] += counts[wi]
            pair_words[pair].add(wi)

    def merged_token(pair):
        return vocab[pair[0]] + vocab[pair[1]][len(PREFIX):]

    # Max-heap on count (ties broken by the merged string, for determinism); stale entries
    # are skipped when popped.
    heap = [(-c, merged_token(p), p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg_count, new_token, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg_count:
            continue
        if -neg_count < min_frequency:
            break
        new_id = token_id(new_token)
        a, b = pair
        touched = set()
        for wi in pair_words.pop(pair):
            syms, count = words[wi], counts[wi]
            merged, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(syms[i])
                    i += 1
            if len(merged) == len(syms):
                continue  # stale index entry: this word no longer has the pair
            for p in zip(syms, syms[1:]):
                pair_count[p] -= count
                touched.add(p)
            for p in zip(merged, merged[1:]):
                pair_count[p] += count
                pair_words[p].add(wi)
                touched.add(p)
            words[wi] = merged
        pair_count.pop(pair, None)
        for p in touched:
            c = pair_count.get(p, 0)
            if c > 0 and p != pair:
                heapq.heappush(heap, (-c, merged_token(p), p))
            elif c <= 0:
                pair_count.pop(p, None)
    return vocab


def train_vocab(files, vocab_size, output_path=None, min_frequency=2, batch_size=4096):
    """Learns a cased WordPiece vocabulary from UTF-8 text files (one paragraph per line).

    Args:
      files: path, glob or directory, or a list of them (any tf.io.gfile URL).
      vocab_size: maximum vocabulary size (special tokens and alphabet included).
      output_path: if given, the vocabulary is written there as vocab.txt (one token a line).
      min_frequency: pairs seen fewer times than this are never merged.
      batch_size: lines pre-tokenized per TF call.

    Returns:
      list of tokens; ids 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK].
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"`vocab_size` must be an int, got {type(vocab_size).__name__}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"`vocab_size` must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    word_counts = count_words(files, batch_size=batch_size)
    if not word_counts:
        raise ValueError(f"no words found in the training files {files!r}")
    vocab = learn_wordpiece(word_counts, vocab_size, min_frequency=min_frequency)
    if output_path is not None:
        output_path = os.fspath(output_path)
        if os.path.dirname(output_path):
            os.makedirs(os.path.dirname(output_path), exist_ok=True)
        with open(output_path, "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in vocab))
    return vocab
