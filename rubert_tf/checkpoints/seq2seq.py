"""bert2bert checkpoints: HF EncoderDecoderModel directories in and out, and the warm start from RuBERT.

HF names (EncoderDecoderModel of BertModel + BertLMHeadModel):
  encoder.{embeddings, encoder.layer.N, pooler}.*            the encoder (a BertModel, pooler unused)
  decoder.bert.{embeddings, encoder.layer.N}.*               decoder body; each layer adds
      crossattention.self.{query,key,value}, crossattention.output.{dense,LayerNorm}
  decoder.cls.predictions.{transform.dense, transform.LayerNorm, bias}
  decoder.cls.predictions.decoder.{weight,bias}              tied copies: not stored by transformers
"""

import fnmatch
import json
import logging
import os

import numpy as np

from rubert_tf import hub
from rubert_tf.checkpoints.hf import CheckpointError, save_hf_checkpoint
from rubert_tf.checkpoints.loading import _listing, _shape_problem, find_weights, normalize_names, read_weights
from rubert_tf.config import RuBertConfig
from rubert_tf.seq2seq_config import Seq2SeqConfig

logger = logging.getLogger(__name__)

# Tied copies transformers may keep in a state dict; the model shares one variable for each.
TIED = {"decoder.cls.predictions.decoder.weight": "decoder.bert.embeddings.word_embeddings.weight",
        "decoder.cls.predictions.decoder.bias": "decoder.cls.predictions.bias"}
IGNORED = ("*position_ids",)


def _dense(mapping, name, dense):
    mapping[name + ".weight"] = (dense.kernel, True)
    mapping[name + ".bias"] = (dense.bias, False)


def _norm(mapping, name, layer_norm):
    mapping[name + ".weight"] = (layer_norm.gamma, False)
    mapping[name + ".bias"] = (layer_norm.beta, False)


def hf_weight_map(model, prefix=""):
    """HF EncoderDecoderModel name -> (Keras variable, transpose?)."""
    if model.config.architecture != "bert2bert":
        raise ValueError("only bert2bert models map onto HF EncoderDecoderModel names")
    parts = model.parts
    mapping = dict(parts.encoder.hf_weight_map(prefix + "encoder."))
    _dense(mapping, prefix + "encoder.pooler.dense", parts.pooler)
    base = prefix + "decoder.bert."
    mapping[base + "embeddings.word_embeddings.weight"] = (parts.token_embedding.embeddings, False)
    mapping[base + "embeddings.position_embeddings.weight"] = (parts.position_embedding.embeddings, False)
    mapping[base + "embeddings.token_type_embeddings.weight"] = (parts.segment_embedding.embeddings, False)
    _norm(mapping, base + "embeddings.LayerNorm", parts.layer_norm)
    for index, block in enumerate(parts.blocks):
        layer = f"{base}encoder.layer.{index}."
        for hf_name, attention, layer_norm in (("attention", block.self_attention, block.self_attention_layer_norm),
                                               ("crossattention", block.cross_attention,
                                                block.cross_attention_layer_norm)):
            for projection in ("query", "key", "value"):
                _dense(mapping, f"{layer}{hf_name}.self.{projection}", getattr(attention, projection + "_dense"))
            _dense(mapping, f"{layer}{hf_name}.output.dense", attention.output_dense)
            _norm(mapping, f"{layer}{hf_name}.output.LayerNorm", layer_norm)
        _dense(mapping, layer + "intermediate.dense", block.intermediate_dense)
        _dense(mapping, layer + "output.dense", block.output_dense)
        _norm(mapping, layer + "output.LayerNorm", block.output_layer_norm)
    head = prefix + "decoder.cls.predictions."
    _dense(mapping, head + "transform.dense", parts.transform.dense)
    _norm(mapping, head + "transform.LayerNorm", parts.transform.layer_norm)
    mapping[head + "bias"] = (parts.bias.bias, False)
    return mapping


def assign(model, tensors, source, optional=(), ignored=IGNORED):
    """Strictly assign {HF name: array}: every model weight (but `optional` patterns) must be there,
    every tensor must be used (but `ignored` patterns and tied copies), shapes must match."""
    weight_map = model.hf_weight_map()
    missing = sorted(set(weight_map) - set(tensors))
    required = [name for name in missing if not any(fnmatch.fnmatchcase(name, p) for p in optional)]
    unused = sorted(set(tensors) - set(weight_map))
    unknown = [name for name in unused
               if name not in TIED and not any(fnmatch.fnmatchcase(name, p) for p in ignored)]
    problems = []
    if required:
        problems.append(f"missing weights: {_listing(required)}")
    if unknown:
        problems.append(f"unexpected tensors: {_listing(unknown)}")
    problems += [_shape_problem(name, tensors[name], *weight_map[name]) for name in weight_map if name in tensors]
    problems = [problem for problem in problems if problem]
    if problems:
        raise CheckpointError(f"{source}: cannot load into {type(model).__name__}:\n  " + "\n  ".join(problems))
    for copy, original in TIED.items():
        if copy in tensors and original in tensors and not np.array_equal(tensors[copy], tensors[original]):
            logger.warning("%s: %s differs from %s, to which it is tied; using %s", source, copy, original, original)
    if missing:
        logger.warning("%s: not in the checkpoint, left randomly initialised: %s", source, _listing(missing))
    for name, (variable, transpose) in weight_map.items():
        if name in tensors:
            value = tensors[name].T if transpose else tensors[name]
            variable.assign(np.asarray(value, dtype=variable.dtype))
    return model


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _is_encoder_decoder_dir(directory):
    path = os.path.join(directory, "config.json")
    return os.path.isfile(path) and bool(_read_json(path).get("is_encoder_decoder"))


def _bert_tensors(directory):
    """A RuBERT checkpoint's tensors with BertFor* names (`bert.` body, `cls.` heads)."""
    tensors, path = read_weights(directory)
    tensors, _ = normalize_names(tensors, ["bert.embeddings.word_embeddings.weight"])
    if "bert.embeddings.word_embeddings.weight" not in tensors:
        raise CheckpointError(f"{path}: no BERT word embeddings; is this a BERT checkpoint?")
    return tensors, path


def warm_start_tensors(encoder_dir, decoder_dir):
    """{EncoderDecoderModel name: array} from RuBERT checkpoints, as transformers'
    from_encoder_decoder_pretrained fills it: encoder = BertModel, decoder = BertLMHeadModel (its MLM
    head when the checkpoint has one); cross-attention is left out (new)."""
    encoder_tensors, _ = _bert_tensors(encoder_dir)
    decoder_tensors = encoder_tensors if decoder_dir == encoder_dir else _bert_tensors(decoder_dir)[0]
    out = {}
    for name, value in encoder_tensors.items():
        if name.startswith("bert."):
            out["encoder." + name[len("bert."):]] = value
    for name, value in decoder_tensors.items():
        if name.startswith("bert.") and not name.startswith("bert.pooler."):
            out["decoder." + name] = value
        elif name.startswith("cls.predictions.") and not name.startswith("cls.predictions.decoder."):
            out["decoder." + name] = value
    return out


def _token_ids_from(directory, values):
    ids = {key: values.get(key) for key in ("decoder_start_token_id", "eos_token_id", "pad_token_id")}
    generation = os.path.join(directory, "generation_config.json")
    if os.path.isfile(generation):
        stored = _read_json(generation)
        for key in ids:
            if ids[key] is None and isinstance(stored.get(key), int):
                ids[key] = stored[key]
    return ids


def from_pretrained(cls, encoder_path, decoder_path=None, tokenizer=None, **kwargs):
    """A `cls` (RuBertSeq2Seq) with the weights of `encoder_path` (+ `decoder_path`); `tokenizer` (loaded by
    the model) fills the config's missing special token ids."""
    encoder_dir = hub.resolve(encoder_path)
    decoder_dir = None if decoder_path is None else hub.resolve(decoder_path)
    if decoder_dir is None and _is_encoder_decoder_dir(encoder_dir):
        find_weights(encoder_dir)
        values = _read_json(os.path.join(encoder_dir, "config.json"))
        config = Seq2SeqConfig.from_hf_dict(values, source=os.path.join(encoder_dir, "config.json"))
        for key, value in _token_ids_from(encoder_dir, values).items():
            setattr(config, key, value)
        tensors, source = read_weights(encoder_dir)
        optional = ()
    else:
        decoder_dir = decoder_dir or encoder_dir
        decoder_config = RuBertConfig.from_pretrained(decoder_dir)
        config = Seq2SeqConfig(encoder=RuBertConfig.from_pretrained(encoder_dir), decoder=decoder_config)
        tensors = warm_start_tensors(encoder_dir, decoder_dir)
        source = f"{encoder_dir} (+ decoder {decoder_dir})" if decoder_dir != encoder_dir else encoder_dir
        # New in bert2bert: cross-attention; a BertModel checkpoint has no MLM head or pooler either.
        optional = ("decoder.bert.encoder.layer.*.crossattention.*", "decoder.cls.*", "encoder.pooler.*")
    if tokenizer is not None:
        config = config.with_tokenizer(tokenizer)
    model = cls(config, **kwargs)
    assign(model, tensors, source, optional=optional)
    model.tokenizer = tokenizer
    return model


def save_pretrained(model, directory, tokenizer=None):
    """config.json + model.safetensors (+ vocab.txt), the layout EncoderDecoderModel.from_pretrained reads."""
    save_hf_checkpoint(model, directory, tokenizer=tokenizer, architecture="EncoderDecoderModel")
    # Generation settings live in generation_config.json in transformers 5.
    start, eos, pad = model.config.decoder_start_token_id, model.config.eos_token_id, model.config.pad_token_id
    with open(os.path.join(directory, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump({"decoder_start_token_id": start, "eos_token_id": eos, "pad_token_id": pad,
                   "bos_token_id": start}, f, indent=2)
        f.write("\n")
    return directory
