"""Training machinery shared by every task: optimizer recipe and schedules."""

from rubert_tf.training.optimizer import NO_DECAY_NAMES, create_optimizer
from rubert_tf.training.schedules import WarmupLinearDecay

__all__ = ["NO_DECAY_NAMES", "WarmupLinearDecay", "create_optimizer"]
