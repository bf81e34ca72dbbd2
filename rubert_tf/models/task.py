"""What every task model shares: an encoder inside, HF names under `bert.`, labels kept in the
config, `from_pretrained` (weights + the tokenizer beside them) and `save_pretrained`."""

import copy
import logging
import os

import keras

from rubert_tf.models.dtype_policy import dtype_policy_config, with_dtype_policy
from rubert_tf.models.encoder import RuBertEncoder, as_config

logger = logging.getLogger(__name__)


def config_with_labels(config, labels, problem_type=None):
    """A copy of `config` whose extra keys carry HF's id2label/label2id (and problem_type)."""
    config = copy.deepcopy(as_config(config))
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"label names must be unique, got {labels}")
        config.extra["id2label"] = {str(i): label for i, label in enumerate(labels)}
        config.extra["label2id"] = {label: i for i, label in enumerate(labels)}
    if problem_type:
        config.extra["problem_type"] = problem_type
    return config


def labels_from_config(config):
    """Label names from HF's id2label, in id order, or None."""
    id2label = config.extra.get("id2label")
    if not id2label:
        return None
    return [id2label[key] for key in sorted(id2label, key=int)]


def reconcile_checkpoint_labels(directory, kwargs):
    """Match requested `labels` in `kwargs` (from_pretrained's) with those the checkpoint's config names.

    The same set in another order keeps the checkpoint's order, so each head row keeps its meaning;
    another set starts the head fresh (logged, `load_head=False`) instead of failing on its shape.
    Updates `kwargs` in place; returns the checkpoint's labels (or None)."""
    from rubert_tf.config import RuBertConfig

    saved = labels_from_config(RuBertConfig.from_pretrained(directory))
    wanted = kwargs.get("labels")
    if saved is not None and wanted is not None:
        wanted = [str(label) for label in wanted]
        if sorted(wanted) == sorted(saved):
            kwargs["labels"] = saved
        else:
            logger.warning("%s: checkpoint labels %s differ from the requested %s; the classifier head "
                           "starts from random weights", directory, saved, wanted)
            kwargs["load_head"] = False
    return saved


def head_dropout_rate(config):
    # HF uses classifier_dropout when the config sets it, else hidden_dropout_prob.
    rate = config.extra.get("classifier_dropout")
    return config.hidden_dropout_prob if rate is None else rate


class TaskModel(keras.Model):
    """Base of the task models: subclasses build `self.encoder` + a head in `__init__`, set
    `hf_architecture`, and list their head weights in `hf_head_weights()`."""

    hf_architecture = "BertModel"
    hf_electra_architecture = None  # the HF Electra class with this head (saved so with factorised embeddings)

    def _finish(self, config, encoder, init_kwargs):
        # The encoder was built with the `dtype` given to the task model (or the global policy): the
        # model takes its policy, so get_config returns it.
        self.dtype_policy = encoder.dtype_policy
        self.config = config
        self.encoder = encoder
        self._init_kwargs = init_kwargs
        self.tokenizer = None

    def get_config(self):
        return {"config": self.config.to_dict(), **self._init_kwargs, "name": self.name, "trainable": self.trainable,
                "dtype": dtype_policy_config(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))

    def hf_head_weights(self):
        return {}

    def hf_weight_map(self, prefix=""):
        mapping = dict(self.encoder.hf_weight_map(prefix + "bert."))
        mapping.update({prefix + name: spec for name, spec in self.hf_head_weights().items()})
        return mapping

    @classmethod
    def from_pretrained(cls, name_or_path, tokenizer=True, **kwargs):
        """Load weights (the head too when the checkpoint has it) and, when the directory has a
        vocab.txt and `tokenizer` is true, the tokenizer used by the raw-text methods."""
        from rubert_tf import hub
        from rubert_tf.checkpoints.loading import load_model

        directory = hub.resolve(name_or_path)
        model = load_model(cls, directory, **kwargs)
        if tokenizer and os.path.isfile(os.path.join(directory, "vocab.txt")):
            from rubert_tf.tokenizer import RuBertTokenizer

            model.tokenizer = RuBertTokenizer.from_pretrained(directory)
        return model

    def save_pretrained(self, directory, tokenizer=None):
        """HF's BERT layout (`hf_architecture`), or its Electra layout when the embeddings are factorised
        (embedding_size != hidden_size: BERT's layout has no embeddings_project)."""
        if self.config.factorized_embeddings:
            from rubert_tf.checkpoints.electra import save_factorized

            return save_factorized(self, directory, tokenizer=tokenizer or self.tokenizer)
        from rubert_tf.checkpoints.hf import save_hf_checkpoint

        return save_hf_checkpoint(self, directory, tokenizer=tokenizer or self.tokenizer,
                                  architecture=self.hf_architecture)

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError(
                f"{type(self).__name__} has no tokenizer for raw text: load it with from_pretrained from a "
                "directory with vocab.txt, or set `model.tokenizer = rt.RuBertTokenizer.from_pretrained(...)`")
        return self.tokenizer


def build_encoder(config, dtype=None):
    return RuBertEncoder(config, name="encoder", dtype=dtype)
