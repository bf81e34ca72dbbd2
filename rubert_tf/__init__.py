"""rubert_tf: RuBERT (Russian BERT) for TensorFlow 2 and Keras 3.

    import rubert_tf as rt
    tok = rt.RuBertTokenizer.from_pretrained(path)
    enc = rt.RuBertEncoder.from_pretrained(path)
"""

__version__ = "0.1.0"

from rubert_tf.config import PRESETS, RuBertConfig

# Nothing here imports TensorFlow (`rubert-tf --help` answers without it). Models (and with them Keras) load on first use: `rubert_tf.serving` reads SavedModels only and must
# not pull in the Keras models, exactly as TF Serving does not.
_LAZY = {
    "RuBertEncoder": "rubert_tf.models.encoder",
    "RuBertForMaskedLM": "rubert_tf.models.masked_lm",
    "RuBertForReplacedTokenDetection": "rubert_tf.models.electra",
    "RuBertSeq2Seq": "rubert_tf.models.seq2seq",
    "RuBertClassifier": "rubert_tf.models.classifier",
    "RuBertQuestionAnswerer": "rubert_tf.models.question_answerer",
    "RuBertSentenceEncoder": "rubert_tf.models.sentence_encoder",
    "RuBertTokenClassifier": "rubert_tf.models.token_classifier",
    # The tokenizer pulls in tensorflow_text.
    "RuBertTokenizer": "rubert_tf.tokenizer",
    "train_vocab": "rubert_tf.vocab_training",
    # `rt.export(model, tok, "savedmodels/x")`: the function of the subpackage of the same name (which
    # is callable itself, so the name works whichever of the two Python bound it to).
    "export": "rubert_tf.export",
    # LiteRT deploy folders (network as .tflite, optionally int8): export and the text-in runner.
    "export_litert": "rubert_tf.export.litert",
    "LiteRTModel": "rubert_tf.export.litert",
}

__all__ = ["PRESETS", "RuBertClassifier", "RuBertConfig", "RuBertEncoder", "RuBertForMaskedLM",
           "RuBertForReplacedTokenDetection", "RuBertQuestionAnswerer", "RuBertSentenceEncoder", "RuBertSeq2Seq", "RuBertTokenClassifier",
           "RuBertTokenizer", "LiteRTModel", "export", "export_litert", "train_vocab"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rubert_tf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
