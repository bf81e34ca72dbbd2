"""Fault tolerance and logging for `model.fit`: backups that survive `kill -9`, periodic checkpoints,
TensorBoard with learning rate and throughput.

    callbacks = training_callbacks("runs/sentiment", backup_every_steps=200, checkpoint_every_steps=1000,
                                   batch_size=global_batch, sequence_length=128)
    model.fit(dataset.repeat(), epochs=3, steps_per_epoch=1000, callbacks=callbacks)

Run it again after a crash (same command, same `out_dir`) and training continues from the last good
backup, mid-epoch included: weights, optimizer state and step counter, the RNG state of the dropout
layers, the epoch and the position in the data (see `resume_data`). At most one backup interval
of work is lost.

Layout of `out_dir`:
    backup/          ckpt-<global step>.weights.h5 + .json, the newest `keep_backups` (default 2);
                     RUNNING marks an unfinished run; the folder is removed when `fit` completes.
    checkpoints/     the same format every `checkpoint_every_steps`, the newest `keep`; kept.
    logs/train       TensorBoard (Keras' summaries + learning_rate, steps/examples/tokens per second).
    workers/<task>/  the same, for the non-chief workers of a multi-worker run.

A checkpoint is written atomically: the weights go to a temporary file that is fsync'ed, read back
(HDF5 structure and SHA-256 of the bytes on disk) and only then renamed into place; its .json
(step, epoch, size, SHA-256, ...) is renamed in last and is the commit mark. On resume each candidate
is checked (JSON readable, file present, size and SHA-256 equal) newest first; a corrupt or truncated
one is reported with a warning naming the file and the reason, and the previous good one is used.

Exact resume assumes a deterministic input pipeline (no shuffle, or a seeded shuffle without
per-epoch reshuffling). `resume_data` says how the position in the data is restored:
  "stream" (default): the dataset is one endless stream (`dataset.repeat()` + `steps_per_epoch`,
      as rubert_tf's fine-tuning and pretraining feed it), so the first `global_step` batches are
      skipped;
  "epoch": the dataset restarts every epoch (finite, no `steps_per_epoch`), so the batches already
      done in the resumed epoch are skipped;
  "none": nothing is skipped: the data start over (fast; not identical to an uninterrupted run).
Skipped batches are read, not trained on; the first steps of the resumed epoch appear in the
progress bar without training. `resume_state(out_dir)` tells you in advance where a run would
resume, e.g. to position the data yourself and pass resume_data="none".
"""

import glob
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
RESUME_DATA = ("stream", "epoch", "none")


# --- checkpoint files ------------------------------------------------------------------------------

class CorruptCheckpoint(Exception):
    """A checkpoint that fails its integrity check; the message says which file and why."""


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path):
    try:
        _fsync_file(path)
    except OSError:  # not every filesystem lets a directory be opened/fsync'ed
        pass


def _sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_hdf5(path):
    """Open a .weights.h5 and walk every dataset's header; raises CorruptCheckpoint on failure."""
    import h5py

    count = [0]

    def visit(_, obj):
        if isinstance(obj, h5py.Dataset):
            obj.shape, obj.dtype  # noqa: B018 - touching the header is the check
            count[0] += 1

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except Exception as error:  # h5py raises OSError/KeyError/RuntimeError for damaged files
        raise CorruptCheckpoint(f"{path}: not a readable HDF5 weights file ({error})") from error
    if not count[0]:
        raise CorruptCheckpoint(f"{path}: HDF5 file holds no weights")
    return count[0]


def _write_json_atomic(path, data):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _seed_generators(model):
    generators = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        generators.extend(getattr(layer, "_seed_generators", []) or [])
    return generators


class CheckpointStore:
    """A folder of atomically written, self-checking training states, newest `keep` kept.

    Each state is `ckpt-<step:09d>.weights.h5` (`model.save_weights`: model + optimizer variables)
    and `ckpt-<step:09d>.json` (the training position, the dropout RNG states, size and SHA-256)."""

    def __init__(self, directory, keep=None, prefix="ckpt"):
        self.directory = directory
        self.keep = keep
        self.prefix = prefix

    def _paths(self, step):
        stem = os.path.join(self.directory, f"{self.prefix}-{int(step):09d}")
        return stem + ".weights.h5", stem + ".json"

    def save(self, model, state):
        """Write `model` and the dict `state` (must hold "global_step"); returns the metadata written."""
        os.makedirs(self.directory, exist_ok=True)
        weights_path, meta_path = self._paths(state["global_step"])
        tmp = os.path.join(self.directory, f".{os.path.basename(weights_path)[:-len('.weights.h5')]}"
                                           f".tmp-{os.getpid()}.weights.h5")
        try:
            model.save_weights(tmp, overwrite=True)
            _fsync_file(tmp)
            num_arrays = _check_hdf5(tmp)      # read back what is on disk ...
            sha256 = _sha256(tmp)              # ... and fingerprint exactly those bytes
            size = os.path.getsize(tmp)
            os.replace(tmp, weights_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        meta = dict(state, format=FORMAT_VERSION, weights=os.path.basename(weights_path), size=size,
                    sha256=sha256, num_arrays=num_arrays, saved_at=time.time(),
                    seed_states=[np.asarray(g.state.numpy()).tolist() for g in _seed_generators(model)],
                    keras=keras.__version__, tensorflow=tf.__version__)
        _write_json_atomic(meta_path, meta)    # the commit mark: written last
        _fsync_dir(self.directory)
        self._rotate()
        meta["path"] = weights_path
        return meta

    def _rotate(self):
        for pattern in (f".{self.prefix}-*.tmp-*", f"{self.prefix}-*.json.tmp-*"):
            for leftover in glob.glob(os.path.join(self.directory, pattern)):
                pid = leftover.rsplit(".tmp-", 1)[1].split(".", 1)[0]
                if pid != str(os.getpid()):      # debris of a killed writer
                    _remove(leftover)
        metas = [meta_path for _, meta_path in reversed(self.candidates())]  # oldest first
        if self.keep and len(metas) > self.keep:
            for meta_path in metas[:-self.keep]:
                _remove(meta_path)                                  # uncommit first,
                _remove(meta_path[:-len(".json")] + ".weights.h5")  # then delete the data
            metas = metas[-self.keep:]
        committed = {m[:-len(".json")] for m in metas}
        for weights in glob.glob(os.path.join(self.directory, f"{self.prefix}-*.weights.h5")):
            if weights[:-len(".weights.h5")] not in committed:  # renamed in, but killed before its .json
                _remove(weights)

    def candidates(self):
        """(global step, metadata path) pairs, newest first (not yet checked)."""
        found = []
        for meta_path in glob.glob(os.path.join(self.directory, f"{self.prefix}-*.json")):
            step = os.path.basename(meta_path)[len(self.prefix) + 1:-len(".json")]
            if step.isdigit():
                found.append((int(step), meta_path))
        return sorted(found, reverse=True)

    def check(self, meta_path):
        """The metadata of a checkpoint that passes every integrity check, or raise CorruptCheckpoint."""
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as error:
            raise CorruptCheckpoint(f"{meta_path}: unreadable metadata ({error})") from error
        if not isinstance(meta, dict) or not {"global_step", "weights", "size", "sha256"} <= set(meta):
            raise CorruptCheckpoint(f"{meta_path}: metadata lacks global_step/weights/size/sha256")
        weights_path = os.path.join(os.path.dirname(meta_path), meta["weights"])
        if not os.path.isfile(weights_path):
            raise CorruptCheckpoint(f"{weights_path}: missing")
        size = os.path.getsize(weights_path)
        if size != meta["size"]:
            raise CorruptCheckpoint(f"{weights_path}: {size} bytes, {meta['size']} were written (truncated?)")
        if _sha256(weights_path) != meta["sha256"]:
            raise CorruptCheckpoint(f"{weights_path}: SHA-256 differs from the one recorded at save time")
        meta["path"] = weights_path
        meta["meta_path"] = meta_path
        return meta


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def latest_good_checkpoint(directories):
    """Newest (highest global step) checkpoint among `directories` that passes its integrity check.

    Every corrupt one met on the way is logged as a warning with the reason. Returns its metadata
    (with "path" of the weights file) or None."""
    candidates = []
    for directory in directories:
        store = CheckpointStore(directory)
        candidates.extend((step, meta_path, store) for step, meta_path in store.candidates())
    candidates.sort(key=lambda item: item[0], reverse=True)
    for step, meta_path, store in candidates:
        try:
            return store.check(meta_path)
        except CorruptCheckpoint as error:
            logger.warning("checkpoint at step %d is corrupt or incomplete and is skipped: %s; "
                           "falling back to the previous one", step, error)
    return None


def load_checkpoint(model, meta):
    """Load a checked checkpoint into `model` (building the optimizer first if needed)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)
    try:
        model.load_weights(meta["path"])
    except Exception as error:
        raise ValueError(f"{meta['path']} passed its integrity check but does not fit this model "
                         f"({type(error).__name__}: {error}); was it written by another model or optimizer "
                         "configuration?") from error
    generators = _seed_generators(model)
    states = meta.get("seed_states") or []
    if len(states) == len(generators):
        for generator, state in zip(generators, states):
            generator.state.assign(np.asarray(state, dtype=generator.state.dtype))
    elif states:
        logger.warning("%s: %d dropout RNG states saved, the model has %d; RNG state not restored",
                       meta["path"], len(states), len(generators))
    return meta


def restore_latest_good_checkpoint(model, out_dir):
    """Load the newest good checkpoint of a run directory (periodic checkpoints and backups) into
    `model`; corrupt ones are reported and skipped. Returns its metadata dict or None if none found."""
    directories = [os.path.join(out_dir, "checkpoints"), os.path.join(out_dir, "backup")]
    meta = latest_good_checkpoint(directories)
    if meta is None:
        logger.info("no usable checkpoint in %s", out_dir)
        return None
    load_checkpoint(model, meta)
    logger.info("restored %s (global step %d)", meta["path"], meta["global_step"])
    return meta


def resume_state(out_dir):
    """Where `training_callbacks(out_dir)` would resume (metadata of the checkpoint) or None."""
    backup_dir = os.path.join(out_dir, "backup")
    if not os.path.isdir(backup_dir):
        return None
    return latest_good_checkpoint([backup_dir, os.path.join(out_dir, "checkpoints")])


# --- callbacks -------------------------------------------------------------------------------------

class TrainingProgress:
    """Shared between the callbacks of one run: the global step (batches trained, restored on resume),
    the position in the epoch, and whether the current batch was a skipped (already trained) one."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.global_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.steps_per_epoch = None
        self.skipped_batch = False
        self.pending_skip_calls = 0
        self.resumed_from = None
        self.last_logs = {}
        self.raw_logs = None

    def state(self):
        if self.raw_logs is not None:
            self.last_logs, self.raw_logs = _python_logs(self.raw_logs), None
        epoch, batch = self.epoch, self.batch_in_epoch
        if self.steps_per_epoch and batch >= self.steps_per_epoch:
            epoch, batch = epoch + 1, 0
        return {"global_step": int(self.global_step), "epoch": int(epoch), "batch_in_epoch": int(batch),
                "steps_per_epoch": self.steps_per_epoch, "logs": dict(self.last_logs)}


def _python_logs(logs):
    out = {}
    for name, value in (logs or {}).items():
        try:
            out[name] = float(np.asarray(value))
        except (TypeError, ValueError):
            pass
    return out


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore made safe against `kill -9` and able to resume mid-epoch.

    Differences from keras.callbacks.BackupAndRestore (3.15), whose in-place `save_weights` can leave
    a truncated file behind and which restarts an interrupted epoch from its first batch: atomic,
    verified backups (CheckpointStore), the newest good backup (or periodic checkpoint) is used and
    corrupt ones are reported, and the run continues at the exact step (see the module docstring).
    Put it first in the callback list (`training_callbacks` does)."""

    def __init__(self, out_dir, backup_every_steps=100, keep_backups=2, resume=True, resume_data="stream",
                 delete_on_success=True, progress=None):
        super().__init__(os.path.join(out_dir, "backup"), save_freq=int(backup_every_steps or 1),
                         delete_checkpoint=delete_on_success)
        if resume_data not in RESUME_DATA:
            raise ValueError(f"resume_data must be one of {RESUME_DATA}, got {resume_data!r}")
        self.out_dir = out_dir
        self.every_steps = int(backup_every_steps) if backup_every_steps else None  # None: every epoch
        self.store = CheckpointStore(self.backup_dir, keep=keep_backups)
        self.checkpoint_dir = os.path.join(out_dir, "checkpoints")
        self.resume = resume
        self.resume_data = resume_data
        self.progress = progress or TrainingProgress()
        self._marker = os.path.join(self.backup_dir, "RUNNING")
        self._original_train_function = None
        self._skip_batches = 0

    # restore
    def on_train_begin(self, logs=None):
        progress = self.progress
        progress.reset()
        progress.steps_per_epoch = self.params.get("steps") if self.params else None
        meta = None
        # An unfinished run leaves its RUNNING mark (and, unless delete_on_success=False, its backups).
        unfinished = os.path.exists(self._marker) or (self.delete_checkpoint and bool(self.store.candidates()))
        if unfinished and self.resume:
            meta = latest_good_checkpoint([self.backup_dir, self.checkpoint_dir])
            if meta is None:
                logger.warning("%s: the unfinished run there left no usable backup or checkpoint; starting "
                               "from scratch", self.backup_dir)
        elif unfinished and (self.store.candidates() or CheckpointStore(self.checkpoint_dir).candidates()):
            raise FileExistsError(
                f"{self.backup_dir} holds the state of an interrupted run: resume it (resume=True, the default) "
                "or delete that folder to start over")
        if meta is None and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir, ignore_errors=True)  # backups of a finished or abandoned run
        os.makedirs(self.backup_dir, exist_ok=True)
        _write_json_atomic(self._marker, {"started_at": time.time(), "pid": os.getpid()})
        if meta is not None:
            self._resume_from(meta)

    def _resume_from(self, meta):
        progress = self.progress
        load_checkpoint(self.model, meta)
        steps_per_epoch = progress.steps_per_epoch
        step, epoch, batch = int(meta["global_step"]), int(meta["epoch"]), int(meta["batch_in_epoch"])
        saved_steps = meta.get("steps_per_epoch")
        if steps_per_epoch and saved_steps and saved_steps != steps_per_epoch:
            logger.warning("steps_per_epoch was %s when the backup was written and is %s now: resuming at "
                           "global step %d", saved_steps, steps_per_epoch, step)
            epoch, batch = divmod(step, steps_per_epoch)
        progress.global_step, progress.epoch, progress.batch_in_epoch = step, epoch, batch
        progress.last_logs = dict(meta.get("logs") or {})
        progress.resumed_from = meta
        self.model._initial_epoch = epoch  # read by fit() right after on_train_begin, as Keras' own callback does
        per_call = max(1, int(getattr(self.model, "steps_per_execution", 1) or 1))
        progress.pending_skip_calls = batch // per_call
        self._skip_batches = {"stream": step, "epoch": batch, "none": 0}[self.resume_data]
        self._wrap_train_function(per_call)
        optimizer = self.model.optimizer
        iterations = int(np.asarray(optimizer.iterations.numpy() if hasattr(optimizer.iterations, "numpy")
                                    else optimizer.iterations))
        logger.warning("resuming from %s: epoch %d, batch %d of the epoch, global step %d, optimizer "
                       "iterations %d (%d input batches skipped)", meta["path"], epoch, batch, step, iterations,
                       self._skip_batches)

    def _wrap_train_function(self, per_call):
        original = self.model.train_function
        self._original_train_function = original
        callback = self

        def train_function(iterator):
            progress = callback.progress
            if progress.pending_skip_calls > 0:
                count = max(0, callback._skip_batches - (progress.pending_skip_calls - 1) * per_call)
                _skip_input(iterator, count)
                callback._skip_batches -= count
                progress.pending_skip_calls -= 1
                progress.skipped_batch = True
                return dict(progress.last_logs)
            if callback._skip_batches > 0:
                _skip_input(iterator, callback._skip_batches)
                callback._skip_batches = 0
            callback.progress.skipped_batch = False
            return original(iterator)

        self.model.train_function = train_function

    # progress + backups
    def on_epoch_begin(self, epoch, logs=None):
        self.progress.epoch = epoch
        self.progress.batch_in_epoch = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin = batch

    def on_train_batch_end(self, batch, logs=None):
        progress = self.progress
        progress.batch_in_epoch = batch + 1
        if progress.skipped_batch:
            return
        before = progress.global_step
        progress.global_step += batch - getattr(self, "_batch_begin", batch) + 1
        progress.raw_logs = logs  # converted to floats only when saved: no device sync on every step
        if self.every_steps and progress.global_step // self.every_steps > before // self.every_steps:
            self._save_model()

    def on_epoch_end(self, epoch, logs=None):
        self.progress.epoch, self.progress.batch_in_epoch = epoch + 1, 0
        if self.every_steps is None:
            self._save_model()

    def _save_model(self):
        state = self.progress.state()
        try:
            meta = self.store.save(self.model, state)
        except Exception as error:  # a failed backup must not kill a long run; the previous one stays valid
            logger.error("backup at global step %d failed and was discarded: %s: %s", state["global_step"],
                         type(error).__name__, error)
            return
        logger.info("backup %s (global step %d)", meta["path"], state["global_step"])

    def on_train_end(self, logs=None):
        if self._original_train_function is not None:
            self.model.train_function = self._original_train_function
            self._original_train_function = None
        self.model._initial_epoch = None
        if self.delete_checkpoint:
            shutil.rmtree(self.backup_dir, ignore_errors=True)
        else:
            _remove(self._marker)


def _skip_input(iterator, count):
    """Read and drop `count` batches (the ones trained on before the interruption)."""
    get_next = getattr(iterator, "get_next", None)
    for _ in range(int(count)):
        if get_next is not None:
            get_next()
        else:
            next(iterator)


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Atomic, verified checkpoints every `every_steps` global steps into `out_dir/checkpoints`, the
    newest `keep` kept (and one at the end of training). Uses the step counter of the run's
    BackupAndRestore (`progress`), so numbering continues across restarts."""

    def __init__(self, out_dir, every_steps=1000, keep=3, progress=None, save_at_end=True):
        super().__init__()
        self.directory = os.path.join(out_dir, "checkpoints")
        self.store = CheckpointStore(self.directory, keep=keep)
        self.every_steps = int(every_steps) if every_steps else None
        self.progress = progress
        self.save_at_end = save_at_end
        self._own_progress = progress is None

    def on_train_begin(self, logs=None):
        if self._own_progress:
            self.progress = TrainingProgress()
            self.progress.steps_per_epoch = self.params.get("steps") if self.params else None
        if self.progress.resumed_from is None and self.store.candidates():
            aside = f"{self.directory}.{time.strftime('%Y%m%d-%H%M%S')}"
            os.replace(self.directory, aside)
            logger.warning("fresh run: moved the checkpoints of an earlier run from %s to %s", self.directory, aside)

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin = batch

    def on_train_batch_end(self, batch, logs=None):
        progress = self.progress
        if self._own_progress:
            progress.batch_in_epoch = batch + 1
            progress.global_step += batch - getattr(self, "_batch_begin", batch) + 1
            progress.raw_logs = logs
        elif progress.skipped_batch:
            return
        if not self.every_steps:
            return
        step = progress.global_step
        done = step - (batch - getattr(self, "_batch_begin", batch) + 1)
        if step // self.every_steps > done // self.every_steps:
            self._save()

    def on_epoch_begin(self, epoch, logs=None):
        if self._own_progress:
            self.progress.epoch, self.progress.batch_in_epoch = epoch, 0

    def on_train_end(self, logs=None):
        if self.save_at_end and self.progress.global_step and not os.path.exists(
                self.store._paths(self.progress.global_step)[1]):
            self._save()

    def _save(self):
        state = self.progress.state()
        try:
            meta = self.store.save(self.model, state)
        except Exception as error:
            logger.error("checkpoint at global step %d failed and was discarded: %s: %s", state["global_step"],
                         type(error).__name__, error)
            return
        logger.info("checkpoint %s (global step %d)", meta["path"], state["global_step"])


class _ScalarSummaries:
    """tf.summary, with `scalar` written by TF core alone when the `tensorboard` package (which
    implements tf.summary.scalar) is not installed: the same event record (a float32 tensor with
    the "scalars" plugin metadata) that TensorBoard's own scalar summary writes."""

    def __getattr__(self, name):
        return getattr(tf.summary, name)

    @staticmethod
    def scalar(name, data, step=None, description=None):
        from tensorflow.compat.v1 import SummaryMetadata

        metadata = SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        if description:
            metadata.summary_description = description
        with tf.summary.experimental.summary_scope(name, "scalar_summary", values=[data, step]) as (tag, _):
            return tf.summary.write(tag=tag, tensor=tf.cast(data, tf.float32), step=step, metadata=metadata)


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, plus every `update_freq` steps: learning_rate, steps_per_second,
    examples_per_second (with `batch_size`, the global batch) and tokens_per_second (with
    `sequence_length`: padded positions count). Steps are global steps, continuing across restarts
    (Keras' callback counts from 0 in every `fit`); batches skipped on resume are not logged."""

    def __init__(self, log_dir, update_freq=50, batch_size=None, sequence_length=None, progress=None, **kwargs):
        kwargs.setdefault("write_graph", False)
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        if importlib.util.find_spec("tensorboard") is None:
            self._summary_module = _ScalarSummaries()
        self.batch_size = batch_size
        self.sequence_length = sequence_length
        self.progress = progress

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.progress is not None and self.progress.global_step:
            self._pop_writer()
            self._global_train_batch = self.progress.global_step
            self._push_writer(self._train_writer, self._global_train_batch)
        self._window = (time.perf_counter(), self._global_train_batch)

    def _skipped(self):
        return self.progress is not None and self.progress.skipped_batch

    def on_epoch_end(self, epoch, logs=None):
        # Keras leaves the batch-level `record_if(step % update_freq == 0)` active here, which drops
        # the epoch summaries of every epoch whose last step is not a multiple of update_freq.
        with tf.summary.record_if(True):
            super().on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        if self.progress is not None and self.progress.pending_skip_calls > 0:
            return  # this call will be skipped (runs before the train function, so ask what is pending)
        super().on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self._skipped():
            self._window = (time.perf_counter(), self._global_train_batch)
            return
        super().on_train_batch_end(batch, logs)
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq:
            return
        now, step = time.perf_counter(), self._global_train_batch
        start, start_step = self._window
        self._window = (now, step)
        if now <= start or step <= start_step:
            return
        rates = {"steps_per_second": (step - start_step) / (now - start)}
        if self.batch_size:
            rates["examples_per_second"] = rates["steps_per_second"] * self.batch_size
            if self.sequence_length:
                rates["tokens_per_second"] = rates["examples_per_second"] * self.sequence_length
        learning_rate = self._collect_learning_rate({})
        with self._train_writer.as_default():
            for name, value in {**learning_rate, **rates}.items():
                self.summary.scalar(f"batch_{name}", value, step=step)


def training_callbacks(out_dir, backup_every_steps=100, checkpoint_every_steps=None, keep=3, tensorboard=True,
                       resume=True, resume_data="stream", batch_size=None, sequence_length=None,
                       log_every_steps=50, log_dir=None, keep_backups=2, strategy=None):
    """The callbacks of a fault-tolerant run in `out_dir` (see the module docstring), in this order:
    BackupAndRestore (every `backup_every_steps` steps, None = every epoch), PeriodicCheckpoint
    (every `checkpoint_every_steps`, newest `keep` kept; None = only at the end), TensorBoard in
    `log_dir` (default `out_dir/logs`; `log_every_steps`; `batch_size` = global batch, `sequence_length`
    for tokens/s). Keras adds its progress bar itself (`verbose=1`).

    `resume=True` continues an interrupted run automatically; with False an interrupted run's backups
    make `fit` raise FileExistsError instead of being overwritten. Under a multi-worker strategy the
    non-chief workers write to `out_dir/workers/<type>-<index>` (and `log_dir/workers/...`)."""
    from rubert_tf.training.strategy import worker_info

    task_type, task_id, is_chief = worker_info(strategy)
    log_dir = log_dir or os.path.join(out_dir, "logs")
    if not is_chief:
        out_dir = os.path.join(out_dir, "workers", f"{task_type}-{task_id}")
        log_dir = os.path.join(log_dir, "workers", f"{task_type}-{task_id}")
    progress = TrainingProgress()
    callbacks = [
        BackupAndRestore(out_dir, backup_every_steps=backup_every_steps, keep_backups=keep_backups, resume=resume,
                         resume_data=resume_data, progress=progress),
        PeriodicCheckpoint(out_dir, every_steps=checkpoint_every_steps, keep=keep, progress=progress),
    ]
    if tensorboard:
        callbacks.append(TensorBoard(log_dir, update_freq=log_every_steps or "epoch",
                                     batch_size=batch_size, sequence_length=sequence_length, progress=progress))
    return callbacks
