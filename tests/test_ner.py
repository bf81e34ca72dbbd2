"""NER end to end: BertForTokenClassification parity with transformers, first-sub-token label
alignment equal to HF's `word_ids()`, the tf.data pipeline (padding, -100, determinism), and the
whole path on real factRuEval-2016 data through the CLI: read (strict error / repair), fine-tune
(loss falls), evaluate (== seqeval), predict (JSON with character offsets); and the exported
SavedModel answers exactly as `extract_entities` (IOBES and bare tags included). How tags group into
entities, against seqeval, and reading every tag scheme: test_ner_decoding.py."""

import collections
import io
import json
import os
import shutil
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import seqeval.metrics
import tensorflow as tf
import torch
import transformers
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

import reference_models as ref
from rubert_tf import cli
from rubert_tf.data.ner import IGNORE_INDEX, encode_words, ner_dataset
from rubert_tf.data.readers import DataError, read_conll
from rubert_tf.metrics.ner import entity_scores, get_entities
from rubert_tf.models.token_classifier import RuBertTokenClassifier
from rubert_tf.tasks import get_task
from rubert_tf.tasks.ner import NerTask, extract_entities, infer_labels
from rubert_tf.tasks.ner import processing as ner_processing
from rubert_tf.tokenizer import RuBertTokenizer

TOLERANCE = 1e-4
TAGS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
# The parity model: small body, rubert-tiny2's full vocabulary, so real Russian text is tokenized as is.
BODY = dict(vocab_size=83828, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=512)
TEXTS = ["Встреча с послом Италии в миде Грузии",
         "Жан-Мари Ле Пен — основатель Национального фронта Франции.",
         "В 1812 году Наполеон вошёл в Москву, а Кутузов отступил к Тарутину."]
# Hand-made words: sub-word splits, punctuation inside and as words, a word that normalisation removes
# entirely (zero-width space), an emoji ([UNK]), a word over 100 characters ([UNK]), a literal "[SEP]".
HARD_SENTENCES = [
    ["Встреча", "с", "послом", "Италии", "в", "миде", "Грузии"],
    ["Жан", "-", "Мари", "Ле", "Пен", "\u200b", "т.е.", "Нью-Йорк", "«", "Газпромнефтехим", "»", "."],
    ["\u200b", "Достопримечательности", "🦜", "а" * 120, "[SEP]", "Санкт-Петербурга", "!"],
    ["Ростов-на-Дону", "\u200bМосква", "Мос\u200bква", "2016", "г", "."],
    [],
]


# float32 global policy in every test, the previous one restored after (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("float32_policy")


@pytest.fixture(scope="module")
def tokenizer():
    return RuBertTokenizer.from_pretrained(ref.TINY2_DIR)


@pytest.fixture(scope="module")
def hf_tokenizer():
    return transformers.BertTokenizerFast.from_pretrained(ref.TINY2_DIR)


# ---- parity with transformers BertForTokenClassification ----------------------------------------

@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    labels = {"id2label": dict(enumerate(TAGS)), "label2id": {t: i for i, t in enumerate(TAGS)}}
    model = ref.torch_model("BertForTokenClassification", {**BODY, **labels}, "gelu", seed=3)
    directory = ref.save_safetensors(model, str(tmp_path_factory.mktemp("hf_token_classifier")))
    # As the real checkpoint: cased (without this file HF, and so RuBertTokenizer, would lowercase).
    shutil.copy(os.path.join(ref.TINY2_DIR, "tokenizer_config.json"), directory)
    return {"torch": model, "dir": directory}


def torch_logits(model, batch):
    with torch.no_grad():
        return model(**ref.torch_inputs({k: np.asarray(v) for k, v in batch.items()})).logits.numpy()


def test_logits_match_transformers_and_labels_come_from_the_checkpoint(parity, tokenizer):
    ours = RuBertTokenClassifier.from_pretrained(parity["dir"])
    assert ours.labels == TAGS
    assert ours.tokenizer is not None
    assert "pooler" not in " ".join(v.path for v in ours.weights)  # BertForTokenClassification has none
    batch = tokenizer(TEXTS, max_length=64, padding="longest")
    expected = torch_logits(parity["torch"], batch)
    got = np.asarray(ours(batch, training=False)["logits"])
    real = np.asarray(batch["padding_mask"]).astype(bool)
    assert got.shape == expected.shape == real.shape + (len(TAGS),)
    assert real.sum(1).min() < real.shape[1], "the batch must contain padding"
    diff = float(np.abs(got[real] - expected[real]).max())
    print(f"\nmax |logits - transformers| = {diff:.2e}")
    assert diff <= TOLERANCE


def test_tag_words_equals_the_hf_way(parity, hf_tokenizer):
    """Tags of pre-split words == argmax of transformers' logits on the first sub-token of each word
    found with HF's is_split_into_words / word_ids() (truncated words: "O")."""
    ours = RuBertTokenClassifier.from_pretrained(parity["dir"])
    sentences = [s for s in HARD_SENTENCES if s] + [text.split() for text in TEXTS]
    for max_length in (64, 9):
        encoding = hf_tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length,
                                padding="longest", return_tensors="pt")
        with torch.no_grad():
            logits = parity["torch"](**encoding).logits.numpy()
        expected = []
        for row, words in enumerate(sentences):
            tags, previous = ["O"] * len(words), None
            for position, word in enumerate(encoding.word_ids(row)):
                if word is not None and word != previous:
                    tags[word] = TAGS[int(logits[row, position].argmax())]
                previous = word
            expected.append(tags)
        assert ours.tag_words(sentences, max_length=max_length) == expected


def test_warm_start_keeps_head_rows_with_their_tag_names(parity, tokenizer, caplog):
    batch = tokenizer(TEXTS[:1], max_length=32, padding="longest")
    expected = torch_logits(parity["torch"], batch)
    # The same tags in another order (as inferred from other data): the checkpoint's order is kept.
    same = RuBertTokenClassifier.from_pretrained(parity["dir"], labels=list(reversed(TAGS)))
    assert same.labels == TAGS
    assert np.abs(np.asarray(same(batch)["logits"]) - expected).max() <= TOLERANCE
    # Other tags: the encoder is loaded, the head starts fresh, and the log says so.
    caplog.clear()
    other = RuBertTokenClassifier.from_pretrained(parity["dir"], labels=TAGS + ["B-MISC", "I-MISC"])
    assert other.labels == TAGS + ["B-MISC", "I-MISC"]
    assert np.asarray(other(batch)["logits"]).shape[-1] == 9
    assert "classifier head starts from random weights" in caplog.text
    np.testing.assert_array_equal(np.asarray(other.encoder(batch)["sequence_output"]),
                                  np.asarray(same.encoder(batch)["sequence_output"]))


def test_save_pretrained_round_trip_loads_in_transformers(parity, tmp_path):
    ours = RuBertTokenClassifier.from_pretrained(parity["dir"])
    out = str(tmp_path / "ours")
    ours.save_pretrained(out)
    assert {"config.json", "model.safetensors", "vocab.txt"} <= set(os.listdir(out))
    reloaded, info = transformers.BertForTokenClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert reloaded.config.id2label == dict(enumerate(TAGS))
    assert json.load(open(os.path.join(out, "config.json")))["architectures"] == ["BertForTokenClassification"]
    batch = RuBertTokenizer.from_pretrained(out)(TEXTS, max_length=64, padding="longest")
    np.testing.assert_array_equal(torch_logits(reloaded.eval(), batch), torch_logits(parity["torch"], batch))
    again = RuBertTokenClassifier.from_pretrained(out)
    assert again.labels == TAGS
    np.testing.assert_array_equal(np.asarray(again(batch)["logits"]), np.asarray(ours(batch)["logits"]))


# ---- alignment: labels on the first sub-token of each word, as HF's word_ids() -----------------

@pytest.mark.parametrize("max_length", [128, 12])
def test_first_sub_token_alignment_equals_hf_word_ids(tokenizer, hf_tokenizer, max_length):
    features, word_index = encode_words(tokenizer, HARD_SENTENCES, max_length=max_length)
    mask = features["padding_mask"].astype(bool)
    encoding = hf_tokenizer(HARD_SENTENCES, is_split_into_words=True, truncation=True, max_length=max_length)
    for row, words in enumerate(HARD_SENTENCES):
        assert features["token_ids"][row][mask[row]].tolist() == encoding["input_ids"][row], words
        hf_first, previous = [], None
        for word in encoding.word_ids(row):
            hf_first.append(word if word is not None and word != previous else -1)
            previous = word
        ours = word_index[row][: mask[row].sum()].tolist()
        assert ours == hf_first, (words, ours, hf_first)
        assert (word_index[row][~mask[row]] == -1).all()
    if max_length == 128:
        # The zero-width word has no token; every other word has exactly one first sub-token.
        for row, words in enumerate(HARD_SENTENCES):
            placed = sorted(i for i in word_index[row] if i >= 0)
            assert placed == [i for i, w in enumerate(words) if w != "\u200b"]
    else:
        assert (word_index >= 0).sum(1).max() < 10  # truncation dropped words


def test_pipeline_labels_sit_on_first_sub_tokens(tokenizer):
    tag_ids = [[(3 * row + i) % 7 for i in range(len(words))] for row, words in enumerate(HARD_SENTENCES)]
    (features, labels), = list(ner_dataset(tokenizer, HARD_SENTENCES, tag_ids, batch_size=8, max_length=12))
    _, word_index = encode_words(tokenizer, HARD_SENTENCES, max_length=12)
    labels = labels.numpy()
    width = word_index.shape[1]
    for row in range(len(HARD_SENTENCES)):
        expected = np.full(labels.shape[1], IGNORE_INDEX)
        for position, word in enumerate(word_index[row]):
            if word >= 0:
                expected[position] = tag_ids[row][word]
        assert labels[row].tolist() == expected.tolist()
    assert labels.shape[1] == 16 and width == 12  # longest row (12) rounded up to a multiple of 8


def test_tag_words_gives_o_to_words_without_tokens(parity):
    ours = RuBertTokenClassifier.from_pretrained(parity["dir"])
    sentence = ["Москва", "\u200b", "Россия"] + ["слово"] * 20
    tags = ours.tag_words([sentence], max_length=8)[0]
    _, word_index = encode_words(ours.tokenizer, [sentence], max_length=8)
    placed = set(word_index[0][word_index[0] >= 0].tolist())
    assert 1 not in placed and len(placed) < 8  # the zero-width word and the truncated tail
    assert len(tags) == len(sentence)
    assert all(tag == "O" for i, tag in enumerate(tags) if i not in placed)


# ---- pipeline: padding, -100, determinism -------------------------------------------------------

@pytest.fixture(scope="module")
def factrueval(shared_data):
    return os.path.join(shared_data, "factrueval2016", "dev.bio")


@pytest.fixture(scope="module")
def dev_sentences(factrueval):
    return read_conll(factrueval, strict=False)


def as_arrays(dataset):
    return [(x["token_ids"].numpy(), x["padding_mask"].numpy(), y.numpy()) for x, y in dataset]


def test_pipeline_pads_to_multiples_of_8_and_is_deterministic(tokenizer, dev_sentences):
    sentences = dev_sentences[:60]
    words = [s["tokens"] for s in sentences]
    tag_ids = [[TAGS.index(t) for t in s["tags"]] for s in sentences]

    plain = as_arrays(ner_dataset(tokenizer, words, tag_ids, batch_size=8, max_length=40))
    assert len(plain) == 8 and sum(len(ids) for ids, _, _ in plain) == 60
    for ids, mask, labels in plain:
        width = ids.shape[1]
        assert width % 8 == 0 and width <= 40
        assert width - 8 < mask.sum(1).max() <= width  # padded to its own longest row, rounded up
        assert (labels[mask == 0] == IGNORE_INDEX).all() and (ids[mask == 0] == 0).all()
        assert (labels[:, 0] == IGNORE_INDEX).all()  # [CLS]
    # Unshuffled rows are the sentences in order, with the tags on the first sub-tokens.
    _, word_index = encode_words(tokenizer, words[:8], max_length=40)
    first = plain[0][2]
    for row in range(8):
        placed = word_index[row] >= 0
        assert first[row, : word_index.shape[1]][placed].tolist() == [tag_ids[row][w] for w in word_index[row][placed]]
        assert (first[row, : word_index.shape[1]][~placed] == IGNORE_INDEX).all()

    def epochs(seed, count=2):
        dataset = ner_dataset(tokenizer, words, tag_ids, batch_size=8, max_length=40, shuffle=True, seed=seed)
        return [as_arrays(dataset) for _ in range(count)]

    a, b, c = epochs(7), epochs(7), epochs(8)
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b)
        for (ids_a, _, labels_a), (ids_b, _, labels_b) in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(ids_a, ids_b)
            np.testing.assert_array_equal(labels_a, labels_b)

    def order(epoch):
        return [tuple(row[row > 0][:6]) for ids, _, _ in epoch for row in ids]

    assert order(a[0]) != order(a[1])  # reshuffled every epoch
    assert order(a[0]) != order(c[0])  # another seed, another order
    assert sorted(order(a[0])) == sorted(order(plain))  # the same examples


# ---- real data: reading -------------------------------------------------------------------------

def test_bad_bio_files_fail_with_file_and_line(tmp_path):
    cases = {"Иван B-PER\nв O\n\nИван B-PER\nМосква I-LOC\n": r"bad\.bio:5: malformed BIO: I-LOC follows B-PER",
             "Иван B-PER\nМосква X-LOC\n": r"bad\.bio:2: tag 'X-LOC' is not O, B-TYPE or I-TYPE",
             "Иван B-PER\nМосква\n": r"bad\.bio:2: expected 'token TAG'"}
    for content, message in cases.items():
        (tmp_path / "bad.bio").write_text(content, encoding="utf-8")
        with pytest.raises(DataError, match=message):
            NerTask().read(str(tmp_path / "bad.bio"), {"repair_bio": "X-LOC" in content or "Москва\n" in content})
    (tmp_path / "bad.bio").write_text("Иван B-PER\nМосква I-LOC\n", encoding="utf-8")
    assert NerTask().read(str(tmp_path / "bad.bio"), {"repair_bio": True})[0]["tags"] == ["B-PER", "B-LOC"]


def test_strict_reader_names_file_and_line_and_repair_reads_it(factrueval, dev_sentences):
    with pytest.raises(DataError, match=r"dev\.bio:18198: malformed BIO: I-PER follows O"):
        read_conll(factrueval)
    task = get_task("ner")
    with pytest.raises(DataError, match=r"dev\.bio:18198"):
        task.read(factrueval, {})
    repaired = task.read(factrueval, {"repair_bio": True})
    assert len(repaired) == len(dev_sentences) == 1769
    hit = next(s for s in repaired if s["_line"] <= 18198 < s["_line"] + len(s["tokens"]))
    offset = 18198 - hit["_line"]
    assert hit["tokens"][offset - 1:offset + 2] == ["Мари", "Ле", "Пен"]
    assert hit["tags"][offset - 1:offset + 2] == ["O", "B-PER", "I-PER"]
    assert infer_labels(s["tags"] for s in repaired) == TAGS
    assert NerTask().model_kwargs(repaired, {"labels": "O,B-PER,I-PER"}) == {"labels": ["O", "B-PER", "I-PER"]}
    with pytest.raises(DataError, match=r"dev\.bio:4: tag 'B-LOC' is not one of the model's labels"):
        NerTask().tag_ids(repaired, ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"])


# ---- real data: fine-tune, evaluate, predict through the CLI ------------------------------------

def write_blocks(path, lines, blocks):
    with open(path, "w", encoding="utf-8") as f:
        for start, end in blocks:
            f.write("\n".join(lines[start:end]) + "\n\n")


@pytest.fixture(scope="module")
def finetuned(tiny_checkpoint, factrueval, tmp_path_factory):
    """Fine-tune the tiny checkpoint through `rubert-tf finetune ner` on 256 factRuEval sentences,
    among them the one with the malformed I-PER (so --repair-bio is needed), 3 x 16 steps."""
    with open(factrueval, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, start = [], None
    for number, line in enumerate(lines + [""]):
        if line.strip() and start is None:
            start = number
        elif not line.strip() and start is not None:
            blocks.append((start, number))
            start = None
    bad = next(i for i, (s, e) in enumerate(blocks) if s < 18198 <= e)
    root = tmp_path_factory.mktemp("ner")
    train, test, out = str(root / "train.bio"), str(root / "test.bio"), str(root / "model")
    write_blocks(train, lines, blocks[:255] + [blocks[bad]])
    write_blocks(test, lines, blocks[1500:1564])
    args = ["finetune", "ner", "--model", tiny_checkpoint, "--train", train, "--eval", test, "--out", out,
            "--epochs", "3", "--max-steps", "16", "--batch-size", "16", "--learning-rate", "1e-3",
            "--max-length", "64", "--seed", "0", "--no-progress"]
    return {"args": args, "train": train, "test": test, "out": out, "exit": cli.main(args + ["--repair-bio"])}


def test_finetune_cli_needs_repair_for_the_malformed_file(finetuned, capsys):
    assert finetuned["exit"] == 0
    capsys.readouterr()
    args = list(finetuned["args"])
    args[args.index("--out") + 1] += "_strict"  # another folder: the first one holds a model already
    assert cli.main(args) == 2  # the same command without --repair-bio
    error = capsys.readouterr().err
    assert "train.bio:" in error and "malformed BIO: I-PER follows O" in error and "--repair-bio" in error


def test_finetune_loss_falls(finetuned, tiny_checkpoint):
    assert finetuned["exit"] == 0
    metrics = json.load(open(os.path.join(finetuned["out"], "metrics.json")))
    task = NerTask()
    examples = task.read(finetuned["test"], {})
    tokenizer = RuBertTokenizer.from_pretrained(finetuned["out"])

    def held_out_loss(model):
        model.compile(loss=model.default_loss())
        data = task.dataset(model, tokenizer, examples, settings={"max_length": 64}, batch_size=16)
        return model.evaluate(data, verbose=0)

    keras.utils.set_random_seed(0)
    before = held_out_loss(RuBertTokenClassifier.from_pretrained(tiny_checkpoint, labels=TAGS))
    after = held_out_loss(RuBertTokenClassifier.from_pretrained(finetuned["out"]))
    print(f"\nheld-out loss {before:.4f} -> {after:.4f}; train loss {metrics['train_loss_first_epoch']:.4f} -> "
          f"{metrics['train_loss_last_epoch']:.4f}; P/R/F1 {metrics['precision']:.3f}/{metrics['recall']:.3f}/"
          f"{metrics['f1']:.3f}, word accuracy {metrics['word_accuracy']:.3f}")
    assert after < 0.7 * before
    assert metrics["train_loss_last_epoch"] < 0.8 * metrics["train_loss_first_epoch"]
    assert RuBertTokenClassifier.from_pretrained(finetuned["out"]).labels == TAGS


def test_evaluate_cli_equals_seqeval(finetuned, capsys):
    capsys.readouterr()
    assert cli.main(["evaluate", "ner", "--model", finetuned["out"], "--eval", finetuned["test"],
                     "--max-length", "64"]) == 0
    reported = json.loads(capsys.readouterr().out)
    model = RuBertTokenClassifier.from_pretrained(finetuned["out"])
    examples = read_conll(finetuned["test"])
    gold = [s["tags"] for s in examples]
    predicted = model.tag_words([s["tokens"] for s in examples], max_length=64)
    assert [len(p) for p in predicted] == [len(g) for g in gold]
    assert reported["precision"] == pytest.approx(seqeval.metrics.precision_score(gold, predicted, zero_division=0))
    assert reported["recall"] == pytest.approx(seqeval.metrics.recall_score(gold, predicted, zero_division=0))
    assert reported["f1"] == pytest.approx(seqeval.metrics.f1_score(gold, predicted, zero_division=0))
    assert reported["support"] == len(get_entities(gold)) > 50
    written = json.load(open(os.path.join(finetuned["out"], "metrics.json")))
    assert reported["f1"] == pytest.approx(written["f1"]) and reported["word_accuracy"] == pytest.approx(
        written["word_accuracy"])


def noisy_tags(gold):
    """The gold tags with deterministic mistakes of every kind (what a poor model would answer)."""
    out = []
    for row, tags in enumerate(gold):
        tags = list(tags)
        for i in range(len(tags)):
            k = (7 * row + 3 * i) % 11
            if k == 0:
                tags[i] = "O"
            elif k == 1 and tags[i] != "O":
                tags[i] = tags[i][:2] + ("PER" if tags[i][2:] != "PER" else "LOC")
            elif k == 2:
                tags[i] = "I-ORG"
            elif k == 3 and tags[i].startswith("I-"):
                tags[i] = "B-" + tags[i][2:]
        out.append(tags)
    return out


HAND_MADE = [
    (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-ORG"]),
    (["O", "I-ORG", "I-ORG", "O"], ["O", "B-ORG", "I-ORG", "O"]),
    (["B-LOC", "B-LOC", "I-LOC"], ["B-LOC", "I-LOC", "I-LOC"]),
    (["B-PER", "I-LOC", "O"], ["B-PER", "O", "O"]),
    (["O", "O"], ["B-PER", "O"]),
    (["B-ORG", "I-ORG", "I-ORG"], ["B-ORG", "I-ORG", "O"]),
    (["I-PER", "B-PER", "I-PER", "I-LOC"], ["I-PER", "B-PER", "I-PER", "I-LOC"]),
    ([], []),
]


def test_metrics_and_evaluate_match_seqeval(dev_sentences, monkeypatch):
    gold = [g for g, _ in HAND_MADE]
    predicted = [p for _, p in HAND_MADE]
    scores = entity_scores(gold, predicted)
    assert scores["precision"] == pytest.approx(seqeval.metrics.precision_score(gold, predicted))
    assert scores["recall"] == pytest.approx(seqeval.metrics.recall_score(gold, predicted))
    assert scores["f1"] == pytest.approx(seqeval.metrics.f1_score(gold, predicted))

    examples = dev_sentences[:300]
    gold = [s["tags"] for s in examples]
    predicted = noisy_tags(gold)
    calls = []

    def tag_words(model, sentences, settings=None, batch_size=32):  # the postprocessor's word tags, noisy
        calls.append((model, [list(words) for words in sentences], settings.max_length, batch_size))
        return predicted

    monkeypatch.setattr(ner_processing, "tag_words", tag_words)
    metrics = NerTask().evaluate("model", examples, settings={"max_length": 64}, batch_size=32)
    assert calls == [("model", [s["tokens"] for s in examples], 64, 32)]
    assert 0.2 < metrics["f1"] < 0.95
    assert metrics["precision"] == pytest.approx(seqeval.metrics.precision_score(gold, predicted))
    assert metrics["recall"] == pytest.approx(seqeval.metrics.recall_score(gold, predicted))
    assert metrics["f1"] == pytest.approx(seqeval.metrics.f1_score(gold, predicted))
    report = seqeval.metrics.classification_report(gold, predicted, output_dict=True)
    for entity_type in ("LOC", "ORG", "PER"):
        assert metrics[f"{entity_type}_precision"] == pytest.approx(report[entity_type]["precision"])
        assert metrics[f"{entity_type}_recall"] == pytest.approx(report[entity_type]["recall"])
        assert metrics[f"{entity_type}_f1"] == pytest.approx(report[entity_type]["f1-score"])
        assert metrics[f"{entity_type}_support"] == report[entity_type]["support"]


class FixedTags:
    """Stands in for the head: logits that give the first piece of each word of `text` its tag in
    `word_tags` (pieces found here as CoNLL words are: a piece and its "##" continuations)."""

    def __init__(self, tokenizer, text, word_tags):
        self.tokenizer, self.labels = tokenizer, TAGS
        ids = tokenizer.tokenize(tf.constant([text]))[0].numpy()
        starts = [i for i, token_id in enumerate(ids) if not tokenizer.id_to_token(token_id).startswith("##")]
        assert len(starts) == len(word_tags)
        by_position = np.zeros(len(ids) + 2, np.int32)  # [CLS] text [SEP]
        by_position[np.array(starts) + 1] = [TAGS.index(tag) for tag in word_tags]
        self.by_position = tf.constant(by_position)

    def _require_tokenizer(self):
        return self.tokenizer

    def __call__(self, features, training=False):
        width = tf.shape(features["token_ids"])[1]
        return {"logits": tf.one_hot(self.by_position[None, :width], len(TAGS))}


def test_extract_entities_offsets_point_into_the_original_text(finetuned):
    model = RuBertTokenClassifier.from_pretrained(finetuned["out"])
    text = "  Жан-Мари Ле\u00a0Пен  приехал в «Нью-Йорк»,\u200bа Мос\u200bква — нет. "
    result = model.extract_entities(text)
    words = [w["text"] for w in result["words"]]
    assert words == ["Жан", "-", "Мари", "Ле", "Пен", "приехал", "в", "«", "Нью", "-", "Йорк", "»", ",", "а",
                     "Мос\u200bква", "—", "нет", "."]
    for item in result["words"] + result["entities"]:
        assert text[item["start"]:item["end"]] == item["text"]
    assert all(w["tag"] in TAGS for w in result["words"])

    # Entity spans run from the first word's start to the last word's end, gaps included.
    tags = ["B-PER", "I-PER", "I-PER", "I-PER", "I-PER", "O", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O", "O", "O",
            "B-LOC", "O", "O", "O"]
    entities = extract_entities(FixedTags(model.tokenizer, text, tags), text)["entities"]
    assert [(e["text"], e["label"]) for e in entities] == [("Жан-Мари Ле\u00a0Пен", "PER"), ("Нью-Йорк", "LOC"),
                                                          ("Мос\u200bква", "LOC")]
    for entity in entities:
        assert text[entity["start"]:entity["end"]] == entity["text"]


def test_predict_cli_prints_json(finetuned, monkeypatch, capsys):
    text = "Встреча с послом Италии в Москве"
    executable = shutil.which("rubert-tf", path=os.path.dirname(sys.executable))
    command = [executable] if executable else [sys.executable, "-m", "rubert_tf.cli"]
    done = subprocess.run(command + ["predict", "ner", "--model", finetuned["out"], text],
                          capture_output=True, text=True, timeout=240, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["text"] == text
    assert [w["text"] for w in result["words"]] == text.split()
    for item in result["words"] + result["entities"]:
        assert text[item["start"]:item["end"]] == item["text"]
    for entity in result["entities"]:
        assert set(entity) == {"text", "label", "start", "end"}

    # stdin, one text a line, and a pre-split {"tokens": [...]} line.
    monkeypatch.setattr(sys, "stdin", io.StringIO(
        "Путин прилетел в Минск\n" + json.dumps({"tokens": ["Путин", "прилетел", "в", "Минск"]}) + "\n"))
    capsys.readouterr()
    assert cli.main(["predict", "ner", "--model", finetuned["out"]]) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [w["tag"] for w in first["words"]] == second["tags"]
    assert second["tokens"] == ["Путин", "прилетел", "в", "Минск"]


# ---- served == eager: the exported SavedModel answers as extract_entities does ------------------

# IOBES and bare tags, where the old served graph and scoring disagreed (S- I-, E- I-, bare types);
# bare names whose first letter is no prefix letter, so seqeval decodes them too (see test_ner_decoding).
SERVED_TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "GPE", "MISC"]


@pytest.fixture(scope="module")
def served(tiny_checkpoint, dev_sentences, tmp_path_factory):
    """A random token classifier with SERVED_TAGS (head weights scaled up, so the tags vary from word to
    word), exported with its serving module and loaded back; texts: factRuEval sentences, words joined
    by spaces."""
    keras.utils.set_random_seed(5)
    model = RuBertTokenClassifier.from_pretrained(tiny_checkpoint, labels=SERVED_TAGS)
    head = model.get_layer("classifier")
    head.kernel.assign(np.random.RandomState(0).normal(size=head.kernel.shape).astype("float32"))
    settings = {"max_length": 64}
    module = NerTask().serving_module(model, model.tokenizer, settings)
    directory = str(tmp_path_factory.mktemp("ner_saved_model"))
    tf.saved_model.save(module, directory, signatures=module.serving_functions)
    texts = [" ".join(s["tokens"]) for s in dev_sentences[:48]]
    signature = tf.saved_model.load(directory).signatures["serving_default"]
    outputs = [{key: value.numpy() for key, value in signature(text=tf.constant(texts[i:i + 16])).items()}
               for i in range(0, len(texts), 16)]
    return {"model": model, "settings": settings, "texts": texts, "outputs": outputs}


def test_saved_model_equals_extract_entities_on_real_sentences(served):
    texts = served["texts"]
    eager = extract_entities(served["model"], texts, served["settings"], batch_size=16)
    assert served["model"].extract_entities(texts, max_length=64, batch_size=16) == eager
    entities = words = 0
    for batch, outputs in enumerate(served["outputs"]):
        for row in range(len(outputs["entity_count"])):
            text, expected = texts[16 * batch + row], eager[16 * batch + row]
            count = outputs["entity_count"][row]
            got = [{"start": int(outputs["entity_start"][row][i]), "end": int(outputs["entity_end"][row][i]),
                    "label": outputs["entity_label"][row][i].decode()} for i in range(count)]
            assert got == [{"start": e["start"], "end": e["end"], "label": e["label"]} for e in expected["entities"]]
            tags = [tag.decode() for tag in outputs["tags"][row] if tag]
            assert tags == [w["tag"] for w in expected["words"]]
            spans = list(zip(outputs["word_start"][row], outputs["word_end"][row]))[:outputs["word_count"][row]]
            assert [(int(s), int(e)) for s, e in spans] == [(w["start"], w["end"]) for w in expected["words"]]
            assert all(text[w["start"]:w["end"]] == w["text"] for w in expected["words"] + expected["entities"])
            entities, words = entities + count, words + len(tags)
    print(f"\nserved == eager on {len(texts)} factRuEval sentences: {words} words, {entities} entities")
    assert entities > 50


def test_served_entities_are_seqevals_of_its_word_tags(served):
    """The cross-check that failed before: the served graph read S-/E- as B-/I- and bare tags as O."""
    patterns = collections.Counter()
    for outputs in served["outputs"]:
        for row in range(len(outputs["entity_count"])):
            tags = [tag.decode() for tag in outputs["word_tag"][row][:outputs["word_count"][row]]]
            count = outputs["entity_count"][row]
            got = [(label.decode(), int(first), int(last)) for label, first, last in zip(
                outputs["entity_label"][row][:count], outputs["entity_first_word"][row][:count],
                outputs["entity_last_word"][row][:count])]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # seqeval warns that bare tags "seem not to be NE tags"
                found = seqeval_entities(tags)
            # seqeval names a bare type without its first letter ("GPE" -> "PE"); the full name is ours.
            expected = [(tags[s] if "-" not in tags[s] else t, s, e) for t, s, e in found]
            assert got == expected == get_entities(tags)
            for previous, tag in zip(["O"] + tags, tags):
                patterns["bare"] += "-" not in tag and tag != "O"
                patterns["S/E then I/E"] += previous[:2] in ("S-", "E-") and tag[:2] in ("I-", "E-")
    print(f"\nword tag patterns the old served graph decoded differently: {dict(patterns)}")
    assert patterns["bare"] > 20 and patterns["S/E then I/E"] > 20


def test_texts_and_sentences_without_words(served):
    model = served["model"]
    assert extract_entities(model, ["", "  \u200b ", "Москва"], served["settings"])[:2] == [
        {"words": [], "entities": []}, {"words": [], "entities": []}]
    assert extract_entities(model, []) == []
    tags = model.tag_words([[], ["\u200b"], ["Москва", "\u200b"]])
    assert tags[:2] == [[], ["O"]] and len(tags[2]) == 2 and tags[2][1] == "O"
    with pytest.raises(TypeError, match="text 1: expected str"):
        extract_entities(model, ["Москва", 5])
