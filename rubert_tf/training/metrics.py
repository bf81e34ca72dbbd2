"""Keras metrics over the labelled positions only (labels equal to `ignore_class` are left out), as
masked-LM training reports them: accuracy and the mean cross-entropy per predicted position."""

import keras
import tensorflow as tf

IGNORE_CLASS = -100  # HF's and rubert_tf.data's label for "not predicted here"


@keras.saving.register_keras_serializable(package="rubert_tf")
class MaskedAccuracy(keras.metrics.Metric):
    """Accuracy of argmax(logits) over the positions whose label is not `ignore_class` (-100)."""

    def __init__(self, name="accuracy", ignore_class=IGNORE_CLASS, **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int32)
        valid = tf.cast(y_true != self.ignore_class, tf.float32)
        hit = tf.cast(tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int32), y_true), tf.float32)
        self.correct.assign_add(tf.reduce_sum(hit * valid))
        self.count.assign_add(tf.reduce_sum(valid))

    def result(self):
        return tf.math.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="rubert_tf")
class MaskedCrossEntropy(MaskedAccuracy):
    """Mean cross-entropy per predicted position over everything seen (Keras' per-output loss logs are
    per-batch means, and with ignored labels not even that), for exact held-out numbers."""

    def __init__(self, name="xent", ignore_class=IGNORE_CLASS, **kwargs):
        super().__init__(name=name, ignore_class=ignore_class, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int32)
        valid = tf.cast(y_true != self.ignore_class, tf.float32)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(y_true, 0), logits=tf.cast(y_pred, tf.float32))
        self.correct.assign_add(tf.reduce_sum(xent * valid))
        self.count.assign_add(tf.reduce_sum(valid))
