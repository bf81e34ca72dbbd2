"""SavedModel export in the folder layout TF Serving reads: `BASE/NAME/<integer version>/`.

    import rubert_tf as rt
    path = rt.export(classifier, tokenizer, "savedmodels/sentiment")   # -> savedmodels/sentiment/1

A version is written to a hidden temporary folder beside the others and renamed into place, so a
server polling the folder never sees a half-written version (tensorflow/serving#1086).
"""

import os
import shutil
import uuid

import tensorflow as tf

from rubert_tf.export import signatures
from rubert_tf.export.model_config import write_model_config
from rubert_tf.export.warmup import write_warmup_requests

__all__ = ["export", "existing_versions", "next_version", "write_model_config"]

DEFAULT_WARMUP_TEXT = "Москва — столица России."


def existing_versions(base_path):
    """Integer version folders under `base_path`, as TF Serving parses them ("01" is 1)."""
    if not os.path.isdir(base_path):
        return []
    versions = []
    for name in os.listdir(base_path):
        if name.isdigit() and os.path.isdir(os.path.join(base_path, name)):
            versions.append(int(name))
    return sorted(versions)


def next_version(base_path):
    versions = existing_versions(base_path)
    return versions[-1] + 1 if versions else 1


def build_serving_module(model, tokenizer, max_length=512, text_pair=False, max_answer_length=30,
                         allow_no_answer=False, generation=None):
    """The tf.Module with signatures for this kind of model."""
    from rubert_tf.models.classifier import RuBertClassifier
    from rubert_tf.models.encoder import RuBertEncoder
    from rubert_tf.models.question_answerer import RuBertQuestionAnswerer
    from rubert_tf.models.sentence_encoder import RuBertSentenceEncoder
    from rubert_tf.models.seq2seq import RuBertSeq2Seq
    from rubert_tf.models.token_classifier import RuBertTokenClassifier

    if isinstance(model, RuBertSeq2Seq):
        return signatures.seq2seq_module(model, tokenizer, max_length, generation)
    if isinstance(model, RuBertClassifier):
        return signatures.classifier_module(model, tokenizer, max_length, text_pair=text_pair)
    if isinstance(model, RuBertTokenClassifier):
        return signatures.token_classifier_module(model, tokenizer, max_length)
    if isinstance(model, RuBertQuestionAnswerer):
        return signatures.question_answerer_module(model, tokenizer, max_length, max_answer_length, allow_no_answer)
    if isinstance(model, (RuBertSentenceEncoder, RuBertEncoder)):
        return signatures.embedding_module(model, tokenizer, max_length)
    raise TypeError(f"cannot export a {type(model).__name__}: expected a RuBERT task model or encoder")


def export(model, tokenizer=None, base_path="savedmodels/model", version=None, max_length=512, text_pair=False,
           max_answer_length=30, allow_no_answer=False, warmup=True, generation=None):
    """Write `model` (+ tokenizer, in the graph) as `base_path/<version>`; returns that folder.

    version: an int, or None for the next free one (existing versions are never overwritten).
    text_pair: classifier signature takes `text` and `text_pair` (sentence-pair models).
    warmup: write `assets.extra/tf_serving_warmup_requests` so TF Serving traces the graph at load.
    generation: for a RuBertSeq2Seq, the search run inside the graph, e.g. {"num_beams": 4, "max_length": 64}.
    """
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("export needs a tokenizer (pass one, or load the model with from_pretrained)")
    version = next_version(base_path) if version is None else int(version)
    if version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version}")
    final = os.path.join(base_path, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; versions are never overwritten (omit `version` for the next)")

    module = build_serving_module(model, tokenizer, max_length, text_pair, max_answer_length, allow_no_answer,
                                  generation)
    os.makedirs(base_path, exist_ok=True)
    staging = os.path.join(base_path, f".tmp-{version}-{uuid.uuid4().hex[:8]}")  # not an integer: servers skip it
    try:
        tf.saved_model.save(module, staging, signatures=module.serving_functions)
        if warmup:
            write_warmup_requests(staging, module.serving_functions, DEFAULT_WARMUP_TEXT,
                                  model_name=os.path.basename(os.path.normpath(base_path)))
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
