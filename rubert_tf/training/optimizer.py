"""The default fine-tuning recipe: AdamW, no decay on LayerNorm and biases, warmup + linear decay, clipping."""

from rubert_tf.training.adamw import AdamW
from rubert_tf.training.schedules import WarmupLinearDecay

# Keras variable names (not paths) that BERT excludes from weight decay: biases and LayerNorm's gamma/beta.
NO_DECAY_NAMES = ["bias", "gamma", "beta"]


def create_optimizer(learning_rate=5e-5, total_steps=1000, warmup_ratio=0.1, weight_decay=0.01,
                     clipnorm=1.0, epsilon=1e-6, sparse_updates=False):
    """AdamW as in BERT fine-tuning; `total_steps` is the number of optimizer steps of the whole run.

    The optimizer is rubert_tf.training.AdamW (Keras' AdamW with a fused update); `sparse_updates=True`
    updates only the embedding rows of the tokens in each batch (lazy Adam: faster with a large
    vocabulary, not exactly AdamW; see rubert_tf/training/adamw.py).

    Patches nothing: under a strategy with several replicas, fit inside
    rubert_tf.training.keras_fixes.fixes_for(strategy) to train like one device."""
    schedule = WarmupLinearDecay(learning_rate, int(round(warmup_ratio * total_steps)), total_steps)
    optimizer = AdamW(learning_rate=schedule, weight_decay=weight_decay, epsilon=epsilon, global_clipnorm=clipnorm,
                      sparse_updates=sparse_updates)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    return optimizer
