"""benchmarks/run_all.py writes its run into BENCHMARKS.md without erasing the rest (history, other sections)."""

import importlib.util
import os
import sys

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "run_all.py")


def load_run_all():
    spec = importlib.util.spec_from_file_location("run_all_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved  # run_all puts the repo and benchmarks/ first on sys.path for its own imports
    return module


def test_a_new_run_replaces_only_the_previous_marked_run():
    bench = load_run_all()
    history = ("# Benchmarks\n\nintro\n\n## Run 4\nold rows\n\n<!-- russian_tasks:begin -->\nquality\n"
               "<!-- russian_tasks:end -->\n")
    first = bench.splice_run(history, "## Latest run\nrun A\n")
    assert first.startswith("# Benchmarks\n\n" + bench.RUN_BEGIN)
    for kept in ("intro", "## Run 4\nold rows", "<!-- russian_tasks:begin -->\nquality\n<!-- russian_tasks:end -->"):
        assert kept in first
    second = bench.splice_run(first, "## Latest run\nrun B\n")
    assert "run B" in second and "run A" not in second and second.count(bench.RUN_BEGIN) == 1
    assert second.replace("run B", "run A") == first
    assert bench.splice_run("", "x").startswith("# Benchmarks")
