"""All the speed rows in one run: rubert_tf (Keras, SavedModel, LiteRT float32/int8) vs keras-hub vs
HuggingFace transformers (PyTorch CPU, float and dynamic int8), each system in its own process.

    python benchmarks/run_all.py                          # every row, writes BENCHMARKS.md
    python benchmarks/run_all.py --quick                  # few rounds, small inputs (smoke test)
    python benchmarks/run_all.py --rows peak,infer-tiny2,train --precisions float32,int8
    python benchmarks/run_all.py --rows tokenizer --quick --output /tmp/b.md

Rows (`--rows`, comma-separated): peak (tf.matmul peak), infer-tiny2 (32x128), infer-base (8x128),
realistic (RuSentNE sentences, batch 32, each system padding as it normally does), train (classifier step,
tiny2 32x128), tokenizer (ruslit lines), serving (one client's latency and 4 clients' throughput of an
exported tiny2 classifier via benchmarks/serving_latency.py). `infer` = infer-tiny2,infer-base.
Precisions (`--precisions`): float32, bfloat16 (training: mixed bfloat16), int8 (inference only: our
LiteRT int8 export vs torch's dynamic int8 quantization of HF's Linear layers).

Harness (benchmarks/process_rounds.py, benchmarks/bench_worker.py): every system of a row runs in its own
fresh process (TF's pools and torch's OpenMP threads never share the CPUs), all with --threads threads;
after each one's warm-up, rounds run every system in an order shuffled per round; a system's figure is
its best round (noise only adds time), the median is kept in the JSON. Inference batches have real
padding (row lengths uniform in [T/4, T], one row full) and every system gets the same ids and mask;
tokenizers must produce the same ids/segments/mask arrays (checked by digest). Each row records the
load average (`uptime`) at its start and end; the header records the CPU.

Every model has random weights and the real shapes (rubert-tiny2: 83828 vocab, 312 hidden, 3 layers,
12 heads, 600 intermediate; rubert-base-cased: 119547, 768, 12, 12, 3072).

FLOPs per token (forward) of a BERT encoder with L layers, hidden H, intermediate I, sequence length T:
    2 * (4*H*H + 2*H*I) * L       # the matmul weights (Q, K, V, attention output; FFN in and out), 2 FLOPs/MAC
  + 4 * T * H * L                 # attention: scores Q.K^T (2*T*H) and probabilities.V (2*T*H)
(embedding lookups, LayerNorm, softmax, GELU and the pooler/classifier are left out: < 1%). A training
step counts 3x the forward. Utilisation = padded tokens/s * FLOPs/token / matmul peak at the row's
precision (every system computes the padded batch; int8 rows are not compared to a peak).
"""

import argparse
import datetime
import gc
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from bench_worker import BASE, TINY2  # noqa: E402  (one definition of the shapes)

ALL_ROWS = ("peak", "infer-tiny2", "infer-base", "realistic", "train", "tokenizer", "serving")
SYSTEMS = ("ours", "keras-hub", "hf")  # the report's columns; variants of ours and hf-int8 are rows


def flops_per_token(shape, seq_len):
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    return (2 * (4 * h * h + 2 * h * i) + 4 * seq_len * h) * layers


# ---------------------------------------------------------------------------------------------- rows

def load_now():
    return os.getloadavg()[0]


def timed(args, setups, rounds):
    """process_rounds.time_systems with this run's threads, log and progress; returns (results, load
    at start, load at end)."""
    from process_rounds import time_systems

    before = load_now()
    results = time_systems(setups, rounds=rounds, threads=args.threads, inter_op=args.inter_op, log=args.log,
                           seed=len(args.timed_rows))
    args.timed_rows.append(setups)
    return results, before, load_now()


def measure_peak(args):
    """Best FLOP/s of a square tf.matmul (n = 512, 1024, 2048, each in its own process). precision -> FLOP/s."""
    results = {}
    for precision in ("float32", "bfloat16"):
        setups = {f"n{n}": dict(row="peak", system="tf", precision=precision, n=n, warmup=3) for n in (512, 1024, 2048)}
        timings, _, _ = timed(args, setups, rounds=8 if args.quick else 20)
        results[precision] = max(t["info"]["flops"] / t["best"] for t in timings.values() if "best" in t)
    return results


INFER_SYSTEMS = {
    # precision -> systems; the first is the row's "ours", the rest of ours are variant rows
    "float32": ("ours", "ours-xla", "ours-savedmodel", "ours-litert", "keras-hub", "hf"),
    "bfloat16": ("ours", "ours-xla", "keras-hub", "hf"),
    "int8": ("ours-litert-int8", "hf-int8"),
}


def chosen(args, systems):
    """The systems of a row that --systems asks for ("ours" stands for every variant of ours, "hf" for hf-int8)."""
    return [s for s in systems if s in args.systems or s.split("-")[0] in ("ours", "hf") and s.split("-")[0] in args.systems]


def measure_inference(args, shape, batch, seq_len, precision):
    systems = chosen(args, INFER_SYSTEMS[precision])
    setups = {s: dict(row="infer", system=s, precision="float32" if precision == "int8" else precision,
                      shape=shape["name"], batch=batch, seq_len=seq_len) for s in systems}
    return timed(args, setups, rounds=args.rounds * 3)


def measure_training(args, precision):
    systems = chosen(args, ("ours", "ours-sparse", "keras-hub", "hf"))
    setups = {s: dict(row="train", system=s, precision=precision) for s in systems}
    return timed(args, setups, rounds=args.rounds * 2)


def measure_realistic(args):
    setups = {s: dict(row="realistic", system=s, precision="float32", sentences=128 if args.quick else 512)
              for s in ("ours", "keras-hub", "hf") if s in args.systems}
    return timed(args, setups, rounds=max(1, args.rounds - 1))


def measure_tokenizer(args):
    setups = {s: dict(row="tokenizer", system=s, lines=1024) for s in ("ours", "keras-hub", "hf") if s in args.systems}
    return timed(args, setups, rounds=args.rounds * 3)


def measure_serving(args):
    """Export a random-weight tiny2 classifier with its tokenizer, serve it with `rubert-tf serve`
    (benchmarks/serving_latency.py): one client's latency (batching off), then 4 clients' throughput
    (batching off and on)."""
    import rubert_tf as rt
    import serving_latency
    from bench_worker import TINY2_DIR, rubert_config, rusentne_sentences

    results = {}
    with tempfile.TemporaryDirectory(prefix="run_all_serving_") as workdir:
        model = rt.RuBertClassifier(rubert_config(TINY2), labels=["negative", "neutral", "positive"])
        tokenizer = rt.RuBertTokenizer.from_pretrained(TINY2_DIR)
        base = os.path.join(workdir, "sentiment")
        rt.export(model, tokenizer, base, max_length=128)
        del model
        gc.collect()
        text = rusentne_sentences(1)[0]
        one_thread = ("--tensorflow_intra_op_parallelism=1", f"--tensorflow_inter_op_parallelism={args.threads}")
        few, many = (10, 30) if args.quick else (150, 300)
        for name, batching, clients, requests, flags in (
                ("1 client", False, 1, many, ()),
                ("1 client, --tensorflow_intra_op_parallelism=1", False, 1, many, one_thread),
                ("4 clients, batching off", False, 4, few, ()),
                ("4 clients, batching off, --tensorflow_intra_op_parallelism=1", False, 4, few, one_thread),
                ("4 clients, batching on, --tensorflow_intra_op_parallelism=1", True, 4, few, one_thread),
                ("1 client, 32 sentences a request", False, 1, few, ()),
                ("1 client, 32 sentences a request, --tensorflow_intra_op_parallelism=1", False, 1, few, one_thread)):
            before = load_now()
            result = serving_latency.measure(base, batching=batching, threads=clients, requests=requests,
                                             rows=32 if "32 sentences" in name else 1, text=text, workdir=workdir,
                                             server_flags=flags)
            results[name] = dict(result, load=(before, load_now()))
    return results



# ---------------------------------------------------------------------------------------------- report

def machine_description():
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as handle:
            info = handle.read()
        for line in info.splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    features = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return f"{model}, {os.cpu_count()} CPUs ({', '.join(features) or 'no AVX-512'}), {platform.system()} {platform.release()}"


def versions():
    from importlib.metadata import PackageNotFoundError, version

    names = ("tensorflow", "keras", "keras-hub", "ai-edge-litert", "torch", "transformers", "tokenizers")

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    return ", ".join(f"{name} {installed(name)}" for name in names) + f", python {platform.python_version()}"


def fmt(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


class Report:
    """Rows are kept as data and rendered at the end, when the final matmul peak is known."""

    HEADER = ("| row | precision | unit | rubert_tf | keras-hub | HF (torch) | ours / faster peer | "
              "util. ours | util. keras-hub | util. HF | load start→end | target | met |")

    def __init__(self):
        self.rows, self.notes, self.peak, self.raw = [], [], {}, []

    def add(self, row, precision, unit, values, flops=None, peak_key=None, target=None, target_ratio=None,
            ratio="peer", target_util=None, text=None, load=None):
        entry = dict(row=row, precision=precision, unit=unit, values=values, flops=flops, peak_key=peak_key,
                     target=target, target_ratio=target_ratio, ratio=ratio, target_util=target_util, text=text,
                     load=load)
        self.rows.append(entry)
        print(self.render(entry), flush=True)

    def render(self, entry):
        if entry["text"]:
            return entry["text"]
        values = entry["values"]
        ratio = entry["ratio"]
        if ratio == "peer":
            peers = [values[k] for k in ("keras-hub", "hf") if values.get(k)]
            ratio = values["ours"] / max(peers) if values.get("ours") and peers else None
        elif ratio is not None:
            ratio = values["ours"] / values[ratio] if values.get("ours") and values.get(ratio) else None
        util = {}
        if entry["flops"] and self.peak.get(entry["peak_key"]):
            util = {k: v * entry["flops"] / self.peak[entry["peak_key"]] for k, v in values.items() if v}
        met = "–"
        if entry["target_ratio"] is not None and ratio is not None:
            met = "yes" if ratio >= entry["target_ratio"] else "no"
        if entry["target_util"] is not None and util.get("ours") is not None:
            met = "yes" if util["ours"] >= entry["target_util"] else "no"
        load = f"{entry['load'][0]:.1f}→{entry['load'][1]:.1f}" if entry.get("load") else "–"
        return (f"| {entry['row']} | {entry['precision']} | {entry['unit']} | {fmt(values.get('ours'))} | "
                f"{fmt(values.get('keras-hub'))} | {fmt(values.get('hf'))} | "
                f"{fmt(ratio, 2) + '×' if ratio else '–'} | "
                + " | ".join(f"{util[k] * 100:.0f}%" if util.get(k) else "–" for k in SYSTEMS)
                + f" | {load} | {entry['target'] or '–'} | {met} |")

    def markdown(self):
        return "\n".join([self.HEADER, "|" + "---|" * 13] + [self.render(entry) for entry in self.rows])


def throughput(results, units):
    """system -> units per second of its best round (None for a system that failed)."""
    return {name: (units / r["best"] if r.get("best") else None) for name, r in results.items()}


def failures(results):
    return [f"{name}: {r['error']}" for name, r in results.items() if r.get("error")]


def run(args):
    report = Report()
    load_before = os.getloadavg()
    started = time.time()

    def keep(row, results, before, after):
        report.raw.append({"row": row, "load": [before, after],
                           "systems": {name: {k: v for k, v in r.items() if k != "rounds"} | {"rounds": r.get("rounds")}
                                       for name, r in results.items()}})
        for failure in failures(results):
            report.notes.append(f"{row}: {failure}")

    peak_entries = {}
    if "peak" in args.rows or any(r.startswith(("infer", "train", "realistic")) for r in args.rows):
        before = load_now()
        report.peak = measure_peak(args)
        for precision, value in report.peak.items():
            report.add("matmul peak (tf.matmul n² n=512..2048, best of run start and end)", precision, "GFLOP/s",
                       {"ours": value / 1e9}, ratio=None, load=(before, load_now()))
            peak_entries[precision] = report.rows[-1]
    for name, shape, batch, seq in (("infer-tiny2", TINY2, 32, 128), ("infer-base", BASE, 8, 128)):
        if name not in args.rows:
            continue
        tiny = shape["name"] == "tiny2"
        for precision in args.precisions:
            results, before, after = measure_inference(args, shape, batch, seq, precision)
            keep(f"{name} {precision}", results, before, after)
            speed = throughput(results, batch * seq)
            peers = {"keras-hub": speed.get("keras-hub"), "hf": speed.get("hf-int8" if precision == "int8" else "hf")}
            variants = [s for s in INFER_SYSTEMS[precision] if s.startswith("ours")]
            for variant in variants:
                label = {"ours": "", "ours-xla": ", XLA (jit_compile=True, ours)",
                         "ours-savedmodel": ", plain SavedModel signature (ours)",
                         "ours-litert": ", LiteRT float32 (ours)",
                         "ours-litert-int8": ", LiteRT dynamic int8 (ours) vs torch dynamic int8 (HF)"}[variant]
                target, target_ratio, target_util = None, None, None
                if tiny and variant == "ours-savedmodel":
                    target, target_ratio = "≥1.0× HF (plain SavedModel)", 1.0
                elif tiny and precision == "int8":
                    target, target_ratio = "≥1.5× HF, same precision", 1.5
                elif tiny and variant == "ours":
                    target, target_ratio = "≥1.5× HF (best deployable path)", 1.5
                elif not tiny and variant == "ours" and precision == "float32":
                    target, target_util = "≥85% of peak", 0.85
                report.add(f"encoder inference {shape['name']} {batch}×{seq}{label}", precision, "tokens/s",
                           dict(peers, ours=speed.get(variant)),
                           flops_per_token(shape, seq) if precision != "int8" else None,
                           precision, target, target_ratio, target_util=target_util, load=(before, after))
    if "train" in args.rows:
        for precision in ("float32" if p == "float32" else "mixed_bfloat16" for p in args.precisions if p != "int8"):
            results, before, after = measure_training(args, precision)
            keep(f"train {precision}", results, before, after)
            speed = throughput(results, 32 * 128)
            for label, ours in (("", "ours"), (", sparse embedding updates (ours)", "ours-sparse")):
                if speed.get(ours) is None:
                    continue
                report.add(f"classifier training step tiny2 32×128{label}", precision, "tokens/s",
                           {"ours": speed[ours], "keras-hub": speed.get("keras-hub"), "hf": speed.get("hf")},
                           3 * flops_per_token(TINY2, 128), "float32" if precision == "float32" else "bfloat16",
                           "≥1.5× faster peer", 1.5, load=(before, after))
    if "realistic" in args.rows:
        results, before, after = measure_realistic(args)
        keep("realistic", results, before, after)
        info = next(r["info"] for r in results.values() if r.get("info"))
        tokens, count = info["real_tokens"], info["sentences"]
        mean_len = tokens / count
        report.add(f"RuSentNE tiny2 classifier, {count} sentences, batch 32 (real tokens)", "float32",
                   "tokens/s", throughput(results, tokens), flops_per_token(TINY2, mean_len), "float32",
                   "≥2× HF pipeline", 2.0, ratio="hf", load=(before, after))
        report.notes.append(
            f"RuSentNE: the first {count} sentences, {tokens} real tokens (mean {mean_len:.1f} a sentence); texts "
            "in, logits out, tokenization included. keras-hub pads every batch to its preprocessor's "
            f"sequence_length={results.get('keras-hub', {}).get('info', {}).get('keras_hub_length', '–')}; "
            "utilisation counts real tokens only. The ratio column here is ours ÷ HF pipeline.")
    if "tokenizer" in args.rows:
        results, before, after = measure_tokenizer(args)
        keep("tokenizer", results, before, after)
        digests = {name: r["info"]["digest"] for name, r in results.items() if r.get("info")}
        lines = next(r["info"]["lines"] for r in results.values() if r.get("info"))
        same = len(set(digests.values())) == 1
        report.add("tokenizer, ruslit lines → ids/segments/mask padded to the longest (1024 lines a call)", "–",
                   "lines/s", throughput(results, lines), target="≥5× tokenizers", target_ratio=5.0, ratio="hf",
                   load=(before, after))
        report.notes.append(
            "Tokenizer: every system returns the same three int arrays [1024, longest] (token ids, segment ids, "
            "mask; truncation 512): ours = RuBertTokenizer(texts, padding='longest') in a tf.function; keras-hub "
            "= BertTokenizer + StartEndPacker cut to the longest; HF = `tokenizers` encode_batch (Rust, "
            f"2 threads) + numpy arrays. Outputs equal (sha256 of the arrays): {'yes' if same else 'NO'} "
            f"({', '.join(f'{k} {v}' for k, v in digests.items())}). The ratio column is ours ÷ tokenizers.")
    if "serving" in args.rows:
        results = measure_serving(args)
        for mode, result in results.items():
            report.add(None, None, None, None, text=(
                f"| serving tiny2 classifier REST, {mode}: p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, "
                f"{len(result['errors'])} errors | float32 | requests/s | {fmt(result['rps'])} | – | – | – | – | – | – | "
                f"{result['load'][0]:.1f}→{result['load'][1]:.1f} | "
                + ("p50 ≤ 5 ms | " + ("yes" if result["p50"] <= 5 else "no") if mode.startswith("1 client") and
                   "32" not in mode else "– | –")
                + " |"))
        report.notes.append(
            "Serving: `rubert-tf serve` (python -m rubert_tf.serving, its own process) on an exported random-weight "
            "tiny2 classifier (text in, in-graph tokenizer, max_length 128), 1 sentence a request, keep-alive "
            "clients (rubert_tf.serving.Client) in the benchmark process: one client = one request's latency; "
            "4 clients = throughput (on 2 cores the clients compete with the server). --tensorflow_intra_op_parallelism=1 "
            f"rows also pass --tensorflow_inter_op_parallelism={args.threads} (TF Serving's flags: each request's "
            "ops on one thread, requests side by side). No peer: TF Serving's binary is not installed here.")
    if report.peak:
        final = measure_peak(args)
        for precision, entry in peak_entries.items():
            report.peak[precision] = max(report.peak[precision], final[precision])
            entry["values"] = {"ours": report.peak[precision] / 1e9}
    return report, load_before, os.getloadavg(), time.time() - started


def write_markdown(path, args, argv, report, load_before, load_after, elapsed):
    rows = ",".join(args.rows)
    text = f"""## Latest run of `benchmarks/run_all.py`

Written by `benchmarks/run_all.py` with the per-process harness (issue 15: each system in its own
process, rounds in shuffled order, real padding masks, equal tokenizer outputs, serving latency and
throughput apart). All numbers come from ONE run on one machine; compare the columns of a row (ratios),
not absolute numbers across runs or machines. Runs 1–4 below used the earlier single-process harness.

- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}
- machine: {machine_description()}
- load average before / after the run: {' '.join(f'{x:.1f}' for x in load_before)} / {' '.join(f'{x:.1f}' for x in load_after)} (2 cores: about 1 = one system running, nothing else)
- versions: {versions()}
- command: `python benchmarks/run_all.py {' '.join(argv)}` ({elapsed / 60:.1f} min)
- rows in this run: {rows}; precisions: {','.join(args.precisions)}; threads: {args.threads} per system process (TF inter-op {args.inter_op})

{report.markdown()}

Columns: throughput of each system (higher is better), `ours / faster peer` = rubert_tf ÷ the faster of
keras-hub and HF at the same precision (the int8 row: HF = torch dynamic int8 of the same random model),
utilisation = achieved FLOP/s ÷ the matmul peak above, load = 1-minute load average at the row's start and
end. Per-round times of every system: benchmarks/run_all_latest.json (--json).

FLOPs per token (forward), L layers, hidden H, intermediate I, length T:
`2·(4·H² + 2·H·I)·L + 4·T·H·L` — tiny2 at T=128: {flops_per_token(TINY2, 128) / 1e6:.2f} MFLOP, base at T=128:
{flops_per_token(BASE, 128) / 1e6:.1f} MFLOP; a training step counts 3× the forward.

Notes
""" + "\n".join(f"- {note}" for note in [
        "Random weights, real shapes (tiny2: 83828/312/3 layers/12 heads/600; base: 119547/768/12/12/3072). "
        "Keras models run inside a tf.function (`model(x, training=False)`); HF under torch.inference_mode(). "
        "bfloat16 inference = every weight and activation in bfloat16 (Keras policy \"bfloat16\", HF "
        "`model.to(torch.bfloat16)`); mixed bfloat16 training = Keras \"mixed_bfloat16\" / torch.autocast(bfloat16).",
        "Inference variants of ours: the plain SavedModel row saves the encoder with tf.saved_model.save and "
        "calls the loaded signature (what a TF Serving user gets); LiteRT rows run rt.export_litert's network "
        "(rubert_tf.export.litert.convert: frozen, TFLite builtins only, XNNPACK; int8 = dynamic-range int8 "
        "weights) through ai-edge-litert's interpreter; HF int8 = torch.ao.quantization.quantize_dynamic on "
        "every nn.Linear (qint8).",
        "Training: AdamW (lr 1e-5; ours: rubert_tf.training.AdamW, the optimizer finetune uses; the \"sparse embedding "
        "updates\" row: its documented flag sparse_updates=True / --sparse-embedding-updates, lazy Adam on the "
        "token table), dropout on, `train_on_batch` for the Keras models, loss.backward + AdamW.step for HF.",
        "Each number is the best of several rounds run in shuffled order, each system in its own process "
        "(benchmarks/process_rounds.py); noise on a shared machine only adds time.",
    ] + report.notes) + "\n"
    document = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            document = handle.read()
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(splice_run(document, text))
    os.replace(path + ".tmp", path)


RUN_BEGIN, RUN_END = "<!-- run_all:begin -->", "<!-- run_all:end -->"


def splice_run(document, section):
    """`document` (BENCHMARKS.md) with this run between the run_all markers: the previous marked run is
    replaced, everything else (earlier runs kept for history, other benchmarks' sections) stays. Without
    markers the run goes right after the title."""
    block = f"{RUN_BEGIN}\n{section.rstrip()}\n{RUN_END}"
    start, end = document.find(RUN_BEGIN), document.find(RUN_END)
    if start != -1 and end > start:
        return document[:start] + block + document[end + len(RUN_END):]
    if not document.strip():
        return "# Benchmarks\n\n" + block + "\n"
    title, newline, rest = document.partition("\n")
    return title + "\n\n" + block + "\n" + newline + rest


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations and small inputs (smoke test)")
    parser.add_argument("--rows", default=",".join(ALL_ROWS), help=f"comma-separated, from {', '.join(ALL_ROWS)}, infer")
    parser.add_argument("--precisions", default="float32,bfloat16,int8",
                        help="float32,bfloat16,int8 (training: mixed bfloat16; int8: inference only)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="ours,keras-hub,hf")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inter_op", type=int, default=1, help="TF inter-op threads")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per row, x3 for inference (default 3, quick 1)")
    parser.add_argument("--output", default=os.path.join(REPO, "BENCHMARKS.md"), help="Markdown file ('' = none)")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "run_all_latest.json"),
                        help="every system's rounds and setup info ('' = none; default: %(default)s)")
    parser.add_argument("--log", default=os.path.join(tempfile.gettempdir(), "run_all_workers.log"),
                        help="the workers' stderr (default: %(default)s)")
    args = parser.parse_args(argv)
    rows = []
    for row in (r.strip() for r in args.rows.split(",") if r.strip()):
        rows += ["infer-tiny2", "infer-base"] if row == "infer" else [row]
    unknown = sorted(set(rows) - set(ALL_ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; expected {', '.join(ALL_ROWS)}")
    args.rows = rows
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(args.precisions) - {"float32", "bfloat16", "int8"})
    if unknown:
        parser.error(f"unknown precisions {unknown}; expected float32, bfloat16, int8")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    args = parse_args(argv)
    args.timed_rows = []
    with open(args.log, "w") as log:
        args.log = log
        report, before, after, elapsed = run(args)
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"argv": argv, "machine": machine_description(), "rows": report.raw}, handle, indent=1)
    if args.output:
        write_markdown(args.output, args, argv, report, before, after, elapsed)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
