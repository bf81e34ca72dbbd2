"""The default training recipe: AdamW, no decay on LayerNorm and biases, a warmup schedule, clipping."""

import logging

from rubert_tf.training.adamw import AdamW
from rubert_tf.training.schedules import WarmupDecay

logger = logging.getLogger(__name__)

# Keras variable names (not paths) that BERT excludes from weight decay: biases and LayerNorm's gamma/beta.
NO_DECAY_NAMES = ["bias", "gamma", "beta"]


def warmup_steps_for(total_steps, warmup_ratio=0.1, warmup_steps=None):
    """Warmup length in optimizer steps: `warmup_steps` when given, else round(warmup_ratio * total_steps)."""
    if warmup_steps is not None:
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if int(warmup_steps) > total_steps:
            logger.warning("warmup_steps=%d is longer than the run (%d optimizer steps): warming up over the whole "
                           "run", warmup_steps, total_steps)
        return min(int(warmup_steps), int(total_steps))
    if not 0.0 <= float(warmup_ratio) <= 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
    return int(round(float(warmup_ratio) * total_steps))


def check_schedule(learning_rate, schedule, warmup_ratio=0.1, warmup_steps=None, min_lr_ratio=0.0):
    """Raise for bad schedule arguments before any TensorFlow work (builds no optimizer)."""
    WarmupDecay(learning_rate, 1, 0, decay=schedule, min_lr_ratio=min_lr_ratio)
    warmup_steps_for(1, warmup_ratio, None)
    if warmup_steps is not None and int(warmup_steps) < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")


def create_optimizer(learning_rate=5e-5, total_steps=1000, warmup_ratio=0.1, weight_decay=0.01,
                     clipnorm=1.0, epsilon=1e-6, sparse_updates=False, schedule="linear", warmup_steps=None,
                     min_lr_ratio=0.0):
    """AdamW as in BERT fine-tuning; `total_steps` is the number of optimizer steps of the whole run.

    The rate warms up linearly over `warmup_steps` (or `warmup_ratio` of the run), then follows
    `schedule` ("constant", "linear", "cosine", "inverse_sqrt"; see rubert_tf.training.schedules.WarmupDecay)
    down to `min_lr_ratio * learning_rate`.

    The optimizer is rubert_tf.training.AdamW (Keras' AdamW with a fused update); `sparse_updates=True`
    updates only the embedding rows of the tokens in each batch (lazy Adam: faster with a large
    vocabulary, not exactly AdamW; see rubert_tf/training/adamw.py).

    Patches nothing: under a strategy with several replicas, fit inside
    rubert_tf.training.keras_fixes.fixes_for(strategy) to train like one device."""
    total_steps = int(total_steps)
    lr = WarmupDecay(learning_rate, total_steps, warmup_steps_for(total_steps, warmup_ratio, warmup_steps),
                     decay=schedule, min_lr_ratio=min_lr_ratio)
    optimizer = AdamW(learning_rate=lr, weight_decay=weight_decay, epsilon=epsilon, global_clipnorm=clipnorm,
                      sparse_updates=sparse_updates)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    return optimizer
