"""Learning-rate schedules (rubert_tf.training.schedules) and how finetune / pretrain / the CLI pick them:
values of every schedule against closed forms, serialisation with the optimizer, warmup in steps or as a
ratio, "auto" = constant from random init and linear from pretrained weights, init="random" loads no
weights, and a wall-clock budget (TimeLimit / pretrain(max_minutes=)) stops fit."""

import logging
import math
import os
import time

import keras
import numpy as np
import pytest

from rubert_tf.training import SCHEDULES, WarmupDecay, WarmupLinearDecay, create_optimizer, default_schedule
from rubert_tf.training.optimizer import check_schedule, warmup_steps_for
from rubert_tf.training.time_limit import TimeLimit

PEAK, TOTAL, WARMUP = 1e-3, 110, 10


def _closed_form(decay, step, floor_ratio=0.0):
    """The schedules written out independently of the implementation."""
    floor = PEAK * floor_ratio
    step = min(step, TOTAL)
    if step < WARMUP:
        return PEAK * step / WARMUP
    progress = (step - WARMUP) / (TOTAL - WARMUP)
    return {"constant": PEAK,
            "linear": PEAK - (PEAK - floor) * progress,
            "cosine": floor + (PEAK - floor) * 0.5 * (1 + math.cos(math.pi * progress)),
            "inverse_sqrt": max(PEAK * math.sqrt(WARMUP / max(step, 1)), floor)}[decay]


@pytest.mark.parametrize("decay", SCHEDULES)
@pytest.mark.parametrize("floor_ratio", [0.0, 0.1])
def test_schedule_values_match_their_closed_form(decay, floor_ratio):
    schedule = WarmupDecay(PEAK, TOTAL, WARMUP, decay=decay, min_lr_ratio=floor_ratio)
    steps = [0, 1, 5, 9, 10, 11, 37, 60, 100, 109, 110, 500]
    got = [float(schedule(step)) for step in steps]
    np.testing.assert_allclose(got, [_closed_form(decay, s, floor_ratio) for s in steps], rtol=1e-5, atol=1e-10)
    assert max(got) == pytest.approx(PEAK)
    if decay != "constant":  # decays after the warmup, never below the floor
        assert got[-1] < PEAK and min(got[4:]) >= PEAK * floor_ratio * (1 - 1e-6)


def test_decaying_schedules_end_at_the_floor():
    for decay in ("linear", "cosine"):
        assert float(WarmupDecay(PEAK, TOTAL, WARMUP, decay=decay, min_lr_ratio=0.2)(TOTAL)) == pytest.approx(2e-4)
    # inverse_sqrt without warmup: sqrt(1/step), the first step at the peak
    schedule = WarmupDecay(PEAK, 100, 0, decay="inverse_sqrt")
    assert [float(schedule(s)) for s in (0, 1, 4)] == pytest.approx([PEAK, PEAK, PEAK / 2])


def test_bert_schedule_keeps_its_name_and_values():
    old = WarmupLinearDecay(PEAK, warmup_steps=WARMUP, total_steps=TOTAL)
    new = WarmupDecay(PEAK, TOTAL, WARMUP, decay="linear")
    assert [float(old(s)) for s in (0, 5, 60, 110)] == pytest.approx([float(new(s)) for s in (0, 5, 60, 110)])
    assert WarmupLinearDecay.from_config(old.get_config()).get_config() == old.get_config()


@pytest.mark.parametrize("decay", SCHEDULES)
def test_schedule_survives_keras_serialisation_with_the_optimizer(decay):
    optimizer = create_optimizer(PEAK, TOTAL, schedule=decay, warmup_steps=WARMUP, min_lr_ratio=0.05)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    schedule = restored._learning_rate
    assert isinstance(schedule, WarmupDecay) and schedule.get_config() == optimizer._learning_rate.get_config()
    assert schedule.get_config()["decay"] == decay and schedule.warmup_steps == WARMUP
    assert float(schedule(50)) == pytest.approx(_closed_form(decay, 50, 0.05), rel=1e-5)


def test_warmup_in_steps_or_as_a_ratio():
    assert warmup_steps_for(200, warmup_ratio=0.1) == 20
    assert warmup_steps_for(200, warmup_ratio=0.1, warmup_steps=7) == 7  # steps win over the ratio
    assert warmup_steps_for(5, warmup_steps=50) == 5  # longer than the run: the whole run
    assert create_optimizer(PEAK, 200, warmup_ratio=0.25)._learning_rate.warmup_steps == 50


@pytest.mark.parametrize("kwargs, message", [
    (dict(schedule="exponential"), "unknown learning-rate schedule 'exponential'"),
    (dict(schedule="linear", min_lr_ratio=1.5), "min_lr_ratio"),
    (dict(schedule="linear", warmup_ratio=2.0), "warmup_ratio"),
    (dict(schedule="linear", warmup_steps=-1), "warmup_steps"),
    (dict(schedule="linear", learning_rate=0.0), "peak learning rate"),
])
def test_bad_schedule_arguments_are_refused_by_name(kwargs, message):
    kwargs = {"learning_rate": PEAK, **kwargs}
    with pytest.raises(ValueError, match=message):
        check_schedule(**kwargs)


def test_auto_is_constant_from_random_init_and_linear_from_pretrained_weights():
    assert default_schedule(weights_loaded=False) == "constant"
    assert default_schedule(weights_loaded=True) == "linear"


def test_cli_lists_the_same_schedules_as_the_library():
    from rubert_tf.cli import LR_SCHEDULES, build_parser

    assert LR_SCHEDULES == SCHEDULES
    args = build_parser().parse_args(["finetune", "classification", "--model", "m", "--train", "t.csv", "--out", "o",
                                      "--lr-schedule", "cosine", "--warmup-steps", "30", "--min-lr-ratio", "0.1",
                                      "--init", "random"])
    assert (args.lr_schedule, args.warmup_steps, args.min_lr_ratio, args.init) == ("cosine", 30, 0.1, "random")
    defaults = build_parser().parse_args(["finetune", "ner", "--model", "m", "--train", "t", "--out", "o"])
    assert (defaults.lr_schedule, defaults.warmup_ratio, defaults.init) == ("auto", 0.1, "pretrained")
    with pytest.raises(SystemExit):  # one warmup or the other
        build_parser().parse_args(["pretrain", "--train", "c", "--out", "o", "--config", "x", "--warmup-steps", "3",
                                   "--warmup-ratio", "0.1"])


# --------------------------------------------------------------------------- finetune: init and "auto"


def _tiny_classification(directory):
    import rubert_tf as rt

    words = ["кот", "дом", "лес", "хорошо", "плохо", "очень"]
    vocab = os.path.join(directory, "vocab.txt")
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    train = os.path.join(directory, "train.csv")
    rows = [f"{words[i % 3]} {'хорошо' if i % 2 else 'плохо'},{i % 2}" for i in range(16)]
    with open(train, "w", encoding="utf-8") as f:
        f.write("text,label\n" + "\n".join(rows) + "\n")
    keras.utils.set_random_seed(1)
    config = rt.RuBertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=16)
    checkpoint = os.path.join(directory, "checkpoint")
    encoder = rt.RuBertEncoder(config)
    # A recognisable weight: loaded models start from it, random ones do not.
    layer = encoder.get_layer("token_embedding")
    layer.embeddings.assign(np.full(layer.embeddings.shape, 0.5, "float32"))
    encoder.save_pretrained(checkpoint, tokenizer=rt.RuBertTokenizer(vocab))
    return train, checkpoint


class _FirstWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.embeddings = self.model.get_layer("encoder").get_layer("token_embedding").embeddings.numpy().copy()
        self.schedule = self.model.optimizer._learning_rate


@pytest.mark.parametrize("init, expected", [("pretrained", "linear"), ("random", "constant")])
def test_finetune_auto_schedule_follows_the_init(tmp_path, caplog, init, expected):
    from rubert_tf.finetune import finetune

    train, checkpoint = _tiny_classification(str(tmp_path))
    seen = _FirstWeights()
    with caplog.at_level(logging.INFO, logger="rubert_tf.finetune"):
        metrics = finetune("classification", model=checkpoint, train=train, out=str(tmp_path / init), epochs=1,
                           batch_size=8, learning_rate=1e-3, max_length=8, init=init, verbose=0, callbacks=[seen])
    assert metrics["lr_schedule"] == expected and metrics["init"] == init
    assert seen.schedule.decay == expected
    loaded = np.allclose(seen.embeddings, 0.5)
    assert loaded == (init == "pretrained")
    assert any(f"learning rate: {expected}" in r.getMessage() and f"init={init!r}" in r.getMessage()
               for r in caplog.records)


def test_finetune_explicit_schedule_and_warmup_steps(tmp_path):
    from rubert_tf.finetune import finetune

    train, checkpoint = _tiny_classification(str(tmp_path))
    seen = _FirstWeights()
    metrics = finetune("classification", model=checkpoint, train=train, out=str(tmp_path / "out"), epochs=2,
                       batch_size=8, learning_rate=1e-3, max_length=8, lr_schedule="cosine", warmup_steps=1,
                       min_lr_ratio=0.1, verbose=0, callbacks=[seen])
    assert metrics["lr_schedule"] == "cosine"
    assert seen.schedule.get_config() == {"peak_learning_rate": 1e-3, "total_steps": 4, "warmup_steps": 1,
                                          "decay": "cosine", "min_lr_ratio": 0.1}


def test_finetune_refuses_bad_schedule_and_init_before_any_work(tmp_path):
    from rubert_tf.finetune import finetune

    for kwargs, message in ((dict(lr_schedule="step"), "schedule 'step'"), (dict(init="zeros"), "init must be")):
        with pytest.raises(ValueError, match=message):
            finetune("classification", model=str(tmp_path / "none"), train="missing.csv", out=str(tmp_path / "o"),
                     **kwargs)
    assert not os.path.exists(tmp_path / "o")


# --------------------------------------------------------------------------- wall-clock budget


def test_time_limit_stops_fit_after_the_budget():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    now = [0.0]

    class Tick(keras.callbacks.Callback):  # every batch "takes" 0.25 s of a fake clock: no race with a loaded CPU
        def on_train_batch_end(self, batch, logs=None):
            now[0] += 0.25

    limit = TimeLimit(1.0, clock=lambda: now[0])
    x = np.zeros((400, 2), "float32")
    model.fit(x, x[:, :1], batch_size=1, epochs=3, verbose=0, callbacks=[Tick(), limit])
    assert limit.stopped_at_step == 4
    assert int(model.optimizer.iterations) == 4


def test_time_limit_does_not_count_batches_a_resumed_run_skips():
    from rubert_tf.training.callbacks import TrainingProgress

    progress, now = TrainingProgress(), [0.0]
    limit = TimeLimit(1.0, progress=progress, clock=lambda: now[0])
    limit.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    limit.model.stop_training = False
    limit.on_train_begin()
    progress.skipped_batch = True
    for batch in range(10):  # skipping is fast but the clock moves: the budget is not spent on skipped batches
        now[0] += 0.5
        limit.on_train_batch_end(batch)
    assert limit.stopped_at_step is None and not limit.model.stop_training
    progress.skipped_batch = False
    limit.on_train_batch_end(10)
    assert limit.stopped_at_step == 1 and limit.model.stop_training
    with pytest.raises(ValueError, match="positive"):
        TimeLimit(0)
