"""Question + context -> windows -> start/end logits -> answers, as one graph: what
`RuBertQuestionAnswerer.answer`, evaluate and predict run, and what export saves.

    module = serving_module(model, tokenizer, settings)     # signature: question, context -> answers
    outputs = module("serving_default", question=["Кто?"], context=["Мама мыла раму."])
    results = answer(model, ["Кто?"], ["Мама мыла раму."])   # the same module, as Python dicts

Outputs per question: see rubert_tf.tasks.qa.spans.postprocessor (answer, start, end, score,
null_score, windows, truncated).
"""

import numpy as np
import tensorflow as tf

from rubert_tf.tasks.module import TaskModule, cached_module
from rubert_tf.tasks.qa.settings import QuestionAnsweringSettings
from rubert_tf.tasks.qa.spans import postprocessor
from rubert_tf.tasks.qa.windows import MODEL_INPUTS, preprocessor


def serving_module(model, tokenizer, settings):
    """TaskModule with "serving_default" = post(head(pre(question, context)))."""
    module = TaskModule(model, tokenizer, settings)
    preprocess = preprocessor(tokenizer, settings)
    postprocess = postprocessor(settings)

    @tf.autograph.experimental.do_not_convert  # plain TF ops: autograph's (slow) conversion is not needed
    def answer_questions(question, context):
        windows = preprocess(question, context)
        logits = module.model({key: windows[key] for key in MODEL_INPUTS}, training=False)
        return postprocess(windows, logits["start_logits"], logits["end_logits"], context)

    module.add_signature("serving_default", answer_questions, ["question", "context"])
    return module


def module_for(model, settings):
    """The model's serving module for these settings, built (and traced) once per process."""
    return cached_module(model, model._require_tokenizer(), settings, serving_module)


def run(model, settings, questions, contexts, batch_size=16):
    """The serving module on Python strings, `batch_size` questions at a time -> dict of numpy arrays [N]."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    module = module_for(model, settings)
    chunks = [module("serving_default", question=questions[begin:begin + batch_size],
                     context=contexts[begin:begin + batch_size])
              for begin in range(0, len(questions), batch_size)]
    if not chunks:
        return {}
    return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}


def as_results(outputs):
    """The serving outputs -> one dict per question: {"answer", "start", "end", "score", "null_score",
    "truncated"}; no answer: "", None offsets, and the null score as score."""
    results = []
    for row in range(len(outputs.get("answer", []))):
        found = int(outputs["start"][row]) >= 0
        results.append({
            "answer": outputs["answer"][row].decode("utf-8"),
            "start": int(outputs["start"][row]) if found else None,
            "end": int(outputs["end"][row]) if found else None,
            "score": float(outputs["score"][row]),
            "null_score": float(outputs["null_score"][row]),
            "truncated": bool(outputs["truncated"][row]),
        })
    return results


def answer(model, questions, contexts, settings=None, batch_size=16):
    """Raw strings in, one dict per question out (a single dict for a single question); `settings` is a
    QuestionAnsweringSettings or a dict of overrides of what fine-tuning stored."""
    if not isinstance(settings, QuestionAnsweringSettings):
        settings = QuestionAnsweringSettings.resolve(model, settings)
    single = isinstance(questions, str)
    questions = [questions] if single else list(questions)
    contexts = [contexts] if isinstance(contexts, str) else list(contexts)
    if len(questions) != len(contexts):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
    for name, texts in (("question", questions), ("context", contexts)):
        for number, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name} {number} must be a str, got {type(text).__name__}: {text!r:.80}")
    results = as_results(run(model, settings, questions, contexts, batch_size))
    return results[0] if single else results
