"""The training machinery (rubert_tf.training) in fine-tuning: `finetune(..., strategy=, grad_accum=,
resume=, backup_every=, class_weight=)` and `rubert-tf finetune ... --strategy --grad-accum --resume`.

- MirroredStrategy on 2 logical CPUs trains like one device (same global batch: same losses and
  weights), and the saved model loads;
- gradient accumulation 2 x B equals batch 2B through the whole runner (shuffle, bucketing, schedule);
- a `rubert-tf finetune` killed with SIGKILL mid-epoch continues with --resume from its last backup
  and ends with the weights of an uninterrupted run.

A tiny model (1 layer, hidden 32, a 40-word vocabulary) on synthetic sentences of 3-5 words: every
example falls in one length bucket and every batch is full, so runs can be compared exactly.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from processes import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 400

WORDS = ["мама", "папа", "кот", "дом", "лес", "река", "город", "книга", "окно", "стол", "день", "ночь",
         "снег", "дождь", "море", "поле", "сад", "мост", "путь", "чай", "хорошо", "отлично", "прекрасно",
         "плохо", "ужасно", "скучно", "видит", "любит", "ждёт", "знает", "очень", "совсем", "там", "здесь"]
POSITIVE, NEGATIVE = WORDS[20:23], WORDS[23:26]
N_EXAMPLES = 48


def _write_data(directory):
    """train.csv (text,label: -1/0/1 by the sentiment word in it) and a tiny random checkpoint."""
    import keras

    import rubert_tf as rt

    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_EXAMPLES):
        label = (-1, 0, 1)[i % 3]
        words = list(rng.choice(WORDS[:20] + WORDS[26:], size=int(rng.integers(2, 5))))
        if label:
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POSITIVE if label > 0 else NEGATIVE)))
        rows.append(f"{' '.join(words)},{label}")
    os.makedirs(directory, exist_ok=True)
    train = os.path.join(directory, "train.csv")
    with open(train, "w", encoding="utf-8") as f:
        f.write("text,label\n" + "\n".join(rows) + "\n")
    vocab = os.path.join(directory, "vocab.txt")
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    keras.utils.set_random_seed(7)
    tokenizer = rt.RuBertTokenizer(vocab)
    config = rt.RuBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    checkpoint = os.path.join(directory, "checkpoint")
    rt.RuBertEncoder(config).save_pretrained(checkpoint, tokenizer=tokenizer)
    return train, checkpoint


def _weights(model_dir):
    from safetensors.numpy import load_file

    tensors = load_file(os.path.join(model_dir, "model.safetensors"))
    return {name: tensors[name] for name in sorted(tensors)}


def _max_diff(a, b):
    assert sorted(a) == sorted(b)
    return max(float(np.abs(a[name] - b[name]).max()) for name in a)


def _script(*args):
    return [sys.executable, os.path.abspath(__file__), *map(str, args)]


def _finish(proc, what, timeout=TIMEOUT):
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}"
    return stdout, stderr


COMMON = dict(epochs=2, batch_size=8, learning_rate=3e-3, max_length=16, warmup_ratio=0.2, seed=3, verbose=0)


# --------------------------------------------------------------------------- mirrored == one device

def test_finetune_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    out = tmp_path / "mirrored.json"
    _finish(subprocess.Popen(_script("mirrored", tmp_path, out), env=subprocess_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True), "mirrored script")
    result = json.loads(out.read_text())
    print(json.dumps(result, indent=1))
    single, mirrored = result["default"], result["mirrored"]
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    assert mirrored["optimizer_steps"] == single["optimizer_steps"] == 12
    for key in ("train_loss_first_epoch", "train_loss_last_epoch", "loss", "accuracy"):
        assert mirrored[key] == pytest.approx(single[key], abs=1e-4), key
    assert single["train_loss_last_epoch"] < single["train_loss_first_epoch"]
    assert result["max_weight_diff"] < 1e-4
    assert result["reloaded_max_logit_diff"] < 1e-5  # the saved mirrored model loads and predicts the same


def _script_mirrored(directory, result_path):
    from rubert_tf.finetune import finetune
    from rubert_tf.training.strategy import split_cpu

    split_cpu(2)  # before any TF work (writing the data builds a model); finetune accepts the same split
    train, checkpoint = _write_data(os.path.join(directory, "data"))
    result = {}
    for name in ("default", "mirrored"):  # the CPU is split before any TF work; "default" uses CPU:0
        result[name] = finetune("classification", model=checkpoint, train=train, eval=train,
                                out=os.path.join(directory, name), strategy=name, num_logical_cpus=2, **COMMON)
    result["max_weight_diff"] = _max_diff(_weights(os.path.join(directory, "default")),
                                          _weights(os.path.join(directory, "mirrored")))
    import rubert_tf as rt

    reloaded = rt.RuBertClassifier.from_pretrained(os.path.join(directory, "mirrored"))
    texts = ["мама очень хорошо", "дом совсем плохо", "кот там"]
    logits = np.asarray(reloaded.tokenizer and reloaded(reloaded.tokenizer(texts, max_length=16))["logits"])
    default = rt.RuBertClassifier.from_pretrained(os.path.join(directory, "default"))
    expected = np.asarray(default(default.tokenizer(texts, max_length=16))["logits"])
    result["reloaded_max_logit_diff"] = float(np.abs(logits - expected).max())
    with open(result_path, "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------------- gradient accumulation

def test_finetune_grad_accum_2x4_equals_batch_8(tmp_path):
    from rubert_tf.finetune import finetune

    train, checkpoint = _write_data(str(tmp_path / "data"))
    options = {k: v for k, v in COMMON.items() if k != "batch_size"}
    big = finetune("classification", model=checkpoint, train=train, out=str(tmp_path / "big"), batch_size=8,
                   backup_every=None, **options)
    small = finetune("classification", model=checkpoint, train=train, out=str(tmp_path / "small"), batch_size=4,
                     grad_accum=2, backup_every=None, **options)
    diff = _max_diff(_weights(str(tmp_path / "big")), _weights(str(tmp_path / "small")))
    print(f"grad_accum 2 x 4 vs batch 8: max weight diff {diff:.3g}; {big} {small}")
    assert small["optimizer_steps"] == big["optimizer_steps"] == 12
    assert small["grad_accum"] == 2
    assert diff < 1e-4


def test_balanced_class_weights():
    from rubert_tf.finetune import _class_weights

    class Net:
        labels, multi_label = ["-1", "0", "1"], False

    examples = [{"label": "0"}] * 6 + [{"label": "1"}] * 2 + [{"label": "-1"}] * 4
    assert _class_weights("balanced", Net(), examples) == pytest.approx({0: 1.0, 1: 12 / 18, 2: 2.0})
    assert _class_weights(None, Net(), examples) is None
    with pytest.raises(ValueError, match="class_weight"):
        _class_weights("inverse", Net(), examples)


# --------------------------------------------------------------------------- pretraining steps, vocab globs

def test_pretrain_epochs_keep_the_requested_number_of_steps():
    from rubert_tf.pretraining.pretrain import _epochs

    assert _epochs(1500, 1000) == (750, 2)   # was rounded up to 2 x 1000 = 2000 steps
    assert _epochs(12, 6) == (6, 2)
    assert _epochs(10, 1000) == (10, 1)
    assert _epochs(7, 3) == (3, 3)           # 9: not divisible by any 3 equal epochs; fewer than 3 extra
    assert _epochs(5, None) == (5, 1)


def test_train_vocab_accepts_globs_and_directories(tmp_path, capsys):
    from rubert_tf.cli import main
    from rubert_tf.vocab_training import count_words

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("мама мыла раму\nмама\n", encoding="utf-8")
    (tmp_path / "a" / "two.txt").write_text("папа мыл раму\n", encoding="utf-8")
    (tmp_path / "a" / "skip.csv").write_text("мама\n", encoding="utf-8")
    counts = count_words([str(tmp_path / "a" / "*.txt")])
    assert counts["мама"] == 2 and counts["раму"] == 2 and counts["папа"] == 1
    assert count_words(str(tmp_path / "a"))["мама"] == 3  # a directory: every file in it
    with pytest.raises(FileNotFoundError, match="nothing"):
        count_words(str(tmp_path / "a" / "nothing*.txt"))
    out = tmp_path / "vocab.txt"
    assert main(["train-vocab", str(tmp_path / "a" / "*.txt"), "--vocab-size", "40", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").split("\n")[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_cli_sparse_embedding_updates_leave_rows_of_unseen_tokens_alone(tmp_path):
    """--sparse-embedding-updates: the token rows of [UNK]/[MASK] (never in a batch) come out
    bit-identical, while plain AdamW's weight decay moves them; the run still learns."""
    from rubert_tf.cli import main

    train, checkpoint = _write_data(str(tmp_path / "data"))
    def token_table(model_dir):  # BertModel ("embeddings...") or a task model ("bert.embeddings...")
        weights = _weights(model_dir)
        return next(weights[k] for k in weights if k.endswith("embeddings.word_embeddings.weight"))

    start = token_table(checkpoint)
    tables = {}
    for name, flags in (("sparse", ["--sparse-embedding-updates"]), ("dense", [])):
        out = str(tmp_path / name)
        assert main(["finetune", "classification", "--model", checkpoint, "--train", train, "--out", out,
                     "--epochs", "2", "--batch-size", "8", "--learning-rate", "3e-3", "--max-length", "16",
                     "--seed", "3", "--no-progress", *flags]) == 0
        with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        assert metrics["sparse_embedding_updates"] is (name == "sparse")
        assert metrics["train_loss_last_epoch"] < metrics["train_loss_first_epoch"]
        tables[name] = token_table(out)
    unseen = [1, 4]  # [UNK], [MASK]
    np.testing.assert_array_equal(tables["sparse"][unseen], start[unseen])
    assert np.abs(tables["dense"][unseen] - start[unseen]).max() > 0
    assert np.abs(tables["sparse"][5:] - start[5:]).max() > 1e-3  # the words' rows trained


# --------------------------------------------------------------------------- kill -9 and --resume

BACKUP_EVERY, KILL_AFTER_BACKUP, STEPS = 3, 6, 12  # 6 batches of 8 per epoch, 2 epochs; step 6 = end of epoch 0


def _cli_args(directory, out, resume=False):
    train, checkpoint = os.path.join(directory, "data", "train.csv"), os.path.join(directory, "data", "checkpoint")
    args = ["finetune", "classification", "--model", checkpoint, "--train", train, "--eval", train, "--out", out,
            "--epochs", "2", "--batch-size", "8", "--learning-rate", "3e-3", "--max-length", "16", "--seed", "3",
            "--backup-every", str(BACKUP_EVERY), "--no-progress"]
    return args + (["--resume"] if resume else [])


def test_finetune_killed_with_sigkill_resumes_with_resume_flag(tmp_path):
    _write_data(str(tmp_path / "data"))
    run, reference = str(tmp_path / "run"), str(tmp_path / "reference")
    reference_proc = subprocess.Popen(_script("cli", tmp_path, reference, 0), env=subprocess_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_script("cli", tmp_path, run, 0.5), env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    backup = os.path.join(run, "backup", f"ckpt-{KILL_AFTER_BACKUP:09d}.json")
    step_file = os.path.join(run, "step.txt")
    deadline = time.time() + TIMEOUT
    while not (os.path.exists(backup) and os.path.exists(step_file)
               and int(open(step_file).read() or 0) >= KILL_AFTER_BACKUP + 1):
        assert victim.poll() is None, "the run to be killed ended early:\n" + victim.communicate()[1][-5000:]
        assert time.time() < deadline, "no backup appeared in time"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    step_at_kill = int(open(step_file).read())
    assert KILL_AFTER_BACKUP < step_at_kill < STEPS
    assert not os.path.exists(os.path.join(run, "metrics.json"))

    # without --resume the interrupted run is not overwritten
    refused = subprocess.run(_script("cli", tmp_path, run, 0, "no-resume"), env=subprocess_env(), capture_output=True,
                             text=True, timeout=TIMEOUT)
    assert refused.returncode == 2 and "--resume" in refused.stderr, refused.stderr[-3000:]

    _, stderr = _finish(subprocess.Popen(_script("cli", tmp_path, run, 0, "resume"), env=subprocess_env(),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), "resumed run")
    _finish(reference_proc, "reference run")
    resumed = json.load(open(os.path.join(run, "metrics.json")))
    uninterrupted = json.load(open(os.path.join(reference, "metrics.json")))
    diff = _max_diff(_weights(run), _weights(reference))
    print(f"killed at step {step_at_kill}; resumed from step {resumed['resumed_from_step']}; "
          f"max |w_resumed - w_uninterrupted| = {diff:.3g}; eval loss {resumed['loss']:.6f} vs "
          f"{uninterrupted['loss']:.6f}")
    assert "resuming from" in stderr
    assert resumed["resumed_from_step"] == KILL_AFTER_BACKUP
    assert step_at_kill - resumed["resumed_from_step"] <= BACKUP_EVERY  # at most one backup interval lost
    assert resumed["optimizer_steps"] == uninterrupted["optimizer_steps"] == STEPS
    assert resumed["loss"] == pytest.approx(uninterrupted["loss"], abs=1e-5)
    assert diff < 1e-5
    assert not os.path.exists(os.path.join(run, "backup"))  # finished: backups removed
    assert os.path.exists(os.path.join(run, "checkpoints", f"ckpt-{STEPS:09d}.json"))


def _script_cli(directory, out, sleep, mode=""):
    import keras
    import tensorflow as tf

    import rubert_tf.training.runner as runner  # finetune's TrainingRun adds the callbacks
    from rubert_tf.cli import main

    tf.config.experimental.enable_op_determinism()
    original = runner.training_callbacks

    def training_callbacks(*args, **kwargs):
        callbacks = original(*args, **kwargs)
        progress = callbacks[0].progress

        class Observe(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                with open(os.path.join(out, "step.tmp"), "w") as f:
                    f.write(str(progress.global_step))
                os.replace(os.path.join(out, "step.tmp"), os.path.join(out, "step.txt"))
                if sleep and progress.global_step >= KILL_AFTER_BACKUP:
                    time.sleep(sleep)

        return callbacks + [Observe()]

    runner.training_callbacks = training_callbacks
    sys.exit(main(_cli_args(directory, out, resume=mode == "resume")))


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if sys.argv[1] == "mirrored":
        _script_mirrored(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "cli":
        _script_cli(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "")
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")
