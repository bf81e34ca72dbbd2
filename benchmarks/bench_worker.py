"""One benchmark system in its own process: what benchmarks/run_all.py times, one system per process.

    python benchmarks/bench_worker.py --threads 2 --inter-op 1      # then JSON commands on stdin

run_all.py starts one worker per system of a row, sends each {"setup": {...}} (build the model, warm up),
then times them round by round in a shuffled order ({"time": iters}) while the others wait idle on stdin:
TensorFlow's thread pools and torch's OpenMP threads never share the CPUs, and every system sees the same
minutes of the machine. Replies are single lines starting with "@@ " (anything else on stdout is a
library's chatter). The HF workers import torch and never TensorFlow; ours and keras-hub never torch.

Systems per row (setup "system"):
  infer:     ours (Keras model in a tf.function), ours-xla (the same, jit_compile=True), ours-savedmodel (the encoder as a plain float SavedModel,
             loaded and called through its signature), ours-litert / ours-litert-int8 (rt.export_litert's
             .tflite, float32 / dynamic-range int8, XNNPACK), keras-hub, hf, hf-int8 (torch dynamic int8)
  train:     ours, ours-sparse, keras-hub, hf
  realistic: ours, keras-hub, hf (texts in, logits out)
  tokenizer: ours, keras-hub, hf (the same ids, segments and mask from every one; setup returns a digest)
  peak:      tf (square tf.matmul)
"""

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
TINY2_DIR = os.path.join(DATA, "rubert-tiny2")

TINY2 = dict(name="tiny2", vocab_size=83828, hidden_size=312, num_hidden_layers=3, num_attention_heads=12,
             intermediate_size=600, max_position_embeddings=2048)
BASE = dict(name="base", vocab_size=119547, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=512)
SHAPES = {"tiny2": TINY2, "base": BASE}
TORCH_SYSTEMS = ("hf", "hf-int8")


# ---------------------------------------------------------------------------------------------- inputs

def variable_batch(shape, batch, seq_len, seed=0):
    """Token ids with real padding: row lengths uniform in [seq_len/4, seq_len], the first row full (so the
    padded width is seq_len for every system), [CLS] ... [SEP] then [PAD]=0 with mask 0."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(2, seq_len // 4), seq_len + 1, size=batch)
    lengths[0] = seq_len
    positions = np.arange(seq_len)[None, :]
    mask = (positions < lengths[:, None]).astype("int32")
    ids = rng.integers(5, shape["vocab_size"], size=(batch, seq_len)).astype("int32")
    ids[:, 0] = 2
    ids[np.arange(batch), lengths - 1] = 3
    ids = ids * mask
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def real_tokens(batch):
    return int(batch["padding_mask"].sum())


def torch_inputs(batch):
    import torch

    return {"input_ids": torch.from_numpy(batch["token_ids"].astype("int64")),
            "token_type_ids": torch.from_numpy(batch["segment_ids"].astype("int64")),
            "attention_mask": torch.from_numpy(batch["padding_mask"].astype("int64"))}


def rusentne_sentences(limit):
    with open(os.path.join(DATA, "rusentne2023", "train_data.csv"), encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [row["sentence"] for row in rows][:limit]


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


def digest(*arrays):
    import numpy as np

    h = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(np.asarray(array, dtype=np.int64))
        h.update(str(array.shape).encode())
        h.update(array.tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- models

def rubert_config(shape):
    import rubert_tf as rt

    fields = {k: v for k, v in shape.items() if k != "name"}
    return rt.RuBertConfig.from_dict(dict(fields, type_vocab_size=2, hidden_act="gelu"))


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


# ---------------------------------------------------------------------------------------------- rows

def setup_peak(system, precision, n=1024, **_):
    import tensorflow as tf

    a = tf.cast(tf.random.normal([n, n], seed=1), precision)
    b = tf.cast(tf.random.normal([n, n], seed=2), precision)
    matmul = tf.function(lambda x, y: tf.matmul(x, y)[0, 0])
    return (lambda: matmul(a, b).numpy()), {"flops": 2 * n ** 3}


def setup_infer(system, precision, shape="tiny2", batch=32, seq_len=128, **_):
    """The encoder (or its export) forward on a [batch, seq_len] batch with real padding."""
    shape = SHAPES[shape]
    inputs = variable_batch(shape, batch, seq_len)
    info = {"real_tokens": real_tokens(inputs), "padded_tokens": batch * seq_len}
    if system in TORCH_SYSTEMS:
        import torch
        from transformers import BertModel

        model = BertModel(hf_config(shape)).eval()
        if system == "hf-int8":
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif precision == "bfloat16":
            model = model.to(torch.bfloat16)
        batch_t = torch_inputs(inputs)

        def hf():
            with torch.inference_mode():
                return model(**batch_t).last_hidden_state.float().numpy()
        return hf, info
    import tensorflow as tf

    import rubert_tf as rt

    if system == "keras-hub":
        backbone = keras_hub_backbone(shape, precision)
        call = tf.function(lambda x: backbone(x, training=False)["sequence_output"])
        tf_inputs = {k: tf.constant(v) for k, v in inputs.items()}
        return (lambda: call(tf_inputs).numpy()), info
    encoder = rt.RuBertEncoder(rubert_config(shape), dtype=precision)
    tf_inputs = {k: tf.constant(v) for k, v in inputs.items()}
    if system in ("ours", "ours-xla"):
        call = tf.function(lambda x: encoder(x, training=False)["sequence_output"], jit_compile=system == "ours-xla")
        return (lambda: call(tf_inputs).numpy()), info
    if system == "ours-savedmodel":
        folder = tempfile.mkdtemp(prefix="bench_savedmodel_")
        module = tf.Module()
        module.encoder = encoder
        spec = {k: tf.TensorSpec([None, None], tf.int32, name=k) for k in inputs}
        module.serve = tf.function(lambda x: {"sequence_output": encoder(x, training=False)["sequence_output"]},
                                   input_signature=[spec])
        tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
        signature = tf.saved_model.load(folder).signatures["serving_default"]
        return (lambda: signature(**tf_inputs)["sequence_output"].numpy()), info
    if system in ("ours-litert", "ours-litert-int8"):
        from rubert_tf.export.litert import LiteRTNetwork, convert

        blob, input_names, output_names = convert(encoder, "int8" if system.endswith("int8") else None)
        path = os.path.join(tempfile.mkdtemp(prefix="bench_litert_"), "model.tflite")
        with open(path, "wb") as handle:
            handle.write(blob)
        del encoder
        runner = LiteRTNetwork(path, input_names, output_names, int(os.environ["BENCH_THREADS"]))
        info["tflite_mb"] = round(len(blob) / 1e6, 1)
        return (lambda: runner.run(inputs)["sequence_output"]), info
    raise ValueError(f"infer: unknown system {system!r}")


def setup_train(system, precision, shape="tiny2", batch=32, seq_len=128, **_):
    """One optimizer step of a 3-class classifier (AdamW, dropout on)."""
    import numpy as np

    shape = SHAPES[shape]
    inputs = variable_batch(shape, batch, seq_len)
    labels = np.random.default_rng(1).integers(0, 3, size=(batch,)).astype("int32")
    info = {"real_tokens": real_tokens(inputs), "padded_tokens": batch * seq_len}
    if system == "hf":
        import torch
        from transformers import BertForSequenceClassification

        model = BertForSequenceClassification(hf_config(shape, num_labels=3)).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        batch_t = torch_inputs(inputs)
        labels_t = torch.from_numpy(labels.astype("int64"))

        def hf():
            if precision == "mixed_bfloat16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = model(**batch_t, labels=labels_t).loss
            else:
                loss = model(**batch_t, labels=labels_t).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss.detach())
        return hf, info
    import keras
    import tensorflow as tf

    import rubert_tf as rt
    from rubert_tf.training import AdamW

    keras.config.set_dtype_policy(precision)
    tf_inputs = {k: tf.constant(v) for k, v in inputs.items()}
    if system == "keras-hub":
        import keras_hub

        model = keras_hub.models.BertTextClassifier(keras_hub_backbone(shape, None), num_classes=3, preprocessor=None)
        model.compile(optimizer=keras.optimizers.AdamW(1e-5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
        y = tf.constant(labels)
        return (lambda: model.train_on_batch(tf_inputs, y)), info
    if system in ("ours", "ours-sparse"):
        model = rt.RuBertClassifier(rubert_config(shape), num_labels=3)
        model.compile(optimizer=AdamW(1e-5, sparse_updates=system == "ours-sparse"),
                      loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
        y = {"logits": tf.constant(labels)}
        return (lambda: model.train_on_batch(tf_inputs, y)), info
    raise ValueError(f"train: unknown system {system!r}")


def setup_realistic(system, precision, sentences=512, **_):
    """RuSentNE sentences in, logits out, batch 32, tokenization included, each system padding as it
    normally does (ours: length-sorted batches padded to the longest, rounded to 8; keras-hub: its
    preprocessor's fixed sequence_length; HF: pipeline, padding to the batch's longest)."""
    texts = rusentne_sentences(sentences)
    batch_size = 32
    if system == "hf":
        import torch
        from transformers import BertForSequenceClassification, PreTrainedTokenizerFast, pipeline

        tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(TINY2_DIR, "tokenizer.json"),
                                            unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
        model = BertForSequenceClassification(hf_config(TINY2, num_labels=3)).eval()
        classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
        lengths = [len(e) for e in tokenizer(texts, truncation=True, max_length=512)["input_ids"]]

        def hf():
            with torch.inference_mode():
                return classifier(texts, batch_size=batch_size, truncation=True, max_length=512)
        return hf, {"real_tokens": sum(lengths), "sentences": len(texts), "longest": max(lengths)}
    import numpy as np
    import tensorflow as tf

    import rubert_tf as rt
    from rubert_tf.data.batching import pad_to_multiple

    tokenizer = rt.RuBertTokenizer.from_pretrained(TINY2_DIR)
    lengths = tf.reduce_sum(tokenizer(texts, max_length=512, padding="longest")["padding_mask"], 1).numpy()
    info = {"real_tokens": int(lengths.sum()), "sentences": len(texts), "longest": int(lengths.max())}
    if system == "ours":
        classifier = rt.RuBertClassifier(rubert_config(TINY2), num_labels=3, dtype=precision)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def classify(batch):
            return classifier(pad_to_multiple(tokenizer(batch, max_length=512, padding="longest")),
                              training=False)["logits"]

        order = np.argsort([len(s) for s in texts], kind="stable")
        ordered = [texts[i] for i in order]

        def ours():
            logits = np.concatenate([classify(tf.constant(ordered[i:i + batch_size])).numpy()
                                     for i in range(0, len(ordered), batch_size)])
            out = np.empty_like(logits)
            out[order] = logits
            return out
        return ours, info
    if system == "keras-hub":
        import keras_hub

        length = int(min(512, -(-info["longest"] // 8) * 8))
        kh_tokenizer = keras_hub.models.BertTokenizer(vocabulary=os.path.join(TINY2_DIR, "vocab.txt"), lowercase=False)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(kh_tokenizer, sequence_length=length)
        model = keras_hub.models.BertTextClassifier(keras_hub_backbone(TINY2, precision), num_classes=3,
                                                    preprocessor=preprocessor)
        info["keras_hub_length"] = length
        return (lambda: model.predict(texts, batch_size=batch_size, verbose=0)), info
    raise ValueError(f"realistic: unknown system {system!r}")


def setup_tokenizer(system, precision=None, lines=1024, **_):
    """ruslit lines -> token_ids, segment_ids, padding_mask as numpy [N, longest] (truncation at 512): the
    same three arrays from every system (their digest is returned so run_all can check)."""
    import numpy as np

    texts = ruslit_lines(lines)
    if system == "hf":
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(os.path.join(TINY2_DIR, "tokenizer.json"))
        fast.enable_truncation(512)
        fast.enable_padding(pad_id=0, pad_token="[PAD]")

        def hf():
            encodings = fast.encode_batch(texts)
            return (np.array([e.ids for e in encodings], np.int32), np.array([e.type_ids for e in encodings], np.int32),
                    np.array([e.attention_mask for e in encodings], np.int32))
    else:
        import tensorflow as tf

        batch = tf.constant(texts)
        if system == "ours":
            import rubert_tf as rt

            tokenizer = rt.RuBertTokenizer.from_pretrained(TINY2_DIR)
            call = tf.function(lambda t: {k: v for k, v in tokenizer(t, max_length=512, padding="longest").items()
                                          if k in ("token_ids", "segment_ids", "padding_mask")})
        elif system == "keras-hub":
            import keras_hub

            kh = keras_hub.models.BertTokenizer(vocabulary=os.path.join(TINY2_DIR, "vocab.txt"), lowercase=False)
            packer = keras_hub.layers.StartEndPacker(start_value=2, end_value=3, pad_value=0, sequence_length=512,
                                                     return_padding_mask=True)

            def pack(t):
                ids, mask = packer(kh(t))
                width = tf.reduce_max(tf.reduce_sum(tf.cast(mask, tf.int32), 1))  # to the longest, as the others
                ids, mask = ids[:, :width], tf.cast(mask[:, :width], tf.int32)
                return {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask}
            call = tf.function(pack)
        else:
            raise ValueError(f"tokenizer: unknown system {system!r}")

        def tf_system():
            out = call(batch)
            return tuple(out[k].numpy() for k in ("token_ids", "segment_ids", "padding_mask"))
        hf = tf_system
    arrays = hf()
    return hf, {"lines": len(texts), "digest": digest(*arrays), "real_tokens": int(arrays[2].sum())}


ROWS = {"peak": setup_peak, "infer": setup_infer, "train": setup_train, "realistic": setup_realistic,
        "tokenizer": setup_tokenizer}


# ---------------------------------------------------------------------------------------------- protocol

def setup_threads(system, threads, inter_op):
    os.environ["BENCH_THREADS"] = str(threads)
    if system in TORCH_SYSTEMS:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def reply(message):
    sys.stdout.write("@@ " + json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inter-op", type=int, default=1)
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    work = None
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if "setup" in command:
                options = dict(command["setup"])
                setup_threads(options["system"], args.threads, args.inter_op)
                work, info = ROWS[options.pop("row")](**options)
                info = dict(info, pid=os.getpid())
                for _ in range(int(options.get("warmup", 2))):
                    work()
                reply({"ok": True, "info": info})
            elif "time" in command:
                seconds = []
                for _ in range(int(command["time"])):
                    started = time.perf_counter()
                    work()
                    seconds.append(time.perf_counter() - started)
                reply({"ok": True, "seconds": seconds})
            elif "exit" in command:
                reply({"ok": True})
                return 0
        except Exception as error:  # the parent names the system and stops the row
            import traceback

            reply({"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
