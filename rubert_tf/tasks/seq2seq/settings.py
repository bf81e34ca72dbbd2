"""What a fine-tuned seq2seq model remembers: its data columns, lengths, metric and search settings."""

import dataclasses
from typing import Optional

from rubert_tf.tasks.settings import TRAIN, TaskSettings, setting


@dataclasses.dataclass
class Seq2SeqSettings(TaskSettings):
    task = "seq2seq"
    legacy_config_key = "seq2seq"

    source_column: Optional[str] = setting(
        None, "table column / tfds feature of the source (default: source, or X of a tfds X_to_Y config)", stage=TRAIN)
    target_column: Optional[str] = setting(None, "table column / tfds feature of the target (default: target)",
                                           stage=TRAIN)
    source_lang: Optional[str] = setting(None, "with a prefix PATH: read PATH.SOURCE_LANG ...", stage=TRAIN)
    target_lang: Optional[str] = setting(None, "... and PATH.TARGET_LANG (fairseq style)", stage=TRAIN)
    decoder: Optional[str] = setting(None, "warm-start the decoder from this checkpoint (default: --model)",
                                     stage=TRAIN)
    metric: str = setting("bleu", "bleu: sacreBLEU BLEU + chrF (translation); rouge: ROUGE-1/2/L (summaries)",
                          choices=("bleu", "rouge"), stage=TRAIN)
    label_smoothing: float = setting(0.0, "label smoothing of the loss", stage=TRAIN)
    max_length: int = setting(128, "default of the source and target lengths below")
    max_source_length: Optional[int] = setting(None, "source tokens incl. [CLS]/[SEP] (default: --max-length)")
    max_target_length: Optional[int] = setting(None, "decoder tokens, [CLS] y / y [SEP] (default: --max-length)")
    num_beams: int = setting(1, "beam search width (1: greedy)")
    generation_max_length: Optional[int] = setting(
        None, "generated tokens incl. the start token (default: max-target-length + 1)")
    length_penalty: float = setting(1.0, "beam search: score / length ** this")
    no_repeat_ngram_size: int = setting(0, "forbid repeating n-grams of this size (0: off)")

    def __post_init__(self):
        super().__post_init__()
        if self.num_beams < 1:
            raise ValueError(f"seq2seq setting num_beams must be >= 1, got {self.num_beams}")

    @property
    def source_length(self):
        return self.max_source_length or self.max_length

    @property
    def target_length(self):
        return self.max_target_length or self.max_length

    @property
    def output_length(self):
        return self.generation_max_length or self.target_length + 1
