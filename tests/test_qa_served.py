"""QA as one task unit: the graph windows equal encode_qa_windows' (and so HF's), the graph span rule
equals decode_answers on random logits, and a SavedModel of the serving module answers exactly as
`RuBertQuestionAnswerer.answer` on real XQuAD-ru questions whose contexts need several windows
(max_windows respected, SQuAD v2 null answers), with only ops TF Serving has."""

import argparse

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_models as ref
import rubert_tf as rt
from rubert_tf.data.qa import decode_answers, encode_qa_windows
from rubert_tf.data.readers import read_squad
from rubert_tf.export.ops import unservable_ops
from rubert_tf.tasks import get_task
from rubert_tf.tasks.qa import QuestionAnsweringSettings, postprocessor, preprocessor
from rubert_tf.tasks.settings import CONFIG_KEY

XQUAD = f"{ref.DATA}/xquad-ru/xquad.ru.part1.json"
WINDOW_KEYS = ("token_ids", "segment_ids", "padding_mask", "offsets", "context_mask", "example_index")


# float32 global policy in every test, the previous one restored after (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("float32_policy")


@pytest.fixture(scope="module")
def examples():
    """10 questions on different contexts, the first with the U+FEFF context."""
    xquad = read_squad(XQUAD)
    chosen, seen = [xquad[0]], {xquad[0]["context"]}
    for example in xquad[::11]:
        if example["context"] not in seen:
            seen.add(example["context"])
            chosen.append(example)
    return chosen[:10]


@pytest.fixture(scope="module")
def tokenizer():
    return rt.RuBertTokenizer.from_pretrained(ref.TINY2_DIR)


@pytest.fixture(scope="module")
def model(tokenizer):
    """A small random RuBertQuestionAnswerer with the real rubert-tiny2 vocabulary (and tokenizer)."""
    keras.utils.set_random_seed(7)
    config = rt.RuBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=128, max_position_embeddings=512)
    model = rt.RuBertQuestionAnswerer(config)
    model.tokenizer = tokenizer
    return model


def texts(examples):
    return [e["question"] for e in examples], [e["context"] for e in examples]


def graph_windows(tokenizer, settings, questions, contexts):
    windows = tf.function(preprocessor(tokenizer, settings))(tf.constant(questions), tf.constant(contexts))
    return {key: value.numpy() for key, value in windows.items()}


# ---- settings ---------------------------------------------------------------------------------------

def test_settings_defaults_flags_and_stored_fallback():
    settings = QuestionAnsweringSettings()
    assert (settings.max_length, settings.window_stride, settings.max_windows) == (384, 128, 16)
    assert QuestionAnsweringSettings(max_length=100).window_stride == 50
    parser = QuestionAnsweringSettings.add_arguments(argparse.ArgumentParser())
    assert "truncated" in parser.format_help() and "--max-windows" in parser.format_help()
    flags = QuestionAnsweringSettings.from_arguments(parser.parse_args(["--allow-no-answer", "--max-windows", "3"]))
    assert flags == {"version_2_with_negative": True, "max_windows": 3}
    with pytest.raises(ValueError, match="max_windows must be >= 1"):
        QuestionAnsweringSettings(max_windows=0)
    with pytest.raises(ValueError, match="max_length=64 and stride=60"):
        QuestionAnsweringSettings(max_length=64, stride=60)

    # Models fine-tuned before the task units: config.extra["question_answering"] is read back.
    legacy = rt.RuBertConfig(vocab_size=10, extra={"question_answering": {"stride": 20, "max_answer_length": 7,
                                                                          "version_2_with_negative": True}})
    model = type("Stored", (), {"config": legacy})()
    resolved = get_task("qa").settings(model, {"stride": 32, "max_length": None})
    assert (resolved.stride, resolved.max_answer_length, resolved.version_2_with_negative) == (32, 7, True)
    legacy.extra[CONFIG_KEY] = QuestionAnsweringSettings(max_answer_length=9).to_dict()  # the new key wins
    assert get_task("qa").settings(model).max_answer_length == 9


# ---- the graph preprocessor -------------------------------------------------------------------------

@pytest.mark.parametrize("max_length,stride", [(64, 16), (96, 40)])
def test_graph_windows_equal_encode_qa_windows(examples, tokenizer, max_length, stride):
    questions, contexts = texts(examples)
    settings = QuestionAnsweringSettings(max_length=max_length, stride=stride, max_windows=1000)
    ours = graph_windows(tokenizer, settings, questions, contexts)
    reference = encode_qa_windows(tokenizer, questions, contexts, max_length=max_length, stride=stride)
    for key in WINDOW_KEYS:
        assert ours[key].dtype == reference[key].dtype and ours[key].shape == reference[key].shape, key
        np.testing.assert_array_equal(ours[key], reference[key], err_msg=key)
    assert ours["windows"].tolist() == np.bincount(reference["example_index"]).tolist()
    assert (ours["windows"] >= 2).sum() >= 8 and not ours["truncated"].any()  # contexts of several windows


def test_max_windows_keeps_the_first_windows_and_says_truncated(examples, tokenizer):
    questions, contexts = texts(examples)
    settings = QuestionAnsweringSettings(max_length=64, stride=16, max_windows=3)
    ours = graph_windows(tokenizer, settings, questions, contexts)
    reference = encode_qa_windows(tokenizer, questions, contexts, max_length=64, stride=16)
    needed = np.bincount(reference["example_index"])
    keep = first_windows(reference["example_index"], 3)
    assert ours["windows"].tolist() == np.minimum(needed, 3).tolist()
    assert ours["truncated"].tolist() == (needed > 3).tolist() and ours["truncated"].any()
    width = ours["token_ids"].shape[1]
    for key in WINDOW_KEYS:
        kept = reference[key][keep]
        np.testing.assert_array_equal(ours[key], kept[:, :width] if kept.ndim > 1 else kept, err_msg=key)


def test_a_huge_context_costs_its_first_windows_only(examples, tokenizer):
    """Only what max_windows windows can use of a context is tokenized (issue 14): a context far over that
    bound gives exactly the windows of a prefix under it, and says truncated."""
    from rubert_tf.tokenizer import prefix_bytes

    settings = QuestionAnsweringSettings(max_length=64, stride=16, max_windows=3)
    bound = prefix_bytes(3 * 64 + 1)
    context = " ".join(e["context"] for e in examples) * 40
    assert len(context.encode()) > 4 * bound
    question = [examples[0]["question"]]
    huge = graph_windows(tokenizer, settings, question, [context * 3])
    prefix = graph_windows(tokenizer, settings, question, [context[: bound // 4]])  # under the bound: not cut
    assert huge["truncated"].tolist() == prefix["truncated"].tolist() == [True]
    for key in WINDOW_KEYS + ("windows",):
        np.testing.assert_array_equal(huge[key], prefix[key], err_msg=key)
    reference = encode_qa_windows(tokenizer, question, [context[: bound // 4]], max_length=64, stride=16)
    np.testing.assert_array_equal(huge["token_ids"], reference["token_ids"][:3, : huge["token_ids"].shape[1]])


def first_windows(example_index, count):
    """Rows of the first `count` windows of each example."""
    ordinal = np.arange(len(example_index)) - np.searchsorted(example_index, example_index)
    return ordinal < count


# ---- the graph postprocessor ------------------------------------------------------------------------

@pytest.mark.parametrize("v2,threshold,max_answer_length", [(False, 0.0, 30), (True, 0.0, 3), (True, 1.0, 30)])
def test_graph_spans_equal_decode_answers_on_random_logits(examples, tokenizer, v2, threshold, max_answer_length):
    questions, contexts = texts(examples)
    windows = encode_qa_windows(tokenizer, questions, contexts, max_length=64, stride=16)
    rng = np.random.default_rng(max_answer_length)
    start, end = (rng.normal(scale=3.0, size=windows["token_ids"].shape).astype(np.float32) for _ in range(2))
    odd = windows["example_index"] % 2 == 1
    start[odd, 0] += 12.0  # a high [CLS] score: odd questions lean to "no answer"
    end[odd, 0] += 12.0
    settings = QuestionAnsweringSettings(max_length=64, stride=16, max_answer_length=max_answer_length,
                                         version_2_with_negative=v2, no_answer_threshold=threshold)
    inputs = {key: tf.constant(windows[key]) for key in ("offsets", "context_mask", "example_index")}
    inputs.update(windows=tf.zeros([len(questions)], tf.int32), truncated=tf.zeros([len(questions)], tf.bool))
    got = postprocessor(settings)(inputs, tf.constant(start), tf.constant(end), tf.constant(contexts))
    got = {key: value.numpy() for key, value in got.items()}
    expected = decode_answers(windows, start, end, contexts, max_answer_length=max_answer_length,
                              allow_no_answer=v2, no_answer_threshold=threshold)
    for row, answer in enumerate(expected):
        assert got["answer"][row].decode() == answer["answer"], row
        assert (got["start"][row], got["end"][row]) == (
            (answer["start"], answer["end"]) if answer["start"] is not None else (-1, -1)), row
        assert got["score"][row] == pytest.approx(answer["score"], abs=1e-5)
        assert got["null_score"][row] == pytest.approx(answer["null_score"], abs=1e-5)
    spans = [a for a in expected if a["start"] is not None]
    assert all(a["answer"] == contexts[i][a["start"]:a["end"]] for i, a in enumerate(expected) if a in spans)
    if v2:
        assert 0 < len(spans) < len(expected)  # both kinds of answers are compared
    else:
        assert len(spans) == len(expected)


def test_empty_contexts_and_an_empty_batch(tokenizer):
    questions, contexts = ["", "Кто?", "Где?"], ["Мама мыла раму.", "", "   \u200b "]  # no context tokens: no span
    settings = QuestionAnsweringSettings(max_length=64, stride=16)
    windows = encode_qa_windows(tokenizer, questions, contexts, max_length=64, stride=16)
    rng = np.random.default_rng(1)
    start, end = (rng.normal(size=windows["token_ids"].shape).astype(np.float32) for _ in range(2))
    preprocess, postprocess = preprocessor(tokenizer, settings), postprocessor(settings)

    @tf.function
    def answer(question, context, start, end):
        return postprocess(preprocess(question, context), start, end, context)

    got = {key: value.numpy() for key, value in answer(tf.constant(questions), tf.constant(contexts), start, end).items()}
    expected = decode_answers(windows, start, end, contexts)
    assert expected[0]["answer"] and not expected[1]["answer"] and not expected[2]["answer"]
    assert [a.decode() for a in got["answer"]] == [a["answer"] for a in expected]
    assert got["start"].tolist() == [expected[0]["start"], -1, -1] and got["end"].tolist()[1:] == [-1, -1]
    np.testing.assert_allclose(got["score"], [a["score"] for a in expected], atol=1e-5)  # no span: the null score

    nothing = answer(tf.constant([], tf.string), tf.constant([], tf.string), tf.zeros([0, 3]), tf.zeros([0, 3]))
    assert all(value.shape[0] == 0 for value in nothing.values())


# ---- served == eager --------------------------------------------------------------------------------

def assert_same_answers(outputs, answers, contexts):
    assert len(outputs["answer"]) == len(answers)
    for row, answer in enumerate(answers):
        assert outputs["answer"][row].decode() == answer["answer"], row
        start, end = int(outputs["start"][row]), int(outputs["end"][row])
        assert (start, end) == ((answer["start"], answer["end"]) if answer["start"] is not None else (-1, -1))
        assert abs(float(outputs["score"][row]) - answer["score"]) <= 1e-5
        assert abs(float(outputs["null_score"][row]) - answer["null_score"]) <= 1e-5
        assert bool(outputs["truncated"][row]) == answer["truncated"]
        if answer["start"] is not None:
            assert contexts[row][start:end] == answer["answer"]


def test_saved_model_answers_exactly_as_answer(examples, tokenizer, model, tmp_path):
    questions, contexts = texts(examples)
    task = get_task("qa")
    settings = QuestionAnsweringSettings(max_length=64, stride=16, max_windows=4)
    settings.store(model)  # as fine-tuning does: answer() and serving_module() then need no settings
    try:
        eager = model.answer(questions, contexts, batch_size=3)  # batches of 3 questions, up to 12 windows
        module = task.serving_module(model, tokenizer)
    finally:
        del model.config.extra[CONFIG_KEY]
    # SQuAD v2: a threshold inside the spread of (null - best) gives answers and "no answer" on a random model.
    threshold = float(np.median([a["null_score"] - a["score"] for a in eager]))
    v2 = settings.replace(version_2_with_negative=True, no_answer_threshold=threshold)
    eager_v2 = model.answer(questions, contexts, settings=v2, batch_size=4)
    module.squad_v2 = task.serving_module(model, tokenizer, v2)

    # One SavedModel (weights and vocabulary saved once) with both modules' signatures, loaded back.
    directory = str(tmp_path / "qa_savedmodel")
    tf.saved_model.save(module, directory, signatures={
        "serving_default": module.serving_functions["serving_default"],
        "squad_v2": module.squad_v2.serving_functions["serving_default"]})
    assert unservable_ops(directory) == []
    loaded = tf.saved_model.load(directory).signatures
    assert set(loaded["serving_default"].structured_input_signature[1]) == {"question", "context"}
    request = dict(question=tf.constant(questions), context=tf.constant(contexts))  # all 10 questions at once
    outputs = {key: value.numpy() for key, value in loaded["serving_default"](**request).items()}
    outputs_v2 = {key: value.numpy() for key, value in loaded["squad_v2"](**request).items()}

    assert_same_answers(outputs, eager, contexts)
    assert outputs["windows"].max() == 4 and outputs["truncated"].any()  # long contexts, bounded
    assert all(a["answer"] for a in eager)  # v1.1: always a span
    assert_same_answers(outputs_v2, eager_v2, contexts)
    empty = [a for a in eager_v2 if a["answer"] == ""]
    assert 0 < len(empty) < len(eager_v2)
    assert all(a["start"] is None and a["score"] == a["null_score"] for a in empty)

    # The windows past max_windows are not searched: the answers are decode_answers' over the first 4.
    reference = encode_qa_windows(tokenizer, questions, contexts, max_length=64, stride=16)
    keep = first_windows(reference["example_index"], 4)
    kept = {key: value[keep] for key, value in reference.items()}
    logits = model({key: kept[key] for key in ("token_ids", "segment_ids", "padding_mask")}, training=False)
    expected = decode_answers(kept, np.asarray(logits["start_logits"]), np.asarray(logits["end_logits"]), contexts)
    for answer, want in zip(eager, expected):
        assert (answer["answer"], answer["start"], answer["end"]) == (want["answer"], want["start"], want["end"])
        assert answer["score"] == pytest.approx(want["score"], abs=1e-5)

    # answer() builds its module once per model and settings.
    built = len(model._rubert_task_modules)
    assert model.answer(questions[:2], contexts[:2], settings=v2) == eager_v2[:2]
    assert len(model._rubert_task_modules) == built == 2
