"""Training machinery shared by every task: optimizer recipe and schedules, strategy selection
(tf.distribute, mixed precision, gradient accumulation), fault-tolerant callbacks, the runner that
finetune and pretrain share, and the Keras patches a multi-replica `fit` needs (keras_fixes)."""

from rubert_tf.training.adamw import AdamW
from rubert_tf.training.callbacks import (BackupAndRestore, CheckpointStore, PeriodicCheckpoint, TensorBoard,
                                          restore_latest_good_checkpoint, resume_state, training_callbacks)
from rubert_tf.training import keras_fixes
from rubert_tf.training.keras_fixes import (disable_multi_worker_fit, disable_optimizer_fixes, enable_multi_worker_fit,
                                            enable_optimizer_fixes, multi_worker_fit)
from rubert_tf.training.optimizer import NO_DECAY_NAMES, create_optimizer
from rubert_tf.training.runner import TrainingRun
from rubert_tf.training.schedules import SCHEDULES, WarmupDecay, WarmupLinearDecay, default_schedule
from rubert_tf.training.strategy import (AccumulatedStepsSchedule, create_strategy, enable_gradient_accumulation,
                                         global_batch_size, mixed_precision_policy, per_replica_batch_size,
                                         scaled_learning_rate, set_mixed_precision)

__all__ = [
    "AccumulatedStepsSchedule", "AdamW", "BackupAndRestore", "CheckpointStore", "NO_DECAY_NAMES", "PeriodicCheckpoint",
    "SCHEDULES", "TensorBoard", "TrainingRun", "WarmupDecay", "WarmupLinearDecay", "default_schedule", "create_optimizer", "create_strategy", "disable_multi_worker_fit",
    "disable_optimizer_fixes", "enable_gradient_accumulation", "enable_multi_worker_fit", "enable_optimizer_fixes",
    "global_batch_size", "keras_fixes", "mixed_precision_policy", "multi_worker_fit", "per_replica_batch_size", "restore_latest_good_checkpoint",
    "resume_state", "scaled_learning_rate", "set_mixed_precision", "training_callbacks",
]
