"""Original TF1 checkpoints (google-research/bert, DeepPavlov's RuBERT tarballs) -> HF names.

`bert_model.ckpt.index` + `.data-*` are read with tf.train.load_checkpoint and renamed to the
HF BertForPreTraining names, with kernels transposed from TF's [in, out] to HF's [out, in], so
the loader treats every format the same way.
"""

import logging
import os
import re

import numpy as np

from rubert_tf.checkpoints.hf import CheckpointError

logger = logging.getLogger(__name__)

# Names that are not a slash-separated path of the model: google-research's heads.
_HEADS = {
    "cls/predictions/output_bias": ("cls.predictions.bias", False),
    # output_weights are stored [out, in] already (they are used with transpose_b=True).
    "cls/seq_relationship/output_weights": ("cls.seq_relationship.weight", False),
    "cls/seq_relationship/output_bias": ("cls.seq_relationship.bias", False),
    "cls/squad/output_weights": ("qa_outputs.weight", False),
    "cls/squad/output_bias": ("qa_outputs.bias", False),
    # run_classifier.py's head sits at the top level.
    "output_weights": ("classifier.weight", False),
    "output_bias": ("classifier.bias", False),
}

# Optimizer slots and training bookkeeping: never part of the model.
_OPTIMIZER_SUFFIXES = ("/adam_m", "/adam_v", "/Adam", "/Adam_1", "/Momentum", "/ExponentialMovingAverage")
_BOOKKEEPING = ("global_step", "good_steps", "loss_scale", "current_loss_scale")

_LAST_PART = {"kernel": ("weight", True), "gamma": ("weight", False), "beta": ("bias", False),
              "bias": ("bias", False)}


def tf1_to_hf_name(name):
    """`bert/encoder/layer_3/attention/self/query/kernel` -> ("bert.encoder.layer.3.attention.self.query.weight",
    transpose=True); None for variables that are not model weights."""
    if name.endswith(_OPTIMIZER_SUFFIXES) or name.split("/")[-1] in _BOOKKEEPING:
        return None
    if name in _HEADS:
        return _HEADS[name]
    if not name.startswith(("bert/", "cls/")):
        return None
    parts = [re.sub(r"^layer_(\d+)$", r"layer.\1", part) for part in name.split("/")]
    last, transpose = _LAST_PART.get(parts[-1], (None, False))
    if last is not None:
        parts[-1] = last
    elif parts[-1].endswith("_embeddings"):
        parts.append("weight")
    # Anything else keeps its name, so the loader reports it as unexpected instead of losing it.
    return ".".join(parts), transpose


def find_tf1_checkpoint(directory):
    """The checkpoint prefix in `directory` (bert_model.ckpt, or the one a `checkpoint` file names)."""
    prefix = os.path.join(directory, "bert_model.ckpt")
    if os.path.isfile(prefix + ".index"):
        return prefix
    if os.path.isfile(os.path.join(directory, "checkpoint")):
        import tensorflow as tf

        return tf.train.latest_checkpoint(directory)
    return None


def read_tf1_weights(prefix):
    """{HF name: np.ndarray in HF layout} from a TF1 checkpoint prefix."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as error:
        raise CheckpointError(f"{prefix}: not a readable TF checkpoint ({error})") from error
    tensors, skipped = {}, []
    for tf_name in sorted(reader.get_variable_to_shape_map()):
        mapped = tf1_to_hf_name(tf_name)
        if mapped is None:
            skipped.append(tf_name)
            continue
        hf_name, transpose = mapped
        value = reader.get_tensor(tf_name)
        tensors[hf_name] = np.ascontiguousarray(value.T) if transpose else value
    if skipped:
        logger.info("%s: skipped %d non-model variables (optimizer slots, global_step, ...): %s",
                    prefix, len(skipped), ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else ""))
    return tensors
