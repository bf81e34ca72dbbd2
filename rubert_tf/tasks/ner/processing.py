"""Text (or pre-split words) -> token classifier inputs -> word tags and entities, as one graph: what
`extract_entities`, `tag_words` and evaluation run and what export saves.

    module = serving_module(model, tokenizer, settings)     # signature: text -> tags and entities
    outputs = module("serving_default", text=["Путин прилетел в Минск"])

Outputs per text (batch-major, padded; offsets are code points of the input string):
  tags [B, T]                        the tag of each word's first sub-token, "" elsewhere
  token_start, token_end [B, T]      character span of each text token, -1 elsewhere ([CLS], [SEP], padding)
  word_start, word_end, word_tag [B, W], word_count [B]
                                     words: for raw text a piece and its "##" continuations (split at
                                     spaces and punctuation, as CoNLL data is); for pre-split input the given words
  entity_start, entity_end, entity_label, entity_first_word, entity_last_word [B, E], entity_count [B]
Words past `max_length` sub-tokens are cut: raw text does not list them, `tag_words` tags them "O".

The postprocessor groups word tags into entities with the rules of rubert_tf/metrics/ner.py
(`STARTS_CHUNK`, `label_parts`), the same that score evaluation (`get_entities`), so entities are
seqeval's for IOB2, IOB1, IOBES and bare tags alike, served or eager.
"""

import numpy as np
import tensorflow as tf

from rubert_tf.data.ner import align_words, ragged_words
from rubert_tf.metrics.ner import STARTS_CHUNK, label_parts
from rubert_tf.tasks.module import TaskModule, cached_module, label_table

MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask")
_O = 0  # index of "O" in rubert_tf.metrics.ner.PREFIXES


def _in_text(features):
    """Tokens of the text: they cover at least one character ([CLS]/[SEP] and padding have (0, 0))."""
    offsets = features["offsets"]
    return (offsets[..., 1] > offsets[..., 0]) & (features["padding_mask"] > 0)


def text_preprocessor(tokenizer, settings):
    """Strings [B] -> the model inputs + "offsets" [B, T, 2] + "starts_word" [B, T] (a text piece that is
    not a "##" continuation)."""
    continuation = tf.constant(np.array([token.startswith("##") for token in tokenizer.vocabulary]))

    def preprocess(text):
        features = tokenizer(text, max_length=settings.max_length, padding="longest", return_offsets=True)
        features["starts_word"] = _in_text(features) & ~tf.gather(continuation, features["token_ids"])
        return features

    return preprocess


def words_preprocessor(tokenizer, settings):
    """Ragged words [B, None] -> the model inputs + "offsets" (into the words joined by spaces) +
    "starts_word" (the first sub-token of a word) + "word_index" [B, T] (that word's index, else -1):
    the alignment the training pipeline uses (rubert_tf.data.ner.align_words)."""

    def preprocess(words):
        features, word_index = align_words(tokenizer, words, settings.max_length, return_offsets=True)
        features["starts_word"] = word_index >= 0
        features["word_index"] = word_index
        return features

    return preprocess


def postprocessor(labels):
    """(logits [B, T, L], features of a preprocessor) -> the output tensors (see the module docstring);
    also returns the label table, which the caller's tf.Module must hold (a SavedModel asset)."""
    names = label_table(labels)
    prefixes, type_ids, type_names = label_parts(labels)
    label_prefix = tf.constant(prefixes, tf.int32)
    label_type = tf.constant(type_ids, tf.int32)
    type_names = tf.constant(type_names or [""], tf.string)
    starts_chunk = tf.constant(np.array(STARTS_CHUNK, bool))

    def postprocess(logits, features):
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)  # [B, T]
        starts, ends = features["offsets"][..., 0], features["offsets"][..., 1]
        in_text = _in_text(features)
        starts_word = features["starts_word"]
        batch = tf.shape(predicted)[0]

        # Words, flattened row by row: a word is its first sub-token and the text tokens up to the next one.
        word_id = tf.cumsum(tf.cast(starts_word, tf.int32), axis=1) - 1  # per row
        in_word = in_text & (word_id >= 0)
        words_per_row = tf.reduce_sum(tf.cast(starts_word, tf.int32), axis=1)
        row_offset = tf.cumsum(words_per_row, exclusive=True)
        total_words = tf.reduce_sum(words_per_row)
        word_row = tf.repeat(tf.range(batch), words_per_row)
        word_begin = tf.boolean_mask(starts, starts_word)
        word_end = tf.math.unsorted_segment_max(
            tf.boolean_mask(ends, in_word), tf.boolean_mask(word_id + row_offset[:, None], in_word), total_words)
        word_label = tf.boolean_mask(predicted, starts_word)

        # Entities (rubert_tf/metrics/ner.py): a word opens one by STARTS_CHUNK[previous prefix][prefix] or
        # by a change of type; the following non-O words that open none belong to it.
        prefix = tf.gather(label_prefix, word_label)
        entity_type = tf.gather(label_type, word_label)
        word_in_row = tf.range(total_words) - tf.gather(row_offset, word_row)
        first_of_row = word_in_row == 0  # "O" comes before it
        previous_prefix = tf.where(first_of_row, _O, tf.roll(prefix, 1, axis=0))
        previous_type = tf.where(first_of_row, -1, tf.roll(entity_type, 1, axis=0))
        in_entity = prefix != _O
        begins = tf.gather_nd(starts_chunk, tf.stack([previous_prefix, prefix], axis=-1)) | (
            in_entity & (previous_type != entity_type))
        entity_of_word = tf.cumsum(tf.cast(begins, tf.int32)) - 1
        total_entities = tf.reduce_sum(tf.cast(begins, tf.int32))
        member = tf.boolean_mask(entity_of_word, in_entity)
        entity_end = tf.math.unsorted_segment_max(tf.boolean_mask(word_end, in_entity), member, total_entities)
        entity_last = tf.math.unsorted_segment_max(tf.boolean_mask(word_in_row, in_entity), member, total_entities)
        entities_per_row = tf.math.unsorted_segment_sum(tf.cast(begins, tf.int32), word_row, batch)

        def by_word(values, fill):
            return tf.RaggedTensor.from_row_lengths(values, words_per_row).to_tensor(default_value=fill)

        def by_entity(values, fill):
            return tf.RaggedTensor.from_row_lengths(values, entities_per_row).to_tensor(default_value=fill)

        return {
            "tags": tf.where(starts_word, names.lookup(tf.cast(predicted, tf.int64)), ""),
            "token_start": tf.where(in_text, starts, -1),
            "token_end": tf.where(in_text, ends, -1),
            "word_start": by_word(word_begin, -1),
            "word_end": by_word(word_end, -1),
            "word_tag": by_word(names.lookup(tf.cast(word_label, tf.int64)), ""),
            "word_count": words_per_row,
            "entity_start": by_entity(tf.boolean_mask(word_begin, begins), -1),
            "entity_end": by_entity(entity_end, -1),
            "entity_label": by_entity(tf.gather(type_names, tf.maximum(tf.boolean_mask(entity_type, begins), 0)), ""),
            "entity_first_word": by_entity(tf.boolean_mask(word_in_row, begins), -1),
            "entity_last_word": by_entity(entity_last, -1),
            "entity_count": entities_per_row,
        }

    return postprocess, names


def _logits(model, features):
    return model({key: features[key] for key in MODEL_INPUTS}, training=False)["logits"]


def _checked_parts(model):
    try:
        label_parts(model.labels)
    except ValueError as error:
        raise ValueError(f"{type(model).__name__} labels: {error}") from None


def serving_module(model, tokenizer, settings):
    """TaskModule with "serving_default" = post(head(pre(text))); input `text`."""
    _checked_parts(model)
    module = TaskModule(model, tokenizer, settings)
    preprocess = text_preprocessor(tokenizer, settings)
    postprocess, module.labels = postprocessor(model.labels)

    def tag_texts(text):
        features = preprocess(text)
        return postprocess(_logits(module.model, features), features)

    module.add_signature("serving_default", tag_texts, ["text"])
    return module


def words_module(model, tokenizer, settings):
    """A TaskModule whose `tag_words` (not a signature: its input is ragged) is post(head(pre(words))),
    plus "word_number" [B, W]: the index in its sentence of each word the outputs list."""
    _checked_parts(model)
    module = TaskModule(model, tokenizer, settings)
    preprocess = words_preprocessor(tokenizer, settings)
    postprocess, module.labels = postprocessor(model.labels)

    def tag(words):
        features = preprocess(words)
        outputs = postprocess(_logits(module.model, features), features)
        numbers = tf.boolean_mask(features["word_index"], features["starts_word"])
        outputs["word_number"] = tf.RaggedTensor.from_row_lengths(numbers, outputs["word_count"]).to_tensor(-1)
        return outputs

    module.tag_words = tf.function(tag, input_signature=[tf.RaggedTensorSpec([None, None], tf.string, ragged_rank=1)])
    return module


def _module_for(model, settings, build, kind):
    """The text or the words module of this model and settings, traced once per process."""
    return cached_module(model, model._require_tokenizer(), settings, build, variant=kind)


def _resolve(model, settings):
    from rubert_tf.tasks.ner.settings import NerSettings

    return NerSettings.resolve(model, settings)


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def as_results(texts, outputs):
    """The serving outputs of `texts` -> per text {"words": [{"text", "start", "end", "tag"}], "entities":
    [{"text", "label", "start", "end"}]}."""
    results = []
    for row, text in enumerate(texts):
        words = [{"text": text[start:end], "start": int(start), "end": int(end), "tag": _text(tag)}
                 for start, end, tag in zip(*(outputs[key][row][:outputs["word_count"][row]]
                                              for key in ("word_start", "word_end", "word_tag")))]
        entities = [{"text": text[start:end], "label": _text(label), "start": int(start), "end": int(end)}
                    for start, end, label in zip(*(outputs[key][row][:outputs["entity_count"][row]]
                                                   for key in ("entity_start", "entity_end", "entity_label")))]
        results.append({"words": words, "entities": entities})
    return results


def extract_entities(model, texts, settings=None, batch_size=32):
    """Raw strings -> per text {"words": [{"text", "start", "end", "tag"}], "entities": [{"text", "label",
    "start", "end"}]}, offsets in characters of the original string: the serving module, `batch_size`
    texts at a time. `settings`: NerSettings or overrides such as {"max_length": 256}."""
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    for number, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {number}: expected str, got {type(text).__name__}: {text!r:.80}")
    module = _module_for(model, _resolve(model, settings), serving_module, "text")
    results = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        results.extend(as_results(chunk, module("serving_default", text=chunk)))
    return results[0] if single else results


def tag_words(model, sentences, settings=None, batch_size=32):
    """Pre-split sentences (lists of words) -> one tag per word, from the same postprocessor on the
    words preprocessor; words without a sub-token (removed by normalisation, or cut by max_length) get "O"."""
    if isinstance(sentences, (str, bytes)) or (sentences and isinstance(sentences[0], str)):
        raise TypeError("tag_words takes a list of sentences, each a list of words (got a flat list of strings)")
    sentences = [list(words) for words in sentences]
    module = _module_for(model, _resolve(model, settings), words_module, "words")
    results = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start:start + batch_size]
        outputs = module.tag_words(ragged_words(chunk))
        numbers, tags, counts = (outputs[key].numpy() for key in ("word_number", "word_tag", "word_count"))
        for row, words in enumerate(chunk):
            row_tags = ["O"] * len(words)
            for number, tag in zip(numbers[row][:counts[row]], tags[row][:counts[row]]):
                row_tags[number] = tag.decode("utf-8")
            results.append(row_tags)
    return results
