"""All of issue 8's speed rows in one run: rubert_tf vs keras-hub vs HuggingFace transformers (PyTorch CPU).

    python benchmarks/run_all.py                          # every row, writes BENCHMARKS.md
    python benchmarks/run_all.py --quick                  # few iterations, small inputs (smoke test)
    python benchmarks/run_all.py --rows peak,infer-tiny2,train --precisions float32
    python benchmarks/run_all.py --rows tokenizer --quick --output /tmp/b.md

Rows (`--rows`, comma-separated): peak (tf.matmul peak), infer-tiny2 (32x128), infer-base (8x128),
realistic (RuSentNE sentences, batch 32, each system padding as it normally does), train (classifier step,
tiny2 32x128), tokenizer (ruslit lines), serving (REST p50/p99 and throughput of an exported tiny2
classifier via benchmarks/serving_latency.py). `infer` = infer-tiny2,infer-base.

Every model has random weights and the real shapes (rubert-tiny2: 83828 vocab, 312 hidden, 3 layers,
12 heads, 600 intermediate; rubert-base-cased: 119547, 768, 12, 12, 3072). All systems use 2 threads
(TF intra-op = --threads, torch.set_num_threads(--threads)); all run in this one process.

Timing: each row runs its systems in interleaved rounds (A, B, C, A, B, C, ...) after a warm-up; a
system's time is its best round (noise on a shared machine only ever adds time), so ratios come from
the same minutes of the same run. The matmul peak is measured the same way (sizes 512..2048, at the
start and at the end of the run; the best counts).

FLOPs per token (forward) of a BERT encoder with L layers, hidden H, intermediate I, sequence length T:
    2 * (4*H*H + 2*H*I) * L       # the matmul weights (Q, K, V, attention output; FFN in and out), 2 FLOPs/MAC
  + 4 * T * H * L                 # attention: scores Q.K^T (2*T*H) and probabilities.V (2*T*H)
(embedding lookups, LayerNorm, softmax, GELU and the pooler/classifier are left out: < 1%). A training
step counts 3x the forward (backward = 2x forward). Utilisation = tokens/s * FLOPs/token / matmul peak
at the row's precision (mixed bfloat16 rows are compared to the bfloat16 peak).
"""

import argparse
import csv
import datetime
import gc
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

TINY2 = dict(name="tiny2", vocab_size=83828, hidden_size=312, num_hidden_layers=3, num_attention_heads=12,
             intermediate_size=600, max_position_embeddings=2048)
BASE = dict(name="base", vocab_size=119547, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=512)
ALL_ROWS = ("peak", "infer-tiny2", "infer-base", "realistic", "train", "tokenizer", "serving")
SYSTEMS = ("ours", "keras-hub", "hf")


def flops_per_token(shape, seq_len):
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    return (2 * (4 * h * h + 2 * h * i) + 4 * seq_len * h) * layers


# ---------------------------------------------------------------------------------------------- timing

def interleaved(systems, rounds, iters, warmup=1):
    """systems: name -> callable running one unit of work (blocking). Returns name -> best seconds per unit."""
    for fn in systems.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in systems}
    for _ in range(rounds):
        for name, fn in systems.items():
            started = time.perf_counter()
            for _ in range(iters):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / iters)
    return best


# ---------------------------------------------------------------------------------------------- setup

def setup_threads(threads, inter_op):
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def rubert_config(shape, num_labels=None):
    import rubert_tf as rt

    fields = {k: v for k, v in shape.items() if k != "name"}
    config = rt.RuBertConfig.from_dict(dict(fields, type_vocab_size=2, hidden_act="gelu"))
    return config


def hf_config(shape, num_labels=2):
    from transformers import BertConfig

    return BertConfig(**{k: v for k, v in shape.items() if k != "name"}, type_vocab_size=2, hidden_act="gelu",
                      num_labels=num_labels)


def keras_hub_backbone(shape, dtype):
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=shape["vocab_size"], num_layers=shape["num_hidden_layers"],
        num_heads=shape["num_attention_heads"], hidden_dim=shape["hidden_size"],
        intermediate_dim=shape["intermediate_size"], max_sequence_length=shape["max_position_embeddings"],
        num_segments=2, dtype=dtype)


def fixed_batch(shape, batch, seq_len, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(5, shape["vocab_size"], size=(batch, seq_len)).astype("int32")
    ids[:, 0], ids[:, -1] = 2, 3
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}


def tf_inputs(batch):
    import tensorflow as tf

    return {k: tf.constant(v) for k, v in batch.items()}


def torch_inputs(batch):
    import torch

    return {"input_ids": torch.from_numpy(batch["token_ids"].astype("int64")),
            "token_type_ids": torch.from_numpy(batch["segment_ids"].astype("int64")),
            "attention_mask": torch.from_numpy(batch["padding_mask"].astype("int64"))}


def keras_dtype(precision):
    return {"float32": "float32", "bfloat16": "bfloat16", "mixed_bfloat16": "mixed_bfloat16"}[precision]


# ---------------------------------------------------------------------------------------------- rows

def measure_peak(args):
    """Best FLOP/s of a square tf.matmul over sizes 512, 1024, 2048 and many short rounds (short units catch
    the quiet moments of a shared machine). Returns precision -> FLOP/s."""
    import tensorflow as tf

    results = {}
    for precision in ("float32", "bfloat16"):
        best = 0.0
        for n in (512, 1024, 2048):
            a = tf.cast(tf.random.normal([n, n], seed=1), precision)
            b = tf.cast(tf.random.normal([n, n], seed=2), precision)
            matmul = tf.function(lambda x, y: tf.matmul(x, y)[0, 0])
            seconds = interleaved({"peak": lambda: matmul(a, b).numpy()}, rounds=8 if args.quick else 20, iters=1,
                                  warmup=3)
            best = max(best, 2 * n ** 3 / seconds["peak"])
        results[precision] = best
    return results


def measure_inference(args, shape, batch_size, seq_len, precision, variants=None):
    """Encoder forward at a fixed shape; returns name -> seconds per batch."""
    import tensorflow as tf
    import torch
    from transformers import BertModel

    import rubert_tf as rt

    batch = fixed_batch(shape, batch_size, seq_len)
    tf_batch, torch_batch = tf_inputs(batch), torch_inputs(batch)
    dtype = keras_dtype(precision)
    systems = {}
    keep = []
    if "ours" in args.systems:
        ours = rt.RuBertEncoder(rubert_config(shape), dtype=dtype)
        call = tf.function(lambda x: ours(x, training=False)["sequence_output"], jit_compile=args.xla)
        systems["ours"] = lambda: call(tf_batch).numpy()
        keep.append(ours)
    if "keras-hub" in args.systems:
        backbone = keras_hub_backbone(shape, dtype)
        kcall = tf.function(lambda x: backbone(x, training=False)["sequence_output"])
        systems["keras-hub"] = lambda: kcall(tf_batch).numpy()
        keep.append(backbone)
    if "hf" in args.systems:
        model = BertModel(hf_config(shape)).eval()
        if precision == "bfloat16":
            model = model.to(torch.bfloat16)

        def hf():
            with torch.inference_mode():
                return model(**torch_batch).last_hidden_state.float().numpy()
        systems["hf"] = hf
        keep.append(model)
    for name, fn in (variants or {}).items():
        systems[name] = fn
    return interleaved(systems, rounds=args.rounds * 3, iters=1, warmup=2)


def measure_training(args, shape, batch_size, seq_len, precision):
    """One optimizer step of a 3-class classifier (AdamW, dropout on); returns name -> seconds per step."""
    import keras
    import numpy as np
    import tensorflow as tf
    import torch
    from transformers import BertForSequenceClassification

    import rubert_tf as rt
    from rubert_tf.training import AdamW

    batch = fixed_batch(shape, batch_size, seq_len)
    labels = np.random.default_rng(1).integers(0, 3, size=(batch_size,)).astype("int32")
    tf_batch = tf_inputs(batch)
    systems = {}
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras_dtype(precision))
    try:
        if "ours" in args.systems:
            # rubert_tf.training.AdamW: what create_optimizer / finetune use (fused update); "ours-sparse" adds
            # the documented flag sparse_updates=True (finetune --sparse-embedding-updates).
            y = {"logits": tf.constant(labels)}
            for name, sparse in (("ours", False), ("ours-sparse", True)):
                model = rt.RuBertClassifier(rubert_config(shape), num_labels=3)
                model.compile(optimizer=AdamW(1e-5, sparse_updates=sparse),
                              loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                              jit_compile=args.xla)
                systems[name] = (lambda m: lambda: m.train_on_batch(tf_batch, y))(model)
        if "keras-hub" in args.systems:
            import keras_hub

            backbone = keras_hub_backbone(shape, None)
            kh = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)
            kh.compile(optimizer=keras.optimizers.AdamW(1e-5),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
            ky = tf.constant(labels)
            systems["keras-hub"] = lambda: kh.train_on_batch(tf_batch, ky)
    finally:
        keras.config.set_dtype_policy(previous)
    if "hf" in args.systems:
        model = BertForSequenceClassification(hf_config(shape, num_labels=3)).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        torch_batch = torch_inputs(batch)
        torch_labels = torch.from_numpy(labels.astype("int64"))

        def hf():
            if precision == "mixed_bfloat16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = model(**torch_batch, labels=torch_labels).loss
            else:
                loss = model(**torch_batch, labels=torch_labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss.detach())
        systems["hf"] = hf
    return interleaved(systems, rounds=args.rounds * 2, iters=1, warmup=2)


def rusentne_sentences(limit):
    path = os.path.join(DATA, "rusentne2023", "train_data.csv")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    sentences = [row["sentence"] for row in rows]
    return sentences[:limit]


def ruslit_lines(limit):
    lines = []
    with open(os.path.join(DATA, "ruslit", "ruslit_train.txt"), encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                lines.append(line)
                if len(lines) >= limit:
                    break
    return lines


def measure_realistic(args, precision="float32"):
    """Raw sentences in, logits out (tokenization included), batch 32, each system padding as usual:
    ours sorts the texts by character length (length bucketing) and pads each batch to its longest row,
    rounded up to a multiple of 8 (rubert_tf.data.batching.pad_to_multiple), in one tf.function;
    keras-hub runs BertTextClassifier.predict with its preprocessor (fixed sequence_length padding);
    HF runs pipeline("text-classification") with the fast tokenizer (pads to the batch's longest).
    Returns (name -> seconds for all sentences, real tokens, sentence count, mean length)."""
    import keras
    import numpy as np
    import tensorflow as tf
    import torch
    from transformers import BertForSequenceClassification, PreTrainedTokenizerFast, pipeline

    import rubert_tf as rt
    from rubert_tf.data.batching import pad_to_multiple

    sentences = rusentne_sentences(128 if args.quick else 512)
    tiny2_dir = os.path.join(DATA, "rubert-tiny2")
    tokenizer = rt.RuBertTokenizer.from_pretrained(tiny2_dir)
    lengths = tf.reduce_sum(tokenizer(sentences, max_length=512, padding="longest")["padding_mask"], 1).numpy()
    real_tokens = int(lengths.sum())
    seq_len_kh = int(min(512, -(-int(lengths.max()) // 8) * 8))
    batch_size = 32
    dtype = keras_dtype(precision)
    systems = {}
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        if "ours" in args.systems:
            clf = rt.RuBertClassifier(rubert_config(TINY2), num_labels=3)

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], jit_compile=False)
            def classify(texts):
                return clf(pad_to_multiple(tokenizer(texts, max_length=512, padding="longest")),
                           training=False)["logits"]

            def ours():
                order = np.argsort([len(s) for s in sentences], kind="stable")
                ordered = [sentences[i] for i in order]
                logits = np.concatenate([classify(tf.constant(ordered[i:i + batch_size])).numpy()
                                         for i in range(0, len(ordered), batch_size)])
                out = np.empty_like(logits)
                out[order] = logits
                return out
            systems["ours"] = ours
        if "keras-hub" in args.systems:
            import keras_hub

            kh_tokenizer = keras_hub.models.BertTokenizer(vocabulary=os.path.join(tiny2_dir, "vocab.txt"),
                                                          lowercase=False)
            preprocessor = keras_hub.models.BertTextClassifierPreprocessor(kh_tokenizer, sequence_length=seq_len_kh)
            kh = keras_hub.models.BertTextClassifier(keras_hub_backbone(TINY2, None), num_classes=3,
                                                     preprocessor=preprocessor)
            systems["keras-hub"] = lambda: kh.predict(sentences, batch_size=batch_size, verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)
    if "hf" in args.systems:
        hf_tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tiny2_dir, "tokenizer.json"),
                                               unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                               sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
        model = BertForSequenceClassification(hf_config(TINY2, num_labels=3)).eval()
        if precision == "bfloat16":
            model = model.to(torch.bfloat16)
        classifier = pipeline("text-classification", model=model, tokenizer=hf_tokenizer, device=-1)

        def hf():
            with torch.inference_mode():
                return classifier(sentences, batch_size=batch_size, truncation=True, max_length=512)
        systems["hf"] = hf
    seconds = interleaved(systems, rounds=max(1, args.rounds - 1), iters=1, warmup=1)
    return seconds, real_tokens, len(sentences), float(lengths.mean()), seq_len_kh


def measure_tokenizer(args):
    """Lines of ruslit -> model inputs (ids, segments, mask; truncation at 512, padding to the longest),
    1024 lines a call. Returns (name -> seconds per call, lines per call)."""
    import keras_hub
    import tensorflow as tf
    from tokenizers import Tokenizer

    import rubert_tf as rt

    lines = ruslit_lines(1024)
    tiny2_dir = os.path.join(DATA, "rubert-tiny2")
    systems = {}
    batch = tf.constant(lines)
    if "ours" in args.systems:
        ours = rt.RuBertTokenizer.from_pretrained(tiny2_dir)
        call = tf.function(lambda t: ours(t, max_length=512, padding="longest"))
        systems["ours"] = lambda: call(batch)["token_ids"].numpy()
    if "keras-hub" in args.systems:
        kh_tokenizer = keras_hub.models.BertTokenizer(vocabulary=os.path.join(tiny2_dir, "vocab.txt"),
                                                      lowercase=False)
        packer = keras_hub.layers.StartEndPacker(start_value=2, end_value=3, pad_value=0, sequence_length=512)
        kcall = tf.function(lambda t: packer(kh_tokenizer(t)))
        systems["keras-hub"] = lambda: kcall(batch).numpy()
    if "hf" in args.systems:
        fast = Tokenizer.from_file(os.path.join(tiny2_dir, "tokenizer.json"))
        fast.enable_truncation(512)
        fast.enable_padding(pad_id=0, pad_token="[PAD]")
        systems["hf"] = lambda: fast.encode_batch(lines)
    seconds = interleaved(systems, rounds=args.rounds * 3, iters=1, warmup=1)
    return seconds, len(lines)


def measure_serving(args):
    """Export a random-weight tiny2 classifier with its tokenizer and load it with `rubert-tf serve`
    (benchmarks/serving_latency.py), batching off and on."""
    import rubert_tf as rt
    import serving_latency

    tiny2_dir = os.path.join(DATA, "rubert-tiny2")
    results = {}
    with tempfile.TemporaryDirectory(prefix="run_all_serving_") as workdir:
        model = rt.RuBertClassifier(rubert_config(TINY2), labels=["negative", "neutral", "positive"])
        tokenizer = rt.RuBertTokenizer.from_pretrained(tiny2_dir)
        base = os.path.join(workdir, "sentiment")
        rt.export(model, tokenizer, base, max_length=128)
        del model
        gc.collect()
        for mode in ("off", "on"):
            results[mode] = serving_latency.measure(
                base, batching=(mode == "on"), threads=4, requests=10 if args.quick else 100, rows=1,
                text=rusentne_sentences(1)[0], workdir=workdir)
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
    import keras
    import keras_hub
    import tensorflow as tf
    import tokenizers
    import torch
    import transformers

    return (f"tensorflow {tf.__version__}, keras {keras.__version__}, keras-hub {keras_hub.__version__}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
            f"python {platform.python_version()}")


def fmt(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


class Report:
    """Rows are kept as data and rendered at the end, when the final matmul peak is known."""

    HEADER = ("| row | precision | unit | rubert_tf | keras-hub | HF (torch) | ours / faster peer | "
              "util. ours | util. keras-hub | util. HF | target | met |")

    def __init__(self):
        self.rows, self.notes, self.peak = [], [], {}

    def add(self, row, precision, unit, values, flops=None, peak_key=None, target=None, target_ratio=None,
            ratio="peer", target_util=None, text=None):
        entry = dict(row=row, precision=precision, unit=unit, values=values, flops=flops, peak_key=peak_key,
                     target=target, target_ratio=target_ratio, ratio=ratio, target_util=target_util, text=text)
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
        return (f"| {entry['row']} | {entry['precision']} | {entry['unit']} | {fmt(values.get('ours'))} | "
                f"{fmt(values.get('keras-hub'))} | {fmt(values.get('hf'))} | "
                f"{fmt(ratio, 2) + '×' if ratio else '–'} | "
                + " | ".join(f"{util[k] * 100:.0f}%" if util.get(k) else "–" for k in SYSTEMS)
                + f" | {entry['target'] or '–'} | {met} |")

    def markdown(self):
        return "\n".join([self.HEADER, "|" + "---|" * 12] + [self.render(entry) for entry in self.rows])


def run(args):
    setup_threads(args.threads, args.inter_op)
    report = Report()
    load_before = os.getloadavg()
    started = time.time()

    def per_second(seconds, units):
        return {name: units / value for name, value in seconds.items()}

    peak_entries = {}
    if "peak" in args.rows or any(r.startswith(("infer", "train", "realistic")) for r in args.rows):
        report.peak = measure_peak(args)
        for precision, value in report.peak.items():
            report.add("matmul peak (tf.matmul n² n=512..2048, best of run start and end)", precision, "GFLOP/s",
                       {"ours": value / 1e9}, ratio=None)
            peak_entries[precision] = report.rows[-1]
    for name, shape, batch, seq in (("infer-tiny2", TINY2, 32, 128), ("infer-base", BASE, 8, 128)):
        if name not in args.rows:
            continue
        for precision in args.precisions:
            seconds = measure_inference(args, shape, batch, seq, precision)
            tiny = shape is TINY2
            report.add(f"encoder inference {shape['name']} {batch}×{seq}", precision, "tokens/s",
                       per_second(seconds, batch * seq), flops_per_token(shape, seq), precision,
                       "≥1.5× faster peer" if tiny else "≥90% of peak", 1.5 if tiny else None,
                       target_util=None if tiny else 0.9)
            gc.collect()
    if "train" in args.rows:
        for precision in ("float32" if p == "float32" else "mixed_bfloat16" for p in args.precisions):
            seconds = measure_training(args, TINY2, 32, 128, precision)
            sparse = seconds.pop("ours-sparse", None)
            for label, values in (("", seconds), (", sparse embedding updates (ours)", dict(seconds, ours=sparse))):
                if values.get("ours") is None:
                    continue
                report.add(f"classifier training step tiny2 32×128{label}", precision, "tokens/s",
                           per_second(values, 32 * 128), 3 * flops_per_token(TINY2, 128),
                           "float32" if precision == "float32" else "bfloat16", "≥1.5× faster peer", 1.5)
            gc.collect()
    if "realistic" in args.rows:
        seconds, tokens, count, mean_len, kh_len = measure_realistic(args)
        report.add(f"RuSentNE tiny2 classifier, {count} sentences, batch 32 (real tokens)", "float32",
                   "tokens/s", per_second(seconds, tokens), flops_per_token(TINY2, mean_len), "float32",
                   "≥2× HF pipeline", 2.0, ratio="hf")
        report.notes.append(
            f"RuSentNE: the first {count} sentences, {tokens} real tokens (mean {mean_len:.1f} a sentence; "
            f"sentences/s = tokens/s ÷ {mean_len:.1f}); texts in, logits out, tokenization included. keras-hub "
            f"pads every batch to its preprocessor's sequence_length={kh_len} (the data's longest, rounded up to "
            "8); utilisation counts real tokens only, with T = the mean length. The ratio column here is "
            "ours ÷ HF pipeline.")
    if "tokenizer" in args.rows:
        seconds, lines = measure_tokenizer(args)
        report.add("tokenizer, ruslit lines → model inputs (1024 lines a call)", "–", "lines/s",
                   per_second(seconds, lines), target="≥5× tokenizers", target_ratio=5.0, ratio="hf")
        report.notes.append("Tokenizer: ours = RuBertTokenizer(texts, padding='longest') in a tf.function "
                            "(ids, segments, mask; offsets computed too); keras-hub = BertTokenizer + "
                            "StartEndPacker (tf_text WordPiece, pads to 512); HF = `tokenizers` "
                            "Tokenizer.from_file(tokenizer.json).encode_batch, truncation 512, padding to the "
                            "longest (Rust, 2 threads). The ratio column is ours ÷ tokenizers.")
    if "serving" in args.rows:
        results = measure_serving(args)
        for mode, result in results.items():
            report.add(None, None, None, None, text=(
                f"| serving tiny2 classifier REST, batching {mode}: p50 {result['p50']:.1f} ms, p99 "
                f"{result['p99']:.1f} ms, {len(result['errors'])} errors | float32 | requests/s | "
                f"{fmt(result['rps'])} | – | – | – | – | – | – | – | – |"))
        report.notes.append("Serving: `rubert-tf serve` (python -m rubert_tf.serving) on an exported random-weight "
                            "tiny2 classifier (text in, in-graph tokenizer, max_length 128), 4 client threads in "
                            "the benchmark process, 1 sentence a request (benchmarks/serving_latency.measure). No "
                            "peer: TF Serving's binary is not installed here.")
    if report.peak:
        final = measure_peak(args)
        for precision, entry in peak_entries.items():
            report.peak[precision] = max(report.peak[precision], final[precision])
            entry["values"] = {"ours": report.peak[precision] / 1e9}
    return report, load_before, os.getloadavg(), time.time() - started


def write_markdown(path, args, argv, report, load_before, load_after, elapsed):
    rows = ",".join(args.rows)
    text = f"""## Latest run of `benchmarks/run_all.py`

Written by `benchmarks/run_all.py` (issue 8). All numbers come from ONE run on one machine; compare the
columns of a row (ratios), not absolute numbers across runs or machines.

- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}
- machine: {machine_description()}
- load average before / after the run: {' '.join(f'{x:.1f}' for x in load_before)} / {' '.join(f'{x:.1f}' for x in load_after)} (other jobs shared the CPUs)
- versions: {versions()}
- command: `python benchmarks/run_all.py {' '.join(argv)}` ({elapsed / 60:.1f} min)
- rows in this run: {rows}; precisions: {','.join(args.precisions)}; threads: {args.threads} (TF inter-op {args.inter_op}); XLA for ours: {args.xla}

{report.markdown()}

Columns: throughput of each system (higher is better), `ours / faster peer` = rubert_tf ÷ the faster of
keras-hub and HF at the same precision, utilisation = achieved FLOP/s ÷ the matmul peak above.

FLOPs per token (forward), L layers, hidden H, intermediate I, length T:
`2·(4·H² + 2·H·I)·L + 4·T·H·L` — tiny2 at T=128: {flops_per_token(TINY2, 128) / 1e6:.2f} MFLOP, base at T=128:
{flops_per_token(BASE, 128) / 1e6:.1f} MFLOP; a training step counts 3× the forward.

Notes
""" + "\n".join(f"- {note}" for note in [
        "Random weights, real shapes (tiny2: 83828/312/3 layers/12 heads/600; base: 119547/768/12/12/3072). "
        "Keras models run inside a tf.function (`model(x, training=False)`); HF under torch.inference_mode(). "
        "bfloat16 inference = every weight and activation in bfloat16 (Keras policy \"bfloat16\", HF "
        "`model.to(torch.bfloat16)`); mixed bfloat16 training = Keras \"mixed_bfloat16\" / torch.autocast(bfloat16).",
        "Training: AdamW (lr 1e-5; ours: rubert_tf.training.AdamW, the optimizer finetune uses; the \"sparse embedding "
        "updates\" row: its documented flag sparse_updates=True / --sparse-embedding-updates, lazy Adam on the "
        "token table), dropout on, `train_on_batch` for the Keras models (compiled train function, "
        "jit_compile as in the row), loss.backward + AdamW.step for HF.",
        "Each number is the best of several interleaved rounds (noise on a shared machine only adds time).",
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
    parser.add_argument("--precisions", default="float32,bfloat16", help="float32,bfloat16 (training: mixed bfloat16)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="ours,keras-hub,hf")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inter_op", type=int, default=1, help="TF inter-op threads")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per row (default 3, quick 1)")
    parser.add_argument("--xla", action="store_true", help="jit_compile=True for rubert_tf's models")
    parser.add_argument("--output", default=os.path.join(REPO, "BENCHMARKS.md"), help="Markdown file ('' = none)")
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
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    args = parse_args(argv)
    report, before, after, elapsed = run(args)
    if args.output:
        write_markdown(args.output, args, argv, report, before, after, elapsed)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
