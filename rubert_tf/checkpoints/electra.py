"""The HuggingFace Electra layout of RuBertForReplacedTokenDetection.

    model.save_pretrained("out")                  # out/: ElectraForPreTraining (the discriminator)
                                                  # out/generator/: ElectraForMaskedLM (the generator)
    RuBertForReplacedTokenDetection.from_pretrained("out")

Written with checkpoints/hf.py's writer and read with loading.py's strict loader; this module only
knows the Electra specifics: the config.json keys (model_type "electra", embedding_size) and which
names make up each of the two HF models. Any task model (RuBertEncoder, classifier, ...) loads the
discriminator folder itself through loading.py, which maps the `electra.` prefix.
"""

import logging
import os

from rubert_tf import hub
from rubert_tf.checkpoints.hf import save_hf_checkpoint
from rubert_tf.checkpoints.loading import (DEFAULT_IGNORED_WEIGHTS, DEFAULT_OPTIONAL_WEIGHTS, load_weights,
                                           read_weights)
from rubert_tf.config import RuBertConfig

logger = logging.getLogger(__name__)

GENERATOR_DIR = "generator"


def electra_config_dict(config, architecture):
    """config.json of an HF ElectraConfig for `config` (embedding_size always written: HF's default is 128)."""
    values = config.to_dict()
    values.update(architectures=[architecture], model_type="electra", embedding_size=config.embedding_width)
    values.setdefault("position_embedding_type", "absolute")
    return dict(sorted(values.items()))


class ElectraWeights:
    """One HF Electra model inside RuBertForReplacedTokenDetection, as the writer and the loader see it:
    a config and {HF name: (variable, transpose?)}. Subclasses are named as the HF class."""

    hf_optional_weights = DEFAULT_OPTIONAL_WEIGHTS
    hf_ignored_weights = DEFAULT_IGNORED_WEIGHTS

    def __init__(self, config, weight_map):
        self.config = config
        self._weight_map = weight_map

    def hf_weight_map(self):
        return self._weight_map


class ElectraForPreTraining(ElectraWeights):
    # A BERT checkpoint (or a bare ElectraModel) continued as a discriminator has no RTD head yet.
    hf_optional_weights = DEFAULT_OPTIONAL_WEIGHTS + ("discriminator_predictions.*",)


class ElectraForMaskedLM(ElectraWeights):
    pass


def save_replaced_token_detection(model, directory, tokenizer=None):
    """The discriminator in `directory`, the generator in `directory/generator` (config.json last, as
    save_hf_checkpoint writes it, so a complete discriminator folder means a complete save)."""
    save_hf_checkpoint(ElectraForMaskedLM(model.generator_config, model.generator_hf_weight_map()),
                       os.path.join(directory, GENERATOR_DIR), tokenizer=tokenizer, architecture="ElectraForMaskedLM",
                       config_values=electra_config_dict(model.generator_config, "ElectraForMaskedLM"))
    return save_hf_checkpoint(ElectraForPreTraining(model.config, model.discriminator_hf_weight_map()), directory,
                              tokenizer=tokenizer, architecture="ElectraForPreTraining",
                              config_values=electra_config_dict(model.config, "ElectraForPreTraining"))


def save_factorized(model, directory, tokenizer=None):
    """A RuBertEncoder or task model whose embeddings are factorised (embedding_size != hidden_size, as
    ELECTRA-small's) in HF's Electra layout, the only one with `embeddings_project`: the encoder under
    `electra.`, the task head under its own names, model_type "electra".

    The architecture written is the model's `hf_electra_architecture`, the Electra class with the same head
    (ElectraModel, ElectraForTokenClassification, ElectraForQuestionAnswering); a model whose head has no
    Electra twin (RuBertClassifier: BERT's tanh pooler + classifier, where ElectraForSequenceClassification
    has dense + GELU + out_proj) is written under its own class name, which transformers reads as a bare
    Electra encoder and reports its own head as newly initialised. This library loads every such folder back
    whole (loading.py maps the `electra.` prefix)."""
    architecture = getattr(model, "hf_electra_architecture", None) or type(model).__name__
    encoder = getattr(model, "encoder", model)
    weights = dict(encoder.hf_weight_map("electra."))
    if encoder is not model:
        weights.update(model.hf_head_weights())
    return save_hf_checkpoint(ElectraWeights(model.config, weights), directory, tokenizer=tokenizer,
                              architecture=architecture, config_values=electra_config_dict(model.config, architecture))


def load_replaced_token_detection(cls, name_or_path, generator=None, generator_hidden_size=None, **kwargs):
    """`cls(config, generator_config=..., **kwargs)` with the weights of a discriminator checkpoint and (when
    there is one) a generator checkpoint; see RuBertForReplacedTokenDetection.from_pretrained."""
    from rubert_tf.config import generator_config_for

    directory = hub.resolve(name_or_path)
    generator_dir = hub.resolve(generator) if generator is not None else os.path.join(directory, GENERATOR_DIR)
    config = RuBertConfig.from_pretrained(directory)
    tensors, path = read_weights(directory)  # before building, so a broken file fails fast
    generator_tensors = None
    if os.path.isdir(generator_dir):
        generator_config = RuBertConfig.from_pretrained(generator_dir)
        if generator_hidden_size is not None and generator_hidden_size != generator_config.hidden_size:
            raise ValueError(f"generator_hidden_size={generator_hidden_size}, but the generator checkpoint "
                             f"{generator_dir} has hidden_size={generator_config.hidden_size}")
        generator_tensors, generator_path = read_weights(generator_dir)
    else:
        generator_config = generator_config_for(config, generator_hidden_size)
        logger.warning("%s: no generator checkpoint (%s); the ELECTRA generator starts from random weights "
                       "(hidden_size=%d)", directory, generator_dir, generator_config.hidden_size)
    model = cls(config, generator_config=generator_config, **kwargs)
    if generator_tensors is not None:
        load_weights(ElectraForMaskedLM(generator_config, model.generator_hf_weight_map()), generator_tensors,
                     generator_path)
    # Last: the discriminator's copy of the shared embeddings is the one kept.
    load_weights(ElectraForPreTraining(config, model.discriminator_hf_weight_map()), tensors, path)
    return model
