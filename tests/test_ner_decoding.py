"""Tags -> entities, defined once (rubert_tf/metrics/ner.py) and run twice: in Python (`get_entities`,
used by scoring) and in the graph (the postprocessor the served model and `extract_entities` run).
Both must equal seqeval 1.2.2's default mode on IOB2, IOB1, IOBES, bare tags and random sequences;
and reading files of every scheme, with errors that name the file and line."""

import functools
import random
import re
import warnings

import numpy as np
import pytest
import tensorflow as tf
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities

from rubert_tf.data.readers import DataError, read_conll
from rubert_tf.metrics.ner import get_entities, label_parts, split_tag
from rubert_tf.tasks.ner import NerTask, infer_labels
from rubert_tf.tasks.ner.processing import postprocessor

# Bare types whose first letter is none of O/B/I/E/S: seqeval reads them as prefix + type ("PER" ->
# "P" + "ER"), which groups the same words as ours; the type it reports is the name without its first letter.
BARE = ["PER", "LOC", "GPE"]
LABELS = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "ORG") for p in "BIES"] + BARE

CASES = {
    "iob2": [["B-PER", "I-PER", "O", "B-LOC"], ["O", "I-ORG", "I-ORG", "O"], ["B-LOC", "B-LOC", "I-LOC"],
             ["B-PER", "I-LOC", "O"], ["I-PER", "B-PER", "I-PER", "I-LOC"]],
    "iob1": [["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["I-ORG", "B-ORG", "B-ORG", "I-ORG"], ["O", "I-LOC", "I-PER"]],
    "iobes": [["S-PER", "I-PER"], ["B-PER", "E-PER", "S-LOC", "B-ORG", "I-ORG", "E-ORG"], ["E-PER", "E-PER"],
              ["B-LOC", "S-LOC", "I-LOC", "E-LOC", "O", "E-ORG", "I-ORG"], ["S-PER", "E-PER", "B-PER", "B-PER"]],
    "bare": [["PER", "PER"], ["PER", "LOC", "LOC", "O", "GPE"], ["O", "PER", "O", "PER", "PER"],
             ["B-PER", "PER", "I-PER", "E-PER", "PER"]],
}


def random_sequences(count=3000, seed=12):
    rng = random.Random(seed)
    return [[rng.choice(LABELS) for _ in range(rng.randint(0, 12))] for _ in range(count)]


def reference(tags):
    """seqeval's entities, with a bare type's full name back (seqeval cuts its first letter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns that bare tags "seem not to be NE tags"
        found = seqeval_entities(list(tags))
    return [(tags[start] if tags[start] in BARE else entity_type, start, end) for entity_type, start, end in found]


@functools.lru_cache(maxsize=None)
def decoder(labels):
    """The postprocessor in one traced graph (any batch and width) on logits that pick the given tag ids."""
    postprocess, table = postprocessor(list(labels))

    matrix = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[matrix, matrix, tf.TensorSpec([None, None, 2], tf.int32)])
    def run(ids, mask, offsets):
        logits = tf.one_hot(ids, len(labels))
        return postprocess(logits, {"padding_mask": mask, "offsets": offsets, "starts_word": mask > 0})

    run.table = table  # keep the label table alive with the function
    return run


def graph_entities(sequences, labels=LABELS):
    """The postprocessor, one word per token -> [(label, first, last)] per row (and checks its spans)."""
    width = max(1, max(len(tags) for tags in sequences))
    ids = np.zeros((len(sequences), width), np.int32)
    mask = np.zeros((len(sequences), width), np.int32)
    for row, tags in enumerate(sequences):
        ids[row, :len(tags)] = [labels.index(tag) for tag in tags]
        mask[row, :len(tags)] = 1
    position = np.arange(width, dtype=np.int32)
    offsets = np.stack(np.broadcast_arrays(10 * position, 10 * position + 4), -1)[None].repeat(len(sequences), 0)
    out = {key: value.numpy() for key, value in decoder(tuple(labels))(ids, mask, offsets).items()}
    result = []
    for row, tags in enumerate(sequences):
        count = out["entity_count"][row]
        assert out["word_count"][row] == len(tags)
        assert [t.decode() for t in out["word_tag"][row][:len(tags)]] == tags
        entities = [(label.decode(), int(first), int(last)) for label, first, last in zip(
            *(out[key][row][:count] for key in ("entity_label", "entity_first_word", "entity_last_word")))]
        # Character spans run from the first word's start to the last word's end.
        assert out["entity_start"][row][:count].tolist() == [10 * first for _, first, _ in entities]
        assert out["entity_end"][row][:count].tolist() == [10 * last + 4 for _, _, last in entities]
        result.append(entities)
    return result


@pytest.mark.parametrize("scheme", sorted(CASES))
def test_python_and_graph_decode_every_scheme_as_seqeval(scheme):
    sequences = CASES[scheme]
    expected = [reference(tags) for tags in sequences]
    assert [get_entities(tags) for tags in sequences] == expected
    assert graph_entities(sequences) == expected


def test_the_cases_where_the_served_graph_and_scoring_disagreed():
    # An S- ends its entity, so a following I- opens another; a bare type is an entity.
    assert get_entities(["S-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 1, 1)]
    assert get_entities(["PER", "PER"]) == [("PER", 0, 1)]
    assert graph_entities([["S-PER", "I-PER"], ["PER", "PER"]]) == [[("PER", 0, 0), ("PER", 1, 1)], [("PER", 0, 1)]]


def test_random_sequences_python_and_graph_equal_seqeval():
    sequences = random_sequences()
    expected = [reference(tags) for tags in sequences]
    assert sum(len(e) for e in expected) > 5000
    assert [get_entities(tags) for tags in sequences] == expected
    assert graph_entities(sequences) == expected
    # Joined sentences (as entity_scores calls it): seqeval puts an "O" between them, and so do we.
    assert get_entities(sequences[:50]) == [(t, s, e) for t, s, e in get_entities(
        [tag for tags in sequences[:50] for tag in tags + ["O"]])]


def test_rows_without_words():
    assert graph_entities([[]]) == [[]]
    assert graph_entities([[], ["S-PER"], [], ["O", "GPE"]]) == [[], [("PER", 0, 0)], [], [("GPE", 1, 1)]]


def test_bare_types_named_like_a_prefix_letter():
    """seqeval reads "ORG" as the tag O (type "RG") and finds nothing; we read it as the type ORG."""
    assert reference(["ORG", "ORG"]) == []
    assert get_entities(["ORG", "ORG", "O", "BANK", "ORG"]) == [("ORG", 0, 1), ("BANK", 3, 3), ("ORG", 4, 4)]
    labels = ["O", "ORG", "BANK", "EVENT", "SPORT", "ISSUE"]
    sequences = [["ORG", "ORG", "O", "BANK", "ORG"], ["EVENT", "SPORT", "SPORT", "ISSUE"]]
    assert graph_entities(sequences, labels) == [get_entities(tags) for tags in sequences]


def test_unsupported_tags_are_refused_by_name():
    for tag, message in (("U-PER", "BILOU"), ("L-PER", "BILOU"), ("X-PER", "not O, B-/I-/E-/S-TYPE"),
                         ("B-", "not O"), ("B", "has a prefix but no type")):
        with pytest.raises(ValueError, match=re.escape(repr(tag))):
            split_tag(tag)
        with pytest.raises(ValueError, match=re.escape(message)):
            label_parts(["O", tag])
    assert label_parts(["O", "B-PER", "PER", "I-PER"]) == ([0, 1, 2, 2], [-1, 0, 1, 0], ["PER", "PER"])
    # At fine-tuning: a tag set the decoder cannot read is refused before any training.
    with pytest.raises(ValueError, match=r"labels: tag 'U-PER' is not O.*BILOU"):
        NerTask().model_kwargs([{"tokens": ["Иван"], "tags": ["B-PER"]}], {"labels": "O,B-PER,U-PER"})


# ---- reading files of every scheme ------------------------------------------------------------

def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_read_iobes_iob1_and_bare_files_as_written(tmp_path):
    iobes = write(tmp_path / "a.iobes", "Жан B-PER\nЛе I-PER\nПен E-PER\nв O\nМоскве S-LOC\n\nМИД S-ORG\n")
    sentences = read_conll(iobes)
    assert [s["tags"] for s in sentences] == [["B-PER", "I-PER", "E-PER", "O", "S-LOC"], ["S-ORG"]]
    assert infer_labels(s["tags"] for s in sentences) == ["O", "S-LOC", "S-ORG", "B-PER", "I-PER", "E-PER"]

    iob1 = write(tmp_path / "a.iob1", "Иван I-PER\nПетров I-PER\nСергей B-PER\nв O\nМоскве I-LOC\n")
    with pytest.raises(DataError, match=r"a\.iob1:1: malformed BIO: I-PER follows O .*--tag-scheme iob1"):
        read_conll(iob1)  # auto reads B-/I- files as IOB2
    assert read_conll(iob1, scheme="iob1")[0]["tags"] == ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]
    bad_iob1 = write(tmp_path / "bad.iob1", "в O\nМоскве B-LOC\n")
    with pytest.raises(DataError, match=r"bad\.iob1:2: malformed IOB1: B-LOC follows O"):
        read_conll(bad_iob1, scheme="iob1")
    assert read_conll(bad_iob1, strict=False, scheme="iob1")[0]["tags"] == ["O", "I-LOC"]

    bare = write(tmp_path / "a.bare", "Иван PER\nПетров PER\nв O\nГазпроме ORG\n")
    assert read_conll(bare)[0]["tags"] == ["PER", "PER", "O", "ORG"]
    assert infer_labels(["PER", "B-LOC", "ORG", "I-LOC", "B-PER", "O", "S-LOC"] for _ in range(2)) == [
        "O", "B-LOC", "I-LOC", "S-LOC", "ORG", "B-PER", "PER"]


@pytest.mark.parametrize("text, scheme, line, message", [
    ("Иван B-PER\nПетров O\n", "iobes", 1, "malformed IOBES: B-PER is followed by O, not I-/E-PER"),
    ("Иван S-PER\nПетров E-PER\n", "auto", 2, "malformed IOBES: E-PER follows S-PER"),
    ("Иван B-PER\nПетров I-PER\n", "iobes", 2, "malformed IOBES: I-PER is followed by the end of the sentence"),
    ("Иван U-PER\n", "auto", 1, "tag 'U-PER' is not O, B-TYPE or I-TYPE (IOB2/IOB1), E-TYPE or S-TYPE (IOBES)"),
    ("Иван B-PER\nПетров PER\n", "auto", 2, "tag 'PER' does not belong to the IOB2 tag scheme (a file uses one"),
    ("Иван B-PER\nПетров E-PER\n", "iob2", 2, "tag 'E-PER' does not belong to the IOB2 tag scheme (an IOBES file"),
    ("Иван PER\nПетров B-PER\n", "bare", 2, "tag 'B-PER' does not belong to the BARE tag scheme"),
])
def test_scheme_errors_name_file_and_line(tmp_path, text, scheme, line, message):
    path = write(tmp_path / "bad.bio", text)
    with pytest.raises(DataError, match=rf"^{re.escape(path)}:{line}: {re.escape(message)}"):
        read_conll(path, scheme=scheme)


def test_repair_reads_broken_iobes_as_the_same_entities(tmp_path):
    path = write(tmp_path / "broken.iobes", "а I-PER\nб O\nв B-LOC\nг E-ORG\nд B-ORG\nе I-ORG\n")
    tags = read_conll(path, strict=False)[0]["tags"]
    assert tags == ["S-PER", "O", "S-LOC", "S-ORG", "B-ORG", "E-ORG"]
    original = ["I-PER", "O", "B-LOC", "E-ORG", "B-ORG", "I-ORG"]
    assert get_entities(tags) == reference(original) == get_entities(original)
