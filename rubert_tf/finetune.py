"""Fine-tuning runner shared by all tasks: read data, build the model from a checkpoint, fit with the
default recipe (AdamW + warmup/decay + clipping) and the training machinery of rubert_tf.training
(strategy, mixed precision, gradient accumulation, fault-tolerant backups, TensorBoard), evaluate, save.

    metrics = finetune("classification", model="path/to/rubert-tiny2", train="train.csv",
                       eval="dev.csv", out="models/sentiment", options={"text_column": "sentence"},
                       strategy="mirrored", grad_accum=2, backup_every=100)

Layout of `out` (see rubert_tf.training.callbacks): the fine-tuned model in HF layout with its
tokenizer and label names, metrics.json, backup/ while the run is unfinished (an interrupted run
continues at the step it reached with `resume=True`), checkpoints/ (training states with optimizer,
every `checkpoint_every` steps and at the end), logs/ (TensorBoard: loss, learning rate, throughput).
"""

import json
import logging
import math
import os
import time

import keras
import numpy as np

from rubert_tf.tasks import get_task
from rubert_tf.training import (create_optimizer, create_strategy, enable_gradient_accumulation, set_mixed_precision,
                                training_callbacks)
from rubert_tf.training.strategy import MIXED_PRECISION_POLICIES, worker_info

logger = logging.getLogger(__name__)

# Accepted `mixed_precision` names (besides None and "auto"): see rubert_tf.training.mixed_precision_policy.
MIXED_PRECISION = dict(MIXED_PRECISION_POLICIES)


def finetune(task, model, train, out, eval=None, options=None, epochs=3, batch_size=32, learning_rate=5e-5,
             max_length=128, warmup_ratio=0.1, weight_decay=0.01, mixed_precision=None, seed=0, max_steps=None,
             log_dir=None, verbose=1, strategy="default", num_logical_cpus=None, grad_accum=1, resume=False,
             backup_every=100, checkpoint_every=None, class_weight=None, callbacks=None,
             sparse_embedding_updates=False):
    """Fine-tune `model` (checkpoint dir or hub id) on `train`; returns {"train_loss_...": ..., eval metrics}.

    Args:
      batch_size: the global batch (what one training step sees, split over the strategy's replicas;
        must divide evenly). The same global batch gives the same update on 1 or N replicas, so the
        learning rate does not change with the number of replicas; to grow the batch with the replicas,
        pass batch_size=rubert_tf.training.global_batch_size(per_replica, strategy) and scale the
        learning rate with rubert_tf.training.scaled_learning_rate.
      max_steps: cap on the steps (micro-batches) per epoch.
      strategy: "default", "mirrored" (all local GPUs, or `num_logical_cpus` CPU replicas), "multi_worker"
        (TF_CONFIG) or "tpu"; see rubert_tf.training.create_strategy. With `num_logical_cpus`, call this
        before any other TensorFlow work in the process.
      mixed_precision: None (float32), "auto" (fp16 on GPU, bf16 on CPU/TPU), "bf16", "fp16".
      grad_accum: micro-batches of `batch_size` per optimizer update (an update then sees
        grad_accum * batch_size examples; the learning-rate schedule counts updates).
      resume: continue an interrupted run from its backup in `out` (without it such a backup is an error).
      backup_every: steps between backups in out/backup (None: one per epoch); at most this many steps
        are lost when the run is killed.
      checkpoint_every: steps between kept checkpoints in out/checkpoints (None: only the final one).
      class_weight: None, "balanced" (n / (classes * count), single-label classification) or {class id: weight}.
      sparse_embedding_updates: update only the embedding rows of the tokens in each batch (lazy Adam,
        rubert_tf.training.AdamW(sparse_updates=True)): a faster step with a large vocabulary.
      callbacks: more Keras callbacks, after the run's own.
    The fine-tuned model is written to `out` in HF layout with its tokenizer and label names, the
    metrics to `out/metrics.json`. TensorBoard logs go to `log_dir` (default `out/logs`).
    """
    task = get_task(task) if isinstance(task, str) else task
    options = dict(options or {})
    _check_precision_name(mixed_precision)  # before any work, and without touching TF devices
    grad_accum = int(grad_accum or 1)
    if grad_accum < 1:
        raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
    # First of all TF work: splitting the CPU into logical devices (num_logical_cpus) is only possible before.
    strategy_obj = create_strategy(strategy, num_logical_cpus=num_logical_cpus)
    replicas = strategy_obj.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(f"batch_size={batch_size} (the global batch) is not divisible by the {replicas} replicas "
                         "of the strategy")
    backup = os.path.join(out, "backup")
    if not resume and os.path.isdir(backup) and os.listdir(backup):
        raise FileExistsError(f"{backup} holds the state of an interrupted run: pass resume=True (--resume) to "
                              "continue it at the step it reached, or delete that folder to start over")
    keras.utils.set_random_seed(seed)
    policy = set_mixed_precision(mixed_precision, strategy_obj)
    try:
        from rubert_tf.tokenizer import RuBertTokenizer

        train_examples = task.read(train, options)
        eval_examples = task.read(eval, options) if eval else None
        tokenizer = RuBertTokenizer.from_pretrained(model)
        with strategy_obj.scope():
            network = task.model_class.from_pretrained(model, tokenizer=False,
                                                       **task.model_kwargs(train_examples, options))
        network.tokenizer = tokenizer
        train_data = task.dataset(network, tokenizer, train_examples, batch_size, max_length, shuffle=True, seed=seed)

        steps_per_epoch = max(1, math.ceil(_count(train_data)))
        if max_steps:
            steps_per_epoch = min(steps_per_epoch, max_steps)
        # Endless data, fixed epoch length: with length bucketing the number of batches changes from
        # epoch to epoch (Keras then warns "ran out of data"), and one iterator serves every epoch.
        # It is also what exact resume needs: the first `global step` batches of the stream are skipped.
        train_data = train_data.repeat()
        micro_steps = steps_per_epoch * epochs
        total_steps = max(1, micro_steps // grad_accum)  # optimizer updates: what the schedule counts
        if micro_steps % grad_accum:
            logger.warning("%d steps are not a multiple of grad_accum=%d: the last %d micro-batches are not "
                           "applied", micro_steps, grad_accum, micro_steps % grad_accum)
        weights = _class_weights(class_weight, network, train_examples)
        with strategy_obj.scope():
            optimizer = create_optimizer(learning_rate, total_steps, warmup_ratio, weight_decay,
                                         sparse_updates=sparse_embedding_updates)
            enable_gradient_accumulation(optimizer, grad_accum)
            # No XLA: batches are padded to their own length, and XLA (Keras 3's jit_compile="auto") would
            # compile the train step again for every new width, ~10x slower than plain graph mode on CPU.
            network.compile(optimizer=optimizer, loss=task.loss(network), jit_compile=False)
        run_callbacks = training_callbacks(
            out, backup_every_steps=backup_every, checkpoint_every_steps=checkpoint_every, resume=resume,
            resume_data="stream", batch_size=batch_size, sequence_length=max_length,
            log_every_steps=max(1, min(50, micro_steps // 50)), log_dir=log_dir, strategy=strategy_obj)
        if getattr(network, "_distribute_strategy", None) is None:
            # Under a tf.distribute strategy Keras' fit first draws one batch from an iterator of its own to
            # build the model (`_maybe_symbolic_build`), which moves the seeded shuffle on to its next
            # permutation before training starts; do the same on one device, so that every strategy
            # trains on the same stream of batches.
            next(iter(train_data))
        started = time.time()
        history = network.fit(train_data, epochs=epochs, steps_per_epoch=steps_per_epoch, class_weight=weights,
                              shuffle=False,  # the pipeline shuffles (seeded); Keras cannot shuffle a tf.data.Dataset
                              callbacks=run_callbacks + list(callbacks or []), verbose=verbose)
        losses = history.history.get("loss") or [float("nan")]
        resumed = run_callbacks[0].progress.resumed_from
        metrics = {"train_loss_first_epoch": float(losses[0]), "train_loss_last_epoch": float(losses[-1]),
                   "train_seconds": round(time.time() - started, 1), "mixed_precision": policy,
                   "strategy": strategy, "replicas": replicas, "batch_size": batch_size, "grad_accum": grad_accum,
                   "sparse_embedding_updates": bool(sparse_embedding_updates),
                   "optimizer_steps": int(np.asarray(network.optimizer.iterations))}  # updates, not micro-batches
        if resumed is not None:
            metrics["resumed_from_step"] = int(resumed["global_step"])
        if weights is not None:
            metrics["class_weight"] = {str(k): round(float(v), 4) for k, v in weights.items()}
        if eval_examples is not None:
            metrics.update(task.evaluate(network, eval_examples, max_length, batch_size))
        if worker_info(strategy_obj)[2]:  # the chief writes the model
            network.save_pretrained(out, tokenizer=tokenizer)
            with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
                json.dump(metrics, f, indent=2, ensure_ascii=False)
        return metrics
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _check_precision_name(mixed_precision):
    if mixed_precision and mixed_precision != "auto" and mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be 'auto' or one of {sorted(MIXED_PRECISION)}, got {mixed_precision!r}")


def _class_weights(class_weight, network, examples):
    """Keras' {class id: weight} from None, a dict, or "balanced" (n / (classes * count of the class))."""
    if class_weight is None or isinstance(class_weight, dict):
        return class_weight
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be None, 'balanced' or a dict {{class id: weight}}, got {class_weight!r}")
    labels = getattr(network, "labels", None)
    if labels is None or getattr(network, "multi_label", False) or any(
            not isinstance(e.get("label"), str) for e in examples):
        raise ValueError("class_weight='balanced' needs single-label classification")
    counts = {name: 0 for name in labels}
    for example in examples:
        counts[example["label"]] = counts.get(example["label"], 0) + 1
    present = [name for name in labels if counts[name]]
    return {i: len(examples) / (len(present) * counts[name]) if counts[name] else 1.0 for i, name in enumerate(labels)}


def _count(dataset):
    cardinality = int(dataset.cardinality())
    if cardinality >= 0:
        return cardinality
    return sum(1 for _ in dataset)  # bucketing hides the count; one pass over the cached data
