"""benchmarks/run_all.py's harness: each system in its own process, rounds in a shuffled order, real
padding in the inference batches, a failing system reported without stopping the others."""

import importlib.util
import os
import sys

import numpy as np

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(BENCH, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_inference_batches_have_real_padding_and_one_full_row():
    worker = load("bench_worker")
    batch = worker.variable_batch(worker.TINY2, 32, 128)
    lengths = batch["padding_mask"].sum(1)
    assert lengths[0] == 128 and lengths.min() >= 32 and len(set(lengths.tolist())) > 10
    assert (batch["token_ids"][batch["padding_mask"] == 0] == 0).all()
    assert (batch["token_ids"][:, 0] == 2).all() and (batch["token_ids"][np.arange(32), lengths - 1] == 3).all()
    assert worker.digest(batch["token_ids"]) == worker.digest(batch["token_ids"].copy())
    assert worker.digest(batch["token_ids"]) != worker.digest(batch["token_ids"][:, :-1])


def test_each_system_runs_in_its_own_process_and_a_broken_one_is_reported():
    rounds = load("process_rounds")
    calls = []
    setups = {"a": dict(row="peak", system="tf", precision="float32", n=32, warmup=1),
              "b": dict(row="peak", system="tf", precision="float32", n=64, warmup=1),
              "broken": dict(row="tokenizer", system="no-such-system")}
    results = rounds.time_systems(setups, rounds=3, iters=2, progress=calls.append)
    assert results["a"]["info"]["pid"] != results["b"]["info"]["pid"] != os.getpid()
    for name in ("a", "b"):
        assert len(results[name]["rounds"]) == 3 and 0 < results[name]["best"] <= results[name]["median"]
    assert results["b"]["info"]["flops"] == 2 * 64 ** 3
    assert "no-such-system" in results["broken"]["error"] and "best" not in results["broken"]
    assert any("setup failed" in line for line in calls)
