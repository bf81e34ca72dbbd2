"""Classification metrics: accuracy, macro-F1 (optionally over a subset of classes), Matthews correlation."""

import numpy as np


def _as_arrays(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("no examples to score")
    return y_true, y_pred


def accuracy(y_true, y_pred):
    y_true, y_pred = _as_arrays(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true, y_pred, labels=None):
    """Mean of per-class F1. `labels` restricts the average (RuSentNE's official score uses the
    positive and negative classes only); by default every class seen in either array counts."""
    y_true, y_pred = _as_arrays(y_true, y_pred)
    labels = np.union1d(y_true, y_pred) if labels is None else labels
    scores = []
    for label in labels:
        true_positive = np.sum((y_pred == label) & (y_true == label))
        predicted = np.sum(y_pred == label)
        actual = np.sum(y_true == label)
        denominator = predicted + actual
        scores.append(0.0 if denominator == 0 else 2.0 * true_positive / denominator)
    return float(np.mean(scores))


def matthews_corrcoef(y_true, y_pred):
    """MCC for binary labels (RuCoLA's metric); 0 when a marginal is empty, as scikit-learn."""
    y_true, y_pred = _as_arrays(y_true, y_pred)
    y_true, y_pred = y_true.astype(bool), y_pred.astype(bool)
    tp = float(np.sum(y_true & y_pred))
    tn = float(np.sum(~y_true & ~y_pred))
    fp = float(np.sum(~y_true & y_pred))
    fn = float(np.sum(y_true & ~y_pred))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else float((tp * tn - fp * fn) / denominator)
