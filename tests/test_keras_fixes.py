"""Canaries for rubert_tf.training.keras_fixes: each test shows a Keras bug with its patch OFF and the fix with
it ON. When upstream fixes a bug, the "OFF" half of its canary fails: drop that patch then.

The multi-replica canaries run in subprocesses (this file as a script): logical CPUs and TF_CONFIG are per
process. Tiny Dense models, a few steps each.
"""

import json
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from processes import free_ports, subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 400


# --------------------------------------------------------------------------- in this process

def test_nothing_is_patched_by_import_create_optimizer_or_default_strategy():
    from rubert_tf.training import create_optimizer, create_strategy, keras_fixes

    assert keras_fixes.active_patches() == []
    create_optimizer(total_steps=4)
    strategy = create_strategy("default")
    assert keras_fixes.active_patches() == []
    assert keras_fixes.needed_for(strategy) == []  # one device needs none
    with keras_fixes.fixes_for(strategy):
        assert keras_fixes.active_patches() == []


def test_patches_are_idempotent_and_restore_keras_exactly():
    from keras.src.backend.tensorflow import trainer
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    from rubert_tf.training import keras_fixes

    before = (BaseOptimizer.__dict__["apply"], BaseOptimizer.__dict__["_backend_apply_gradients"],
              trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"], trainer.reduce_per_replica)
    with keras_fixes.optimizer_fixes(), keras_fixes.multi_worker_fit():
        assert keras_fixes.active_patches() == ["optimizer fixes", "multi-worker fit"]
        assert BaseOptimizer.__dict__["apply"] is not before[0]
        assert trainer.reduce_per_replica is not before[3]
        assert keras_fixes.enable_optimizer_fixes() is False  # already on: no-op
        with keras_fixes.optimizer_fixes():  # nested: leaves it on as found
            pass
        assert keras_fixes.OPTIMIZER_FIXES.active
    after = (BaseOptimizer.__dict__["apply"], BaseOptimizer.__dict__["_backend_apply_gradients"],
             trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"], trainer.reduce_per_replica)
    assert after == before and keras_fixes.active_patches() == []


def test_version_guard_warns_on_an_untested_keras_and_refuses_a_missing_function(monkeypatch, caplog):
    import keras

    from rubert_tf.training import keras_fixes

    assert keras_fixes.keras_version_is_tested()  # the pinned stack (requirements.txt)
    assert not keras_fixes.keras_version_is_tested("3.16.0") and not keras_fixes.keras_version_is_tested("3.150")
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    probe = keras_fixes.KerasPatch("probe", "no issue", [
        ("keras.src.backend.tensorflow.trainer", None, "reduce_per_replica", lambda original: original)])
    with caplog.at_level(logging.WARNING, logger=keras_fixes.__name__):
        with probe.applied():
            assert probe.active  # applied anyway
    assert "Keras 3.99.0" in caplog.text and "tests/test_keras_fixes.py" in caplog.text
    missing = keras_fixes.KerasPatch("gone", "keras-team/keras#0", [
        ("keras.src.optimizers.base_optimizer", "BaseOptimizer", "no_such_method", lambda original: original)])
    with pytest.raises(RuntimeError, match=r"BaseOptimizer\.no_such_method is missing in Keras 3\.99\.0"):
        missing.enable()
    assert not missing.active


@pytest.mark.parametrize("patched", [False, True], ids=["off", "on"])
def test_canary_repeated_sparse_rows_in_keras_adam(patched):
    """OPTIMIZER_FIXES bug 3 (no upstream issue): a token twice in a batch moves sqrt(2)*lr under Keras' Adam
    on the raw IndexedSlices, lr (as dense Adam) with the patch."""
    import contextlib

    import keras
    import tensorflow as tf

    from rubert_tf.training import keras_fixes

    embedding = keras.layers.Embedding(4, 1, embeddings_initializer="zeros")
    embedding.build((None,))
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(embedding.trainable_variables)
    with keras_fixes.optimizer_fixes() if patched else contextlib.nullcontext():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(embedding(tf.constant([1, 1])))
        grads = tape.gradient(loss, embedding.trainable_variables)
        assert isinstance(grads[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(grads, embedding.trainable_variables))
    moved = -float(embedding.embeddings.numpy()[1, 0])
    assert moved == pytest.approx(0.01 if patched else 0.01 * np.sqrt(2), rel=1e-4)


# --------------------------------------------------------------------------- two replicas (subprocess)

@pytest.fixture(scope="module")
def mirrored_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras_fixes") / "mirrored.json"
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "mirrored", str(out)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"mirrored script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(out.read_text())


def test_runner_rule_two_replicas_need_the_optimizer_fixes_only(mirrored_results):
    assert mirrored_results["replicas"] == 2
    assert mirrored_results["needed"] == ["optimizer fixes"]


def test_canary_clipping_sees_each_replicas_partial_gradient(mirrored_results):
    """OPTIMIZER_FIXES bug 1 (no upstream issue; cf. tensorflow/tensorflow#33929): with an active
    global_clipnorm two replicas drift from one device; with the patch they match it."""
    diff = mirrored_results["clip_weight_diff"]
    assert diff["off"] > 1e-2, diff
    assert diff["on"] < 1e-6, diff


def test_canary_loss_scale_check_reads_replica_0_only(mirrored_results):
    """OPTIMIZER_FIXES bug 1, LossScaleOptimizer: an overflow on replica 1 only passes Keras' finite check
    and reaches the weights; with the patch the step is skipped and the loss scale halved."""
    off, on = mirrored_results["loss_scale"]["off"], mirrored_results["loss_scale"]["on"]
    assert not off["weights_finite"], off
    assert on["weights_finite"] and on["weights_unchanged"], on
    assert on["scale"] == pytest.approx(on["initial_scale"] / 2), on


def test_canary_gradient_accumulation_under_merge_call(mirrored_results):
    """OPTIMIZER_FIXES bug 2 (keras-team/keras#20582): `fit` with gradient_accumulation_steps fails under
    MirroredStrategy; with the patch 2 micro-batches of 4 equal one device's batch of 8 (clipping included)."""
    accumulation = mirrored_results["accumulation"]
    assert "merge_call" in accumulation["error_off"], accumulation
    assert accumulation["weight_diff_on"] < 1e-6, accumulation


def _dense_model(keras, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])


def _data(tf, x, y, batch, repeat=False):
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    data = data.repeat() if repeat else data
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)


def _script_mirrored(out_path):
    from rubert_tf.training import create_strategy

    strategy = create_strategy("mirrored", num_logical_cpus=2)  # first TF call: splits the CPU in 2
    import contextlib

    import keras
    import tensorflow as tf

    from rubert_tf.training import keras_fixes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 3.0, 0.5], "float32") + 5.0)[:, None].astype("float32")
    one_device = tf.distribute.get_strategy()
    result = {"replicas": strategy.num_replicas_in_sync, "needed": [p.name for p in keras_fixes.needed_for(strategy)]}

    def train(scope_strategy, optimizer, batch, patched):
        with scope_strategy.scope():
            model = _dense_model(keras)
            model.compile(optimizer=optimizer(), loss="mse")
        with keras_fixes.optimizer_fixes() if patched else contextlib.nullcontext():
            model.fit(_data(tf, x, y, batch), epochs=1, verbose=0, shuffle=False)
        return model

    def weights(model):
        return np.concatenate([np.ravel(w) for w in model.get_weights()])

    # bug 1: global clipping of each replica's half gradient
    def clipped():
        return keras.optimizers.SGD(0.1, global_clipnorm=0.1)

    single = weights(train(one_device, clipped, 8, patched=False))
    result["clip_weight_diff"] = {
        name: float(np.abs(weights(train(strategy, clipped, 8, patched=patched)) - single).max())
        for name, patched in (("off", False), ("on", True))}

    # bug 1, LossScaleOptimizer: an inf input in replica 1's half of the batch only
    x_bad, y_bad = x[:4].copy(), y[:4]
    x_bad[2:] = np.inf
    result["loss_scale"] = {}
    for name, patched in (("off", False), ("on", True)):
        with strategy.scope():
            model = _dense_model(keras)
            optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
            model.compile(optimizer=optimizer, loss="mse")
            optimizer.build(model.trainable_variables)  # creates dynamic_scale
        start, initial_scale = weights(model), float(optimizer.dynamic_scale.numpy())
        with keras_fixes.optimizer_fixes() if patched else contextlib.nullcontext():
            model.fit(_data(tf, x_bad, y_bad, 4), epochs=1, verbose=0, shuffle=False)
        now = weights(model)
        result["loss_scale"][name] = {
            "weights_finite": bool(np.isfinite(now).all()), "weights_unchanged": bool(np.array_equal(now, start)),
            "initial_scale": initial_scale, "scale": float(optimizer.dynamic_scale.numpy())}

    # bug 2: gradient accumulation under a merge_call strategy (2 x 4 against one device's batch of 8)
    def accumulating():
        return keras.optimizers.SGD(0.1, global_clipnorm=0.1, gradient_accumulation_steps=2)

    result["accumulation"] = {}
    try:
        train(strategy, accumulating, 4, patched=False)
        result["accumulation"]["error_off"] = ""
    except Exception as error:  # noqa: BLE001 - the point is to record what Keras raises
        result["accumulation"]["error_off"] = f"{type(error).__name__}: {error}"[:500]
    accumulated = weights(train(strategy, accumulating, 4, patched=True))
    result["accumulation"]["weight_diff_on"] = float(np.abs(accumulated - single).max())
    with open(out_path, "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------------- two workers (subprocesses)

def test_canary_multi_worker_fit(tmp_path):
    """MULTI_WORKER_FIT (keras-team/keras#20585): with two workers Keras' fit fails in
    _maybe_symbolic_build, then (that spot fixed) in reduce_per_replica; with the patch both workers
    train and agree."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", str(tmp_path), str(index)],
                                      env=subprocess_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    deadline, outputs = time.time() + TIMEOUT, []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(1, deadline - time.time())))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for index, (proc, (stdout, stderr)) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"worker {index} failed:\n{stdout[-3000:]}\n{stderr[-6000:]}"
    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    for result in results:
        assert result["needed"] == ["optimizer fixes", "multi-worker fit"]
        assert "PerReplica" in result["error_off"], result
        assert "Invalid reduction dimension 0" in result["error_with_only_build_fix"], result
        assert np.isfinite(result["loss_on"])
    assert results[0]["weights_on"] == results[1]["weights_on"]


def _script_worker(out_dir, index):
    from rubert_tf.training import create_strategy

    strategy = create_strategy("multi_worker")
    import keras
    import tensorflow as tf

    from rubert_tf.training import keras_fixes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True).astype("float32")
    data = _data(tf, x, y, 4, repeat=True)

    def fit():
        with strategy.scope():
            model = _dense_model(keras)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        return model, model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)

    def error_of(run):
        try:
            run()
            return ""
        except Exception as error:  # noqa: BLE001 - the point is to record what Keras raises
            return f"{type(error).__name__}: {error}"[:500]

    result = {"needed": [p.name for p in keras_fixes.needed_for(strategy)], "error_off": error_of(fit)}
    with keras_fixes.multi_worker_fit():
        from keras.src.backend.tensorflow import trainer

        patched = trainer.reduce_per_replica
        trainer.reduce_per_replica = keras_fixes.MULTI_WORKER_FIT.original(
            "keras.src.backend.tensorflow.trainer", None, "reduce_per_replica")
        try:
            result["error_with_only_build_fix"] = error_of(fit)
        finally:
            trainer.reduce_per_replica = patched
    with keras_fixes.fixes_for(strategy):
        model, history = fit()
    result["loss_on"] = float(history.history["loss"][-1])
    result["weights_on"] = [float(v) for w in model.get_weights() for v in np.ravel(w)]
    with open(os.path.join(out_dir, f"worker{index}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    logging.basicConfig(level=logging.WARNING)
    if sys.argv[1] == "mirrored":
        _script_mirrored(sys.argv[2])
    elif sys.argv[1] == "worker":
        _script_worker(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")
