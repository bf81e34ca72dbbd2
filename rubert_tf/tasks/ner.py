"""NER task: BIO/IOB2 tagging of CoNLL-style files with RuBertTokenClassifier.

    rubert-tf finetune ner --model PATH --train train.bio --eval dev.bio --out DIR [--repair-bio] [--labels O,B-PER,...]
    rubert-tf evaluate ner --model DIR --eval dev.bio [--repair-bio]
    rubert-tf predict ner --model DIR "Встреча с послом Италии в Москве"

Options: `labels` (list or comma-separated string; default: the training data's tags, "O" first,
then B-/I- pairs of the entity types in sorted order) and `repair_bio` (read an I-X that does not
continue an X entity as B-X instead of failing with the file and line).
"""

from rubert_tf.data.ner import ner_dataset
from rubert_tf.data.readers import DataError, read_conll
from rubert_tf.metrics.ner import entity_scores
from rubert_tf.models.token_classifier import RuBertTokenClassifier
from rubert_tf.tasks.base import Task


def infer_labels(tag_sequences):
    """Tag names in a stable order: "O", then B-TYPE, I-TYPE for each entity type, types sorted."""
    types = sorted({tag[2:] for tags in tag_sequences for tag in tags if tag != "O"})
    return ["O"] + [f"{prefix}-{entity_type}" for entity_type in types for prefix in ("B", "I")]


def _labels_option(options):
    labels = options.get("labels")
    if labels is None or labels == "":
        return None
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    labels = [str(label) for label in labels]
    for label in labels:
        if label != "O" and (label[:2] not in ("B-", "I-") or len(label) < 3):
            raise ValueError(f"label {label!r} is not O, B-TYPE or I-TYPE")
    return labels


class NerTask(Task):
    name = "ner"
    model_class = RuBertTokenClassifier

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--labels", help="comma-separated tag names in id order (default: from the training data)")
        parser.add_argument("--repair-bio", dest="repair_bio", action="store_true",
                            help="read an I-X that does not continue an X entity as B-X instead of failing")

    def read(self, path, options):
        sentences = read_conll(path, strict=not options.get("repair_bio"))
        if not sentences:
            raise DataError(f"{path}: no sentences found")
        for sentence in sentences:
            sentence["_file"] = path
        return sentences

    def model_kwargs(self, examples, options):
        labels = _labels_option(options) or infer_labels(sentence["tags"] for sentence in examples)
        return {"labels": labels}

    def tag_ids(self, examples, labels):
        """Tag names -> ids of `labels`; an unknown tag fails with its file and line."""
        index = {label: i for i, label in enumerate(labels)}
        ids = []
        for sentence in examples:
            row = []
            for offset, tag in enumerate(sentence["tags"]):
                if tag not in index:
                    # Sentences are consecutive lines, so the word's line is the first line + offset.
                    where = f"{sentence.get('_file', '<data>')}:{sentence.get('_line', 0) + offset}"
                    raise DataError(f"{where}: tag {tag!r} is not one of the model's labels {labels}")
                row.append(index[tag])
            ids.append(row)
        return ids

    def dataset(self, model, tokenizer, examples, batch_size, max_length, shuffle=False, seed=None):
        return ner_dataset(tokenizer, [sentence["tokens"] for sentence in examples],
                           self.tag_ids(examples, model.labels), batch_size, max_length=max_length,
                           shuffle=shuffle, seed=seed)

    def evaluate(self, model, examples, max_length, batch_size):
        """seqeval-style entity-level micro precision/recall/F1 (+ per type) over words."""
        gold = [sentence["tags"] for sentence in examples]
        predicted = model.tag_words([sentence["tokens"] for sentence in examples], max_length=max_length,
                                    batch_size=batch_size)
        scores = entity_scores(gold, predicted)
        words = sum(len(tags) for tags in gold)
        correct = sum(g == p for gold_tags, predicted_tags in zip(gold, predicted)
                      for g, p in zip(gold_tags, predicted_tags))
        metrics = {"precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
                   "support": float(scores["support"]), "word_accuracy": correct / words if words else 0.0,
                   "sentences": float(len(examples))}
        for entity_type, values in scores["per_type"].items():
            for name in ("precision", "recall", "f1", "support"):
                metrics[f"{entity_type}_{name}"] = float(values[name])
        return metrics

    def predict(self, model, inputs, max_length, batch_size):
        """Strings -> {"text", "words": [{"text", "start", "end", "tag"}], "entities": [{"text", "label",
        "start", "end"}]} with character offsets; {"tokens": [...]} (pre-split) -> {"tokens", "tags"}."""
        inputs = [inputs] if isinstance(inputs, (str, dict)) else list(inputs)
        texts, split, kinds = [], [], []
        for number, item in enumerate(inputs, start=1):
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                item = item["text"]
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict) and isinstance(item.get("tokens"), list) \
                    and all(isinstance(token, str) for token in item["tokens"]):
                split.append(item["tokens"])
            else:
                raise ValueError(f"input {number}: expected a string, {{'text': ...}} or {{'tokens': [...]}}, "
                                 f"got {item!r:.80}")
            kinds.append(isinstance(item, str))
        by_text = iter(model.extract_entities(texts, max_length=max_length, batch_size=batch_size) if texts else [])
        by_tokens = iter(model.tag_words(split, max_length=max_length, batch_size=batch_size) if split else [])
        results = []
        text_rows, token_rows = iter(texts), iter(split)
        for is_text in kinds:
            if is_text:
                results.append({"text": next(text_rows), **next(by_text)})
            else:
                results.append({"tokens": next(token_rows), "tags": next(by_tokens)})
        return results
