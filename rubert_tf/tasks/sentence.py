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
from rubert_tf.data.sentence import pair_dataset, text_dataset
from rubert_tf.models.sentence_encoder import POOLINGS, RuBertSentenceEncoder
from rubert_tf.tasks.base import Task

DEFAULT_SCALE = 20.0  # sentence-transformers' default: cosine / 0.05


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

    def __init__(self):
        self.options = {}

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--text-column", dest="text_column", default="text",
                            help="column of the anchor text (default: text)")
        parser.add_argument("--text-pair-column", dest="text_pair_column", default="text_pair",
                            help="column of its positive (paraphrase, translation, answer; default: text_pair)")
        parser.add_argument("--pooling", choices=POOLINGS, default=None,
                            help="mean or cls pooling (default: the checkpoint's, else mean)")
        parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                            help="cosine -> logit scale of the in-batch-negatives loss (default: 20)")
        parser.add_argument("--symmetric-loss", dest="symmetric_loss", action="store_true",
                            help="also rank anchors for each positive")

    def _remember(self, options):
        self.options = {**self.options, **{key: value for key, value in (options or {}).items() if value is not None}}

    def read(self, path, options):
        """[{"text", "text_pair", "_line"}]; an empty text fails with the file and line."""
        self._remember(options)
        columns = {"text": self.options.get("text_column", "text"),
                   "text_pair": self.options.get("text_pair_column", "text_pair")}
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

    def model_kwargs(self, examples, options):
        self._remember(options)
        pooling = self.options.get("pooling")
        if pooling is not None and pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        return {"pooling": pooling} if pooling else {}

    def dataset(self, model, tokenizer, examples, batch_size, max_length, shuffle=False, seed=None):
        return pair_dataset(tokenizer, [row["text"] for row in examples], [row["text_pair"] for row in examples],
                            batch_size, max_length=max_length, shuffle=shuffle, seed=seed)

    def loss(self, model):
        return MultipleNegativesRankingLoss(scale=self.options.get("scale", DEFAULT_SCALE),
                                            symmetric=self.options.get("symmetric_loss", False))

    def embed(self, model, texts, max_length, batch_size):
        """np.ndarray [N, H] of embeddings of `texts`, batched by a tf.data pipeline.

        One tf.function with relaxed shapes rather than `model.predict`: predict would XLA-compile
        anew for every padded batch width (Keras 3's jit_compile="auto"), which costs more than it saves here.
        """
        tokenizer = model._require_tokenizer()
        data = text_dataset(tokenizer, texts, batch_size, max_length=max_length)
        spec = {key: tf.TensorSpec([None, None], tf.int32) for key in data.element_spec}
        embed = tf.function(lambda features: model(features, training=False)["embedding"], input_signature=[spec])
        chunks = [embed(features).numpy() for features in data]
        return np.concatenate(chunks) if chunks else np.zeros((0, model.config.hidden_size), "float32")

    def evaluate(self, model, examples, max_length, batch_size):
        anchors = [row["text"] for row in examples]
        positives = [row["text_pair"] for row in examples]
        embeddings = self.embed(model, anchors + positives, max_length, batch_size)
        return retrieval_scores(embeddings[:len(anchors)], embeddings[len(anchors):], positives)

    def predict(self, model, inputs, max_length, batch_size):
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
        vectors = dict(zip(unique, self.embed(model, unique, max_length, batch_size)))
        results = []
        for text, pair in zip(texts, pairs):
            result = {"text": text, "embedding": [float(v) for v in vectors[text]]}
            if pair is not None:
                a, b = _unit(vectors[text]), _unit(vectors[pair])
                result.update(text_pair=pair, embedding_pair=[float(v) for v in vectors[pair]],
                              cosine=float(np.dot(a, b)))
            results.append(result)
        return results
