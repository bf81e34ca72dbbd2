"""RuBertTokenClassifier: BertForTokenClassification in Keras, for BIO/IOB2 named-entity tagging."""

import keras

from rubert_tf.layers import Dropout
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

    Example (tiny and random; `from_pretrained(path, labels=[...])` warm-starts from a checkpoint):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> batch = {"token_ids": np.array([[2, 10, 11, 3, 0]]), "segment_ids": np.zeros((1, 5), "int32"),
    ...          "padding_mask": np.array([[1, 1, 1, 1, 0]])}
    >>> model = rt.RuBertTokenClassifier(config, labels=["O", "B-PER", "I-PER"])
    >>> tuple(model(batch)["logits"].shape)
    (1, 5, 3)
    >>> model.labels
    ['O', 'B-PER', 'I-PER']
    """

    hf_architecture = "BertForTokenClassification"
    hf_electra_architecture = "ElectraForTokenClassification"
    task_name = "ner"  # the task unit that serves it (rubert_tf.tasks.ner)

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
        from rubert_tf import hub

        directory = hub.resolve(name_or_path)
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

    def tag_words(self, sentences, max_length=None, batch_size=32):
        """Pre-split sentences (lists of words) -> one tag per word (words cut by truncation get "O").

        Forwards to `rubert_tf.tasks.ner.tag_words` (the NER unit: words preprocessor, this model, its
        postprocessor); max_length None: the one stored at fine-tuning (default 128)."""
        from rubert_tf.tasks.ner import tag_words

        return tag_words(self, sentences, {"max_length": max_length}, batch_size=batch_size)

    def extract_entities(self, texts, max_length=None, batch_size=32):
        """Raw strings -> per text {"words": [{"text", "start", "end", "tag"}], "entities": [{"text",
        "label", "start", "end"}]}, offsets in characters of the original string.

        Forwards to `rubert_tf.tasks.ner.extract_entities`, which runs the serving module that export
        saves, so this answers exactly as the exported model does; max_length None: the one stored at
        fine-tuning (default 128)."""
        from rubert_tf.tasks.ner import extract_entities

        return extract_entities(self, texts, {"max_length": max_length}, batch_size=batch_size)
