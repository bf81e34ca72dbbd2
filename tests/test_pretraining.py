"""MLM pretraining: in-graph masking statistics, corpus preparation (round trip, packing, bad UTF-8,
globs), a short real pretraining run on ruslit, and the prepare-corpus / pretrain CLI."""

import glob
import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf

import rubert_tf as rt
from rubert_tf import cli
from rubert_tf.data.pretraining import (IGNORE_LABEL, MaskedLMMasker, parse_records, pretraining_dataset,
                                        sentence_order_swap)
from rubert_tf.pretraining import prepare_corpus, pretrain

from conftest import SHARED_DATA, TINY2_DIR

RUSLIT = os.path.join(SHARED_DATA, "ruslit", "ruslit_train.txt")
SPECIAL_IDS = (0, 1, 2, 3, 4)  # [PAD] [UNK] [CLS] [SEP] [MASK] in RuBERT vocabularies
TINY_BODY = dict(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128)


@pytest.fixture(scope="module")
def ruslit_lines():
    with open(RUSLIT, encoding="utf-8") as f:
        return f.read().split("\n")


@pytest.fixture(scope="module")
def tiny2_tokenizer():
    return rt.RuBertTokenizer(os.path.join(TINY2_DIR, "vocab.txt"))


@pytest.fixture(scope="module")
def masking_batch(ruslit_lines, tiny2_tokenizer):
    """2,000 real lines (T=64) plus rows with literal special tokens and heavy padding."""
    texts = [line for line in ruslit_lines if line.strip()][:2000]
    texts += ["[UNK] и [MASK] , [SEP] не [CLS] маскируются", "Да.", ""] * 20
    return {k: v.numpy() for k, v in tiny2_tokenizer(texts, max_length=64).items()}


def _apply(masker, batch, seed):
    run = tf.function(lambda features, seed: masker(features, seed))
    features, labels = run({k: tf.constant(v) for k, v in batch.items()}, tf.constant(seed, tf.int64))
    return {k: v.numpy() for k, v in features.items()}, {k: v.numpy() for k, v in labels.items()}


def test_masking_statistics_in_the_graph(masking_batch, tiny2_tokenizer):
    ids, real = masking_batch["token_ids"], masking_batch["padding_mask"].astype(bool)
    maskable = real & ~np.isin(ids, SPECIAL_IDS)
    masker = MaskedLMMasker(tiny2_tokenizer)
    selected = masked_to = original = None
    totals = np.zeros(4)
    for seed in ([1, 2], [3, 4], [5, 6]):
        features, labels = _apply(masker, masking_batch, seed)
        labels, new = labels["logits"], features["token_ids"]
        selected = labels != IGNORE_LABEL
        # Labels exactly at the selected positions, equal to the original tokens; nothing else changes.
        assert not (selected & ~maskable).any(), "a special token or padding was selected"
        np.testing.assert_array_equal(labels[selected], ids[selected])
        np.testing.assert_array_equal(new[~selected], ids[~selected])
        np.testing.assert_array_equal(features["segment_ids"], masking_batch["segment_ids"])
        changed = new[selected]
        assert not np.isin(changed[changed != tiny2_tokenizer.mask_id], SPECIAL_IDS).any()
        totals += [selected.sum(), (changed == tiny2_tokenizer.mask_id).sum(),
                   ((changed != tiny2_tokenizer.mask_id) & (changed != ids[selected])).sum(),
                   (changed == ids[selected]).sum()]
    rate = totals[0] / (3 * maskable.sum())
    to_mask, to_random, unchanged = totals[1:] / totals[0]
    print(f"\nmasking over {3 * maskable.sum()} maskable tokens: selected {rate:.4f}, of those [MASK] {to_mask:.4f}, "
          f"random {to_random:.4f}, unchanged {unchanged:.4f}")
    assert abs(rate - 0.15) < 0.004
    assert abs(to_mask - 0.8) < 0.015
    assert abs(to_random - 0.1) < 0.012
    assert abs(unchanged - 0.1) < 0.012  # includes the ~0.001% random draws of the same token

    # mask_positions mode: the same selection (same seed), as positions [B, P] and labels [B, P].
    dense_features, dense_labels = _apply(masker, masking_batch, [5, 6])
    gathered = MaskedLMMasker(tiny2_tokenizer, max_predictions=12)
    features, labels = _apply(gathered, masking_batch, [5, 6])
    np.testing.assert_array_equal(features["token_ids"], dense_features["token_ids"])
    positions, targets = features["mask_positions"], labels["logits"]
    assert positions.shape == targets.shape == (len(ids), 12)
    valid = targets != IGNORE_LABEL
    rows = np.repeat(np.arange(len(ids))[:, None], 12, axis=1)
    dense_selected = dense_labels["logits"] != IGNORE_LABEL
    assert valid.sum(axis=1).tolist() == dense_selected.sum(axis=1).tolist()
    assert dense_selected[rows[valid], positions[valid]].all()
    np.testing.assert_array_equal(targets[valid], ids[rows[valid], positions[valid]])


def test_whole_word_masking_masks_all_pieces_of_a_word(masking_batch, tiny2_tokenizer):
    ids, real = masking_batch["token_ids"], masking_batch["padding_mask"].astype(bool)
    maskable = real & ~np.isin(ids, SPECIAL_IDS)
    continuation = np.array([t.startswith("##") for t in tiny2_tokenizer.vocabulary])[ids] & maskable
    continuation[:, 1:] &= maskable[:, :-1]
    continuation[:, 0] = False
    masker = MaskedLMMasker(tiny2_tokenizer, whole_word=True)
    features, labels = _apply(masker, masking_batch, [7, 8])
    selected = labels["logits"] != IGNORE_LABEL
    # A continuation piece is selected exactly when the piece before it is.
    assert (selected[:, 1:][continuation[:, 1:]] == selected[:, :-1][continuation[:, 1:]]).all()
    multi_piece_selected = (selected[:, 1:] & continuation[:, 1:]).sum()
    rate = selected.sum() / maskable.sum()
    print(f"\nwhole-word masking: selected {rate:.4f} of maskable tokens, {multi_piece_selected} continuation pieces")
    assert multi_piece_selected > 500
    assert abs(rate - 0.15) < 0.006
    assert not (selected & ~maskable).any()


def test_sentence_order_swaps_segments_with_labels():
    # [CLS] 10 11 12 [SEP] 20 21 [SEP] pad | [CLS] 30 31 [SEP] pad (no B) | ...
    pair = [2, 10, 11, 12, 3, 20, 21, 3, 0]
    single = [2, 30, 31, 3, 0, 0, 0, 0, 0]
    ids = np.array([pair, single] * 200, dtype=np.int32)
    segments = np.array([[0, 0, 0, 0, 0, 1, 1, 1, 0], [0] * 9] * 200, dtype=np.int32)
    mask = (ids > 0).astype(np.int32)
    features, labels = tf.function(sentence_order_swap)(
        {"token_ids": ids, "segment_ids": segments, "padding_mask": mask}, tf.constant([1, 2], tf.int64))
    new_ids, new_segments, labels = features["token_ids"].numpy(), features["segment_ids"].numpy(), labels.numpy()
    assert (labels[1::2] == IGNORE_LABEL).all()
    np.testing.assert_array_equal(new_ids[1::2], ids[1::2])
    swapped = labels[0::2] == 1
    assert 0.4 < swapped.mean() < 0.6
    np.testing.assert_array_equal(new_ids[0::2][~swapped], ids[0::2][~swapped])
    assert (new_ids[0::2][swapped] == [2, 20, 21, 3, 10, 11, 12, 3, 0]).all()
    assert (new_segments[0::2][swapped] == [0, 0, 0, 0, 1, 1, 1, 1, 0]).all()


def _records(directory):
    info = json.load(open(os.path.join(directory, "corpus.json"), encoding="utf-8"))
    rows = []
    for shard in info["shards"]:
        for record in tf.data.TFRecordDataset(os.path.join(directory, shard)):
            example = tf.train.Example.FromString(record.numpy())
            rows.append((list(example.features.feature["token_ids"].int64_list.value),
                         list(example.features.feature["segment_ids"].int64_list.value)))
    return info, rows


def _documents(text):
    return [[line for line in block.split("\n") if line.strip()] for block in text.replace("\r", "").split("\n\n")
            if block.strip()]


def _doc_ids(tokenizer, documents):
    return [sum((tokenizer.tokenize(line).flat_values.numpy().tolist() for line in doc), []) for doc in documents]


def test_prepare_corpus_cli_round_trip_packing_globs_and_bad_utf8(tmp_path, ruslit_lines, tiny2_tokenizer, capsys):
    texts = {"a.txt": "\n".join(ruslit_lines[:60]) + "\n",
             "b.txt": "\n".join(ruslit_lines[200:260])}
    bad = (b"first line\n" b"second \xff\xfe line\n" b"third line\r\n" b"\r\n" b"new document line\n")
    (tmp_path / "in").mkdir()
    for name, text in texts.items():
        (tmp_path / "in" / name).write_text(text, encoding="utf-8")
    (tmp_path / "in" / "bad.txt").write_bytes(bad)
    (tmp_path / "in" / "skip.md").write_text("not matched by the glob", encoding="utf-8")
    out = tmp_path / "shards"
    code = cli.main(["prepare-corpus", str(tmp_path / "in" / "*.txt"), "--vocab", os.path.join(TINY2_DIR, "vocab.txt"),
                     "--out", str(out), "--max-length", "32", "--sequences-per-shard", "100", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info, rows = _records(out)

    # The invalid line is reported with its file and the offset of the bad byte; the rest is processed.
    assert info["num_encoding_errors"] == 1
    error = info["encoding_errors"][0]
    assert error["file"].endswith("bad.txt") and error["byte_offset"] == len(b"first line\nsecond ")
    assert "bad.txt" in captured.err and "byte offset 18" in captured.err

    # Shards: several, all listed; every sequence [CLS] ... [SEP], 32 tokens except the very last (or 31
    # when a document ends one token short of the end: "[SEP] [SEP]" is never written).
    assert len(info["shards"]) >= 2 and sorted(os.listdir(out)) == sorted(info["shards"] + ["corpus.json", "vocab.txt"])
    assert info["num_sequences"] == len(rows) and info["num_tokens"] == sum(len(ids) for ids, _ in rows)
    assert all(ids[0] == 2 and ids[-1] == 3 and segments == [0] * len(ids) for ids, segments in rows)
    assert all(len(ids) in (31, 32) for ids, _ in rows[:-1]) and len(rows[-1][0]) <= 32
    assert sum(len(ids) == 32 for ids, _ in rows) > 0.9 * len(rows)
    assert not any(ids[i] == ids[i + 1] == 3 for ids, _ in rows for i in range(len(ids) - 1))

    # Round trip: the token stream is the tokenizer's, file after file (sorted), documents in order.
    documents = []
    for name in ("a.txt", "b.txt"):
        documents += _documents(texts[name])
    documents += [["first line", "third line"], ["new document line"]]
    assert info["num_documents"] == len(documents)
    expected = [i for doc in _doc_ids(tiny2_tokenizer, documents) for i in doc]
    stream = [i for ids, _ in rows for i in ids if i not in (2, 3)]
    assert stream == expected
    # Documents are separated by [SEP]: inside sequences or by the end of a sequence.
    separators = sum(ids[1:-1].count(3) for ids, _ in rows) + len(rows)
    assert separators >= len(documents)

    # The pipeline reads the shards back (parallel interleave) to the same padded sequences.
    batch = next(iter(tf.data.TFRecordDataset([str(out / s) for s in info["shards"]]).batch(len(rows))))
    parsed = parse_records(batch, 40)
    assert parsed["token_ids"].shape == (len(rows), 40)
    assert parsed["padding_mask"].numpy().sum() == info["num_tokens"]


def test_prepare_corpus_segment_pairs_stay_inside_documents(tmp_path, ruslit_lines, tiny2_tokenizer):
    text = "\n".join(ruslit_lines[:120])
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    info = prepare_corpus([str(tmp_path / "*.txt")], str(tmp_path / "pairs"), tiny2_tokenizer, max_length=48,
                          packing="segment_pairs", progress=False)
    _, rows = _records(tmp_path / "pairs")
    documents = _doc_ids(tiny2_tokenizer, _documents(text))
    position = [0, 0]  # document, token
    pairs = 0
    for ids, segments in rows:
        assert ids[0] == 2 and ids[-1] == 3 and len(ids) <= 48
        first_sep = ids.index(3)
        assert segments[:first_sep + 1] == [0] * (first_sep + 1)
        if first_sep < len(ids) - 1:  # a B segment
            pairs += 1
            assert segments[first_sep + 1:] == [1] * (len(ids) - first_sep - 1)
        content = [i for i in ids if i not in (2, 3)]
        if position[1] == len(documents[position[0]]):
            position = [position[0] + 1, 0]
        doc = documents[position[0]]
        assert doc[position[1]:position[1] + len(content)] == content, "a record crosses a document boundary"
        position[1] += len(content)
    assert position == [len(documents) - 1, len(documents[-1])]
    assert pairs >= 0.9 * len(rows) and info["packing"] == "segment_pairs"


def test_mask_positions_logits_equal_the_full_logits_there():
    config = rt.RuBertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=32)
    full = rt.RuBertForMaskedLM(config)
    gathered = rt.RuBertForMaskedLM(config, with_mask_positions=True)
    gathered.set_weights(full.get_weights())
    assert gathered.hf_weight_map().keys() == full.hf_weight_map().keys()
    rng = np.random.default_rng(0)
    inputs = {"token_ids": rng.integers(5, 120, (2, 10)).astype("int32"), "segment_ids": np.zeros((2, 10), "int32"),
              "padding_mask": np.ones((2, 10), "int32")}
    positions = np.array([[1, 4, 0], [9, 2, 2]], dtype="int32")
    logits = full(inputs)["logits"].numpy()
    picked = gathered({**inputs, "mask_positions": positions})["logits"].numpy()
    np.testing.assert_allclose(picked, np.take_along_axis(logits, positions[:, :, None], axis=1), atol=1e-5)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, ruslit_lines):
    """A 1,500-word WordPiece vocab learnt on a ruslit slice; that slice packed (T=64) for training and
    held-out lines (never trained on) packed for evaluation, in both packings."""
    root = tmp_path_factory.mktemp("ruslit_small")
    train_text, heldout_text = "\n".join(ruslit_lines[:2500]), "\n".join(ruslit_lines[30000:30300])
    (root / "train.txt").write_text(train_text, encoding="utf-8")
    (root / "heldout.txt").write_text(heldout_text, encoding="utf-8")
    code = cli.main(["train-vocab", str(root / "train.txt"), "--vocab-size", "1500", "--out", str(root / "vocab.txt")])
    assert code == 0
    tokenizer = rt.RuBertTokenizer(str(root / "vocab.txt"))
    dirs = {}
    for packing in ("documents", "segment_pairs"):
        for name in ("train", "heldout"):
            dirs[name, packing] = str(root / f"{name}_{packing}")
            prepare_corpus(str(root / f"{name}.txt"), dirs[name, packing], tokenizer, max_length=64, packing=packing,
                           progress=False)
    return dirs


def test_pretraining_on_ruslit_reduces_heldout_mlm_loss(small_corpus, tmp_path):
    metrics = pretrain(train=small_corpus["train", "documents"], eval=small_corpus["heldout", "documents"],
                       out=str(tmp_path / "mlm"), config="cointegrated/rubert-tiny2", overrides=TINY_BODY,
                       batch_size=16, steps=300, checkpoint_every=300, learning_rate=2e-3, warmup_ratio=0.05, seed=0,
                       verbose=0)
    before, after = metrics["eval_before"], metrics["eval_after"]
    print(f"\nheld-out MLM loss {before['mlm_loss']:.3f} -> {after['mlm_loss']:.3f}, accuracy "
          f"{before['mlm_accuracy']:.3f} -> {after['mlm_accuracy']:.3f} ({metrics['train_seconds']} s for 300 steps)")
    assert before["mlm_loss"] == pytest.approx(np.log(1500), abs=0.3)  # random init: ~uniform over the vocab
    assert after["mlm_loss"] < before["mlm_loss"] - 1.0
    assert after["mlm_accuracy"] > before["mlm_accuracy"] + 0.05
    model = rt.RuBertForMaskedLM.from_pretrained(str(tmp_path / "mlm"))
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == 1500


def test_pretrain_cli_writes_a_checkpoint_and_continues_from_it(small_corpus, tmp_path, capsys):
    from safetensors.numpy import load_file

    first = tmp_path / "sop"
    code = cli.main(["pretrain", "--train", small_corpus["train", "segment_pairs"],
                     "--eval", small_corpus["heldout", "segment_pairs"], "--out", str(first),
                     "--config", "cointegrated/rubert-tiny2", "--num-layers", "1", "--hidden-size", "64",
                     "--num-heads", "4", "--intermediate-size", "128", "--batch-size", "8", "--steps", "12",
                     "--checkpoint-every", "6", "--learning-rate", "1e-3", "--whole-word-masking", "--sentence-order",
                     "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    trained = json.load(open(first / "metrics.json", encoding="utf-8"))
    assert {"mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy"} <= set(trained["eval_after"])
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "metrics.json"} <= set(
        os.listdir(first))
    tensors = load_file(str(first / "model.safetensors"))
    assert {"bert.pooler.dense.weight", "cls.seq_relationship.weight", "cls.predictions.bias",
            "bert.embeddings.word_embeddings.weight"} <= set(tensors)
    assert json.load(open(first / "config.json"))["architectures"] == ["BertForPreTraining"]

    # HF-layout checkpoint: RuBertForMaskedLM loads it and gives [B, T, V] logits.
    model = rt.RuBertForMaskedLM.from_pretrained(str(first))
    tokenizer = rt.RuBertTokenizer.from_pretrained(str(first))
    logits = model(tokenizer(["Мороз и солнце; день чудесный!"], max_length=16))["logits"]
    assert logits.shape == (1, 16, 1500)
    np.testing.assert_array_equal(model.get_layer("encoder").get_layer("token_embedding").embeddings.numpy(),
                                  tensors["bert.embeddings.word_embeddings.weight"])

    # --model continues it (pooler and SOP head included): before training it scores what the first run
    # scored at its end. Under bf16 (--mixed-precision) the numbers agree to bf16 precision.
    second = tmp_path / "continued"
    code = cli.main(["pretrain", "--train", small_corpus["train", "segment_pairs"],
                     "--eval", small_corpus["heldout", "segment_pairs"], "--out", str(second), "--model", str(first),
                     "--batch-size", "8", "--steps", "4", "--sentence-order", "--whole-word-masking",
                     "--mixed-precision", "bf16", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    continued = json.load(open(second / "metrics.json", encoding="utf-8"))
    assert continued["mixed_precision"] == "mixed_bfloat16"
    for key in ("mlm_loss", "sop_loss"):
        assert continued["eval_before"][key] == pytest.approx(trained["eval_after"][key], abs=0.05)
    assert rt.RuBertForMaskedLM.from_pretrained(str(second)).config.num_hidden_layers == 1


def test_interrupted_pretraining_resumes_at_the_step_it_reached(small_corpus, tmp_path, monkeypatch, capsys):
    import keras
    from safetensors.numpy import load_file

    import rubert_tf.training.runner as module  # the run pretrain shares with finetune adds the callbacks
    kwargs = dict(train=small_corpus["train", "documents"], config="cointegrated/rubert-tiny2",
                  overrides=dict(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64), batch_size=8,
                  steps=8, checkpoint_every=4, backup_every=3, learning_rate=1e-3, seed=5, verbose=0)

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 5:
                raise RuntimeError("simulated crash after step 5")

    original = module.training_callbacks
    monkeypatch.setattr(module, "training_callbacks", lambda *args, **kw: original(*args, **kw) + [Crash()])
    run = str(tmp_path / "run")
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(out=run, **kwargs)
    monkeypatch.setattr(module, "training_callbacks", original)
    assert sorted(os.listdir(os.path.join(run, "backup")))[:2] == ["RUNNING", "ckpt-000000003.json"]

    # Without --resume the interrupted run is not overwritten.
    code = cli.main(["pretrain", "--train", kwargs["train"], "--out", run, "--config", "cointegrated/rubert-tiny2"])
    assert code == 2 and "--resume" in capsys.readouterr().err

    # Resumed from step 3 (mid-epoch): the same weights as a run that was never interrupted.
    pretrain(out=run, resume=True, **kwargs)
    pretrain(out=str(tmp_path / "uninterrupted"), **kwargs)
    resumed = load_file(os.path.join(run, "model.safetensors"))
    uninterrupted = load_file(str(tmp_path / "uninterrupted" / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        np.testing.assert_allclose(resumed[name], uninterrupted[name], atol=1e-6, err_msg=name)
    assert not os.path.exists(os.path.join(run, "backup"))


def test_pretraining_dataset_feeds_the_model_shapes(small_corpus):
    tokenizer = rt.RuBertTokenizer(os.path.join(small_corpus["train", "documents"], "vocab.txt"))
    masker = MaskedLMMasker(tokenizer, max_predictions=10)
    shards = glob.glob(os.path.join(small_corpus["train", "documents"], "*.tfrecord"))
    first = [next(iter(pretraining_dataset(shards, masker, batch_size=4, max_length=64, seed=3)))[0]
             for _ in range(2)]
    first = [features["token_ids"].numpy() for features in first]
    np.testing.assert_array_equal(first[0], first[1])  # same seed, same stream and masks
    features, labels = next(iter(pretraining_dataset(shards, masker, batch_size=4, max_length=64, seed=4)))
    assert not np.array_equal(features["token_ids"].numpy(), first[0])
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "token_ids": (4, 64), "segment_ids": (4, 64), "padding_mask": (4, 64), "mask_positions": (4, 10)}
    assert tuple(labels["logits"].shape) == (4, 10)


def test_pretrain_stops_at_its_wall_clock_budget_and_saves(small_corpus, tmp_path, capsys):
    out = tmp_path / "budget"
    started = time.monotonic()
    code = cli.main(["pretrain", "--train", small_corpus["train", "documents"], "--out", str(out),
                     "--config", "cointegrated/rubert-tiny2", "--num-layers", "1", "--hidden-size", "32",
                     "--num-heads", "2", "--intermediate-size", "64", "--batch-size", "8", "--steps", "100000",
                     "--checkpoint-every", "100000", "--lr-schedule", "cosine", "--warmup-steps", "5",
                     "--min-lr-ratio", "0.1", "--max-minutes", "0.05", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = json.load(open(out / "metrics.json", encoding="utf-8"))
    assert metrics["lr_schedule"] == "cosine" and metrics["steps"] == 100000
    assert 1 <= metrics["stopped_by_time_limit_after_steps"] < 100000
    assert time.monotonic() - started < 120  # stopped by the budget, not by the 100,000 steps
    assert not (out / "backup").exists()  # a finished run: nothing to resume
    assert rt.RuBertForMaskedLM.from_pretrained(str(out)).config.num_hidden_layers == 1
