"""Sequence-to-sequence (translation, summarization) as one task unit: settings.py, processing.py
(text -> generated text in one graph, the serving module), task.py (read, fine-tune, evaluate, predict)."""

from rubert_tf.tasks.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Seq2SeqSettings": "settings", "Seq2SeqTask": "task", "serving_module": "processing", "generate": "processing",
})
