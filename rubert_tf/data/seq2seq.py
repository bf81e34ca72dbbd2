"""Parallel data for sequence-to-sequence models (translation, summarization): readers and tf.data.

Sources of (source, target) pairs, all read by `read_seq2seq`:
  - two line-aligned text files, source first: `train.ru train.en` (NTREX, Moses/fairseq style);
    a prefix with languages (`train` + source_lang="ru", target_lang="en") names the same pair;
  - a CSV/TSV/JSONL table with a source and a target column (default "source" and "target");
  - `tfds:NAME[/CONFIG][:SPLIT]`, e.g. `tfds:ted_hrlr_translate/ru_to_en`: the columns default to
    the languages of a `X_to_Y` config (here "ru" and "en").
Every problem names the file and the line: files of different lengths, empty lines, empty cells.

The pipeline tokenizes inside tf.data with `RuBertTokenizer` and yields the interface of
`RuBertSeq2Seq` (bert2bert convention: decoder start = [CLS], end of sequence = [SEP], pad = [PAD]):

    features = {"encoder_token_ids":    [CLS] x1 .. xm [SEP]    int32 [B, T_enc]
                "encoder_padding_mask": 1 on tokens, 0 on pad   int32 [B, T_enc]
                "decoder_token_ids":    [CLS] y1 .. yn          int32 [B, T_dec]
                "decoder_padding_mask": 1 on tokens, 0 on pad   int32 [B, T_dec]}
    labels   =                          y1 .. yn [SEP]          int32 [B, T_dec], -100 on padding

T_enc <= max_source_length and T_dec <= max_target_length (a truncated target keeps its final
[SEP], so the model still learns to stop). Each batch is padded to its own longest rows, each of
T_enc and T_dec rounded up to a multiple of 8, by `batching.batch_examples`.

    examples = read_seq2seq(["train.ru", "train.en"])
    dataset = seq2seq_dataset(tokenizer, [e["source"] for e in examples], [e["target"] for e in examples],
                              batch_size=16, max_source_length=128, max_target_length=128, shuffle=True, seed=0)
"""

import os
import re

import tensorflow as tf

from rubert_tf.data.batching import batch_examples
from rubert_tf.data.classification import default_bucket_boundaries
from rubert_tf.data.readers import DataError, _read_lines, parse_tfds_spec, read_table

IGNORE_INDEX = -100
TOKENIZE_CHUNK = 256
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
FEATURE_NAMES = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")
_MAX_LISTED = 5  # problems listed in one error message


# ---- readers ------------------------------------------------------------------------------------

def read_parallel_files(source_path, target_path):
    """Pairs of two line-aligned text files as [{"source", "target", "_line", "_source"}].

    Files of different lengths fail at the first line that has no partner; empty (or blank) lines
    fail with every file:line listed (up to five), since a blank on one side shifts no alignment
    but teaches the model to translate something into nothing.
    """
    sources, targets = _read_lines(source_path), _read_lines(target_path)
    if len(sources) != len(targets):
        longer, shorter = (source_path, target_path) if len(sources) > len(targets) else (target_path, source_path)
        raise DataError(
            f"{longer}:{min(len(sources), len(targets)) + 1}: no matching line in {shorter}; parallel files must "
            f"have one line per pair ({source_path} has {len(sources)} lines, {target_path} has {len(targets)})")
    if not sources:
        raise DataError(f"{source_path}: empty file")
    empty = [f"{path}:{number}" for number, (source, target) in enumerate(zip(sources, targets), start=1)
             for path, text in ((source_path, source), (target_path, target)) if not text.strip()]
    if empty:
        listed = ", ".join(empty[:_MAX_LISTED])
        if len(empty) > _MAX_LISTED:
            listed += f" and {len(empty) - _MAX_LISTED} more"
        raise DataError(f"{empty[0]}: empty line; every line of a parallel file must hold text "
                        f"({len(empty)} empty: {listed})")
    return [{"source": source, "target": target, "_line": number, "_source": source_path}
            for number, (source, target) in enumerate(zip(sources, targets), start=1)]


def tfds_languages(spec):
    """("ru", "en") for `tfds:ted_hrlr_translate/ru_to_en[:SPLIT]` (a `X_to_Y` config), else None."""
    name, _ = parse_tfds_spec(spec)
    match = re.fullmatch(r"[^/]+/([A-Za-z_-]+?)_to_([A-Za-z_-]+)", name)
    return (match.group(1), match.group(2)) if match else None


def read_parallel_table(path, source_column=None, target_column=None):
    """Pairs from a CSV/TSV/JSONL table or `tfds:NAME` (see `read_table`); columns default to
    "source"/"target", or for a tfds `X_to_Y` config to X/Y. Empty cells fail with file:line."""
    if path.startswith("tfds:"):
        languages = tfds_languages(path)
        if languages is None and (source_column is None or target_column is None):
            raise ValueError(f"{path}: name the source and target features (--source-column, --target-column); "
                             "only a NAME/X_to_Y config tells them")
        source_column = source_column or languages[0]
        target_column = target_column or languages[1]
        name, split = parse_tfds_spec(path)
        where = f"tfds:{name}:{split}"
    else:
        source_column = source_column or "source"
        target_column = target_column or "target"
        where = path
    rows = read_table(path, {"source": source_column, "target": target_column})
    if not rows:
        raise DataError(f"{where}: no examples (only a header or blank lines)")
    for row in rows:
        for field, column in (("source", source_column), ("target", target_column)):
            value = row[field]
            if not isinstance(value, str):
                raise DataError(f"{where}:{row['_line']}: column {column!r} must be text, got {value!r:.80}")
            if not value.strip():
                raise DataError(f"{where}:{row['_line']}: empty {field} (column {column!r})")
        row["_source"] = where
    return rows


def read_seq2seq(paths, source_column=None, target_column=None, source_lang=None, target_lang=None):
    """(source, target) examples from any source this module reads (see its docstring).

    `paths`: [source_file, target_file]; or one table / `tfds:` spec; or one prefix with
    `source_lang` and `target_lang` (`data/train` -> data/train.ru + data/train.en).
    """
    if isinstance(paths, (list, tuple)):
        if len(paths) == 1:
            paths = paths[0]
        elif len(paths) == 2:
            return read_parallel_files(*paths)
        else:
            raise ValueError(f"expected two aligned files (source, then target) or one table, got {len(paths)} "
                             f"paths: {list(paths)}")
    if paths.startswith("tfds:") or paths.lower().endswith(TABLE_SUFFIXES):
        return read_parallel_table(paths, source_column, target_column)
    if source_lang and target_lang:
        return read_parallel_files(f"{paths}.{source_lang}", f"{paths}.{target_lang}")
    if source_lang or target_lang:
        raise ValueError(f"{paths}: a prefix needs both --source-lang and --target-lang "
                         f"(got {source_lang or target_lang!r} alone)")
    if not os.path.exists(paths):
        raise FileNotFoundError(f"{paths}: no such file")
    raise ValueError(f"{paths}: one plain-text file holds one side only; pass two line-aligned files (source, then "
                     "target), a prefix with --source-lang/--target-lang, a CSV/TSV/JSONL with source and target "
                     "columns, or tfds:NAME")


# ---- tf.data pipeline -------------------------------------------------------------------------

def tokenize_pairs(dataset, tokenizer, max_source_length, max_target_length, chunk_size=TOKENIZE_CHUNK):
    """({"source"[, "target"]}) string examples -> (unpadded features [L], labels [L]) examples.

    Tokenized in chunks (one tokenizer call per `chunk_size` rows) and cut back per example, as
    `classification.tokenize_examples` does. Without targets the decoder features and the labels
    are [CLS] / [-100] placeholders (a dataset for the encoder side only).
    """

    def tokenize(columns):
        source = tokenizer(columns["source"], max_length=max_source_length, padding="longest")
        out = {"encoder_token_ids": source["token_ids"], "encoder_padding_mask": source["padding_mask"]}
        if "target" in columns:
            # [CLS] y1..yn [SEP] of at most max_target_length + 1 tokens, then shifted into
            # decoder input [CLS] y1..yn and labels y1..yn [SEP] of at most max_target_length.
            target = tokenizer(columns["target"], max_length=max_target_length + 1, padding="longest")
            out["target_ids"], out["target_mask"] = target["token_ids"], target["padding_mask"]
        return out

    def cut(columns):
        length = tf.reduce_sum(columns["encoder_padding_mask"])
        features = {"encoder_token_ids": columns["encoder_token_ids"][:length],
                    "encoder_padding_mask": columns["encoder_padding_mask"][:length]}
        if "target_ids" in columns:
            length = tf.reduce_sum(columns["target_mask"])
            ids = columns["target_ids"][:length]
            decoder_ids, labels = ids[:-1], ids[1:]
        else:
            decoder_ids = tf.constant([tokenizer.cls_id], tf.int32)
            labels = tf.constant([IGNORE_INDEX], tf.int32)
        features["decoder_token_ids"] = decoder_ids
        features["decoder_padding_mask"] = tf.ones_like(decoder_ids)
        return features, labels

    count = int(dataset.cardinality())
    dataset = dataset.batch(chunk_size).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.unbatch().map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.apply(tf.data.experimental.assert_cardinality(count)) if count >= 0 else dataset


def _pair_length(features, labels):
    return tf.maximum(tf.shape(features["encoder_token_ids"])[0], tf.shape(features["decoder_token_ids"])[0])


def seq2seq_dataset(tokenizer, sources, targets=None, batch_size=32, max_source_length=128, max_target_length=128,
                    shuffle=False, seed=None, cache=True, bucket_boundaries=None, drop_remainder=False):
    """Batches of (features, labels) for `model.fit`, or of features alone when `targets` is None.

    `bucket_boundaries` ("auto" = one bucket per power-of-two width up to the longer max length)
    groups pairs by the longer of their source and target; `shuffle` reshuffles every epoch, the
    same `seed` giving the same order; `cache` keeps the tokenized examples after the first epoch.
    """
    sources = list(sources)
    if not sources:
        raise ValueError("no examples to make a dataset of")
    if max_source_length < 2:
        raise ValueError(f"max_source_length={max_source_length} is too small: [CLS] and [SEP] need 2 tokens")
    if max_target_length < 1:
        raise ValueError(f"max_target_length={max_target_length} is too small: the end-of-sequence [SEP] needs 1")
    columns = {"source": tf.constant(sources, dtype=tf.string)}
    if targets is not None:
        targets = list(targets)
        if len(targets) != len(sources):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        columns["target"] = tf.constant(targets, dtype=tf.string)
    dataset = tokenize_pairs(tf.data.Dataset.from_tensor_slices(columns), tokenizer, max_source_length,
                             max_target_length)
    if isinstance(bucket_boundaries, str):
        if bucket_boundaries != "auto":
            raise ValueError(f"bucket_boundaries must be 'auto', a list of lengths or None, got {bucket_boundaries!r}")
        bucket_boundaries = default_bucket_boundaries(max(max_source_length, max_target_length))
    dataset = batch_examples(dataset, batch_size, shuffle=shuffle, seed=seed, cache=cache,
                             bucket_boundaries=bucket_boundaries, label_pad_value=IGNORE_INDEX,
                             drop_remainder=drop_remainder, length_fn=_pair_length)
    if targets is None:
        dataset = dataset.map(lambda features, labels: {key: features[key] for key in FEATURE_NAMES[:2]})
    return dataset
