"""REST latency (p50/p90/p99) and throughput of `rubert-tf serve`, with and without --enable_batching.

    python benchmarks/serving_latency.py                                 # a built-in tiny SavedModel
    python benchmarks/serving_latency.py --builtin dense                 # a built-in compute-bound one
    python benchmarks/serving_latency.py savedmodels/sentiment/1         # one exported version ...
    python benchmarks/serving_latency.py savedmodels/sentiment           # ... or a base path of versions
    python benchmarks/serving_latency.py PATH --threads 8 --requests 200 --rows 1 --max_batch_size 32 \\
        --batch_timeout_micros 2000 --text "Отличный фильм, всем советую!"

Not a test. Each mode starts `python -m rubert_tf.serving` on free ports, waits for its ready line, warms
up, then `--threads` keep-alive clients (rubert_tf.serving.Client) send `--requests` predict calls each
(`--rows` instances per call; every string input of the signature gets `--text`). The client threads run
in this process, so on a small machine they compete with the server for the CPUs: compare the modes with
each other, not with TF Serving's C++ numbers.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
READY = re.compile(r"ready grpc_port=(\d+) rest_api_port=(\d+)")


def build_tiny_model(path):
    """text [None] -> probabilities [B, 3], label [B], label_id [B], with a tf_text tokenizer in the graph."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    module = tf.Module()
    module.tokenizer = tf_text.WhitespaceTokenizer()
    module.weights = tf.Variable([[0.5, -0.25, 0.1], [0.0, 0.3, -0.2]])
    module.names = tf.constant(["negative", "neutral", "positive"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def classify(text):
        count = tf.cast(module.tokenizer.tokenize(text).row_lengths(), tf.float32)
        chars = tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.float32) / 10.0
        probabilities = tf.nn.softmax(tf.matmul(tf.stack([count, chars], axis=1), module.weights), axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "label": tf.gather(module.names, label_id), "label_id": label_id}

    tf.saved_model.save(module, path, signatures={"serving_default": classify})


def build_dense_model(path, width=512, layers=4, tokens=32, buckets=8192):
    """Compute-bound like a small transformer: hashed tokens -> embeddings -> `layers` GELU MLP blocks over
    every token -> mean pool -> 3 classes. Batching pays off here, unlike on the tiny model."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    rng = tf.random.Generator.from_seed(0)
    module = tf.Module()
    module.tokenizer = tf_text.WhitespaceTokenizer()
    module.embeddings = tf.Variable(rng.normal([buckets, width]) * 0.02)
    module.blocks = [(tf.Variable(rng.normal([width, 4 * width]) * 0.02),
                      tf.Variable(rng.normal([4 * width, width]) * 0.02)) for _ in range(layers)]
    module.head = tf.Variable(rng.normal([width, 3]) * 0.02)
    module.names = tf.constant(["negative", "neutral", "positive"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def classify(text):
        words = module.tokenizer.tokenize(text)
        ids = tf.strings.to_hash_bucket_fast(words, buckets).to_tensor(shape=[None, tokens])
        hidden = tf.gather(module.embeddings, ids)
        for up, down in module.blocks:
            hidden = hidden + tf.matmul(tf.nn.gelu(tf.matmul(hidden, up)), down)
        probabilities = tf.nn.softmax(tf.matmul(tf.reduce_mean(hidden, axis=1), module.head), axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "label": tf.gather(module.names, label_id), "label_id": label_id}

    tf.saved_model.save(module, path, signatures={"serving_default": classify})


def base_path_for(path, workdir, builtin="tiny"):
    """A model base path: `path` itself if it holds integer folders, else a base with `path` as version 1."""
    if path is None:
        base = os.path.join(workdir, builtin)
        (build_tiny_model if builtin == "tiny" else build_dense_model)(os.path.join(base, "1"))
        return base
    path = os.path.abspath(path)
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        base = os.path.join(workdir, "linked")
        os.makedirs(base)
        os.symlink(path, os.path.join(base, "1"))
        return base
    if any(name.isdigit() for name in os.listdir(path)):
        return path
    raise SystemExit(f"{path}: neither a SavedModel folder nor a base path with integer version folders")


def start_server(base, model_name, batching, args, log_file, server_flags=()):
    command = [sys.executable, "-m", "rubert_tf.serving", f"--model_name={model_name}", f"--model_base_path={base}",
               "--port=0", "--rest_api_port=0", "--file_system_poll_wait_seconds=0", *server_flags]
    if batching:
        command += ["--enable_batching", f"--max_batch_size={args.max_batch_size}",
                    f"--batch_timeout_micros={args.batch_timeout_micros}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True)
    for line in process.stdout:
        match = READY.search(line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, int(match.group(2))
    process.wait()
    raise SystemExit(f"the server exited with code {process.returncode}; see {log_file.name}")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_load(url, model_name, instances, threads, requests_per_thread):
    from rubert_tf.serving import Client

    latencies, errors = [], []
    lock = threading.Lock()

    def worker():
        client = Client(url, model_name)
        mine = []
        for _ in range(requests_per_thread):
            started = time.perf_counter()
            try:
                client.predict(instances)
            except Exception as error:   # counted, not fatal: the report says how many failed
                with lock:
                    errors.append(repr(error))
            mine.append(time.perf_counter() - started)
        client.close()
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    return latencies, errors, wall


def measure(base, batching, threads, requests, rows, text, workdir, max_batch_size=32, batch_timeout_micros=2000,
            model_name="bench", server_flags=()):
    """Serve the model base path `base`, warm up, load it from `threads` clients x `requests` calls of `rows`
    instances; returns {"p50", "p90", "p99", "mean" (ms), "rps", "rows_per_s", "errors"} (benchmarks/run_all.py)."""
    from rubert_tf.serving import Client

    settings = argparse.Namespace(max_batch_size=max_batch_size, batch_timeout_micros=batch_timeout_micros)
    mode = "on" if batching else "off"
    with open(os.path.join(workdir, f"server_{mode}.log"), "w") as log_file:
        process, port = start_server(base, model_name, batching, settings, log_file, server_flags)
        try:
            url = f"http://127.0.0.1:{port}"
            metadata = Client(url, model_name).metadata()
            signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
            names = sorted(signature["inputs"])
            if any(signature["inputs"][n]["dtype"] != "DT_STRING" for n in names):
                raise SystemExit("only signatures with string inputs are benchmarked")
            row = text if len(names) == 1 else {n: text for n in names}
            instances = [row] * rows
            run_load(url, model_name, instances, min(threads, 2), 10)   # warm-up
            latencies, errors, wall = run_load(url, model_name, instances, threads, requests)
        finally:
            process.terminate()
            process.wait(timeout=60)
    ms = [x * 1000 for x in latencies]
    return {"p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99),
            "mean": sum(ms) / len(ms), "rps": len(ms) / wall, "rows_per_s": len(ms) * rows / wall, "errors": errors}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", help="SavedModel version folder or model base path (default: built-in)")
    parser.add_argument("--builtin", choices=["tiny", "dense"], default="tiny",
                        help="model built when no path is given: tiny (overhead-bound) or dense (compute-bound)")
    parser.add_argument("--model_name", default="bench")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per thread")
    parser.add_argument("--rows", type=int, default=1, help="instances per request")
    parser.add_argument("--text", default="Отличный фильм, всем советую посмотреть!")
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--batch_timeout_micros", type=int, default=2000)
    parser.add_argument("--modes", default="off,on", help="batching modes to run: off,on")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="serving_latency_") as workdir:
        base = base_path_for(args.path, workdir, args.builtin)
        model = args.path or f"built-in {args.builtin} text classifier"
        print(f"model: {model}; {args.threads} threads x {args.requests} "
              f"requests x {args.rows} rows; batching: max_batch_size={args.max_batch_size}, "
              f"batch_timeout_micros={args.batch_timeout_micros}; {os.cpu_count()} CPUs")
        print("| batching | p50 ms | p90 ms | p99 ms | mean ms | requests/s | rows/s | errors |")
        print("|---|---|---|---|---|---|---|---|")
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            result = measure(base, mode == "on", args.threads, args.requests, args.rows, args.text, workdir,
                             args.max_batch_size, args.batch_timeout_micros, args.model_name)
            print(f"| {mode} | {result['p50']:.1f} | {result['p90']:.1f} | {result['p99']:.1f} | "
                  f"{result['mean']:.1f} | {result['rps']:.0f} | {result['rows_per_s']:.0f} | "
                  f"{len(result['errors'])} |", flush=True)
            if result["errors"]:
                print(f"  first error: {result['errors'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
