"""TimeLimit: stop `fit` once a wall-clock budget is spent (a fixed-budget pretraining)."""

import logging
import time

import keras

logger = logging.getLogger(__name__)


class TimeLimit(keras.callbacks.Callback):
    """Sets `model.stop_training` after the first trained batch that ends past `seconds` from the start of
    training; Keras then ends fit after that batch, and the run saves as after a full run.

    `stopped_at_step` is the number of batches this fit trained when it stopped (None when the budget was
    not reached). With `progress` (the backup callback's TrainingProgress), batches that a resumed run only
    skips over are not counted. `clock` is injectable so tests need not race a real clock."""

    def __init__(self, seconds, progress=None, clock=time.monotonic):
        super().__init__()
        if not seconds > 0:
            raise ValueError(f"the time limit must be positive, got {seconds} seconds")
        self.seconds = float(seconds)
        self.progress = progress
        self.clock = clock
        self.stopped_at_step = None
        self._started = self._batches = None

    def on_train_begin(self, logs=None):
        self._started, self._batches, self.stopped_at_step = self.clock(), 0, None

    def on_train_batch_end(self, batch, logs=None):
        if self.progress is not None and self.progress.skipped_batch:
            return  # a resumed run stepping over batches it trained before: no work, no budget
        self._batches += 1
        if self.stopped_at_step is None and self.clock() - self._started >= self.seconds:
            self.stopped_at_step = self._batches
            self.model.stop_training = True
            logger.warning("time limit of %.1f minutes reached after %d steps: stopping training",
                           self.seconds / 60, self._batches)
