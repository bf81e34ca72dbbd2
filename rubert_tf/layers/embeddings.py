"""Token embedding that also runs in reverse (hidden -> vocabulary logits) for tied MLM decoders."""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="rubert_tf")
class TokenEmbedding(keras.layers.Embedding):
    """`keras.layers.Embedding` whose `reverse=True` call multiplies by the transposed table.

    BERT ties its MLM decoder to the word embeddings; calling the same layer in reverse keeps
    one variable, so training, saving and HF export see the tie exactly as PyTorch does.

    Example:

    >>> import numpy as np
    >>> from rubert_tf.layers import TokenEmbedding
    >>> embedding = TokenEmbedding(input_dim=100, output_dim=16)
    >>> hidden = embedding(np.array([[2, 10, 11, 3]]))
    >>> tuple(hidden.shape)
    (1, 4, 16)
    >>> tuple(embedding(hidden, reverse=True).shape)  # vocabulary logits from the same table
    (1, 4, 100)
    """

    def call(self, inputs, reverse=False):
        if not reverse:
            if keras.backend.backend() == "tensorflow":
                # tf.gather on the variable itself is a sparse read (ResourceGather): Keras' ops.take
                # first reads the whole table, which TF copies once the table has had sparse updates
                # (rubert_tf.training.AdamW(sparse_updates=True)): 100 MB per step for rubert-tiny2.
                ids = inputs if inputs.dtype in (tf.int32, tf.int64) else tf.cast(inputs, tf.int32)
                return ops.cast(tf.gather(self.embeddings.value, ids), self.compute_dtype)
            return super().call(inputs)
        table = ops.cast(ops.convert_to_tensor(self.embeddings), self.compute_dtype)
        return ops.matmul(inputs, ops.transpose(table))

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return (*input_shape[:-1], self.input_dim)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, reverse=False):
        shape = self.compute_output_shape(inputs.shape, reverse=reverse)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)
