"""rubert_tf: RuBERT (Russian BERT) for TensorFlow 2 and Keras 3.

    import rubert_tf as rt
    tok = rt.RuBertTokenizer.from_pretrained(path)
    enc = rt.RuBertEncoder.from_pretrained(path)
"""

__version__ = "0.1.0"

from rubert_tf.config import PRESETS, RuBertConfig
# The function shadows its subpackage's name on purpose: `rt.export(model, tok, "savedmodels/x")`.
from rubert_tf.export import export
from rubert_tf.models import RuBertEncoder, RuBertForMaskedLM, RuBertSeq2Seq
from rubert_tf.models.classifier import RuBertClassifier
from rubert_tf.models.question_answerer import RuBertQuestionAnswerer
from rubert_tf.models.sentence_encoder import RuBertSentenceEncoder
from rubert_tf.models.token_classifier import RuBertTokenClassifier

__all__ = ["PRESETS", "RuBertClassifier", "RuBertConfig", "RuBertEncoder", "RuBertForMaskedLM",
           "RuBertQuestionAnswerer", "RuBertSentenceEncoder", "RuBertSeq2Seq", "RuBertTokenClassifier",
           "RuBertTokenizer", "export", "train_vocab"]


def __getattr__(name):
    # The tokenizer pulls in tensorflow_text; import it on first use so `import rubert_tf` stays light.
    if name == "RuBertTokenizer":
        from rubert_tf.tokenizer import RuBertTokenizer

        return RuBertTokenizer
    if name == "train_vocab":
        from rubert_tf.vocab_training import train_vocab

        return train_vocab
    raise AttributeError(f"module 'rubert_tf' has no attribute {name!r}")
