"""Sequence classification as a fine-tuning task: multi-class, multi-label (sigmoid), sentence pairs.

    rubert-tf finetune classification --model rubert-tiny2 --train train_data.csv --out models/rusentne \\
        --text-column sentence --text-pair-column entity --label-column label
    rubert-tf evaluate classification --model models/rusentne --eval test.csv    # the columns travel with the model
    rubert-tf predict classification --model models/rusentne '{"text": "...", "text_pair": "..."}'

Reads CSV/TSV/JSONL with a column mapping; label names come from `--labels a,b,c`, from
`--label-map RAW=NAME,...` (names for raw labels such as -1/0/1) or, by default, from the training
data (sorted; numerically when they are all numbers, so -1 < 0 < 1). Metrics: see metrics.py.
"""

import json

import numpy as np

from rubert_tf.data.classification import classification_dataset, encode_class_labels
from rubert_tf.data.readers import DataError, read_table
from rubert_tf.models.classifier import RuBertClassifier
from rubert_tf.tasks.base import Task
from rubert_tf.tasks.classification import processing
from rubert_tf.tasks.classification.metrics import classification_metrics, mean_loss
from rubert_tf.tasks.classification.settings import ClassificationSettings


def sort_labels(names):
    """Sorted label names; numbers by value when every name is one."""
    names = set(names)
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


class ClassificationTask(Task):
    """Text (or text pair) -> one label, or a set of labels with `multi_label`."""

    name = "classification"
    model_class = RuBertClassifier
    settings_class = ClassificationSettings

    # ---- data -----------------------------------------------------------------------------

    def read(self, path, settings=None):
        """Examples {"text", "text_pair"?, "label", "_line", "_source"} of a CSV/TSV/JSONL file.

        "label" is a name (str) or, with multi_label, a list of names; raw labels are renamed by
        the label map. With an explicit label list, an unknown label fails here with file:line.
        """
        s = self.settings(overrides=settings)
        columns = {"text": s.text_column, "text_pair": s.text_pair_column, "label": s.label_column}
        rows = read_table(path, columns)
        if not rows:
            raise DataError(f"{path}: no examples (only a header or blank lines)")
        for row in rows:
            row["_source"] = path
            for field in ("text", "text_pair"):
                if field in row and not isinstance(row[field], str):
                    raise DataError(f"{path}:{row['_line']}: column {columns[field]!r} must be text, "
                                    f"got {json.dumps(row[field], ensure_ascii=False)}")
            row["label"] = self._label_value(row["label"], s, path, row["_line"], columns["label"])
        names = s.labels or (list(dict.fromkeys(s.label_map.values())) if s.label_map else None)
        if names is not None:
            try:
                encode_class_labels(rows, names, s.multi_label)  # fails with file:line on an unknown label
            except DataError as error:
                if s.label_map is not None:
                    raise
                raise DataError(f"{error}; to name the data's raw labels, use --label-map RAW=NAME,... "
                                "(e.g. -1=negative,0=neutral,1=positive)") from None
        return rows

    @staticmethod
    def _label_value(value, s, path, line, column):
        def renamed(name):
            if s.label_map is None:
                return name
            if name not in s.label_map:
                raise DataError(f"{path}:{line}: label {name!r} has no name in the label map "
                                f"{s.label_map}; add {name}=NAME to --label-map")
            return s.label_map[name]

        if s.multi_label:
            delimiter = s.label_delimiter
            if isinstance(value, list):
                names = [str(v).strip() for v in value]
            elif isinstance(value, str):
                names = [part.strip() for part in value.split(delimiter)] if value.strip() else []
            else:
                raise DataError(f"{path}:{line}: multi-label column {column!r} must hold a list or a "
                                f"{delimiter!r}-separated string, got {json.dumps(value, ensure_ascii=False)}")
            if any(not name for name in names):
                raise DataError(f"{path}:{line}: empty label name in {json.dumps(value, ensure_ascii=False)}")
            return list(dict.fromkeys(renamed(name) for name in names))
        if isinstance(value, (list, dict)) or value is None:
            raise DataError(f"{path}:{line}: label column {column!r} must hold one label, got "
                            f"{json.dumps(value, ensure_ascii=False)} (several labels per text need --multi-label)")
        name = str(value).strip()
        if not name:
            raise DataError(f"{path}:{line}: empty label in column {column!r}")
        return renamed(name)

    def model_kwargs(self, examples, settings=None):
        s = self.settings(overrides=settings)
        labels = s.labels or (list(dict.fromkeys(s.label_map.values())) if s.label_map else None)
        if labels is None:
            seen = [name for example in examples
                    for name in (example["label"] if s.multi_label else [example["label"]])]
            labels = sort_labels(seen)
            if len(labels) < 2 and not s.multi_label:
                raise DataError(f"{examples[0].get('_source', 'training data')}: only one label {labels} in the "
                                "training data; a classifier needs at least two (or pass --labels)")
        return {"labels": labels, "multi_label": s.multi_label}

    def dataset(self, model, tokenizer, examples, settings=None, batch_size=32, shuffle=False, seed=None):
        """Training batches are shuffled and length-bucketed; evaluation batches keep the file order."""
        s = self.settings(model, settings)
        labels = encode_class_labels(examples, model.labels, model.multi_label)
        return classification_dataset(
            tokenizer, [e["text"] for e in examples], _pairs(examples), labels, batch_size=batch_size,
            max_length=s.max_length, shuffle=shuffle, seed=seed, bucket_boundaries="auto" if shuffle else None)

    # ---- scoring and inference: everything goes through the serving module -------------------

    def serving_module(self, model, tokenizer, settings=None):
        return processing.serving_module(model, tokenizer, self.settings(model, settings))

    def _settings_for(self, model, examples, settings):
        """Settings for scoring/predicting `examples`: a pair model needs pairs, a single-text one none."""
        overrides = dict(settings or {}) if not isinstance(settings, ClassificationSettings) else settings.to_dict()
        overrides["text_pair"] = _pairs(examples) is not None
        overrides["multi_label"] = bool(model.multi_label)
        return self.settings(model, overrides)

    def outputs(self, model, examples, settings=None, batch_size=32):
        """The serving module's outputs (numpy) for `examples`, in their order."""
        s = self._settings_for(model, examples, settings)
        return processing.run(model, s, [e["text"] for e in examples], _pairs(examples), batch_size), s

    def evaluate(self, model, examples, settings=None, batch_size=32):
        """accuracy, macro_f1 (+ mcc, macro_f1_pos_neg, see metrics.py) and the mean loss, on what the
        served model answers."""
        y_true = encode_class_labels(examples, model.labels, model.multi_label)
        outputs, s = self.outputs(model, examples, settings, batch_size)
        y_pred = outputs["selected"].astype(np.float32) if model.multi_label else outputs["label_id"].astype(np.int32)
        metrics = classification_metrics(model.labels, y_true, y_pred, model.multi_label)
        metrics["loss"] = mean_loss(outputs["probabilities"], y_true, model.multi_label)
        metrics["examples"] = len(examples)
        return metrics

    def predict(self, model, inputs, settings=None, batch_size=32):
        """Strings, or dicts {"text", "text_pair"?} -> dicts with the label name(s), score and all probabilities."""
        examples = []
        for number, item in enumerate(inputs, start=1):
            if isinstance(item, str):
                examples.append({"text": item, "_source": "input", "_line": number})
                continue
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError(f"input {number}: expected a string or an object with a \"text\" string, got {item!r:.200}")
            unknown = sorted(set(item) - {"text", "text_pair"})
            if unknown:
                raise ValueError(f"input {number}: unknown field(s) {unknown}; use \"text\" and \"text_pair\"")
            pair = item.get("text_pair")
            if pair is not None and not isinstance(pair, str):
                raise ValueError(f"input {number}: \"text_pair\" must be a string, got {pair!r:.200}")
            example = {"text": item["text"], "_source": "input", "_line": number}
            if pair is not None:
                example["text_pair"] = pair
            examples.append(example)
        if not examples:
            return []
        stored = ClassificationSettings.stored(model)
        if stored:  # a fine-tuned model: every input must have the form it was trained on
            for example in examples:
                if ("text_pair" in example) != bool(stored.get("text_pair")):
                    want = "a text pair {\"text\": ..., \"text_pair\": ...}" if stored.get("text_pair") else "a single text"
                    raise ValueError(f"input {example['_line']}: this model was fine-tuned on "
                                     f"{'text pairs' if stored.get('text_pair') else 'single texts'}; give {want}")
        results = [None] * len(examples)
        # Single texts and pairs in separate runs (a pair adds a [SEP] and segment 1).
        for with_pair in (False, True):
            rows = [i for i, e in enumerate(examples) if ("text_pair" in e) == with_pair]
            if not rows:
                continue
            chosen = [examples[i] for i in rows]
            outputs, _ = self.outputs(model, chosen, settings, batch_size)
            for i, prediction in zip(rows, processing.as_results(model, outputs)):
                result = {"text": examples[i]["text"]}
                if with_pair:
                    result["text_pair"] = examples[i]["text_pair"]
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
