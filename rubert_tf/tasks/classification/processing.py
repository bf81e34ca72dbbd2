"""Text -> classifier inputs -> labels, as one graph: what `classify` runs and what export saves.

    module = serving_module(model, tokenizer, settings)     # signature: text (, text_pair) -> answers
    outputs = module("serving_default", text=["Отличный фильм"])

Outputs per text: `probabilities` [B, num_labels] (softmax, or sigmoids when multi-label), `label_id`
and `label` (the most probable label), and for multi-label models `selected` [B, num_labels], the
labels at or above the threshold.
"""

import tensorflow as tf

from rubert_tf.tasks.module import TaskModule, cached_module, label_table


def preprocessor(tokenizer, settings):
    """(text[, text_pair]) string batches -> token_ids, segment_ids, padding_mask, padded to the longest."""

    def preprocess(text, text_pair=None):
        return tokenizer(text, text_pair, max_length=settings.max_length, padding="longest")

    return preprocess


def postprocessor(labels, settings):
    """logits [B, L] -> the answer tensors (see the module docstring)."""
    names = label_table(labels)

    def postprocess(logits):
        logits = tf.cast(logits, tf.float32)
        probabilities = tf.sigmoid(logits) if settings.multi_label else tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        outputs = {"probabilities": probabilities, "label": names.lookup(label_id), "label_id": label_id}
        if settings.multi_label:
            outputs["selected"] = probabilities >= settings.threshold
        return outputs

    return postprocess, names


def serving_module(model, tokenizer, settings):
    """TaskModule with "serving_default" = post(head(pre(text))); inputs `text` (and `text_pair` for pair models)."""
    module = TaskModule(model, tokenizer, settings)
    preprocess = preprocessor(tokenizer, settings)
    postprocess, module.labels = postprocessor(model.labels, settings)

    def classify_texts(text, text_pair=None):
        return postprocess(module.model(preprocess(text, text_pair), training=False)["logits"])

    if settings.text_pair:
        module.add_signature("serving_default", lambda text, text_pair: classify_texts(text, text_pair),
                             ["text", "text_pair"])
    else:
        module.add_signature("serving_default", lambda text: classify_texts(text), ["text"])
    return module


def module_for(model, settings):
    """The model's serving module for these settings, built once per process."""
    return cached_module(model, model._require_tokenizer(), settings, serving_module)


def run(model, settings, texts, text_pairs=None, batch_size=32):
    """The serving module on Python strings, `batch_size` at a time -> dict of numpy arrays [N, ...]."""
    import numpy as np

    module = module_for(model, settings)
    chunks = []
    for start in range(0, len(texts), batch_size):
        inputs = {"text": texts[start:start + batch_size]}
        if settings.text_pair:
            inputs["text_pair"] = text_pairs[start:start + batch_size]
        chunks.append(module("serving_default", **inputs))
    if not chunks:
        return {}
    return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}


def as_results(model, outputs):
    """The serving outputs -> one dict per text: label, label_id, score, probabilities (+ labels)."""
    results = []
    for row in range(len(outputs.get("label_id", []))):
        probabilities = outputs["probabilities"][row]
        best = int(outputs["label_id"][row])
        result = {"probabilities": {label: float(p) for label, p in zip(model.labels, probabilities)}}
        if "selected" in outputs:
            result["labels"] = [label for label, keep in zip(model.labels, outputs["selected"][row]) if keep]
        result.update(label=outputs["label"][row].decode("utf-8"), label_id=best, score=float(probabilities[best]))
        results.append(result)
    return results


def classify(model, texts, text_pairs=None, max_length=None, batch_size=32, threshold=None):
    """Raw strings in, one dict per text out: {"label", "label_id", "score", "probabilities"} (+ "labels"
    when multi-label). The settings fine-tuning stored apply (a pair model needs `text_pairs`)."""
    from rubert_tf.tasks.classification.settings import ClassificationSettings

    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if text_pairs is not None:
        text_pairs = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
        if len(text_pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text_pairs")
    settings = ClassificationSettings.resolve(model, {
        "max_length": max_length, "threshold": threshold, "text_pair": text_pairs is not None,
        "multi_label": bool(getattr(model, "multi_label", False))})
    results = as_results(model, run(model, settings, texts, text_pairs, batch_size))
    return results[0] if single else results
