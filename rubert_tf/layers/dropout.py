"""Dropout that draws half the random numbers Keras' does (TensorFlow backend).

Keras' Dropout on TF draws one float32 uniform per element (a Philox stream of 32-bit words) and
compares it with the rate. In a BERT training step the attention-probability dropout alone is
B x heads x T x T elements per layer, and drawing them was ~12% of a rubert-tiny2 step (profile in
BENCHMARKS.md). Here each 32-bit random word gives two 16-bit draws: an element is dropped when its
draw is below round(rate * 65536), i.e. with probability rate to within 2^-17 (0.1 -> 0.100006).
Same expectation (kept values scaled by 1 / (1 - rate)), same seeding (the layer's SeedGenerator), so
runs stay reproducible. Other backends, and `noise_shape`, use Keras' implementation.
"""

import keras
import tensorflow as tf


def _seed(generator):
    seed = generator.next()
    if seed.dtype != tf.int32:  # as Keras' TF backend: stateless ops take int32 seeds (XLA)
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    return seed


def dropout_16bit(inputs, rate, seed):
    """inputs with each element zeroed with probability ~rate (16-bit draws), the rest / (1 - rate)."""
    size = tf.size(inputs)
    words = tf.random.stateless_uniform([(size + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32)
    draws = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
    threshold = tf.constant(min(65535, int(round(rate * 65536))), tf.uint16)
    keep = tf.reshape(draws >= threshold, tf.shape(inputs))
    scale = tf.cast(1.0 / (1.0 - rate), inputs.dtype)
    return tf.where(keep, inputs * scale, tf.zeros_like(inputs))


@keras.saving.register_keras_serializable(package="rubert_tf")
class Dropout(keras.layers.Dropout):
    """keras.layers.Dropout with the cheaper random draws above (same arguments and weights).

    Example:

    >>> import numpy as np
    >>> from rubert_tf.layers import Dropout
    >>> layer = Dropout(0.5, seed=1)
    >>> sorted(set(layer(np.ones((1, 1000), "float32"), training=True).numpy().ravel().tolist()))
    [0.0, 2.0]
    >>> layer(np.ones((1, 3), "float32"), training=False).numpy().tolist()  # inference: unchanged
    [[1.0, 1.0, 1.0]]
    """

    def call(self, inputs, training=False):
        if (not training or self.rate <= 0 or self.rate >= 1 or self.noise_shape is not None
                or keras.backend.backend() != "tensorflow"):
            return super().call(inputs, training=training)
        return dropout_16bit(inputs, self.rate, _seed(self.seed_generator))
