"""Multi-head attention with BERT's weight layout and a key/value cache for decoding."""

import keras
from keras import ops

from rubert_tf.layers.dense import dense_2d
from rubert_tf.layers.dropout import Dropout

# Added to the scores of masked keys before the softmax (in float32, where it cannot overflow).
_MASKED_SCORE = -1e9


def _write_positions(cache, update, start):
    """cache[:, start:start + T] = update ([B, S, ...] and [B, T, ...]) as a gather + select.

    Not ops.slice_update: on TensorFlow that becomes XlaDynamicUpdateSlice, an XLA-only op that
    runs here through on-demand XLA but that a SavedModel served by TF Serving cannot rely on.
    """
    positions = ops.arange(ops.shape(cache)[1]) - start
    length = ops.shape(update)[1]
    inside = ops.logical_and(positions >= 0, positions < length)
    rows = ops.take(update, ops.clip(positions, 0, length - 1), axis=1)
    inside = ops.reshape(inside, (1, -1) + (1,) * (len(cache.shape) - 2))
    return ops.where(inside, rows, cache)


@keras.saving.register_keras_serializable(package="rubert_tf")
class MultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product attention over `num_heads` heads.

    Weights are laid out as BERT's: separate `query_dense`, `key_dense`, `value_dense` projections
    (kernels [hidden, num_heads * head_size]) and an `output_dense` back to the query width, so HF
    and TF1 checkpoints map onto them one to one.

    Call:
        query: [B, Tq, Dq]; value: [B, Tv, Dv] (defaults to query, i.e. self-attention); key defaults to value.
        padding_mask: [B, Tv], 1 for real keys, 0 for padding.
        attention_mask: [B, Tq, Tv], 1 where query i may attend to key j (combined with the others).
        use_causal_mask: query i only sees keys j <= i (positions counted from `cache_update_index`).
        cache: [B, 2, S, num_heads, head_size] keys (index 0) and values (index 1).
            With `cache_update_index` (an int or scalar tensor), the keys/values of `value` are written
            into the cache at that position and the call returns `(output, new_cache)`: step-by-step
            self-attention decoding. Without it, the cache is used as is (precomputed cross-attention
            keys from `compute_cache`) and `value` is ignored; the call also returns `(output, cache)`.

    Example:

    >>> import numpy as np
    >>> from rubert_tf.layers import MultiHeadAttention
    >>> attention = MultiHeadAttention(num_heads=2, head_size=8)
    >>> query, memory = np.ones((2, 5, 16), "float32"), np.ones((2, 7, 16), "float32")
    >>> tuple(attention(query, padding_mask=np.ones((2, 5), "int32")).shape)  # self-attention
    (2, 5, 16)
    >>> tuple(attention(query, memory).shape)  # cross-attention over 7 keys
    (2, 5, 16)
    """

    def __init__(self, num_heads, head_size, output_size=None, dropout=0.0, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.head_size = int(head_size)
        self.output_size = output_size
        self.dropout = float(dropout)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        width = self.num_heads * self.head_size

        def dense(name, units):
            return keras.layers.Dense(
                units, use_bias=use_bias, name=name, dtype=self.dtype_policy,
                kernel_initializer=keras.initializers.get(keras.initializers.serialize(self.kernel_initializer)),
                bias_initializer=keras.initializers.get(keras.initializers.serialize(self.bias_initializer)))

        self.query_dense = dense("query", width)
        self.key_dense = dense("key", width)
        self.value_dense = dense("value", width)
        self._output_dense_factory = lambda units: dense("output", units)
        self.output_dense = None
        self.probabilities_dropout = Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        self.query_dense.build(query_shape)
        self.key_dense.build(key_shape)
        self.value_dense.build(value_shape)
        units = self.output_size or query_shape[-1]
        self.output_dense = self._output_dense_factory(units)
        self.output_dense.build((*query_shape[:-1], self.num_heads * self.head_size))
        super().build(query_shape)

    def _split_heads(self, x):
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], self.num_heads, self.head_size))

    def compute_cache(self, value, key=None):
        """Keys and values of `value` as a cache [B, 2, Tv, heads, head_size] (for cross-attention)."""
        key = value if key is None else key
        return ops.stack([self._split_heads(dense_2d(self.key_dense, key)),
                          self._split_heads(dense_2d(self.value_dense, value))], axis=1)

    def call(self, query, value=None, key=None, padding_mask=None, attention_mask=None, use_causal_mask=False,
             cache=None, cache_update_index=None, training=None):
        value = query if value is None else value
        key = value if key is None else key
        queries = self._split_heads(dense_2d(self.query_dense, query))  # [B, Tq, N, H]
        if cache is not None and cache_update_index is None:
            keys, values = cache[:, 0], cache[:, 1]
        else:
            keys = self._split_heads(dense_2d(self.key_dense, key))
            values = self._split_heads(dense_2d(self.value_dense, value))
            if cache is not None:
                keys = _write_positions(cache[:, 0], ops.cast(keys, cache.dtype), cache_update_index)
                values = _write_positions(cache[:, 1], ops.cast(values, cache.dtype), cache_update_index)
                cache = ops.stack([keys, values], axis=1)
        bias = self._mask_bias(query, keys, padding_mask, attention_mask, use_causal_mask, cache_update_index)
        # Heads first ([B, N, T, D]) and a plain matmul with the scale and mask added right after it: the
        # pattern oneDNN's fused BatchMatMul[Mul, Add] matches (the einsum over [B, T, N, D] it replaced
        # measured 1.5% slower in float32, 4% in bfloat16; BENCHMARKS.md), and TFLite converts it to builtins.
        queries = ops.transpose(queries, (0, 2, 1, 3))
        keys = ops.transpose(ops.cast(keys, queries.dtype), (0, 2, 3, 1))  # [B, N, D, Tk]
        values = ops.transpose(ops.cast(values, queries.dtype), (0, 2, 1, 3))  # [B, N, Tk, D]
        scores = ops.matmul(queries, keys) * ops.cast(1.0 / (self.head_size ** 0.5), queries.dtype)
        if bias is not None and scores.dtype != "float16":
            # in the scores' dtype, inside the fusion: the bias is 0 or -1e9, so bfloat16 loses nothing
            # (float16 cannot hold -1e9: it adds the bias after the cast below)
            scores = scores + ops.cast(bias, scores.dtype)
            bias = None

        # Softmax in float32 so that mixed precision cannot overflow.
        scores = ops.cast(scores, "float32")
        if bias is not None:
            scores = scores + bias
        probabilities = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        probabilities = self.probabilities_dropout(probabilities, training=training)

        context = ops.matmul(probabilities, values)  # both in the compute dtype
        context = ops.transpose(context, (0, 2, 1, 3))  # [B, Tq, N, D]
        shape = ops.shape(context)
        context = ops.reshape(context, (shape[0], shape[1], self.num_heads * self.head_size))
        output = dense_2d(self.output_dense, context)
        return output if cache is None else (output, cache)

    @classmethod
    def _mask_bias(cls, query, keys, padding_mask, attention_mask, use_causal_mask, cache_update_index):
        """Float32 bias added to the scores (0 = may attend, _MASKED_SCORE = masked), or None.

        Added, not selected with `where`: a padding mask alone stays [B, 1, 1, Tk] and broadcasts inside
        the add, instead of a [B, Tq, Tk] boolean mask and a select over every head's scores
        (benchmarks/run_all.py: tiny2 32x128 inference about 4% faster in float32, 15% in bfloat16).
        Masked scores become score - 1e9, which rounds to -1e9 in float32 for any |score| < 32: the same
        probabilities as replacing them (HF adds its mask the same way)."""
        if padding_mask is not None and attention_mask is None and not use_causal_mask:
            # expand_dims, not [:, None, None, :]: TFLite has no builtin for new-axis strided slices
            keep = ops.expand_dims(ops.expand_dims(ops.cast(padding_mask, "float32"), 1), 1)
            return (1.0 - keep) * _MASKED_SCORE
        mask = cls._combined_mask(query, keys, padding_mask, attention_mask, use_causal_mask, cache_update_index)
        if mask is None:
            return None
        return (1.0 - ops.expand_dims(ops.cast(mask, "float32"), 1)) * _MASKED_SCORE

    @staticmethod
    def _combined_mask(query, keys, padding_mask, attention_mask, use_causal_mask, cache_update_index):
        """Boolean [B, Tq, Tk] mask (True = may attend), or None when nothing is masked."""
        mask = None
        if padding_mask is not None:
            mask = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)
        if attention_mask is not None:
            attention_mask = ops.cast(attention_mask, "bool")
            mask = attention_mask if mask is None else ops.logical_and(mask, attention_mask)
        if use_causal_mask:
            query_length = ops.shape(query)[1]
            key_length = ops.shape(keys)[1]
            first = 0 if cache_update_index is None else cache_update_index
            query_positions = ops.arange(query_length) + first
            causal = ops.expand_dims(ops.arange(key_length), 0) <= ops.expand_dims(query_positions, 1)
            causal = ops.expand_dims(causal, 0)
            mask = causal if mask is None else ops.logical_and(mask, causal)
        if mask is not None:
            # Broadcast to [B, Tq, Tk] so the caller can index heads uniformly.
            shape = (ops.shape(query)[0], ops.shape(query)[1], ops.shape(keys)[1])
            mask = ops.broadcast_to(mask, shape)
        return mask

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        return (*query_shape[:-1], self.output_size or query_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "head_size": self.head_size,
            "output_size": self.output_size,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
