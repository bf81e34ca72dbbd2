"""Seq2seq data: parallel readers (two aligned files, a prefix with languages, TSV/JSONL, tfds mocked
with tfds.testing.mock_data) with file:line errors, and the tf.data pipeline's fixed interface
(bert2bert: decoder input [CLS] y, labels y [SEP], -100 on padding; truncation; multiples of 8)."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rubert_tf.data.readers import DataError
from rubert_tf.data.seq2seq import (FEATURE_NAMES, IGNORE_INDEX, read_parallel_files, read_seq2seq, seq2seq_dataset,
                                    tfds_languages)
from rubert_tf.tokenizer import RuBertTokenizer


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    return RuBertTokenizer(os.path.join(shared_data, "rubert-tiny2", "vocab.txt"))


@pytest.fixture(scope="module")
def ntrex(shared_data):
    folder = os.path.join(shared_data, "ntrex-en-ru")
    return os.path.join(folder, "train.ru"), os.path.join(folder, "train.en")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---- readers ----------------------------------------------------------------------------------

def test_reads_the_real_ntrex_pairs(ntrex):
    ru, en = ntrex
    examples = read_seq2seq([ru, en])
    assert len(examples) == 1500
    assert examples[0] == {"source": "Члены Ассамблеи Уэльса не хотят «походить на маппетов»",
                           "target": "Welsh AMs worried about 'looking like muppets'", "_line": 1, "_source": ru}
    assert [e["_line"] for e in examples[:3]] == [1, 2, 3]
    # The same pair through a prefix and languages (train + .ru / .en), and in the other direction.
    assert read_seq2seq(ru[:-3], source_lang="ru", target_lang="en") == examples
    reverse = read_seq2seq([en, ru])
    assert (reverse[7]["source"], reverse[7]["target"]) == (examples[7]["target"], examples[7]["source"])


def test_mismatched_line_counts_name_file_and_line(tmp_path):
    ru = write(tmp_path / "train.ru", "один\nдва\nтри\n")
    en = write(tmp_path / "train.en", "one\ntwo\n")
    message = (f"{ru}:3: no matching line in {en}; parallel files must have one line per pair "
               f"({ru} has 3 lines, {en} has 2)")
    with pytest.raises(DataError) as error:
        read_seq2seq([ru, en])
    assert str(error.value) == message
    with pytest.raises(DataError, match=rf"^{re.escape(ru)}:3: no matching line in {re.escape(en)};"):
        read_seq2seq([en, ru])  # the longer file is named, whichever side it is


def test_empty_lines_are_listed_with_file_and_line(tmp_path):
    ru = write(tmp_path / "a.ru", "один\n\nтри\nчетыре\n")
    en = write(tmp_path / "a.en", "one\ntwo\n  \n\n")
    with pytest.raises(DataError) as error:
        read_parallel_files(ru, en)
    assert str(error.value) == (f"{ru}:2: empty line; every line of a parallel file must hold text "
                                f"(3 empty: {ru}:2, {en}:3, {en}:4)")
    # A byte-order mark and CRLF line ends are not text problems.
    bom = write(tmp_path / "b.ru", "\ufeffодин\r\nдва\r\n")
    assert [e["source"] for e in read_parallel_files(bom, write(tmp_path / "b.en", "one\ntwo\n"))] == ["один", "два"]


def test_tables_with_source_and_target_columns(tmp_path):
    tsv = write(tmp_path / "pairs.tsv", "id\tru\ten\n1\tПривет, мир!\tHello, world!\n2\tКак дела?\tHow are you?\n")
    examples = read_seq2seq(tsv, source_column="ru", target_column="en")
    assert [(e["source"], e["target"], e["_line"]) for e in examples] == [
        ("Привет, мир!", "Hello, world!", 2), ("Как дела?", "How are you?", 3)]
    jsonl = write(tmp_path / "pairs.jsonl", '{"source": "Текст статьи", "target": "Краткое"}\n\n'
                                            '{"source": "Ещё текст", "target": ""}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(jsonl)}:3: empty target \(column 'target'\)$"):
        read_seq2seq([jsonl])
    with pytest.raises(DataError, match=rf"^{re.escape(tsv)}:2: missing column 'source'"):
        read_seq2seq(tsv)
    numbers = write(tmp_path / "numbers.jsonl", '{"source": 5, "target": "пять"}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(numbers)}:1: column 'source' must be text, got 5"):
        read_seq2seq(numbers)


def test_a_single_plain_file_or_three_files_are_refused_with_advice(tmp_path, ntrex):
    with pytest.raises(ValueError, match="one plain-text file holds one side only; pass two line-aligned files"):
        read_seq2seq(ntrex[0])
    with pytest.raises(ValueError, match="expected two aligned files .* got 3 paths"):
        read_seq2seq([ntrex[0], ntrex[1], ntrex[1]])
    with pytest.raises(ValueError, match="a prefix needs both --source-lang and --target-lang"):
        read_seq2seq(ntrex[0][:-3], source_lang="ru")
    with pytest.raises(FileNotFoundError, match="train.de: no such file"):
        read_seq2seq(ntrex[0][:-3], source_lang="ru", target_lang="de")
    with pytest.raises(FileNotFoundError, match="missing.ru: no such file"):
        read_seq2seq([str(tmp_path / "missing.ru"), ntrex[1]])


def test_tfds_ted_hrlr_translate_through_tfds_load(ntrex):
    assert tfds_languages("tfds:ted_hrlr_translate/ru_to_en:validation") == ("ru", "en")
    assert tfds_languages("tfds:imdb_reviews") is None
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        rows = read_seq2seq("tfds:ted_hrlr_translate/ru_to_en:validation")
    assert len(rows) == 3 and all(isinstance(r["source"], str) and isinstance(r["target"], str) for r in rows)
    assert [r["_source"] for r in rows] == ["tfds:ted_hrlr_translate/ru_to_en:validation"] * 3

    # Real Russian pairs (and one empty target) through tfds.load, the features as the dataset has them.
    real = read_seq2seq(list(ntrex))[:2]
    pairs = {"ru": [real[0]["source"], real[1]["source"], "Третья"], "en": [real[0]["target"], real[1]["target"], " "]}

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices({key: tf.constant(value) for key, value in pairs.items()})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(DataError, match=r"^tfds:ted_hrlr_translate/ru_to_en:train:3: empty target "
                                            r"\(column 'en'\)$"):
            read_seq2seq("tfds:ted_hrlr_translate/ru_to_en")
        pairs["ru"], pairs["en"] = pairs["ru"][:2], pairs["en"][:2]
        rows = read_seq2seq("tfds:ted_hrlr_translate/ru_to_en")
        swapped = read_seq2seq("tfds:ted_hrlr_translate/ru_to_en", source_column="en", target_column="ru")
    assert [(r["source"], r["target"]) for r in rows] == [(e["source"], e["target"]) for e in real]
    assert swapped[0]["source"] == real[0]["target"]
    with pytest.raises(ValueError, match="name the source and target features"):
        read_seq2seq("tfds:cnn_dailymail")


# ---- pipeline ---------------------------------------------------------------------------------

def _rows(dataset):
    """Every batch as numpy, with each row cut to its real length."""
    out = []
    for features, labels in dataset:
        features = {key: value.numpy() for key, value in features.items()}
        labels = labels.numpy()
        for row in range(labels.shape[0]):
            enc_len = features["encoder_padding_mask"][row].sum()
            dec_len = features["decoder_padding_mask"][row].sum()
            out.append({"encoder": features["encoder_token_ids"][row, :enc_len].tolist(),
                        "decoder": features["decoder_token_ids"][row, :dec_len].tolist(),
                        "labels": labels[row, :dec_len].tolist(),
                        "label_padding": labels[row, dec_len:].tolist(),
                        "enc_padding": features["encoder_token_ids"][row, enc_len:].tolist()})
    return out


def test_pipeline_interface_on_ntrex(tokenizer, ntrex):
    examples = read_seq2seq(list(ntrex))[:10]
    sources, targets = [e["source"] for e in examples], [e["target"] for e in examples]
    dataset = seq2seq_dataset(tokenizer, sources, targets, batch_size=4, max_source_length=128, max_target_length=128)
    features_spec, labels_spec = dataset.element_spec
    assert sorted(features_spec) == sorted(FEATURE_NAMES)
    assert all(spec.dtype == tf.int32 and spec.shape.rank == 2 for spec in features_spec.values())
    assert labels_spec.dtype == tf.int32 and labels_spec.shape.rank == 2
    for features, labels in dataset:
        batch, t_enc = features["encoder_token_ids"].shape
        t_dec = features["decoder_token_ids"].shape[1]
        assert features["encoder_padding_mask"].shape == (batch, t_enc) and t_enc % 8 == 0
        assert features["decoder_padding_mask"].shape == labels.shape == (batch, t_dec) and t_dec % 8 == 0
        # Each side is padded to its own longest row (rounded up to 8), not to the other's width.
        assert t_enc - 8 < int(tf.reduce_max(tf.reduce_sum(features["encoder_padding_mask"], 1))) <= t_enc
        assert t_dec - 8 < int(tf.reduce_max(tf.reduce_sum(features["decoder_padding_mask"], 1))) <= t_dec

    rows = _rows(dataset)
    assert len(rows) == 10  # file order, nothing lost
    alone = tokenizer(sources, max_length=128, padding="longest")
    target_ids = tokenizer(targets, max_length=129, padding="longest")
    for i, row in enumerate(rows):
        source_ids = alone["token_ids"][i].numpy()[: alone["padding_mask"][i].numpy().sum()].tolist()
        ids = target_ids["token_ids"][i].numpy()[: target_ids["padding_mask"][i].numpy().sum()].tolist()
        assert row["encoder"] == source_ids and row["encoder"][0] == tokenizer.cls_id
        assert row["decoder"] == ids[:-1] and row["decoder"][0] == tokenizer.cls_id  # [CLS] y1..yn
        assert row["labels"] == ids[1:] and row["labels"][-1] == tokenizer.sep_id      # y1..yn [SEP]
        assert row["labels"][:-1] == row["decoder"][1:]                               # teacher forcing shift
        assert set(row["label_padding"]) <= {IGNORE_INDEX} and set(row["enc_padding"]) <= {tokenizer.pad_id}
    decoded = tokenizer.detokenize([rows[0]["decoder"]]).numpy()[0].decode()
    assert decoded.startswith("Welsh AMs worried about")


def test_truncation_keeps_the_final_sep(tokenizer, ntrex):
    examples = read_seq2seq(list(ntrex))[:6]
    dataset = seq2seq_dataset(tokenizer, [e["source"] for e in examples], [e["target"] for e in examples],
                              batch_size=3, max_source_length=10, max_target_length=6)
    rows = _rows(dataset)
    assert all(len(row["encoder"]) <= 10 and len(row["decoder"]) <= 6 for row in rows)
    assert max(len(row["encoder"]) for row in rows) == 10 and max(len(row["decoder"]) for row in rows) == 6
    for row in rows:
        assert row["encoder"][-1] == tokenizer.sep_id and row["labels"][-1] == tokenizer.sep_id
        assert row["decoder"][0] == tokenizer.cls_id and row["labels"][:-1] == row["decoder"][1:]
    # The shortest possible target: labels [SEP] after decoder [CLS].
    short = _rows(seq2seq_dataset(tokenizer, ["Да"], ["Yes"], max_source_length=8, max_target_length=1))
    assert short[0]["decoder"] == [tokenizer.cls_id] and short[0]["labels"] == [tokenizer.sep_id]
    with pytest.raises(ValueError, match="max_source_length=1 is too small"):
        seq2seq_dataset(tokenizer, ["Да"], ["Yes"], max_source_length=1)
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        seq2seq_dataset(tokenizer, ["Да", "Нет"], ["Yes"])


def test_bucketing_and_seeded_shuffle_keep_every_pair(tokenizer, ntrex):
    examples = read_seq2seq(list(ntrex))[:40]
    sources, targets = [e["source"] for e in examples], [e["target"] for e in examples]

    def epoch(seed):
        dataset = seq2seq_dataset(tokenizer, sources, targets, batch_size=8, max_source_length=64,
                                  max_target_length=64, shuffle=True, seed=seed, bucket_boundaries="auto")
        return [tuple(row["encoder"]) for row in _rows(dataset)]

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert len(first) == 40 and len(set(first)) == 40 and sorted(first) == sorted(other)
    assert first == again and first != other


def test_sources_only_give_encoder_features(tokenizer):
    dataset = seq2seq_dataset(tokenizer, ["Привет, мир!", "Как дела?"], batch_size=2)
    batch = next(iter(dataset))
    assert sorted(batch) == ["encoder_padding_mask", "encoder_token_ids"]
    assert batch["encoder_token_ids"].shape == (2, 8)
    np.testing.assert_array_equal(batch["encoder_padding_mask"].numpy().sum(1),
                                  tokenizer(["Привет, мир!", "Как дела?"])["padding_mask"].numpy().sum(1))
