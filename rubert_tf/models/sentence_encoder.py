"""RuBertSentenceEncoder: sentence embeddings by mean or [CLS] pooling, L2-normalised."""

import copy

import keras
import numpy as np
from keras import ops

from rubert_tf.models.encoder import RuBertEncoder, as_config, encoder_inputs
from rubert_tf.models.task import TaskModel

POOLINGS = ("mean", "cls")


@keras.saving.register_keras_serializable(package="rubert_tf")
class SentencePooling(keras.layers.Layer):
    """Mean over real tokens (padding_mask) or the [CLS] vector; then L2 normalisation if asked.

    Mean pooling is what sbert_large_nlu_ru and rubert-base-cased-sentence use; rubert-tiny2's card
    uses [CLS] + normalisation.
    """

    def __init__(self, pooling="mean", normalize=True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.normalize = bool(normalize)

    def call(self, sequence, padding_mask):
        sequence = ops.cast(sequence, "float32")
        if self.pooling == "cls":
            pooled = sequence[:, 0, :]
        else:
            mask = ops.expand_dims(ops.cast(padding_mask, "float32"), -1)  # not [:, :, None]: TFLite builtins
            pooled = ops.sum(sequence * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1e-9)
        if self.normalize:
            pooled = pooled / ops.maximum(ops.norm(pooled, axis=-1, keepdims=True), 1e-12)
        return pooled

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])

    def get_config(self):
        return {**super().get_config(), "pooling": self.pooling, "normalize": self.normalize}


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertSentenceEncoder(TaskModel):
    """Inputs as RuBertEncoder; output `embedding` [B, H] (float32, unit length when normalize=True).

    `pooling` ("mean" or "cls") and `normalize` default to what the checkpoint's config.json says
    (keys "pooling" and "normalize", written by `save_pretrained`), else mean pooling + normalisation.

    Example (tiny and random; `from_pretrained(path)` loads a checkpoint):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> batch = {"token_ids": np.array([[2, 10, 11, 3, 0]]), "segment_ids": np.zeros((1, 5), "int32"),
    ...          "padding_mask": np.array([[1, 1, 1, 1, 0]])}
    >>> model = rt.RuBertSentenceEncoder(config, pooling="mean")
    >>> embedding = model(batch)["embedding"].numpy()
    >>> embedding.shape
    (1, 32)
    >>> round(float(np.linalg.norm(embedding)), 4)  # normalize=True: unit length
    1.0
    """

    task_name = "sentence"  # the task unit that serves it (rubert_tf.tasks.sentence)

    hf_architecture = "BertModel"
    hf_electra_architecture = "ElectraModel"

    def __init__(self, config, pooling=None, normalize=None, **kwargs):
        config = copy.deepcopy(as_config(config))
        pooling = pooling or config.extra.get("pooling", "mean")
        normalize = bool(config.extra.get("normalize", True) if normalize is None else normalize)
        # Kept in the config so save_pretrained / from_pretrained keep the choice.
        config.extra.update(pooling=pooling, normalize=normalize)
        dtype = kwargs.pop("dtype", None)
        encoder = RuBertEncoder(config, name="encoder", dtype=dtype)
        # The tanh pooler is kept (a BertModel checkpoint has it, and save_pretrained writes it back)
        # but no embedding uses it: frozen, so training neither warns about nor keeps slots for it.
        encoder.get_layer("pooler_dense").trainable = False
        inputs = encoder_inputs()
        sequence = encoder(inputs)["sequence_output"]
        embedding = SentencePooling(pooling, normalize, name="pooling")(sequence, inputs["padding_mask"])
        super().__init__(inputs=inputs, outputs={"embedding": embedding}, **kwargs)
        self._finish(config, encoder, {"pooling": pooling, "normalize": normalize})
        self.pooling = pooling
        self.normalize = normalize

    def hf_weight_map(self, prefix=""):
        # Saved and loaded as a plain BertModel (no `bert.` prefix), as sentence-transformers does.
        return self.encoder.hf_weight_map(prefix)

    def encode(self, texts, max_length=None, batch_size=32):
        """Raw strings -> np.ndarray [N, H] (one string -> [H]). Forwards to the sentence task unit
        (rubert_tf.tasks.sentence.processing.encode), which runs the same graph export saves."""
        from rubert_tf.tasks.sentence.processing import encode

        return encode(self, texts, max_length=max_length, batch_size=batch_size)

    def similarity(self, texts_a, texts_b, **kwargs):
        """Cosine similarity matrix [len(a), len(b)] of two lists of strings."""
        a = _unit(self.encode(list(texts_a), **kwargs))
        b = _unit(self.encode(list(texts_b), **kwargs))
        return a @ b.T


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
