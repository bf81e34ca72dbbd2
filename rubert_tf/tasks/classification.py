"""Sequence classification as a fine-tuning task: multi-class, multi-label (sigmoid), sentence pairs.

    rubert-tf finetune classification --model rubert-tiny2 --train train_data.csv --out models/rusentne \\
        --text-column sentence --text-pair-column entity --label-column label

Reads CSV/TSV/JSONL with a column mapping; label names come from `--labels a,b,c` or, by default,
from the training data (sorted; numerically when they are all numbers, so -1 < 0 < 1). Metrics:
accuracy and macro-F1 always; MCC for two classes (RuCoLA); macro-F1 over the positive and
negative classes when the labels have both (RuSentNE-2023's official score).
"""

import json

import numpy as np

from rubert_tf.data.classification import classification_dataset, encode_class_labels
from rubert_tf.data.readers import DataError, read_table
from rubert_tf.metrics import accuracy, macro_f1, matthews_corrcoef
from rubert_tf.models.classifier import RuBertClassifier
from rubert_tf.tasks.base import Task

DEFAULTS = {"text_column": "text", "text_pair_column": None, "label_column": "label", "labels": None,
            "multi_label": False, "label_delimiter": ","}
POSITIVE_NAMES = ("1", "+1", "pos", "positive")
NEGATIVE_NAMES = ("-1", "neg", "negative")


def option(options, key):
    value = (options or {}).get(key)
    return DEFAULTS[key] if value is None else value


def label_list(value):
    """--labels: "a,b,c" or a list -> ["a", "b", "c"] (None stays None)."""
    if value is None:
        return None
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"labels: no label names in {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"labels: duplicate label names in {value!r}")
    return names


def sort_labels(names):
    """Sorted label names; numbers by value when every name is one."""
    names = set(names)
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def pos_neg_labels(labels):
    """Indices of the positive and negative class when `labels` has both, else None."""
    lowered = [str(label).strip().lower() for label in labels]
    positive = [i for i, name in enumerate(lowered) if name in POSITIVE_NAMES]
    negative = [i for i, name in enumerate(lowered) if name in NEGATIVE_NAMES]
    if len(positive) == 1 and len(negative) == 1:
        return [negative[0], positive[0]]
    return None


def classification_metrics(labels, y_true, y_pred, multi_label=False):
    """The field's scores from class ids (or multi-hot rows): accuracy, macro_f1, plus mcc for two
    classes and macro_f1_pos_neg when the labels have a positive and a negative class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if multi_label:
        # accuracy = exact match of the label set; macro-F1 = mean of per-label binary F1.
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


class ClassificationTask(Task):
    """Text (or text pair) -> one label, or a set of labels with `multi_label`."""

    name = "classification"
    model_class = RuBertClassifier

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--text-column", default=DEFAULTS["text_column"], help="column of the text (default: text)")
        parser.add_argument("--text-pair-column", help="column of the second text (e.g. the entity of RuSentNE)")
        parser.add_argument("--label-column", default=DEFAULTS["label_column"], help="column of the label (default: label)")
        parser.add_argument("--labels", help="label names, comma-separated (default: those of the training data, sorted)")
        parser.add_argument("--multi-label", action="store_true",
                            help="several labels per text (sigmoid outputs); the label column holds a JSON list or "
                                 "names separated by --label-delimiter")
        parser.add_argument("--label-delimiter", default=DEFAULTS["label_delimiter"],
                            help="separator of labels in one multi-label cell (default: ,)")

    # ---- data -----------------------------------------------------------------------------

    def read(self, path, options):
        """Examples {"text", "text_pair"?, "label", "_line", "_source"} of a CSV/TSV/JSONL file.

        "label" is a name (str) or, with multi_label, a list of names. With an explicit label
        list, an unknown label fails here with file:line.
        """
        options = options or {}
        columns = {"text": option(options, "text_column"), "text_pair": option(options, "text_pair_column"),
                   "label": option(options, "label_column")}
        rows = read_table(path, columns)
        if not rows:
            raise DataError(f"{path}: no examples (only a header or blank lines)")
        multi_label = bool(option(options, "multi_label"))
        delimiter = option(options, "label_delimiter")
        for row in rows:
            row["_source"] = path
            for field in ("text", "text_pair"):
                if field in row and not isinstance(row[field], str):
                    raise DataError(f"{path}:{row['_line']}: column {columns[field]!r} must be text, "
                                    f"got {json.dumps(row[field], ensure_ascii=False)}")
            row["label"] = self._label_value(row["label"], multi_label, delimiter, path, row["_line"],
                                             columns["label"])
        names = label_list(options.get("labels"))
        if names is not None:
            encode_class_labels(rows, names, multi_label)  # fails with file:line on an unknown label
        return rows

    @staticmethod
    def _label_value(value, multi_label, delimiter, path, line, column):
        if multi_label:
            if isinstance(value, list):
                names = [str(v).strip() for v in value]
            elif isinstance(value, str):
                names = [part.strip() for part in value.split(delimiter)] if value.strip() else []
            else:
                raise DataError(f"{path}:{line}: multi-label column {column!r} must hold a list or a "
                                f"{delimiter!r}-separated string, got {json.dumps(value, ensure_ascii=False)}")
            if any(not name for name in names):
                raise DataError(f"{path}:{line}: empty label name in {json.dumps(value, ensure_ascii=False)}")
            return list(dict.fromkeys(names))
        if isinstance(value, (list, dict)) or value is None:
            raise DataError(f"{path}:{line}: label column {column!r} must hold one label, got "
                            f"{json.dumps(value, ensure_ascii=False)} (several labels per text need --multi-label)")
        name = str(value).strip()
        if not name:
            raise DataError(f"{path}:{line}: empty label in column {column!r}")
        return name

    def model_kwargs(self, examples, options):
        labels = label_list((options or {}).get("labels"))
        multi_label = bool(option(options, "multi_label"))
        if labels is None:
            seen = [name for example in examples
                    for name in (example["label"] if multi_label else [example["label"]])]
            labels = sort_labels(seen)
            if len(labels) < 2 and not multi_label:
                raise DataError(f"{examples[0].get('_source', 'training data')}: only one label {labels} in the "
                                "training data; a classifier needs at least two (or pass --labels)")
        return {"labels": labels, "multi_label": multi_label}

    def dataset(self, model, tokenizer, examples, batch_size, max_length, shuffle=False, seed=None):
        """Training batches are shuffled and length-bucketed; evaluation batches keep the file order."""
        labels = encode_class_labels(examples, model.labels, model.multi_label)
        return classification_dataset(
            tokenizer, [e["text"] for e in examples], _pairs(examples), labels, batch_size=batch_size,
            max_length=max_length, shuffle=shuffle, seed=seed, bucket_boundaries="auto" if shuffle else None)

    # ---- scoring and inference ------------------------------------------------------------

    def logits(self, model, examples, max_length, batch_size):
        """Logits [N, num_labels] in the order of `examples`."""
        tokenizer = model._require_tokenizer()
        dataset = classification_dataset(tokenizer, [e["text"] for e in examples], _pairs(examples),
                                         batch_size=batch_size, max_length=max_length, cache=False)
        return np.concatenate([np.asarray(model(batch, training=False)["logits"], dtype=np.float32)
                               for batch in dataset])

    def evaluate(self, model, examples, max_length, batch_size, threshold=0.5):
        """accuracy, macro_f1 (+ mcc, macro_f1_pos_neg, see `classification_metrics`) and the mean loss."""
        y_true = encode_class_labels(examples, model.labels, model.multi_label)
        logits = self.logits(model, examples, max_length, batch_size)
        if model.multi_label:
            y_pred = (model.probabilities(logits) >= threshold).astype(np.float32)
        else:
            y_pred = logits.argmax(-1).astype(np.int32)
        metrics = classification_metrics(model.labels, y_true, y_pred, model.multi_label)
        metrics["loss"] = float(model.default_loss()(y_true, logits))
        metrics["examples"] = len(examples)
        return metrics

    def predict(self, model, inputs, max_length, batch_size):
        """Strings, or dicts {"text", "text_pair"?} -> dicts with the label name(s), score and all probabilities."""
        texts, pairs = [], []
        for number, item in enumerate(inputs, start=1):
            if isinstance(item, str):
                texts.append(item)
                pairs.append(None)
                continue
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError(f"input {number}: expected a string or an object with a \"text\" string, got {item!r:.200}")
            unknown = sorted(set(item) - {"text", "text_pair"})
            if unknown:
                raise ValueError(f"input {number}: unknown field(s) {unknown}; use \"text\" and \"text_pair\"")
            pair = item.get("text_pair")
            if pair is not None and not isinstance(pair, str):
                raise ValueError(f"input {number}: \"text_pair\" must be a string, got {pair!r:.200}")
            texts.append(item["text"])
            pairs.append(pair)
        results = [None] * len(texts)
        # Single texts and pairs in separate calls (a pair adds a [SEP] and segment 1).
        for with_pair in (False, True):
            rows = [i for i, pair in enumerate(pairs) if (pair is not None) == with_pair]
            if not rows:
                continue
            predictions = model.classify([texts[i] for i in rows], [pairs[i] for i in rows] if with_pair else None,
                                         max_length=max_length, batch_size=batch_size)
            for i, prediction in zip(rows, predictions):
                result = {"text": texts[i]}
                if with_pair:
                    result["text_pair"] = pairs[i]
                result.update(prediction)
                results[i] = result
        return results


def _pairs(examples):
    with_pair = ["text_pair" in example for example in examples]
    if not any(with_pair):
        return None
    if not all(with_pair):
        missing = examples[with_pair.index(False)]
        raise DataError(f"{missing.get('_source', '<examples>')}:{missing.get('_line', '?')}: no text pair, "
                        "but other examples have one")
    return [example["text_pair"] for example in examples]
