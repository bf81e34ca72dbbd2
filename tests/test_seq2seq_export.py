"""A tiny classic Transformer (RuBertSeq2Seq.from_scratch) overfits a handful of real ru->en pairs
(NTREX) with model.fit and then reproduces them exactly; exported as a SavedModel (`text` -> `output`,
beam search in the graph), it gives the same strings in a fresh process without rubert_tf, using only
ops TF Serving has."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import rubert_tf as rt
from rubert_tf.export.ops import saved_model_ops, unservable_ops
from test_export import ALLOWED_OPS

NTREX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "ntrex-en-ru")
TINY2_VOCAB = os.path.join(os.path.dirname(NTREX), "rubert-tiny2", "vocab.txt")
# Ops the generation loop adds to the other tasks' allow-list: TF core control flow and math, all in
# the TF Serving binary.
SEQ2SEQ_OPS = {"ArgMax", "LogSoftmax", "TopKV2", "StatelessWhile", "While", "ScatterNd", "TensorScatterUpdate",
               "Exp", "Log", "Square", "Pow", "FloorDiv", "FloorMod", "Tile", "RaggedTensorFromVariant",
               "RaggedTensorToVariant", "StringJoin", "ReduceJoin", "Any", "Min", "Sin", "Cos", "Einsum",
               "StridedSlice", "Unpack", "Relu", "Rsqrt", "Mean", "GatherNd", "Reshape", "ConcatV2", "Fill",
               "StringFormat", "UnsortedSegmentJoin"}


def short_pairs(count):
    """The `count` shortest (ru, en) pairs: few tokens, so a tiny model learns them in seconds."""
    with open(os.path.join(NTREX, "train.ru"), encoding="utf-8") as f:
        russian = f.read().splitlines()
    with open(os.path.join(NTREX, "train.en"), encoding="utf-8") as f:
        english = f.read().splitlines()
    return sorted(zip(russian, english), key=lambda pair: len(pair[0]) + len(pair[1]))[:count]


def teacher_forcing(tokenizer, sources, targets):
    """The agreed batch format: decoder input [CLS] y1..yn, labels y1..yn [SEP], -100 on padding."""
    source = tokenizer(sources, max_length=32, padding="longest")
    target = tokenizer(targets, max_length=32, padding="longest")
    ids, mask = target["token_ids"].numpy(), target["padding_mask"].numpy()
    features = {"encoder_token_ids": source["token_ids"].numpy(), "encoder_padding_mask": source["padding_mask"].numpy(),
                "decoder_token_ids": np.where(mask[:, 1:] > 0, ids[:, :-1], tokenizer.pad_id).astype(np.int32),
                "decoder_padding_mask": mask[:, 1:].astype(np.int32)}
    labels = np.where(mask[:, 1:] > 0, ids[:, 1:], -100).astype(np.int32)
    return features, labels, [row[:n].tolist() for row, n in zip(ids, mask.sum(1))]


@pytest.fixture(scope="module")
def trained():
    tokenizer = rt.RuBertTokenizer(TINY2_VOCAB)
    pairs = short_pairs(5)
    features, labels, target_ids = teacher_forcing(tokenizer, [p[0] for p in pairs], [p[1] for p in pairs])
    keras.utils.set_random_seed(0)
    model = rt.RuBertSeq2Seq.from_scratch(tokenizer=tokenizer, hidden_size=64, num_layers=1, num_heads=4,
                                          intermediate_size=128, dropout=0.0, max_length=64)
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss=model.default_loss(label_smoothing=0.1))
    history = model.fit(features, labels, batch_size=len(pairs), epochs=40, verbose=0)
    return model, tokenizer, pairs, features, target_ids, history.history["loss"]


def test_tiny_transformer_overfits_and_reproduces_the_pairs(trained):
    model, tokenizer, pairs, features, target_ids, losses = trained
    assert losses[-1] < 0.5 * losses[0], losses
    sources = [p[0] for p in pairs]
    ids = model.generate_ids(features["encoder_token_ids"], features["encoder_padding_mask"], max_length=32)
    assert ids == target_ids  # [CLS] y1 .. yn [SEP], token for token
    expected = [text.decode() for text in tokenizer.detokenize(target_ids).numpy()]
    assert model.generate(sources, max_length=32) == expected
    assert model.generate(sources, max_length=32, num_beams=3) == expected
    # Raw-text generation agrees one by one and in a batch.
    assert [model.generate(text, max_length=32) for text in sources[:2]] == expected[:2]


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # the only extra import TF Serving's binary has an equivalent of
    assert "rubert_tf" not in sys.modules
    path, texts, out = json.loads(sys.argv[1])
    serve = tf.saved_model.load(path).signatures["serving_default"]
    outputs = serve(text=tf.constant(texts))
    json.dump({"output": [t.decode("utf-8") for t in outputs["output"].numpy()],
               "inputs": sorted(serve.structured_input_signature[1]),
               "outputs": sorted(serve.structured_outputs)}, open(out, "w"))
""")


def test_exported_savedmodel_generates_the_same_strings_in_a_fresh_process(trained, tmp_path):
    model, tokenizer, pairs, _, target_ids, _ = trained
    generation = {"num_beams": 3, "max_length": 32, "length_penalty": 1.0}
    path = rt.export(model, tokenizer, str(tmp_path / "ru_en"), max_length=64, generation=generation)
    texts = [p[0] for p in pairs] + ["Совсем другой текст, которого не было.", ""]
    out = str(tmp_path / "outputs.json")
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps([path, texts, out])], check=True, timeout=300)
    with open(out, encoding="utf-8") as f:
        served = json.load(f)
    assert served["inputs"] == ["text"] and served["outputs"] == ["output"]
    assert served["output"] == model.generate(texts, **generation)
    # The learned translations, served: the training targets as the tokenizer spells them.
    assert served["output"][:len(pairs)] == [text.decode() for text in tokenizer.detokenize(target_ids).numpy()]
    ops = set(saved_model_ops(path))
    assert unservable_ops(path) == []
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    assert not ops - ALLOWED_OPS - SEQ2SEQ_OPS, sorted(ops - ALLOWED_OPS - SEQ2SEQ_OPS)
    assert os.path.isfile(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))


def test_export_refuses_sampling(trained, tmp_path):
    model, tokenizer, _, _, _, _ = trained
    with pytest.raises(ValueError, match="do_sample"):
        rt.export(model, tokenizer, str(tmp_path / "sampled"), generation={"do_sample": True})
