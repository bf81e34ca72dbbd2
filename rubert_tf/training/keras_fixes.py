"""Every patch rubert_tf applies to Keras 3 (TensorFlow backend), in one place.

Each patch replaces a few Keras functions with wrappers around the originals, names the upstream bug
it works around, and is undone exactly by `disable()` (or by leaving its context manager). Nothing is
patched on import, by `create_optimizer` or by `create_strategy`: the code that needs a patch
switches it on around its `fit`, and the training runner (rubert_tf.training.runner) does so only
when the strategy needs it:

    with keras_fixes.fixes_for(strategy):     # nothing on one device
        model.fit(...)

OPTIMIZER_FIXES (`optimizer_fixes()`; more than one replica in sync), three bugs in Keras'
optimizers under tf.distribute, measured in tests/test_keras_fixes.py and tests/test_distributed.py:
  1. Clipping, gradient accumulation and LossScaleOptimizer's inf/nan check see each replica's
     partial gradient: Keras sums the gradients over the replicas only in
     `TFOptimizer._backend_update_step`, after `_clip_gradients` (keras-team/keras#19467 and #19969
     put the sum there). So with an active clipnorm N replicas do not train like one device, and
     one replica's overflow under fp16 passes LossScaleOptimizer's check (it reads replica 0's
     verdict, assuming all-reduced gradients) and reaches the weights. No upstream issue found for
     Keras 3 (searched keras-team/keras issues); tf.keras 2 refused clipping under a strategy for
     this very reason: tensorflow/tensorflow#33929.
     Fix: sum over the replicas at the start of `apply`, skip Keras' later all-reduce.
  2. `gradient_accumulation_steps` under a strategy that uses `merge_call` (all but XLA on GPUs)
     fails: "`merge_call` called while defining a new graph", keras-team/keras#20582 (open).
     Fix: the same update with its `cond` in cross-replica context.
  3. Adam/AdamW on an embedding gradient (tf.IndexedSlices) with a row k times (a token repeated in
     the batch) compute the second moment from the sum of squared slices, not the square of their
     sum, moving the row up to sqrt(k) times too far. No upstream issue found (searched
     keras-team/keras issues; the slice-wise ops on IndexedSlices came with keras-team/keras#18692).
     The replica sum of fix 1 concatenates slices, so duplicates arise there even when every replica
     had none. Fix: deduplicate the slices (rubert_tf.training.AdamW does this itself, also on one
     device; this patch brings Keras' own optimizers along).

MULTI_WORKER_FIT (`multi_worker_fit()`; a MultiWorkerMirroredStrategy over two or more workers):
`fit` fails as soon as the cluster has two workers, keras-team/keras#20585 (open; also
tensorflow/tensorflow#72388). Keras' TF trainer breaks in two places:
  1. `TensorFlowTrainer._maybe_symbolic_build` reduces the first distributed batch with
     `strategy.reduce("MEAN", batch, axis=None)` only to learn its shapes; across workers that is a
     collective on a nest of PerReplica values, which fails ("Attempt to convert a value
     ({'token_ids': PerReplica: ...}) ... to a Tensor"). Fix: build from this worker's first replica.
  2. `reduce_per_replica(..., "mean")` averages the scalar step logs with `strategy.reduce("MEAN", v,
     axis=0)`: "Invalid reduction dimension 0". Fix: axis=None, the element-wise mean over the
     replicas that MirroredStrategy gives on one machine.
Everything else (other strategies and reductions, TPU) goes to the original Keras code untouched.

Version guard: the patches are written against and tested on Keras TESTED_KERAS (requirements.txt
pins it). On another version a patch logs a warning and is still applied: the bugs are open
upstream, so without the patch training is certainly wrong (or fails), while each patch checks that
the Keras functions it wraps exist and refuses with a RuntimeError naming them when they do not.
Run tests/test_keras_fixes.py on the new version: every patch has a canary there that shows the bug
with the patch off; when upstream fixes a bug its canary fails, and the patch is to be dropped.
"""

import contextlib
import functools
import importlib
import logging

import keras
import tensorflow as tf

from rubert_tf.training.sparse_gradients import deduplicate_sparse_gradient

logger = logging.getLogger(__name__)

TESTED_KERAS = "3.15"  # major.minor the patches were written against and are tested on


def keras_version_is_tested(version=None):
    version = keras.__version__ if version is None else version
    return version == TESTED_KERAS or version.startswith(TESTED_KERAS + ".")


class KerasPatch:
    """Replace functions of Keras modules/classes by wrappers of the originals; undo it exactly.

    `targets`: (module path, class name or None, attribute, make_wrapper(original) -> replacement)."""

    def __init__(self, name, issue, targets):
        self.name, self.issue, self.targets = name, issue, targets
        self._originals = {}  # (owner, attribute) -> original, while active
        self._warned = False

    @property
    def active(self):
        return bool(self._originals)

    @staticmethod
    def _owner(module, cls):
        owner = importlib.import_module(module)
        return getattr(owner, cls) if cls else owner

    def original(self, module, cls, attribute):
        """The Keras function this patch replaced (while active)."""
        return self._originals[(self._owner(module, cls), attribute)]

    def enable(self):
        """Apply the patch; returns True if this call applied it, False if it was already on."""
        if self._originals:
            return False
        if not keras_version_is_tested() and not self._warned:
            self._warned = True
            logger.warning("rubert_tf patch %r (%s) was tested on Keras %s.x, this is Keras %s; applying it "
                           "anyway. Run tests/test_keras_fixes.py: a failing canary means upstream changed and "
                           "the patch is to be revised or dropped", self.name, self.issue, TESTED_KERAS,
                           keras.__version__)
        found = []
        for module, cls, attribute, make_wrapper in self.targets:
            owner = self._owner(module, cls)
            if attribute not in vars(owner):
                raise RuntimeError(f"{module}{'.' + cls if cls else ''}.{attribute} is missing in Keras "
                                   f"{keras.__version__}: rubert_tf patch {self.name!r} ({self.issue}) was written "
                                   f"for Keras {TESTED_KERAS}; check whether upstream fixed the bug")
            found.append((owner, attribute, make_wrapper))
        for owner, attribute, make_wrapper in found:
            original = vars(owner)[attribute]
            self._originals[(owner, attribute)] = original
            setattr(owner, attribute, make_wrapper(original))
        logger.debug("rubert_tf patch %r on (%s)", self.name, self.issue)
        return True

    def disable(self):
        """Restore Keras exactly (no-op when the patch is not active)."""
        for (owner, attribute), original in self._originals.items():
            setattr(owner, attribute, original)
        self._originals.clear()

    @contextlib.contextmanager
    def applied(self):
        """The patch is active inside the block and left as it was found after it."""
        applied = self.enable()
        try:
            yield self
        finally:
            if applied:
                self.disable()


# --- OPTIMIZER_FIXES: optimizers under tf.distribute (see the module docstring) --------------------

_REDUCED = set()  # ids of optimizers whose gradients in the current apply() are already summed


def _sum_over_replicas(context, grads):
    present = [i for i, g in enumerate(grads) if g is not None]
    if not present:
        return list(grads)
    reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
    out = list(grads)
    for i, g in zip(present, reduced):
        out[i] = g
    return out


def _sum_then_apply(original):
    """BaseOptimizer.apply / LossScaleOptimizer.apply: bugs 1 and 3 of OPTIMIZER_FIXES (Keras sums the
    replicas' gradients after clipping and the inf/nan check; no upstream issue, cf.
    tensorflow/tensorflow#33929; repeated sparse rows, no upstream issue)."""

    @functools.wraps(original)
    def apply(self, grads, trainable_variables=None):
        if id(self) in _REDUCED:  # the inner optimizer of a LossScaleOptimizer already handled
            return original(self, grads, trainable_variables)
        grads = list(grads)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            grads = _sum_over_replicas(context, grads)
        grads = [deduplicate_sparse_gradient(g) for g in grads]
        marked = [id(self)]
        inner = getattr(self, "inner_optimizer", None)  # LossScaleOptimizer -> the wrapped optimizer
        if inner is not None:
            marked.append(id(inner))
        _REDUCED.update(marked)
        try:
            return original(self, grads, trainable_variables)
        finally:
            _REDUCED.difference_update(marked)

    return apply


def _skip_second_sum(original):
    """TFOptimizer._all_reduce_sum_gradients: the gradients were summed in `apply` (bug 1)."""

    @functools.wraps(original)
    def _all_reduce_sum_gradients(self, grads_and_vars):
        if id(self) in _REDUCED:
            return list(grads_and_vars)
        return original(self, grads_and_vars)

    return _all_reduce_sum_gradients


def _accumulate_in_cross_replica_context(original):
    """BaseOptimizer._backend_apply_gradients, bug 2 of OPTIMIZER_FIXES (keras-team/keras#20582):
    Keras runs `ops.cond(is_update_step, update, accumulate)` in replica context with merge calls in
    both branches, which tf.distribute rejects. Same computation, with the cond moved to
    cross-replica context (as Keras' LossScaleOptimizer does for its finite check)."""

    @functools.wraps(original)
    def _backend_apply_gradients(self, grads, trainable_variables):
        context = tf.distribute.get_replica_context()
        if (not self.gradient_accumulation_steps or self.use_ema or context is None
                or context.num_replicas_in_sync <= 1
                or tf.__internal__.distribute.strategy_supports_no_merge_call()):
            return original(self, grads, trainable_variables)
        steps = self.gradient_accumulation_steps
        accumulators = [self._accumulated_gradients[self._get_variable_index(v)] for v in trainable_variables]

        def update(grads):  # replica context: Keras' own update branch, minus the accumulator reset
            grads = [(g + acc) / steps for g, acc in zip(grads, accumulators)]
            grads = self._clip_gradients(grads)
            self._apply_weight_decay(trainable_variables)
            self._backend_update_step(grads, trainable_variables, self.learning_rate)

        def accumulate(grads):
            self._backend_increment_gradient_accumulators(grads, accumulators)

        def in_cross_replica_context(distribution, grads):
            def update_and_reset():
                distribution.extended.call_for_each_replica(update, args=(grads,))
                for acc in accumulators:
                    acc.assign(tf.zeros(acc.shape, dtype=acc.dtype))

            def accumulate_only():
                distribution.extended.call_for_each_replica(accumulate, args=(grads,))

            tf.cond((self._iterations + 1) % steps == 0, update_and_reset, accumulate_only)

        context.merge_call(in_cross_replica_context, args=(list(grads),))

    return _backend_apply_gradients


OPTIMIZER_FIXES = KerasPatch(
    "optimizer fixes", "keras-team/keras#20582; clipping/inf-check before the replica sum and repeated sparse "
                       "rows: no upstream issue, cf. tensorflow/tensorflow#33929", [
        ("keras.src.optimizers.base_optimizer", "BaseOptimizer", "apply", _sum_then_apply),
        ("keras.src.optimizers.loss_scale_optimizer", "LossScaleOptimizer", "apply", _sum_then_apply),
        ("keras.src.backend.tensorflow.optimizer", "TFOptimizer", "_all_reduce_sum_gradients", _skip_second_sum),
        ("keras.src.optimizers.base_optimizer", "BaseOptimizer", "_backend_apply_gradients",
         _accumulate_in_cross_replica_context),
    ])


# --- MULTI_WORKER_FIT: keras-team/keras#20585 (see the module docstring) ----------------------------

def is_multi_worker(strategy):
    """True for a MultiWorkerMirroredStrategy that really spans more than one worker."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    in_multi_worker_mode = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return bool(in_multi_worker_mode()) if in_multi_worker_mode is not None else False


def _first_local_value(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _build_from_first_local_replica(original):
    """TensorFlowTrainer._maybe_symbolic_build, spot 1 of keras-team/keras#20585."""

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


def _mean_of_scalar_logs(original):
    """trainer.reduce_per_replica, spot 2 of keras-team/keras#20585 (`_make_function` looks it up in
    the module's globals at call time, so replacing the module attribute is enough)."""

    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and not isinstance(strategy, tf.distribute.TPUStrategy):
            reduction = "mean"
        if reduction != "mean" or not is_multi_worker(strategy):
            return original(values, strategy, reduction)
        from keras.src import tree

        return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)

    return reduce_per_replica


_TRAINER = "keras.src.backend.tensorflow.trainer"
MULTI_WORKER_FIT = KerasPatch("multi-worker fit", "keras-team/keras#20585", [
    (_TRAINER, "TensorFlowTrainer", "_maybe_symbolic_build", _build_from_first_local_replica),
    (_TRAINER, None, "reduce_per_replica", _mean_of_scalar_logs),
])

PATCHES = (OPTIMIZER_FIXES, MULTI_WORKER_FIT)


# --- switching them on -------------------------------------------------------------------------------

def optimizer_fixes():
    """Context manager: OPTIMIZER_FIXES active inside the block, as found after it."""
    return OPTIMIZER_FIXES.applied()


def multi_worker_fit():
    """Context manager: MULTI_WORKER_FIT active inside the block, as found after it."""
    return MULTI_WORKER_FIT.applied()


def needed_for(strategy):
    """The patches training under `strategy` needs: none on one device."""
    needed = []
    if strategy.num_replicas_in_sync > 1:
        needed.append(OPTIMIZER_FIXES)
    if is_multi_worker(strategy):
        needed.append(MULTI_WORKER_FIT)
    return needed


@contextlib.contextmanager
def fixes_for(strategy):
    """Context manager: the patches `strategy` needs (`needed_for`) active inside the block; every
    patch is left as it was found after it."""
    with contextlib.ExitStack() as stack:
        for patch in needed_for(strategy):
            stack.enter_context(patch.applied())
        yield


def active_patches():
    """Names of the patches active now."""
    return [patch.name for patch in PATCHES if patch.active]


# Function forms (idempotent; enable_* return True when that call applied the patch).
enable_optimizer_fixes = OPTIMIZER_FIXES.enable
disable_optimizer_fixes = OPTIMIZER_FIXES.disable
enable_multi_worker_fit = MULTI_WORKER_FIT.enable
disable_multi_worker_fit = MULTI_WORKER_FIT.disable


def multi_worker_fit_enabled():
    return MULTI_WORKER_FIT.active
