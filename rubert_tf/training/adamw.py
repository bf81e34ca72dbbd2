"""AdamW with a fused dense update and optional sparse (lazy) updates of embedding tables.

Keras' AdamW on the TF backend updates a variable with about ten element-wise ops, each a full pass
over the variable, and turns the sparse gradient of an embedding table (tf.IndexedSlices: only the
rows of the tokens in the batch) into a dense one first. For rubert-tiny2 the 26M-entry token table
is ~90% of the optimizer's time. This optimizer computes the same AdamW:

- dense gradients: one fused `ResourceApplyAdam` kernel (the same formula as Keras' Adam: epsilon
  added to sqrt(v), bias correction folded into the step size), weight decay as Keras applies it;
- `sparse_updates=True` (opt-in): gradients that arrive as tf.IndexedSlices update only the rows
  they touch ("lazy Adam", as in TF-Addons' LazyAdam): rows of tokens absent from the batch keep
  their moments and get no decay that step. This is not exactly AdamW, so it is a flag: with a large
  vocabulary it makes a training step much cheaper (benchmarks/run_all.py, the training row).
  Gradient clipping then works on the sparse values too, never materialising the dense gradient.

Another backend or amsgrad falls back to Keras' own update. In XLA-compiled steps (no sparse
gradients there) `sparse_updates` has no effect: every variable takes the fused dense update.
"""

import keras
import tensorflow as tf

from rubert_tf.training.sparse_gradients import deduplicate_sparse_gradient


@keras.saving.register_keras_serializable(package="rubert_tf")
class AdamW(keras.optimizers.AdamW):
    """keras.optimizers.AdamW plus `sparse_updates` (see the module docstring); same arguments."""

    def __init__(self, *args, sparse_updates=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.sparse_updates = bool(sparse_updates)

    def _fast_path(self):
        return keras.backend.backend() == "tensorflow" and not self.amsgrad

    # Weight decay moves into update_step (per variable, same formula and learning rate as Keras'
    # _apply_weight_decay), so a sparse update can decay only the rows it touches.
    def _apply_weight_decay(self, variables):
        if self._fast_path():
            return None
        return super()._apply_weight_decay(variables)

    def _decay(self, variable, learning_rate, indices=None):
        if self.weight_decay is None or not self._use_weight_decay(variable):
            return
        factor = tf.cast(learning_rate, variable.dtype) * tf.cast(self.weight_decay, variable.dtype)
        if indices is None:
            variable.assign_sub(variable * factor)
        else:
            rows = tf.raw_ops.ResourceGather(resource=variable.handle, indices=indices, dtype=variable.dtype)
            tf.raw_ops.ResourceScatterSub(resource=variable.handle, indices=indices, updates=rows * factor)

    def update_step(self, gradient, variable, learning_rate):
        if not self._fast_path():
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        step = tf.cast(self.iterations + 1, dtype)
        beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, dtype), step)
        lr = tf.cast(learning_rate, dtype)
        if self.sparse_updates and isinstance(gradient, tf.IndexedSlices):
            gradient = deduplicate_sparse_gradient(gradient)  # dense inside XLA, which has no Unique
            if isinstance(gradient, tf.IndexedSlices):
                self._decay(variable, learning_rate, gradient.indices)
                self._lazy_adam(gradient, variable, m, v, lr, beta_1_power, beta_2_power)
                return
        self._decay(variable, learning_rate)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power, beta2_power=beta_2_power,
            lr=lr, beta1=tf.cast(self.beta_1, dtype), beta2=tf.cast(self.beta_2, dtype),
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(tf.convert_to_tensor(gradient), dtype),
            use_locking=False)

    def _lazy_adam(self, gradient, variable, m, v, lr, beta_1_power, beta_2_power):
        """Adam on the rows in `gradient` (unique indices) only."""
        dtype = variable.dtype
        indices, values = gradient.indices, tf.cast(gradient.values, dtype)
        m_rows = tf.raw_ops.ResourceGather(resource=m.handle, indices=indices, dtype=dtype)
        v_rows = tf.raw_ops.ResourceGather(resource=v.handle, indices=indices, dtype=dtype)
        m_rows += (values - m_rows) * (1 - self.beta_1)
        v_rows += (tf.square(values) - v_rows) * (1 - self.beta_2)
        tf.raw_ops.ResourceScatterUpdate(resource=m.handle, indices=indices, updates=m_rows)
        tf.raw_ops.ResourceScatterUpdate(resource=v.handle, indices=indices, updates=v_rows)
        alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        tf.raw_ops.ResourceScatterSub(resource=variable.handle, indices=indices,
                                      updates=m_rows * alpha / (tf.sqrt(v_rows) + self.epsilon))

    def _clip_gradients(self, grads):
        """Keras' clipping on deduplicated sparse gradients (Keras' norm of raw IndexedSlices counts a
        repeated row's slices apart, see deduplicate_sparse_gradient); with sparse_updates they stay
        sparse, norms from their values."""
        grads = [deduplicate_sparse_gradient(g) for g in grads]
        sparse = [isinstance(g, tf.IndexedSlices) for g in grads]
        if not (self.sparse_updates and any(sparse)) or not self._fast_path():
            return super()._clip_gradients(grads)

        def values(g):
            return g.values if isinstance(g, tf.IndexedSlices) else g

        def scaled(g, scale):
            if isinstance(g, tf.IndexedSlices):
                return tf.IndexedSlices(g.values * tf.cast(scale, g.values.dtype), g.indices, g.dense_shape)
            return g * tf.cast(scale, g.dtype)

        if self.clipnorm and self.clipnorm > 0:
            out = []
            for g in grads:
                if g is None:
                    out.append(g)
                    continue
                norm = tf.norm(tf.cast(values(g), tf.float32))
                out.append(scaled(g, self.clipnorm / tf.maximum(norm, self.clipnorm)))
            return out
        if self.global_clipnorm and self.global_clipnorm > 0:
            squares = [tf.reduce_sum(tf.square(tf.cast(values(g), tf.float32))) for g in grads if g is not None]
            norm = tf.sqrt(tf.add_n(squares))
            # As keras' clip_by_global_norm: a no-op below the norm, NaN scale for a non-finite norm.
            scale = self.global_clipnorm * tf.minimum(1.0 / norm, 1.0 / self.global_clipnorm) + (norm - norm)
            return [g if g is None else scaled(g, scale) for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            limit = self.clipvalue
            return [g if g is None else
                    tf.IndexedSlices(tf.clip_by_value(g.values, -limit, limit), g.indices, g.dense_shape)
                    if isinstance(g, tf.IndexedSlices) else tf.clip_by_value(g, -limit, limit) for g in grads]
        return grads

    def get_config(self):
        return {**super().get_config(), "sparse_updates": self.sparse_updates}
