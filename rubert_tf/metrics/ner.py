"""Entity-level precision/recall/F1 over tag sequences, as seqeval's default (conlleval) mode.

This file is the one definition of how tags group into entities: `get_entities` here (scores,
eager code) and the graph postprocessor of rubert_tf/tasks/ner/processing.py (the served model)
both read `STARTS_CHUNK` and `split_tag`, so they cannot disagree. (A shared table rather than
scoring with the graph decoder: scores also decode gold tags read from files, without a model or
TensorFlow, and metrics/ may not import tasks/. The tests hold both sides to seqeval.)

Tags: "O"; B-/I-/E-/S-TYPE, so IOB2 (BIO), IOB1 and IOBES (BIOES) all decode the same way seqeval
does; and a bare TYPE ("PER"). seqeval reads a bare tag's first letter as its prefix and the rest as
its type ("PER" -> "P" + "ER"), so a run of equal bare tags is one entity of a type of its own (never
joined with a B-PER). We find the same runs but keep the whole name as the label, also for names
that begin with a prefix letter, which seqeval misreads ("ORG" -> "O" + "RG": no entity in "ORG ORG";
here one ORG entity). Other prefixes (BILOU's U-/L-, "X-PER") are an error that names the tag.
"""

PREFIXES = ("O", "B", "I", "E", "S")

# Does the current tag open a new entity, given the previous tag's prefix? seqeval's `start_of_chunk`
# (default mode) as a table; a change of type opens one too (current tag not O). Where seqeval's
# `end_of_chunk` fires, the next entity starts or the tag is O (checked against seqeval in the tests),
# so an entity is exactly: a tag that starts one, then the following non-O tags that do not.
STARTS_CHUNK = (
    # current: O  B  I  E  S      previous:
    (0, 1, 1, 1, 1),  # O
    (0, 1, 0, 0, 1),  # B
    (0, 1, 0, 0, 1),  # I
    (0, 1, 1, 1, 1),  # E
    (0, 1, 1, 1, 1),  # S
)


def split_tag(tag):
    """tag -> (prefix, type, bare): "B-PER" -> ("B", "PER", False), "PER" -> ("I", "PER", True),
    "O" (or "") -> ("O", "", False). An unsupported tag raises ValueError naming it."""
    if tag in ("O", ""):
        return "O", "", False
    prefix, dash, entity_type = tag.partition("-")
    if not dash:
        if tag in PREFIXES:
            raise ValueError(f"tag {tag!r} has a prefix but no type (expected {tag}-TYPE)")
        return "I", tag, True  # a bare type reads as an inside tag of its own type
    if prefix not in ("B", "I", "E", "S") or not entity_type:
        raise ValueError(f"tag {tag!r} is not O, B-/I-/E-/S-TYPE (IOB2, IOB1, IOBES) or a bare TYPE; "
                         "other schemes (BILOU's U-/L-, ...) are not supported")
    return prefix, entity_type, False


def starts_chunk(previous_prefix, prefix, previous_type, entity_type):
    """The start rule for one step; types are compared as keys (bare "PER" is not B-PER's "PER")."""
    if STARTS_CHUNK[PREFIXES.index(previous_prefix)][PREFIXES.index(prefix)]:
        return True
    return prefix != "O" and previous_type != entity_type


def label_parts(labels):
    """For the graph decoder, per label id: prefix index into PREFIXES and a type id (-1 for O), plus
    the type names by type id (bare and prefixed tags of one name are different types)."""
    prefixes, type_ids, keys = [], [], []
    for label in labels:
        prefix, entity_type, bare = split_tag(label)
        prefixes.append(PREFIXES.index(prefix))
        if prefix == "O":
            type_ids.append(-1)
            continue
        if (entity_type, bare) not in keys:
            keys.append((entity_type, bare))
        type_ids.append(keys.index((entity_type, bare)))
    return prefixes, type_ids, [entity_type for entity_type, _ in keys]


def get_entities(tags):
    """[(type, start, end_inclusive)] of a tag sequence (or a list of sequences, joined as one with
    an "O" between, as seqeval does)."""
    if tags and isinstance(tags[0], (list, tuple)):
        tags = [tag for sentence in tags for tag in list(sentence) + ["O"]]
    entities, previous_prefix, previous_key = [], "O", None
    for index, tag in enumerate(tags):
        prefix, entity_type, bare = split_tag(tag)
        key = (entity_type, bare) if prefix != "O" else None
        if starts_chunk(previous_prefix, prefix, previous_key, key):
            entities.append([entity_type, index, index])
        elif prefix != "O":
            entities[-1][2] = index  # continues the open entity (same type, I-/E- after B-/I-)
        previous_prefix, previous_key = prefix, key
    return [tuple(entity) for entity in entities]


def entity_scores(true_tags, predicted_tags):
    """Micro precision/recall/F1 over all entities plus per-type scores.

    `true_tags` and `predicted_tags` are lists of sentences, each a list of tags.
    """
    if len(true_tags) != len(predicted_tags):
        raise ValueError(f"{len(true_tags)} gold sentences but {len(predicted_tags)} predicted")
    for index, (gold, predicted) in enumerate(zip(true_tags, predicted_tags)):
        if len(gold) != len(predicted):
            raise ValueError(f"sentence {index}: {len(gold)} gold tags but {len(predicted)} predicted")
    gold = set(get_entities([list(s) for s in true_tags]))
    predicted = set(get_entities([list(s) for s in predicted_tags]))

    def prf(gold_set, predicted_set):
        hits = len(gold_set & predicted_set)
        precision = hits / len(predicted_set) if predicted_set else 0.0
        recall = hits / len(gold_set) if gold_set else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "support": len(gold_set)}

    scores = prf(gold, predicted)
    types = sorted({entity[0] for entity in gold | predicted})
    scores["per_type"] = {
        t: prf({e for e in gold if e[0] == t}, {e for e in predicted if e[0] == t}) for t in types}
    return scores
