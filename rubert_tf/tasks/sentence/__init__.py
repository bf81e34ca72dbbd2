"""Sentence embeddings as one task unit: settings.py, processing.py (text -> vector, the serving
module), task.py (in-batch-negatives fine-tuning, retrieval evaluation, predict)."""

from rubert_tf.tasks.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "SentenceSettings": "settings", "SentenceEmbeddingTask": "task", "MultipleNegativesRankingLoss": "task",
    "retrieval_scores": "task", "encode": "processing", "serving_module": "processing",
})
