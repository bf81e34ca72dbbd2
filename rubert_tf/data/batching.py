"""From tokenized examples to model batches: cache, shuffle, length bucketing, dynamic padding.

Every task pipeline makes a dataset of *unpadded* examples ({"token_ids": [L], "segment_ids": [L],
"padding_mask": [L]} plus its labels) and hands it to `batch_examples`, so all tasks batch alike:
each batch is padded to its own longest row, rounded up to a multiple of 8 (tensor-core and
oneDNN friendly), and never past `max_length`.
"""

import tensorflow as tf

FEATURE_KEYS = ("token_ids", "segment_ids", "padding_mask")


def unbatch_first(features):
    """Drop the batch axis of a tokenizer output for one example and cut its padding."""
    length = tf.reduce_sum(features["padding_mask"][0])
    return {key: value[0, :length] for key, value in features.items()}


def pad_to_multiple(features, labels=None, multiple=8, label_pad_value=-100, sequence_labels=None):
    """Pad the time axis of [B, T] features (and [B, T] labels) up to a multiple of `multiple`.

    Each tensor is padded from its own width, so features of different lengths (a seq2seq model's
    encoder and decoder inputs) each end on a multiple of `multiple`.
    `sequence_labels`: a structure like `labels` of bools, True for labels with a time axis; by
    default every rank-2 label is one. Fixed-width labels (multi-hot [B, num_labels]) stay as they are.
    """

    def pad(tensor, value):
        width = tf.shape(tensor)[1]
        target = (width + multiple - 1) // multiple * multiple
        paddings = [[0, 0], [0, target - width]] + [[0, 0]] * (len(tensor.shape) - 2)
        return tf.pad(tensor, paddings, constant_values=value)

    features = {key: pad(value, 0) if len(value.shape) >= 2 else value for key, value in features.items()}
    if labels is None:
        return features
    if sequence_labels is None:
        sequence_labels = tf.nest.map_structure(lambda label: len(label.shape) == 2, labels)
    labels = tf.nest.map_structure(
        lambda label, is_sequence: pad(label, label_pad_value) if is_sequence else label, labels, sequence_labels)
    return features, labels


def batch_examples(dataset, batch_size, shuffle=False, seed=None, cache=True, bucket_boundaries=None,
                   multiple=8, label_pad_value=-100, drop_remainder=False, length_fn=None):
    """Batch a dataset of (features, labels) examples with unpadded [L] features.

    shuffle: reshuffled every epoch, deterministic for a given seed.
    bucket_boundaries: e.g. (32, 64, 128); examples of similar length share batches (less padding).
    Sequence labels ([L], e.g. NER tags) are padded with `label_pad_value` so the loss ignores them.
    length_fn: (features, labels) -> the length buckets go by (default: that of "token_ids").
    """
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)

    def length(features, labels):
        if length_fn is not None:
            return length_fn(features, labels)
        return tf.shape(features["token_ids"])[0]

    padding_values = None
    spec = dataset.element_spec
    padding_values = (
        {key: tf.constant(0, s.dtype) for key, s in spec[0].items()},
        tf.nest.map_structure(lambda s: tf.constant(label_pad_value, s.dtype), spec[1]),
    )
    # Labels with an unknown length (NER tags [L]) follow the tokens; fixed-size ones (class ids,
    # multi-hot [num_labels]) are never padded to the batch's width.
    sequence_labels = tf.nest.map_structure(lambda s: s.shape.rank == 1 and s.shape[0] is None, spec[1])
    if bucket_boundaries:
        dataset = dataset.bucket_by_sequence_length(
            length, bucket_boundaries=list(bucket_boundaries),
            bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
            padding_values=padding_values, drop_remainder=drop_remainder)
    else:
        dataset = dataset.padded_batch(batch_size, padding_values=padding_values, drop_remainder=drop_remainder)
    dataset = dataset.map(
        lambda features, labels: pad_to_multiple(features, labels, multiple, label_pad_value, sequence_labels),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
