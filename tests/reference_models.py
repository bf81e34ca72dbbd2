"""Reference checkpoints for the checkpoint tests: random-weight transformers BERTs (PyTorch CPU)
written in the real layouts (safetensors, pytorch_model.bin, google-research TF1), their
outputs, and a padded batch of real Russian sentences tokenized with rubert-tiny2's vocab."""

import csv
import json
import os
import re
import shutil

import keras
import numpy as np
import tensorflow as tf
import torch
import transformers
from tokenizers import Tokenizer

# ../shared/data beside the project, where CI puts it too.
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
TINY2_DIR = os.path.join(DATA, "rubert-tiny2")

SMALL = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=128, max_position_embeddings=128)
# cointegrated/rubert-tiny2's architecture numbers (its published config.json).
TINY2 = dict(vocab_size=83828, hidden_size=312, num_hidden_layers=3, num_attention_heads=12,
             intermediate_size=600, max_position_embeddings=2048)

torch.set_num_threads(2)
transformers.utils.logging.disable_progress_bar()


def russian_sentences(count=4):
    """Real sentences from RuCoLA's dev set: varied lengths give a genuinely padded batch."""
    with open(os.path.join(DATA, "rucola", "in_domain_dev.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [rows[i]["sentence"] for i in (0, 1, 5, 7)][:count]


def russian_batch(vocab_size):
    """{"token_ids", "segment_ids", "padding_mask"} int32 [B, T] from rubert-tiny2's tokenizer.

    Ids the (small) model's vocabulary lacks are folded into its non-special range, so the
    batch keeps the real sentences' structure ([CLS] ... [SEP], padding) at any vocab size.
    """
    tokenizer = Tokenizer.from_file(os.path.join(TINY2_DIR, "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to the longest itself; we pad (and check) explicitly
    encodings = tokenizer.encode_batch(russian_sentences())
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int32)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    too_big = ids >= vocab_size
    ids[too_big] = 5 + ids[too_big] % (vocab_size - 5)
    assert mask.sum(axis=1).min() < width, "the batch must contain padding"
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def torch_model(architecture, sizes, hidden_act="gelu", seed=0):
    """A transformers model with random weights of O(1) activations, so exact vs. tanh GELU and
    every bias and LayerNorm parameter visibly change the outputs."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(**sizes, hidden_act=hidden_act, layer_norm_eps=1e-12)
    model = getattr(transformers, architecture)(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm.weight" in name:
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            elif parameter.ndim == 1:
                parameter.normal_(0, 0.2)
            elif "embeddings" in name:
                parameter.normal_(0, 0.5)
            else:  # nn.Linear [out, in]
                parameter.normal_(0, parameter.shape[1] ** -0.5)
    return model


def torch_inputs(batch):
    return {"input_ids": torch.from_numpy(batch["token_ids"]).long(),
            "token_type_ids": torch.from_numpy(batch["segment_ids"]).long(),
            "attention_mask": torch.from_numpy(batch["padding_mask"]).long()}


def torch_outputs(model, batch):
    """{"sequence_output", "pooled_output", "logits"} (those the model has) as numpy."""
    with torch.no_grad():
        inputs = torch_inputs(batch)
        body = model if isinstance(model, transformers.BertModel) else model.bert
        out = body(**inputs)
        result = {"sequence_output": out.last_hidden_state.numpy()}
        if out.pooler_output is not None:
            result["pooled_output"] = out.pooler_output.numpy()
        if isinstance(model, transformers.BertForMaskedLM):
            result["logits"] = model(**inputs).logits.numpy()
        if isinstance(model, transformers.BertForPreTraining):
            result["logits"] = model(**inputs).prediction_logits.numpy()
    return result


def copy_vocab(directory, vocab_size):
    """The real vocab.txt, cut to the model's size."""
    with open(os.path.join(TINY2_DIR, "vocab.txt"), encoding="utf-8") as f:
        lines = f.readlines()[:vocab_size]
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(lines)


def save_safetensors(model, directory, **kwargs):
    """What `model.save_pretrained` writes (transformers v5: config.json + model.safetensors)."""
    model.save_pretrained(directory, **kwargs)
    copy_vocab(directory, model.config.vocab_size)
    return directory


def save_bin(model, directory):
    """The layout of most published RuBERTs: config.json + pytorch_model.bin (a torch pickle)."""
    os.makedirs(directory, exist_ok=True)
    model.config.to_json_file(os.path.join(directory, "config.json"))
    torch.save(model.state_dict(), os.path.join(directory, "pytorch_model.bin"))
    copy_vocab(directory, model.config.vocab_size)
    return directory


def hf_to_tf1_name(name):
    """HF BertForPreTraining name -> (google-research TF1 name, transpose?), written out
    independently of rubert_tf's own table so the test checks it rather than repeats it."""
    special = {"cls.predictions.bias": "cls/predictions/output_bias",
               "cls.seq_relationship.weight": "cls/seq_relationship/output_weights",
               "cls.seq_relationship.bias": "cls/seq_relationship/output_bias"}
    if name in special:
        return special[name], False
    tf_name = re.sub(r"layer\.(\d+)", r"layer_\1", name).replace(".", "/")
    if tf_name.endswith("_embeddings/weight"):
        return tf_name[: -len("/weight")], False
    if "LayerNorm/" in tf_name:
        return tf_name.replace("LayerNorm/weight", "LayerNorm/gamma").replace("LayerNorm/bias", "LayerNorm/beta"), False
    if tf_name.endswith("/weight"):
        return tf_name[: -len("weight")] + "kernel", True
    return tf_name, False


def save_tf1(model, directory):
    """A google-research/bert training checkpoint of a BertForPreTraining: bert_config.json,
    bert_model.ckpt.{index,data-*} with the exact TF1 names, Adam slots and global_step, vocab.txt."""
    os.makedirs(directory, exist_ok=True)
    names, tensors = [], []
    for hf_name, value in model.state_dict().items():
        if hf_name.startswith("cls.predictions.decoder."):
            continue  # TF1 BERT has no decoder variable: it multiplies by the word embeddings.
        tf_name, transpose = hf_to_tf1_name(hf_name)
        value = value.numpy().T if transpose else value.numpy()
        names += [tf_name, tf_name + "/adam_m", tf_name + "/adam_v"]
        tensors += [np.ascontiguousarray(value), np.full_like(value, 0.5), np.full_like(value, 0.25)]
    names.append("global_step")
    tensors.append(np.array(12345, dtype=np.int64))
    tf.raw_ops.SaveV2(prefix=os.path.join(directory, "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[tf.constant(t) for t in tensors])
    config = model.config
    bert_config = {key: getattr(config, key) for key in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
        "type_vocab_size", "initializer_range")}
    with open(os.path.join(directory, "bert_config.json"), "w", encoding="utf-8") as f:
        json.dump(bert_config, f, indent=2)
    copy_vocab(directory, config.vocab_size)
    return directory


def keras_outputs(model, batch):
    outputs = dict(model(batch, training=False))
    if isinstance(getattr(model, "encoder", None), keras.Model):  # task model: its encoder's outputs too
        outputs = {**model.encoder(batch, training=False), **outputs}
    return {name: np.asarray(value) for name, value in outputs.items()}


def max_abs_diffs(ours, reference, mask):
    """Max |ours - reference| per output, over real (non-padding) tokens for per-token outputs."""
    real = mask.astype(bool)
    diffs = {}
    for name, expected in reference.items():
        got = ours[name]
        assert got.shape == expected.shape, (name, got.shape, expected.shape)
        if name == "pooled_output":
            diffs[name] = float(np.max(np.abs(got - expected)))
        else:
            diffs[name] = float(np.max(np.abs(got[real] - expected[real])))
    return diffs


def remove(path):
    shutil.rmtree(path, ignore_errors=True)
