"""Time benchmark systems each in its own process, round by round in a shuffled order (run_all.py's clock).

    results = time_systems({"ours": {...setup...}, "hf": {...}}, rounds=9, iters=1)
    results["ours"]["best"], results["ours"]["median"], results["ours"]["info"]

Each system gets a fresh `benchmarks/bench_worker.py` process: it builds its model and warms up while
the others wait, then each round runs every system `iters` times, one system at a time, in an order
shuffled per round (a seeded random.Random): no system shares the CPUs with another, none always runs
first or last, and all see the same minutes of the machine. A system's figure is its best round (noise on
a shared machine only adds time); the median is reported beside it.
"""

import json
import os
import random
import statistics
import subprocess
import sys
import time

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_worker.py")


class WorkerError(RuntimeError):
    pass


class Worker:
    """One bench_worker.py process; `request(message)` -> its reply (a dict)."""

    def __init__(self, name, threads, inter_op, log=None):
        self.name = name
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(inter_op),
                   TF_CPP_MIN_LOG_LEVEL="2", TOKENIZERS_PARALLELISM="true", PYTHONUNBUFFERED="1")
        self.log = log or open(os.devnull, "w")
        self.process = subprocess.Popen(
            [sys.executable, WORKER, "--threads", str(threads), "--inter-op", str(inter_op)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)

    def request(self, message):
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("@@ "):
                reply = json.loads(line[3:])
                if not reply.get("ok"):
                    raise WorkerError(f"{self.name}: {reply.get('error')}\n{reply.get('traceback', '')}")
                return reply
        raise WorkerError(f"{self.name}: the worker exited (code {self.process.wait()}) before answering")

    def close(self):
        if self.process.poll() is None:
            try:
                self.request({"exit": True})
            except (WorkerError, BrokenPipeError, OSError):
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def time_systems(setups, rounds, iters=1, seed=0, threads=2, inter_op=1, log=None, progress=print):
    """setups: system -> bench_worker setup options (row, system, precision, ...). Returns system ->
    {"best", "median" (seconds per unit), "info" (what setup reported)} or {"error": text} for a system
    whose setup or run failed (the others still run)."""
    workers, results = {}, {}
    try:
        for name, options in setups.items():
            started = time.perf_counter()
            worker = Worker(name, threads, inter_op, log)
            try:
                info = worker.request({"setup": options})["info"]
            except WorkerError as error:
                worker.close()
                results[name] = {"error": str(error).splitlines()[0]}
                progress(f"  {name}: setup failed: {results[name]['error']}")
                continue
            workers[name] = worker
            results[name] = {"info": info, "rounds": []}
            progress(f"  {name}: ready in {time.perf_counter() - started:.0f} s")
        order_rng = random.Random(seed)
        for _ in range(rounds):
            order = list(workers)
            order_rng.shuffle(order)
            for name in order:
                try:
                    seconds = workers[name].request({"time": iters})["seconds"]
                except WorkerError as error:
                    results[name] = {"error": str(error).splitlines()[0]}
                    workers.pop(name).close()
                    continue
                results[name]["rounds"].append(sum(seconds) / len(seconds))
    finally:
        for worker in workers.values():
            worker.close()
    for result in results.values():
        if result.get("rounds"):
            result["best"] = min(result["rounds"])
            result["median"] = statistics.median(result["rounds"])
    return results
