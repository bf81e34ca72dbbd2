"""Readers for the files fine-tuning meets: CSV/TSV/JSONL tables, CoNLL/BIO, SQuAD JSON, `tfds:NAME`.

Every error names the file and the line (or the SQuAD question id), and nothing is guessed silently.
"""

import csv
import json
import os

import numpy as np
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
    # Lines end at "\n" only (as `wc -l` and editors count): str.splitlines would also split inside
    # text at U+2028, U+0085, \x1c..., which JSON strings and news text may hold.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_table(path, columns):
    """Rows of a CSV, TSV or JSONL file as dicts {our_name: value, "_line": n}.

    `columns` maps our names to the file's column names, e.g. {"text": "sentence", "label": "acceptable"};
    a value of None skips that field. The delimiter is a tab when the header line has one (RuSentNE's
    `.csv` is tab-separated), else a comma. A `tfds:NAME[/CONFIG][:SPLIT]` path reads a TFDS dataset
    instead (see `read_tfds_table`).
    """
    if path.startswith("tfds:"):
        return read_tfds_table(path, columns)
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
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}")
            rows.append(_pick(record, columns, path, number))
        return rows
    delimiter = "\t" if "\t" in lines[0] else ","
    # Tabs: no quoting (TSV fields hold bare quotes, e.g. «...» and "..." in RuSentNE sentences).
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # Lines keep their "\n" so a quoted CSV field may span lines; a row's number is its first line.
    # strict: a stray or unclosed quote is an error, not a field that swallows the following lines.
    reader = csv.reader((line + "\n" for line in lines), delimiter=delimiter, quoting=quoting, strict=True)
    while True:
        number = reader.line_num + 1
        try:
            values = next(reader, None)
        except csv.Error as error:
            raise DataError(f"{path}:{number}: malformed CSV row ({error}; is a quote left open?)") from None
        if values is None:
            break
        if number == 1:
            header = values
            continue
        if not values:
            continue  # a blank line
        if len(values) != len(header):
            raise DataError(f"{path}:{number}: {len(values)} fields, but the header has {len(header)}")
        if not any(value.strip() for value in values):
            raise DataError(f"{path}:{number}: every field of this row is empty (fill it in or delete the line)")
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


TAG_SCHEMES = ("auto", "iob2", "iob1", "iobes", "bare")


def _tag_shape(tag):
    """"O", a prefix letter of B/I/E/S (tag "P-TYPE"), or "bare" (a type alone); None: not a tag.
    The file's grammar only (data/ may not import metrics/): how tags group into entities is defined
    once, in rubert_tf/metrics/ner.py, whose `split_tag` accepts the same tags."""
    if tag == "O":
        return "O"
    prefix, dash, entity_type = tag.partition("-")
    if not dash:
        return None if tag in ("B", "I", "E", "S") else "bare"
    return prefix if prefix in ("B", "I", "E", "S") and entity_type else None


def _file_scheme(path, rows, scheme):
    """The scheme that `rows` [(line, shape, tag)] are read in; a tag no file of that scheme has is an error."""
    first = {}
    for number, shape, tag in rows:
        first.setdefault(shape, (number, tag))
    shapes = set(first) - {"O"}
    if scheme == "auto":
        scheme = "iobes" if shapes & {"E", "S"} else "bare" if shapes == {"bare"} else "iob2"
    allowed = {"iob2": {"B", "I"}, "iob1": {"B", "I"}, "iobes": {"B", "I", "E", "S"}, "bare": {"bare"}}[scheme]
    for number, tag in sorted(first[shape] for shape in shapes - allowed):
        if shapes & {"E", "S"} and scheme in ("iob2", "iob1") and "bare" not in shapes:
            hint = "an IOBES file: --tag-scheme iobes"
        elif scheme == "bare":
            hint = "a file with B-/I- prefixes: --tag-scheme iob2, iob1 or iobes"
        else:
            hint = "a file uses one scheme: prefixed tags or bare types"
        raise DataError(f"{path}:{number}: tag {tag!r} does not belong to the {scheme.upper()} tag scheme ({hint})")
    return scheme


def _check_scheme(path, scheme, tags, lines, strict):
    """Tags of one sentence that break `scheme`: an error naming the line with `strict`, else each is read
    as the tag it stands for, which decodes to the same entities (see read_conll)."""
    tags = list(tags)
    for i, tag in enumerate(tags):
        previous = tags[i - 1] if i else "O"
        same_type = previous != "O" and previous[2:] == tag[2:]
        if scheme == "iob2" and tag.startswith("I-") and not same_type:
            if strict:
                raise DataError(f"{path}:{lines[i]}: malformed BIO: {tag} follows {previous} (pass strict=False / "
                                "--repair-bio to read it as B-; an IOB1 file: --tag-scheme iob1)")
            tags[i] = "B-" + tag[2:]
        elif scheme == "iob1" and tag.startswith("B-") and not same_type:
            if strict:
                raise DataError(f"{path}:{lines[i]}: malformed IOB1: {tag} follows {previous} (IOB1 uses B- only "
                                "between two entities of one type; pass --repair-bio to read it as I-, or "
                                "--tag-scheme iob2)")
            tags[i] = "I-" + tag[2:]
        elif scheme == "iobes":
            is_open = previous[:2] in ("B-", "I-")
            if tag[:2] in ("I-", "E-") and not (is_open and same_type):
                if strict:
                    raise DataError(f"{path}:{lines[i]}: malformed IOBES: {tag} follows {previous} (pass "
                                    "--repair-bio to read it as B-/S-)")
                tags[i] = ("B-" if tag[0] == "I" else "S-") + tag[2:]
            following = tags[i + 1] if i + 1 < len(tags) else "O"
            if tags[i][:2] in ("B-", "I-") and not (following[:2] in ("I-", "E-") and following[2:] == tags[i][2:]):
                if strict:
                    raise DataError(f"{path}:{lines[i]}: malformed IOBES: {tags[i]} is followed by "
                                    f"{'the end of the sentence' if i + 1 == len(tags) else following}, not "
                                    f"I-/E-{tags[i][2:]} (pass --repair-bio to read it as S-/E-)")
                tags[i] = ("S-" if tags[i][0] == "B" else "E-") + tags[i][2:]
    return tags


def read_conll(path, strict=True, scheme="auto"):
    """Sentences of a CoNLL file (`token ... TAG` per line, blank line between sentences).

    Returns a list of {"tokens": [...], "tags": [...], "_line": first line}; the tags stay as written.
    scheme: "iob2" (BIO: B- opens an entity, I- continues it), "iob1" (I- opens too; B- only between
    two entities of one type), "iobes" (also E- ends one, S- is a one-word entity), "bare" (the type
    alone, "PER"), or "auto": IOBES when an E-/S- tag occurs, bare when no tag has a prefix, else IOB2.
    With `strict`, a tag that breaks the scheme is an error naming the file and line; otherwise it is
    read as the tag it stands for, which decodes to the same entities (IOB2: I-X not after X -> B-X;
    IOB1: B-X not after X -> I-X; IOBES: I-/E- that opens -> B-/S-, B-/I- left open -> S-/E-).
    """
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"tag scheme must be one of {list(TAG_SCHEMES)}, got {scheme!r}")
    sentences, rows, tokens, tags, lines = [], [], [], [], []
    for number, line in enumerate(_read_lines(path) + [""], start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags, "_line": lines[0], "_lines": lines})
            tokens, tags, lines = [], [], []
            continue
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected 'token TAG', got {line!r}")
        tag = fields[-1]
        shape = _tag_shape(tag)
        if shape is None:
            raise DataError(f"{path}:{number}: tag {tag!r} is not O, B-TYPE or I-TYPE (IOB2/IOB1), E-TYPE or "
                            "S-TYPE (IOBES) or a bare TYPE; other schemes (BILOU's U-/L-, ...) are not supported")
        rows.append((number, shape, tag))
        tokens.append(fields[0])
        tags.append(tag)
        lines.append(number)
    scheme = _file_scheme(path, rows, scheme)
    for sentence in sentences:
        sentence["tags"] = _check_scheme(path, scheme, sentence["tags"], sentence.pop("_lines"), strict)
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
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str):
                raise DataError(f"{where}: no 'context' string (the paragraph's text)")
            for qa in paragraph.get("qas", []):
                qid = qa.get("id", "?") if isinstance(qa, dict) else "?"
                question = qa.get("question") if isinstance(qa, dict) else None
                if not isinstance(question, str):
                    raise DataError(f"{where}: question {qid}: no 'question' string")
                answers = qa.get("answers", [])
                for answer in answers:
                    _check_answer(answer, context, f"{path}: question {qid}")
                impossible = bool(qa.get("is_impossible", False)) or not answers
                examples.append({"id": qid, "question": question, "context": context,
                                 "answers": answers, "is_impossible": impossible})
    if not examples:
        raise DataError(f"{path}: no questions found")
    return examples


def _check_answer(answer, context, where):
    """An answer must be a non-empty text standing exactly at its integer answer_start in the context."""
    if not isinstance(answer, dict):
        raise DataError(f"{where}: an answer must be an object with 'text' and 'answer_start', got {answer!r}")
    start, text = answer.get("answer_start"), answer.get("text")
    if not isinstance(start, int) or isinstance(start, bool):
        raise DataError(f"{where}: answer_start must be an integer, got {start!r}")
    if not isinstance(text, str) or not text:
        raise DataError(f"{where}: the answer's text must be a non-empty string, got {text!r} (a question without "
                        "an answer has an empty 'answers' list)")
    if not 0 <= start <= len(context) - len(text) or context[start:start + len(text)] != text:
        found = context[start:start + len(text)] if 0 <= start < len(context) else None
        raise DataError(f"{where}: answer {text!r} is not at answer_start={start} of its context "
                        f"({len(context)} characters; found {found!r})")


def parse_tfds_spec(spec, split="train"):
    """`tfds:NAME[/CONFIG][:SPLIT]` -> (NAME[/CONFIG], SPLIT); SPLIT defaults to `split`.

    SPLIT is anything tfds accepts, e.g. `validation` or `train[:10%]`.
    """
    if not isinstance(spec, str) or not spec.startswith("tfds:"):
        raise ValueError(f"expected 'tfds:NAME[/CONFIG][:SPLIT]', got {spec!r}")
    name, _, spec_split = spec[len("tfds:"):].partition(":")
    if not name:
        raise ValueError(f"{spec!r}: no dataset name after 'tfds:'")
    return name, spec_split or split


def load_tfds(spec, split="train", with_info=False):
    """`tfds:NAME[/CONFIG][:SPLIT]` -> a tf.data.Dataset of feature dicts, through tensorflow_datasets.load
    (data from `$TFDS_DATA_DIR`, else tfds' default folder). With `with_info`, (dataset, DatasetInfo)."""
    import tensorflow_datasets as tfds

    name, split = parse_tfds_spec(spec, split)
    data_dir = os.environ.get("TFDS_DATA_DIR")
    return tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False, with_info=with_info)


def read_tfds_table(spec, columns, split="train", class_names=True):
    """Rows of a TFDS text dataset as dicts {our_name: value, "_line": n}, like `read_table`.

    `spec` is `tfds:NAME[/CONFIG][:SPLIT]` (e.g. `tfds:glue/sst2:validation`,
    `tfds:ted_hrlr_translate/ru_to_en`); `columns` maps our names to feature names (nested features
    as "outer/inner"); None skips a field. Byte strings are decoded as UTF-8 and scalars become
    Python values; with `class_names`, a ClassLabel feature gives its name ("pos"), not its id.
    "_line" is the 1-based example number in the split, so errors read `tfds:NAME:SPLIT:n: ...`.
    """
    import tensorflow_datasets as tfds

    name, split = parse_tfds_spec(spec, split)
    source = f"tfds:{name}:{split}"
    columns = {ours: theirs for ours, theirs in columns.items() if theirs is not None}
    dataset, info = load_tfds(spec, split, with_info=True)
    features = _flatten(info.features) if info is not None else {}
    names = {key: feature.names for key, feature in features.items()
             if class_names and isinstance(feature, tfds.features.ClassLabel) and feature.names}
    rows = []
    for number, example in enumerate(tfds.as_numpy(dataset), start=1):
        record = {key: _python_value(value, names.get(key), source, number, key)
                  for key, value in _flatten(example).items()}
        rows.append(_pick(record, columns, source, number))
    if not rows:
        raise DataError(f"{source}: no examples")
    return rows


def _flatten(mapping, prefix=""):
    """Nested dicts (tfds FeaturesDict or examples) -> {"outer/inner": leaf}."""
    flat = {}
    for key, value in mapping.items():
        if hasattr(value, "items") and not hasattr(value, "names"):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = value
    return flat


def _python_value(value, class_names, source, number, key):
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{source}:{number}: feature {key!r} is not valid UTF-8 "
                            f"(byte offset {error.start})") from None
    if isinstance(value, np.ndarray) and value.dtype.kind in ("O", "S"):
        return [_python_value(item, None, source, number, key) for item in value.tolist()]
    if class_names is not None and isinstance(value, int) and 0 <= value < len(class_names):
        return class_names[value]
    return value
