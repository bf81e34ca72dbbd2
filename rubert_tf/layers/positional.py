"""Position information: fixed sinusoids (Transformer paper) and learned embeddings (BERT)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="rubert_tf")
class SinusoidalPositionalEncoding(keras.layers.Layer):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).

    Called on a [batch, length, d] tensor, returns the encoding of positions
    `start_index .. start_index + length - 1` broadcast to that shape (add it yourself).
    `start_index` lets step-by-step decoding ask for the position of the current token.

    Example:

    >>> import numpy as np
    >>> from rubert_tf.layers import SinusoidalPositionalEncoding
    >>> encoding = SinusoidalPositionalEncoding()(np.zeros((2, 3, 4), "float32"))
    >>> tuple(encoding.shape)
    (2, 3, 4)
    >>> encoding[0, 0].numpy().tolist()  # position 0: sin 0 = 0, cos 0 = 1
    [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength
        self.supports_masking = True

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        length, dim = shape[-2], inputs.shape[-1]
        if dim is None or dim % 2:
            raise ValueError(f"SinusoidalPositionalEncoding needs an even, known last dimension; got {inputs.shape}")
        positions = ops.cast(ops.arange(length) + start_index, "float32")
        # One frequency per (sin, cos) pair: 1 / 10000^(2i/d) for i = 0 .. d/2 - 1.
        pair_index = ops.cast(ops.arange(dim // 2), "float32")
        inverse_frequency = ops.power(float(self.max_wavelength), -2.0 * pair_index / float(dim))
        angles = positions[:, None] * inverse_frequency[None, :]  # [length, d/2]
        # Interleave so that even columns hold sin and odd columns cos.
        encoding = ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (length, dim))
        return ops.broadcast_to(ops.cast(encoding, self.compute_dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


@keras.saving.register_keras_serializable(package="rubert_tf")
class PositionEmbedding(keras.layers.Layer):
    """BERT's learned absolute positions: a [sequence_length, d] table, rows sliced by position.

    Example:

    >>> import numpy as np
    >>> from rubert_tf.layers import PositionEmbedding
    >>> layer = PositionEmbedding(sequence_length=512)
    >>> positions = layer(np.zeros((2, 5, 16), "float32"))
    >>> tuple(positions.shape), tuple(layer.embeddings.shape)
    ((2, 5, 16), (512, 16))
    >>> bool(np.all(positions[1, 3].numpy() == layer.embeddings.numpy()[3]))
    True
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True

    def build(self, inputs_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.sequence_length, inputs_shape[-1]), initializer=self.initializer)
        super().build(inputs_shape)

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        length = shape[-2]
        static_length = inputs.shape[-2]
        if isinstance(static_length, int) and isinstance(start_index, int):
            if start_index + static_length > self.sequence_length:
                raise ValueError(
                    f"{self.name}: positions up to {start_index + static_length} requested, but the table has "
                    f"{self.sequence_length} (max_position_embeddings); truncate inputs to that length")
        rows = ops.slice(ops.convert_to_tensor(self.embeddings), (start_index, 0), (length, shape[-1]))
        return ops.broadcast_to(ops.cast(rows, self.compute_dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer)}
