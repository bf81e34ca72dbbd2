"""LiteRT deploy folders (rt.export_litert / `rubert-tf export --format tflite [--quantize int8]`): the
runner answers raw text as the SavedModel signature does (float32: to float rounding; int8: within the
stated quantization tolerance), for every encoder task, and from the CLI (export, evaluate, predict)."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import rubert_tf as rt
from rubert_tf.export import build_serving_module
from rubert_tf.export.litert import LiteRTModel, convert, is_litert_folder

from conftest import SMALL_BODY, TINY2_DIR
from processes import subprocess_env

pytestmark = pytest.mark.usefixtures("float32_policy")

TEXTS = ["Москва — столица России.", "Отличный фильм, всем советую!", "Плохо.", "",
         "Владимир Путин посетил Санкт-Петербург и встретился с губернатором Бегловым в Смольном."]


@pytest.fixture(scope="module")
def tokenizer():
    return rt.RuBertTokenizer.from_pretrained(TINY2_DIR)


def small_config(tokenizer, **extra):
    config = rt.RuBertConfig(vocab_size=tokenizer.vocab_size, **SMALL_BODY)
    config.extra.update(extra)
    return config


def served(model, tokenizer, **inputs):
    return build_serving_module(model, tokenizer, {})("serving_default", **inputs)


def assert_same_outputs(lite, eager, float_tolerance):
    assert sorted(lite) == sorted(eager)
    for key, value in eager.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(lite[key], value, atol=float_tolerance, err_msg=key)
        else:
            np.testing.assert_array_equal(lite[key], value, err_msg=key)


def test_classifier_float32_and_int8_answer_as_the_saved_model_signature(tokenizer, tmp_path):
    keras.utils.set_random_seed(3)
    model = rt.RuBertClassifier(small_config(tokenizer), labels=["negative", "neutral", "positive"])
    eager = served(model, tokenizer, text=TEXTS)
    folder = rt.export_litert(model, tmp_path / "float", tokenizer=tokenizer)
    assert is_litert_folder(folder)
    lite = LiteRTModel.load(folder)
    assert lite.labels == ["negative", "neutral", "positive"] and lite.task_name == "classification"
    assert_same_outputs(lite.serve(text=TEXTS), eager, 1e-5)

    int8 = LiteRTModel.load(rt.export_litert(model, tmp_path / "int8", tokenizer=tokenizer, quantize="int8"))
    outputs = int8.serve(text=TEXTS)
    np.testing.assert_allclose(outputs["probabilities"], eager["probabilities"], atol=0.02)
    float_size = os.path.getsize(os.path.join(folder, "model.tflite"))
    int8_size = os.path.getsize(os.path.join(tmp_path / "int8", "model.tflite"))
    # the weights are in the file (frozen, not uninitialised VAR_HANDLEs): >= the float32 token table
    assert float_size > tokenizer.vocab_size * SMALL_BODY["hidden_size"] * 4
    assert int8_size < 0.4 * float_size
    # the same shape twice and a new shape: the interpreter is resized only when needed
    again = lite.serve(text=TEXTS[:2])
    np.testing.assert_allclose(again["probabilities"], eager["probabilities"][:2], atol=1e-5)


def test_pair_classifier_keeps_its_stored_settings(tokenizer, tmp_path):
    from rubert_tf.tasks.classification.settings import ClassificationSettings

    keras.utils.set_random_seed(4)
    model = rt.RuBertClassifier(small_config(tokenizer), labels=["a", "b"])
    ClassificationSettings(text_pair=True, max_length=32).store(model)
    eager = served(model, tokenizer, text=TEXTS, text_pair=TEXTS[::-1])
    lite = LiteRTModel.load(rt.export_litert(model, tmp_path / "pair", tokenizer=tokenizer))
    assert_same_outputs(lite.serve(text=TEXTS, text_pair=TEXTS[::-1]), eager, 1e-5)


def test_ner_qa_and_sentence_answers_equal_the_saved_model_signature(tokenizer, tmp_path):
    keras.utils.set_random_seed(5)
    ner = rt.RuBertTokenClassifier(small_config(tokenizer), labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    lite = LiteRTModel.load(rt.export_litert(ner, tmp_path / "ner", tokenizer=tokenizer))
    assert_same_outputs(lite.serve(text=TEXTS), served(ner, tokenizer, text=TEXTS), 1e-5)

    qa = rt.RuBertQuestionAnswerer(small_config(tokenizer))
    questions, contexts = ["Где был Путин?"] * 2, [TEXTS[4], TEXTS[0] * 40]
    eager = served(qa, tokenizer, question=questions, context=contexts)
    lite = LiteRTModel.load(rt.export_litert(qa, tmp_path / "qa", tokenizer=tokenizer))
    # start and end logits are two outputs of the same shape: a swap would change every answer span
    assert lite.network.outputs[0][0] == "end_logits" and lite.network.outputs[1][0] == "start_logits"
    assert_same_outputs(lite.serve(question=questions, context=contexts), eager, 1e-4)

    sentence = rt.RuBertSentenceEncoder(small_config(tokenizer))
    lite = LiteRTModel.load(rt.export_litert(sentence, tmp_path / "sentence", tokenizer=tokenizer))
    assert_same_outputs(lite.serve(text=TEXTS), served(sentence, tokenizer, text=TEXTS), 1e-5)


def test_refusals_name_the_problem(tokenizer, tmp_path):
    model = rt.RuBertClassifier(small_config(tokenizer), num_labels=2)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        rt.export_litert(model, out, tokenizer=tokenizer)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="needs the tokenizer"):
        rt.export_litert(model, tmp_path / "x")
    with pytest.raises(ValueError, match="quantize"):
        convert(model, quantize="int4")
    with pytest.raises(FileNotFoundError, match="not a LiteRT deploy folder"):
        LiteRTModel.load(tmp_path)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging folder left behind


def test_cli_exports_int8_then_evaluates_and_predicts_from_the_folder(tiny_checkpoint, tmp_path):
    """The quantized model run from the CLI: finetune (1 step) -> export --format tflite --quantize int8 ->
    evaluate and predict with --model FOLDER; their answers equal the runner's."""
    data = tmp_path / "train.csv"
    with open(data, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([t or "пусто", label] for t, label in zip(TEXTS * 4, ["pos", "neg"] * 10))
    env = subprocess_env()

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "rubert_tf.cli", *args], capture_output=True, text=True,
                                env=env, timeout=600)
        return result.returncode, result.stdout, result.stderr

    model_dir, deploy = str(tmp_path / "model"), str(tmp_path / "deploy")
    code, _, err = cli("finetune", "classification", "--model", tiny_checkpoint, "--train", str(data), "--out",
                       model_dir, "--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--no-progress")
    assert code == 0, err[-2000:]
    code, _, err = cli("export", "classification", "--model", model_dir, "--out", str(tmp_path / "sm"),
                       "--quantize", "int8")
    assert code == 2 and "--quantize needs --format tflite" in err
    code, out, err = cli("export", "classification", "--model", model_dir, "--out", deploy, "--format", "tflite",
                         "--quantize", "int8")
    assert code == 0 and "LiteRT, int8" in out, err[-2000:]
    code, _, err = cli("export", "classification", "--model", model_dir, "--out", deploy, "--format", "tflite")
    assert code == 2 and "not empty" in err
    with open(os.path.join(deploy, "litert.json")) as handle:
        assert json.load(handle)["quantize"] == "int8"

    code, out, err = cli("evaluate", "classification", "--model", deploy, "--eval", str(data))
    assert code == 0, err[-2000:]
    metrics = json.loads(out)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "macro_f1" in metrics
    code, out, err = cli("predict", "classification", "--model", deploy, TEXTS[0], TEXTS[1])
    assert code == 0, err[-2000:]
    predictions = [json.loads(line) for line in out.splitlines()]
    runner = LiteRTModel.load(deploy).serve(text=TEXTS[:2])
    assert [p["label"] for p in predictions] == [label.decode() for label in runner["label"]]
    code, _, err = cli("predict", "ner", "--model", deploy, "x")
    assert code != 0 and "is a classification model, not ner" in err


def test_seq2seq_is_refused_with_a_reason(tokenizer, tmp_path):
    from rubert_tf.tasks import get_task

    task = get_task("seq2seq")
    model = task.model_class.__new__(task.model_class)  # only its task matters for the refusal
    model.config = small_config(tokenizer)
    with pytest.raises(ValueError, match="seq2seq generation"):
        rt.export_litert(model, tmp_path / "s2s", tokenizer=tokenizer)
