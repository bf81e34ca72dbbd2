"""Fine-tuning tasks by name: each module defines one `Task` (see base.py)."""

import importlib

# name -> "module:Class"; modules are imported on first use so one task's deps never slow another.
TASKS = {
    "classification": "rubert_tf.tasks.classification:ClassificationTask",
    "ner": "rubert_tf.tasks.ner:NerTask",
    "qa": "rubert_tf.tasks.qa:QuestionAnsweringTask",
    "sentence": "rubert_tf.tasks.sentence:SentenceEmbeddingTask",
    "seq2seq": "rubert_tf.tasks.seq2seq:Seq2SeqTask",
}


def get_task(name):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
