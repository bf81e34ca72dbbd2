"""NER data (tags of any scheme, as ids): pre-split sentences -> word-aligned sub-token labels, inside tf.data.

Every sentence is a list of words (CoNLL tokens). The words are joined by single spaces into one
text, which the in-graph tokenizer splits with character offsets; each sub-token is then mapped to
the word it lies in by a binary search over the words' start offsets (`tf.searchsorted`). The first
sub-token of a word carries the word's tag; the others, [CLS], [SEP] and padding carry -100, which
the loss ignores. This is what HF does with `is_split_into_words=True` and `word_ids()`, because
BERT's pre-tokenizer splits at whitespace, so tokenizing the joined text equals tokenizing each word.

Words that the tokenizer removes entirely (e.g. a lone zero-width space) and words cut off by
truncation get no position; `rubert_tf.tasks.ner.tag_words` tags them "O".

    features, word_index = encode_words(tokenizer, [["Встреча", "в", "Москве"]], max_length=128)
    dataset = ner_dataset(tokenizer, sentences, tag_ids, batch_size=32, max_length=128, shuffle=True, seed=0)
"""

import weakref

import numpy as np
import tensorflow as tf

from rubert_tf.data.batching import batch_examples

IGNORE_INDEX = -100
# Sentences tokenized together inside the pipeline (one graph call each), then cut to their lengths.
TOKENIZE_CHUNK = 64
_FAR = np.iinfo(np.int32).max  # start offset of the padding "words": after every real token
_ALIGN_FNS = weakref.WeakKeyDictionary()


def align_words(tokenizer, words, max_length, return_offsets=False):
    """TF ops: ragged tf.string words [B, None] -> (features [B, T], word_index int32 [B, T]).

    `features` are the tokenizer's {"token_ids", "segment_ids", "padding_mask"} (padded to the longest
    row; + "offsets" [B, T, 2] into the words joined by spaces with `return_offsets`);
    `word_index[b, t]` is the index of the word whose first sub-token sits at t, else -1.
    """
    texts = tf.strings.reduce_join(words, axis=1, separator=" ")
    lengths = tf.strings.length(words, unit="UTF8_CHAR")  # code points, like the tokenizer's offsets
    # Start of word i = sum of the earlier words' lengths + one separating space each.
    starts = tf.cumsum(lengths + 1, axis=1, exclusive=True)
    starts = tf.cast(starts.to_tensor(default_value=_FAR), tf.int32)
    starts = tf.pad(starts, [[0, 0], [0, 1]], constant_values=_FAR)  # never empty, even with no words

    batch = tokenizer(texts, max_length=max_length, padding="longest", return_offsets=True)
    offsets = batch["offsets"] if return_offsets else batch.pop("offsets")
    token_start, token_end = offsets[..., 0], offsets[..., 1]
    # Text tokens cover at least one character; [CLS]/[SEP] of the template and padding have (0, 0).
    is_text = (token_end > token_start) & (batch["padding_mask"] > 0)
    word = tf.searchsorted(starts, token_start, side="right", out_type=tf.int32) - 1
    word = tf.where(is_text, word, -1)
    previous = tf.pad(word[:, :-1], [[0, 0], [1, 0]], constant_values=-1)
    word_index = tf.where(is_text & (word != previous), word, -1)
    return batch, word_index


def ragged_words(sentences):
    """Lists of words -> ragged tf.string [B, None]; a word that is not a str is an error naming it."""
    sentences = [list(words) for words in sentences]
    for row, words in enumerate(sentences):
        for column, word in enumerate(words):
            if not isinstance(word, str):
                raise TypeError(f"sentence {row}, word {column}: expected str, got {type(word).__name__}: {word!r:.80}")
    return tf.ragged.constant(sentences, dtype=tf.string, ragged_rank=1) if sentences else \
        tf.RaggedTensor.from_row_lengths(tf.constant([], tf.string), tf.constant([], tf.int64))


def encode_words(tokenizer, sentences, max_length=512):
    """Pre-split sentences (lists of words) -> (features dict of int32 numpy [B, T], word_index [B, T]).

    word_index[b, t] is the index of the word whose first sub-token is at position t, or -1 for
    continuation sub-tokens, [CLS]/[SEP] and padding. Runs the same TF ops as the training pipeline.
    """
    if isinstance(sentences, (str, bytes)) or (sentences and isinstance(sentences[0], str)):
        raise TypeError("encode_words takes a list of sentences, each a list of words (got a flat list of strings)")
    features, word_index = _align_fn(tokenizer, max_length)(ragged_words(sentences))
    return {key: value.numpy() for key, value in features.items()}, word_index.numpy()


def _align_fn(tokenizer, max_length):
    """One traced `align_words` per (tokenizer, max_length), kept outside the tokenizer's attributes
    so nothing is added to what tf.Module tracks or a SavedModel saves."""
    cache = _ALIGN_FNS.setdefault(tokenizer, {})
    if max_length not in cache:
        cache[max_length] = tf.function(
            lambda words: align_words(tokenizer, words, max_length),
            input_signature=[tf.RaggedTensorSpec([None, None], tf.string, ragged_rank=1)], autograph=False)
    return cache[max_length]


def word_labels(word_index, tag_ids):
    """Sub-token labels [B, T]: the word's tag id on its first sub-token, IGNORE_INDEX elsewhere.
    `tag_ids` is ragged int32 [B, None] (one id per word)."""
    dense = tag_ids.to_tensor(default_value=0)
    # A row may have more columns than words or the reverse; gather a padded copy, then mask.
    width = tf.maximum(tf.shape(dense)[1], 1)
    dense = tf.pad(dense, [[0, 0], [0, width - tf.shape(dense)[1]]])
    gathered = tf.gather(dense, tf.clip_by_value(word_index, 0, width - 1), batch_dims=1)
    return tf.where(word_index >= 0, gathered, IGNORE_INDEX)


def ner_examples(tokenizer, sentences, tag_ids, max_length):
    """tf.data.Dataset of unpadded (features [L], labels [L]) examples, tokenized in the pipeline."""
    sentences = [list(words) for words in sentences]
    tag_ids = [list(tags) for tags in tag_ids]
    if len(sentences) != len(tag_ids):
        raise ValueError(f"{len(sentences)} sentences but {len(tag_ids)} tag sequences")
    for row, (words, tags) in enumerate(zip(sentences, tag_ids)):
        if len(words) != len(tags):
            raise ValueError(f"sentence {row}: {len(words)} words but {len(tags)} tags")
    words = ragged_words(sentences)
    tags = tf.ragged.constant(tag_ids, dtype=tf.int32, ragged_rank=1) if tag_ids else \
        tf.RaggedTensor.from_row_lengths(tf.constant([], tf.int32), tf.constant([], tf.int64))

    def encode(words, tags):
        features, word_index = align_words(tokenizer, words, max_length)
        return features, word_labels(word_index, tags)

    def cut(features, labels):
        length = tf.reduce_sum(features["padding_mask"])
        return {key: value[:length] for key, value in features.items()}, labels[:length]

    dataset = tf.data.Dataset.from_tensor_slices((words, tags))
    dataset = dataset.ragged_batch(TOKENIZE_CHUNK).map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.unbatch().map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # unbatch hides the count; state it so model.fit and the runner know the epoch length.
    return dataset.apply(tf.data.experimental.assert_cardinality(len(sentences)))


def ner_dataset(tokenizer, sentences, tag_ids, batch_size, max_length=128, shuffle=False, seed=None, cache=True,
                bucket_boundaries=None, drop_remainder=False):
    """(features, labels) batches for `model.fit`: tokenized in the pipeline, cached, shuffled with
    `seed` (deterministic), padded to the batch's longest row rounded up to a multiple of 8 (labels with
    -100), prefetched."""
    return batch_examples(ner_examples(tokenizer, sentences, tag_ids, max_length), batch_size, shuffle=shuffle,
                          seed=seed, cache=cache, bucket_boundaries=bucket_boundaries,
                          label_pad_value=IGNORE_INDEX, drop_remainder=drop_remainder)
