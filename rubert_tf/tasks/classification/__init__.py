"""Sequence classification (multi-class, multi-label, text pairs) as one task unit:
settings.py (what travels with the model), processing.py (text -> inputs, logits -> labels, the
serving module), metrics.py (the field's scores), task.py (read, fine-tune, evaluate, predict)."""

from rubert_tf.tasks.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "ClassificationSettings": "settings", "ClassificationTask": "task", "classification_metrics": "metrics",
    "pos_neg_labels": "metrics", "classify": "processing", "serving_module": "processing",
    "label_list": "settings", "sort_labels": "task", "parse_label_map": "settings",
})
