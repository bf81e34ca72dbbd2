"""Fault tolerance of rubert_tf.training.callbacks and the optimizer fixes it relies on.

- A training subprocess killed with SIGKILL in the middle of an epoch resumes from its last backup
  (step counter, optimizer iterations, dropout RNG and data position restored) and ends with the
  weights of an uninterrupted run (deterministic ops, fixed seeds, no shuffle).
- Corrupt or truncated checkpoints are detected, reported, and the previous good one is used.
- Gradient accumulation equals a larger batch (with our AdamW + warmup/decay + clipping).
"""

import glob
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from processes import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 400

TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=32)
SEQ_LEN = 8
# 48 examples in batches of 8 = a 6-batch stream, epochs of 5 steps: the data position of a step is
# not its position in the epoch, so resuming at the wrong place in the data would show.
N_EXAMPLES, BATCH, STEPS_PER_EPOCH, EPOCHS = 48, 8, 5, 3
BACKUP_EVERY, CHECKPOINT_EVERY, KILL_AFTER_BACKUP = 3, 4, 6  # step 6 = epoch 1, batch 1: mid-epoch


def _tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, TINY["vocab_size"], (N_EXAMPLES, SEQ_LEN)).astype("int32")
    lengths = rng.integers(3, SEQ_LEN + 1, N_EXAMPLES)
    padding_mask = (np.arange(SEQ_LEN)[None, :] < lengths[:, None]).astype("int32")
    x = {"token_ids": token_ids * padding_mask, "segment_ids": np.zeros_like(token_ids), "padding_mask": padding_mask}
    return x, rng.integers(0, 3, N_EXAMPLES).astype("int32")


def _classifier(dropout=0.1, learning_rate=1e-3, total_steps=STEPS_PER_EPOCH * EPOCHS, accumulation=1, clipnorm=1.0):
    import keras

    import rubert_tf as rt
    from rubert_tf.training import create_optimizer, enable_gradient_accumulation

    keras.utils.set_random_seed(0)
    config = rt.RuBertConfig(**TINY, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = rt.RuBertClassifier(config, num_labels=3)
    optimizer = create_optimizer(learning_rate, total_steps=total_steps, warmup_ratio=0.2, clipnorm=clipnorm)
    enable_gradient_accumulation(optimizer, accumulation)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _stream(batch=BATCH):
    import tensorflow as tf

    x, y = _tiny_data()
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()


def _flat(model):
    return np.concatenate([np.ravel(w) for w in model.get_weights()])


def _train_process(out_dir, result_path, sleep=0.0):
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "train", str(out_dir), str(result_path),
                             str(sleep)], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, what, timeout=TIMEOUT):
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}"
    return stderr


# --------------------------------------------------------------------------- kill -9 and resume

def test_sigkill_mid_epoch_resumes_from_last_backup(tmp_path):
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    reference = _train_process(reference_dir, tmp_path / "reference.json")
    victim = _train_process(run_dir, tmp_path / "killed.json", sleep=0.4)
    backup = run_dir / "backup" / f"ckpt-{KILL_AFTER_BACKUP:09d}.json"
    deadline = time.time() + TIMEOUT
    step_file = run_dir / "step.txt"
    while not (backup.exists() and step_file.exists() and int(step_file.read_text() or 0) >= KILL_AFTER_BACKUP):
        assert victim.poll() is None, "the run to be killed ended early:\n" + victim.communicate()[1][-5000:]
        assert time.time() < deadline, "no backup appeared in time"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    step_at_kill = int(step_file.read_text())
    assert KILL_AFTER_BACKUP <= step_at_kill < STEPS_PER_EPOCH * EPOCHS
    assert (run_dir / "backup" / "RUNNING").exists()
    assert not (tmp_path / "killed.json").exists()

    stderr = _finish(_train_process(run_dir, tmp_path / "resumed.json"), "resumed run")
    _finish(reference, "reference run")
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    uninterrupted = json.loads((tmp_path / "reference.json").read_text())
    diff = float(np.abs(np.load(tmp_path / "resumed.npy") - np.load(tmp_path / "reference.npy")).max())
    print(f"killed at step {step_at_kill}; resumed from step {resumed['start_step']} (epoch "
          f"{resumed['initial_epoch']}, optimizer iterations {resumed['start_iterations']}); "
          f"max |w_resumed - w_uninterrupted| = {diff:.3g}")
    assert "resuming from" in stderr
    assert uninterrupted["start_step"] == 0 and uninterrupted["start_iterations"] == 0
    assert resumed["start_step"] == KILL_AFTER_BACKUP          # not from scratch ...
    assert resumed["start_iterations"] == KILL_AFTER_BACKUP    # ... optimizer state restored too
    assert resumed["initial_epoch"] == KILL_AFTER_BACKUP // STEPS_PER_EPOCH
    assert step_at_kill - resumed["start_step"] < BACKUP_EVERY  # lost at most one backup interval
    assert resumed["final_iterations"] == uninterrupted["final_iterations"] == STEPS_PER_EPOCH * EPOCHS
    assert len(resumed["loss"]) == EPOCHS - resumed["initial_epoch"]
    assert resumed["loss"][-1] == pytest.approx(uninterrupted["loss"][-1], abs=1e-5)
    assert diff < 1e-5
    # finished: backups removed, periodic checkpoints kept, numbering continued across the restart
    assert not (run_dir / "backup").exists()
    steps = sorted(int(p.split("-")[-1].split(".")[0]) for p in glob.glob(str(run_dir / "checkpoints" / "*.json")))
    assert steps[-1] == STEPS_PER_EPOCH * EPOCHS
    # TensorBoard: loss, accuracy, learning rate and throughput, at global steps
    tags = _tensorboard_tags(run_dir / "logs" / "train")
    for tag in ("batch_loss", "batch_accuracy", "batch_learning_rate", "batch_steps_per_second",
                "batch_examples_per_second", "batch_tokens_per_second", "epoch_loss", "epoch_learning_rate"):
        assert tag in tags, sorted(tags)
    total = STEPS_PER_EPOCH * EPOCHS
    assert sorted(set(tags["batch_loss"])) == list(range(2, total + 1, 2))  # every 2 steps, no restart at 0


def _tensorboard_tags(directory):
    import tensorflow as tf

    tags = {}
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def _script_train(out_dir, result_path, sleep):
    import keras
    import tensorflow as tf

    from rubert_tf.training import training_callbacks

    tf.config.experimental.enable_op_determinism()
    model = _classifier()
    callbacks = training_callbacks(out_dir, backup_every_steps=BACKUP_EVERY, checkpoint_every_steps=CHECKPOINT_EVERY,
                                   keep=3, log_every_steps=2, batch_size=BATCH, sequence_length=SEQ_LEN)
    progress = callbacks[0].progress
    state = {}

    class Observe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # runs after BackupAndRestore restored the state
            state["start_step"] = progress.global_step
            state["start_iterations"] = int(self.model.optimizer.iterations.numpy())
            state["initial_epoch"] = int(self.model._initial_epoch or 0)

        def on_train_batch_end(self, batch, logs=None):
            with open(os.path.join(out_dir, "step.tmp"), "w") as f:
                f.write(str(progress.global_step))
            os.replace(os.path.join(out_dir, "step.tmp"), os.path.join(out_dir, "step.txt"))
            if sleep:
                time.sleep(sleep)

    history = model.fit(_stream(), epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, callbacks=callbacks + [Observe()],
                        verbose=2)
    state["loss"] = history.history["loss"]
    state["final_iterations"] = int(model.optimizer.iterations.numpy())
    np.save(str(result_path)[:-len(".json")] + ".npy", _flat(model))
    with open(result_path, "w") as f:
        json.dump(state, f)


# --------------------------------------------------------------------------- corrupt checkpoints

class _Crash(Exception):
    pass


def _crash_at(step):
    import keras

    class Crash(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            Crash.seen += 1
            if Crash.seen == step:
                raise _Crash(f"simulated crash after step {step}")

    return Crash()


def test_corrupt_checkpoints_are_reported_and_previous_good_one_used(tmp_path, caplog):
    from rubert_tf.training import restore_latest_good_checkpoint, resume_state, training_callbacks

    out = str(tmp_path / "run")

    def callbacks(**kwargs):
        return training_callbacks(out, backup_every_steps=3, checkpoint_every_steps=2, keep=3, tensorboard=False,
                                  **kwargs)

    model = _classifier(dropout=0.0)
    with pytest.raises(_Crash):
        model.fit(_stream(), epochs=3, steps_per_epoch=4, callbacks=callbacks() + [_crash_at(7)], verbose=0)
    backups = os.path.join(out, "backup")
    checkpoints = os.path.join(out, "checkpoints")
    assert sorted(os.listdir(backups)) == ["RUNNING", "ckpt-000000003.json", "ckpt-000000003.weights.h5",
                                           "ckpt-000000006.json", "ckpt-000000006.weights.h5"]
    # the newest backup truncated (a disk that filled up), the newest checkpoint silently damaged
    truncated = os.path.join(backups, "ckpt-000000006.weights.h5")
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) // 2)
    damaged = os.path.join(checkpoints, "ckpt-000000006.weights.h5")
    with open(damaged, "r+b") as f:  # flip 8 bytes in the middle: same size, other content
        f.seek(os.path.getsize(damaged) // 2)
        chunk = f.read(8)
        f.seek(os.path.getsize(damaged) // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))
    assert resume_state(out)["global_step"] == 4

    # resume=False refuses to overwrite an interrupted run
    with pytest.raises(FileExistsError, match="interrupted run"):
        _classifier(dropout=0.0).fit(_stream(), epochs=3, steps_per_epoch=4, callbacks=callbacks(resume=False),
                                     verbose=0)

    caplog.clear()
    model = _classifier(dropout=0.0)
    run = callbacks()
    with caplog.at_level(logging.WARNING, logger="rubert_tf.training.callbacks"):
        model.fit(_stream(), epochs=3, steps_per_epoch=4, callbacks=run, verbose=0)
    messages = "\n".join(record.getMessage() for record in caplog.records)
    print(messages)
    assert "ckpt-000000006.weights.h5" in messages and "truncated" in messages
    assert f"{damaged}: SHA-256 differs" in messages
    assert run[0].progress.resumed_from["global_step"] == 4  # previous good one: checkpoint 4 (> backup 3)
    assert int(model.optimizer.iterations.numpy()) == 12

    # restore_latest_good_checkpoint: the final checkpoint, or the one before when that is damaged
    fresh = _classifier(dropout=0.0)
    meta = restore_latest_good_checkpoint(fresh, out)
    assert meta["global_step"] == 12
    np.testing.assert_array_equal(_flat(fresh), _flat(model))
    assert int(fresh.optimizer.iterations.numpy()) == 12
    with open(os.path.join(checkpoints, "ckpt-000000012.json"), "w") as f:
        f.write('{"global_step": 12, "weig')  # a torn metadata file
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rubert_tf.training.callbacks"):
        meta = restore_latest_good_checkpoint(_classifier(dropout=0.0), out)
    assert meta["global_step"] == 10
    assert "unreadable metadata" in caplog.text


def test_checkpoint_store_is_atomic(tmp_path, monkeypatch, caplog):
    """A write that fails half-way leaves no checkpoint behind and the previous one valid; the debris
    of a killed writer (temp file, weights renamed in without their .json) is ignored and cleaned."""
    import keras

    from rubert_tf.training import callbacks as cb

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    store = cb.CheckpointStore(str(tmp_path), keep=2)
    store.save(model, {"global_step": 1, "epoch": 0, "batch_in_epoch": 1})

    def broken_check(path):
        raise cb.CorruptCheckpoint(f"{path}: read-back failed")

    monkeypatch.setattr(cb, "_check_hdf5", broken_check)
    with pytest.raises(cb.CorruptCheckpoint):
        store.save(model, {"global_step": 2, "epoch": 0, "batch_in_epoch": 2})
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt-000000001.json", "ckpt-000000001.weights.h5"]
    # debris of a writer killed at various points
    (tmp_path / ".ckpt-000000003.tmp-999999.weights.h5").write_bytes(b"partial")
    (tmp_path / "ckpt-000000003.weights.h5").write_bytes(b"renamed in, but no .json")
    assert cb.latest_good_checkpoint([str(tmp_path)])["global_step"] == 1
    store.save(model, {"global_step": 4, "epoch": 0, "batch_in_epoch": 4})
    assert sorted(os.listdir(tmp_path)) == ["ckpt-000000001.json", "ckpt-000000001.weights.h5",
                                            "ckpt-000000004.json", "ckpt-000000004.weights.h5"]


# --------------------------------------------------------------------------- optimizer behaviour

@pytest.fixture
def optimizer_fixes():
    from rubert_tf.training import keras_fixes

    with keras_fixes.optimizer_fixes():
        yield


def test_gradient_accumulation_equals_larger_batch(optimizer_fixes):
    """4 micro-batches of 2 with accumulation == batches of 8: AdamW, warmup + decay schedule (which
    must count updates, not micro-batches) and an active global clipnorm."""
    big = _classifier(dropout=0.0, learning_rate=1e-2, total_steps=6, clipnorm=0.05)
    big_history = big.fit(_stream(8), epochs=2, steps_per_epoch=3, verbose=0)
    small = _classifier(dropout=0.0, learning_rate=1e-2, total_steps=6, clipnorm=0.05, accumulation=4)
    small_history = small.fit(_stream(2), epochs=2, steps_per_epoch=12, verbose=0)
    diff = float(np.abs(_flat(big) - _flat(small)).max())
    print(f"gradient accumulation 4x2 vs batch 8: max weight diff {diff:.3g}")
    assert int(small.optimizer.iterations.numpy()) == int(big.optimizer.iterations.numpy()) == 6
    assert small_history.history["loss"] == pytest.approx(big_history.history["loss"], abs=1e-5)
    assert diff < 1e-5


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])
def test_adam_on_repeated_embedding_rows_moves_like_dense_adam(optimizer_fixes, jit_compile):
    """A token twice in a batch: Keras 3's Adam on the raw IndexedSlices moves it sqrt(2)*lr; with the
    deduplicated gradient it moves lr, as dense Adam (and PyTorch) does; also inside XLA."""
    import keras
    import tensorflow as tf

    embedding = keras.layers.Embedding(4, 1, embeddings_initializer="zeros")
    embedding.build((None,))
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(embedding.trainable_variables)

    def step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(embedding(ids))
        grads = tape.gradient(loss, embedding.trainable_variables)
        assert isinstance(grads[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(grads, embedding.trainable_variables))

    if jit_compile:
        step = tf.function(step, jit_compile=True)
    step(tf.constant([1, 1]))
    np.testing.assert_allclose(embedding.embeddings.numpy().ravel(), [0, -0.01, 0, 0], atol=1e-6)


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if sys.argv[1] == "train":
        _script_train(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")
