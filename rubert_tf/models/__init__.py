"""RuBERT models: the encoder and the task models built on it."""

from rubert_tf.models.encoder import RuBertEncoder
from rubert_tf.models.masked_lm import RuBertForMaskedLM
from rubert_tf.models.seq2seq import RuBertSeq2Seq

__all__ = ["RuBertEncoder", "RuBertForMaskedLM", "RuBertSeq2Seq"]
