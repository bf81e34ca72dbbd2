"""`pretrain(...)`: masked-LM pretraining of RuBERT with `model.fit` on packed shards.

    # continue a real checkpoint on your corpus (its vocabulary)
    pretrain(train="shards/", eval="heldout_shards/", out="models/mlm", model="path/to/rubert-tiny2", steps=10_000)
    # from scratch: a preset's architecture (optionally smaller) with a new vocabulary
    pretrain(train="shards/", out="models/mlm", config="cointegrated/rubert-tiny2", vocab="vocab.txt",
             overrides={"num_hidden_layers": 2}, steps=10_000, learning_rate=5e-4)

What it does:
- data: rubert_tf.data.pretraining (shards interleaved, dynamic masking in the graph, 15% with 80/10/10,
  optional whole-word masking, optional sentence-order prediction on segment-pairs shards);
- model: RuBertForMaskedLM with the `mask_positions` input, so the tied vocabulary projection runs only
  at the masked positions; with sentence order also BERT's pooler and a 2-way head (ALBERT's SOP), saved
  as BertForPreTraining's `bert.pooler.*` / `cls.seq_relationship.*`; or, with `objective="rtd"`, ELECTRA's
  replaced-token detection (rubert_tf.models.electra: generator + discriminator, saved in the HF Electra layout);
- loss and accuracy on the masked positions only (labels -100 elsewhere);
- recipe: AdamW with warmup + linear decay and clipping (rubert_tf.training.create_optimizer),
  optional mixed precision, a tf.distribute strategy: the run is rubert_tf.training.runner.TrainingRun,
  as fine-tuning's (it also refuses an `out` that already holds a model, unless `overwrite=True`);
- fault tolerance (rubert_tf.training.training_callbacks): atomic backups every `backup_every` steps in
  out/backup (an interrupted run continues at the exact step with `resume=True`, the same masks
  included: the input stream is seeded), kept checkpoints every `checkpoint_every` steps in
  out/checkpoints, TensorBoard in out/logs with learning rate and sequences/tokens per second;
- output: `out/` in HF layout (config.json, model.safetensors, vocab.txt, tokenizer_config.json) that
  RuBertForMaskedLM.from_pretrained (and transformers' BertForMaskedLM) loads, plus metrics.json with
  the held-out MLM loss/accuracy before and after.
"""

import logging
import math
import os

import keras
import tensorflow as tf

from rubert_tf.config import RuBertConfig
from rubert_tf.data.pretraining import (IGNORE_LABEL, MaskedLMMasker, pretraining_dataset, read_corpus_info,
                                        resolve_shards)
from rubert_tf.models.electra import RuBertForReplacedTokenDetection, generator_config_for
from rubert_tf.models.masked_lm import RuBertForMaskedLM
from rubert_tf.models.pretraining import RuBertForPreTraining
from rubert_tf.training import create_optimizer
from rubert_tf.training.optimizer import check_schedule
from rubert_tf.training.metrics import MaskedAccuracy, MaskedCrossEntropy
from rubert_tf.training.runner import TrainingRun

logger = logging.getLogger(__name__)

# CLI-style names of the architecture numbers one may change when starting from a preset.
CONFIG_OVERRIDES = {"num_layers": "num_hidden_layers", "hidden_size": "hidden_size",
                    "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
                    "max_position_embeddings": "max_position_embeddings", "dropout": "hidden_dropout_prob",
                    "attention_dropout": "attention_probs_dropout_prob"}


# ---------------------------------------------------------------- pieces


def _tokenizer(model, vocab, infos, corpus_dir=None):
    from rubert_tf.tokenizer import RuBertTokenizer

    if vocab is None and model is None and corpus_dir is not None:
        # The vocabulary the corpus was tokenized with (read with tf.io.gfile: the corpus may be on gs://).
        with tf.io.gfile.GFile(corpus_dir.rstrip("/") + "/vocab.txt", "r") as f:
            tokens = f.read().split("\n")
        settings = infos[0]
        return RuBertTokenizer([t.rstrip("\r") for t in tokens if t], lowercase=bool(settings.get("lowercase")),
                               strip_accents=settings.get("strip_accents"))
    if vocab is not None:
        vocab = os.fspath(vocab)
        if os.path.isdir(vocab):
            return RuBertTokenizer.from_pretrained(vocab)
        settings = infos[0] if infos else {}
        return RuBertTokenizer(vocab, lowercase=bool(settings.get("lowercase", False)),
                               strip_accents=settings.get("strip_accents"))
    if model is not None:
        from rubert_tf import hub

        return RuBertTokenizer.from_pretrained(hub.resolve(model))
    raise ValueError("no vocabulary: pass model= (a checkpoint with vocab.txt) or vocab= (vocab.txt)")


def _check_vocabulary(tokenizer, sources, infos):
    from rubert_tf.data.pretraining_corpus import vocab_sha1

    digest = vocab_sha1(tokenizer.vocabulary)
    for source, info in zip(sources, infos):
        if info["vocab_sha1"] != digest:
            raise ValueError(f"corpus {source} was tokenized with another vocabulary ({info['vocab_size']} tokens, "
                             f"sha1 {info['vocab_sha1'][:12]}) than the model's ({tokenizer.vocab_size} tokens, sha1 "
                             f"{digest[:12]}); re-run prepare-corpus with the model's vocab.txt")


def _corpus_infos(sources):
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.fspath(s) for s in sources]
    found = []
    for source in sources:
        info = read_corpus_info(source) if tf.io.gfile.isdir(source) else None
        if info is not None:
            found.append((source, info))
    return sources, found


def build_config(config, vocab_size, overrides=None):
    """RuBertConfig from a preset / directory / config.json, with `overrides` ({CLI or HF name: value})."""
    base = config if isinstance(config, RuBertConfig) else RuBertConfig.from_pretrained(config)
    values = base.to_dict()
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        field = CONFIG_OVERRIDES.get(key, key)
        if field not in values and field not in RuBertConfig.__dataclass_fields__:
            raise ValueError(f"unknown config override {key!r}; use one of {sorted(CONFIG_OVERRIDES)}")
        values[field] = value
    if "emb_size" in values:  # rubert-tiny's emb_size must equal hidden_size (see RuBertConfig)
        values["emb_size"] = values["hidden_size"]
    values["vocab_size"] = int(vocab_size)
    return RuBertConfig.from_dict(values)


def _build_model(config, checkpoint, sentence_order, objective="mlm", generator_hidden_size=None, rtd_weight=50.0):
    from rubert_tf import hub
    from rubert_tf.checkpoints.loading import load_weights, read_weights

    if objective == "rtd":
        # A checkpoint's generator/ (what an RTD run saves) comes along; without one it starts random.
        if checkpoint is not None:
            return RuBertForReplacedTokenDetection.from_pretrained(
                checkpoint, generator_hidden_size=generator_hidden_size, rtd_weight=rtd_weight)
        return RuBertForReplacedTokenDetection(config, generator_config=generator_config_for(
            config, generator_hidden_size), rtd_weight=rtd_weight)
    model = (RuBertForPreTraining(config, name="rubert_for_pretraining") if sentence_order
             else RuBertForMaskedLM(config, with_mask_positions=True))
    if checkpoint is not None:
        tensors, path = read_weights(hub.resolve(checkpoint))
        load_weights(model, tensors, path)
    return model


# ---------------------------------------------------------------- the runner


def pretrain(train, out, model=None, config=None, vocab=None, overrides=None, eval=None, max_length=None,
             batch_size=32, steps=10_000, learning_rate=1e-4, warmup_ratio=0.01, weight_decay=0.01, mask_rate=0.15,
             whole_word=False, sentence_order=False, max_predictions=None, eval_steps=None, checkpoint_every=1000,
             backup_every=100, strategy="default", num_logical_cpus=None, mixed_precision=None, resume=False, seed=0,
             log_dir=None, verbose=1, overwrite=False, lr_schedule="linear", warmup_steps=None, min_lr_ratio=0.0,
             max_minutes=None, objective="mlm", generator_hidden_size=None, rtd_weight=50.0):
    """Masked-LM pretraining (see the module docstring). Returns the metrics (also in out/metrics.json).

    Args:
      train, eval: prepare-corpus directories, shard files or globs, local or any tf.io.gfile URL (eval:
        held-out shards, optional).
      out: local output directory.
      model: checkpoint to continue (directory or hub id; its vocab.txt), or
      config: architecture to start from (preset name, directory or config.json) with `vocab` (vocab.txt;
        default: the vocab.txt of the train corpus) and `overrides` such as {"num_layers": 2}.
      max_length: sequence length (default: the corpus' packing length).
      batch_size: global batch (split over the strategy's replicas).
      steps: optimizer steps in all; `checkpoint_every` steps make one Keras epoch (a kept checkpoint in
        out/checkpoints, validation on `eval`); `backup_every`: steps between backups (out/backup).
      max_predictions: masked positions per sequence the model computes (default ceil(1.25 * rate * T)).
      strategy: "default", "mirrored", "multi_worker" (or "tpu"); mixed_precision: None, "bf16", "fp16".
      resume: continue an interrupted run from its backup in `out` (without it, such a backup is an error).
      overwrite: replace the model a finished run left in `out` (without it, a config.json or
        model.safetensors there is an error).
      lr_schedule, warmup_steps (or warmup_ratio), min_lr_ratio: the learning-rate schedule over `steps`
        (rubert_tf.training.create_optimizer): "linear" (default), "constant", "cosine", "inverse_sqrt".
      max_minutes: a wall-clock budget for the training (evaluation before/after not counted): it stops
        after the first step past it and saves as a finished run; metrics.json then has
        "stopped_by_time_limit_after_steps". Choose `steps` near what fits, so the schedule ends there.
      objective: "mlm" (BERT's masked LM) or "rtd" (ELECTRA's replaced-token detection: a generator of
        `generator_hidden_size` (default: a quarter of the model's) fills the masked positions with samples,
        the model learns to spot them; loss = MLM + `rtd_weight` x BCE; masking 85% [MASK] / 15% kept).
        "rtd" saves the Electra layout: out/ is an ElectraForPreTraining (which every fine-tuning path loads
        as the encoder), out/generator/ an ElectraForMaskedLM; metrics add rtd_loss/rtd_accuracy/rtd_recall/
        rtd_auc.
    """
    if objective not in ("mlm", "rtd"):
        raise ValueError(f"objective must be 'mlm' or 'rtd', got {objective!r}")
    if objective == "rtd" and sentence_order:
        raise ValueError("sentence_order=True is for objective='mlm': ELECTRA's replaced-token detection has no "
                         "sentence-order head")
    if (model is None) == (config is None):
        raise ValueError("pass exactly one of model= (a checkpoint to continue) or config= (an architecture)")
    if model is not None and any(v is not None for v in (overrides or {}).values()):
        raise ValueError(f"config overrides {sorted(k for k, v in overrides.items() if v is not None)} cannot "
                         "change a pretrained checkpoint; use config= to start from an architecture")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    if backup_every is not None and int(backup_every) < 0:
        raise ValueError(f"backup_every must be >= 0 (0 or None: one backup per checkpoint_every epoch), got "
                         f"{backup_every}")
    check_schedule(learning_rate, lr_schedule, warmup_ratio, warmup_steps, min_lr_ratio)
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be positive, got {max_minutes}")
    run = TrainingRun(out, strategy=strategy, num_logical_cpus=num_logical_cpus, mixed_precision=mixed_precision,
                      seed=seed, batch_size=batch_size, resume=resume, overwrite=overwrite)
    with run:  # checks `out`, creates the strategy (first of all TF work), seed, precision, Keras patches
        train_sources, train_infos = _corpus_infos(train)
        resolve_shards(train_sources)  # fails early, naming the source without shards
        eval_sources, eval_infos = _corpus_infos(eval) if eval else ([], [])
        infos = [info for _, info in train_infos + eval_infos]
        tokenizer = _tokenizer(model, vocab, infos, corpus_dir=train_infos[0][0] if train_infos else None)
        _check_vocabulary(tokenizer, [s for s, _ in train_infos + eval_infos], infos)
        lengths = sorted({info["max_length"] for info in infos})
        if max_length is None:
            max_length = lengths[-1] if lengths else 128
        if sentence_order and any(info["packing"] != "segment_pairs" for info in infos):
            logger.warning("sentence_order=True, but some shards were not packed as segment pairs: their rows get "
                           "no sentence-order label (prepare-corpus --packing segment_pairs)")
        if max_predictions is None:
            max_predictions = max(1, math.ceil(1.25 * mask_rate * max_length))

        steps_per_epoch, epochs = _epochs(steps, checkpoint_every)
        total_steps = steps_per_epoch * epochs
        if total_steps != steps:
            logger.warning("steps=%d rounded up to %d: %d epochs of %d steps (checkpoint_every=%s)", steps,
                           total_steps, epochs, steps_per_epoch, checkpoint_every)
        # Backups: every `backup_every` steps; 0/None, or more than an epoch, means one per epoch (a backup
        # interval longer than the checkpoint interval would only lose more work on a crash).
        backup_every = int(backup_every) if backup_every else None
        if backup_every is not None and backup_every >= steps_per_epoch:
            backup_every = None
        with run.scope():
            if model is not None:
                model_config = RuBertConfig.from_pretrained(_resolve(model))
                if model_config.vocab_size != tokenizer.vocab_size:
                    raise ValueError(f"{model}: config.json has vocab_size={model_config.vocab_size} but its "
                                     f"tokenizer has {tokenizer.vocab_size} tokens")
            else:
                model_config = build_config(config, tokenizer.vocab_size, overrides)
            if max_length > model_config.max_position_embeddings:
                raise ValueError(f"max_length={max_length} exceeds the model's max_position_embeddings="
                                 f"{model_config.max_position_embeddings}")
            network = _build_model(model_config, model, sentence_order, objective, generator_hidden_size, rtd_weight)
            losses = {"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)}
            metrics = {"logits": [MaskedAccuracy(name="accuracy", ignore_class=IGNORE_LABEL),
                                  MaskedCrossEntropy(name="xent", ignore_class=IGNORE_LABEL)]}
            if sentence_order:
                losses["sop_logits"] = keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True, ignore_class=IGNORE_LABEL)
                metrics["sop_logits"] = [MaskedAccuracy(name="accuracy", ignore_class=IGNORE_LABEL),
                                         MaskedCrossEntropy(name="xent", ignore_class=IGNORE_LABEL)]
            if objective == "rtd":  # its loss and metrics are its own (they need the model's samples)
                losses = metrics = None
            optimizer = create_optimizer(learning_rate, total_steps, warmup_ratio, weight_decay, schedule=lr_schedule,
                                         warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
            network.compile(optimizer=optimizer,
                            loss=losses, metrics=metrics)

        # ELECTRA masks 85% of the selected tokens and keeps 15%: its generator supplies the replacements.
        rates = dict(mask_token_rate=0.85, random_token_rate=0.0) if objective == "rtd" else {}
        masker = MaskedLMMasker(tokenizer, mask_rate=mask_rate, whole_word=whole_word, max_predictions=max_predictions,
                                **rates)
        train_data = pretraining_dataset(train_sources, masker, batch_size, max_length, sentence_order=sentence_order,
                                         shuffle=True, seed=seed)
        eval_data = None
        if eval_sources:
            # Same masks on every pass: the before/after numbers compare the same predictions.
            eval_data = pretraining_dataset(eval_sources, masker, batch_size, max_length,
                                            sentence_order=sentence_order, shuffle=False, seed=seed + 1,
                                            repeat=False, drop_remainder=False)
            batches = math.ceil(_count_records(eval_sources) / batch_size)
            if eval_steps:
                batches = min(batches, int(eval_steps))
            eval_data = eval_data.take(batches).apply(tf.data.experimental.assert_cardinality(batches))

        results = {"steps": total_steps, "batch_size": batch_size, "max_length": max_length,
                   "max_predictions": max_predictions, "whole_word": bool(whole_word),
                   "sentence_order": bool(sentence_order), "objective": objective, "mixed_precision": run.policy,
                   "lr_schedule": lr_schedule, "learning_rate": learning_rate,
                   "strategy": strategy, "replicas": run.replicas, "parameters": int(network.count_params())}
        if eval_data is not None and not resume:  # (a resumed run restores its weights inside fit)
            results["eval_before"] = _evaluate(network, eval_data)
        fitted = run.fit(network, train_data, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                         sequence_length=max_length, backup_every=backup_every, checkpoint_every=steps_per_epoch,
                         log_every=min(50, steps_per_epoch), log_dir=log_dir,
                         validation_data=eval_data if epochs > 1 else None, verbose=verbose, max_minutes=max_minutes)
        trained_steps = fitted.metrics.get("stopped_by_time_limit_after_steps") or (
            len(fitted.history.history.get("loss") or [None]) * steps_per_epoch)
        sequences = trained_steps * batch_size
        results.update(fitted.metrics)
        results["sequences_per_second"] = round(sequences / max(fitted.metrics["train_seconds"], 1e-9), 1)
        if eval_data is not None:
            results["eval_after"] = _evaluate(network, eval_data)
        run.save(network, tokenizer, results)
        return results


def _epochs(steps, checkpoint_every):
    """(steps per Keras epoch, epochs) for `steps` optimizer steps with an epoch (kept checkpoint +
    validation) at most every `checkpoint_every` steps: as few epochs as that allows, of equal length,
    so the run has exactly `steps` steps whenever the epochs can divide it (otherwise fewer than
    `epochs` extra steps; Keras' epochs all have the same length)."""
    steps, every = int(steps), max(1, int(checkpoint_every or steps))
    epochs = math.ceil(steps / min(every, steps))
    return math.ceil(steps / epochs), epochs


def _resolve(model):
    from rubert_tf import hub

    return hub.resolve(model)


# Keras log name (one output / with the SOP head) -> our name.
_EVAL_NAMES = {"xent": "mlm_loss", "logits_xent": "mlm_loss", "accuracy": "mlm_accuracy",
               "logits_accuracy": "mlm_accuracy", "sop_logits_xent": "sop_loss", "sop_logits_accuracy": "sop_accuracy",
               # RuBertForReplacedTokenDetection reports its metrics under these names already.
               "mlm_loss": "mlm_loss", "mlm_accuracy": "mlm_accuracy", "rtd_loss": "rtd_loss",
               "rtd_accuracy": "rtd_accuracy", "rtd_recall": "rtd_recall", "rtd_auc": "rtd_auc"}


def _evaluate(network, data):
    """{"mlm_loss", "mlm_accuracy"(, "sop_loss", "sop_accuracy")}: means over all predicted positions."""
    values = network.evaluate(data, verbose=0, return_dict=True)
    return {_EVAL_NAMES[key]: float(value) for key, value in values.items() if key in _EVAL_NAMES}


def _count_records(sources):
    files, infos = resolve_shards(sources)
    if infos and sum(len(info["shards"]) for info in infos) == len(files):
        return sum(info["num_sequences"] for info in infos)
    return int(tf.data.TFRecordDataset(files).reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
