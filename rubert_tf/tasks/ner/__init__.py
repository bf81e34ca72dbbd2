"""Named-entity tagging as one task unit: settings.py (what travels with the model), tags.py (the tag
set), processing.py (text or words -> inputs, logits -> word tags and entities, the serving module,
`extract_entities` / `tag_words`), task.py (read, fine-tune, evaluate, predict). How tags group into
entities is defined once, in rubert_tf/metrics/ner.py."""

from rubert_tf.tasks.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "NerSettings": "settings", "NerTask": "task", "infer_labels": "tags", "check_labels": "tags",
    "extract_entities": "processing", "tag_words": "processing", "serving_module": "processing",
    "postprocessor": "processing", "text_preprocessor": "processing", "words_preprocessor": "processing",
})
