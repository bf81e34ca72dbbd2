"""Load + attack on `rubert-tf serve` over loopback (issue 14): bounded in count and time. Not a test.

    python benchmarks/hostile_load.py                       # ~2 minutes on 2 cores
    python benchmarks/hostile_load.py --clients 4 --requests 500 --slowloris 300 --big-mb 50

It exports a tiny RuBertClassifier with the real rubert-tiny2 tokenizer in its graph (../shared/data, or
--vocab-dir), starts `python -m rubert_tf.serving` on free loopback ports and prints:
- requests tried / failed / 5xx, with p50 and p99 latency of one-sentence predict calls from --clients
  keep-alive clients, without and then with a slowloris attack (--slowloris sockets that send a request
  head a byte at a time and never finish it);
- the server's RSS before and after one --big-mb MB text, the time of that request, and whether its
  answer equals the answer for its prefix;
- hostile requests (deep JSON, lone surrogates, unknown methods, no HTTP version, ...) answered 5xx;
- the seconds from the start of a slow copy (--copy-seconds) of a new version to its being available.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
SENTENCE = "Отличный фильм, всем советую!"


def export_tiny_classifier(base, vocab_dir):
    import keras

    import rubert_tf as rt

    keras.utils.set_random_seed(0)
    tokenizer = rt.RuBertTokenizer.from_pretrained(vocab_dir)
    config = rt.RuBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=128, max_position_embeddings=512)
    model = rt.RuBertClassifier(config, labels=["negative", "neutral", "positive"])
    return rt.export(model, tokenizer, base, version=1, max_length=128)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(base):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "rubert_tf.serving", "--model_name=clf",
                             f"--model_base_path={base}", "--port=0", "--rest_api_port=0",
                             "--file_system_poll_wait_seconds=0.5"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 300
    for line in proc.stdout:
        if "ready grpc_port=" in line:
            port = int(line.split("rest_api_port=")[1].split()[0])
            return proc, port
        if time.time() > deadline:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def load(url, clients, requests_each):
    """(latencies in ms, failed, 5xx) of `clients` threads x `requests_each` one-sentence predicts."""
    import requests

    latencies, failed, server_errors, lock = [], [0], [0], threading.Lock()
    body = json.dumps({"instances": [SENTENCE]})

    def client():
        with requests.Session() as session:
            for _ in range(requests_each):
                started = time.perf_counter()
                try:
                    r = session.post(url, data=body, timeout=60)
                    ok, status = r.status_code == 200, r.status_code
                except requests.RequestException:
                    ok, status = False, 0
                with lock:
                    latencies.append(1000 * (time.perf_counter() - started))
                    failed[0] += not ok
                    server_errors[0] += status >= 500
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failed[0], server_errors[0]


def slowloris(port, count, stop):
    """`count` sockets that dribble a request head and never end it (reopened when the server closes them)."""
    def one():
        while not stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"POST /v1/models/clf:predict HTTP/1.1\r\nHost: x\r\n")
                while not stop.is_set():
                    sock.sendall(b"X")
                    time.sleep(1.0)
            except OSError:
                time.sleep(0.2)
    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def percentiles(latencies):
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


HOSTILE = [
    ("POST", "/v1/models/clf:predict", '{"instances": [' + "[" * 400 + "]" * 400 + "]}"),
    ("POST", "/v1/models/clf:predict", '{"instances": [{"b64": ' + "[" * 400 + "]" * 400 + "}]}"),
    ("POST", "/v1/models/clf:predict", '{"instances": ["\\ud800"]}'),
    ("POST", "/v1/models/clf:predict", '{"instances": [' + "[" * 50000 + "]" * 50000 + "]}"),
    ("TRACE", "/v1/models/clf", None), ("CONNECT", "/v1/models/clf", None), ("BREW", "/v1/models/clf", None),
]
RAW = [b"GET /v1/models/clf\r\n\r\n", b"GET /v1/models/" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n",
       b"GET /v1/models/clf HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n"]


def hostile(base_url, port):
    import requests

    statuses = []
    for method, path, body in HOSTILE:
        statuses.append(requests.request(method, base_url + path, data=body, timeout=60).status_code)
    for data in RAW:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(data)
            answer = sock.recv(65536)
        statuses.append(int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0)
    return statuses


def slow_copy(source, target, seconds):
    """Copy a version folder file by file over about `seconds` (as a slow network copy would)."""
    files = [os.path.relpath(os.path.join(root, name), source) for root, _, names in os.walk(source) for name in names]
    for name in files:
        os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
        shutil.copy2(os.path.join(source, name), os.path.join(target, name))
        time.sleep(seconds / len(files))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients (default %(default)s)")
    parser.add_argument("--requests", type=int, default=250, help="requests per client and phase (default %(default)s)")
    parser.add_argument("--slowloris", type=int, default=200, help="slowloris sockets (default %(default)s)")
    parser.add_argument("--big-mb", type=float, default=50, help="size of the one huge text (default %(default)s)")
    parser.add_argument("--copy-seconds", type=float, default=4, help="duration of the slow copy (default %(default)s)")
    parser.add_argument("--vocab-dir", default=os.path.join(DATA, "rubert-tiny2"),
                        help="a folder with vocab.txt/tokenizer.json (default: ../shared/data/rubert-tiny2)")
    args = parser.parse_args(argv)
    import requests

    work = tempfile.mkdtemp(prefix="hostile-load-")
    base = os.path.join(work, "clf")
    store = os.path.join(work, "store")
    print(f"load average {os.getloadavg()}; exporting a tiny classifier to {base} ...", flush=True)
    export_tiny_classifier(base, args.vocab_dir)
    shutil.copytree(os.path.join(base, "1"), os.path.join(store, "2"))
    proc, port = start_server(base)
    url = f"http://127.0.0.1:{port}"
    predict = url + "/v1/models/clf:predict"
    try:
        load(predict, 1, 20)  # warm-up
        quiet, quiet_failed, quiet_5xx = load(predict, args.clients, args.requests)
        stop = threading.Event()
        slowloris(port, args.slowloris, stop)
        time.sleep(3)
        attacked, attacked_failed, attacked_5xx = load(predict, args.clients, args.requests)
        stop.set()
        print("| phase | requests | failed | 5xx | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
        for name, lat, bad, errors in (("load", quiet, quiet_failed, quiet_5xx),
                                       (f"load + {args.slowloris} slowloris sockets", attacked, attacked_failed,
                                        attacked_5xx)):
            p50, p99 = percentiles(lat)
            print(f"| {name} | {len(lat)} | {bad} | {errors} | {p50:.1f} | {p99:.1f} |")

        time.sleep(12)  # the attack's sockets are closed at the header deadline
        words = (SENTENCE + " ") * int(args.big_mb * 1e6 / len((SENTENCE + " ").encode()))
        before = rss_mb(proc.pid)
        started = time.time()
        body = json.dumps({"instances": [words]}, ensure_ascii=False).encode()  # \uXXXX would triple it
        big = requests.post(predict, data=body, timeout=600)
        seconds = time.time() - started
        after = rss_mb(proc.pid)
        small = requests.post(predict, json={"instances": [words[:20000]]}, timeout=60)
        same = big.status_code == 200 and big.json() == small.json()
        print(f"\n{len(words.encode()) / 1e6:.0f} MB text: HTTP {big.status_code} in {seconds:.2f} s, RSS "
              f"{before:.0f} -> {after:.0f} MB (+{after - before:.0f}), answer equals its prefix's: {same}")

        statuses = hostile(url, port)
        print(f"hostile requests: {len(statuses)}, statuses {sorted(set(statuses))}, 5xx: "
              f"{sum(s >= 500 and s != 505 for s in statuses)} (505 is the HTTP-version refusal)")

        started = time.time()
        copier = threading.Thread(target=slow_copy, args=(os.path.join(store, "2"), os.path.join(base, "2"),
                                                          args.copy_seconds))
        copier.start()
        available = None
        while time.time() - started < 180:
            status = requests.get(url + "/v1/models/clf/versions/2", timeout=30)
            if status.status_code == 200 and status.json()["model_version_status"][0]["state"] == "AVAILABLE":
                available = time.time() - started
                break
            time.sleep(0.2)
        copier.join()
        print(f"version 2 copied over {args.copy_seconds:.0f} s: available after "
              f"{'never (180 s)' if available is None else f'{available:.1f} s'}")
        print(f"load average {os.getloadavg()}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
