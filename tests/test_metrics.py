"""Metric code against the references: seqeval, scikit-learn, and the official SQuAD formula."""

import numpy as np
import pytest
import seqeval.metrics
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef as sk_mcc

from rubert_tf.metrics import accuracy, entity_scores, get_entities, macro_f1, matthews_corrcoef, squad_scores


def test_classification_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y_true, y_pred = rng.integers(-1, 2, 50), rng.integers(-1, 2, 50)
        assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
        assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
        assert macro_f1(y_true, y_pred, labels=[-1, 1]) == pytest.approx(
            f1_score(y_true, y_pred, labels=[-1, 1], average="macro"))
        b_true, b_pred = y_true > 0, y_pred > 0
        assert matthews_corrcoef(b_true, b_pred) == pytest.approx(sk_mcc(b_true, b_pred))
    with pytest.raises(ValueError, match="shape"):
        accuracy([1, 2], [1])


HAND_MADE = [
    (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-ORG"]),
    (["O", "I-ORG", "I-ORG", "O"], ["O", "B-ORG", "I-ORG", "O"]),  # I- without B- starts an entity
    (["B-LOC", "B-LOC", "I-LOC"], ["B-LOC", "I-LOC", "I-LOC"]),
    (["B-PER", "I-LOC", "O"], ["B-PER", "O", "O"]),  # type change splits the chunk
    (["O", "O"], ["B-PER", "O"]),
    (["S-PER", "O", "B-ORG", "E-ORG"], ["S-PER", "O", "B-ORG", "I-ORG"]),
]


def test_entities_and_scores_match_seqeval():
    gold = [g for g, _ in HAND_MADE]
    predicted = [p for _, p in HAND_MADE]
    for sentence in gold + predicted:
        assert get_entities(sentence) == [tuple(e) for e in seqeval.metrics.sequence_labeling.get_entities(sentence)]
    scores = entity_scores(gold, predicted)
    assert scores["precision"] == pytest.approx(seqeval.metrics.precision_score(gold, predicted))
    assert scores["recall"] == pytest.approx(seqeval.metrics.recall_score(gold, predicted))
    assert scores["f1"] == pytest.approx(seqeval.metrics.f1_score(gold, predicted))
    report = seqeval.metrics.classification_report(gold, predicted, output_dict=True)
    for entity_type, values in scores["per_type"].items():
        if entity_type in report:
            assert values["f1"] == pytest.approx(report[entity_type]["f1-score"])
    with pytest.raises(ValueError, match="sentence 0"):
        entity_scores([["O"]], [["O", "O"]])


def test_squad_scores_follow_the_official_formula():
    references = {"q1": ["Москва"], "q2": ["the Volga river", "Volga"], "q3": ["в 1812 году"], "q4": ["Пётр I"]}
    predictions = {"q1": "Москва.", "q2": "Volga River", "q3": "1812 году", "q4": "Екатерина"}
    scores = squad_scores(predictions, references)
    # q1: EM after punctuation removal; q2: "volga river" == normalised "the volga river"; q3: F1 = 2*(1*2/3)/(1+2/3)
    assert scores["exact_match"] == pytest.approx(100 * 2 / 4)
    assert scores["f1"] == pytest.approx(100 * (1 + 1 + 0.8 + 0) / 4)
    with pytest.raises(ValueError, match="no prediction"):
        squad_scores({}, {"q": ["x"]})
