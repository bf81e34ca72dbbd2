"""`rubert-tf quickstart`: the whole path once, offline, on the sample data the package writes itself.

    sample data -> WordPiece vocab -> tiny RuBERT pretrained with masked LM -> sentiment classifier
    fine-tuned and evaluated -> SavedModel in OUT/NAME/<next version> -> `rubert-tf serve` on 127.0.0.1
    (free ports) -> one REST predict request -> server stopped -> summary

With `model=` (a checkpoint directory or hub id) the vocab and pretraining steps are skipped and the
classifier starts from that checkpoint; `data=` (CSV/TSV/JSONL with text and label columns) replaces
the sample sentiment sentences, `corpus=` adds the user's raw text to the vocab and pretraining text.
Working files (sample data, vocab, shards, checkpoints, server log, summary.json) go to `work_dir`
(default OUT/.quickstart, replaced on every run); exports are never overwritten.
"""

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

FAST = dict(vocab_size=2000, pretrain_steps=40, epochs=10)
DEFAULT = dict(vocab_size=4000, pretrain_steps=600, epochs=20)
TINY_ARCHITECTURE = dict(num_layers=2, hidden_size=128, num_heads=4, intermediate_size=512,
                         max_position_embeddings=512)
SAMPLE_REQUEST_TEXT = "Отличный сервис и очень вежливый персонал, обязательно вернусь ещё раз!"
WORK_SUBDIRS = ("data", "corpus", "corpus_heldout", "pretrained", "classifier")


def _say(message):
    print(message, flush=True)


class _Stages:
    """Numbered stage headers with the elapsed time, so long Keras bars stay readable."""

    def __init__(self, names, progress):
        self.names, self.progress, self.started, self.number = names, progress, time.time(), 0
        self.seconds = {}
        self._last = None

    def __call__(self, key, text):
        self._close()
        self.number += 1
        self._last = (key, time.time())
        _say(f"[{self.number}/{len(self.names)}] {text}  (t={time.time() - self.started:.0f}s)")

    def _close(self):
        if self._last is not None:
            key, began = self._last
            self.seconds[key] = round(time.time() - began, 1)
            self._last = None

    def done(self):
        self._close()
        return round(time.time() - self.started, 1)


# ---------------------------------------------------------------------------------------------- data


def _read_user_data(path, options, label):
    from rubert_tf.tasks.classification import ClassificationTask

    if not os.path.exists(path):
        raise FileNotFoundError(f"{label} {path}: no such file")
    if os.path.isdir(path):
        raise FileNotFoundError(f"{label} {path}: is a directory, expected a CSV/TSV/JSONL file")
    examples = ClassificationTask().read(path, options)
    if any(isinstance(e["label"], list) for e in examples):
        raise ValueError(f"{path}: quickstart trains single-label classifiers; use `rubert-tf finetune "
                         "classification --multi-label` for multi-label data")
    return examples


def _write_jsonl(path, examples):
    with open(path, "w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps({"text": example["text"], "label": example["label"]}, ensure_ascii=False) + "\n")


def _split(examples, eval_fraction, seed):
    """Shuffled train/eval split, each label represented in eval where it has >= 2 examples."""
    rng = random.Random(seed)
    by_label = {}
    for example in examples:
        by_label.setdefault(example["label"], []).append(example)
    train, held_out = [], []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        cut = int(round(len(group) * eval_fraction)) if len(group) >= 2 else 0
        cut = max(cut, 1) if len(group) >= 2 else 0
        held_out += group[:cut]
        train += group[cut:]
    rng.shuffle(train)
    rng.shuffle(held_out)
    return train, held_out


# ---------------------------------------------------------------------------------------------- serving


class _Server:
    """`rubert-tf serve` in a child process on 127.0.0.1 with free ports; stop() always ends it."""

    def __init__(self, name, base_path, log_path):
        import rubert_tf

        self.command = [sys.executable, "-m", "rubert_tf.cli", "serve", f"--model_name={name}",
                        f"--model_base_path={os.path.abspath(base_path)}", "--port=0", "--rest_api_port=0",
                        "--grpc_host=127.0.0.1", "--rest_api_host=127.0.0.1", "--file_system_poll_wait_seconds=0"]
        self.log_path = log_path
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(rubert_tf.__file__)))
        env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self._log = open(log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._log, env=env,
                                        stdin=subprocess.DEVNULL, text=True, encoding="utf-8",
                                        start_new_session=True)
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True, name="serve-stdout")
        self._reader.start()

    def shown(self):
        return " ".join(["rubert-tf serve"] + self.command[4:])

    def _read(self):
        for line in self.process.stdout:  # drained to the end, so the child never blocks on a full pipe
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_ready(self, timeout):
        """REST port from the server's ready line; an error with the log's tail if it never comes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                line = ""
            if line is None or (line == "" and self.process.poll() is not None):
                raise RuntimeError(f"rubert-tf serve exited with code {self.process.wait()} before it was ready; "
                                   f"its log ({self.log_path}) ends with:\n{self._log_tail()}")
            if line and line.startswith("rubert-tf serve: ready"):
                fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
                return int(fields["rest_api_port"])
            if time.monotonic() >= deadline:
                raise TimeoutError(f"rubert-tf serve was not ready after {timeout:.0f}s; its log ({self.log_path}) "
                                   f"ends with:\n{self._log_tail()}")

    def _log_tail(self, lines=15):
        self._log.flush()
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=20):
        """SIGTERM (the server shuts down cleanly), SIGKILL to its process group if that takes too long."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.process.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        self.process.kill()
                    self.process.wait(timeout)
        finally:
            self._log.close()
        return self.process.returncode


def _rest_request(port, name, version, text):
    from rubert_tf.serving.client import Client

    client = Client(f"http://127.0.0.1:{port}", name, timeout=120)
    try:
        path = client.model_path(version=version) + ":predict"
        body = {"instances": [text]}
        answer = client.request("POST", path, body)
    finally:
        client.close()
    return f"http://127.0.0.1:{port}{path}", body, answer


def serve_and_request(name, base_path, version, text, log_path, timeout=300, on_start=None):
    """Start `rubert-tf serve` for `base_path`, POST one predict request for `text` to `version`, stop the
    server whatever happens (an error, Ctrl-C or SIGTERM included); returns {"command", "pid", "exit_code",
    "url", "request", "response"}. `on_start(server)` is called once the process runs (tests)."""
    restore = _exit_on_sigterm()  # so `finally` stops the server when this process is terminated too
    try:
        server = _Server(name, base_path, log_path)
        try:
            if on_start is not None:
                on_start(server)
            port = server.wait_ready(timeout)
            url, body, answer = _rest_request(port, name, version, text)
        finally:
            code = server.stop()
    finally:
        restore()
    return {"command": server.shown(), "pid": server.process.pid, "exit_code": code, "url": url, "request": body,
            "response": answer}


def _exit_on_sigterm():
    """SIGTERM raises SystemExit (cleanup in `finally` runs) until the returned function restores the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    return lambda: signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------- the run


def run_quickstart(out="savedmodels", name=None, work_dir=None, model=None, data=None, eval_data=None,
                   corpus=None, text_column="text", label_column="label", fast=False, vocab_size=None,
                   pretrain_steps=None, epochs=None, learning_rate=None, batch_size=32, max_length=None,
                   text=None, seed=0, server_timeout=300, progress=True):
    """Run the quickstart (see the module docstring); returns the summary dict (also WORK/summary.json)."""
    budget = dict(FAST if fast else DEFAULT)
    vocab_size = vocab_size or budget["vocab_size"]
    pretrain_steps = pretrain_steps or budget["pretrain_steps"]
    epochs = epochs or (budget["epochs"] if model is None else 3)
    learning_rate = learning_rate or (1e-3 if model is None else 5e-5)
    max_length = max_length or (64 if data is None else 128)
    name = name or ("sentiment" if data is None else "classifier")
    work_dir = work_dir or os.path.join(out, ".quickstart")
    base_path = os.path.join(out, name)
    verbose = 1 if progress else 0
    stage_names = ["data"] + ([] if model else ["vocab", "pretrain"]) + ["finetune", "export", "serve"]
    stages = _Stages(stage_names, progress)

    # Everything the user gave is checked before any training.
    options = {"text_column": text_column, "label_column": label_column}
    if eval_data and not data:
        raise ValueError("--eval-data needs --data (the sample has its own test split)")
    user_examples = _read_user_data(data, options, "--data") if data else None
    user_eval = _read_user_data(eval_data, options, "--eval-data") if eval_data else None
    for path in corpus or []:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--corpus {path}: no such file")
    if model is not None:
        from rubert_tf import hub

        model_dir = hub.resolve(model)  # a bad path fails here, naming it
    summary = {}

    import keras

    import rubert_tf as rt
    from rubert_tf.sample_data import write_sample_data

    os.makedirs(work_dir, exist_ok=True)
    for sub in WORK_SUBDIRS:  # only the folders this command writes; the rest of work_dir is left alone
        shutil.rmtree(os.path.join(work_dir, sub), ignore_errors=True)

    # 1. data
    stages("data", "writing the sample data (Russian corpus, sentiment and NER sentences)"
           + (" and reading --data" if data else ""))
    data_dir = os.path.join(work_dir, "data")
    sample = write_sample_data(data_dir)
    if data:
        if user_eval is None:
            train_examples, eval_examples = _split(user_examples, 0.2, seed)
        else:
            train_examples, eval_examples = user_examples, user_eval
        if not eval_examples:
            raise ValueError(f"{data}: too few examples to hold some out for evaluation; pass --eval-data")
        train_file, eval_file = os.path.join(data_dir, "train.jsonl"), os.path.join(data_dir, "eval.jsonl")
        _write_jsonl(train_file, train_examples)
        _write_jsonl(eval_file, eval_examples)
        texts_file = os.path.join(data_dir, "user_texts.txt")
        with open(texts_file, "w", encoding="utf-8") as f:
            f.write("\n\n".join(e["text"].replace("\n", " ") for e in user_examples) + "\n")
        summary["data"] = (f"{data}: {len(train_examples)} train / {len(eval_examples)} eval examples"
                           + (f" (eval: {eval_data})" if eval_data else " (80/20 split)"))
        text_files = [sample["corpus"], texts_file] + list(corpus or [])
    else:
        train_file, eval_file = sample["sentiment_train"], sample["sentiment_test"]
        summary["data"] = (f"sample written by rubert_tf.sample_data to {data_dir} (600 sentiment sentences, "
                           "400 NER sentences, a small corpus): a sample, not real data")
        text_files = [sample["corpus"]] + list(corpus or [])

    # 2-3. vocab and pretraining
    if model is None:
        from rubert_tf.pretraining import prepare_corpus, pretrain

        stages("vocab", f"training a {vocab_size}-token WordPiece vocab on {len(text_files)} text file(s)")
        vocab_path = os.path.join(work_dir, "vocab.txt")
        vocab = rt.train_vocab(text_files, vocab_size=vocab_size, output_path=vocab_path)
        summary["vocab"] = f"{len(vocab)} WordPiece tokens ({vocab_path})"
        tokenizer = rt.RuBertTokenizer(vocab_path)  # cased, as RuBERT

        stages("pretrain", f"masked-LM pretraining of a tiny RuBERT ({TINY_ARCHITECTURE['num_layers']} layers, "
               f"hidden {TINY_ARCHITECTURE['hidden_size']}) for {pretrain_steps} steps")
        train_corpus, heldout_corpus = os.path.join(work_dir, "corpus"), os.path.join(work_dir, "corpus_heldout")
        prepare_corpus(text_files, train_corpus, tokenizer, max_length=max_length, overwrite=True, progress=progress)
        prepare_corpus(sample["corpus_heldout"], heldout_corpus, tokenizer, max_length=max_length, overwrite=True,
                       progress=False)
        pretrained = os.path.join(work_dir, "pretrained")
        metrics = pretrain(train=train_corpus, eval=heldout_corpus, out=pretrained, config="cointegrated/rubert-tiny2",
                           overrides=TINY_ARCHITECTURE, batch_size=32, steps=pretrain_steps,
                           checkpoint_every=pretrain_steps, backup_every=pretrain_steps, learning_rate=1e-3,
                           warmup_ratio=0.05, seed=seed, verbose=verbose)
        before, after = metrics["eval_before"], metrics["eval_after"]
        summary["pretraining"] = (f"{pretrain_steps} steps, {metrics['parameters']:,} parameters, held-out MLM loss "
                                  f"{before['mlm_loss']:.2f} -> {after['mlm_loss']:.2f} (accuracy "
                                  f"{before['mlm_accuracy']:.2f} -> {after['mlm_accuracy']:.2f})")
        summary["mlm_loss_before"], summary["mlm_loss_after"] = before["mlm_loss"], after["mlm_loss"]
        start_from = pretrained
        keras.backend.clear_session()
    else:
        start_from = model_dir
        summary["model"] = f"{model} ({model_dir})"

    # 4. fine-tune + evaluate
    from rubert_tf.finetune import finetune

    classifier_dir = os.path.join(work_dir, "classifier")
    stages("finetune", f"fine-tuning a classifier for {epochs} epochs (learning rate {learning_rate:g}) and "
           "evaluating it")
    metrics = finetune("classification", model=start_from, train=train_file, eval=eval_file, out=classifier_dir,
                       epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, max_length=max_length,
                       seed=seed, verbose=verbose)
    classifier = rt.RuBertClassifier.from_pretrained(classifier_dir)
    labels = list(classifier.labels)
    summary["classifier"] = (f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} on "
                             f"{metrics['examples']} held-out examples; labels {labels}")
    summary["accuracy"], summary["macro_f1"], summary["labels"] = metrics["accuracy"], metrics["macro_f1"], labels

    # 5. export
    stages("export", f"exporting a SavedModel (text in, label out) to {base_path}/<next version>")
    path = rt.export(classifier, base_path=base_path)  # at the max_length it was fine-tuned and evaluated with
    version = int(os.path.basename(path))
    summary["export"] = f"{path} (version {version})"
    summary["export_path"], summary["version"] = path, version
    keras.backend.clear_session()

    # 6. serve, one request, stop
    if text is None:
        text = SAMPLE_REQUEST_TEXT if data is None else eval_examples[0]["text"]
    stages("serve", "starting rubert-tf serve on 127.0.0.1 and sending one REST request")
    served = serve_and_request(name, base_path, version, text, os.path.join(work_dir, "serve.log"), server_timeout)
    url, body, answer = served["url"], served["request"], served["response"]
    summary["server"] = f"{served['command']}  (pid {served['pid']}, stopped, exit code {served['exit_code']})"
    summary["request"] = f"POST {url}"
    summary["request_json"] = json.dumps(body, ensure_ascii=False)
    summary["response_json"] = json.dumps(answer, ensure_ascii=False)
    summary["next"] = (f"rubert-tf finetune ner --model {start_from} --train {sample['ner_train']} --eval "
                       f"{sample['ner_test']} --out ner --epochs 15 --learning-rate 1e-3   (the NER sample)")
    summary["seconds"] = stages.done()
    summary["stage_seconds"] = stages.seconds
    with open(os.path.join(work_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
    return summary


SUMMARY_LINES = ("data", "model", "vocab", "pretraining", "classifier", "export", "server", "request", "request_json",
                 "response_json", "next")


def print_summary(summary):
    _say("")
    _say("== rubert-tf quickstart: summary ==")
    for key in SUMMARY_LINES:
        if key in summary:
            _say(f"{key + ':':15}{summary[key]}")
    minutes, seconds = divmod(int(round(summary["seconds"])), 60)
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in summary["stage_seconds"].items())
    _say(f"{'time:':15}{minutes} min {seconds} s ({stages})")
