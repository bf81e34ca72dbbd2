"""RuBertForMaskedLM: the encoder plus BERT's MLM head, decoder tied to the word embeddings."""

import keras
from keras import ops

from rubert_tf.layers import get_activation
from rubert_tf.models.dtype_policy import dtype_policy_config, keep_dtype_policy, with_dtype_policy
from rubert_tf.models.encoder import RuBertEncoder, as_config, encoder_inputs


@keras.saving.register_keras_serializable(package="rubert_tf")
class MaskedLMTransform(keras.layers.Layer):
    """cls.predictions.transform: dense -> activation -> LayerNorm, applied before the tied decoder."""

    def __init__(self, activation="gelu", layer_norm_epsilon=1e-12, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self._activation_fn = get_activation(activation)
        self.dense = None
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="layer_norm", dtype=self.dtype_policy)

    def build(self, inputs_shape):
        self.dense = keras.layers.Dense(
            inputs_shape[-1], name="dense", dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        self.dense.build(inputs_shape)
        self.layer_norm.build(inputs_shape)
        super().build(inputs_shape)

    def call(self, inputs):
        return self.layer_norm(self._activation_fn(self.dense(inputs)))

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="rubert_tf")
class LogitsBias(keras.layers.Layer):
    """cls.predictions.bias, added to the vocabulary logits; computes in float32 so the loss is
    stable under mixed precision."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def build(self, inputs_shape):
        self.bias = self.add_weight(name="bias", shape=(inputs_shape[-1],), initializer="zeros")
        super().build(inputs_shape)

    def call(self, inputs):
        return inputs + self.bias

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        # Written out: Keras' automatic config cannot serialise a DTypePolicy object given as `dtype`.
        return super().get_config()


@keras.saving.register_keras_serializable(package="rubert_tf")
class GatherPositions(keras.layers.Layer):
    """([B, T, H], positions [B, P] int) -> [B, P, H]: the hidden states at the given positions."""

    def call(self, sequence, positions):
        return ops.take_along_axis(sequence, ops.expand_dims(ops.cast(positions, "int32"), -1), axis=1)

    def compute_output_shape(self, sequence_shape, positions_shape):
        return (sequence_shape[0], positions_shape[1], sequence_shape[-1])

    def get_config(self):
        # Written out: Keras' automatic config cannot serialise a DTypePolicy object given as `dtype`.
        return super().get_config()


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertForMaskedLM(keras.Model):
    """Inputs as RuBertEncoder; output `logits` [B, T, vocab_size] (float32).

    With `with_mask_positions=True` the model takes a fourth input, `mask_positions` [B, P] (int32
    positions of the tokens to predict), and computes `logits` [B, P, vocab_size] at those positions
    only: pretraining predicts ~15% of the tokens, so this skips most of the vocabulary projection.
    The weights (and `hf_weight_map`) are the same either way.

    Example (tiny and random; `from_pretrained(path)` loads a BertForMaskedLM checkpoint):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> batch = {"token_ids": np.array([[2, 10, 11, 3, 0]]), "segment_ids": np.zeros((1, 5), "int32"),
    ...          "padding_mask": np.array([[1, 1, 1, 1, 0]])}
    >>> tuple(rt.RuBertForMaskedLM(config)(batch)["logits"].shape)
    (1, 5, 100)
    >>> model = rt.RuBertForMaskedLM(config, with_mask_positions=True)
    >>> tuple(model({**batch, "mask_positions": np.array([[1, 2]])})["logits"].shape)
    (1, 2, 100)
    """

    def __init__(self, config, with_mask_positions=False, **kwargs):
        config = as_config(config)
        dtype = kwargs.pop("dtype", None)
        encoder = RuBertEncoder(config, include_pooler=False, name="encoder", dtype=dtype)
        inputs = encoder_inputs()
        sequence = encoder(inputs)["sequence_output"]
        if with_mask_positions:
            inputs = {**inputs, "mask_positions": keras.Input(shape=(None,), dtype="int32", name="mask_positions")}
            sequence = GatherPositions(name="gather_mask_positions", dtype=dtype)(sequence, inputs["mask_positions"])
        hidden = MaskedLMTransform(
            activation=config.hidden_act, layer_norm_epsilon=config.layer_norm_eps,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
            name="mlm_transform", dtype=dtype)(sequence)
        # Same layer object as the encoder's input embedding: the decoder weight is the word embedding.
        logits = LogitsBias(name="mlm_bias")(encoder.token_embedding(hidden, reverse=True))
        super().__init__(inputs=inputs, outputs={"logits": logits}, **kwargs)
        keep_dtype_policy(self, dtype)
        self.config = config
        self.encoder = encoder
        self.with_mask_positions = bool(with_mask_positions)

    def get_config(self):
        return {"config": self.config.to_dict(), "with_mask_positions": self.with_mask_positions, "name": self.name,
                "trainable": self.trainable, "dtype": dtype_policy_config(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))

    def hf_weight_map(self, prefix=""):
        """HF BertForMaskedLM names: the encoder under `bert.` (no pooler) plus `cls.predictions.*`."""
        mapping = dict(self.encoder.hf_weight_map(prefix + "bert."))
        transform = self.get_layer("mlm_transform")
        mapping[prefix + "cls.predictions.transform.dense.weight"] = (transform.dense.kernel, True)
        mapping[prefix + "cls.predictions.transform.dense.bias"] = (transform.dense.bias, False)
        mapping[prefix + "cls.predictions.transform.LayerNorm.weight"] = (transform.layer_norm.gamma, False)
        mapping[prefix + "cls.predictions.transform.LayerNorm.bias"] = (transform.layer_norm.beta, False)
        mapping[prefix + "cls.predictions.bias"] = (self.get_layer("mlm_bias").bias, False)
        return mapping

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        from rubert_tf.checkpoints.loading import load_model

        return load_model(cls, name_or_path, **kwargs)

    def save_pretrained(self, directory, tokenizer=None):
        from rubert_tf.checkpoints.hf import save_hf_checkpoint

        return save_hf_checkpoint(self, directory, tokenizer=tokenizer, architecture="BertForMaskedLM")
