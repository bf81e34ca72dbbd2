"""RuBertSentenceEncoder and the `sentence` task: pooling parity with transformers (sentence-transformers'
mean pooling and rubert-tiny2's CLS + normalize), in-batch-negatives training through plain `fit`,
`finetune("sentence", ...)` and the CLI, and the save/load round trip of the pooling choice."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import torch
import transformers
from reference_models import DATA, SMALL, TINY2_DIR, save_safetensors, torch_model
from tokenizers import Tokenizer

from rubert_tf.cli import main as cli_main
from rubert_tf.config import RuBertConfig
from rubert_tf.data.readers import DataError
from rubert_tf.data.sentence import pair_dataset
from rubert_tf.finetune import finetune
from rubert_tf.models.sentence_encoder import RuBertSentenceEncoder
from rubert_tf.tasks import get_task
from rubert_tf.tasks.sentence import MultipleNegativesRankingLoss, SentenceEmbeddingTask, retrieval_scores
from rubert_tf.training import create_optimizer

# Russian sentences of very different lengths: every batch below is padded.
SENTENCES = [
    "Иван вчера не позвонил.",
    "Москва — столица России, а Волга — самая длинная река Европы.",
    "Среди некоторых членов Национальной ассамблеи зреет недовольство предложением принять для их "
    "наименования аббревиатуру MWP.",
    "Привет!",
    "Проблематичное решение связано с планами изменить название Ассамблеи на Парламент Уэльса.",
]


def ntrex_pairs(count):
    """Real NTREX sentences paired with a perturbed copy (every third word dropped, lower-cased)."""
    with open(os.path.join(DATA, "ntrex-en-ru", "train.ru"), encoding="utf-8") as f:
        lines = [line.strip() for line in f if len(line.split()) >= 6][:count]
    perturbed = [" ".join(w for i, w in enumerate(line.split()) if i % 3 != 1).lower() for line in lines]
    return lines, perturbed


def write_tsv(path, anchors, positives, columns=("ru", "ru_perturbed")):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(columns) + "\n")
        for a, p in zip(anchors, positives):
            f.write(f"{a}\t{p}\n")
    return str(path)


# ---- parity with transformers -------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A random-weight transformers BertModel with rubert-tiny2's full vocab, saved with save_pretrained."""
    model = torch_model("BertModel", dict(SMALL, vocab_size=83828), seed=3)
    directory = save_safetensors(model, str(tmp_path_factory.mktemp("st_reference")))
    # rubert-tiny2 is cased: its tokenizer_config.json says so (without it HF's default is lowercasing).
    shutil.copy(os.path.join(TINY2_DIR, "tokenizer_config.json"), directory)
    return model, directory


def torch_sentence_embeddings(model, texts, pooling):
    """The sentence-transformers way: HF tokenizer, BertModel, masked mean (or [CLS]), L2 normalize."""
    tokenizer = Tokenizer.from_file(os.path.join(TINY2_DIR, "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    assert int(mask.sum(1).min()) < ids.shape[1], "the reference batch must be padded"
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        if pooling == "mean":
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
        else:
            pooled = hidden[:, 0]
        return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_pooling_matches_transformers_reference(reference, pooling):
    torch_bert, directory = reference
    model = RuBertSentenceEncoder.from_pretrained(directory, pooling=pooling)
    assert model.pooling == pooling and model.tokenizer is not None
    ours = model.encode(SENTENCES)
    expected = torch_sentence_embeddings(torch_bert, SENTENCES, pooling)
    assert ours.shape == expected.shape == (len(SENTENCES), SMALL["hidden_size"])
    assert np.max(np.abs(ours - expected)) < 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Padding never leaks in: each sentence alone (no padding) gives the same vector as in the batch.
    alone = np.stack([model.encode(text) for text in SENTENCES])
    assert np.max(np.abs(alone - ours)) < 1e-5


def test_similarity_is_cosine_by_hand(reference):
    _, directory = reference
    model = RuBertSentenceEncoder.from_pretrained(directory, pooling="mean", normalize=False)
    raw = model.encode(SENTENCES)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)  # unnormalised embeddings really differ
    a, b = SENTENCES[:2], SENTENCES[2:]
    by_hand = np.array([[np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for y in raw[2:]] for x in raw[:2]])
    similarity = model.similarity(a, b)
    assert similarity.shape == (2, 3)
    np.testing.assert_allclose(similarity, by_hand, atol=1e-6)


# ---- save / load -------------------------------------------------------------------------------

def test_save_pretrained_round_trip_keeps_embeddings_and_pooling(tiny_checkpoint, tmp_path):
    model = RuBertSentenceEncoder.from_pretrained(tiny_checkpoint, pooling="cls")
    before = model.encode(SENTENCES)
    out = str(tmp_path / "saved")
    model.save_pretrained(out)
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["pooling"] == "cls" and config["normalize"] is True
    assert config["architectures"] == ["BertModel"]

    loaded = RuBertSentenceEncoder.from_pretrained(out)  # no pooling argument: the saved choice
    assert loaded.pooling == "cls" and loaded.normalize is True
    np.testing.assert_allclose(loaded.encode(SENTENCES), before, atol=1e-6)
    assert RuBertSentenceEncoder(loaded.config, pooling="mean").pooling == "mean"  # an explicit choice wins
    # A checkpoint without the key (a plain BertModel) gets mean pooling, as sbert_large_nlu_ru.
    plain = RuBertConfig.from_pretrained(tiny_checkpoint)
    assert "pooling" not in plain.extra and RuBertSentenceEncoder(plain).pooling == "mean"

    # transformers reads the saved directory as a BertModel; CLS + normalize there equals ours.
    torch_bert = transformers.BertModel.from_pretrained(out).eval()
    expected = torch_sentence_embeddings(torch_bert, SENTENCES, "cls")
    assert np.max(np.abs(before - expected)) < 1e-5

    with pytest.raises(ValueError, match="pooling must be one of"):
        RuBertSentenceEncoder(model.config, pooling="max")


# ---- the loss and the pipeline -------------------------------------------------------------------

def test_multiple_negatives_ranking_loss_matches_numpy():
    rng = np.random.default_rng(0)
    count, hidden, scale = 6, 8, 20.0
    embeddings = rng.normal(size=(2 * count, hidden)).astype("float32")
    labels = np.arange(count)
    loss = float(MultipleNegativesRankingLoss(scale=scale)(labels, embeddings))

    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    logits = scale * unit[:count] @ unit[count:].T
    log_softmax = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    expected = -np.mean(log_softmax[labels, labels])
    assert abs(loss - expected) < 1e-4

    backward = logits.T - np.log(np.exp(logits.T).sum(1, keepdims=True))
    symmetric = float(MultipleNegativesRankingLoss(scale=scale, symmetric=True)(labels, embeddings))
    assert abs(symmetric - (expected - np.mean(np.diag(backward))) / 2) < 1e-4
    config = MultipleNegativesRankingLoss(scale=5.0, symmetric=True).get_config()
    assert config["scale"] == 5.0 and config["symmetric"] is True


def test_pair_dataset_puts_anchors_then_positives_in_one_batch(tiny_checkpoint):
    from rubert_tf.tokenizer import RuBertTokenizer

    tokenizer = RuBertTokenizer.from_pretrained(tiny_checkpoint)
    anchors, positives = SENTENCES[:3], ["Да.", "Нет, не так.", "Москва"]
    features, labels = next(iter(pair_dataset(tokenizer, anchors, positives, batch_size=3, max_length=64)))
    assert features["token_ids"].shape[0] == 6 and features["token_ids"].shape[1] % 8 == 0
    assert labels.numpy().tolist() == [0, 1, 2]
    expected = tokenizer(anchors + positives, max_length=64, padding="longest")
    width = expected["token_ids"].shape[1]
    for key in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(features[key].numpy()[:, :width], expected[key].numpy())
        assert not features[key].numpy()[:, width:].any()
    with pytest.raises(ValueError, match="3 anchors but 2 positives"):
        pair_dataset(tokenizer, anchors, positives[:2], batch_size=2)


def test_retrieval_scores_by_hand():
    anchors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    positives = np.array([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0]])
    scores = retrieval_scores(anchors, positives, positives=["a", "b", "c"])
    cos = lambda x, y: np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y)  # noqa: E731
    ranks = [1 + sum(cos(anchors[i], positives[j]) > cos(anchors[i], positives[i]) for j in range(3) if j != i)
             for i in range(3)]
    assert ranks == [2, 3, 2]
    assert scores["mrr"] == pytest.approx(np.mean([1 / r for r in ranks]))
    assert scores["accuracy_at_1"] == pytest.approx(np.mean([r == 1 for r in ranks]))
    assert scores["mean_cosine_positive"] == pytest.approx(np.mean([cos(anchors[i], positives[i]) for i in range(3)]))
    # A duplicate positive text is not a competitor.
    duplicate = retrieval_scores(anchors[:2], np.array([[0.0, 1.0], [0.0, 1.0]]), positives=["x", "x"])
    assert duplicate["accuracy_at_1"] == 1.0


# ---- training ----------------------------------------------------------------------------------

def test_in_batch_negatives_training_lowers_loss_and_raises_accuracy(tiny_checkpoint):
    anchors, positives = ntrex_pairs(64)
    rows = [{"text": a, "text_pair": p, "_line": i} for i, (a, p) in enumerate(zip(anchors, positives), 2)]
    task = SentenceEmbeddingTask()
    keras.utils.set_random_seed(0)
    model = RuBertSentenceEncoder.from_pretrained(tiny_checkpoint)
    before = task.evaluate(model, rows, {"max_length": 64}, batch_size=32)

    data = task.dataset(model, model.tokenizer, rows, {"max_length": 64}, batch_size=16, shuffle=True, seed=0)
    steps = 30
    model.compile(optimizer=create_optimizer(3e-4, steps, 0.1, 0.01), loss=task.loss(model), jit_compile=False)
    history = model.fit(data.repeat(), epochs=3, steps_per_epoch=steps // 3, shuffle=False, verbose=0)
    losses = history.history["loss"]
    after = task.evaluate(model, rows, {"max_length": 64}, batch_size=32)
    print("losses", losses, "before", before, "after", after)

    assert losses[-1] < 0.7 * losses[0]
    assert after["accuracy_at_1"] > before["accuracy_at_1"] and after["mrr"] > before["mrr"]
    # True pairs pull apart from random pairs.
    assert after["mean_cosine_positive"] - after["mean_cosine_random"] > \
        before["mean_cosine_positive"] - before["mean_cosine_random"]


def test_finetune_sentence_end_to_end(tiny_checkpoint, tmp_path):
    anchors, positives = ntrex_pairs(48)
    train = str(tmp_path / "pairs.jsonl")
    with open(train, "w", encoding="utf-8") as f:
        for a, p in zip(anchors, positives):
            f.write(json.dumps({"ru": a, "paraphrase": p}, ensure_ascii=False) + "\n")
    options = {"text_column": "ru", "text_pair_column": "paraphrase"}
    task = get_task("sentence")
    examples = task.read(train, options)
    before = task.evaluate(RuBertSentenceEncoder.from_pretrained(tiny_checkpoint), examples, {"max_length": 64}, 32)

    out = str(tmp_path / "model")
    metrics = finetune("sentence", model=tiny_checkpoint, train=train, eval=train, out=out, options=options,
                       epochs=3, batch_size=16, learning_rate=3e-4, max_length=64, verbose=0)
    print("before", before, "metrics", metrics)
    assert metrics["train_loss_last_epoch"] < metrics["train_loss_first_epoch"]
    assert metrics["accuracy_at_1"] > before["accuracy_at_1"]
    assert metrics["num_pairs"] == 48
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["accuracy_at_1"] == metrics["accuracy_at_1"]

    reloaded = RuBertSentenceEncoder.from_pretrained(out)
    again = get_task("sentence").evaluate(reloaded, examples, {"max_length": 64}, 32)
    assert again["mrr"] == pytest.approx(metrics["mrr"], abs=1e-6)


def test_cli_finetune_evaluate_predict(tiny_checkpoint, tmp_path, capsys):
    anchors, positives = ntrex_pairs(32)
    train = write_tsv(tmp_path / "pairs.tsv", anchors, positives)
    out = str(tmp_path / "cli_model")
    code = cli_main(["finetune", "sentence", "--model", tiny_checkpoint, "--train", train, "--eval", train,
                     "--out", out, "--text-column", "ru", "--text-pair-column", "ru_perturbed", "--pooling", "cls",
                     "--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--learning-rate", "3e-4",
                     "--max-length", "64",
                     "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    metrics = json.loads(printed[printed.index("{"):])
    assert 0.0 <= metrics["accuracy_at_1"] <= 1.0 and metrics["num_pairs"] == 32
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["pooling"] == "cls"

    assert cli_main(["evaluate", "sentence", "--model", out, "--eval", train, "--max-length", "64",
                     "--text-column", "ru", "--text-pair-column", "ru_perturbed"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["mrr"] == pytest.approx(metrics["mrr"], abs=1e-6)

    pair = json.dumps({"text": anchors[0], "text_pair": positives[0]}, ensure_ascii=False)
    code = cli_main(["predict", "sentence", "--model", out, "Привет, мир!", pair])
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["Привет, мир!", anchors[0]]
    first = np.array(lines[0]["embedding"])
    assert first.shape == (64,) and abs(np.linalg.norm(first) - 1) < 1e-5
    a, b = np.array(lines[1]["embedding"]), np.array(lines[1]["embedding_pair"])
    assert lines[1]["cosine"] == pytest.approx(float(a @ b), abs=1e-5)
    model = RuBertSentenceEncoder.from_pretrained(out)
    np.testing.assert_allclose(first, model.encode("Привет, мир!"), atol=1e-5)

    # Bad data: the CLI names the file and line.
    bad = write_tsv(tmp_path / "bad.tsv", ["Да", "  "], ["Нет", "Может быть"])
    assert cli_main(["evaluate", "sentence", "--model", out, "--eval", bad, "--text-column", "ru",
                     "--text-pair-column", "ru_perturbed"]) == 2
    assert f"{bad}:3: empty text in column 'ru'" in capsys.readouterr().err


def test_sentence_task_read_errors_name_file_and_line(tmp_path):
    task = SentenceEmbeddingTask()
    path = write_tsv(tmp_path / "pairs.tsv", ["Да", "Нет"], ["Yes", "No"], columns=("ru", "en"))
    rows = task.read(path, {"text_column": "ru", "text_pair_column": "en"})
    assert [(r["text"], r["text_pair"], r["_line"]) for r in rows] == [("Да", "Yes", 2), ("Нет", "No", 3)]
    with pytest.raises(DataError, match=r"pairs\.tsv:2: missing column 'english'"):
        SentenceEmbeddingTask().read(path, {"text_column": "ru", "text_pair_column": "english"})
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text('{"text": "Да", "text_pair": "Yes"}\n{"text": "Нет", "text_pair": 5}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: column 'text_pair' must be text"):
        SentenceEmbeddingTask().read(str(jsonl), {})


def test_sentence_task_reads_tfds_translation_pairs():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        rows = SentenceEmbeddingTask().read("tfds:ted_hrlr_translate/ru_to_en:validation",
                                            {"text_column": "ru", "text_pair_column": "en"})
    assert len(rows) == 4 and [r["_line"] for r in rows] == [1, 2, 3, 4]
    assert all(isinstance(r["text"], str) and isinstance(r["text_pair"], str) for r in rows)


def test_served_embeddings_equal_encode_on_real_sentences(tiny_checkpoint, tmp_path):
    """The exported SavedModel (loaded as TF Serving would) and `encode` run the same graph: on 64 real
    NTREX sentences, fine-tuning's stored max_length applies to both, and the vectors are equal."""
    import tensorflow as tf

    import rubert_tf as rt

    texts, _ = ntrex_pairs(64)
    model = RuBertSentenceEncoder.from_pretrained(tiny_checkpoint)
    model.config.extra["task_settings"] = {"task": "sentence", "max_length": 16}  # as finetune stores it
    path = rt.export(model, base_path=str(tmp_path / "sentences"), warmup=False)
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))["embedding"].numpy()
    eager = model.encode(texts, batch_size=len(texts))
    difference = float(np.abs(served - eager).max())
    print(f"\nsentence served vs eager on {len(texts)} NTREX sentences: max |d| = {difference:.2e}")
    assert served.shape == eager.shape and difference == 0.0
    # max_length 16 really applies: a model told 512 embeds these long sentences differently.
    assert np.abs(model.encode(texts[:4], max_length=512) - eager[:4]).max() > 1e-3
