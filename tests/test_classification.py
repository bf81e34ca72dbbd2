"""Sequence classification end to end: head parity with transformers' BertForSequenceClassification,
fine-tuning on the real RuSentNE-2023 and RuCoLA files (CLI and Python), multi-label, the tf.data
pipeline (padding, bucketing, seeds, cache), bad data, and mixed precision."""

import csv
import io
import json
import logging
import math
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

import reference_models as ref
from rubert_tf.cli import main
from rubert_tf.data.classification import classification_dataset, default_bucket_boundaries, encode_class_labels
from rubert_tf.data.readers import DataError
from rubert_tf.finetune import finetune
from rubert_tf.models.classifier import RuBertClassifier
from rubert_tf.tasks import get_task
from rubert_tf.tasks.classification import classification_metrics
from rubert_tf.tokenizer import RuBertTokenizer

TOLERANCE = 1e-4
SENTIMENT = ["negative", "neutral", "positive"]
RUSENTNE_OPTIONS = {"text_column": "sentence", "text_pair_column": "entity", "label_column": "label"}
RUCOLA_OPTIONS = {"text_column": "sentence", "label_column": "acceptable"}


@pytest.fixture(autouse=True)
def float32_policy():
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="module")
def tokenizer():
    return RuBertTokenizer.from_pretrained(ref.TINY2_DIR)


@pytest.fixture(scope="module")
def rusentne(shared_data):
    return os.path.join(shared_data, "rusentne2023", "train_data.csv")


@pytest.fixture(scope="module")
def rucola(shared_data):
    return os.path.join(shared_data, "rucola")


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def rusentne_rows(path, count):
    """The first `count` examples (sentence, entity, label) of the real file."""
    with open(path, encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    columns = header.split("\t")
    return [dict(zip(columns, row.split("\t"))) for row in rows[:count]]


def ceil8(n):
    return (n + 7) // 8 * 8


# ---- parity with transformers -------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_classifier(tmp_path_factory, rusentne):
    """A random-weight transformers BertForSequenceClassification (small body, rubert-tiny2's vocab,
    3 named labels), saved with save_pretrained, and its logits on real RuSentNE sentence pairs."""
    sizes = dict(ref.SMALL, vocab_size=83828, num_labels=3, id2label=dict(enumerate(SENTIMENT)),
                 label2id={name: i for i, name in enumerate(SENTIMENT)})
    model = ref.torch_model("BertForSequenceClassification", sizes, seed=7)
    directory = ref.save_safetensors(model, str(tmp_path_factory.mktemp("hf_classifier")))
    rows = rusentne_rows(rusentne, 4)
    texts, pairs = [r["sentence"] for r in rows], [r["entity"] for r in rows]
    batch = {k: v.numpy() for k, v in RuBertTokenizer.from_pretrained(directory)(
        texts, pairs, max_length=128, padding="longest").items()}
    assert batch["padding_mask"].sum(1).min() < batch["padding_mask"].shape[1], "the batch must hold padding"
    assert batch["segment_ids"].max() == 1
    with torch.no_grad():
        logits = model(**ref.torch_inputs(batch)).logits.numpy()
    return {"dir": directory, "model": model, "batch": batch, "logits": logits, "texts": texts, "pairs": pairs}


def test_parity_with_transformers_and_label_names(hf_classifier, tmp_path):
    clf = RuBertClassifier.from_pretrained(hf_classifier["dir"])
    assert clf.labels == SENTIMENT and not clf.multi_label
    logits = np.asarray(clf(hf_classifier["batch"], training=False)["logits"])
    diff = float(np.abs(logits - hf_classifier["logits"]).max())
    print(f"\nmax abs logits diff vs transformers: {diff:.2e} (logit scale {np.abs(logits).max():.2f})")
    assert diff <= TOLERANCE
    assert np.abs(hf_classifier["logits"]).max() > 0.5, "the head must produce O(1) logits for a real check"
    # classify() on raw strings: same tokenization, same argmax, names from config.json.
    results = clf.classify(hf_classifier["texts"], hf_classifier["pairs"], max_length=128)
    assert [r["label"] for r in results] == [SENTIMENT[i] for i in hf_classifier["logits"].argmax(-1)]

    # save_pretrained -> transformers loads the same model, labels included.
    clf.save_pretrained(str(tmp_path))
    back = transformers.BertForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    assert back.config.id2label == dict(enumerate(SENTIMENT))
    assert back.config.label2id == {name: i for i, name in enumerate(SENTIMENT)}
    with torch.no_grad():
        again = back(**ref.torch_inputs(hf_classifier["batch"])).logits.numpy()
    assert float(np.abs(again - hf_classifier["logits"]).max()) <= TOLERANCE


def test_warm_start_head_rules(hf_classifier, caplog):
    reference = hf_classifier["logits"]
    # The same labels in another order: the checkpoint's order is kept, so the head is loaded as is.
    same = RuBertClassifier.from_pretrained(hf_classifier["dir"], labels=["positive", "negative", "neutral"])
    assert same.labels == SENTIMENT
    assert np.abs(np.asarray(same(hf_classifier["batch"])["logits"]) - reference).max() <= TOLERANCE
    # Other labels: the encoder is warm-started, the head starts fresh (and says so).
    with caplog.at_level(logging.WARNING):
        other = RuBertClassifier.from_pretrained(hf_classifier["dir"], labels=["0", "1"])
    assert other.labels == ["0", "1"] and "starts from random weights" in caplog.text
    pooled = other.encoder(hf_classifier["batch"])["pooled_output"]
    with torch.no_grad():
        hf_pooled = hf_classifier["model"].bert(**ref.torch_inputs(hf_classifier["batch"])).pooler_output.numpy()
    assert np.abs(np.asarray(pooled) - hf_pooled).max() <= TOLERANCE


def test_multi_label_problem_type_round_trips_with_transformers(hf_classifier, tmp_path):
    model = hf_classifier["model"]
    model.config.problem_type = "multi_label_classification"
    try:
        model.save_pretrained(str(tmp_path))
    finally:
        model.config.problem_type = None
    ref.copy_vocab(str(tmp_path), 83828)
    clf = RuBertClassifier.from_pretrained(str(tmp_path))
    assert clf.multi_label and isinstance(clf.default_loss(), keras.losses.BinaryCrossentropy)
    result = clf.classify(hf_classifier["texts"][0], hf_classifier["pairs"][0], max_length=128)
    sigmoid = 1 / (1 + np.exp(-hf_classifier["logits"][0]))
    assert [result["probabilities"][name] for name in SENTIMENT] == pytest.approx(sigmoid, abs=1e-4)
    assert result["labels"] == [name for name, p in zip(SENTIMENT, sigmoid) if p >= 0.5]


# ---- RuSentNE-2023: the real file, CLI fine-tune / evaluate / predict ---------------------------

def test_reads_the_real_rusentne_file(rusentne):
    examples = get_task("classification").read(rusentne, RUSENTNE_OPTIONS)
    assert len(examples) == 6637
    first = rusentne_rows(rusentne, 1)[0]
    assert examples[0]["text"] == first["sentence"] and examples[0]["text_pair"] == first["entity"]
    assert examples[0]["_line"] == 2 and examples[-1]["_line"] == 6638
    assert {e["label"] for e in examples} == {"-1", "0", "1"}
    assert get_task("classification").model_kwargs(examples, RUSENTNE_OPTIONS) == {
        "labels": ["-1", "0", "1"], "multi_label": False}


@pytest.fixture(scope="module")
def rusentne_run(tmp_path_factory, rusentne, tiny_checkpoint):
    """`rubert-tf finetune classification` (main() in-process) on 480 RuSentNE examples,
    evaluated on 200 others; entity as the text pair."""
    root = tmp_path_factory.mktemp("rusentne")
    with open(rusentne, encoding="utf-8") as f:
        lines = f.read().splitlines()
    train = write_lines(root / "train.csv", lines[:481])
    evaluation = write_lines(root / "eval.csv", [lines[0]] + lines[-200:])
    out = str(root / "model")
    flags = ["--text-column", "sentence", "--text-pair-column", "entity", "--label-column", "label"]
    code = main(["finetune", "classification", "--model", tiny_checkpoint, "--train", train, "--eval", evaluation,
                 "--out", out, "--epochs", "3", "--max-steps", "15", "--batch-size", "16",
                 "--learning-rate", "1e-3", "--seed", "3", "--no-progress", *flags])
    assert code == 0
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {"train": train, "eval": evaluation, "out": out, "flags": flags, "metrics": metrics}


def test_rusentne_finetune_loss_falls(rusentne_run, tiny_checkpoint):
    metrics = rusentne_run["metrics"]
    print(f"\nRuSentNE metrics: {json.dumps(metrics)}")
    assert metrics["train_loss_last_epoch"] < metrics["train_loss_first_epoch"]
    # Before/after on the training subset: the warm-started (untrained head) model vs the saved one.
    task = get_task("classification")
    examples = task.read(rusentne_run["train"], RUSENTNE_OPTIONS)
    keras.utils.set_random_seed(3)
    before = RuBertClassifier.from_pretrained(tiny_checkpoint, labels=["-1", "0", "1"])
    after = RuBertClassifier.from_pretrained(rusentne_run["out"])
    loss_before = task.evaluate(before, examples, {"max_length": 128}, 64)["loss"]
    loss_after = task.evaluate(after, examples, {"max_length": 128}, 64)["loss"]
    print(f"RuSentNE train-subset loss before {loss_before:.4f} -> after {loss_after:.4f}")
    assert loss_after < loss_before - 0.05


def test_rusentne_metrics_agree_with_scikit_learn(rusentne_run):
    metrics = rusentne_run["metrics"]
    assert {"accuracy", "macro_f1", "macro_f1_pos_neg"} <= set(metrics) and "mcc" not in metrics
    model = RuBertClassifier.from_pretrained(rusentne_run["out"])
    assert model.labels == ["-1", "0", "1"]  # the training labels travel with the model
    examples = get_task("classification").read(rusentne_run["eval"], RUSENTNE_OPTIONS)
    predicted = [r["label"] for r in model.classify([e["text"] for e in examples],
                                                    [e["text_pair"] for e in examples], max_length=128)]
    gold = [e["label"] for e in examples]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted), abs=1e-9)
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(gold, predicted, labels=["-1", "0", "1"], average="macro", zero_division=0), abs=1e-9)
    assert metrics["macro_f1_pos_neg"] == pytest.approx(
        f1_score(gold, predicted, labels=["-1", "1"], average="macro", zero_division=0), abs=1e-9)


def test_rusentne_evaluate_and_predict_commands(rusentne_run, rusentne, capsys, monkeypatch):
    out = rusentne_run["out"]
    # The columns used at training travel with the model: no --text-column / --text-pair-column again.
    assert main(["evaluate", "classification", "--model", out, "--eval", rusentne_run["eval"]]) == 0
    scores = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "macro_f1", "macro_f1_pos_neg"):
        assert scores[key] == pytest.approx(rusentne_run["metrics"][key], abs=1e-9)

    rows = rusentne_rows(rusentne, 3)
    lines = [json.dumps({"text": r["sentence"], "text_pair": r["entity"]}, ensure_ascii=False) for r in rows]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["predict", "classification", "--model", out]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 3
    model = RuBertClassifier.from_pretrained(out)
    expected = model.classify([r["sentence"] for r in rows], [r["entity"] for r in rows])
    for result, row, want in zip(results, rows, expected):
        assert result["text"] == row["sentence"] and result["text_pair"] == row["entity"]
        assert result["label"] == want["label"] and result["label"] in ("-1", "0", "1")
        assert set(result["probabilities"]) == {"-1", "0", "1"}
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # A pair model asked about a single text is told so, not answered silently.
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines[0] + "\nПросто текст без пары.\n"))
    assert main(["predict", "classification", "--model", out]) == 2
    assert "fine-tuned on text pairs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="fine-tuned on text pairs"):
        model.classify("Просто текст без пары.")


def test_pair_model_exports_a_pair_signature_that_answers_as_eager(rusentne_run, rusentne, tmp_path, capsys):
    """`rubert-tf export classification` of a pair model without --text-pair: the settings stored at
    fine-tuning give a text + text_pair signature; --no-text-pair is refused; the served answers on
    real RuSentNE rows equal classify()'s."""
    import tensorflow as tf

    out, base = rusentne_run["out"], str(tmp_path / "rusentne")
    assert main(["export", "classification", "--model", out, "--out", base, "--no-warmup"]) == 0
    assert main(["export", "classification", "--model", out, "--out", base, "--no-text-pair"]) == 2
    assert "fine-tuned on text pairs" in capsys.readouterr().err
    served = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
    assert sorted(served.structured_input_signature[1]) == ["text", "text_pair"]
    rows = rusentne_rows(rusentne, 40)
    texts, pairs = [r["sentence"] for r in rows], [r["entity"] for r in rows]
    outputs = served(text=tf.constant(texts), text_pair=tf.constant(pairs))
    eager = RuBertClassifier.from_pretrained(out).classify(texts, pairs, batch_size=len(texts))
    assert [o.decode() for o in outputs["label"].numpy()] == [e["label"] for e in eager]
    assert outputs["label_id"].numpy().tolist() == [e["label_id"] for e in eager]
    probabilities = [[e["probabilities"][name] for name in ("-1", "0", "1")] for e in eager]
    difference = np.abs(outputs["probabilities"].numpy() - np.array(probabilities)).max()
    print(f"\nclassification served vs eager on {len(rows)} RuSentNE pairs: labels equal, max |dp| = {difference:.2e}")
    assert difference == 0.0


def test_label_map_names_raw_labels(rusentne, tmp_path):
    """-1/0/1 data with --labels negative,neutral,positive alone is refused with a hint; --label-map names them."""
    task = get_task("classification")
    with open(rusentne, encoding="utf-8") as f:
        path = write_lines(tmp_path / "raw.tsv", f.read().splitlines()[:41])
    names = {"labels": "negative,neutral,positive", **RUSENTNE_OPTIONS}
    with pytest.raises(DataError, match="unknown label"):
        task.read(path, names)
    mapped = {"label_map": "-1=negative,0=neutral,1=positive", **RUSENTNE_OPTIONS}
    examples = task.read(path, mapped)
    raw = [r["label"] for r in rusentne_rows(rusentne, 40)]
    assert [e["label"] for e in examples] == [{"-1": "negative", "0": "neutral", "1": "positive"}[r] for r in raw]
    assert task.model_kwargs(examples, mapped)["labels"] == ["negative", "neutral", "positive"]
    with pytest.raises(DataError, match="has no name in the label map"):
        task.read(path, {"label_map": "-1=negative,1=positive", **RUSENTNE_OPTIONS})
    with pytest.raises(ValueError, match="RAW=NAME"):
        task.read(path, {"label_map": "-1:negative", **RUSENTNE_OPTIONS})


def test_metrics_on_mixed_predictions_agree_with_scikit_learn(hf_classifier, rusentne, rucola, tmp_path):
    """The briefly fine-tuned tiny models above predict one class; these random transformers heads with
    O(1) logits predict several, so every term of the metrics is exercised."""
    task = get_task("classification")
    names = {"-1": "negative", "0": "neutral", "1": "positive"}
    with open(rusentne, encoding="utf-8") as f:
        header, *lines = f.read().splitlines()[:301]
    path = write_lines(tmp_path / "named.tsv", [header] + [
        "\t".join(line.split("\t")[:-1] + [names[line.split("\t")[-1]]]) for line in lines])
    examples = task.read(path, RUSENTNE_OPTIONS)
    model = RuBertClassifier.from_pretrained(hf_classifier["dir"])
    metrics = task.evaluate(model, examples, {"max_length": 128}, 32)
    predicted = [r["label"] for r in model.classify([e["text"] for e in examples], [e["text_pair"] for e in examples],
                                                    max_length=128)]
    gold = [e["label"] for e in examples]
    print(f"\n3-class random head: {metrics}, predicted {sorted(set(predicted))}")
    assert len(set(predicted)) >= 2
    assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted), abs=1e-9)
    assert metrics["macro_f1"] == pytest.approx(f1_score(gold, predicted, labels=SENTIMENT, average="macro",
                                                         zero_division=0), abs=1e-9)
    assert metrics["macro_f1_pos_neg"] == pytest.approx(f1_score(
        gold, predicted, labels=["negative", "positive"], average="macro", zero_division=0), abs=1e-9)

    sizes = dict(ref.SMALL, vocab_size=83828, num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})
    binary_dir = ref.save_safetensors(ref.torch_model("BertForSequenceClassification", sizes, seed=8),
                                      str(tmp_path / "binary"))
    binary = RuBertClassifier.from_pretrained(binary_dir)
    examples = task.read(os.path.join(rucola, "in_domain_dev.csv"), RUCOLA_OPTIONS)[:300]
    metrics = task.evaluate(binary, examples, {"max_length": 128}, 32)
    predicted = [int(r["label"]) for r in binary.classify([e["text"] for e in examples], max_length=128)]
    gold = [int(e["label"]) for e in examples]
    print(f"binary random head: {metrics}")
    assert len(set(predicted)) == 2 and metrics["mcc"] != 0
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(gold, predicted), abs=1e-9)

    # Multi-label scores: exact-match accuracy and the mean of per-label F1, as scikit-learn.
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 2, (50, 4)), rng.integers(0, 2, (50, 4))
    y_true[:, 3] = y_pred[:, 3] = 0  # a label nobody has: F1 0, as scikit-learn's zero_division=0
    scores = classification_metrics(["a", "b", "c", "d"], y_true, y_pred, multi_label=True)
    assert scores["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert scores["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))


# ---- RuCoLA: binary, MCC ------------------------------------------------------------------------

def test_rucola_finetune_reports_mcc_like_scikit_learn(rucola, tiny_checkpoint, tmp_path):
    with open(os.path.join(rucola, "in_domain_train.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    train = tmp_path / "train.csv"
    with open(train, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows[:401])
    dev = os.path.join(rucola, "in_domain_dev.csv")
    metrics = finetune("classification", model=tiny_checkpoint, train=str(train), eval=dev, out=str(tmp_path / "out"),
                       options=RUCOLA_OPTIONS, epochs=2, max_steps=10, batch_size=32, learning_rate=1e-3, seed=1,
                       verbose=0)
    print(f"\nRuCoLA metrics: {json.dumps(metrics)}")
    assert {"accuracy", "macro_f1", "mcc"} <= set(metrics) and "macro_f1_pos_neg" not in metrics
    assert metrics["examples"] == 983 and math.isfinite(metrics["loss"])
    assert metrics["train_loss_last_epoch"] < metrics["train_loss_first_epoch"]
    model = RuBertClassifier.from_pretrained(str(tmp_path / "out"))
    assert model.labels == ["0", "1"]
    examples = get_task("classification").read(dev, RUCOLA_OPTIONS)
    predicted = [int(r["label"]) for r in model.classify([e["text"] for e in examples], max_length=128)]
    gold = [int(e["label"]) for e in examples]
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(gold, predicted), abs=1e-9)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted), abs=1e-9)
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(gold, predicted, labels=[0, 1], average="macro", zero_division=0), abs=1e-9)


# ---- multi-label ----------------------------------------------------------------------------------

MULTI_LABEL = [
    ("Сборная России выиграла матч со счётом 3:1.", ["спорт"]),
    ("Госдума приняла закон о выборах.", ["политика"]),
    ("Курс рубля упал после решения Центробанка.", ["экономика"]),
    ("Правительство повысило налоги для бизнеса.", ["политика", "экономика"]),
    ("Футбольный клуб получил от спонсора миллиард рублей.", ["спорт", "экономика"]),
    ("Депутаты обсудили подготовку к Олимпиаде.", ["политика", "спорт"]),
    ("В парке распустились первые цветы.", []),
    ("Министр спорта объявил о бюджете сборной на выборах.", ["политика", "спорт", "экономика"]),
]


def test_multi_label_overfits_a_small_jsonl(tiny_checkpoint, tmp_path):
    train = write_lines(tmp_path / "topics.jsonl", [json.dumps({"text": t, "topics": y}, ensure_ascii=False)
                                                    for t, y in MULTI_LABEL])
    out = str(tmp_path / "out")
    metrics = finetune("classification", model=tiny_checkpoint, train=train, eval=train, out=out,
                       options={"label_column": "topics", "multi_label": True}, epochs=120, batch_size=4,
                       learning_rate=5e-3, warmup_ratio=0.05, seed=0, verbose=0)
    print(f"\nmulti-label metrics: {json.dumps(metrics)}")
    assert metrics["train_loss_last_epoch"] < 0.25 * metrics["train_loss_first_epoch"]
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    model = RuBertClassifier.from_pretrained(out)
    assert model.multi_label and model.labels == ["политика", "спорт", "экономика"]
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["problem_type"] == "multi_label_classification"
    results = model.classify([t for t, _ in MULTI_LABEL])
    assert [sorted(r["labels"]) for r in results] == [sorted(y) for _, y in MULTI_LABEL]
    # Sigmoids: independent per label, not a distribution.
    assert any(abs(sum(r["probabilities"].values()) - 1) > 0.1 for r in results)


def test_multi_label_delimited_cells_and_multi_hot_batches(tokenizer, tmp_path):
    path = write_lines(tmp_path / "topics.tsv", ["text\ttopics", "Матч и налоги\tспорт|экономика", "Цветы\t",
                                                 "Выборы\tполитика"])
    task = get_task("classification")
    options = {"label_column": "topics", "multi_label": True, "label_delimiter": "|"}
    examples = task.read(path, options)
    assert [e["label"] for e in examples] == [["спорт", "экономика"], [], ["политика"]]
    kwargs = task.model_kwargs(examples, options)
    assert kwargs == {"labels": ["политика", "спорт", "экономика"], "multi_label": True}
    labels = encode_class_labels(examples, kwargs["labels"], multi_label=True)
    dataset = classification_dataset(tokenizer, [e["text"] for e in examples], labels=labels, batch_size=8)
    features, targets = next(iter(dataset))
    # Multi-hot targets keep their width (3), they are not padded like the tokens (8).
    assert targets.shape == (3, 3) and features["token_ids"].shape[1] == 8
    np.testing.assert_array_equal(targets.numpy(), [[0, 1, 1], [0, 0, 0], [1, 0, 0]])


# ---- the pipeline ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rucola_dev(rucola):
    return get_task("classification").read(os.path.join(rucola, "in_domain_dev.csv"), RUCOLA_OPTIONS)


def test_batches_are_padded_to_the_longest_row_rounded_to_8(tokenizer, rusentne):
    rows = rusentne_rows(rusentne, 40)
    texts, pairs = [r["sentence"] for r in rows], [r["entity"] for r in rows]
    dataset = classification_dataset(tokenizer, texts, pairs, labels=np.arange(40) % 3, batch_size=8,
                                     max_length=256)
    widths, seen = [], 0
    for features, labels in dataset:
        lengths = features["padding_mask"].numpy().sum(1)
        width = features["token_ids"].shape[1]
        widths.append(width)
        assert width % 8 == 0 and width == ceil8(lengths.max()) and width < 256
        assert features["token_ids"].dtype == tf.int32 and labels.dtype == tf.int32
        # Each row is exactly the tokenizer's output for that example alone.
        for row, length in enumerate(lengths):
            alone = tokenizer([texts[seen + row]], [pairs[seen + row]], max_length=256, padding="longest")
            for key in ("token_ids", "segment_ids", "padding_mask"):
                np.testing.assert_array_equal(features[key][row, :length], alone[key][0])
                assert not features[key][row, length:].numpy().any()
        seen += len(lengths)
    assert seen == 40 and len(set(widths)) > 1
    # max_length still truncates.
    short = classification_dataset(tokenizer, texts, pairs, batch_size=40, max_length=20, cache=False)
    assert next(iter(short))["token_ids"].shape == (40, 24)
    assert next(iter(short))["padding_mask"].numpy().sum(1).max() == 20


def test_length_bucketing_groups_similar_lengths(tokenizer, rucola_dev):
    texts = [e["text"] for e in rucola_dev[:400]]
    boundaries = default_bucket_boundaries(128)
    assert boundaries == [17, 33, 65]
    dataset = classification_dataset(tokenizer, texts, labels=np.zeros(len(texts), np.int32), batch_size=16,
                                     max_length=128, shuffle=True, seed=0, bucket_boundaries="auto")
    widths, padding_bucketed, total = set(), 0, 0
    edges = [0] + boundaries + [10**9]
    for features, _ in dataset:
        lengths = features["padding_mask"].numpy().sum(1)
        width = features["token_ids"].shape[1]
        bucket = [i for i in range(len(edges) - 1) if edges[i] <= lengths.max() < edges[i + 1]][0]
        assert all(edges[bucket] <= n < edges[bucket + 1] for n in lengths), "a batch mixes buckets"
        assert width == ceil8(lengths.max())
        widths.add(width)
        padding_bucketed += width * len(lengths) - lengths.sum()
        total += len(lengths)
    assert total == len(texts) and len(widths) >= 3
    plain = classification_dataset(tokenizer, texts, labels=np.zeros(len(texts), np.int32), batch_size=16,
                                   max_length=128, shuffle=True, seed=0)
    padding_plain = sum(int(f["token_ids"].shape[1] * f["token_ids"].shape[0] - f["padding_mask"].numpy().sum())
                        for f, _ in plain)
    print(f"\npadding tokens on RuCoLA dev: {padding_bucketed} bucketed vs {padding_plain} unbucketed")
    assert padding_bucketed < padding_plain / 2


def _epoch(dataset):
    """One pass as a list of batches, each a tuple of its rows' first word-piece ids and the width."""
    return [tuple(f["token_ids"][:, 1].numpy()) + (int(f["token_ids"].shape[1]),) for f, _ in dataset]


def test_shuffling_is_deterministic_with_a_seed_with_and_without_cache(tokenizer, rucola_dev):
    texts = [e["text"] for e in rucola_dev[:160]]
    labels = np.zeros(len(texts), np.int32)

    def make(seed, cache=True, bucket_boundaries="auto"):
        return classification_dataset(tokenizer, texts, labels=labels, batch_size=16, max_length=128,
                                      shuffle=True, seed=seed, cache=cache, bucket_boundaries=bucket_boundaries)

    cached = make(5)
    epoch1, epoch2 = _epoch(cached), _epoch(cached)
    rows = sorted(i for batch in epoch1 for i in batch[:-1])
    assert rows == sorted(i for batch in epoch2 for i in batch[:-1])  # the same examples every epoch
    assert epoch1 != epoch2  # reshuffled each epoch
    # The same seed repeats the same epochs, with or without cache; another seed does not.
    again = make(5, cache=False)
    assert _epoch(again) == epoch1 and _epoch(again) == epoch2
    assert _epoch(make(6)) != epoch1
    # Without bucketing too.
    plain = _epoch(make(5, bucket_boundaries=None))
    assert plain == _epoch(make(5, cache=False, bucket_boundaries=None))
    assert plain != _epoch(make(6, bucket_boundaries=None))


def test_evaluation_batches_keep_the_file_order(tokenizer, rucola_dev, tiny_checkpoint):
    task = get_task("classification")
    model = RuBertClassifier.from_pretrained(tiny_checkpoint, labels=["0", "1"])
    examples = rucola_dev[:37]
    outputs, _ = task.outputs(model, examples, {"max_length": 128}, 8)  # the serving module, 8 at a time
    direct = np.asarray(model(tokenizer([e["text"] for e in examples], max_length=128, padding="longest"))["logits"])
    direct = np.exp(direct) / np.exp(direct).sum(-1, keepdims=True)
    assert outputs["probabilities"].shape == (37, 2) and np.abs(outputs["probabilities"] - direct).max() < 1e-5
    assert outputs["label_id"].tolist() == direct.argmax(-1).tolist()


# ---- bad data -------------------------------------------------------------------------------------

def test_unknown_label_names_file_and_line(tmp_path):
    task = get_task("classification")
    path = write_lines(tmp_path / "bad.csv", ["text,label", "хорошо,pos", "плохо,neg", "так себе,maybe"])
    with pytest.raises(DataError, match=r"bad\.csv:4: unknown label 'maybe'.*\['pos', 'neg'\]"):
        task.read(path, {"labels": "pos,neg"})
    # Inferred labels: unknown ones surface when data meets a model with other labels.
    examples = task.read(path, {})
    with pytest.raises(DataError, match=r"bad\.csv:3: unknown label 'neg'"):
        encode_class_labels(examples, ["pos", "maybe"])


def test_missing_column_names_column_file_and_line(tmp_path, capsys, tiny_checkpoint):
    task = get_task("classification")
    path = write_lines(tmp_path / "data.csv", ["text,label", "хорошо,1"])
    with pytest.raises(DataError, match=r"data\.csv:2: missing column 'sentence'"):
        task.read(path, {"text_column": "sentence"})
    jsonl = write_lines(tmp_path / "data.jsonl", ['{"text": "a", "label": "x"}', '{"text": "b"}'])
    with pytest.raises(DataError, match=r"data\.jsonl:2: missing column 'label'"):
        task.read(jsonl, {})
    # Through the CLI: exit code 2 and the message on stderr.
    assert main(["finetune", "classification", "--model", tiny_checkpoint, "--train", path, "--out",
                 str(tmp_path / "out"), "--text-column", "sentence"]) == 2
    assert "data.csv:2: missing column 'sentence'" in capsys.readouterr().err


def test_empty_files_and_broken_jsonl(tmp_path):
    task = get_task("classification")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.csv: empty file"):
        task.read(str(empty), {})
    with pytest.raises(DataError, match=r"header\.csv: no examples"):
        task.read(write_lines(tmp_path / "header.csv", ["text,label"]), {})
    broken = write_lines(tmp_path / "broken.jsonl", ['{"text": "a", "label": "x"}', '{"text": "b", "label": '])
    with pytest.raises(DataError, match=r"broken\.jsonl:2: not valid JSON"):
        task.read(broken, {})
    listed = write_lines(tmp_path / "listed.jsonl", ['{"text": "a", "label": ["x", "y"]}'])
    with pytest.raises(DataError, match=r"listed\.jsonl:1: .*--multi-label"):
        task.read(listed, {})
    one = write_lines(tmp_path / "one.csv", ["text,label", "a,x", "b,x"])
    with pytest.raises(DataError, match="only one label"):
        task.model_kwargs(task.read(one, {}), {})


# ---- mixed precision ------------------------------------------------------------------------------

def test_bf16_finetune_gives_finite_loss_and_restores_float32(tiny_checkpoint, tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps({"text": t, "label": "да" if y else "нет"},
                                                             ensure_ascii=False) for t, y in MULTI_LABEL])
    metrics = finetune("classification", model=tiny_checkpoint, train=path, eval=path, out=str(tmp_path / "out"),
                       epochs=2, batch_size=4, learning_rate=1e-3, mixed_precision="bf16", verbose=0)
    print(f"\nbf16 metrics: {json.dumps(metrics)}")
    assert metrics["mixed_precision"] == "mixed_bfloat16"
    assert math.isfinite(metrics["train_loss_first_epoch"]) and math.isfinite(metrics["train_loss_last_epoch"])
    assert math.isfinite(metrics["loss"])
    assert keras.config.dtype_policy().name == "float32"
    assert RuBertClassifier.from_pretrained(str(tmp_path / "out")).labels == ["да", "нет"]
