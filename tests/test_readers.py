"""Data readers: every bad-data error names the file and the line (or the SQuAD question id), the real
files in ../shared/data read with the right counts, and `tfds:` datasets load through tfds.load
(mocked with tfds.testing.mock_data: no network)."""

import json
import os
import re

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rubert_tf.data.readers import (DataError, encode_labels, load_tfds, parse_tfds_spec, read_conll, read_squad,
                                    read_table, read_tfds_table)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---- tables: bad data -----------------------------------------------------------------------------

def test_unknown_label_names_file_and_line(tmp_path):
    path = write(tmp_path / "sentiment.csv", "text,label\nХорошо,pos\nПлохо,neg\nТак себе,neutral\n")
    rows = read_table(path, {"text": "text", "label": "label"})
    with pytest.raises(DataError) as error:
        encode_labels(rows, ["neg", "pos"], path)
    assert str(error.value) == f"{path}:4: unknown label 'neutral'; known labels: ['neg', 'pos']"
    rows = read_table(path, {"text": "text", "label": "label"})
    assert [row["label"] for row in encode_labels(rows[:2], ["neg", "pos"], path)] == [1, 0]


def test_missing_column_names_file_and_line(tmp_path):
    csv_path = write(tmp_path / "data.csv", "id,sentence\n1,Да\n")
    expected = rf"^{re.escape(csv_path)}:2: missing column 'text' \(have: \['id', 'sentence'\]\)$"
    with pytest.raises(DataError, match=expected):
        read_table(csv_path, {"text": "text"})
    # JSONL: only the third record lacks the column.
    jsonl = write(tmp_path / "data.jsonl", '{"text": "а", "label": 1}\n\n{"label": 0}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(jsonl))}:3: missing column 'text'"):
        read_table(jsonl, {"text": "text", "label": "label"})
    # A column mapped to None is simply not read.
    assert read_table(csv_path, {"text": "sentence", "label": None}) == [{"text": "Да", "_line": 2}]


@pytest.mark.parametrize("name, text, line, fields", [
    ("rows.csv", "a,b\n1,2\n3,4,5\n", 3, 3),
    ("rows.tsv", "a\tb\tc\nx\ty\tz\nx\ty\n", 3, 2),
])
def test_field_count_mismatch_names_file_and_line(tmp_path, name, text, line, fields):
    path = write(tmp_path / name, text)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{line}: {fields} fields, but the header has"):
        read_table(path, {"a": "a"})


def test_quoted_csv_fields_and_line_numbers(tmp_path):
    # A quoted field may span lines; the next row's line number still counts physical lines.
    path = write(tmp_path / "multi.csv", 'text,label\n"Первая строка\nвторая строка",1\n"Третья, с запятой",0\n'
                                         'Последняя,1\n')
    rows = read_table(path, {"text": "text", "label": "label"})
    assert [(row["text"], row["_line"]) for row in rows] == [
        ("Первая строка\nвторая строка", 2), ("Третья, с запятой", 4), ("Последняя", 5)]
    with pytest.raises(DataError, match=rf"^{re.escape(path)}:4: unknown label '0'"):
        encode_labels(read_table(path, {"text": "text", "label": "label"}), ["1"], path)
    # An unclosed quote is an error at the row where it opens, not a field swallowing the rest.
    broken = write(tmp_path / "unclosed.csv", 'text,label\nok,1\n"не закрыта,0\nдальше,1\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(broken))}:3: malformed CSV row"):
        read_table(broken, {"text": "text"})


def test_broken_jsonl_line(tmp_path):
    path = write(tmp_path / "broken.jsonl", '{"text": "один"}\n{"text": "два"}\n{"text": "три"\n{"text": "четыре"}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: not valid JSON"):
        read_table(path, {"text": "text"})
    not_object = write(tmp_path / "list.jsonl", '{"text": "один"}\n["два"]\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(not_object))}:2: expected a JSON object per line, got list"):
        read_table(not_object, {"text": "text"})


def test_line_separators_inside_text_do_not_split_lines(tmp_path):
    # U+2028 and U+0085 are legal inside JSON strings and text; only "\n" ends a line.
    path = write(tmp_path / "seps.jsonl", '{"text": "а\u2028б"}\n{"text": "в\u0085г"}\r\n{"text": "д"}\n')
    rows = read_table(path, {"text": "text"})
    assert [(row["text"], row["_line"]) for row in rows] == [("а\u2028б", 1), ("в\u0085г", 2), ("д", 3)]


def test_invalid_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nПривет,1\n".encode("utf-8") + "Caf\xe9,0\n".encode("latin-1") + b"ok,1\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: not valid UTF-8 \(byte offset \d+\)$"):
        read_table(str(path), {"text": "text"})
    conll = tmp_path / "latin1.bio"
    conll.write_bytes(b"a O\n\nb O\n\xff B-PER\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(conll))}:4: not valid UTF-8"):
        read_conll(str(conll))


def test_empty_file_and_byte_order_mark(tmp_path):
    for name in ("empty.csv", "empty.jsonl", "empty.tsv"):
        path = tmp_path / name
        path.write_bytes(b"")
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: empty file$"):
            read_table(str(path), {"text": "text"})
    with pytest.raises(FileNotFoundError, match="missing.csv: no such file"):
        read_table(str(tmp_path / "missing.csv"), {"text": "text"})
    # Spreadsheet exports start with a BOM; it must not become part of the first column's name.
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\r\nДа,1\r\n".encode("utf-8"))
    assert read_table(str(bom), {"text": "text", "label": "label"}) == [{"text": "Да", "label": "1", "_line": 2}]


# ---- CoNLL / BIO ---------------------------------------------------------------------------------

def test_malformed_bio_in_factrueval_at_its_exact_line(shared_data):
    path = os.path.join(shared_data, "factrueval2016", "dev.bio")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[18196].split() == ["Мари", "O"] and lines[18197].split()[-1] == "I-PER"  # lines 18197-18198

    with pytest.raises(DataError) as error:
        read_conll(path)
    assert str(error.value).startswith(f"{path}:18198: malformed BIO: I-PER follows O")

    # The repair reads it as B-PER, the next I-PER then continues that entity; all 1769 sentences.
    sentences = read_conll(path, strict=False)
    assert len(sentences) == 1769
    sentence = max((s for s in sentences if s["_line"] <= 18198), key=lambda s: s["_line"])
    index = 18198 - sentence["_line"]
    assert sentence["tokens"][index] == lines[18197].split()[0]
    assert sentence["tags"][index - 1:index + 2] == ["O", "B-PER", "I-PER"]
    for s in sentences:  # after repair every sequence is valid IOB2
        for previous, tag in zip(["O"] + s["tags"], s["tags"]):
            assert not tag.startswith("I-") or previous[2:] == tag[2:]


@pytest.mark.parametrize("text, line, message", [
    ("Иван B-PER\nПетров I-PER\n\nМосква I-LOC\n", 4, "malformed BIO: I-LOC follows O"),
    ("Иван B-PER\nПетров I-ORG\n", 2, "malformed BIO: I-ORG follows B-PER"),
    ("Иван B-PER\nПетров X-PER\n", 2, "tag 'X-PER' is not O, B-TYPE or I-TYPE"),
    ("Иван B-PER\nПетров\n", 2, "expected 'token TAG'"),
])
def test_malformed_bio_sequences(tmp_path, text, line, message):
    path = write(tmp_path / "bad.bio", text)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        read_conll(path)


# ---- SQuAD ---------------------------------------------------------------------------------------

def test_squad_answer_not_at_answer_start_names_question(shared_data, tmp_path):
    source = os.path.join(shared_data, "xquad-ru", "xquad.ru.part1.json")
    with open(source, encoding="utf-8-sig") as f:
        data = json.load(f)
    qa = data["data"][1]["paragraphs"][0]["qas"][2]
    qa["answers"][0]["answer_start"] += 3
    path = tmp_path / "shifted.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_squad(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: question {qa['id']}: answer {qa['answers'][0]['text']!r} is not at "
                              f"answer_start={qa['answers'][0]['answer_start']}")
    broken = write(tmp_path / "broken.json", '{"data": [')
    with pytest.raises(DataError, match=rf"^{re.escape(str(broken))}: not a SQuAD JSON file"):
        read_squad(broken)


CONTEXT = "Москва — столица России с 1918 года."  # 36 characters


@pytest.mark.parametrize("paragraph,message", [
    ({"context": CONTEXT, "qas": [{"id": "q1", "question": "?", "answers": [{"text": "", "answer_start": 999}]}]},
     "question q1: the answer's text must be a non-empty string, got ''"),
    ({"context": CONTEXT, "qas": [{"id": "q2", "question": "?", "answers": [{"text": "Москва", "answer_start": "0"}]}]},
     "question q2: answer_start must be an integer, got '0'"),
    ({"context": CONTEXT, "qas": [{"id": "q3", "question": "?", "answers": [{"text": "1918", "answer_start": -10}]}]},
     "question q3: answer '1918' is not at answer_start=-10 of its context (36 characters"),
    ({"qas": [{"id": "q4", "question": "?", "answers": []}]}, "data[0].paragraphs[0]: no 'context' string"),
    ({"context": CONTEXT, "qas": [{"id": "q5", "answers": []}]}, "data[0].paragraphs[0]: question q5: no 'question'"),
])
def test_squad_bad_answers_and_missing_fields_name_file_and_question(tmp_path, paragraph, message):
    path = write(tmp_path / "bad.json", json.dumps({"data": [{"paragraphs": [paragraph]}]}, ensure_ascii=False))
    with pytest.raises(DataError) as error:
        read_squad(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)
    good = {"context": CONTEXT, "qas": [{"id": "ok", "question": "?", "answers": [{"text": "1918", "answer_start": 26}]}]}
    assert read_squad(write(tmp_path / "good.json", json.dumps({"data": [{"paragraphs": [good]}]})))[0]["id"] == "ok"


def test_a_row_of_empty_fields_is_an_error_not_dropped(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\nхорошо,pos\n,\nплохо,neg\n\n")
    with pytest.raises(DataError, match=rf"^{re.escape(path)}:3: every field of this row is empty"):
        read_table(path, {"text": "text", "label": "label"})
    blank_lines = write(tmp_path / "blank.csv", "text,label\nхорошо,pos\n\nплохо,neg\n\n")  # blank lines: not rows
    assert [row["_line"] for row in read_table(blank_lines, {"text": "text", "label": "label"})] == [2, 4]


# ---- the real files --------------------------------------------------------------------------------

def test_rusentne_is_tab_separated_with_labels_minus_one_zero_one(shared_data):
    path = os.path.join(shared_data, "rusentne2023", "train_data.csv")
    rows = read_table(path, {"text": "sentence", "entity": "entity", "label": "label"})
    assert len(rows) == 6637
    assert {row["label"] for row in rows} == {"-1", "0", "1"}
    assert rows[0]["entity"] == "спортсмена" and rows[0]["_line"] == 2
    assert "«Бадди»" in rows[0]["text"]  # bare quotes stay (no CSV quoting in TSV)
    encoded = encode_labels(rows, ["-1", "0", "1"], path)
    assert sorted({row["label"] for row in encoded}) == [0, 1, 2]


@pytest.mark.parametrize("name, count", [("in_domain_dev.csv", 983), ("in_domain_train.csv", 7869)])
def test_rucola_row_counts(shared_data, name, count):
    path = os.path.join(shared_data, "rucola", name)
    rows = read_table(path, {"text": "sentence", "label": "acceptable"})
    assert len(rows) == count
    assert {row["label"] for row in rows} == {"0", "1"}
    assert all(row["text"].strip() for row in rows)


def test_xquad_question_count(shared_data):
    examples = read_squad(os.path.join(shared_data, "xquad-ru", "xquad.ru.part1.json"))
    assert len(examples) == 632
    assert len({example["id"] for example in examples}) == 632
    for example in examples:
        for answer in example["answers"]:
            start = answer["answer_start"]
            assert example["context"][start:start + len(answer["text"])] == answer["text"]


# ---- TensorFlow Datasets (mocked: tfds.load runs, the examples are random) -------------------------
# Offline, tfds has no dataset_info.json for these datasets (AUTO would fall back to it anyway), so the
# mock builds the features from the dataset's code: MockPolicy.USE_CODE.

def mock_tfds(num_examples=4):
    return tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE)


def test_parse_tfds_spec():
    assert parse_tfds_spec("tfds:imdb_reviews") == ("imdb_reviews", "train")
    assert parse_tfds_spec("tfds:glue/sst2:validation") == ("glue/sst2", "validation")
    assert parse_tfds_spec("tfds:ted_hrlr_translate/ru_to_en:train[:10%]", "test") == \
        ("ted_hrlr_translate/ru_to_en", "train[:10%]")
    for bad in ("imdb_reviews", "tfds:", "tfds::train"):
        with pytest.raises(ValueError):
            parse_tfds_spec(bad)


def test_load_tfds_text_classification():
    with mock_tfds(5):
        dataset = load_tfds("tfds:imdb_reviews", split="test")
        examples = list(dataset.as_numpy_iterator())
        rows = read_tfds_table("tfds:imdb_reviews:test", {"text": "text", "label": "label"})
        via_read_table = read_table("tfds:imdb_reviews:test", {"text": "text", "label": "label"})
    assert isinstance(dataset, tf.data.Dataset)
    assert len(examples) == 5 and set(examples[0]) == {"text", "label"}
    assert [row["_line"] for row in rows] == [1, 2, 3, 4, 5]
    assert all(isinstance(row["text"], str) and row["label"] in ("neg", "pos") for row in rows)
    assert [row["text"] for row in rows] == [example["text"].decode("utf-8") for example in examples]
    assert via_read_table == rows
    # The class-label names feed encode_labels; an unknown one is named with the example number.
    encoded = encode_labels([dict(row) for row in rows], ["neg", "pos"], "tfds:imdb_reviews:test")
    assert {row["label"] for row in encoded} <= {0, 1}
    first = rows[0]["label"]
    with pytest.raises(DataError, match=rf"^tfds:imdb_reviews:test:1: unknown label '{first}'"):
        encode_labels([dict(row) for row in rows], ["neutral"], "tfds:imdb_reviews:test")
    with mock_tfds(2):
        ids = read_tfds_table("tfds:imdb_reviews", {"label": "label"}, class_names=False)
        with pytest.raises(DataError, match=r"^tfds:imdb_reviews:train:1: missing column 'review'"):
            read_tfds_table("tfds:imdb_reviews", {"text": "review"})
    assert all(isinstance(row["label"], int) for row in ids)


def test_load_tfds_ted_hrlr_translate_ru_to_en():
    with mock_tfds(3):
        dataset = load_tfds("tfds:ted_hrlr_translate/ru_to_en:validation")
        examples = list(dataset.as_numpy_iterator())
        rows = read_tfds_table("tfds:ted_hrlr_translate/ru_to_en", {"source": "ru", "target": "en"}, split="test")
    assert len(examples) == 3 and set(examples[0]) == {"ru", "en"}
    assert isinstance(examples[0]["ru"], bytes)
    assert [set(row) for row in rows] == [{"source", "target", "_line"}] * 3
    assert all(isinstance(row["source"], str) and isinstance(row["target"], str) for row in rows)


def test_tfds_data_dir_from_environment(tmp_path, monkeypatch):
    # TFDS_DATA_DIR is handed to tfds.load as data_dir (where prepared datasets live).
    seen = {}
    real_load = tfds.load

    def spy(name, **kwargs):
        seen.update(kwargs, name=name)
        return real_load(name, **kwargs)

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(tfds, "load", spy)
    with mock_tfds(2):
        rows = read_tfds_table("tfds:glue/sst2:validation", {"text": "sentence", "label": "label"})
    assert seen["name"] == "glue/sst2" and seen["split"] == "validation" and seen["data_dir"] == str(tmp_path)
    assert len(rows) == 2 and all(row["label"] in ("negative", "positive") for row in rows)
