"""Extractive QA on real data: parity of RuBertQuestionAnswerer with transformers' BertForQuestionAnswering,
windows identical to HF BertTokenizerFast's overflowing windows on XQuAD-ru, span decoding on hand-made
logits, fine-tune -> evaluate -> predict through the CLI on XQuAD-ru, and the errors bad data must give."""

import io
import json
import logging
import os

import keras
import numpy as np
import pytest
import torch
import transformers

import reference_models as ref
import rubert_tf as rt
from rubert_tf.cli import main
from rubert_tf.data.qa import decode_answers, encode_qa_windows, qa_training_dataset, window_starts
from rubert_tf.data.readers import DataError, read_squad
from rubert_tf.metrics.squad import squad_scores
from rubert_tf.tasks import get_task
from rubert_tf.tasks.qa import processing as qa_processing

TOLERANCE = 1e-4
XQUAD = os.path.join(ref.DATA, "xquad-ru", "xquad.ru.part1.json")


# float32 global policy in every test, the previous one restored after (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("float32_policy")


@pytest.fixture(scope="module")
def xquad():
    return read_squad(XQUAD)


@pytest.fixture(scope="module")
def tokenizer():
    return rt.RuBertTokenizer.from_pretrained(ref.TINY2_DIR)


@pytest.fixture(scope="module")
def hf_tokenizer():
    return transformers.BertTokenizerFast.from_pretrained(ref.TINY2_DIR)


def pick(examples, count=8):
    """The first question (U+FEFF context), then questions of different contexts spread over the file."""
    chosen, seen = [], set()
    for example in examples[::7]:
        if example["context"] not in seen:
            seen.add(example["context"])
            chosen.append(example)
    return ([examples[0]] + chosen)[:count]


def write_squad(path, articles, version="1.1"):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": version, "data": articles}, f, ensure_ascii=False)
    return str(path)


# ---- parity with transformers ----------------------------------------------------------------------

def test_parity_with_transformers_and_round_trip(xquad, tokenizer, tmp_path, caplog):
    sizes = dict(ref.SMALL, vocab_size=tokenizer.vocab_size)
    torch_model = ref.torch_model("BertForQuestionAnswering", sizes, seed=3)
    directory = ref.save_safetensors(torch_model, str(tmp_path / "hf"))
    examples = pick(xquad, 4)
    windows = encode_qa_windows(tokenizer, [e["question"] for e in examples], [e["context"] for e in examples],
                                max_length=64, stride=16)
    batch = {key: windows[key] for key in ("token_ids", "segment_ids", "padding_mask")}
    assert len(windows["example_index"]) > len(examples) and batch["padding_mask"].min() == 0  # overflow + padding

    with torch.no_grad():
        expected = torch_model(**ref.torch_inputs(batch))
    expected = {"start_logits": expected.start_logits.numpy(), "end_logits": expected.end_logits.numpy()}
    with caplog.at_level(logging.WARNING, logger="rubert_tf"):
        model = rt.RuBertQuestionAnswerer.from_pretrained(directory)
    # qa_outputs loaded: nothing left random (only the library's records: TF's own warnings may come too)
    assert not [r for r in caplog.records if r.name.startswith("rubert_tf")], caplog.text

    def max_diff(keras_model):
        got = keras_model(batch, training=False)
        return max(float(np.max(np.abs(np.asarray(got[name]) - expected[name]))) for name in expected)

    diff = max_diff(model)
    print(f"\nmax abs diff start/end logits vs transformers: {diff:.2e}")
    assert diff <= TOLERANCE

    # save_pretrained -> transformers loads every tensor, no pooler, nothing missing or unexpected.
    saved = str(tmp_path / "ours")
    model.save_pretrained(saved)
    reloaded, info = transformers.BertForQuestionAnswering.from_pretrained(saved, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        again = reloaded.eval()(**ref.torch_inputs(batch))
    assert np.max(np.abs(again.start_logits.numpy() - expected["start_logits"])) <= 1e-6
    assert np.max(np.abs(again.end_logits.numpy() - expected["end_logits"])) <= 1e-6
    # and our loader reads its own output back.
    assert max_diff(rt.RuBertQuestionAnswerer.from_pretrained(saved)) <= TOLERANCE


# ---- windows ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("max_length,stride", [(64, 16), (96, 40), (384, 128)])
def test_windows_equal_hf_overflowing_windows(xquad, tokenizer, hf_tokenizer, max_length, stride):
    examples = pick(xquad, 10)
    questions, contexts = [e["question"] for e in examples], [e["context"] for e in examples]
    ours = encode_qa_windows(tokenizer, questions, contexts, max_length=max_length, stride=stride,
                             answers=[e["answers"] for e in examples])
    hf = hf_tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                      return_overflowing_tokens=True, return_offsets_mapping=True)
    assert ours["example_index"].tolist() == list(hf["overflow_to_sample_mapping"])
    for row, ids in enumerate(hf["input_ids"]):
        length = len(ids)
        assert int(ours["padding_mask"][row].sum()) == length
        assert ours["token_ids"][row, :length].tolist() == ids, row
        assert ours["segment_ids"][row, :length].tolist() == hf["token_type_ids"][row]
        assert [tuple(o) for o in ours["offsets"][row, :length].tolist()] == [tuple(o) for o in hf["offset_mapping"][row]]
        assert ours["context_mask"][row, :length].tolist() == [s == 1 for s in hf.sequence_ids(row)]
    print(f"\n{max_length}/{stride}: {len(hf['input_ids'])} windows of {len(examples)} questions, all equal to HF")

    # Training targets: every window that holds the whole answer points at it, exactly.
    with_answer = 0
    for row, example in enumerate(ours["example_index"]):
        example = examples[example]
        answer, context = example["answers"][0], example["context"]
        first, last = ours["start_positions"][row], ours["end_positions"][row]
        mask, offsets = ours["context_mask"][row], ours["offsets"][row]
        begin, end = offsets[mask][0][0], offsets[mask][-1][1]
        inside = begin <= answer["answer_start"] and answer["answer_start"] + len(answer["text"]) <= end
        if not inside:
            assert first == last == 0
            continue
        with_answer += 1
        assert 0 < first <= last and mask[first] and mask[last]
        assert context[offsets[first][0]:offsets[last][1]] == answer["text"]
    assert with_answer >= len(examples)


def test_window_starts_follow_the_tokenizers_crate():
    assert window_starts(10, 10, 3) == [0]
    assert window_starts(11, 10, 3) == [0, 7]
    assert window_starts(20, 8, 2) == [0, 6, 12]  # the last window [12, 20) ends with the context
    assert window_starts(0, 8, 2) == [0]


def test_long_question_is_cut_and_bad_settings_are_named(tokenizer):
    question = "Сколько " * 100 + "?"
    windows = encode_qa_windows(tokenizer, [question], ["Короткий контекст."], max_length=64, stride=16)
    # [CLS] + at most 64 - 3 - 17 question tokens + [SEP] + context + [SEP]
    assert int(windows["segment_ids"][0].argmax()) - 2 == 64 - 3 - 17
    assert windows["padding_mask"].sum() <= 64
    with pytest.raises(ValueError, match="stride=60"):
        encode_qa_windows(tokenizer, ["Кто?"], ["Я."], max_length=64, stride=60)
    with pytest.raises(ValueError, match="not at answer_start=3"):
        encode_qa_windows(tokenizer, ["Кто?"], ["Мама мыла раму."], max_length=64, stride=16,
                          answers=[{"text": "мыла", "answer_start": 3}], ids=["q1"])


# ---- decoding --------------------------------------------------------------------------------------

def logits_for(windows, spans, fill=-5.0):
    """Start/end logits [W, T]: `fill` everywhere, then [((window, token), (start value, end value))];
    None keeps what is there."""
    start = np.full(windows["token_ids"].shape, fill, np.float32)
    end = start.copy()
    for (window, token), (s, e) in spans:
        if s is not None:
            start[window, token] = s
        if e is not None:
            end[window, token] = e
    return start, end


def test_decode_recovers_every_gold_answer_exactly(xquad, tokenizer):
    examples = pick(xquad, 10)
    windows = encode_qa_windows(tokenizer, [e["question"] for e in examples], [e["context"] for e in examples],
                                max_length=64, stride=16, answers=[e["answers"] for e in examples])
    start, end = logits_for(windows, [])
    rows = np.flatnonzero(windows["start_positions"])
    start[rows, windows["start_positions"][rows]] = 5.0
    end[rows, windows["end_positions"][rows]] = 5.0
    answers = decode_answers(windows, start, end, [e["context"] for e in examples], max_answer_length=30)
    for example, answer in zip(examples, answers):
        gold = example["answers"][0]
        assert answer["answer"] == gold["text"]
        assert (answer["start"], answer["end"]) == (gold["answer_start"], gold["answer_start"] + len(gold["text"]))


def test_decode_picks_the_best_valid_span_across_windows(xquad, tokenizer):
    context = xquad[0]["context"]
    assert context[0] == "\ufeff"
    windows = encode_qa_windows(tokenizer, [xquad[0]["question"]], [context], max_length=48, stride=8)
    assert len(windows["example_index"]) >= 3
    first = int(np.flatnonzero(windows["context_mask"][0])[0])  # first context token: after the U+FEFF
    assert windows["offsets"][0, first, 0] == 1
    cols = [np.flatnonzero(windows["context_mask"][w]) for w in range(3)]
    spans = {
        (0, 0): (4.0, 4.0),                    # [CLS]: the null answer, not a span
        (0, 1): (9.0, 9.0),                    # question tokens are never part of an answer
        (0, first): (2.0, None), (0, first + 2): (None, 2.5),          # window 0: 4.5 from the U+FEFF context start
        (1, cols[1][5]): (6.0, None), (1, cols[1][3]): (None, 6.0),    # end before start: invalid
        (2, cols[2][1]): (3.0, None), (2, cols[2][2]): (None, 3.0),    # window 2: 6.0, the best valid
        (2, cols[2][0]): (None, 3.5),                                  # ends before its start: invalid
    }
    start, end = logits_for(windows, list(spans.items()), fill=-10.0)
    answer = decode_answers(windows, start, end, [context])[0]
    s, e = windows["offsets"][2, cols[2][1], 0], windows["offsets"][2, cols[2][2], 1]
    assert answer["answer"] == context[s:e] and (answer["start"], answer["end"]) == (s, e)
    assert answer["score"] == pytest.approx(6.0)

    # Without window 2's span, window 0 wins: its text starts after the U+FEFF, exactly as in the context.
    start[2], end[2] = -10.0, -10.0
    answer = decode_answers(windows, start, end, [context])[0]
    assert answer["start"] == 1 and answer["answer"] == context[1:answer["end"]]
    assert not answer["answer"].startswith("\ufeff") and answer["answer"] in context

    # max_answer_length: a long span with a better score is skipped.
    start, end = logits_for(windows, [((0, first), (5.0, None)), ((0, first + 4), (None, 5.0)),
                                      ((0, first + 1), (None, 1.0))], fill=-10.0)
    longest = decode_answers(windows, start, end, [context], max_answer_length=5)[0]
    shorter = decode_answers(windows, start, end, [context], max_answer_length=4)[0]
    assert longest["end"] == windows["offsets"][0, first + 4, 1] and longest["score"] == pytest.approx(10.0)
    assert shorter["end"] == windows["offsets"][0, first + 1, 1] and shorter["score"] == pytest.approx(6.0)


def token_at(windows, row, char_start=None, char_end=None):
    """The context token of window `row` that starts (or ends) at a character offset."""
    mask, offsets = windows["context_mask"][row], windows["offsets"][row]
    side, char = (0, char_start) if char_start is not None else (1, char_end)
    return int(np.flatnonzero(mask & (offsets[:, side] == char))[0])


def test_decode_no_answer_for_squad_v2(tokenizer):
    contexts = ["Волга впадает в Каспийское море.", "Москва — столица России."]
    windows = encode_qa_windows(tokenizer, ["Куда впадает Волга?", "Что такое Москва?"], contexts,
                                max_length=64, stride=16)
    sea_start, sea_end = token_at(windows, 0, char_start=16), token_at(windows, 0, char_end=31)
    moscow_start, moscow_end = token_at(windows, 1, char_start=0), token_at(windows, 1, char_end=6)
    start, end = logits_for(windows, [((0, 0), (1.0, 1.0)), ((0, sea_start), (3.0, None)), ((0, sea_end), (None, 3.0)),
                                      ((1, 0), (5.0, 5.0)), ((1, moscow_start), (2.0, None)),
                                      ((1, moscow_end), (None, 2.0))])
    v1 = decode_answers(windows, start, end, contexts)
    assert v1[0]["answer"] == "Каспийское море" and v1[1]["answer"] == "Москва"  # v1.1: always a span
    v2 = decode_answers(windows, start, end, contexts, allow_no_answer=True)
    assert v2[0]["answer"] == "Каспийское море"  # 6 > null 2
    assert v2[1] == {"answer": "", "start": None, "end": None, "score": 10.0, "null_score": 10.0}  # null 10 > 4
    lenient = decode_answers(windows, start, end, contexts, allow_no_answer=True, no_answer_threshold=7.0)
    assert lenient[1]["answer"] == "Москва"  # 10 - 4 = 6 is not > 7


def test_squad_v2_windows_point_at_cls_and_need_the_flag(tokenizer, tmp_path):
    article = {"title": "t", "paragraphs": [{"context": "Волга впадает в Каспийское море.", "qas": [
        {"id": "yes", "question": "Куда впадает Волга?", "answers": [{"text": "Каспийское море", "answer_start": 16}]},
        {"id": "no-answer-q", "question": "Где исток Невы?", "answers": [], "is_impossible": True}]}]}
    path = write_squad(tmp_path / "v2.json", [article], "v2.0")
    task = get_task("qa")
    with pytest.raises(DataError, match="no-answer-q.*--version-2-with-negative"):
        task.read(path, {})
    examples = task.read(path, {"version_2_with_negative": True})
    _, windows = qa_training_dataset(tokenizer, examples, 2, max_length=64, stride=16, allow_no_answer=True)
    assert windows["start_positions"].tolist()[1] == windows["end_positions"].tolist()[1] == 0
    assert windows["start_positions"][0] > 0


class FixedAnswers:
    """Stands in for a model (its config holds stored settings) and for the served module it would run
    (rubert_tf.tasks.qa.processing.answer, patched): answers with given texts, records the settings."""

    def __init__(self, monkeypatch, texts, stored=None):
        self.texts, self.calls = texts, []
        # Settings as models fine-tuned before the task units stored them (read back as a fallback).
        self.config = rt.RuBertConfig(vocab_size=10, extra={"question_answering": stored} if stored else {})
        monkeypatch.setattr(qa_processing, "answer", self)

    def __call__(self, model, questions, contexts, settings, batch_size):
        assert model is self
        self.calls.append(settings)
        return [{"answer": text, "start": None, "end": None, "score": 0.0, "truncated": False}
                for text in self.texts[:len(questions)]]


def test_evaluate_scores_the_predictions_with_squad_metrics(xquad, monkeypatch):
    examples = xquad[:6]
    texts = [e["answers"][0]["text"] for e in examples[:3]]  # right
    texts += ["Пэнтерс " + examples[3]["answers"][0]["text"], "совсем не то", ""]  # partly right, wrong, empty
    task = get_task("qa")
    model = FixedAnswers(monkeypatch, texts, stored={"stride": 20, "max_answer_length": 7})
    metrics = task.evaluate(model, examples, {"stride": 50, "max_length": 128}, 4)
    expected = squad_scores({e["id"]: t for e, t in zip(examples, texts)},
                            {e["id"]: [a["text"] for a in e["answers"]] for e in examples})
    assert metrics == {**expected, "questions": 6}
    assert 50.0 <= metrics["exact_match"] < metrics["f1"] < 100.0
    # flags win over the model's stored settings, which win over the defaults
    settings = model.calls[0]
    assert settings.stride == 50 and settings.max_answer_length == 7
    assert settings.version_2_with_negative is False and settings.max_length == 128


def test_evaluate_squad_v2_splits_has_answer_and_no_answer(tmp_path, monkeypatch):
    article = {"title": "t", "paragraphs": [{"context": "Волга впадает в Каспийское море.", "qas": [
        {"id": "a", "question": "Куда впадает Волга?", "answers": [{"text": "Каспийское море", "answer_start": 16}]},
        {"id": "b", "question": "Где исток Невы?", "answers": [], "is_impossible": True}]}]}
    task = get_task("qa")
    examples = task.read(write_squad(tmp_path / "v2.json", [article], "v2.0"), {"version_2_with_negative": True})
    v2 = {"version_2_with_negative": True, "max_length": 64}
    right = task.evaluate(FixedAnswers(monkeypatch, ["Каспийское море", ""]), examples, v2, 2)
    assert (right["exact_match"], right["has_answer_exact_match"], right["no_answer_exact_match"]) == (100, 100, 100)
    silent = FixedAnswers(monkeypatch, ["", ""])
    scores = task.evaluate(silent, examples, v2, 2)
    assert (scores["exact_match"], scores["has_answer_f1"], scores["no_answer_f1"]) == (50, 0, 100)
    assert silent.calls[0].version_2_with_negative is True
    # A model fine-tuned on v2 data keeps scoring "no answer" without the flag.
    stored = FixedAnswers(monkeypatch, ["", ""], stored={"version_2_with_negative": True})
    assert "no_answer_f1" in task.evaluate(stored, examples, None, 2)


# ---- XQuAD-ru: fine-tune, evaluate, predict through the CLI -------------------------------------

def qa_loss(model, windows):
    """Mean (start + end) cross-entropy of `model` on training windows."""
    batch = {key: windows[key] for key in ("token_ids", "segment_ids", "padding_mask")}
    out = model(batch, training=False)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(loss(windows["start_positions"], out["start_logits"]) + loss(windows["end_positions"], out["end_logits"]))


def test_finetune_evaluate_predict_on_xquad(tiny_checkpoint, tokenizer, tmp_path, capsys, monkeypatch):
    with open(XQUAD, encoding="utf-8-sig") as f:
        articles = json.load(f)["data"]
    train = write_squad(tmp_path / "train.json", articles[:2])
    test = write_squad(tmp_path / "test.json", [dict(articles[20], paragraphs=articles[20]["paragraphs"][:3])])
    out = str(tmp_path / "qa")
    test_examples = read_squad(test)
    settings = dict(max_length=128, stride=32)
    _, test_windows = qa_training_dataset(tokenizer, test_examples, 8, **settings)
    before = qa_loss(rt.RuBertQuestionAnswerer.from_pretrained(tiny_checkpoint), test_windows)

    assert main(["finetune", "qa", "--model", tiny_checkpoint, "--train", train, "--eval", test, "--out", out,
                 "--epochs", "3", "--max-steps", "10", "--batch-size", "16", "--learning-rate", "1e-3",
                 "--max-length", "128", "--stride", "32", "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["train_loss_last_epoch"] < metrics["train_loss_first_epoch"]
    model = rt.RuBertQuestionAnswerer.from_pretrained(out)
    stored = model.config.extra["task_settings"]  # the task's settings travel with the model
    assert (stored["task"], stored["stride"], stored["max_length"]) == ("qa", 32, 128)
    after = qa_loss(model, test_windows)
    assert after < before

    # evaluate: the CLI's numbers are SQuAD EM/F1 of the model's own predictions.
    assert main(["evaluate", "qa", "--model", out, "--eval", test, "--max-length", "128"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    predictions = get_task("qa").predictions(model, test_examples)  # the stored settings apply
    assert all(predictions[e["id"]] in e["context"] and predictions[e["id"]] for e in test_examples)
    expected = squad_scores(predictions, {e["id"]: [a["text"] for a in e["answers"]] for e in test_examples})
    assert evaluated["exact_match"] == pytest.approx(expected["exact_match"])
    assert evaluated["f1"] == pytest.approx(expected["f1"])
    assert evaluated["questions"] == len(test_examples)
    assert evaluated["f1"] == pytest.approx(metrics["f1"])  # finetune's own evaluation agrees

    # predict: JSON lines in, JSON lines out, the answer a substring of its context at its offsets.
    example = test_examples[0]
    line = json.dumps({"id": example["id"], "question": example["question"], "context": example["context"]},
                      ensure_ascii=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(line + "\n"))
    assert main(["predict", "qa", "--model", out, "--max-length", "128"]) == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert result["id"] == example["id"] and result["answer"] == predictions[example["id"]]
    assert result["answer"] and example["context"][result["start"]:result["end"]] == result["answer"]
    single = model.answer(example["question"], example["context"], max_length=128, stride=32)  # one raw pair
    assert single["answer"] == result["answer"] and single["start"] == result["start"]
    with capsys.disabled():
        print(f"\ntrain loss {metrics['train_loss_first_epoch']:.3f} -> {metrics['train_loss_last_epoch']:.3f}; "
              f"held-out loss {before:.3f} -> {after:.3f}; EM {evaluated['exact_match']:.2f} F1 {evaluated['f1']:.2f}")


# ---- bad data --------------------------------------------------------------------------------------

def test_wrong_answer_start_names_the_question(tmp_path, tiny_checkpoint, capsys):
    with open(XQUAD, encoding="utf-8-sig") as f:
        article = json.load(f)["data"][0]
    article = dict(article, paragraphs=article["paragraphs"][:1])
    qa = article["paragraphs"][0]["qas"][2]
    qa["answers"][0]["answer_start"] += 3
    path = write_squad(tmp_path / "shifted.json", [article])
    assert main(["finetune", "qa", "--model", tiny_checkpoint, "--train", path, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert qa["id"] in err and "answer_start" in err and "shifted.json" in err


def test_broken_json_names_the_file(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "broken.json"
    with open(XQUAD, encoding="utf-8") as f:
        path.write_text(f.read()[:5000], encoding="utf-8")
    assert main(["evaluate", "qa", "--model", tiny_checkpoint, "--eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert "broken.json" in err and "not a SQuAD JSON file" in err


def test_predict_needs_question_and_context(tiny_checkpoint):
    model = rt.RuBertQuestionAnswerer.from_pretrained(tiny_checkpoint)
    with pytest.raises(ValueError, match='input 1: QA needs .*"question" and "context"'):
        get_task("qa").predict(model, ["просто текст"], {"max_length": 128}, 8)
