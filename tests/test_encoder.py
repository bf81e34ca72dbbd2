"""RuBertEncoder and RuBertForMaskedLM as Keras models: shapes, masks, saving, fit, mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rubert_tf import RuBertConfig, RuBertEncoder, RuBertForMaskedLM

SMALL = RuBertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=40)


def batch(lengths=(6, 3), width=8, vocab=120, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(len(lengths), width)).astype("int32")
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    ids[mask == 0] = 0
    ids[:, 0] = 2
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


def test_encoder_outputs_and_padding_invariance():
    encoder = RuBertEncoder(SMALL)
    inputs = batch()
    out = encoder(inputs)
    assert out["sequence_output"].shape == (2, 8, 32) and out["pooled_output"].shape == (2, 32)
    # Whatever sits in padded positions must not change real tokens' outputs.
    noisy = {k: v.copy() for k, v in inputs.items()}
    noisy["token_ids"][1, 3:] = 77
    noisy_out = encoder(noisy)["sequence_output"].numpy()
    np.testing.assert_allclose(noisy_out[1, :3], out["sequence_output"].numpy()[1, :3], atol=1e-5)
    # A shorter padded width gives the same real-token outputs as the long one.
    short = {k: v[:, :6] for k, v in inputs.items()}
    np.testing.assert_allclose(encoder(short)["sequence_output"].numpy()[0], out["sequence_output"].numpy()[0, :6],
                               atol=1e-5)


def test_rubert_tiny2_preset_has_the_same_parameter_count_as_transformers():
    import transformers  # test-only reference
    cfg = RuBertConfig.from_pretrained("cointegrated/rubert-tiny2")
    encoder = RuBertEncoder(cfg)
    hf = transformers.BertModel(transformers.BertConfig(**cfg.to_hf_dict()))
    assert encoder.count_params() == sum(p.numel() for p in hf.parameters())
    assert encoder.get_layer("token_embedding").embeddings.shape == (83828, 312)
    assert len(encoder.hf_weight_map()) == len(hf.state_dict())


def test_encoder_and_mlm_round_trip_through_keras_file(tmp_path):
    mlm = RuBertForMaskedLM(SMALL)
    inputs = batch()
    expected = mlm(inputs)["logits"].numpy()
    mlm.save(tmp_path / "mlm.keras")
    restored = keras.models.load_model(tmp_path / "mlm.keras")
    np.testing.assert_allclose(restored(inputs)["logits"].numpy(), expected, atol=1e-5)
    assert restored.config == SMALL
    # The decoder stays tied: one embedding variable, shared by input and output.
    names = [v.path for v in restored.weights]
    assert sum("token_embedding" in n for n in names) == 1


def test_mlm_fits_and_the_tie_trains_one_table():
    mlm = RuBertForMaskedLM(SMALL)
    inputs = batch(lengths=(8, 8, 8, 8), seed=1)
    labels = inputs["token_ids"].copy()
    dataset = tf.data.Dataset.from_tensors((inputs, {"logits": labels})).repeat(30)
    mlm.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    history = mlm.fit(dataset, epochs=1, verbose=0)
    first = mlm.evaluate(dataset.take(1), verbose=0)
    assert history.history["loss"][0] > first  # it learned something
    assert first < 3.0  # from log(120) = 4.8 at random init


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_encoder_under_mixed_precision(policy):
    reference = RuBertEncoder(SMALL)
    inputs = batch()
    expected = reference(inputs)["sequence_output"].numpy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        encoder = RuBertEncoder(SMALL)
        encoder.set_weights(reference.get_weights())
        out = encoder(inputs)
        mlm = RuBertForMaskedLM(SMALL)
        logits = mlm(inputs)["logits"]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out["sequence_output"].dtype == policy.split("_")[1]
    assert logits.dtype == "float32"  # the loss sees float32 logits
    got = tf.cast(out["sequence_output"], "float32").numpy()
    np.testing.assert_allclose(got, expected, atol=0.15)


def test_too_long_input_names_the_limit():
    encoder = RuBertEncoder(SMALL)
    with pytest.raises(Exception, match="max_position_embeddings"):
        encoder(batch(lengths=(41,), width=41))
