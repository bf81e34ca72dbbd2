"""tf.data pipeline for BERT pretraining: packed TFRecord shards -> dynamically masked MLM batches.

    masker = MaskedLMMasker(tokenizer, whole_word=True, max_predictions=20)
    dataset = pretraining_dataset("corpus/", masker, batch_size=32, max_length=128, seed=0)
    model.fit(dataset, steps_per_epoch=1000)   # x: token_ids, segment_ids, padding_mask, mask_positions

Shards are written by `rubert_tf.pretraining.prepare_corpus` (packed to a fixed `max_length` at
preparation time); each record is a `tf.train.Example` with two int64 lists of equal length:

    token_ids    [CLS] ... [SEP] (documents mode: documents joined by [SEP]; segment-pairs mode:
                 [CLS] A [SEP] B [SEP], A and B consecutive spans of one document)
    segment_ids  0 for [CLS], A and its [SEP]; 1 for B and its [SEP]

Everything random happens in the graph, per batch, from stateless seeds (a fixed `seed` gives the
same masks on every run; evaluation data is masked identically on every pass):

- masking (BERT): `mask_rate` (15%) of the maskable tokens -- real tokens other than the special
  tokens [PAD] [UNK] [CLS] [SEP] [MASK] -- are selected, in expectation exactly; of those 80% become
  [MASK], 10% a random non-special token, 10% stay. With `whole_word`, words (a piece and the
  "##" pieces after it) are selected whole, in random order, until the budget is reached.
- sentence order (ALBERT's SOP): for segment-pairs records, A and B are swapped with probability
  1/2; the label is 1 when swapped. Records without a B segment get the ignored label -100.
  (Next-sentence prediction is not implemented: its random "B" needs a second document stream,
  and RoBERTa/ALBERT found it unhelpful.)

Labels are -100 where nothing is predicted (the loss uses `ignore_class=-100`).
"""

import json
import os

import numpy as np
import tensorflow as tf

from rubert_tf.config import IGNORE_LABEL  # noqa: F401  (re-exported: the masker's filler label)
from rubert_tf.tokenizer import SPECIAL_TOKENS, SUFFIX

CORPUS_INFO = "corpus.json"
RECORD_FORMAT = "rubert_tf.pretraining/1"
FEATURE_KEYS = ("token_ids", "segment_ids", "padding_mask")


# ---------------------------------------------------------------- records


def serialize_record(token_ids, segment_ids):
    """One packed sequence -> serialized tf.train.Example (see the module docstring)."""
    feature = {
        "token_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=token_ids)),
        "segment_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=segment_ids)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_records(serialized, max_length):
    """Serialized records [B] -> {"token_ids", "segment_ids", "padding_mask"} int32 [B, max_length]."""
    spec = {"token_ids": tf.io.RaggedFeature(tf.int64), "segment_ids": tf.io.RaggedFeature(tf.int64)}
    parsed = tf.io.parse_example(serialized, spec)
    ids = tf.cast(parsed["token_ids"], tf.int32)
    tf.debugging.assert_less_equal(
        tf.cast(tf.reduce_max(tf.concat([[0], ids.row_lengths()], 0)), tf.int32), tf.constant(max_length),
        message=f"a shard record is longer than max_length={max_length}: the shards were packed for longer "
                "sequences; pass a larger max_length or re-run prepare-corpus with --max-length")
    shape = [None, max_length]
    return {
        "token_ids": ids.to_tensor(0, shape=shape),
        "segment_ids": tf.cast(parsed["segment_ids"], tf.int32).to_tensor(0, shape=shape),
        "padding_mask": tf.ones_like(ids).to_tensor(0, shape=shape),
    }


def read_corpus_info(directory):
    """The corpus.json prepare_corpus wrote in `directory`, or None if there is none."""
    path = os.path.join(directory, CORPUS_INFO) if "://" not in directory else directory.rstrip("/") + "/" + CORPUS_INFO
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            info = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
    if info.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path}: format {info.get('format')!r} is not {RECORD_FORMAT!r}")
    return info


def _join(directory, name):
    return directory.rstrip("/") + "/" + name if "://" in directory else os.path.join(directory, name)


def resolve_shards(sources):
    """Shard paths from corpus directories (their corpus.json), directories of *.tfrecord, files or globs.

    Returns (sorted unique paths, [corpus.json dicts found])."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths, infos = [], []
    for source in sources:
        source = os.fspath(source)
        if tf.io.gfile.isdir(source):
            info = read_corpus_info(source)
            if info is not None:
                infos.append(info)
                found = [_join(source, name) for name in info["shards"]]
                missing = [p for p in found if not tf.io.gfile.exists(p)]
                if missing:
                    raise FileNotFoundError(
                        f"{_join(source, CORPUS_INFO)} lists shards that are missing: {missing[:5]}")
            else:
                found = tf.io.gfile.glob(_join(source, "*.tfrecord"))
        else:
            found = tf.io.gfile.glob(source)
        if not found:
            raise FileNotFoundError(f"no TFRecord shards found for {source!r} (expected a prepare-corpus directory, "
                                    "a shard file or a glob)")
        paths.extend(found)
    return sorted(set(paths)), infos


# ---------------------------------------------------------------- masking


def _uniform(seed, shape):
    return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)


class MaskedLMMasker:
    """Dynamic BERT masking of padded batches, in the graph (see the module docstring).

    Args:
      vocabulary: a RuBertTokenizer or its list of tokens.
      mask_rate: share of the maskable tokens to predict (expected value; exact on average).
      mask_token_rate, random_token_rate: of the selected tokens, the shares replaced by [MASK] and by
        a random token; the rest stay unchanged.
      whole_word: select words (a piece plus its "##" continuations) whole.
      max_predictions: None -> labels [B, T] (-100 where nothing is predicted). An int P -> the model
        input `mask_positions` [B, P] and labels [B, P] (at most P predictions per sequence; P >=
        ceil(mask_rate * T) never drops any).
    """

    def __init__(self, vocabulary, mask_rate=0.15, mask_token_rate=0.8, random_token_rate=0.1, whole_word=False,
                 max_predictions=None):
        tokens = list(getattr(vocabulary, "vocabulary", vocabulary))
        if not 0.0 < mask_rate < 1.0:
            raise ValueError(f"mask_rate must be in (0, 1), got {mask_rate}")
        if mask_token_rate < 0 or random_token_rate < 0 or mask_token_rate + random_token_rate > 1:
            raise ValueError("mask_token_rate and random_token_rate must be >= 0 with a sum <= 1, got "
                             f"{mask_token_rate} and {random_token_rate}")
        if max_predictions is not None and (isinstance(max_predictions, bool) or int(max_predictions) < 1):
            raise ValueError(f"max_predictions must be a positive int or None, got {max_predictions!r}")
        ids = {token: i for i, token in enumerate(tokens)}
        missing = [t for t in SPECIAL_TOKENS if t not in ids]
        if missing:
            raise ValueError(f"the vocabulary lacks the special token(s) {missing}")
        self.vocab_size = len(tokens)
        self.mask_rate = float(mask_rate)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.whole_word = bool(whole_word)
        self.max_predictions = None if max_predictions is None else int(max_predictions)
        self.mask_id = ids["[MASK]"]
        special = np.zeros(len(tokens), dtype=bool)
        special[[ids[t] for t in SPECIAL_TOKENS]] = True
        self._is_special = tf.constant(special)
        self._is_continuation = tf.constant(np.array([t.startswith(SUFFIX) for t in tokens], dtype=bool))
        self._replacements = tf.constant(np.flatnonzero(~special).astype(np.int32))

    def select(self, token_ids, padding_mask, seed):
        """Bool [B, T]: the positions to predict."""
        token_ids = tf.convert_to_tensor(token_ids, tf.int32)
        batch, width = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        seeds = tf.random.experimental.stateless_split(seed, 2)
        maskable = (tf.cast(padding_mask, tf.bool) & ~tf.gather(self._is_special, token_ids))
        # Units of selection: every maskable token, or (whole_word) a maskable piece that is not a
        # "##" continuation of a maskable piece right before it, with its continuations.
        starts = maskable
        if self.whole_word:
            previous = tf.pad(maskable[:, :-1], [[0, 0], [1, 0]])
            starts = maskable & ~(tf.gather(self._is_continuation, token_ids) & previous)
        unit = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1  # unit index of each token (if maskable)
        num_units = tf.reduce_sum(tf.cast(starts, tf.int32), axis=1)
        safe_unit = tf.maximum(unit, 0)
        rows = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], [batch, width])
        segment = tf.where(maskable, rows * width + safe_unit, batch * width)  # last segment: not maskable
        unit_length = tf.reshape(tf.math.unsorted_segment_sum(
            tf.ones_like(segment), segment, batch * width + 1)[:-1], [batch, width])

        # Units in random order; take them while the token count stays within the budget
        # (mask_rate * maskable tokens); the one that crosses it is taken with the probability that
        # makes the expected count exactly the budget.
        draws = _uniform(seeds[0], [2, batch, width])
        valid_unit = tf.range(width)[tf.newaxis, :] < num_units[:, tf.newaxis]
        order = tf.argsort(tf.where(valid_unit, draws[0], 2.0), axis=1, stable=True)
        sorted_length = tf.cast(tf.gather(unit_length, order, batch_dims=1), tf.float32)
        total = tf.cumsum(sorted_length, axis=1)
        before = total - sorted_length
        budget = self.mask_rate * tf.reduce_sum(tf.cast(maskable, tf.float32), axis=1, keepdims=True)
        crossing = (before < budget) & (total > budget)
        take = (total <= budget) | (crossing & (draws[1] * sorted_length < budget - before))
        take &= sorted_length > 0
        if self.max_predictions is not None:
            take &= total <= self.max_predictions
        chosen_unit = tf.gather(take, tf.argsort(order, axis=1), batch_dims=1)  # back to unit order
        return maskable & tf.gather(chosen_unit, safe_unit, batch_dims=1)

    def __call__(self, features, seed, labels=None):
        """Masks a batch: ({"token_ids", "segment_ids", "padding_mask"} [B, T], seed [2]) ->
        (features with masked token_ids (+ "mask_positions" [B, P]), {"logits": labels} + `labels`)."""
        token_ids = tf.cast(features["token_ids"], tf.int32)
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
        selected = self.select(token_ids, features["padding_mask"], seeds[0])
        shape = tf.shape(token_ids)
        action = _uniform(seeds[1], shape)
        random_ids = tf.gather(self._replacements, tf.random.stateless_uniform(
            shape, seeds[2], minval=0, maxval=int(self._replacements.shape[0]), dtype=tf.int32))
        to_mask = selected & (action < self.mask_token_rate)
        to_random = selected & (action >= self.mask_token_rate) & (
            action < self.mask_token_rate + self.random_token_rate)
        masked = tf.where(to_mask, self.mask_id, tf.where(to_random, random_ids, token_ids))
        out = dict(features)
        out["token_ids"] = masked
        if self.max_predictions is None:
            target = tf.where(selected, token_ids, IGNORE_LABEL)
        else:
            positions, target = self._gather_selected(token_ids, selected)
            out["mask_positions"] = positions
        all_labels = {"logits": target}
        all_labels.update(labels or {})
        return out, all_labels

    def _gather_selected(self, token_ids, selected):
        """Positions [B, P] of the selected tokens (in order; 0 as filler) and their labels (-100 filler)."""
        width = tf.shape(token_ids)[1]
        positions = tf.range(width)[tf.newaxis, :]
        key = tf.where(selected, positions, positions + width)  # selected first, in order
        count = tf.minimum(width, self.max_predictions)
        first = tf.sort(key, axis=1)[:, :count]
        first = tf.pad(first, [[0, 0], [0, self.max_predictions - count]], constant_values=2 * width)
        valid = first < width
        positions = tf.where(valid, first, 0)
        target = tf.where(valid, tf.gather(token_ids, positions, batch_dims=1), IGNORE_LABEL)
        return positions, target


# ---------------------------------------------------------------- sentence order


def sentence_order_swap(features, seed):
    """ALBERT's SOP on [CLS] A [SEP] B [SEP] rows: swap A and B with probability 1/2.

    Returns (features, labels [B]: 1 swapped, 0 in order, -100 for rows without a B segment)."""
    ids, segments = features["token_ids"], features["segment_ids"]
    real = tf.cast(features["padding_mask"], tf.bool)
    width = tf.shape(ids)[1]
    length_b = tf.reduce_sum(tf.cast(real & (segments == 1), tf.int32), axis=1, keepdims=True)  # B + [SEP]
    length = tf.reduce_sum(tf.cast(real, tf.int32), axis=1, keepdims=True)
    length_a = length - 1 - length_b  # A + [SEP]
    has_pair = length_b > 1
    swap = has_pair & (tf.random.stateless_uniform(tf.shape(length_b), seed) < 0.5)
    t = tf.range(width)[tf.newaxis, :]
    in_b = (t >= 1) & (t < 1 + length_b)
    in_a = (t >= 1 + length_b) & (t < length)
    source = tf.where(in_b, t + length_a, tf.where(in_a, t - length_b, t))
    source = tf.where(swap, source, t)
    out = dict(features)
    out["token_ids"] = tf.gather(ids, source, batch_dims=1)
    out["segment_ids"] = tf.where(swap, tf.cast(in_a, segments.dtype), segments)
    label = tf.where(has_pair, tf.cast(swap, tf.int32), IGNORE_LABEL)[:, 0]
    return out, label


# ---------------------------------------------------------------- dataset


def pretraining_dataset(sources, masker, batch_size, max_length, sentence_order=False, shuffle=True, seed=None,
                        repeat=True, shuffle_buffer=10_000, cycle_length=8, drop_remainder=True):
    """Packed shards -> batches (features, labels) for `model.fit`.

    sources: prepare-corpus directories, shard files or globs (local or any tf.io.gfile URL).
    Shards are read interleaved (`cycle_length` at a time, files and records shuffled when `shuffle`),
    batched, then masked (and SOP-swapped with `sentence_order`) per batch in the graph. With a fixed
    `seed` the stream, and so every mask, is reproducible; `repeat=False, shuffle=False` makes a
    finite, identically masked evaluation set.
    """
    files, _ = resolve_shards(sources)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.interleave(
        tf.data.TFRecordDataset, cycle_length=max(1, min(cycle_length, len(files))), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(lambda serialized: parse_records(serialized, max_length),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
    dataset = tf.data.Dataset.zip((dataset, seeds))

    def mask(features, seed_pair):
        order_seed, mask_seed = tf.unstack(tf.random.experimental.stateless_split(seed_pair, 2))
        labels = None
        if sentence_order:
            features, order = sentence_order_swap(features, order_seed)
            labels = {"sop_logits": order}
        return masker(features, mask_seed, labels)

    dataset = dataset.map(mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
