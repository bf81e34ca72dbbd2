"""NER task: tagging CoNLL-style files (IOB2/BIO, IOB1, IOBES/BIOES or bare tags) with RuBertTokenClassifier.

    rubert-tf finetune ner --model PATH --train train.bio --eval dev.bio --out DIR [--repair-bio] [--labels O,B-PER,...]
    rubert-tf evaluate ner --model DIR --eval dev.bio       # labels, tag scheme, max length travel with the model
    rubert-tf predict ner --model DIR "Встреча с послом Италии в Москве"

Settings (settings.py): `labels` (default: the training data's tags, see tags.infer_labels), `tag_scheme`
(how files are checked), `repair_bio`, `max_length`. Evaluation scores the word tags of the
postprocessor (processing.tag_words) with seqeval's entity rules (rubert_tf.metrics.ner).
"""

from rubert_tf.data.ner import ner_dataset
from rubert_tf.data.readers import DataError, read_conll
from rubert_tf.metrics.ner import entity_scores
from rubert_tf.models.token_classifier import RuBertTokenClassifier
from rubert_tf.tasks.base import Task
from rubert_tf.tasks.ner import processing
from rubert_tf.tasks.ner.settings import NerSettings
from rubert_tf.tasks.ner.tags import check_labels, infer_labels


class NerTask(Task):
    """Pre-split words -> one tag per word; raw text -> words and entities with character offsets."""

    name = "ner"
    model_class = RuBertTokenClassifier
    settings_class = NerSettings

    def read(self, path, settings=None):
        """Sentences {"tokens", "tags", "_line", "_file"}; a tag that breaks the scheme fails with file:line."""
        s = self.settings(overrides=settings)
        sentences = read_conll(path, strict=not s.repair_bio, scheme=s.tag_scheme)
        if not sentences:
            raise DataError(f"{path}: no sentences found")
        for sentence in sentences:
            sentence["_file"] = path
        return sentences

    def model_kwargs(self, examples, settings=None):
        s = self.settings(overrides=settings)
        return {"labels": check_labels(s.labels or infer_labels(sentence["tags"] for sentence in examples))}

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

    def dataset(self, model, tokenizer, examples, settings=None, batch_size=32, shuffle=False, seed=None):
        s = self.settings(model, settings)
        return ner_dataset(tokenizer, [sentence["tokens"] for sentence in examples],
                           self.tag_ids(examples, model.labels), batch_size, max_length=s.max_length,
                           shuffle=shuffle, seed=seed)

    def serving_module(self, model, tokenizer, settings=None):
        return processing.serving_module(model, tokenizer, self.settings(model, settings))

    def evaluate(self, model, examples, settings=None, batch_size=32):
        """seqeval-style entity-level micro precision/recall/F1 (+ per type) and word accuracy, on the
        word tags the postprocessor gives."""
        gold = [sentence["tags"] for sentence in examples]
        predicted = processing.tag_words(model, [sentence["tokens"] for sentence in examples],
                                         self.settings(model, settings), batch_size)
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

    def predict(self, model, inputs, settings=None, batch_size=32):
        """Strings -> {"text", "words": [{"text", "start", "end", "tag"}], "entities": [{"text", "label",
        "start", "end"}]} with character offsets; {"tokens": [...]} (pre-split) -> {"tokens", "tags"}."""
        inputs = [inputs] if isinstance(inputs, (str, dict)) else list(inputs)
        s = self.settings(model, settings)
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
        by_text = iter(processing.extract_entities(model, texts, s, batch_size) if texts else [])
        by_tokens = iter(processing.tag_words(model, split, s, batch_size) if split else [])
        results = []
        text_rows, token_rows = iter(texts), iter(split)
        for is_text in kinds:
            if is_text:
                results.append({"text": next(text_rows), **next(by_text)})
            else:
                results.append({"tokens": next(token_rows), "tags": next(by_tokens)})
        return results
