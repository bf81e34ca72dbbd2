"""RuBertTokenClassifier: BertForTokenClassification in Keras, for BIO/IOB2 named-entity tagging."""

import keras
import numpy as np

from rubert_tf.layers import Dropout
from rubert_tf.metrics.ner import get_entities
from rubert_tf.models.encoder import RuBertEncoder, as_config, encoder_inputs
from rubert_tf.models.task import (TaskModel, config_with_labels, head_dropout_rate, labels_from_config,
                                   reconcile_checkpoint_labels)

# Label id of sub-tokens that carry no label (continuation pieces, [CLS], [SEP], padding), as in HF.
IGNORE_INDEX = -100


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertTokenClassifier(TaskModel):
    """Sequence output -> dropout -> `classifier` dense -> `logits` [B, T, num_labels] (float32).

    Words are labelled on their first sub-token; the others get IGNORE_INDEX and are masked from the
    loss (`default_loss`). `tag_words` and `extract_entities` work on raw text.
    """

    hf_architecture = "BertForTokenClassification"

    def __init__(self, config, labels=None, load_head=True, **kwargs):
        config = as_config(config)
        labels = labels if labels is not None else labels_from_config(config)
        if not labels:
            raise ValueError("RuBertTokenClassifier needs its tag names, e.g. labels=['O', 'B-PER', 'I-PER', ...]")
        labels = [str(label) for label in labels]
        config = config_with_labels(config, labels)
        dtype = kwargs.pop("dtype", None)

        # BertForTokenClassification has no pooler (add_pooling_layer=False).
        encoder = RuBertEncoder(config, include_pooler=False, name="encoder", dtype=dtype)
        inputs = encoder_inputs()
        sequence = encoder(inputs)["sequence_output"]
        sequence = Dropout(head_dropout_rate(config), name="classifier_dropout", dtype=dtype)(sequence)
        logits = keras.layers.Dense(
            len(labels), name="classifier", dtype="float32",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range))(sequence)
        super().__init__(inputs=inputs, outputs={"logits": logits}, **kwargs)
        self._finish(config, encoder, {"labels": labels})
        self.labels = labels
        self._load_head = load_head  # False only while from_pretrained skips a checkpoint head of other labels

    @classmethod
    def from_pretrained(cls, name_or_path, tokenizer=True, **kwargs):
        """Warm start from any checkpoint; its `classifier` head (BertForTokenClassification) is loaded
        when it is for the same tag set. The same tags in another order keep the checkpoint's order, so
        each head row keeps its meaning; other tags start a fresh head (logged) instead of failing on
        its shape or, worse, loading rows under the wrong names."""
        from rubert_tf.checkpoints.hub import resolve_model_dir

        directory = resolve_model_dir(name_or_path)
        reconcile_checkpoint_labels(directory, kwargs)
        model = super().from_pretrained(directory, tokenizer=tokenizer, **kwargs)
        model._load_head = True  # from now on the head is part of the model's checkpoint again
        return model

    def hf_head_weights(self):
        if not self._load_head:
            return {}
        head = self.get_layer("classifier")
        return {"classifier.weight": (head.kernel, True), "classifier.bias": (head.bias, False)}

    @staticmethod
    def default_loss():
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_INDEX)

    def tag_words(self, sentences, max_length=512, batch_size=32):
        """Pre-split sentences (lists of words) -> one tag per word (words cut by truncation get "O")."""
        from rubert_tf.data.ner import encode_words

        tokenizer = self._require_tokenizer()
        results = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start:start + batch_size]
            features, word_index = encode_words(tokenizer, chunk, max_length=max_length)
            predictions = np.asarray(self(features, training=False)["logits"]).argmax(-1)
            for row, words in enumerate(chunk):
                tags = ["O"] * len(words)
                for position, index in enumerate(word_index[row]):
                    if index >= 0:
                        tags[index] = self.labels[predictions[row, position]]
                results.append(tags)
        return results

    def extract_entities(self, texts, max_length=512, batch_size=32):
        """Raw strings -> per text {"words": [{"text", "start", "end", "tag"}], "entities": [{"text",
        "label", "start", "end"}]}, offsets in characters of the original string."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        spans = _word_spans(self._require_tokenizer(), texts)
        tags = self.tag_words([[text[s:e] for s, e in words] for text, words in zip(texts, spans)],
                              max_length=max_length, batch_size=batch_size)
        results = []
        for text, words, word_tags in zip(texts, spans, tags):
            entities = []
            for label, first, last in get_entities(word_tags):
                start, end = words[first][0], words[last][1]
                entities.append({"text": text[start:end], "label": label, "start": start, "end": end})
            results.append({
                "words": [{"text": text[s:e], "start": s, "end": e, "tag": t} for (s, e), t in zip(words, word_tags)],
                "entities": entities})
        return results[0] if single else results


def _word_spans(tokenizer, texts):
    """(start, end) character spans of the tokenizer's words (whitespace- and punctuation-split, as
    CoNLL data is): a word starts at every piece that is not a `##` continuation."""
    ids, starts, ends = tokenizer.tokenize_with_offsets(texts)
    spans = []
    for row_ids, row_starts, row_ends in zip(ids.to_list(), starts.to_list(), ends.to_list()):
        words = []
        for token_id, start, end in zip(row_ids, row_starts, row_ends):
            if words and tokenizer.id_to_token(token_id).startswith("##"):
                words[-1] = (words[-1][0], end)
            else:
                words.append((start, end))
        spans.append(words)
    return spans
