"""Extractive question answering (SQuAD v1.1 / v2.0) as one task unit: settings.py (what travels with
the model), windows.py (question + context -> strided windows, in the graph), spans.py (start/end
logits -> answers, in the graph), processing.py (the serving module and the eager `answer` that runs
it), task.py (read, fine-tune, evaluate, predict)."""

from rubert_tf.tasks.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "QuestionAnsweringSettings": "settings", "QuestionAnsweringTask": "task", "answer": "processing",
    "serving_module": "processing", "preprocessor": "windows", "postprocessor": "spans",
})
