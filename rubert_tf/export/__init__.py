"""SavedModel export in the folder layout TF Serving reads: `BASE/NAME/<integer version>/`.

    import rubert_tf as rt
    path = rt.export(classifier, tokenizer, "savedmodels/sentiment")   # -> savedmodels/sentiment/1

A version is written to a hidden temporary folder beside the others and renamed into place, so a
server polling the folder never sees a half-written version (tensorflow/serving#1086).
"""

import os
import shutil
import sys
import types

import tensorflow as tf

from rubert_tf.export.model_config import write_model_config
from rubert_tf.export.staging import remove_stale_staging, staging_folder
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


# Keyword arguments of earlier releases -> the task setting they set.
_SETTING_ALIASES = {"text_pair": "text_pair", "max_answer_length": "max_answer_length",
                    "allow_no_answer": "version_2_with_negative", "max_length": "max_length"}


def build_serving_module(model, tokenizer, settings=None, generation=None):
    """The task unit's TaskModule for `model`: which task is what fine-tuning stored in its config,
    else the one its class serves (`task_name`); `settings` (a dict of overrides, not None) win over the
    stored ones and are checked against them."""
    from rubert_tf.tasks import task_of_model

    task = task_of_model(model)
    if generation is not None:
        if task.name != "seq2seq":
            raise ValueError(f"`generation` is for seq2seq models, not {task.name}")
        return task.serving_module(model, tokenizer, settings, generation=generation)
    return task.serving_module(model, tokenizer, settings)


def export(model, tokenizer=None, base_path="savedmodels/model", version=None, settings=None, warmup=True,
           generation=None, **setting_overrides):
    """Write `model` (+ tokenizer, in the graph) as `base_path/<version>`; returns that folder.

    The signature is the task's own `post(head(pre(text)))` (rubert_tf.tasks), with the settings
    fine-tuning stored in the model's config; `settings` (a dict) or keywords override them:
    max_length, text_pair (classifier takes `text` and `text_pair`), max_answer_length,
    allow_no_answer (QA may answer ""), ... An override that contradicts how the model was trained
    (a pair model exported for single texts) is an error.
    version: an int, or None for the next free one (existing versions are never overwritten).
    warmup: write `assets.extra/tf_serving_warmup_requests` so TF Serving traces the graph at load.
    generation: for a RuBertSeq2Seq, the search run inside the graph, e.g. {"num_beams": 4, "max_length": 64}.
    """
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("export needs a tokenizer (pass one, or load the model with from_pretrained)")
    overrides = dict(settings or {})
    for key, value in setting_overrides.items():
        if key not in _SETTING_ALIASES:
            raise TypeError(f"export() got an unexpected keyword argument {key!r}")
        if value is not None and value is not False:  # False = the old default "not asked for"
            overrides[_SETTING_ALIASES[key]] = value
    version = next_version(base_path) if version is None else int(version)
    if version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version}")
    final = os.path.join(base_path, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; versions are never overwritten (omit `version` for the next)")

    module = build_serving_module(model, tokenizer, overrides, generation)
    os.makedirs(base_path, exist_ok=True)
    remove_stale_staging(base_path)
    staging = staging_folder(base_path, version)  # not an integer: servers skip it
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


class _CallableModule(types.ModuleType):
    """`rt.export(...)` calls `export` even where Python bound `rubert_tf.export` to this package (it
    does when a submodule such as rubert_tf.export.ops is imported), since `rubert_tf` loads it lazily."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
