"""Seq2SeqConfig lives in rubert_tf/seq2seq_config.py, beside RuBertConfig: checkpoints need it and may not
import models. This name stays importable."""

from rubert_tf.seq2seq_config import ARCHITECTURES, Seq2SeqConfig

__all__ = ["ARCHITECTURES", "Seq2SeqConfig"]
