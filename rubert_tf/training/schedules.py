"""Learning-rate schedules: linear warmup to a peak, then constant, linear, cosine or inverse-square-root
decay towards `min_lr_ratio * peak`. Keras LearningRateSchedules, serialisable with the optimizer.

Which one, measured (issue 13, RuSentNE macro-F1 from random init, 4 layers x 256, 840 steps, two seeds):
warmup + linear decay to zero 0.398 / 0.460, constant 0.513 / 0.533: an encoder that starts from random
weights sits on the loss plateau for the first ~300 steps, and a decaying rate is small by the time it
leaves it. From pretrained weights BERT's warmup + linear decay stays the standard. `default_schedule`
encodes that choice; `finetune(lr_schedule="auto")` asks it whether weights were loaded.
"""

import math

import keras
from keras import ops

SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt")


def default_schedule(weights_loaded):
    """The measured best decay: "linear" from pretrained weights, "constant" from random init."""
    return "linear" if weights_loaded else "constant"


@keras.saving.register_keras_serializable(package="rubert_tf")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = peak * step / warmup_steps during warmup, then by `decay`, never below floor = min_lr_ratio * peak:

    - "constant": peak;
    - "linear": from peak at the end of warmup to the floor at total_steps;
    - "cosine": floor + (peak - floor) * (1 + cos(pi * progress)) / 2, progress 0 -> 1 from warmup to total_steps;
    - "inverse_sqrt": peak * sqrt(warmup_steps / step) (as in "Attention is all you need"; with no warmup,
      sqrt(1 / step)), floored.
    Steps past total_steps keep the value at total_steps.

    >>> schedule = WarmupDecay(1e-3, total_steps=100, warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    >>> [round(float(schedule(step)), 6) for step in (0, 5, 10, 55, 100, 200)]
    [0.0, 0.0005, 0.001, 0.00055, 0.0001, 0.0001]
    """

    def __init__(self, peak_learning_rate, total_steps, warmup_steps=0, decay="linear", min_lr_ratio=0.0):
        if decay not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {decay!r}; use one of {', '.join(SCHEDULES)}")
        if int(total_steps) <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if not 0 <= int(warmup_steps) <= int(total_steps):
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
        if not 0.0 <= float(min_lr_ratio) <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        if not float(peak_learning_rate) > 0 or not math.isfinite(float(peak_learning_rate)):
            raise ValueError(f"the peak learning rate must be a positive number, got {peak_learning_rate}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step):
        step = ops.minimum(ops.cast(step, "float32"), float(self.total_steps))
        peak, floor = self.peak_learning_rate, self.peak_learning_rate * self.min_lr_ratio
        warmup = peak * step / max(self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        if self.decay == "constant":
            after = ops.full_like(step, peak)
        elif self.decay == "linear":
            after = peak - (peak - floor) * progress
        elif self.decay == "cosine":
            after = floor + (peak - floor) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:  # inverse_sqrt
            after = ops.maximum(peak * ops.sqrt(max(self.warmup_steps, 1) / ops.maximum(step, 1.0)), floor)
        return ops.where(step < self.warmup_steps, warmup, after)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "decay": self.decay, "min_lr_ratio": self.min_lr_ratio}


@keras.saving.register_keras_serializable(package="rubert_tf")
class WarmupLinearDecay(WarmupDecay):
    """BERT's schedule: linear warmup, then linear decay to 0 at total_steps (WarmupDecay(decay="linear");
    kept under its own name so optimizers saved with it load)."""

    def __init__(self, peak_learning_rate, warmup_steps, total_steps):
        super().__init__(peak_learning_rate, total_steps, warmup_steps, decay="linear")

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}
