"""Keras layers of rubert_tf; each is serialisable (get_config) and works under mixed precision."""

from rubert_tf.layers.activations import get_activation
from rubert_tf.layers.attention import MultiHeadAttention
from rubert_tf.layers.dropout import Dropout
from rubert_tf.layers.embeddings import TokenEmbedding
from rubert_tf.layers.positional import PositionEmbedding, SinusoidalPositionalEncoding
from rubert_tf.layers.transformer import TransformerDecoderBlock, TransformerEncoderBlock

__all__ = [
    "Dropout",
    "MultiHeadAttention",
    "PositionEmbedding",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "get_activation",
]
