"""RuBertClassifier: BertForSequenceClassification in Keras (multi-class, multi-label, sentence pairs)."""

import logging

import keras
import numpy as np

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
    """

    hf_architecture = "BertForSequenceClassification"

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
        from rubert_tf.checkpoints.hub import resolve_model_dir

        directory = resolve_model_dir(name_or_path)
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

    def probabilities(self, logits):
        logits = np.asarray(logits, dtype="float32")
        if self.multi_label:
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        return shifted / shifted.sum(-1, keepdims=True)

    def classify(self, texts, text_pairs=None, max_length=512, batch_size=32, threshold=0.5):
        """Raw strings in, one dict per text out: {"label" (or "labels" when multi-label), "score", "probabilities"}."""
        tokenizer = self._require_tokenizer()
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if text_pairs is not None:
            text_pairs = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
            if len(text_pairs) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text_pairs")
        results = []
        for start in range(0, len(texts), batch_size):
            pairs = None if text_pairs is None else text_pairs[start:start + batch_size]
            batch = tokenizer(texts[start:start + batch_size], pairs, max_length=max_length, padding="longest")
            probabilities = self.probabilities(self(batch, training=False)["logits"])
            for row in probabilities:
                result = {"probabilities": {label: float(p) for label, p in zip(self.labels, row)}}
                if self.multi_label:
                    result["labels"] = [label for label, p in zip(self.labels, row) if p >= threshold]
                best = int(row.argmax())
                result.update(label=self.labels[best], label_id=best, score=float(row[best]))
                results.append(result)
        return results[0] if single else results
