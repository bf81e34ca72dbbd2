"""The fine-tuning recipe: schedule shape, which weights decay, clipping."""

import keras
import numpy as np
import pytest

from rubert_tf import RuBertConfig, RuBertEncoder
from rubert_tf.training import WarmupLinearDecay, create_optimizer


def test_warmup_then_linear_decay():
    schedule = WarmupLinearDecay(1e-3, warmup_steps=10, total_steps=110)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)
    restored = WarmupLinearDecay.from_config(schedule.get_config())
    assert float(restored(37)) == pytest.approx(float(schedule(37)))
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupLinearDecay(1e-3, warmup_steps=20, total_steps=10)


def test_weight_decay_skips_layer_norm_and_biases():
    encoder = RuBertEncoder(RuBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=16))
    optimizer = create_optimizer(learning_rate=1e-3, total_steps=10, weight_decay=0.5)
    optimizer.build(encoder.trainable_variables)
    decayed = {v.path for v in encoder.trainable_variables if optimizer._use_weight_decay(v)}
    assert any(path.endswith("kernel") for path in decayed)
    assert any(path.endswith("embeddings") for path in decayed)
    assert not any(path.endswith(("bias", "gamma", "beta")) for path in decayed)
    # And it is the real AdamW update: a decayed weight with zero gradient still shrinks.
    kernel = encoder.get_layer("pooler_dense").kernel
    bias = encoder.get_layer("pooler_dense").bias
    bias.assign(np.ones(bias.shape, "float32"))
    before_kernel, before_bias = kernel.numpy().copy(), bias.numpy().copy()
    for _ in range(3):
        optimizer.apply_gradients([(np.zeros(kernel.shape, "float32"), kernel),
                                   (np.zeros(bias.shape, "float32"), bias)])
    assert np.abs(kernel.numpy()).sum() < np.abs(before_kernel).sum()
    np.testing.assert_array_equal(bias.numpy(), before_bias)


def test_gradients_are_clipped_by_global_norm():
    variable = keras.Variable(np.zeros(4, "float32"))
    optimizer = keras.optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0)
    optimizer.apply_gradients([(np.full(4, 100.0, "float32"), variable)])
    assert np.linalg.norm(variable.numpy()) == pytest.approx(1.0, rel=1e-5)
    assert create_optimizer(total_steps=5).global_clipnorm == 1.0
