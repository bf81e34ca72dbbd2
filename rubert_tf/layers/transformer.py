"""Transformer encoder and decoder blocks (BERT's post-LayerNorm by default, pre-LayerNorm on request)."""

import keras

from rubert_tf.layers.activations import get_activation
from rubert_tf.layers.attention import MultiHeadAttention
from rubert_tf.layers.dense import dense_2d
from rubert_tf.layers.dropout import Dropout


class _FeedForwardMixin:
    """Shared pieces of both blocks: layer norms, dropout, the intermediate/output feed-forward."""

    def _make_common(self, activation, dropout):
        self._activation_fn = get_activation(activation)
        self.intermediate_dense = keras.layers.Dense(
            self.intermediate_size, name="intermediate", dtype=self.dtype_policy,
            kernel_initializer=self._initializer())
        self.output_dense = None  # width known in build
        self.output_layer_norm = self._layer_norm("output_layer_norm")
        self.dropout_layer = Dropout(dropout, dtype=self.dtype_policy)

    def _initializer(self):
        # A fresh initializer object per sublayer (Keras warns when one instance is reused).
        return keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))

    def _layer_norm(self, name):
        return keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name=name, dtype=self.dtype_policy)

    def _build_feed_forward(self, hidden_shape):
        self.intermediate_dense.build(hidden_shape)
        self.output_dense = keras.layers.Dense(
            hidden_shape[-1], name="output", dtype=self.dtype_policy, kernel_initializer=self._initializer())
        self.output_dense.build((*hidden_shape[:-1], self.intermediate_size))
        self.output_layer_norm.build(hidden_shape)

    def _residual(self, x, sublayer_fn, layer_norm, training):
        """Post-LN: LN(x + f(x)) as BERT; pre-LN: x + f(LN(x))."""
        if self.normalize_first:
            return x + self.dropout_layer(sublayer_fn(layer_norm(x)), training=training)
        return layer_norm(x + self.dropout_layer(sublayer_fn(x), training=training))

    def _feed_forward(self, x):
        return dense_2d(self.output_dense, dense_2d(self.intermediate_dense, x, self._activation_fn))


@keras.saving.register_keras_serializable(package="rubert_tf")
class TransformerEncoderBlock(_FeedForwardMixin, keras.layers.Layer):
    """Self-attention + feed-forward, each with a residual connection and LayerNorm.

    `padding_mask` [B, T] (1 = token) hides padding keys; the Keras mask of the input is used when
    no padding_mask is given.

    Example:

    >>> import numpy as np
    >>> from rubert_tf.layers import TransformerEncoderBlock
    >>> block = TransformerEncoderBlock(num_heads=2, intermediate_size=32)
    >>> tuple(block(np.ones((2, 5, 16), "float32"), padding_mask=np.array([[1] * 5, [1, 1, 1, 0, 0]])).shape)
    (2, 5, 16)
    """

    def __init__(self, num_heads, intermediate_size, activation="gelu", dropout=0.1, attention_dropout=0.1,
                 layer_norm_epsilon=1e-12, normalize_first=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.intermediate_size = int(intermediate_size)
        self.activation = activation
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.normalize_first = bool(normalize_first)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True
        self.attention = None  # head size known in build
        self.attention_layer_norm = self._layer_norm("attention_layer_norm")
        self._make_common(activation, dropout)

    def build(self, inputs_shape):
        hidden = inputs_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(f"{self.name}: hidden size {hidden} is not a multiple of num_heads {self.num_heads}")
        self.attention = MultiHeadAttention(
            self.num_heads, hidden // self.num_heads, dropout=self.attention_dropout, name="attention",
            dtype=self.dtype_policy, kernel_initializer=self._initializer())
        self.attention.build(inputs_shape)
        self.attention_layer_norm.build(inputs_shape)
        self._build_feed_forward(inputs_shape)
        super().build(inputs_shape)

    def call(self, inputs, padding_mask=None, attention_mask=None, training=None, mask=None):
        if padding_mask is None and mask is not None:
            padding_mask = mask
        x = self._residual(
            inputs,
            lambda h: self.attention(h, padding_mask=padding_mask, attention_mask=attention_mask, training=training),
            self.attention_layer_norm, training)
        return self._residual(x, self._feed_forward, self.output_layer_norm, training)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "activation": self.activation,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "normalize_first": self.normalize_first,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="rubert_tf")
class TransformerDecoderBlock(_FeedForwardMixin, keras.layers.Layer):
    """Causal self-attention + cross-attention over the encoder output + feed-forward.

    The layer order and names follow HF's BertLayer with `add_cross_attention` (self-attention,
    cross-attention, intermediate, output), so BERT2BERT checkpoints map onto it.

    Call returns the decoder sequence; when a `self_attention_cache` or `cross_attention_cache` is
    given it returns `(output, self_attention_cache, cross_attention_cache)` for step-by-step decoding.

    Example:

    >>> import numpy as np
    >>> from rubert_tf.layers import TransformerDecoderBlock
    >>> block = TransformerDecoderBlock(num_heads=2, intermediate_size=32)
    >>> decoder, encoder = np.ones((2, 4, 16), "float32"), np.ones((2, 6, 16), "float32")
    >>> tuple(block(decoder, encoder, encoder_padding_mask=np.ones((2, 6), "int32")).shape)
    (2, 4, 16)
    """

    def __init__(self, num_heads, intermediate_size, activation="gelu", dropout=0.1, attention_dropout=0.1,
                 layer_norm_epsilon=1e-12, normalize_first=False, kernel_initializer="glorot_uniform",
                 use_cross_attention=True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.intermediate_size = int(intermediate_size)
        self.activation = activation
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.normalize_first = bool(normalize_first)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.use_cross_attention = bool(use_cross_attention)
        self.supports_masking = True
        self.self_attention = None
        self.cross_attention = None
        self.self_attention_layer_norm = self._layer_norm("self_attention_layer_norm")
        self.cross_attention_layer_norm = self._layer_norm("cross_attention_layer_norm") if use_cross_attention else None
        self._make_common(activation, dropout)

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        hidden = decoder_sequence_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(f"{self.name}: hidden size {hidden} is not a multiple of num_heads {self.num_heads}")
        head_size = hidden // self.num_heads
        self.self_attention = MultiHeadAttention(
            self.num_heads, head_size, dropout=self.attention_dropout, name="self_attention",
            dtype=self.dtype_policy, kernel_initializer=self._initializer())
        self.self_attention.build(decoder_sequence_shape)
        self.self_attention_layer_norm.build(decoder_sequence_shape)
        if self.use_cross_attention:
            encoder_sequence_shape = encoder_sequence_shape or decoder_sequence_shape
            self.cross_attention = MultiHeadAttention(
                self.num_heads, head_size, dropout=self.attention_dropout, name="cross_attention",
                dtype=self.dtype_policy, kernel_initializer=self._initializer())
            self.cross_attention.build(decoder_sequence_shape, encoder_sequence_shape)
            self.cross_attention_layer_norm.build(decoder_sequence_shape)
        self._build_feed_forward(decoder_sequence_shape)
        super().build(decoder_sequence_shape)

    def call(self, decoder_sequence, encoder_sequence=None, decoder_padding_mask=None, encoder_padding_mask=None,
             self_attention_cache=None, self_attention_cache_update_index=None, cross_attention_cache=None,
             training=None, mask=None):
        if decoder_padding_mask is None and mask is not None:
            decoder_padding_mask = mask
        use_cache = self_attention_cache is not None or cross_attention_cache is not None
        caches = {}

        def self_attend(h):
            result = self.self_attention(
                h, padding_mask=decoder_padding_mask, use_causal_mask=True, cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index, training=training)
            if self_attention_cache is not None:
                result, caches["self"] = result
            return result

        def cross_attend(h):
            result = self.cross_attention(
                h, encoder_sequence, padding_mask=encoder_padding_mask, cache=cross_attention_cache,
                training=training)
            if cross_attention_cache is not None:
                result, caches["cross"] = result
            return result

        x = self._residual(decoder_sequence, self_attend, self.self_attention_layer_norm, training)
        if self.use_cross_attention:
            if encoder_sequence is None and cross_attention_cache is None:
                raise ValueError(f"{self.name}: cross-attention needs `encoder_sequence` or `cross_attention_cache`")
            x = self._residual(x, cross_attend, self.cross_attention_layer_norm, training)
        x = self._residual(x, self._feed_forward, self.output_layer_norm, training)
        if use_cache:
            return x, caches.get("self"), caches.get("cross")
        return x

    def compute_mask(self, decoder_sequence, mask=None):
        return mask

    def compute_output_shape(self, decoder_sequence_shape, encoder_sequence_shape=None):
        return decoder_sequence_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "activation": self.activation,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "normalize_first": self.normalize_first,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "use_cross_attention": self.use_cross_attention,
        }
