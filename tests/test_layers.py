"""Keras layers: formulas against numpy, masks, key/value cache, serialisation, mixed precision."""

import math

import keras
import numpy as np
import pytest

from rubert_tf.layers import (
    MultiHeadAttention,
    PositionEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
    get_activation,
)

RNG = np.random.default_rng(0)


def random(*shape):
    return RNG.standard_normal(shape).astype("float32")


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


# ---- positions -----------------------------------------------------------------------------

def test_sinusoidal_encoding_follows_the_paper_formula():
    d, length, start = 16, 7, 5
    out = SinusoidalPositionalEncoding()(np.zeros((2, length, d), "float32"), start_index=start).numpy()
    assert out.shape == (2, length, d)
    for pos in range(length):
        for i in range(d // 2):
            angle = (pos + start) / 10000 ** (2 * i / d)
            assert out[1, pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-5)
            assert out[1, pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-5)


def test_sinusoidal_encoding_rejects_odd_width():
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEncoding()(np.zeros((1, 3, 5), "float32"))


def test_position_embedding_slices_rows_from_start_index():
    layer = PositionEmbedding(10)
    x = np.zeros((2, 4, 6), "float32")
    out = layer(x).numpy()
    table = layer.embeddings.numpy()
    np.testing.assert_array_equal(out[0], table[:4])
    np.testing.assert_array_equal(layer(x[:, :1], start_index=3).numpy()[1, 0], table[3])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        layer(np.zeros((1, 11, 6), "float32"))


def test_token_embedding_reverse_is_the_transposed_table():
    layer = TokenEmbedding(13, 4)
    ids = np.array([[1, 2, 12]])
    vectors = layer(ids).numpy()
    logits = layer(vectors, reverse=True).numpy()
    np.testing.assert_allclose(logits, vectors @ layer.embeddings.numpy().T, atol=1e-5)
    assert logits.shape == (1, 3, 13)


def test_activations_follow_hf_names():
    x = np.linspace(-4, 4, 41).astype("float32")
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(get_activation("gelu")(x).numpy(), exact, atol=1e-6)
    np.testing.assert_allclose(get_activation("gelu_new")(x).numpy(), tanh, atol=1e-6)
    np.testing.assert_allclose(get_activation("gelu_pytorch_tanh")(x).numpy(), tanh, atol=1e-6)
    assert np.abs(exact - tanh).max() > 1e-4  # the two really differ, so the mapping matters
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("gelu_fast_typo")


# ---- attention -----------------------------------------------------------------------------

def reference_attention(layer, query, value, mask=None):
    """Plain numpy multi-head attention with the layer's own weights."""
    def project(dense, x):
        return x @ dense.kernel.numpy() + dense.bias.numpy()

    n, h = layer.num_heads, layer.head_size
    q = project(layer.query_dense, query).reshape(*query.shape[:2], n, h)
    k = project(layer.key_dense, value).reshape(*value.shape[:2], n, h)
    v = project(layer.value_dense, value).reshape(*value.shape[:2], n, h)
    scores = np.einsum("bqnh,bknh->bnqk", q, k) / math.sqrt(h)
    if mask is not None:
        scores = np.where(mask[:, None], scores, -1e9)
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    context = np.einsum("bnqk,bknh->bqnh", probs, v).reshape(*query.shape[:2], n * h)
    return project(layer.output_dense, context)


def test_attention_matches_numpy_reference_with_padding_mask():
    layer = MultiHeadAttention(num_heads=4, head_size=3)
    query, value = random(2, 5, 12), random(2, 7, 12)
    padding = np.array([[1] * 7, [1] * 4 + [0] * 3], "int32")
    out = layer(query, value, padding_mask=padding).numpy()
    expected = reference_attention(layer, query, value, np.broadcast_to(padding[:, None, :].astype(bool), (2, 5, 7)))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Weight layout is BERT's: separate [hidden, heads * head_size] projections.
    assert layer.query_dense.kernel.shape == (12, 12) and layer.output_dense.kernel.shape == (12, 12)


def test_padding_keys_do_not_influence_output():
    layer = MultiHeadAttention(num_heads=2, head_size=4)
    x = random(1, 6, 8)
    padding = np.array([[1, 1, 1, 1, 0, 0]])
    changed = x.copy()
    changed[:, 4:] = random(1, 2, 8) * 100
    a = layer(x, padding_mask=padding).numpy()
    b = layer(changed, padding_mask=padding).numpy()
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-5)


def test_causal_mask_hides_the_future():
    layer = MultiHeadAttention(num_heads=2, head_size=4)
    x = random(1, 6, 8)
    changed = x.copy()
    changed[:, 3:] += 5.0
    a = layer(x, use_causal_mask=True).numpy()
    b = layer(changed, use_causal_mask=True).numpy()
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)
    assert np.abs(a[:, 3:] - b[:, 3:]).max() > 1e-3


def test_self_attention_cache_step_by_step_equals_full_causal_pass():
    layer = MultiHeadAttention(num_heads=2, head_size=4)
    x = random(2, 5, 8)
    full = layer(x, use_causal_mask=True).numpy()
    cache = np.zeros((2, 2, 5, 2, 4), "float32")
    steps = []
    for i in range(5):
        out, cache = layer(x[:, i:i + 1], use_causal_mask=True, cache=cache, cache_update_index=i)
        steps.append(out.numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_cross_attention_cache_equals_direct_call():
    layer = MultiHeadAttention(num_heads=2, head_size=4)
    query, memory = random(2, 3, 8), random(2, 6, 8)
    padding = np.array([[1] * 6, [1, 1, 1, 0, 0, 0]])
    direct = layer(query, memory, padding_mask=padding).numpy()
    cached, returned = layer(query, padding_mask=padding, cache=layer.compute_cache(memory))
    np.testing.assert_allclose(cached.numpy(), direct, atol=1e-5)
    assert returned.shape == (2, 2, 6, 2, 4)


# ---- transformer blocks ---------------------------------------------------------------------

def test_encoder_block_post_and_pre_layer_norm():
    x = random(2, 4, 8)
    post = TransformerEncoderBlock(num_heads=2, intermediate_size=16, dropout=0.0, attention_dropout=0.0)
    out = post(x).numpy()
    # Post-LN: each output vector is LayerNorm'd (zero mean, unit variance before gamma=1, beta=0).
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(-1), 1, atol=1e-3)
    pre = TransformerEncoderBlock(num_heads=2, intermediate_size=16, normalize_first=True, dropout=0.0)
    pre(x)
    pre.set_weights(post.get_weights())
    pre_out = pre(x).numpy()
    assert np.abs(pre_out.std(-1) - 1).max() > 1e-2  # residual stream is not normalised
    assert np.abs(pre_out - out).max() > 1e-2


def test_encoder_block_uses_keras_mask_when_no_padding_mask():
    ids = np.array([[5, 6, 7, 0, 0]])
    embed = keras.layers.Embedding(10, 8, mask_zero=True)
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=16, dropout=0.0, attention_dropout=0.0)
    via_keras_mask = block(embed(ids)).numpy()
    via_padding = block(embed(ids), padding_mask=(ids != 0).astype("int32")).numpy()
    no_mask = block(embed.call(ids)).numpy()
    np.testing.assert_allclose(via_keras_mask, via_padding, atol=1e-6)
    assert np.abs(no_mask[:, :3] - via_padding[:, :3]).max() > 1e-4


def test_decoder_block_cached_decoding_equals_full_pass():
    block = TransformerDecoderBlock(num_heads=2, intermediate_size=16, dropout=0.0, attention_dropout=0.0)
    target, memory = random(2, 5, 8), random(2, 7, 8)
    memory_mask = np.array([[1] * 7, [1] * 5 + [0] * 2])
    full = block(target, memory, encoder_padding_mask=memory_mask).numpy()
    self_cache = np.zeros((2, 2, 5, 2, 4), "float32")
    cross_cache = block.cross_attention.compute_cache(memory)
    steps = []
    for i in range(5):
        out, self_cache, cross_cache = block(
            target[:, i:i + 1], encoder_padding_mask=memory_mask, self_attention_cache=self_cache,
            self_attention_cache_update_index=i, cross_attention_cache=cross_cache)
        steps.append(out.numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    # Causal: the first position does not depend on later targets.
    changed = target.copy()
    changed[:, 1:] += 3.0
    np.testing.assert_allclose(block(changed, memory, encoder_padding_mask=memory_mask).numpy()[:, 0], full[:, 0],
                               atol=1e-5)


def test_decoder_block_without_memory_needs_cache_or_encoder_sequence():
    block = TransformerDecoderBlock(num_heads=2, intermediate_size=16)
    block(random(1, 2, 8), random(1, 3, 8))
    with pytest.raises(ValueError, match="encoder_sequence"):
        block(random(1, 2, 8))


# ---- serialisation ------------------------------------------------------------------------

def all_layers_model():
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    target = keras.Input(shape=(None, 8), name="target")
    embedding = TokenEmbedding(50, 8, name="embed")
    x = embedding(token_ids)
    x = keras.layers.Add()([x, PositionEmbedding(16)(x), SinusoidalPositionalEncoding()(x)])
    x = TransformerEncoderBlock(num_heads=2, intermediate_size=16, name="enc")(x)
    x = TransformerEncoderBlock(num_heads=2, intermediate_size=16, normalize_first=True, activation="gelu_new")(x)
    y = TransformerDecoderBlock(num_heads=2, intermediate_size=16, name="dec")(target, x)
    logits = embedding(y, reverse=True)
    return keras.Model({"token_ids": token_ids, "target": target}, logits)


def test_layers_round_trip_through_keras_file(tmp_path):
    model = all_layers_model()
    inputs = {"token_ids": np.array([[1, 2, 3, 4]]), "target": random(1, 3, 8)}
    expected = model(inputs).numpy()
    path = tmp_path / "layers.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(inputs).numpy(), expected, atol=1e-6)
    assert restored.get_layer("enc").get_config() == model.get_layer("enc").get_config()


def test_get_config_round_trip_for_each_layer():
    layers = [
        SinusoidalPositionalEncoding(max_wavelength=500.0),
        PositionEmbedding(32),
        TokenEmbedding(20, 4),
        MultiHeadAttention(num_heads=3, head_size=5, dropout=0.2),
        TransformerEncoderBlock(num_heads=2, intermediate_size=7, activation="relu", normalize_first=True),
        TransformerDecoderBlock(num_heads=2, intermediate_size=7, use_cross_attention=False),
    ]
    for layer in layers:
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config(), layer.__class__.__name__


# ---- mixed precision ----------------------------------------------------------------------

@pytest.mark.parametrize("policy,dtype,tolerance", [("mixed_bfloat16", "bfloat16", 0.1), ("mixed_float16", "float16", 0.02)])
def test_blocks_under_mixed_precision(float32_policy, policy, dtype, tolerance):
    x = random(2, 6, 16)
    padding = np.array([[1] * 6, [1] * 3 + [0] * 3])
    reference = TransformerEncoderBlock(num_heads=4, intermediate_size=32, dropout=0.0, attention_dropout=0.0)
    expected = reference(x, padding_mask=padding).numpy()
    keras.mixed_precision.set_global_policy(policy)
    block = TransformerEncoderBlock(num_heads=4, intermediate_size=32, dropout=0.0, attention_dropout=0.0)
    out = block(x, padding_mask=padding)
    block.set_weights(reference.get_weights())
    out = block(x, padding_mask=padding)
    assert out.dtype.name == dtype
    assert block.attention.query_dense.kernel.dtype == "float32"  # variables stay float32
    out = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=tolerance)
    decoder = TransformerDecoderBlock(num_heads=4, intermediate_size=32)
    assert decoder(x, x).dtype.name == dtype


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_16bit_draws_drop_at_the_rate_and_keep_the_expectation(rate):
    from rubert_tf.layers import Dropout

    x = np.ones((64, 12, 128), "float32") * 3.0  # 98,304 elements
    layer = Dropout(rate, seed=7)
    out = np.asarray(layer(x, training=True))
    dropped = (out == 0).mean()
    assert abs(dropped - rate) < 4 * math.sqrt(rate * (1 - rate) / x.size)  # 4 sigma
    np.testing.assert_allclose(out[out != 0], 3.0 / (1 - rate), rtol=1e-6)
    assert abs(out.mean() - 3.0) < 0.05
    again = np.asarray(layer(x, training=True))
    assert (again == 0).mean() == pytest.approx(rate, abs=0.01) and not np.array_equal(again == 0, out == 0)
    np.testing.assert_array_equal(np.asarray(Dropout(rate, seed=7)(x, training=True)), out)  # seeded
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    # gradient flows through kept elements only, scaled as the output
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = Dropout(rate, seed=3)(xt, training=True)
        total = tf.reduce_sum(y)
    grad = tape.gradient(total, xt).numpy()
    np.testing.assert_allclose(grad, (np.asarray(y) != 0) / (1 - rate), rtol=1e-6)
