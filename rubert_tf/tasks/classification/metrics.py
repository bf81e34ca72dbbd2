"""The field's classification scores from class ids: accuracy and macro-F1 always, MCC for two
classes (RuCoLA), macro-F1 over the positive and negative classes when the labels have both
(RuSentNE-2023's official score)."""

import numpy as np

from rubert_tf.metrics import accuracy, macro_f1, matthews_corrcoef

POSITIVE_NAMES = ("1", "+1", "pos", "positive")
NEGATIVE_NAMES = ("-1", "neg", "negative")


def pos_neg_labels(labels):
    """Indices of the positive and negative class when `labels` has both, else None."""
    lowered = [str(label).strip().lower() for label in labels]
    positive = [i for i, name in enumerate(lowered) if name in POSITIVE_NAMES]
    negative = [i for i, name in enumerate(lowered) if name in NEGATIVE_NAMES]
    if len(positive) == 1 and len(negative) == 1:
        return [negative[0], positive[0]]
    return None


def classification_metrics(labels, y_true, y_pred, multi_label=False):
    """accuracy, macro_f1, plus mcc for two classes and macro_f1_pos_neg when the labels have a
    positive and a negative class; multi-label: exact-match accuracy and mean per-label F1."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if multi_label:
        return {"accuracy": float(np.mean(np.all(y_true == y_pred, axis=1))),
                "macro_f1": float(np.mean([macro_f1(y_true[:, j], y_pred[:, j], labels=[1])
                                           for j in range(y_true.shape[1])]))}
    metrics = {"accuracy": accuracy(y_true, y_pred),
               "macro_f1": macro_f1(y_true, y_pred, labels=list(range(len(labels))))}
    if len(labels) == 2:
        metrics["mcc"] = matthews_corrcoef(y_true, y_pred)
    pos_neg = pos_neg_labels(labels)
    if pos_neg is not None:
        metrics["macro_f1_pos_neg"] = macro_f1(y_true, y_pred, labels=pos_neg)
    return metrics


def mean_loss(probabilities, y_true, multi_label=False):
    """Cross-entropy of the predicted probabilities (what the served model answers), per example."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)
    if multi_label:
        y = np.asarray(y_true, np.float64)
        q = np.clip(1.0 - np.asarray(probabilities, np.float64), 1e-12, 1.0)
        return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(q))))
    return float(np.mean(-np.log(p[np.arange(len(p)), np.asarray(y_true, np.int64)])))
