"""Sparse (embedding) gradients with each row once: what Adam-style updates and norms need."""

import tensorflow as tf


def in_xla_context():
    """True while tracing inside an XLA-compiled function (jit_compile=True)."""
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph())


def deduplicate_sparse_gradient(grad):
    """tf.IndexedSlices with each row once (duplicate rows summed); other gradients unchanged.

    Keras 3's element-wise ops work on IndexedSlices slice by slice, so a row that occurs k times in
    the batch (a repeated token in the embedding gradient) gets e.g. Adam's second moment, or its
    share of a gradient norm, from the sum of squared slices instead of the square of their sum: a
    token seen twice with equal slices moves sqrt(2) times as far as dense Adam would move it. One
    unique + segment sum restores the dense result and keeps the gradient sparse."""
    if not isinstance(grad, tf.IndexedSlices):
        return grad
    if in_xla_context():  # Unique has a data-dependent shape, not for every XLA backend; dense is exact too
        return tf.convert_to_tensor(grad)
    indices, positions = tf.unique(grad.indices)
    values = tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(indices)[0])
    return tf.IndexedSlices(values, indices, grad.dense_shape)
