"""RuBertClassifier: BertForSequenceClassification in Keras (multi-class, multi-label, sentence pairs)."""

import logging

import keras

from rubert_tf.layers import Dropout
from rubert_tf.models.encoder import RuBertEncoder, as_config, encoder_inputs
from rubert_tf.models.task import (TaskModel, config_with_labels, head_dropout_rate, labels_from_config,
                                   reconcile_checkpoint_labels)

logger = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertClassifier(TaskModel):
    """Pooled [CLS] -> dropout -> `classifier` dense -> `logits` [B, num_labels] (float32).

    Multi-class: softmax over logits, train with SparseCategoricalCrossentropy(from_logits=True).
    Multi-label (`multi_label=True`): independent sigmoids, train with BinaryCrossentropy(from_logits=True).
    Label names travel with the model (HF config id2label), so predictions come back as names.

    Example (tiny and random; `from_pretrained(path, labels=[...])` warm-starts from a checkpoint):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> batch = {"token_ids": np.array([[2, 10, 11, 3, 0]]), "segment_ids": np.zeros((1, 5), "int32"),
    ...          "padding_mask": np.array([[1, 1, 1, 1, 0]])}
    >>> model = rt.RuBertClassifier(config, labels=["negative", "positive"])
    >>> tuple(model(batch)["logits"].shape)
    (1, 2)
    >>> model.labels
    ['negative', 'positive']
    >>> model.config.extra["id2label"]
    {'0': 'negative', '1': 'positive'}
    """

    hf_architecture = "BertForSequenceClassification"
    task_name = "classification"

    def __init__(self, config, num_labels=None, labels=None, multi_label=False, load_head=True, **kwargs):
        config = as_config(config)
        labels = labels if labels is not None else labels_from_config(config)
        if num_labels is None:
            if labels is None:
                raise ValueError("RuBertClassifier needs num_labels or labels")
            num_labels = len(labels)
        if labels is not None and len(labels) != num_labels:
            raise ValueError(f"num_labels={num_labels} but {len(labels)} label names were given")
        labels = labels or [f"LABEL_{i}" for i in range(num_labels)]
        multi_label = multi_label or config.extra.get("problem_type") == "multi_label_classification"
        config = config_with_labels(
            config, labels, "multi_label_classification" if multi_label else "single_label_classification")
        dtype = kwargs.pop("dtype", None)

        encoder = RuBertEncoder(config, name="encoder", dtype=dtype)
        inputs = encoder_inputs()
        pooled = encoder(inputs)["pooled_output"]
        pooled = Dropout(head_dropout_rate(config), name="classifier_dropout", dtype=dtype)(pooled)
        # float32 head: logits feed the loss, which must not see float16 rounding.
        logits = keras.layers.Dense(
            num_labels, name="classifier", dtype="float32",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range))(pooled)
        super().__init__(inputs=inputs, outputs={"logits": logits}, **kwargs)
        self._finish(config, encoder, {"num_labels": num_labels, "labels": labels, "multi_label": multi_label})
        self.labels = labels
        self.multi_label = multi_label
        self._load_head = load_head  # False only while from_pretrained skips a checkpoint head of other labels

    @classmethod
    def from_pretrained(cls, name_or_path, tokenizer=True, **kwargs):
        """Warm start from any checkpoint; its `classifier` head is loaded when it has one for the
        same label set. Asked for other labels (or another num_labels) than the checkpoint's
        config names, the head starts fresh (logged) instead of failing on its shape; the same
        labels in another order keep the checkpoint's order, so each head row keeps its meaning."""
        from rubert_tf import hub

        directory = hub.resolve(name_or_path)
        wanted, num_labels = kwargs.get("labels"), kwargs.get("num_labels")
        saved = reconcile_checkpoint_labels(directory, kwargs)
        if saved is not None and wanted is None and num_labels is not None and num_labels != len(saved):
            logger.warning("%s: checkpoint has %d labels %s but num_labels=%d was requested; the classifier "
                           "head starts from random weights", directory, len(saved), saved, num_labels)
            kwargs["labels"] = [f"LABEL_{i}" for i in range(num_labels)]
            kwargs["load_head"] = False
        model = super().from_pretrained(directory, tokenizer=tokenizer, **kwargs)
        model._load_head = True  # from now on the head is part of the model's checkpoint again
        return model

    def hf_head_weights(self):
        if not self._load_head:
            return {}
        head = self.get_layer("classifier")
        return {"classifier.weight": (head.kernel, True), "classifier.bias": (head.bias, False)}

    def default_loss(self):
        if self.multi_label:
            return keras.losses.BinaryCrossentropy(from_logits=True)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def classify(self, texts, text_pairs=None, max_length=None, batch_size=32, threshold=None):
        """Raw strings in, one dict per text out: {"label" (+ "labels" when multi-label), "label_id",
        "score", "probabilities"}. Forwards to the classification task unit
        (rubert_tf.tasks.classification.processing.classify), which runs the same graph export saves."""
        from rubert_tf.tasks.classification.processing import classify

        return classify(self, texts, text_pairs, max_length=max_length, batch_size=batch_size, threshold=threshold)
