"""tf.distribute with our models: MirroredStrategy on 2 logical CPUs trains like one device (also with
gradient clipping and gradient accumulation), and MultiWorkerMirroredStrategy `fit` works with two
workers on 127.0.0.1 thanks to rubert_tf.training.keras_fixes (keras-team/keras#20585).

Every TensorFlow run happens in a subprocess (this file run as a script): logical devices and
TF_CONFIG are per process, so the pytest process and other tests are untouched.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from processes import free_ports, subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 400  # seconds per subprocess; a busy 2-core machine needs ~1-2 minutes

# tiny RuBERT; dropout off so that replicas and one device draw no different random masks
TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
N_EXAMPLES, SEQ_LEN, GLOBAL_BATCH = 32, 8, 8


def _run_script(args, env, timeout=TIMEOUT):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


# --------------------------------------------------------------------------- tests (pytest side)

def test_strategy_helpers(monkeypatch):
    """Batch / learning-rate arithmetic, name checking, TF_CONFIG parsing (no devices touched)."""
    import tensorflow as tf

    from rubert_tf.training import strategy as st

    one = tf.distribute.get_strategy()
    assert st.global_batch_size(16, one) == 16
    assert st.per_replica_batch_size(32, one) == 32
    assert st.scaled_learning_rate(1e-4, 256, 32) == pytest.approx(8e-4)
    assert st.scaled_learning_rate(1e-4, 256, 64, rule="sqrt") == pytest.approx(2e-4)
    assert st.scaled_learning_rate(1e-4, 256, 64, rule="none") == 1e-4
    assert st.mixed_precision_policy("bf16") == "mixed_bfloat16"
    assert st.mixed_precision_policy(None) == "float32"
    with pytest.raises(ValueError, match="strategy must be one of"):
        st.create_strategy("parameter_server")
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert st.worker_info() == ("worker", 1, False)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert st.worker_info() == ("worker", 0, True)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 5}}))
    with pytest.raises(ValueError, match="TF_CONFIG is not a valid cluster"):
        st._check_tf_config()
    monkeypatch.delenv("TF_CONFIG")
    assert st.worker_info() == ("worker", 0, True)


def test_multi_worker_compat_layer_is_idempotent_and_reversible():
    from keras.src.backend.tensorflow import trainer

    from rubert_tf.training import keras_fixes

    before = (trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"], trainer.reduce_per_replica,
              keras_fixes.multi_worker_fit_enabled())
    with keras_fixes.multi_worker_fit():
        patched = (trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"], trainer.reduce_per_replica)
        assert keras_fixes.multi_worker_fit_enabled()
        assert keras_fixes.enable_multi_worker_fit() is False  # second call: no-op
        assert (trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"], trainer.reduce_per_replica) == patched
        assert "20585" in keras_fixes.MULTI_WORKER_FIT.issue
    after = (trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"], trainer.reduce_per_replica,
             keras_fixes.multi_worker_fit_enabled())
    assert after == before


def test_mirrored_two_replicas_match_one_device(tmp_path):
    """Same global batch -> same losses and weights after 8 AdamW steps (warmup + decay schedule and an
    active clipnorm), also when the global batch is reached with gradient accumulation; and without
    rubert_tf's optimizer fixes Keras clips per replica and drifts away."""
    out = tmp_path / "mirrored.json"
    _run_script(["mirrored", str(out)], subprocess_env())
    result = json.loads(out.read_text())
    print(json.dumps(result, indent=1))
    assert result["replicas"] == 2
    single = result["runs"]["single"]
    for name in ("mirrored", "mirrored_accumulation"):
        run = result["runs"][name]
        assert run["iterations"] == single["iterations"] == 8, name
        assert run["loss"] == pytest.approx(single["loss"], abs=1e-5), name
        assert result["max_weight_diff"][name] < 1e-5, (name, result["max_weight_diff"])
    # sparse embedding updates: mirrored == one device, and they are not the dense update
    assert result["runs"]["mirrored_sparse"]["loss"] == pytest.approx(result["runs"]["single_sparse"]["loss"], abs=1e-5)
    assert result["max_weight_diff"]["mirrored_sparse_vs_single_sparse"] < 1e-5, result["max_weight_diff"]
    assert result["max_weight_diff"]["single_sparse_vs_single"] > 1e-4, result["max_weight_diff"]
    # mixed precision under the strategy, with accumulation; fp16 gets Keras' dynamic loss scaling
    assert result["runs"]["mirrored_bf16"]["optimizer"] == "AdamW"
    assert result["runs"]["mirrored_fp16"]["optimizer"] == "LossScaleOptimizer"
    for precision in ("bf16", "fp16"):
        run = result["runs"][f"mirrored_{precision}"]
        assert run["iterations"] == 8
        assert run["loss"] == pytest.approx(single["loss"], abs=3e-2), precision
    # Keras alone (fixes off): each replica clips its own half-gradient -> not one-device training.
    assert result["max_weight_diff"]["keras_mirrored_vs_keras_single"] > 1e-3, result["max_weight_diff"]


def test_multi_worker_fit_two_workers(tmp_path):
    """Two workers on 127.0.0.1: plain Keras fit fails as keras-team/keras#20585 says (in both spots);
    with the compat layer both finish, their weights agree and equal one device's, and
    training_callbacks writes the chief's and the other worker's backups apart."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "worker", str(tmp_path), str(index)],
            env=subprocess_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.time() + TIMEOUT
    outputs = []
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

    import numpy as np

    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    print(json.dumps(results, indent=1))
    for result in results:
        assert result["replicas"] == 2
        # spot 1: _maybe_symbolic_build's eager strategy.reduce on PerReplica
        assert "PerReplica" in result["error_without_compat"], result["error_without_compat"]
        # spot 2: reduce_per_replica's MEAN with axis=0 on scalar logs
        assert "Invalid reduction dimension 0" in result["error_with_only_build_fix"], result
        assert result["iterations"] == 4
    weights = [np.load(tmp_path / f"weights{i}.npy") for i in range(2)]
    reference = np.load(tmp_path / "weights_single.npy")
    worker_diff = float(np.abs(weights[0] - weights[1]).max())
    single_diff = float(np.abs(weights[0] - reference).max())
    print(f"multi-worker: max |w0 - w1| = {worker_diff:.3g}, max |w0 - one device| = {single_diff:.3g}")
    assert worker_diff == 0.0
    assert single_diff < 1e-5
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], abs=1e-6)
    assert results[0]["loss"] == pytest.approx(results[0]["single_loss"], abs=1e-5)
    # fault-tolerance files: the chief in out/, the other worker in out/workers/worker-1/
    assert (tmp_path / "run" / "checkpoints").is_dir()
    assert (tmp_path / "run" / "workers" / "worker-1" / "checkpoints").is_dir()


# --------------------------------------------------------------------------- subprocess side

def _tiny_data(mlm=False, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, TINY["vocab_size"], (N_EXAMPLES, SEQ_LEN)).astype("int32")
    lengths = rng.integers(4, SEQ_LEN + 1, N_EXAMPLES)
    padding_mask = (np.arange(SEQ_LEN)[None, :] < lengths[:, None]).astype("int32")
    token_ids *= padding_mask
    x = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": padding_mask}
    y = rng.integers(0, TINY["vocab_size"], (N_EXAMPLES, SEQ_LEN)) if mlm else rng.integers(0, 3, N_EXAMPLES)
    return x, y.astype("int32")


def _dataset(x, y, batch, repeat=False):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    if repeat:
        data = data.repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return data.with_options(options)


def _flat_weights(model):
    import numpy as np

    return np.concatenate([np.ravel(w) for w in model.get_weights()])


def _script_mirrored(out_path):
    from rubert_tf.training import create_strategy

    strategy = create_strategy("mirrored", num_logical_cpus=2)  # first TF call: splits the CPU in 2
    import contextlib

    import keras
    import numpy as np
    import tensorflow as tf

    import rubert_tf as rt
    from rubert_tf.training import create_optimizer, enable_gradient_accumulation, keras_fixes, set_mixed_precision

    tf.config.experimental.enable_op_determinism()
    x, y = _tiny_data()
    config = rt.RuBertConfig(**TINY)

    def train(strategy, batch, accumulation=1, fixes=True, sparse=False):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = rt.RuBertClassifier(config, num_labels=3)
            optimizer = create_optimizer(1e-2, total_steps=8, warmup_ratio=0.25, clipnorm=0.05, sparse_updates=sparse)
            enable_gradient_accumulation(optimizer, accumulation)
            model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        # fixes=False: Keras alone, the comparison that shows what the fixes are for
        with keras_fixes.fixes_for(strategy) if fixes else contextlib.nullcontext():
            history = model.fit(_dataset(x, y, batch), epochs=2, verbose=0)
        iterations = int(np.asarray(optimizer.iterations.numpy() if hasattr(optimizer.iterations, "numpy")
                                    else optimizer.iterations))
        run = {"loss": history.history["loss"], "iterations": iterations, "optimizer": type(model.optimizer).__name__}
        return run, _flat_weights(model)

    one_device = tf.distribute.get_strategy()
    runs, weights = {}, {}
    runs["single"], weights["single"] = train(one_device, GLOBAL_BATCH)
    runs["mirrored"], weights["mirrored"] = train(strategy, GLOBAL_BATCH)
    runs["mirrored_accumulation"], weights["mirrored_accumulation"] = train(strategy, GLOBAL_BATCH // 2, 2)
    # sparse (lazy) embedding updates: the same under the strategy as on one device
    runs["single_sparse"], weights["single_sparse"] = train(one_device, GLOBAL_BATCH, sparse=True)
    runs["mirrored_sparse"], weights["mirrored_sparse"] = train(strategy, GLOBAL_BATCH, sparse=True)
    for precision in ("bf16", "fp16"):  # mixed precision + accumulation under the strategy (fp16: loss scaling)
        set_mixed_precision(precision)
        try:
            runs[f"mirrored_{precision}"], _ = train(strategy, GLOBAL_BATCH // 2, 2)
        finally:
            set_mixed_precision(None)
    runs["keras_single"], weights["keras_single"] = train(one_device, GLOBAL_BATCH, fixes=False)
    runs["keras_mirrored"], weights["keras_mirrored"] = train(strategy, GLOBAL_BATCH, fixes=False)
    diffs = {name: float(np.abs(weights[name] - weights["single"]).max())
             for name in ("mirrored", "mirrored_accumulation")}
    diffs["mirrored_sparse_vs_single_sparse"] = float(np.abs(weights["mirrored_sparse"] - weights["single_sparse"]).max())
    diffs["single_sparse_vs_single"] = float(np.abs(weights["single_sparse"] - weights["single"]).max())
    diffs["keras_mirrored_vs_keras_single"] = float(np.abs(weights["keras_mirrored"] - weights["keras_single"]).max())
    with open(out_path, "w") as f:
        json.dump({"replicas": strategy.num_replicas_in_sync, "runs": runs, "max_weight_diff": diffs}, f)


def _script_worker(out_dir, index):
    from rubert_tf.training import create_strategy

    strategy = create_strategy("multi_worker")
    import keras
    import numpy as np
    import tensorflow as tf

    import rubert_tf as rt
    from rubert_tf.training import create_optimizer, keras_fixes, training_callbacks

    tf.config.experimental.enable_op_determinism()
    x, y = _tiny_data(mlm=True)
    config = rt.RuBertConfig(**TINY)

    def build(scope):
        with scope:
            keras.utils.set_random_seed(0)
            model = rt.RuBertForMaskedLM(config)
            model.compile(optimizer=create_optimizer(1e-2, total_steps=4, warmup_ratio=0.25, clipnorm=0.5),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    data = _dataset(x, y, GLOBAL_BATCH, repeat=True)
    result = {"replicas": strategy.num_replicas_in_sync}

    # 1. Keras as shipped: fails in _maybe_symbolic_build (keras-team/keras#20585).
    try:
        build(strategy.scope()).fit(data, epochs=1, steps_per_epoch=1, verbose=0)
        result["error_without_compat"] = ""
    except Exception as error:  # noqa: BLE001 - the point is to record what Keras raises
        result["error_without_compat"] = f"{type(error).__name__}: {error}"[:500]
    # 2. Only the first spot fixed: fails in reduce_per_replica (MEAN over axis 0 of scalar logs).
    from keras.src.backend.tensorflow import trainer

    with keras_fixes.multi_worker_fit():
        patched = trainer.reduce_per_replica
        trainer.reduce_per_replica = keras_fixes.MULTI_WORKER_FIT.original(
            "keras.src.backend.tensorflow.trainer", None, "reduce_per_replica")
        try:
            build(strategy.scope()).fit(data, epochs=1, steps_per_epoch=1, verbose=0)
            result["error_with_only_build_fix"] = ""
        except Exception as error:  # noqa: BLE001
            result["error_with_only_build_fix"] = f"{type(error).__name__}: {error}"[:500]
        finally:
            trainer.reduce_per_replica = patched
    # 3. With the fixes the strategy needs (multi-worker fit + optimizer fixes): works, with our
    # fault-tolerance callbacks.
    model = build(strategy.scope())
    callbacks = training_callbacks(os.path.join(out_dir, "run"), backup_every_steps=2, checkpoint_every_steps=2,
                                   tensorboard=False, strategy=strategy)
    with keras_fixes.fixes_for(strategy):
        history = model.fit(data, epochs=2, steps_per_epoch=2, callbacks=callbacks, verbose=0)
    result["loss"] = history.history["loss"]
    result["iterations"] = int(model.optimizer.iterations.numpy())
    np.save(os.path.join(out_dir, f"weights{index}.npy"), _flat_weights(model))
    if index == 0:  # the same training on one device, for reference
        reference = build(tf.distribute.get_strategy().scope())
        result["single_loss"] = reference.fit(data, epochs=2, steps_per_epoch=2, verbose=0).history["loss"]
        np.save(os.path.join(out_dir, "weights_single.npy"), _flat_weights(reference))
    with open(os.path.join(out_dir, f"worker{index}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    import logging

    logging.basicConfig(level=logging.WARNING)
    command = sys.argv[1]
    if command == "mirrored":
        _script_mirrored(sys.argv[2])
    elif command == "worker":
        _script_worker(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {command}")
