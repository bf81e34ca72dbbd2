"""Tasks by name: each is one package (settings, pre/post-processing, metrics, the Task class).

`get_settings_class(name)` imports only the task's pure-Python settings module (no TensorFlow), so the
command line can list every task's flags fast; `get_task(name)` imports the whole unit.
"""

import importlib

TASKS = ("classification", "ner", "qa", "sentence", "seq2seq")
_TASK_CLASSES = {
    "classification": "ClassificationTask",
    "ner": "NerTask",
    "qa": "QuestionAnsweringTask",
    "sentence": "SentenceEmbeddingTask",
    "seq2seq": "Seq2SeqTask",
}


def _check(name):
    if name not in _TASK_CLASSES:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(_TASK_CLASSES)}")


def get_task(name):
    _check(name)
    return getattr(importlib.import_module(f"rubert_tf.tasks.{name}.task"), _TASK_CLASSES[name])()


def get_settings_class(name):
    _check(name)
    module = importlib.import_module(f"rubert_tf.tasks.{name}.settings")
    return next(value for value in vars(module).values()
                if isinstance(value, type) and getattr(value, "task", None) == name)


def task_of_model(model):
    """The task a model was fine-tuned for (stored settings), else the one its class serves."""
    from rubert_tf.tasks.settings import CONFIG_KEY

    stored = (getattr(getattr(model, "config", None), "extra", None) or {}).get(CONFIG_KEY) or {}
    name = stored.get("task") or getattr(type(model), "task_name", None)
    if name is None:
        raise TypeError(f"{type(model).__name__} serves no task (expected a RuBERT task model or encoder)")
    return get_task(name)
