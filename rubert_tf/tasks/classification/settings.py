"""What a fine-tuned classifier remembers: which columns it was trained on, whether it takes text
pairs, how raw labels were named, its length and (multi-label) threshold."""

import dataclasses
from typing import Optional

from rubert_tf.tasks.settings import TRAIN, TaskSettings, label_list, setting


def parse_label_map(value):
    """--label-map "-1=negative,0=neutral,1=positive" (or a dict) -> {"-1": "negative", ...}."""
    if value is None or isinstance(value, dict):
        return None if value is None else {str(k).strip(): str(v).strip() for k, v in value.items()}
    mapping = {}
    for part in str(value).split(","):
        if not part.strip():
            continue
        raw, sep, name = part.partition("=")
        if not sep or not raw.strip() or not name.strip():
            raise ValueError(f"label map: expected RAW=NAME pairs separated by commas, got {part!r} in {value!r}")
        if raw.strip() in mapping:
            raise ValueError(f"label map: raw label {raw.strip()!r} is named twice in {value!r}")
        mapping[raw.strip()] = name.strip()
    if not mapping:
        raise ValueError(f"label map: no RAW=NAME pairs in {value!r}")
    return mapping


@dataclasses.dataclass
class ClassificationSettings(TaskSettings):
    task = "classification"

    text_column: str = setting("text", "column of the text", stage=TRAIN)
    text_pair_column: Optional[str] = setting(
        None, "column of the second text (e.g. RuSentNE's entity); the model then takes text pairs", stage=TRAIN)
    label_column: str = setting("label", "column of the label", stage=TRAIN)
    labels: Optional[list] = setting(
        None, "label names in id order, comma-separated (default: the training data's, sorted; numbers by value)",
        parse=label_list, stage=TRAIN, metavar="A,B,...")
    label_map: Optional[dict] = setting(
        None, "names for the raw labels of the data, RAW=NAME pairs, e.g. -1=negative,0=neutral,1=positive "
              "(the model's labels are then the names, in this order unless --labels says otherwise)",
        parse=parse_label_map, stage=TRAIN, metavar="RAW=NAME,...")
    multi_label: bool = setting(
        False, "several labels per text (sigmoid outputs); the label column holds a JSON list or names "
               "separated by --label-delimiter", stage=TRAIN)
    label_delimiter: str = setting(",", "separator of labels in one multi-label cell", stage=TRAIN)
    text_pair: bool = setting(
        False, "the model takes text pairs (text, text_pair); set at fine-tuning when --text-pair-column is given")
    threshold: float = setting(0.5, "multi-label: a label is predicted when its probability is >= this")
    max_length: int = setting(128, "tokens per example ([CLS] text [SEP] (pair [SEP]), longer ones are cut)")

    def __post_init__(self):
        super().__post_init__()
        self.labels = label_list(self.labels)
        self.label_map = parse_label_map(self.label_map)
        if self.text_pair_column is not None:
            self.text_pair = True
        if self.max_length < 3:
            raise ValueError(f"classification setting max_length must be >= 3, got {self.max_length}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"classification setting threshold must be in [0, 1], got {self.threshold}")
        if self.labels and self.label_map:
            unknown = sorted(set(self.label_map.values()) - set(self.labels))
            if unknown:
                raise ValueError(f"label map names {unknown} are not among labels {self.labels}")

    @classmethod
    def check_override(cls, name, stored, value):
        if name == "text_pair" and bool(stored) != bool(value):
            if stored:
                raise ValueError("this model was fine-tuned on text pairs (text, text_pair): give both texts "
                                 "(predict: {\"text\": ..., \"text_pair\": ...}; export: its signature takes "
                                 "text and text_pair, drop --no-text-pair)")
            raise ValueError("this model was fine-tuned on single texts: it takes no text_pair (drop the pair "
                             "or --text-pair)")
        if name == "multi_label" and bool(stored) != bool(value):
            raise ValueError(f"this model was fine-tuned with multi_label={bool(stored)}; it cannot be used "
                             f"with multi_label={bool(value)}")
