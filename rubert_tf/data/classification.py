"""tf.data pipeline for sequence classification: raw (text, text pair, label) examples ->
in-graph tokenization into unpadded per-example features -> `batch_examples` (cache, shuffle,
length bucketing, padding to the batch's longest row rounded up to a multiple of 8).

    dataset = classification_dataset(tokenizer, ["Отличный фильм", "Скука"], labels=[1, 0],
                                      batch_size=32, max_length=128, shuffle=True, seed=0)
    model.fit(dataset)

Labels are class ids (int32, shape []) for single-label models and multi-hot vectors (float32,
shape [num_labels]) for multi-label ones; `encode_class_labels` turns label names into either and
names the file and line of a label the model does not know.
"""

import numpy as np
import tensorflow as tf

from rubert_tf.data.batching import batch_examples, unbatch_first
from rubert_tf.data.readers import DataError

# Bucket edges for training batches: lengths up to 16, 32, 64, ... tokens share a batch (the +1
# because `bucket_by_sequence_length` puts a length L in the first bucket with L < boundary).
BUCKET_WIDTHS = (16, 32, 64, 128, 256, 512, 1024)
TOKENIZE_CHUNK = 256


def default_bucket_boundaries(max_length):
    """Boundaries for `batch_examples`: one bucket per width in BUCKET_WIDTHS below `max_length`."""
    return [width + 1 for width in BUCKET_WIDTHS if width < max_length]


def encode_class_labels(examples, label_names, multi_label=False, field="label"):
    """Label names of `examples` (dicts with `field`, `_line` and `_source`) -> numpy labels:
    int32 ids [N] or, with `multi_label`, float32 multi-hot [N, len(label_names)].

    A multi-label example holds a list of names. An unknown name fails with file:line.
    """
    index = {str(name): i for i, name in enumerate(label_names)}
    if multi_label:
        labels = np.zeros((len(examples), len(label_names)), dtype=np.float32)
    else:
        labels = np.zeros((len(examples),), dtype=np.int32)
    for row, example in enumerate(examples):
        values = example[field]
        if multi_label:
            if isinstance(values, str):
                raise TypeError(f"multi-label examples hold lists of label names, got {values!r}")
        else:
            values = [values]
        for value in values:
            name = str(value).strip()
            if name not in index:
                where = f"{example.get('_source', '<examples>')}:{example.get('_line', row + 1)}"
                raise DataError(f"{where}: unknown label {name!r}; known labels: {list(index)}")
            if multi_label:
                labels[row, index[name]] = 1.0
            else:
                labels[row] = index[name]
    return labels


def tokenize_examples(dataset, tokenizer, max_length, chunk_size=TOKENIZE_CHUNK):
    """({"text"[, "text_pair"]}, label) string examples -> (unpadded features [L], label) examples.

    Rows are tokenized in chunks of `chunk_size` (one tokenizer call on [chunk] strings, padded to
    the chunk's longest) and split back into examples with their padding cut: the ids are exactly
    those of tokenizing each example alone, at a third of the cost of one call per example.
    """

    def tokenize(columns, target):
        pair = columns.get("text_pair")
        features = tokenizer(columns["text"], pair, max_length=max_length, padding="longest")
        return features, target

    def cut(features, target):
        return unbatch_first({key: value[tf.newaxis] for key, value in features.items()}), target

    count = int(dataset.cardinality())
    dataset = dataset.batch(chunk_size).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.unbatch().map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # unbatch hides the count; state it so model.fit and the runner know the epoch length.
    return dataset.apply(tf.data.experimental.assert_cardinality(count)) if count >= 0 else dataset


def classification_dataset(tokenizer, texts, text_pairs=None, labels=None, batch_size=32, max_length=128,
                           shuffle=False, seed=None, cache=True, bucket_boundaries=None, drop_remainder=False):
    """Batches of (features, labels), or of features alone when `labels` is None.

    texts / text_pairs: lists of strings (pairs: [CLS] text [SEP] pair [SEP], segment 1 on the pair).
    labels: int ids [N] or multi-hot [N, K] (see `encode_class_labels`).
    Tokenization runs inside the pipeline (tf ops, parallel map, order kept) and is cached with
    `cache`; `shuffle` reshuffles every epoch, the same `seed` giving the same order;
    `bucket_boundaries` ("auto" = `default_bucket_boundaries(max_length)`) groups similar lengths.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no examples to make a dataset of")
    columns = {"text": tf.constant(texts, dtype=tf.string)}
    if text_pairs is not None:
        text_pairs = list(text_pairs)
        if len(text_pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text pairs")
        columns["text_pair"] = tf.constant(text_pairs, dtype=tf.string)
    if labels is not None:
        labels = np.asarray(labels)
        # int32 ids / float32 multi-hot whatever the caller's dtypes, so every pipeline batches alike.
        labels = labels.astype(np.int32 if labels.dtype.kind in "iub" and labels.ndim == 1 else np.float32)
        if len(labels) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    targets = np.zeros(len(texts), np.int32) if labels is None else labels
    dataset = tf.data.Dataset.from_tensor_slices((columns, targets))
    dataset = tokenize_examples(dataset, tokenizer, max_length)
    if isinstance(bucket_boundaries, str):
        if bucket_boundaries != "auto":
            raise ValueError(f"bucket_boundaries must be 'auto', a list of lengths or None, got {bucket_boundaries!r}")
        bucket_boundaries = default_bucket_boundaries(max_length)
    dataset = batch_examples(dataset, batch_size, shuffle=shuffle, seed=seed, cache=cache,
                             bucket_boundaries=bucket_boundaries, drop_remainder=drop_remainder)
    if labels is None:
        dataset = dataset.map(lambda features, target: features)
    return dataset
