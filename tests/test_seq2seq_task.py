"""The seq2seq task end to end through the command line: `rubert-tf finetune seq2seq` warm-starts a
tiny bert2bert from the `tiny_checkpoint` fixture on 16 real NTREX ru->en pairs (loss falls), then
`rubert-tf generate` and `rubert-tf evaluate seq2seq` on 8 held-out pairs (BLEU/chrF equal sacreBLEU
on the generated text); settings resolution and ROUGE wiring with a stand-in model; bad data."""

import io
import json
import os
import types
from contextlib import redirect_stdout

import pytest

from rubert_tf.cli import main
from rubert_tf.metrics.generation import corpus_bleu, corpus_chrf
from rubert_tf.tasks import get_task
from rubert_tf.tasks.seq2seq import processing as seq2seq_processing
from rubert_tf.tasks.seq2seq.settings import Seq2SeqSettings
from rubert_tf.tokenizer import RuBertTokenizer


def ntrex_slice(shared_data, folder, start, stop):
    """Lines start..stop of NTREX train.ru / train.en written as a pair of files; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for lang in ("ru", "en"):
        with open(os.path.join(shared_data, "ntrex-en-ru", f"train.{lang}"), encoding="utf-8") as f:
            lines = f.read().split("\n")[start:stop]
        path = folder / f"part.{lang}"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(str(path))
    return paths


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, shared_data, tiny_checkpoint):
    """`rubert-tf finetune seq2seq` (main() in-process) with two aligned files for --train and --eval."""
    work = tmp_path_factory.mktemp("seq2seq")
    train = ntrex_slice(shared_data, work / "train", 0, 16)
    evaluation = ntrex_slice(shared_data, work / "eval", 16, 24)
    out = str(work / "model")
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["finetune", "seq2seq", "--model", tiny_checkpoint, "--train", *train, "--eval", *evaluation,
                     "--out", out, "--max-length", "16", "--max-target-length", "8", "--batch-size", "8",
                     "--epochs", "3", "--learning-rate", "3e-3", "--seed", "0", "--no-progress"])
    assert code == 0
    return {"out": out, "train": train, "eval": evaluation, "metrics": json.loads(buffer.getvalue())}


def test_finetune_loss_falls_and_the_model_keeps_its_settings(finetuned):
    metrics = finetuned["metrics"]
    assert metrics["train_loss_last_epoch"] < metrics["train_loss_first_epoch"] - 0.3
    assert 0 <= metrics["bleu"] <= 100 and 0 <= metrics["chrf"] <= 100 and metrics["examples"] == 8
    assert metrics["loss"] < 11.3  # ln(83,828) = 11.34: a model that learned nothing
    with open(os.path.join(finetuned["out"], "metrics.json"), encoding="utf-8") as f:
        assert json.load(f) == metrics
    with open(os.path.join(finetuned["out"], "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["is_encoder_decoder"] and config["architectures"] == ["EncoderDecoderModel"]
    # bert2bert: start [CLS], end [SEP], pad [PAD]; the lengths fine-tuning used are kept for inference.
    assert (config["decoder_start_token_id"], config["eos_token_id"], config["pad_token_id"]) == (2, 3, 0)
    stored = config["task_settings"]
    assert {key: stored[key] for key in ("task", "metric", "max_length", "max_target_length", "num_beams")} == {
        "task": "seq2seq", "metric": "bleu", "max_length": 16, "max_target_length": 8, "num_beams": 1}
    settings = Seq2SeqSettings.from_dict(stored)
    assert (settings.source_length, settings.target_length, settings.output_length) == (16, 8, 9)
    assert os.path.isfile(os.path.join(finetuned["out"], "vocab.txt"))


def test_generate_then_evaluate_agree_with_sacrebleu(finetuned, capsys, shared_data):
    with open(finetuned["eval"][0], encoding="utf-8") as f:
        sources = f.read().splitlines()
    with open(finetuned["eval"][1], encoding="utf-8") as f:
        references = f.read().splitlines()
    capsys.readouterr()
    assert main(["generate", "--model", finetuned["out"], "--num-beams", "2", *sources]) == 0
    results = json_lines(capsys.readouterr().out)
    assert [r["text"] for r in results] == sources
    assert all(isinstance(r["generated"], str) for r in results)
    hypotheses = [r["generated"] for r in results]
    # At most 8 tokens after the start token (generation_max_length 9 stored by fine-tuning).
    tokenizer = RuBertTokenizer.from_pretrained(finetuned["out"])
    assert max(int(n) for n in tokenizer.tokenize(hypotheses).row_lengths()) <= 8

    assert main(["evaluate", "seq2seq", "--model", finetuned["out"], "--eval", *finetuned["eval"],
                 "--num-beams", "2"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_beams"] == 2 and metrics["examples"] == 8
    assert metrics["bleu"] == pytest.approx(corpus_bleu(hypotheses, references), abs=1e-9)
    assert metrics["chrf"] == pytest.approx(corpus_chrf(hypotheses, references), abs=1e-9)
    # The teacher-forced loss does not depend on the search; equal after save + load.
    assert metrics["loss"] == pytest.approx(finetuned["metrics"]["loss"], abs=1e-4)


def test_cli_export_serves_what_generate_prints(finetuned, capsys, tmp_path):
    """`rubert-tf export seq2seq` bakes the search into the SavedModel: its `output` equals `generate`."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

    with open(finetuned["eval"][0], encoding="utf-8") as f:
        sources = f.read().splitlines()[:3]
    capsys.readouterr()
    assert main(["generate", "--model", finetuned["out"], "--num-beams", "2", *sources]) == 0
    expected = [r["generated"] for r in json_lines(capsys.readouterr().out)]
    base = str(tmp_path / "translator")
    assert main(["export", "seq2seq", "--model", finetuned["out"], "--out", base, "--max-length", "16",
                 "--num-beams", "2", "--no-warmup"]) == 0
    assert os.path.isfile(os.path.join(base, "1", "saved_model.pb"))
    served = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
    outputs = served(text=tf.constant(sources))["output"].numpy()
    assert [o.decode("utf-8") for o in outputs] == expected


def test_two_files_for_a_one_file_task_and_misaligned_files(tmp_path, capsys, tiny_checkpoint):
    ru = tmp_path / "a.ru"
    en = tmp_path / "a.en"
    ru.write_text("один\nдва\nтри\n", encoding="utf-8")
    en.write_text("one\ntwo\n", encoding="utf-8")
    code = main(["finetune", "classification", "--model", tiny_checkpoint, "--train", str(ru), str(en),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"task 'classification' reads one data file, got 2: {ru} {en}" in capsys.readouterr().err
    code = main(["finetune", "seq2seq", "--model", tiny_checkpoint, "--train", str(ru), str(en),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"{ru}:3: no matching line in {en}" in capsys.readouterr().err
    code = main(["finetune", "seq2seq", "--model", tiny_checkpoint, "--train", str(ru), "--out", str(tmp_path / "o")])
    assert code == 2 and "one plain-text file holds one side only" in capsys.readouterr().err


class StandInModel:
    """What the task needs of RuBertSeq2Seq: config, tokenizer, generate, default_loss and __call__."""

    def __init__(self, tokenizer, outputs, stored=None):
        self.config = types.SimpleNamespace(extra={"seq2seq": stored} if stored else {}, decoder_start_token_id=None,
                                            eos_token_id=None, pad_token_id=None)
        self.tokenizer = tokenizer
        self.outputs = outputs
        self.calls = []

    def generate(self, texts, **kwargs):
        self.calls.append(kwargs)
        return [self.outputs[text] for text in texts]

    def default_loss(self, label_smoothing=0.0):
        return lambda labels, logits: 2.5

    def __call__(self, features, training=False):
        return None


def test_rouge_metric_and_settings_resolution(shared_data, tmp_path, monkeypatch):
    tokenizer = RuBertTokenizer(os.path.join(shared_data, "rubert-tiny2", "vocab.txt"))
    path = tmp_path / "summaries.jsonl"
    rows = [{"text": "Длинная статья о кошке на ковре", "summary": "Кошка сидит на ковре"},
            {"text": "Статья о маме", "summary": "Мама мыла раму вчера"}]
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n", encoding="utf-8")
    outputs = {rows[0]["text"]: "кошка сидела на ковре", rows[1]["text"]: "вчера мама мыла раму"}
    stored = {"metric": "bleu", "max_source_length": 64, "max_target_length": 20, "num_beams": 4,
              "generation_max_length": 21, "length_penalty": 1.0, "no_repeat_ngram_size": 3}

    task = get_task("seq2seq")
    examples = task.read(str(path), {"source_column": "text", "target_column": "summary", "metric": "rouge",
                                     "num_beams": None})
    model = StandInModel(tokenizer, outputs, stored)
    calls = []

    def served_generate(model, texts, settings, batch_size=32, generation=None):  # the serving module's place
        calls.append({"settings": settings, "generation": generation, "batch_size": batch_size,
                      "search": seq2seq_processing.generation_config(model, settings, generation)})
        return [model.outputs[text] for text in texts]

    monkeypatch.setattr(seq2seq_processing, "generate", served_generate)
    metrics = task.evaluate(model, examples, {"metric": "rouge", "max_length": 128}, batch_size=4)
    # Hand-computed (see test_generation_metrics): rouge1 (75 + 100) / 2, rouge2 (100/3 + 200/3) / 2, rougeL 75.
    assert metrics == pytest.approx({"rouge1": 87.5, "rouge2": 50.0, "rougeL": 75.0, "loss": 2.5, "examples": 2,
                                     "num_beams": 4})
    # Flags win over what the model stored (here in the pre-"task_settings" key); the stored over the defaults.
    assert calls[0]["search"] == {"num_beams": 4, "length_penalty": 1.0, "no_repeat_ngram_size": 3, "max_length": 21}
    assert calls[0]["settings"].source_length == 64 and calls[0]["batch_size"] == 4
    assert (model.config.decoder_start_token_id, model.config.eos_token_id, model.config.pad_token_id) == (2, 3, 0)
    predictions = task.predict(model, [rows[0]["text"], {"text": rows[1]["text"]}], None, 2,
                               generation={"num_beams": 1, "top_k": None})
    assert predictions == [{"text": rows[0]["text"], "generated": outputs[rows[0]["text"]]},
                           {"text": rows[1]["text"], "generated": outputs[rows[1]["text"]]}]
    assert calls[-1]["search"]["num_beams"] == 1 and "top_k" not in calls[-1]["search"]
    # Sampling is not part of the served graph: it runs model.generate.
    task.predict(model, [rows[0]["text"]], None, 2, generation={"do_sample": True, "top_k": 5})
    assert model.calls[-1]["do_sample"] and model.calls[-1]["top_k"] == 5
    # Without stored settings: lengths follow max_length.
    fresh = Seq2SeqSettings.resolve(StandInModel(tokenizer, {}), {"max_length": 48})
    assert seq2seq_processing.generation_config(StandInModel(tokenizer, {}), fresh) == {
        "num_beams": 1, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "max_length": 49}
    assert fresh.source_length == 48
    # --max-length 512 would give 513 decoder positions: capped at the decoder's table (an explicit value is not).
    short = StandInModel(tokenizer, {})
    short.config.decoder = types.SimpleNamespace(max_position_embeddings=40)
    assert seq2seq_processing.generation_config(short, Seq2SeqSettings(max_length=512))["max_length"] == 40
    assert seq2seq_processing.generation_config(short, Seq2SeqSettings(max_length=512), {"max_length": 60})[
        "max_length"] == 60
    with pytest.raises(ValueError, match=r"unknown seq2seq setting\(s\) \['beams'\]"):
        Seq2SeqSettings.resolve(None, {"beams": 2})
