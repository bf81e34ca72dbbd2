"""tf.data pipeline for sentence-embedding training with in-batch negatives.

Each batch holds B (anchor, positive) pairs as ONE model batch of 2B rows: rows 0..B-1 are the
anchors, rows B..2B-1 their positives, padded together to the longest of the 2B texts (rounded up
to a multiple of 8, never past `max_length`). The label of anchor i is i, the row of its positive
among the B positives, so a plain Keras loss over the [2B, H] embeddings
(`MultipleNegativesRankingLoss`) trains the encoder with `model.fit`:

    data = pair_dataset(tokenizer, anchors, positives, batch_size=32, max_length=128, shuffle=True)
    model.compile(optimizer="adam", loss=MultipleNegativesRankingLoss())
    model.fit(data, epochs=1)
"""

import tensorflow as tf

from rubert_tf.data.batching import FEATURE_KEYS


def _pad_width(features, max_length, multiple):
    width = tf.shape(features["token_ids"])[1]
    target = (width + multiple - 1) // multiple * multiple
    target = tf.maximum(width, tf.minimum(target, max_length))
    return {key: tf.pad(value, [[0, 0], [0, target - width]]) for key, value in features.items()}


def pair_batches(tokenizer, max_length=128, multiple=8):
    """A function (anchors [B], positives [B]) -> (features [2B, T], labels [B]) for `dataset.map`."""

    def tokenize(anchors, positives):
        texts = tf.concat([anchors, positives], axis=0)
        features = tokenizer(texts, max_length=max_length, padding="longest")
        features = _pad_width({key: features[key] for key in FEATURE_KEYS}, max_length, multiple)
        labels = tf.range(tf.shape(anchors)[0], dtype=tf.int32)
        return features, labels

    return tokenize


def pair_dataset(tokenizer, anchors, positives, batch_size, max_length=128, shuffle=False, seed=None,
                 multiple=8):
    """(features, labels) batches of (anchor, positive) pairs for in-batch-negatives training.

    Shuffled every epoch when `shuffle` (deterministic for a seed), so the negatives of a pair change
    from epoch to epoch. The dataset's cardinality is known (ceil(N / batch_size)).
    """
    anchors, positives = list(anchors), list(positives)
    if len(anchors) != len(positives):
        raise ValueError(f"{len(anchors)} anchors but {len(positives)} positives")
    if not anchors:
        raise ValueError("no (anchor, positive) pairs to train on")
    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.constant(anchors, tf.string), tf.constant(positives, tf.string)))
    if shuffle:
        dataset = dataset.shuffle(len(anchors), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(pair_batches(tokenizer, max_length, multiple), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def text_dataset(tokenizer, texts, batch_size, max_length=128, multiple=8):
    """Feature batches of single texts (for `model.predict`), in order."""
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string)).batch(batch_size)

    def tokenize(batch):
        features = tokenizer(batch, max_length=max_length, padding="longest")
        return _pad_width({key: features[key] for key in FEATURE_KEYS}, max_length, multiple)

    return dataset.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
