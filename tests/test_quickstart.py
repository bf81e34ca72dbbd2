"""`rubert-tf quickstart`, the README's main job, end to end in a subprocess with the short CI budget:
sample data -> vocab -> pretraining -> classifier -> export -> `rubert-tf serve` -> one REST request."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rubert_tf.cli import main
from rubert_tf.sample_data import SENTIMENT_LABELS, sentiment_examples

TIMEOUT = 900


def quickstart(*args, cwd):
    """Run `rubert-tf quickstart ARGS` as a user would (a fresh process); returns (code, stdout, stderr)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "rubert_tf.cli", "quickstart", "--no-progress", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT)
    return done.returncode, done.stdout, done.stderr


def summary_field(stdout, key):
    """The value of `key:` in the printed summary."""
    prefix = f"{key}:"
    line = next((line for line in stdout.splitlines() if line.startswith(prefix)), None)
    assert line is not None, f"no {prefix!r} line in:\n{stdout}"
    return line[len(prefix):].strip()


def assert_server_stopped(stdout):
    server = summary_field(stdout, "server")
    assert server.startswith("rubert-tf serve ") and "--rest_api_host=127.0.0.1" in server
    pid = int(server.split("(pid ")[1].split(",")[0])
    assert "stopped, exit code 0" in server
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    code, out, err = quickstart("--fast", "--out", str(root / "savedmodels"), cwd=root)
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err[-5000:]}"
    return root, out


def test_quickstart_trains_exports_serves_and_answers_a_rest_request(sample_run):
    root, out = sample_run
    version = root / "savedmodels" / "sentiment" / "1"
    assert (version / "saved_model.pb").is_file()
    assert summary_field(out, "export") == f"{version} (version 1)"
    assert summary_field(out, "vocab").startswith("2000 WordPiece tokens")
    pretraining = summary_field(out, "pretraining")
    assert "held-out MLM loss" in pretraining
    summary = json.load(open(root / "savedmodels" / ".quickstart" / "summary.json", encoding="utf-8"))
    assert summary["mlm_loss_after"] < summary["mlm_loss_before"]
    assert summary["labels"] == list(SENTIMENT_LABELS)
    assert 0.0 <= summary["accuracy"] <= 1.0 and "macro-F1" in summary_field(out, "classifier")

    request = json.loads(summary_field(out, "request_json"))
    assert summary_field(out, "request").startswith("POST http://127.0.0.1:")
    assert summary_field(out, "request").endswith("/v1/models/sentiment/versions/1:predict")
    response = json.loads(summary_field(out, "response_json"))
    (prediction,) = response["predictions"]
    assert prediction["label"] in SENTIMENT_LABELS
    assert prediction["label_id"] == SENTIMENT_LABELS.index(prediction["label"])
    assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert len(request["instances"]) == 1
    assert_server_stopped(out)


def test_the_quickstart_classifier_is_a_checkpoint_transformers_reads_with_the_served_answer(sample_run):
    """The fine-tuned model in the work folder is a real HF checkpoint: transformers tokenizes the request
    as our in-graph tokenizer did and gives the probabilities the SavedModel served over REST."""
    import torch
    import transformers

    root, out = sample_run
    model_dir = root / "savedmodels" / ".quickstart" / "classifier"
    text = json.loads(summary_field(out, "request_json"))["instances"][0]
    served = json.loads(summary_field(out, "response_json"))["predictions"][0]
    hf = transformers.BertForSequenceClassification.from_pretrained(model_dir).eval()
    hf_tok = transformers.BertTokenizerFast.from_pretrained(model_dir)
    assert [hf.config.id2label[i] for i in range(3)] == list(SENTIMENT_LABELS)
    with torch.no_grad():
        probabilities = torch.softmax(hf(**hf_tok([text], return_tensors="pt")).logits, -1)[0].numpy()
    np.testing.assert_allclose(served["probabilities"], probabilities, atol=1e-4)
    assert hf.config.id2label[int(probabilities.argmax())] == served["label"]


def test_second_run_on_user_csv_from_a_checkpoint_exports_version_2_and_keeps_version_1(sample_run, tmp_path):
    """--data (own column names), --model (skips vocab and pretraining), --name: the next version, not a clobber."""
    root, _ = sample_run
    checkpoint = tmp_path / "checkpoint"  # the first run's pretrained model; its work folder is replaced per run
    os.rename(root / "savedmodels" / ".quickstart" / "pretrained", checkpoint)
    user_csv = tmp_path / "reviews.csv"
    rows = [(text, {"positive": "хорошо", "negative": "плохо"}[label])
            for text, label in sentiment_examples(per_label=20, seed=7) if label != "neutral"]
    with open(user_csv, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("review", "verdict"), *rows])
    first_version = root / "savedmodels" / "sentiment" / "1"
    before = sorted(os.listdir(first_version))

    code, out, err = quickstart("--fast", "--out", str(root / "savedmodels"), "--name", "sentiment",
                                "--work-dir", str(tmp_path / "work"), "--model", str(checkpoint),
                                "--data", str(user_csv), "--text-column", "review", "--label-column", "verdict",
                                cwd=tmp_path)
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err[-5000:]}"
    assert "[2/4]" in out and "pretraining" not in out.split("== rubert-tf quickstart: summary ==")[1]
    assert summary_field(out, "data").startswith(f"{user_csv}: 32 train / 8 eval examples")
    assert (root / "savedmodels" / "sentiment" / "2" / "saved_model.pb").is_file()
    assert sorted(os.listdir(first_version)) == before  # version 1 untouched
    assert summary_field(out, "request").endswith("/v1/models/sentiment/versions/2:predict")
    (prediction,) = json.loads(summary_field(out, "response_json"))["predictions"]
    assert prediction["label"] in ("плохо", "хорошо")
    assert_server_stopped(out)


def test_a_missing_data_file_is_a_clear_error_before_any_work(tmp_path, capsys):
    missing = tmp_path / "no_such_reviews.csv"
    assert main(["quickstart", "--fast", "--out", str(tmp_path / "savedmodels"), "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"--data {missing}: no such file" in err and err.startswith("rubert-tf quickstart: error:")
    assert not (tmp_path / "savedmodels").exists()


def test_a_data_file_without_the_label_column_names_the_file(tmp_path, capsys):
    bad = tmp_path / "reviews.csv"
    bad.write_text("text,stars\nОтличный фильм,5\n", encoding="utf-8")
    assert main(["quickstart", "--fast", "--out", str(tmp_path / "savedmodels"), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "label" in err
    assert not (tmp_path / "savedmodels").exists()


def test_sample_data_is_varied_labelled_and_keeps_test_sentences_out_of_the_corpus(tmp_path):
    from rubert_tf.data.readers import read_conll, read_table
    from rubert_tf.sample_data import write_sample_data

    paths = write_sample_data(str(tmp_path))
    train = read_table(paths["sentiment_train"], {"text": "text", "label": "label"})
    test = read_table(paths["sentiment_test"], {"text": "text", "label": "label"})
    assert (len(train), len(test)) == (480, 120)
    assert {row["label"] for row in test} == set(SENTIMENT_LABELS)
    assert len({row["text"] for row in train + test}) == 600
    ner = read_conll(paths["ner_train"]) + read_conll(paths["ner_test"])  # strict BIO
    assert len(ner) == 400
    assert {tag[2:] for sentence in ner for tag in sentence["tags"] if tag != "O"} == {"PER", "ORG", "LOC"}
    corpus = open(paths["corpus"], encoding="utf-8").read().splitlines()
    assert len(corpus) > 3000 and not {row["text"] for row in test} & set(corpus)


def test_the_server_is_stopped_when_the_request_fails(tmp_path):
    """No version to serve: the REST request fails (404), and the server process is gone all the same."""
    from rubert_tf.quickstart import serve_and_request
    from rubert_tf.serving import ServingError

    (tmp_path / "empty").mkdir()
    started = []
    with pytest.raises(ServingError) as error:
        serve_and_request("missing", str(tmp_path / "empty"), 1, "текст", str(tmp_path / "serve.log"), timeout=300,
                          on_start=started.append)
    assert error.value.status_code == 404
    (server,) = started
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.process.pid, 0)
