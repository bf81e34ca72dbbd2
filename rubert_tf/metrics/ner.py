"""Entity-level precision/recall/F1 over BIO/IOB2/IOBES tags, as seqeval's default (conlleval) mode."""


def _split_tag(tag):
    if tag in ("O", ""):
        return "O", ""
    prefix, _, entity_type = tag.partition("-")
    if prefix not in ("B", "I", "E", "S") or not entity_type:
        # A bare type ("PER") counts as an inside tag of that type, as conlleval reads it.
        return "I", tag
    return prefix, entity_type


def _ends_chunk(previous, current, previous_type, current_type):
    if previous in ("E", "S"):
        return True
    if previous in ("B", "I") and current in ("B", "S", "O"):
        return True
    return previous != "O" and previous_type != current_type


def _starts_chunk(previous, current, previous_type, current_type):
    if current in ("B", "S"):
        return True
    if previous in ("E", "S", "O") and current in ("E", "I"):
        return True
    return current != "O" and previous_type != current_type


def get_entities(tags):
    """[(type, start, end_inclusive)] of a tag sequence (or a list of sequences, joined as one)."""
    if tags and isinstance(tags[0], (list, tuple)):
        tags = [tag for sentence in tags for tag in list(sentence) + ["O"]]
    entities, previous, previous_type, begin = [], "O", "", 0
    for index, tag in enumerate(list(tags) + ["O"]):
        current, current_type = _split_tag(tag)
        if _ends_chunk(previous, current, previous_type, current_type):
            entities.append((previous_type, begin, index - 1))
        if _starts_chunk(previous, current, previous_type, current_type):
            begin = index
        previous, previous_type = current, current_type
    return entities


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
