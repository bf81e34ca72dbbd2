"""The training run that `finetune` and `pretrain` share: strategy, seed, mixed precision, the Keras
patches the strategy needs, a guarded output folder, fault-tolerant `fit`, chief-only saving.

    with TrainingRun(out, strategy="mirrored", mixed_precision="bf16", batch_size=32) as run:
        with run.scope():
            model = build_and_compile()
        fitted = run.fit(model, data.repeat(), epochs=3, steps_per_epoch=100, batch_size=32)
        run.save(model, tokenizer, {**fitted.metrics, ...})

Entering the run, in this order: the output folder is checked (an interrupted run's backup/ needs
`resume=True`; a folder that already holds a model needs `overwrite=True`), the strategy is created
(first of all TensorFlow work: `num_logical_cpus` can split the CPU only before), the global batch
must divide over its replicas, the seed is set, the mixed-precision policy is set and the Keras
patches the strategy needs are switched on (rubert_tf.training.keras_fixes: none on one device).
Leaving it restores the dtype policy and the patches it found, also after an error.

This module knows models only as Keras models and data only as tf.data datasets: it imports no task,
model, data pipeline or command line.
"""

import contextlib
import dataclasses
import json
import os
import time

import keras

from rubert_tf.training import keras_fixes
from rubert_tf.training.callbacks import training_callbacks
from rubert_tf.training.time_limit import TimeLimit
from rubert_tf.training.strategy import (MIXED_PRECISION_POLICIES, create_strategy, mixed_precision_policy,
                                         set_mixed_precision, worker_info)

# A folder with one of these holds a model that a new run would overwrite.
MODEL_FILES = ("config.json", "model.safetensors")


def check_output_folder(out, resume=False, overwrite=False):
    """Refuse to write over what `out` holds: an interrupted run (its backup/) unless `resume`, a model
    (config.json / model.safetensors) unless `overwrite` or there is a backup to resume."""
    backup = os.path.join(out, "backup")
    if os.path.isdir(backup) and os.listdir(backup):
        if not resume:
            raise FileExistsError(f"{backup} holds the state of an interrupted run: pass resume=True (--resume) to "
                                  "continue it at the step it reached, or delete that folder to start over")
        return
    found = [name for name in MODEL_FILES if os.path.exists(os.path.join(out, name))]
    if found and not overwrite:
        raise FileExistsError(f"{out} already holds a model ({', '.join(found)}): pass overwrite=True (--overwrite) "
                              "to replace it, or choose another output folder")


def check_mixed_precision_name(mixed_precision):
    """Raise for an unknown name, naming the choices; without touching TF devices ("auto" would look
    at them, which must wait until the strategy has split the CPU)."""
    if mixed_precision and mixed_precision != "auto" and mixed_precision not in MIXED_PRECISION_POLICIES:
        mixed_precision_policy(mixed_precision)


@dataclasses.dataclass
class FitResult:
    history: keras.callbacks.History
    metrics: dict  # train_loss_first_epoch, train_loss_last_epoch, train_seconds (+ resumed_from_step)


class TrainingRun:
    """Context manager for one training run writing to `out` (see the module docstring).

    Args:
      strategy, num_logical_cpus: see rubert_tf.training.create_strategy.
      mixed_precision: None (float32), "auto", "bf16", "fp16" (see set_mixed_precision).
      batch_size: the global batch; must divide evenly over the replicas (checked when given).
      resume / overwrite: see `check_output_folder`.
    Inside: `strategy`, `replicas`, `policy` (the dtype policy name), `is_chief`."""

    def __init__(self, out, strategy="default", num_logical_cpus=None, mixed_precision=None, seed=0,
                 batch_size=None, resume=False, overwrite=False):
        check_mixed_precision_name(mixed_precision)
        self.out, self.strategy_name, self.num_logical_cpus = out, strategy, num_logical_cpus
        self.mixed_precision, self.seed, self.batch_size = mixed_precision, seed, batch_size
        self.resume, self.overwrite = resume, overwrite
        self.strategy = self.policy = self._restore = None

    def __enter__(self):
        check_output_folder(self.out, resume=self.resume, overwrite=self.overwrite)
        self.strategy = create_strategy(self.strategy_name, num_logical_cpus=self.num_logical_cpus)
        if self.batch_size is not None and self.batch_size % self.replicas:
            raise ValueError(f"batch_size={self.batch_size} (the global batch) is not divisible by the "
                             f"{self.replicas} replicas of the strategy")
        with contextlib.ExitStack() as stack:
            stack.callback(keras.mixed_precision.set_global_policy, keras.mixed_precision.global_policy())
            keras.utils.set_random_seed(self.seed)
            self.policy = set_mixed_precision(self.mixed_precision, self.strategy)
            stack.enter_context(keras_fixes.fixes_for(self.strategy))
            self._restore = stack.pop_all()
        return self

    def __exit__(self, *exc_info):
        self._restore.close()
        return False

    @property
    def replicas(self):
        return self.strategy.num_replicas_in_sync

    @property
    def is_chief(self):
        return worker_info(self.strategy)[2]

    def scope(self):
        """Build and compile the model in here."""
        return self.strategy.scope()

    def fit(self, model, data, epochs, steps_per_epoch, batch_size=None, sequence_length=None, backup_every=100,
            checkpoint_every=None, log_every=50, log_dir=None, callbacks=(), same_stream_on_every_strategy=False,
            max_minutes=None, **fit_kwargs):
        """`model.fit` on the endless stream `data` (`dataset.repeat()`: one iterator for every epoch, which
        exact resume needs) with the fault-tolerance callbacks (backups every `backup_every` steps,
        kept checkpoints every `checkpoint_every`, TensorBoard every `log_every`) before `callbacks`.

        `same_stream_on_every_strategy`: under a tf.distribute strategy Keras' fit first draws one batch
        from an iterator of its own to build the model, which moves a seeded shuffle on to its next
        permutation before training starts; with this flag one device does the same, so every strategy
        trains on the same batches.

        `max_minutes`: a wall-clock budget; training stops after the first step past it (metrics then hold
        "stopped_by_time_limit_after_steps", the steps this call trained)."""
        run_callbacks = training_callbacks(
            self.out, backup_every_steps=backup_every, checkpoint_every_steps=checkpoint_every, resume=self.resume,
            resume_data="stream", batch_size=batch_size, sequence_length=sequence_length, log_every_steps=log_every,
            log_dir=log_dir, strategy=self.strategy)
        if same_stream_on_every_strategy and getattr(model, "_distribute_strategy", None) is None:
            next(iter(data))
        progress = run_callbacks[0].progress
        limit = [TimeLimit(60.0 * max_minutes, progress=progress)] if max_minutes else []
        started = time.time()
        history = model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                            shuffle=False,  # the pipeline shuffles (seeded); Keras cannot shuffle a tf.data.Dataset
                            callbacks=run_callbacks + limit + list(callbacks or []), **fit_kwargs)
        losses = history.history.get("loss") or [float("nan")]
        metrics = {"train_loss_first_epoch": float(losses[0]), "train_loss_last_epoch": float(losses[-1]),
                   "train_seconds": round(time.time() - started, 1)}
        cut_short = steps_per_epoch is not None and progress.global_step < epochs * steps_per_epoch
        if limit and limit[0].stopped_at_step is not None and cut_short:  # not when the budget ran out on the last step
            metrics["stopped_by_time_limit_after_steps"] = limit[0].stopped_at_step
        resumed = progress.resumed_from
        if resumed is not None:
            metrics["resumed_from_step"] = int(resumed["global_step"])
        return FitResult(history=history, metrics=metrics)

    def save(self, model, tokenizer, metrics):
        """The chief writes `model` (save_pretrained, HF layout, with `tokenizer`) and metrics.json to `out`;
        returns whether this process wrote them."""
        if not self.is_chief:
            return False
        model.save_pretrained(self.out, tokenizer=tokenizer)
        with open(os.path.join(self.out, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2, ensure_ascii=False)
        return True
