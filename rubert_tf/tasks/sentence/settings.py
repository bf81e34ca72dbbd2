"""What a fine-tuned sentence encoder remembers: its training columns, loss and length."""

import dataclasses
from typing import Optional

from rubert_tf.tasks.settings import TRAIN, TaskSettings, setting

POOLINGS = ("mean", "cls")
DEFAULT_SCALE = 20.0  # sentence-transformers' default: cosine / 0.05


@dataclasses.dataclass
class SentenceSettings(TaskSettings):
    task = "sentence"

    text_column: str = setting("text", "column of the anchor text", stage=TRAIN)
    text_pair_column: str = setting("text_pair", "column of its positive (paraphrase, translation, answer)",
                                    stage=TRAIN)
    pooling: Optional[str] = setting(None, "mean or cls pooling (default: the checkpoint's, else mean)",
                                     choices=POOLINGS, stage=TRAIN)
    scale: float = setting(DEFAULT_SCALE, "cosine -> logit scale of the in-batch-negatives loss", stage=TRAIN)
    symmetric_loss: bool = setting(False, "also rank anchors for each positive", stage=TRAIN)
    max_length: int = setting(128, "tokens per text (longer ones are cut)")

    def __post_init__(self):
        super().__post_init__()
        if self.max_length < 2:
            raise ValueError(f"sentence setting max_length must be >= 2, got {self.max_length}")
