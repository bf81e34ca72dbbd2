"""rubert_tf.training.AdamW: the fused dense update is Keras' AdamW; sparse_updates is lazy Adam."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rubert_tf as rt
from rubert_tf.training import AdamW, create_optimizer, keras_fixes

TINY = dict(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=32)


def _batch(seed=0, batch=8, length=12):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 60, (batch, length)).astype("int32")  # rows >= 60 of the table are never used
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}
    return x, rng.integers(0, 3, batch).astype("int32")


def _train(optimizer, steps=4, dropout=0.0):
    keras.utils.set_random_seed(0)
    config = rt.RuBertConfig(**TINY, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = rt.RuBertClassifier(config, num_labels=3)
    model.compile(optimizer=optimizer, loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    for step in range(steps):
        x, y = _batch(step)
        model.train_on_batch(x, {"logits": y})
    return model


def test_fused_update_equals_keras_adamw():
    """Same weights as keras.optimizers.AdamW after 4 steps: weight decay with exclusions, global
    clipping that is active (norm 0.05), schedule, sparse embedding gradients with repeated rows (Keras'
    AdamW under keras_fixes.optimizer_fixes, which deduplicates them: the dense AdamW result)."""
    def optimizer(cls):
        opt = cls(learning_rate=keras.optimizers.schedules.PolynomialDecay(1e-2, 4, 1e-3), weight_decay=0.1,
                  global_clipnorm=0.05, epsilon=1e-6)
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return opt

    ours = _train(optimizer(AdamW))
    with keras_fixes.optimizer_fixes():
        reference = _train(optimizer(keras.optimizers.AdamW))
    for a, b, w in zip(ours.get_weights(), reference.get_weights(), ours.weights):
        np.testing.assert_allclose(a, b, atol=2e-6, err_msg=w.path)
    moved = np.abs(ours.get_weights()[0] - _train(optimizer(AdamW), steps=0).get_weights()[0]).max()
    assert moved > 1e-3  # the comparison is not between two untrained models


def test_create_optimizer_gives_fused_adamw_and_it_round_trips():
    optimizer = create_optimizer(1e-3, total_steps=10, sparse_updates=True)
    assert isinstance(optimizer, AdamW) and optimizer.sparse_updates
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, AdamW) and restored.sparse_updates
    assert restored.global_clipnorm == 1.0 and not create_optimizer(total_steps=5).sparse_updates


def _lazy_adam_reference(table, m, v, rows, grads, step, lr, wd, b1=0.9, b2=0.999, eps=1e-7):  # Keras defaults
    table, m, v = table.copy(), m.copy(), v.copy()
    table[rows] -= table[rows] * lr * wd
    m[rows] += (grads - m[rows]) * (1 - b1)
    v[rows] += (grads ** 2 - v[rows]) * (1 - b2)
    alpha = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    table[rows] -= m[rows] * alpha / (np.sqrt(v[rows]) + eps)
    return table, m, v


def test_sparse_updates_touch_only_the_rows_in_the_batch():
    """Lazy Adam against a NumPy reference: repeated indices summed first, untouched rows keep their
    values (no decay either), touched rows get Adam + decoupled decay."""
    rng = np.random.default_rng(0)
    start = rng.normal(size=(10, 3)).astype("float32")
    table = keras.Variable(start, name="embeddings")
    optimizer = AdamW(learning_rate=0.1, weight_decay=0.5, sparse_updates=True)
    optimizer.build([table])
    m, v = np.zeros_like(start), np.zeros_like(start)
    expected = start
    for step, indices in enumerate(([1, 3, 3], [3, 7]), start=1):
        values = rng.normal(size=(len(indices), 3)).astype("float32")
        optimizer.apply_gradients([(tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([10, 3])),
                                    table)])
        unique = sorted(set(indices))
        summed = np.stack([values[[i for i, x in enumerate(indices) if x == row]].sum(0) for row in unique])
        expected, m, v = _lazy_adam_reference(expected, m, v, unique, summed, step, 0.1, 0.5)
        np.testing.assert_allclose(table.numpy(), expected, rtol=1e-5, atol=1e-6)
    untouched = [0, 2, 4, 5, 6, 8, 9]
    np.testing.assert_array_equal(table.numpy()[untouched], start[untouched])


def test_sparse_updates_clip_by_the_norm_of_the_summed_gradient():
    """Global clipping sees the same norm as for the dense gradient (duplicates summed first)."""
    dense_table = keras.Variable(np.zeros((6, 2), "float32"))
    sparse_table = keras.Variable(np.zeros((6, 2), "float32"))
    values = tf.constant([[3.0, 0.0], [3.0, 0.0], [0.0, 8.0]])
    indices = tf.constant([2, 2, 4])
    gradient = tf.IndexedSlices(values, indices, tf.constant([6, 2]))
    for table, sparse, grad in ((dense_table, False, tf.convert_to_tensor(gradient)), (sparse_table, True, gradient)):
        optimizer = AdamW(learning_rate=0.1, weight_decay=0.0, global_clipnorm=1.0, sparse_updates=sparse)
        optimizer.apply_gradients([(grad, table)])
    # (float32 rounding of the bias correction differs between the fused kernel and the row update)
    np.testing.assert_allclose(sparse_table.numpy(), dense_table.numpy(), rtol=2e-5, atol=1e-8)
    clipped = tf.convert_to_tensor(AdamW(global_clipnorm=1.0, sparse_updates=True)._clip_gradients([gradient])[0])
    assert float(tf.norm(clipped)) == pytest.approx(1.0, rel=1e-6)  # |(6, 0), (0, 8)| = 10 -> 1


def test_sparse_updates_leave_unused_embedding_rows_alone_in_a_model():
    model = _train(AdamW(learning_rate=1e-2, weight_decay=0.1, sparse_updates=True))
    fresh = _train(AdamW(learning_rate=1e-2), steps=0)
    table, initial = model.get_weights()[0], fresh.get_weights()[0]
    assert table.shape == (300, 16)
    np.testing.assert_array_equal(table[60:], initial[60:])  # tokens never in a batch
    assert np.abs(table[5:60] - initial[5:60]).max() > 1e-3
    dense = _train(AdamW(learning_rate=1e-2, weight_decay=0.1)).get_weights()[0]
    assert np.abs(dense[60:] - initial[60:]).max() > 0  # dense AdamW decays every row
