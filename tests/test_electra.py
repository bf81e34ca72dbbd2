"""ELECTRA: factorised embeddings, the HF Electra layout both ways (against transformers), the RTD labels
and loss computed by hand, and a few steps of model.fit."""

import json
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

import rubert_tf as rt
from rubert_tf.checkpoints.hf import CheckpointError
from rubert_tf.data.pretraining import IGNORE_LABEL, MaskedLMMasker
from rubert_tf.models.electra import (RuBertForReplacedTokenDetection, generator_config_for,
                                      replaced_token_labels)

from reference_models import copy_vocab

pytestmark = pytest.mark.usefixtures("float32_policy")

# E (24) != H (32): every path goes through embeddings_project; the generator (H 8) projects 24 -> 8.
TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=40)


def batch(seed=0, vocab=120, rows=3, width=12, positions=4):
    """A masked batch as MaskedLMMasker(max_predictions=P) gives it: [CLS] at 0, padding in the last row,
    mask positions ascending with 0 filler and -100 labels; the masked tokens replaced by [MASK] (4)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (rows, width)).astype("int32")
    ids[:, 0] = 2
    mask = np.ones_like(ids)
    mask[-1, width - 4:] = 0
    ids[mask == 0] = 0
    mask_positions = np.zeros((rows, positions), "int32")
    labels = np.full((rows, positions), IGNORE_LABEL, "int32")
    masked = ids.copy()
    for row in range(rows):
        count = positions - row  # the rows have 4, 3, 2 predictions: filler in rows 1 and 2
        chosen = np.sort(rng.choice(np.arange(1, int(mask[row].sum())), count, replace=False))
        mask_positions[row, :count] = chosen
        labels[row, :count] = ids[row, chosen]
        masked[row, chosen] = 4
    features = {"token_ids": masked, "segment_ids": np.zeros_like(ids), "padding_mask": mask,
                "mask_positions": mask_positions}
    return features, {"logits": labels}, ids


def randomize(variables, seed=0):
    """O(1) random values everywhere, so a bias or LayerNorm parameter mapped wrong shows in the outputs."""
    rng = np.random.default_rng(seed)
    for variable in variables:
        shape = tuple(variable.shape)
        if len(shape) == 1:
            value = rng.normal(0, 0.2, shape) + (1.0 if "gamma" in variable.path else 0.0)
        else:
            value = rng.normal(0, shape[0] ** -0.5, shape)
        variable.assign(value.astype("float32"))


def torch_inputs(features, token_ids=None):
    ids = features["token_ids"] if token_ids is None else token_ids
    return {"input_ids": torch.from_numpy(np.asarray(ids)).long(),
            "token_type_ids": torch.from_numpy(features["segment_ids"]).long(),
            "attention_mask": torch.from_numpy(features["padding_mask"]).long()}


@pytest.fixture(scope="module")
def tiny_rtd():
    keras.utils.set_random_seed(3)
    model = RuBertForReplacedTokenDetection(rt.RuBertConfig(**TINY, embedding_size=24))
    randomize(model.weights)
    return model


# ---- config and encoder ----------------------------------------------------------------------------

def test_embedding_size_config_round_trip_and_electra_default():
    config = rt.RuBertConfig(**TINY, embedding_size=24)
    assert config.embedding_width == 24 and config.factorized_embeddings
    assert rt.RuBertConfig.from_dict(config.to_dict()) == config
    plain = rt.RuBertConfig(**TINY)
    assert "embedding_size" not in plain.to_dict() and plain.embedding_width == 32  # BERT configs unchanged
    # An ElectraConfig's config.json may leave embedding_size out: HF's default (128) then applies.
    assert rt.RuBertConfig.from_dict({**TINY, "hidden_size": 256, "model_type": "electra"}).embedding_size == 128
    with pytest.raises(ValueError, match="embedding_size"):
        rt.RuBertConfig(**TINY, embedding_size=0)


def test_factorised_encoder_has_the_projection_and_saves_as_electra_model(tmp_path):
    from rubert_tf.checkpoints.hf import save_hf_checkpoint

    encoder = rt.RuBertEncoder(rt.RuBertConfig(**TINY, embedding_size=24))
    randomize(encoder.weights)
    weights = encoder.hf_weight_map()
    assert tuple(weights["embeddings.word_embeddings.weight"][0].shape) == (120, 24)
    assert tuple(weights["embeddings.LayerNorm.weight"][0].shape) == (24,)
    assert tuple(weights["embeddings_project.weight"][0].shape) == (24, 32)  # Keras [in, out]; HF [32, 24]
    assert "embeddings_project.weight" not in rt.RuBertEncoder(rt.RuBertConfig(**TINY)).hf_weight_map()
    with pytest.raises(CheckpointError, match="embeddings_project"):  # BERT's layout cannot hold it
        save_hf_checkpoint(encoder, str(tmp_path / "bert"), architecture="BertModel")
    assert not os.path.exists(tmp_path / "bert" / "config.json")

    encoder.save_pretrained(str(tmp_path / "electra"))  # ... so save_pretrained writes HF's ElectraModel
    config = json.loads((tmp_path / "electra" / "config.json").read_text())
    assert (config["model_type"], config["architectures"], config["embedding_size"]) == (
        "electra", ["ElectraModel"], 24)
    features, _, _ = batch(seed=3)
    body = {k: features[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    real = features["padding_mask"].astype(bool)
    ours = np.asarray(encoder(body, training=False)["sequence_output"])
    hf = transformers.ElectraModel.from_pretrained(str(tmp_path / "electra")).eval()
    with torch.no_grad():
        theirs = hf(**torch_inputs(features)).last_hidden_state.numpy()
    np.testing.assert_allclose(ours[real], theirs[real], atol=1e-4)
    again = rt.RuBertEncoder.from_pretrained(str(tmp_path / "electra"))
    np.testing.assert_allclose(np.asarray(again(body, training=False)["sequence_output"]), ours, atol=1e-6)


def test_config_saved_from_an_electra_checkpoint_names_the_family_its_weights_have(tmp_path):
    """An Electra discriminator's config with E == H describes a BertModel once read: saving it must not keep
    model_type "electra" (transformers would build an ElectraModel and find BERT's names); E != H stays Electra."""
    values = dict(TINY, model_type="electra", architectures=["ElectraForPreTraining"], embedding_size=32)
    config = rt.RuBertConfig.from_dict(values)
    assert not config.factorized_embeddings
    written = json.loads(open(config.save_pretrained(str(tmp_path / "bert"))).read())
    assert (written["model_type"], written["architectures"]) == ("bert", ["BertModel"])
    factorised = rt.RuBertConfig.from_dict(dict(values, embedding_size=24))
    written = json.loads(open(factorised.save_pretrained(str(tmp_path / "electra"))).read())
    assert (written["model_type"], written["architectures"], written["embedding_size"]) == (
        "electra", ["ElectraForPreTraining"], 24)
    again = rt.RuBertConfig.from_pretrained(str(tmp_path / "electra"))
    assert (again.embedding_size, again.hidden_size, again.factorized_embeddings) == (24, 32, True)


def test_generator_config_is_a_quarter_of_the_discriminator():
    config = rt.RuBertConfig.from_pretrained("cointegrated/rubert-tiny2")  # H 312, 12 heads, emb_size 312
    generator = generator_config_for(config)
    assert (generator.hidden_size, generator.num_attention_heads, generator.intermediate_size) == (78, 3, 312)
    assert generator.num_hidden_layers == config.num_hidden_layers and generator.embedding_width == 312
    assert generator_config_for(config, hidden_size=100).num_attention_heads == 2  # 3 heads cannot split 100


# ---- HF Electra layout, both ways --------------------------------------------------------------------

def test_saved_rtd_model_loads_in_transformers_with_the_same_logits(tiny_rtd, tmp_path):
    features, _, _ = batch()
    out = {name: np.asarray(value) for name, value in tiny_rtd(features, training=False).items()}
    directory = tmp_path / "rtd"
    tiny_rtd.save_pretrained(str(directory))
    config = json.loads((directory / "config.json").read_text())
    assert (config["model_type"], config["architectures"], config["embedding_size"]) == (
        "electra", ["ElectraForPreTraining"], 24)
    generator_config = json.loads((directory / "generator" / "config.json").read_text())
    assert (generator_config["architectures"], generator_config["hidden_size"]) == (["ElectraForMaskedLM"], 8)

    real = features["padding_mask"].astype(bool)
    discriminator = transformers.ElectraForPreTraining.from_pretrained(str(directory)).eval()
    with torch.no_grad():  # on the ids our discriminator saw
        hf_rtd = discriminator(**torch_inputs(features, out["corrupted_ids"])).logits.numpy()
    np.testing.assert_allclose(out["rtd_logits"][real], hf_rtd[real], atol=1e-4)

    generator = transformers.ElectraForMaskedLM.from_pretrained(str(directory / "generator")).eval()
    with torch.no_grad():
        hf_mlm = generator(**torch_inputs(features)).logits.numpy()
    at_positions = np.take_along_axis(hf_mlm, features["mask_positions"][:, :, None], axis=1)
    np.testing.assert_allclose(out["logits"], at_positions, atol=1e-4)
    # Tied as in the paper: HF's generator head decodes with the (shared) word embeddings.
    np.testing.assert_array_equal(generator.generator_lm_head.weight.detach().numpy(),
                                  discriminator.electra.embeddings.word_embeddings.weight.detach().numpy())

    # ... and our loader reads the pair back, sampler included: the same outputs.
    reloaded = RuBertForReplacedTokenDetection.from_pretrained(str(directory))
    assert reloaded.generator_config.hidden_size == 8
    for name, value in reloaded(features, training=False).items():
        np.testing.assert_allclose(np.asarray(value), out[name], atol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def hf_electra_dir(tmp_path_factory):
    """A random transformers ElectraForPreTraining (embedding_size 24 != hidden 32) with O(1) weights."""
    torch.manual_seed(0)
    config = transformers.ElectraConfig(**TINY, embedding_size=24, hidden_act="gelu")
    model = transformers.ElectraForPreTraining(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm.weight" in name:
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            elif parameter.ndim == 1:
                parameter.normal_(0, 0.2)
            elif "embeddings." in name:
                parameter.normal_(0, 0.5)
            else:
                parameter.normal_(0, parameter.shape[1] ** -0.5)
    directory = str(tmp_path_factory.mktemp("hf_electra"))
    model.save_pretrained(directory)
    copy_vocab(directory, config.vocab_size)
    return directory, model


def test_transformers_electra_loads_as_our_encoder_classifier_and_discriminator(hf_electra_dir, caplog):
    directory, hf_model = hf_electra_dir
    features, _, _ = batch(seed=1)
    real = features["padding_mask"].astype(bool)
    with torch.no_grad():
        hf = hf_model.electra(**torch_inputs(features)).last_hidden_state.numpy()
        hf_logits = hf_model(**torch_inputs(features)).logits.numpy()

    encoder = rt.RuBertEncoder.from_pretrained(directory)
    assert (encoder.config.embedding_size, encoder.config.hidden_size) == (24, 32)
    body = {k: features[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    ours = np.asarray(encoder(body, training=False)["sequence_output"])
    np.testing.assert_allclose(ours[real], hf[real], atol=1e-4)

    with caplog.at_level(logging.INFO, logger="rubert_tf.checkpoints.loading"):
        classifier = rt.RuBertClassifier.from_pretrained(directory, num_labels=2)
    assert "not in the checkpoint" in caplog.text and "classifier" in caplog.text  # a random head, logged
    assert "discriminator_predictions" in caplog.text  # the RTD head: ignored, logged
    np.testing.assert_allclose(np.asarray(classifier.encoder(body, training=False)["sequence_output"])[real],
                               hf[real], atol=1e-4)

    # The RTD model takes HF's discriminator (no generator/: a random generator, logged) with its head.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rtd = RuBertForReplacedTokenDetection.from_pretrained(directory)
    assert "no generator checkpoint" in caplog.text
    discriminator_input = {**body, "token_ids": features["token_ids"]}
    sequence = rtd.discriminator(discriminator_input, training=False)["sequence_output"]
    ours = np.asarray(rtd.get_layer("discriminator_predictions")(sequence))
    np.testing.assert_allclose(ours[real], hf_logits[real], atol=1e-4)


def test_factorised_checkpoint_fine_tunes_and_saves_in_the_electra_layout(hf_electra_dir, tmp_path):
    """finetune on an ELECTRA-small-like checkpoint (E 24 != H 32): the task model is saved in HF's Electra
    layout, transformers' ElectraForTokenClassification reads it with our logits, and our loader and
    evaluate read it back whole (a classifier too, whose head has no Electra twin)."""
    from rubert_tf.finetune import finetune

    directory, _ = hf_electra_dir
    ner_train = tmp_path / "ner.bio"
    ner_train.write_text("Путин B-PER\nв O\nМоскве B-LOC\n\nЛенин B-PER\nи O\nСталин B-PER\n\n",
                         encoding="utf-8")
    out = tmp_path / "ner"
    metrics = finetune("ner", model=directory, train=str(ner_train), eval=str(ner_train), out=str(out), epochs=1,
                       batch_size=2, max_length=16, learning_rate=1e-3, verbose=0)
    assert "f1" in metrics
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["architectures"], config["embedding_size"], config["hidden_size"]) == (
        "electra", ["ElectraForTokenClassification"], 24, 32)

    ours = rt.RuBertTokenClassifier.from_pretrained(str(out))
    assert ours.config.factorized_embeddings
    assert ours.labels == [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    features, _, _ = batch(seed=2)
    body = {k: features[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    real = features["padding_mask"].astype(bool)
    logits = np.asarray(ours(body, training=False)["logits"])
    hf = transformers.ElectraForTokenClassification.from_pretrained(str(out)).eval()
    with torch.no_grad():
        hf_logits = hf(**torch_inputs(features)).logits.numpy()
    np.testing.assert_allclose(logits[real], hf_logits[real], atol=1e-4)

    clf_train = tmp_path / "train.csv"
    clf_train.write_text("text,label\nхорошо,1\nплохо,0\nотлично,1\nужасно,0\n", encoding="utf-8")
    clf_out = tmp_path / "clf"
    finetune("classification", model=directory, train=str(clf_train), out=str(clf_out), epochs=1, batch_size=2,
             max_length=8, verbose=0)
    config = json.loads((clf_out / "config.json").read_text())
    assert (config["model_type"], config["architectures"]) == ("electra", ["RuBertClassifier"])
    classifier = rt.RuBertClassifier.from_pretrained(str(clf_out))
    again = rt.RuBertClassifier.from_pretrained(str(clf_out))
    np.testing.assert_array_equal(np.asarray(classifier(body, training=False)["logits"]),
                                  np.asarray(again(body, training=False)["logits"]))
    weights = {name: variable.numpy() for name, (variable, _) in classifier.hf_weight_map().items()}
    assert weights["classifier.weight"].shape == (32, 2)  # the head came back, not a fresh one
    from rubert_tf.checkpoints.hf import read_hf_weights

    saved = read_hf_weights(str(clf_out / "model.safetensors"))
    assert "electra.embeddings_project.weight" in saved and not any(k.startswith("bert.") for k in saved)
    np.testing.assert_array_equal(saved["classifier.weight"], weights["classifier.weight"].T)


# ---- RTD labels and loss ----------------------------------------------------------------------------

def test_replaced_labels_mark_exactly_the_changed_mask_positions():
    keras.utils.set_random_seed(0)
    # A 12-token vocabulary: about one sample in 12 is the original token back, which must count as original.
    model = RuBertForReplacedTokenDetection(rt.RuBertConfig(**{**TINY, "vocab_size": 12}))
    features, labels, originals = batch(vocab=12, rows=3, width=12, positions=4)
    features = {k: np.tile(v, (20, 1)) for k, v in features.items()}
    labels, originals = {"logits": np.tile(labels["logits"], (20, 1))}, np.tile(originals, (20, 1))
    corrupted = np.asarray(model(features, training=True)["corrupted_ids"])
    replaced = np.asarray(replaced_token_labels(features["token_ids"], features["mask_positions"], labels["logits"],
                                                corrupted))
    at_mask = np.zeros_like(replaced, dtype=bool)
    valid = labels["logits"] != IGNORE_LABEL
    for row in range(len(at_mask)):
        at_mask[row, features["mask_positions"][row][valid[row]]] = True
    np.testing.assert_array_equal(corrupted[~at_mask], features["token_ids"][~at_mask])  # [CLS] (filler 0) too
    np.testing.assert_array_equal(replaced, (corrupted != originals).astype("int32"))
    assert replaced[~at_mask].sum() == 0
    same = at_mask & (corrupted == originals)
    assert 0 < same.sum() < at_mask.sum()  # some samples hit the original: those are labelled 0
    assert replaced[at_mask].sum() == at_mask.sum() - same.sum()

    # A generator that always predicts the original: nothing is replaced.
    bias = model.get_layer("generator_lm_head").bias
    bias.assign(np.where(np.arange(12) == 7, 1e4, 0.0).astype("float32"))
    labels_7 = {"logits": np.where(valid, 7, IGNORE_LABEL).astype("int32")}
    corrupted = np.asarray(model(features, training=True)["corrupted_ids"])
    assert (corrupted[at_mask] == 7).all()
    assert np.asarray(replaced_token_labels(features["token_ids"], features["mask_positions"], labels_7["logits"],
                                            corrupted)).sum() == 0


def _numpy_loss(features, labels, originals, outputs, rtd_weight):
    logits = outputs["logits"].astype("float64")
    target = labels["logits"]
    valid = target != IGNORE_LABEL
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    xent = -np.take_along_axis(log_probs, np.maximum(target, 0)[:, :, None], axis=-1)[:, :, 0]
    mlm = xent[valid].mean()
    replaced = (outputs["corrupted_ids"] != originals).astype("float64")
    z = outputs["rtd_logits"].astype("float64")
    bce = np.maximum(z, 0) - z * replaced + np.log1p(np.exp(-np.abs(z)))
    real = features["padding_mask"].astype(bool)
    detected = z > 0
    metrics = {"mlm_loss": mlm, "rtd_loss": bce[real].mean(),
               "mlm_accuracy": (logits.argmax(-1) == target)[valid].mean(),
               "rtd_accuracy": (detected == replaced.astype(bool))[real].mean(),
               "rtd_recall": detected[real & (replaced > 0)].mean()}
    return mlm + rtd_weight * bce[real].mean(), metrics


def test_loss_is_mlm_plus_weighted_bce_computed_by_hand(tiny_rtd):
    features, labels, originals = batch(seed=2)
    outputs = {k: np.asarray(v) for k, v in tiny_rtd(features, training=False).items()}
    expected, metrics = _numpy_loss(features, labels, originals, outputs, rtd_weight=50.0)
    loss = tiny_rtd.compute_loss(features, labels, tiny_rtd(features, training=False), training=False)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert (outputs["corrupted_ids"] != originals).sum() > 0  # the BCE term sees replaced tokens

    # evaluate (training=False: the inference seed, so the same samples) reports the same numbers.
    model = RuBertForReplacedTokenDetection.from_config(tiny_rtd.get_config())
    model.set_weights(tiny_rtd.get_weights())
    model.compile(optimizer="adam")
    values = model.evaluate(tf.data.Dataset.from_tensors((features, labels)), verbose=0, return_dict=True)
    assert values["loss"] == pytest.approx(expected, rel=1e-5)
    for name, value in metrics.items():
        assert values[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    # AUC against sklearn's exact one (Keras' is binned at 500 thresholds of the sigmoid)
    from sklearn.metrics import roc_auc_score

    real = features["padding_mask"].astype(bool)
    replaced = (outputs["corrupted_ids"] != originals)[real]
    exact = roc_auc_score(replaced, outputs["rtd_logits"][real])
    assert values["rtd_auc"] == pytest.approx(exact, abs=0.02) and 0 < values["rtd_auc"] < 1


def test_fit_trains_generator_and_discriminator_together():
    keras.utils.set_random_seed(0)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
    masker = MaskedLMMasker(tokens, mask_token_rate=0.85, random_token_rate=0.0, max_predictions=6)
    rng = np.random.default_rng(0)
    # Repetitive "text" (each row counts up from a random start): learnable in a few dozen steps.
    starts = rng.integers(5, 40, (32, 1))
    ids = 5 + (starts + np.arange(16)[None, :]) % 35
    ids[:, 0], ids[:, -1] = 2, 3
    base = {"token_ids": ids.astype("int32"), "segment_ids": np.zeros_like(ids, "int32"),
            "padding_mask": np.ones_like(ids, "int32")}
    data = tf.data.Dataset.from_tensors(base).repeat().enumerate().map(
        lambda step, features: masker(features, tf.stack([step, tf.constant(0, tf.int64)])))
    model = RuBertForReplacedTokenDetection(rt.RuBertConfig(**{**TINY, "vocab_size": 40}), rtd_weight=10.0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    history = model.fit(data, steps_per_epoch=20, epochs=3, verbose=0).history
    print({name: [round(v, 3) for v in values] for name, values in history.items()})
    assert all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < 0.85 * history["loss"][0]
    assert history["mlm_loss"][-1] < history["mlm_loss"][0] - 0.1  # the generator learns ...
    assert history["rtd_loss"][-1] < history["rtd_loss"][0] - 0.1  # ... and so does the discriminator
    assert {"mlm_accuracy", "rtd_accuracy", "rtd_loss", "rtd_recall", "rtd_auc"} <= set(history)
