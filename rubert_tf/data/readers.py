"""Readers for the files fine-tuning meets: CSV/TSV/JSONL tables, CoNLL/BIO, SQuAD JSON, `tfds:NAME`.

Every error names the file and the line (or the SQuAD question id), and nothing is guessed silently.
"""

import csv
import json
import os

import tensorflow as tf


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


def _open_text(path):
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    # utf-8-sig: exported spreadsheets and XQuAD start with a byte-order mark.
    return tf.io.gfile.GFile(path, "rb")


def _read_lines(path):
    with _open_text(path) as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte offset {error.start})") from None
    return text.splitlines()


def read_table(path, columns):
    """Rows of a CSV, TSV or JSONL file as dicts {our_name: value, "_line": n}.

    `columns` maps our names to the file's column names, e.g. {"text": "sentence", "label": "acceptable"};
    a value of None skips that field. The delimiter is a tab when the header line has one (RuSentNE's
    `.csv` is tab-separated), else a comma.
    """
    columns = {ours: theirs for ours, theirs in columns.items() if theirs is not None}
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}: empty file")
    rows = []
    if path.endswith((".jsonl", ".json")):
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            rows.append(_pick(record, columns, path, number))
        return rows
    delimiter = "\t" if "\t" in lines[0] else ","
    # Tabs: no quoting (TSV fields hold bare quotes, e.g. «...» and "..." in RuSentNE sentences).
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    header = next(reader)
    for number, values in enumerate(reader, start=2):
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(header):
            raise DataError(f"{path}:{number}: {len(values)} fields, but the header has {len(header)}")
        rows.append(_pick(dict(zip(header, values)), columns, path, number))
    return rows


def _pick(record, columns, path, number):
    missing = [theirs for theirs in columns.values() if theirs not in record]
    if missing:
        raise DataError(f"{path}:{number}: missing column {missing[0]!r} (have: {sorted(record)})")
    row = {ours: record[theirs] for ours, theirs in columns.items()}
    row["_line"] = number
    return row


def encode_labels(rows, label_names, path, field="label"):
    """Replace each row's label by its index in `label_names`; unknown labels fail with file:line."""
    index = {str(name): i for i, name in enumerate(label_names)}
    for row in rows:
        value = str(row[field]).strip()
        if value not in index:
            raise DataError(f"{path}:{row['_line']}: unknown label {value!r}; known labels: {list(index)}")
        row[field] = index[value]
    return rows


def read_conll(path, strict=True):
    """Sentences of a CoNLL/BIO file (`token ... TAG` per line, blank line between sentences).

    Returns a list of {"tokens": [...], "tags": [...], "_line": first line}. With `strict`, an I-X tag
    that does not continue an X entity (IOB2 violation) is an error; otherwise it is read as B-X.
    """
    sentences, tokens, tags, first = [], [], [], None
    for number, line in enumerate(_read_lines(path) + [""], start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags, "_line": first})
            tokens, tags, first = [], [], None
            continue
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected 'token TAG', got {line!r}")
        tag = fields[-1]
        if tag != "O" and (tag[:2] not in ("B-", "I-") or len(tag) < 3):
            raise DataError(f"{path}:{number}: tag {tag!r} is not O, B-TYPE or I-TYPE")
        if tag.startswith("I-"):
            previous = tags[-1] if tags else "O"
            if previous == "O" or previous[2:] != tag[2:]:
                if strict:
                    raise DataError(f"{path}:{number}: malformed BIO: {tag} follows {previous} "
                                    "(pass strict=False / --repair-bio to read it as B-)")
                tag = "B-" + tag[2:]
        first = first or number
        tokens.append(fields[0])
        tags.append(tag)
    return sentences


def read_squad(path):
    """Questions of a SQuAD v1.1/v2.0 JSON file, one dict per question:
    {"id", "question", "context", "answers": [{"text", "answer_start"}], "is_impossible"}.

    Every answer must stand at its answer_start in the context, exactly; otherwise an error names the question.
    """
    with _open_text(path) as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a SQuAD JSON file ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{path}: expected a SQuAD JSON object with a 'data' list")
    examples = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                qid = qa.get("id", "?")
                answers = qa.get("answers", [])
                for answer in answers:
                    start, text = answer.get("answer_start"), answer.get("text", "")
                    if not isinstance(start, int) or context[start:start + len(text)] != text:
                        found = context[start:start + len(text)] if isinstance(start, int) else None
                        raise DataError(
                            f"{path}: question {qid}: answer {text!r} is not at answer_start={start} of its "
                            f"context (found {found!r})")
                impossible = bool(qa.get("is_impossible", False)) or not answers
                examples.append({"id": qid, "question": qa["question"], "context": context,
                                 "answers": answers, "is_impossible": impossible})
    if not examples:
        raise DataError(f"{path}: no questions found")
    return examples


def load_tfds(spec, split="train"):
    """`tfds:NAME[/CONFIG]` -> a tf.data.Dataset of feature dicts, through tensorflow_datasets.load."""
    if not spec.startswith("tfds:"):
        raise ValueError(f"expected 'tfds:NAME', got {spec!r}")
    import tensorflow_datasets as tfds

    name = spec[len("tfds:"):]
    data_dir = os.environ.get("TFDS_DATA_DIR")
    return tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
