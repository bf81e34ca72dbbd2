"""Sentence embeddings: fine-tune a RuBertSentenceEncoder on (anchor, positive) pairs with in-batch
negatives (the multiple-negatives ranking loss of sentence-transformers), through plain `model.fit`.

How it fits `compile` + `fit`: a batch of B pairs is one model batch of 2B texts, anchors first and
positives after (see `rubert_tf.data.sentence`); the model returns their [2B, H] embeddings and
`MultipleNegativesRankingLoss` splits them, scores every anchor against every positive by scaled
cosine, and takes the cross-entropy with the true positive as the class (label i for anchor i).
The other B-1 positives of the batch are the negatives, so bigger batches give harder training.

Data: CSV/TSV/JSONL with two text columns (options `text_column`, `text_pair_column`), or
`tfds:NAME[:SPLIT]`, e.g. `tfds:ted_hrlr_translate/ru_to_en` with columns `ru` and `en`.
Evaluation: retrieve each anchor's positive among all evaluation positives (MRR, accuracy@1/@5), and
the mean cosine of true pairs against random pairs. Prediction: one embedding (a JSON list) per text.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from rubert_tf.data.readers import DataError, read_table
from rubert_tf.data.sentence import pair_dataset
from rubert_tf.models.sentence_encoder import RuBertSentenceEncoder
from rubert_tf.tasks.base import Task
from rubert_tf.tasks.sentence import processing
from rubert_tf.tasks.sentence.settings import DEFAULT_SCALE, SentenceSettings


@keras.saving.register_keras_serializable(package="rubert_tf")
class MultipleNegativesRankingLoss(keras.losses.Loss):
    """In-batch-negatives loss over the embeddings of a batch of 2B rows: B anchors, then B positives.

    y_true [B]: for each anchor, the index of its positive among the B positives (0..B-1 in order).
    y_pred [2B, H] (or the model's {"embedding": ...}): embeddings; they are L2-normalised here, so
    the logits are `scale` * cosine similarities. `symmetric` adds the positive -> anchor direction.
    """

    def __init__(self, scale=DEFAULT_SCALE, symmetric=False, name="multiple_negatives_ranking_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = float(scale)
        self.symmetric = bool(symmetric)

    def call(self, y_true, y_pred):
        if isinstance(y_pred, dict):
            y_pred = y_pred["embedding"]
        embeddings = ops.cast(y_pred, "float32")
        embeddings = embeddings / ops.maximum(ops.norm(embeddings, axis=-1, keepdims=True), 1e-12)
        count = ops.shape(embeddings)[0] // 2
        anchors, positives = embeddings[:count], embeddings[count:]
        logits = self.scale * ops.matmul(anchors, ops.transpose(positives))  # [B, B]
        targets = ops.one_hot(ops.cast(ops.reshape(y_true, [-1]), "int32"), count)
        loss = keras.losses.categorical_crossentropy(targets, logits, from_logits=True)
        if self.symmetric:
            backward = keras.losses.categorical_crossentropy(
                ops.transpose(targets), ops.transpose(logits), from_logits=True)
            loss = (loss + backward) / 2
        return loss

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "symmetric": self.symmetric}


def retrieval_scores(anchor_embeddings, positive_embeddings, positives=None, seed=0):
    """Rank every anchor's own positive among all positives by cosine.

    Returns mrr, accuracy_at_1, accuracy_at_5, mean_cosine_positive (true pairs),
    mean_cosine_random (each anchor with another pair's positive) and num_pairs. A candidate whose
    text equals the anchor's positive (a duplicate in the data) is not counted as a competitor.
    """
    a = _unit(np.asarray(anchor_embeddings, dtype="float64"))
    p = _unit(np.asarray(positive_embeddings, dtype="float64"))
    count = len(a)
    if count == 0 or len(p) != count:
        raise ValueError(f"need as many anchors as positives (>0), got {len(a)} and {len(p)}")
    similarity = a @ p.T
    true = np.diag(similarity)
    if positives is None:
        same = np.eye(count, dtype=bool)
    else:
        positives = np.asarray(positives, dtype=object)
        same = positives[:, None] == positives[None, :]
    ranks = 1 + np.sum((similarity > true[:, None]) & ~same, axis=1)
    scores = {"mrr": float(np.mean(1.0 / ranks)), "accuracy_at_1": float(np.mean(ranks == 1)),
              "accuracy_at_5": float(np.mean(ranks <= 5)), "mean_cosine_positive": float(np.mean(true)),
              "num_pairs": count}
    if count > 1:
        # A random derangement: anchor i against positive of pair order[i] != i.
        shift = np.random.default_rng(seed).integers(1, count, size=count)
        other = (np.arange(count) + shift) % count
        keep = ~same[np.arange(count), other]
        random = similarity[np.arange(count), other][keep]
        scores["mean_cosine_random"] = float(np.mean(random)) if random.size else float("nan")
    return scores


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class SentenceEmbeddingTask(Task):
    name = "sentence"
    model_class = RuBertSentenceEncoder
    settings_class = SentenceSettings

    def read(self, path, settings=None):
        """[{"text", "text_pair", "_line"}]; an empty text fails with the file and line."""
        s = self.settings(overrides=settings)
        columns = {"text": s.text_column, "text_pair": s.text_pair_column}
        rows = read_table(path, columns)  # also `tfds:NAME[:SPLIT]`
        for row in rows:
            for field in ("text", "text_pair"):
                value = row[field]
                if not isinstance(value, str):
                    raise DataError(f"{path}:{row['_line']}: column {columns[field]!r} must be text, "
                                    f"got {type(value).__name__} {value!r:.60}")
                if not value.strip():
                    raise DataError(f"{path}:{row['_line']}: empty text in column {columns[field]!r}")
        return rows

    def model_kwargs(self, examples, settings=None):
        s = self.settings(overrides=settings)
        return {"pooling": s.pooling} if s.pooling else {}

    def dataset(self, model, tokenizer, examples, settings=None, batch_size=32, shuffle=False, seed=None):
        s = self.settings(model, settings)
        return pair_dataset(tokenizer, [row["text"] for row in examples], [row["text_pair"] for row in examples],
                            batch_size, max_length=s.max_length, shuffle=shuffle, seed=seed)

    def loss(self, model, settings=None):
        s = self.settings(model, settings)
        return MultipleNegativesRankingLoss(scale=s.scale, symmetric=s.symmetric_loss)

    def serving_module(self, model, tokenizer, settings=None):
        return processing.serving_module(model, tokenizer, self.settings(model, settings))

    def embed(self, model, texts, settings=None, batch_size=32):
        """np.ndarray [N, H] of embeddings of `texts`, from the serving module."""
        s = self.settings(model, settings)
        return processing.encode(model, list(texts), max_length=s.max_length, batch_size=batch_size)

    def evaluate(self, model, examples, settings=None, batch_size=32):
        anchors = [row["text"] for row in examples]
        positives = [row["text_pair"] for row in examples]
        embeddings = self.embed(model, anchors + positives, settings, batch_size)
        return retrieval_scores(embeddings[:len(anchors)], embeddings[len(anchors):], positives)

    def predict(self, model, inputs, settings=None, batch_size=32):
        """Strings -> {"text", "embedding": [...]}; a dict {"text", "text_pair"} adds
        "embedding_pair" and their "cosine"."""
        texts, pairs = [], []
        for number, item in enumerate(inputs, start=1):
            if isinstance(item, dict):
                if not isinstance(item.get("text"), str):
                    raise ValueError(f"input {number}: expected a string or {{\"text\": ..., \"text_pair\": ...}}, "
                                     f"got keys {sorted(item)}")
                if item.get("text_pair") is not None and not isinstance(item["text_pair"], str):
                    raise ValueError(f"input {number}: \"text_pair\" must be a string")
                texts.append(item["text"])
                pairs.append(item.get("text_pair"))
            elif isinstance(item, str):
                texts.append(item)
                pairs.append(None)
            else:
                raise ValueError(f"input {number}: expected a string or a dict, got {type(item).__name__}")
        unique = sorted(set(texts) | {pair for pair in pairs if pair is not None})
        vectors = dict(zip(unique, self.embed(model, unique, settings, batch_size)))
        results = []
        for text, pair in zip(texts, pairs):
            result = {"text": text, "embedding": [float(v) for v in vectors[text]]}
            if pair is not None:
                a, b = _unit(vectors[text]), _unit(vectors[pair])
                result.update(text_pair=pair, embedding_pair=[float(v) for v in vectors[pair]],
                              cosine=float(np.dot(a, b)))
            results.append(result)
        return results
