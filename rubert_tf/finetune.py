"""Fine-tuning runner shared by all tasks: read data, build the model from a checkpoint, fit with the
default recipe (AdamW + warmup/decay + clipping, optional mixed precision), evaluate, save.

    metrics = finetune("classification", model="path/to/rubert-tiny2", train="train.csv",
                       eval="dev.csv", out="models/sentiment", options={"text_column": "sentence"})
"""

import importlib.util
import json
import logging
import math
import os
import time

import keras

from rubert_tf.tasks import get_task
from rubert_tf.training import create_optimizer

logger = logging.getLogger(__name__)

MIXED_PRECISION = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16", "mixed_bfloat16": "mixed_bfloat16",
                   "mixed_float16": "mixed_float16"}


def finetune(task, model, train, out, eval=None, options=None, epochs=3, batch_size=32, learning_rate=5e-5,
             max_length=128, warmup_ratio=0.1, weight_decay=0.01, mixed_precision=None, seed=0, max_steps=None,
             log_dir=None, verbose=1):
    """Fine-tune `model` (checkpoint dir or hub id) on `train`; returns {"train_loss": ..., eval metrics}.

    The fine-tuned model is written to `out` in HF layout with its tokenizer and label names, and the
    metrics to `out/metrics.json`. TensorBoard logs go to `log_dir` (default `out/logs`).
    """
    task = get_task(task) if isinstance(task, str) else task
    options = dict(options or {})
    keras.utils.set_random_seed(seed)
    policy = _set_precision(mixed_precision)
    try:
        from rubert_tf.tokenizer import RuBertTokenizer

        train_examples = task.read(train, options)
        eval_examples = task.read(eval, options) if eval else None
        tokenizer = RuBertTokenizer.from_pretrained(model)
        network = task.model_class.from_pretrained(model, tokenizer=False, **task.model_kwargs(train_examples, options))
        network.tokenizer = tokenizer
        train_data = task.dataset(network, tokenizer, train_examples, batch_size, max_length, shuffle=True, seed=seed)

        steps_per_epoch = max(1, math.ceil(_count(train_data)))
        if max_steps:
            steps_per_epoch = min(steps_per_epoch, max_steps)
        # Endless data, fixed epoch length: with length bucketing the number of batches changes from
        # epoch to epoch (Keras then warns "ran out of data"), and one iterator serves every epoch.
        train_data = train_data.repeat()
        total_steps = steps_per_epoch * epochs
        # No XLA: batches are padded to their own length, and XLA (Keras 3's jit_compile="auto") would
        # compile the train step again for every new width, ~10x slower than plain graph mode on CPU.
        network.compile(optimizer=create_optimizer(learning_rate, total_steps, warmup_ratio, weight_decay),
                        loss=task.loss(network), jit_compile=False)
        callbacks = []
        if importlib.util.find_spec("tensorboard") is not None:  # Keras' TensorBoard callback needs the package
            callbacks.append(keras.callbacks.TensorBoard(log_dir or os.path.join(out, "logs"),
                                                         update_freq=max(1, total_steps // 50)))
        elif log_dir:
            logger.warning("tensorboard is not installed: no TensorBoard logs are written to %s", log_dir)
        started = time.time()
        history = network.fit(train_data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                              callbacks=callbacks, verbose=verbose)
        metrics = {"train_loss_first_epoch": float(history.history["loss"][0]),
                   "train_loss_last_epoch": float(history.history["loss"][-1]),
                   "train_seconds": round(time.time() - started, 1), "mixed_precision": policy}
        if eval_examples is not None:
            metrics.update(task.evaluate(network, eval_examples, max_length, batch_size))
        network.save_pretrained(out, tokenizer=tokenizer)
        with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2, ensure_ascii=False)
        return metrics
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _set_precision(mixed_precision):
    if not mixed_precision:
        return "float32"
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {sorted(MIXED_PRECISION)}, got {mixed_precision!r}")
    policy = MIXED_PRECISION[mixed_precision]
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _count(dataset):
    cardinality = int(dataset.cardinality())
    if cardinality >= 0:
        return cardinality
    return sum(1 for _ in dataset)  # bucketing hides the count; one pass over the cached data
