"""Make `model.fit` work under MultiWorkerMirroredStrategy with two or more workers.

Upstream gap: keras-team/keras#20585 (open; also tensorflow/tensorflow#72388). With Keras 3
(checked on 3.15.1) and TF 2.21, `fit` under `tf.distribute.MultiWorkerMirroredStrategy` fails as
soon as the cluster has two workers. Keras' TF trainer
(`keras/src/backend/tensorflow/trainer.py`) breaks in two places:

1. `TensorFlowTrainer._maybe_symbolic_build` takes the first distributed batch and reduces it
   eagerly with `strategy.reduce("MEAN", batch, axis=None)` only to learn its shapes. In multi-worker
   mode that reduction is a cross-worker collective on a nest of `PerReplica` values, which fails
   ("Attempt to convert a value ({'token_ids': PerReplica: ...}) ... to a Tensor").
   Fix: build from the first local replica's batch (only shapes and dtypes matter there).
2. `reduce_per_replica(..., reduction="mean")` averages the per-step logs across workers with
   `strategy.reduce("MEAN", v, axis=0)`; the logs are scalars, which have no axis 0.
   Fix: `axis=None`, i.e. the element-wise mean over replicas, what MirroredStrategy gives on one
   machine (`tf.reduce_mean(local_results, axis=0)`).

Everything else (the other strategies, the other reductions, TPU) is passed through to the original
Keras code untouched. `enable_multi_worker_fit()` is idempotent and `create_strategy("multi_worker")`
calls it; `disable_multi_worker_fit()` restores Keras exactly (tests use it to show the failure).
When keras-team/keras#20585 is fixed upstream this module can be deleted.
"""

import contextlib
import functools
import logging

import tensorflow as tf

logger = logging.getLogger(__name__)

_ORIGINALS = {}  # name -> original Keras function, while the patch is active


def _keras_trainer_module():
    from keras.src.backend.tensorflow import trainer

    return trainer


def is_multi_worker(strategy):
    """True for a MultiWorkerMirroredStrategy that really spans more than one worker."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    extended = strategy.extended
    in_multi_worker_mode = getattr(extended, "_in_multi_worker_mode", None)
    return bool(in_multi_worker_mode()) if in_multi_worker_mode is not None else False


def _first_local_value(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _patched_maybe_symbolic_build(original):
    @functools.wraps(original)
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not is_multi_worker(strategy):
            return original(self, iterator=iterator, data_batch=data_batch)
        from keras.src import tree

        # Same as Keras: peek at the first batch (the caller resets the iterator afterwards), but
        # take this worker's first replica instead of a cross-worker collective reduction.
        for _, _, it in iterator:
            data_batch = tree.map_structure(_first_local_value, next(it))
            break
        return original(self, iterator=None, data_batch=data_batch)

    return _maybe_symbolic_build


def _patched_reduce_per_replica(original):
    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and not isinstance(strategy, tf.distribute.TPUStrategy):
            reduction = "mean"
        if reduction != "mean" or not is_multi_worker(strategy):
            return original(values, strategy, reduction)
        from keras.src import tree

        return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)

    return reduce_per_replica


def enable_multi_worker_fit():
    """Patch Keras' TF trainer so `fit`/`evaluate` work under multi-worker MirroredStrategy.

    Idempotent; returns True when the patch was applied by this call, False when it was already on.
    """
    if _ORIGINALS:
        return False
    trainer = _keras_trainer_module()
    cls = trainer.TensorFlowTrainer
    for name, owner in (("_maybe_symbolic_build", cls), ("reduce_per_replica", trainer)):
        if not hasattr(owner, name):
            raise RuntimeError(
                f"keras/src/backend/tensorflow/trainer.py has no {name!r}: this Keras version differs from the one "
                "rubert_tf.training.multi_worker was written for (3.15); check keras-team/keras#20585")
    _ORIGINALS["_maybe_symbolic_build"] = cls.__dict__["_maybe_symbolic_build"]
    _ORIGINALS["reduce_per_replica"] = trainer.reduce_per_replica
    cls._maybe_symbolic_build = _patched_maybe_symbolic_build(_ORIGINALS["_maybe_symbolic_build"])
    # `_make_function` looks `reduce_per_replica` up in the module's globals at call time.
    trainer.reduce_per_replica = _patched_reduce_per_replica(_ORIGINALS["reduce_per_replica"])
    logger.debug("multi-worker fit compatibility enabled (keras-team/keras#20585)")
    return True


def disable_multi_worker_fit():
    """Undo `enable_multi_worker_fit()` (no-op when it is not active)."""
    if not _ORIGINALS:
        return
    trainer = _keras_trainer_module()
    trainer.TensorFlowTrainer._maybe_symbolic_build = _ORIGINALS.pop("_maybe_symbolic_build")
    trainer.reduce_per_replica = _ORIGINALS.pop("reduce_per_replica")


def multi_worker_fit_enabled():
    return bool(_ORIGINALS)


@contextlib.contextmanager
def multi_worker_fit():
    """Context manager form: the patch is active inside the block (and left as it was found after)."""
    applied = enable_multi_worker_fit()
    try:
        yield
    finally:
        if applied:
            disable_multi_worker_fit()
