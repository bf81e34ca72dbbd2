"""RuBERT models: the encoder and the task models built on it."""

from rubert_tf.models.encoder import RuBertEncoder
from rubert_tf.models.masked_lm import RuBertForMaskedLM

__all__ = ["RuBertEncoder", "RuBertForMaskedLM"]
