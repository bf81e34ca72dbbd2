"""`load_model(cls, name_or_path)`: any RuBERT checkpoint -> a Keras model with its weights.

Steps: resolve the directory (local or hub) -> read the config -> build the model -> read the
weights as {HF name: array} (HF safetensors > HF .bin > TF1) -> align names with the model's
`hf_weight_map()` -> check everything -> assign.

Strict by default: a wrong shape, a missing required weight or an unknown tensor is an error.
Only what may legitimately differ between architectures is tolerated, and always logged:
  - missing `hf_optional_weights` (pooler, task heads) keep their random init (WARNING);
  - unused `hf_ignored_weights` (other models' heads, position_ids buffers) are dropped (INFO).
A model class overrides either by defining a class attribute of the same name (fnmatch patterns
matched against its HF names), e.g. a classifier whose head may be absent from the checkpoint.
"""

import fnmatch
import logging
import os
import re

import numpy as np

from rubert_tf import hub
from rubert_tf.checkpoints.hf import CheckpointError, read_hf_weights
from rubert_tf.checkpoints.tf1 import find_tf1_checkpoint, read_tf1_weights
from rubert_tf.config import RuBertConfig

logger = logging.getLogger(__name__)

# In preference order.
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")

# Model weights a checkpoint may lack: BertForMaskedLM has no pooler, a BertModel has no heads.
DEFAULT_OPTIONAL_WEIGHTS = ("pooler.*", "*.pooler.*", "cls.*", "classifier.*", "qa_outputs.*")
# Checkpoint tensors a model may not use: heads of other BERT models (and of ELECTRA's discriminator and
# generator), and buffers.
DEFAULT_IGNORED_WEIGHTS = ("pooler.*", "*.pooler.*", "cls.*", "classifier.*", "qa_outputs.*",
                           "discriminator_predictions.*", "generator_predictions.*", "generator_lm_head.*",
                           "*position_ids")
# Tied copies transformers keeps in state_dict(): {copy: the weight it is tied to}.
TIED_WEIGHTS = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                "cls.predictions.decoder.bias": "cls.predictions.bias",
                "generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}

# Body of the encoder, recognised after any prefix ("bert.", "electra.", "encoder.", ...); ELECTRA's
# embeddings_project (factorised embeddings) belongs to it.
_ENCODER_PARTS = ("embeddings.", "embeddings_project.", "encoder.", "pooler.")
_WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


def load_model(cls, name_or_path, **kwargs):
    """Build `cls(config, **kwargs)` from a checkpoint directory or hub id and load its weights."""
    directory = hub.resolve(name_or_path)
    find_weights(directory)  # before the config, so an empty directory lists what it should hold
    config = RuBertConfig.from_pretrained(directory)
    tensors, path = read_weights(directory)  # before building, so a broken file fails fast
    model = cls(config, **kwargs)
    load_weights(model, tensors, path)
    return model


def find_weights(directory):
    """(kind, path) of the checkpoint in `directory`, kind "hf" or "tf1"."""
    for name in HF_WEIGHT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return "hf", path
    prefix = find_tf1_checkpoint(directory)
    if prefix:
        return "tf1", prefix
    raise FileNotFoundError(
        f"{directory}: no model weights found; looked for {', '.join(HF_WEIGHT_FILES)} (HuggingFace) "
        "and bert_model.ckpt.index or a `checkpoint` file (TF1), each with a config.json or "
        "bert_config.json beside it")


def read_weights(directory):
    """({HF name: np.ndarray}, path it came from) for the checkpoint in `directory`."""
    kind, path = find_weights(directory)
    tensors = read_hf_weights(path) if kind == "hf" else read_tf1_weights(path)
    return tensors, path


# ---- names ---------------------------------------------------------------------------------

def _encoder_prefix(names):
    """"bert." for BertFor* names ("electra." for ElectraFor*), "" for BertModel / ElectraModel names, None
    if there are no word embeddings."""
    for name in names:
        if name.endswith(_WORD_EMBEDDINGS):
            return name[: -len(_WORD_EMBEDDINGS)]
    return None


def normalize_names(tensors, model_names):
    """Rename checkpoint tensors to the model's conventions: legacy LayerNorm gamma/beta, and the
    `bert.` (or Electra's `electra.`) prefix added, stripped or swapped so BertModel, BertFor*, ElectraModel
    and ElectraFor* checkpoints fit any model.
    Returns the renamed tensors and {new name: name in the file} for messages."""
    legacy = {}
    for name in tensors:
        new = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        legacy[re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", new)] = name
    have, want = _encoder_prefix(legacy), _encoder_prefix(model_names)
    file_names = {}
    for name, original in legacy.items():
        if have is not None and want is not None and have != want and name.startswith(have) \
                and name[len(have):].startswith(_ENCODER_PARTS):
            name = want + name[len(have):]
        file_names[name] = original
    return {name: tensors[original] for name, original in file_names.items()}, file_names


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _listing(names, limit=20):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# ---- loading ---------------------------------------------------------------------------------

def load_weights(model, tensors, source="checkpoint"):
    """Assign {HF name: array} to `model.hf_weight_map()`; see the module docstring for the rules."""
    weight_map = model.hf_weight_map()
    optional = getattr(model, "hf_optional_weights", DEFAULT_OPTIONAL_WEIGHTS)
    ignored = getattr(model, "hf_ignored_weights", DEFAULT_IGNORED_WEIGHTS)
    tensors, file_names = normalize_names(tensors, weight_map)
    model_name = type(model).__name__

    missing = sorted(set(weight_map) - set(tensors))
    missing_required = [name for name in missing if not _matches(name, optional)]
    unused = sorted(set(tensors) - set(weight_map))
    tied = [name for name in unused if TIED_WEIGHTS.get(name) in weight_map and TIED_WEIGHTS[name] in tensors]
    unknown = [name for name in unused if name not in tied and not _matches(name, ignored)]
    problems = []
    if missing_required:
        problems.append(f"missing weights {model_name} needs: {_listing(missing_required)}")
    if unknown:
        problems.append(f"unexpected tensors, not part of a BERT checkpoint {model_name} knows: "
                        f"{_listing(file_names[name] for name in unknown)}")
    problems += [_shape_problem(file_names[name], tensors[name], *weight_map[name])
                 for name in weight_map if name in tensors]
    problems = [problem for problem in problems if problem]
    if problems:
        raise CheckpointError(f"{source}: cannot load into {model_name}:\n  " + "\n  ".join(problems))

    for name in tied:
        # The model shares one variable, as transformers does with tie_word_embeddings=True.
        if not np.array_equal(tensors[name], tensors[TIED_WEIGHTS[name]]):
            logger.warning("%s: %s differs from %s, to which %s ties it; using %s",
                           source, name, TIED_WEIGHTS[name], model_name, TIED_WEIGHTS[name])
    if missing:
        logger.warning("%s: not in the checkpoint, left randomly initialised in %s: %s",
                       source, model_name, _listing(missing))
    dropped = [name for name in unused if name not in tied]
    if dropped:
        logger.info("%s: tensors %s does not use (ignored): %s",
                    source, model_name, _listing(file_names[name] for name in dropped))

    for name, (variable, transpose) in weight_map.items():
        if name in tensors:
            value = tensors[name].T if transpose else tensors[name]
            variable.assign(np.asarray(value, dtype=variable.dtype))
    return model


def _shape_problem(name, value, variable, transpose):
    expected = tuple(variable.shape)[::-1] if transpose else tuple(variable.shape)
    if tuple(value.shape) == expected:
        return None
    return (f"tensor '{name}' has shape {tuple(value.shape)}, but Keras variable '{variable.path}' "
            f"needs {expected} (HF layout; Keras shape {tuple(variable.shape)})")
