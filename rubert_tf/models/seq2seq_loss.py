"""Token-level cross-entropy for seq2seq training: -100 labels (padding) ignored, label smoothing.

    model.compile(optimizer=..., loss=MaskedSparseCrossEntropy(label_smoothing=0.1))

Smoothing as in HF's LabelSmoother: (1 - eps) * NLL(label) + eps * mean over the vocabulary of
-log p, i.e. cross-entropy against (1 - eps) one-hot + eps uniform. The loss is the mean over the
real (label != -100) tokens of the batch, so long and short targets weigh per token.
"""

import keras
from keras import ops

IGNORE_INDEX = -100


@keras.saving.register_keras_serializable(package="rubert_tf")
class MaskedSparseCrossEntropy(keras.losses.Loss):
    def __init__(self, label_smoothing=0.0, ignore_index=IGNORE_INDEX, name="masked_sparse_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        real = ops.not_equal(labels, self.ignore_index)
        safe = ops.where(real, labels, 0)
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, ops.expand_dims(safe, -1), axis=-1), -1)
        if self.label_smoothing:
            nll = (1.0 - self.label_smoothing) * nll - self.label_smoothing * ops.mean(log_probs, axis=-1)
        real = ops.cast(real, "float32")
        # One scalar per batch: Keras' "sum_over_batch_size" reduction then leaves it unchanged.
        return ops.sum(nll * real) / ops.maximum(ops.sum(real), 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "ignore_index": self.ignore_index}


def seq2seq_loss(label_smoothing=0.0):
    """The loss builder the task code compiles with."""
    return MaskedSparseCrossEntropy(label_smoothing=label_smoothing)
