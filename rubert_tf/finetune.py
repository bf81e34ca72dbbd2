"""Fine-tuning, the same for all tasks: read data, build the model from a checkpoint, fit with the
default recipe (AdamW + warmup + a decay schedule + clipping) in a rubert_tf.training.runner.TrainingRun (strategy,
mixed precision, gradient accumulation, fault-tolerant backups, TensorBoard; pretraining shares it),
evaluate, save. An `out` that already holds a model is refused unless `overwrite=True`.

    metrics = finetune("classification", model="path/to/rubert-tiny2", train="train.csv",
                       eval="dev.csv", out="models/sentiment", options={"text_column": "sentence"},
                       strategy="mirrored", grad_accum=2, backup_every=100)

Layout of `out` (see rubert_tf.training.callbacks): the fine-tuned model in HF layout with its
tokenizer and label names, metrics.json, backup/ while the run is unfinished (an interrupted run
continues at the step it reached with `resume=True`), checkpoints/ (training states with optimizer,
every `checkpoint_every` steps and at the end), logs/ (TensorBoard: loss, learning rate, throughput).
"""

import logging
import math

import numpy as np

from rubert_tf.tasks import get_task
from rubert_tf.training import create_optimizer, default_schedule, enable_gradient_accumulation
from rubert_tf.training.optimizer import check_schedule, warmup_steps_for
from rubert_tf.training.runner import TrainingRun

logger = logging.getLogger(__name__)

INITS = ("pretrained", "random")


def finetune(task, model, train, out, eval=None, options=None, epochs=3, batch_size=32, learning_rate=5e-5,
             max_length=None, warmup_ratio=0.1, weight_decay=0.01, mixed_precision=None, seed=0, max_steps=None,
             log_dir=None, verbose=1, strategy="default", num_logical_cpus=None, grad_accum=1, resume=False,
             backup_every=100, checkpoint_every=None, class_weight=None, callbacks=None,
             sparse_embedding_updates=False, overwrite=False, lr_schedule="auto", warmup_steps=None,
             min_lr_ratio=0.0, init="pretrained"):
    """Fine-tune `model` (checkpoint dir or hub id) on `train`; returns {"train_loss_...": ..., eval metrics}.

    Args:
      options: the task's settings (a dict, or the task's settings dataclass), e.g. {"text_column":
        "sentence", "text_pair_column": "entity"}; they are stored in the model's config.json, so
        evaluate / predict / export later use them without being told again.
      max_length: shorthand for options["max_length"] (default: the task's, e.g. 128; QA 384).
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
      overwrite: replace the model already in `out` (without it, a config.json or model.safetensors
        there is an error, so a typo in `out` cannot destroy a good model).
      backup_every: steps between backups in out/backup (None: one per epoch); at most this many steps
        are lost when the run is killed.
      checkpoint_every: steps between kept checkpoints in out/checkpoints (None: only the final one).
      class_weight: None, "balanced" (n / (classes * count), single-label classification) or {class id: weight}.
      sparse_embedding_updates: update only the embedding rows of the tokens in each batch (lazy Adam,
        rubert_tf.training.AdamW(sparse_updates=True)): a faster step with a large vocabulary.
      callbacks: more Keras callbacks, after the run's own.
      lr_schedule: "auto" (default), "constant", "linear", "cosine" or "inverse_sqrt"
        (rubert_tf.training.schedules.WarmupDecay), after a linear warmup over `warmup_steps` optimizer
        steps (default: `warmup_ratio` of the run), decaying to `min_lr_ratio * learning_rate`. "auto"
        takes the measured best (rubert_tf.training.default_schedule): "linear" when the weights were
        loaded, "constant" from random init; it logs which it took.
      init: "pretrained" (load the checkpoint's weights) or "random" (the checkpoint's architecture and
        vocabulary only, randomly initialised from `seed`: the baseline a pretraining is measured against).
    The fine-tuned model is written to `out` in HF layout with its tokenizer and label names, the
    metrics to `out/metrics.json`. TensorBoard logs go to `log_dir` (default `out/logs`).
    """
    task = get_task(task) if isinstance(task, str) else task
    options = options.to_dict() if hasattr(options, "to_dict") else dict(options or {})
    if max_length is not None:
        options["max_length"] = max_length
    settings = task.settings(overrides=options)  # unknown or bad settings fail here, before any work
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    schedule = default_schedule(weights_loaded=init == "pretrained") if lr_schedule == "auto" else lr_schedule
    check_schedule(learning_rate, schedule, warmup_ratio, warmup_steps, min_lr_ratio)
    grad_accum = int(grad_accum or 1)
    if grad_accum < 1:
        raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
    run = TrainingRun(out, strategy=strategy, num_logical_cpus=num_logical_cpus, mixed_precision=mixed_precision,
                      seed=seed, batch_size=batch_size, resume=resume, overwrite=overwrite)
    with run:  # checks `out`, creates the strategy (first of all TF work), seed, precision, Keras patches
        from rubert_tf.tokenizer import RuBertTokenizer

        train_examples = task.read(train, settings)
        eval_examples = task.read(eval, settings) if eval else None
        tokenizer = RuBertTokenizer.from_pretrained(model)
        with run.scope():
            network = _build(task, model, init, task.model_kwargs(train_examples, settings))
        network.tokenizer = tokenizer
        # The settings travel with the model (config.json): evaluate, predict and export read them back.
        settings.store(network)
        train_data = task.dataset(network, tokenizer, train_examples, settings, batch_size, shuffle=True, seed=seed)

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
        logger.info("learning rate: %s after %d warmup steps, peak %g, %d optimizer steps (%s)", schedule,
                    warmup_steps_for(total_steps, warmup_ratio, warmup_steps), learning_rate, total_steps,
                    f"lr_schedule='auto' with init={init!r}" if lr_schedule == "auto" else "lr_schedule given")
        with run.scope():
            optimizer = create_optimizer(learning_rate, total_steps, warmup_ratio, weight_decay,
                                         sparse_updates=sparse_embedding_updates, schedule=schedule,
                                         warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
            enable_gradient_accumulation(optimizer, grad_accum)
            # No XLA: batches are padded to their own length, and XLA (Keras 3's jit_compile="auto") would
            # compile the train step again for every new width, ~10x slower than plain graph mode on CPU.
            network.compile(optimizer=optimizer, loss=task.loss(network, settings), jit_compile=False)
        fitted = run.fit(network, train_data, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                         sequence_length=getattr(settings, "max_length", None), backup_every=backup_every,
                         checkpoint_every=checkpoint_every, log_every=max(1, min(50, micro_steps // 50)),
                         log_dir=log_dir, callbacks=callbacks, same_stream_on_every_strategy=True,
                         class_weight=weights, verbose=verbose)
        metrics = {**fitted.metrics, "mixed_precision": run.policy, "strategy": strategy, "replicas": run.replicas,
                   "batch_size": batch_size, "grad_accum": grad_accum, "init": init, "lr_schedule": schedule,
                   "learning_rate": learning_rate,
                   "sparse_embedding_updates": bool(sparse_embedding_updates),
                   "optimizer_steps": int(np.asarray(network.optimizer.iterations))}  # updates, not micro-batches
        if weights is not None:
            metrics["class_weight"] = {str(k): round(float(v), 4) for k, v in weights.items()}
        if eval_examples is not None:
            metrics.update(task.evaluate(network, eval_examples, settings, batch_size))
        run.save(network, tokenizer, metrics)
        return metrics


def _build(task, model, init, kwargs):
    """The task's model from the checkpoint `model`: its weights (init="pretrained") or only its
    architecture, randomly initialised (init="random")."""
    if init == "pretrained":
        return task.model_class.from_pretrained(model, tokenizer=False, **kwargs)
    from rubert_tf.config import RuBertConfig

    logger.info("init='random': %s's architecture, weights randomly initialised (not loaded)", model)
    return task.model_class(RuBertConfig.from_pretrained(model), **kwargs)


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
