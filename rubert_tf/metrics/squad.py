"""SQuAD exact match and F1, following the official v1.1 evaluation script's normalisation."""

import collections
import re
import string

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text):
    """Lower case, drop punctuation, drop English articles, squeeze whitespace (official script)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction, ground_truth):
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1(prediction, ground_truth):
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    if not predicted_tokens or not gold_tokens:
        # SQuAD v2 convention: both empty (no answer) scores 1, otherwise 0.
        return float(predicted_tokens == gold_tokens)
    common = collections.Counter(predicted_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions, references):
    """`predictions`: {id: text}; `references`: {id: [gold texts]}. Returns percentages like the script."""
    missing = [key for key in references if key not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. {missing[0]!r}")
    if not references:
        raise ValueError("no questions to score")
    em_total = f1_total = 0.0
    for key, golds in references.items():
        golds = golds or [""]
        em_total += max(exact_match(predictions[key], gold) for gold in golds)
        f1_total += max(f1(predictions[key], gold) for gold in golds)
    return {"exact_match": 100.0 * em_total / len(references), "f1": 100.0 * f1_total / len(references)}
