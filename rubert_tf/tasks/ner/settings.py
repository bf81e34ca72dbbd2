"""What a fine-tuned NER model remembers: its tag names, how its files were read, its length."""

import dataclasses
from typing import Optional

from rubert_tf.tasks.ner.tags import check_labels
from rubert_tf.tasks.settings import INFERENCE, TRAIN, TaskSettings, label_list, setting

TAG_SCHEMES = ("auto", "iob2", "iob1", "iobes", "bare")  # as rubert_tf.data.readers.read_conll takes them


@dataclasses.dataclass
class NerSettings(TaskSettings):
    task = "ner"

    labels: Optional[list] = setting(
        None, "tag names in id order, comma-separated (default: the training data's tags: O, then per entity "
              "type, sorted, its B-, I-, E-, S- tags or the bare type, as far as the data has them)",
        parse=label_list, stage=TRAIN, metavar="O,B-PER,...")
    tag_scheme: str = setting(
        "auto", "tag scheme of the CoNLL files, checked line by line: iob2 (BIO), iob1, iobes (BIOES), bare "
                "(types without prefixes), or auto (iobes when E-/S- tags occur, bare without prefixes, else "
                "iob2); every scheme decodes to entities as seqeval does",
        choices=TAG_SCHEMES, stage=TRAIN)
    repair_bio: bool = setting(
        False, "read a tag that breaks the scheme (IOB2: I-X after O) as the tag it stands for (B-X) instead of "
               "failing with the file and line", stage=TRAIN)
    max_length: int = setting(128, "sub-tokens per sentence, [CLS] and [SEP] included; words past it are cut "
                                   "(CoNLL words: tagged O)", stage=INFERENCE)

    def __post_init__(self):
        super().__post_init__()
        self.labels = label_list(self.labels)
        if self.labels is not None:
            check_labels(self.labels)
        if self.max_length < 3:
            raise ValueError(f"ner setting max_length must be >= 3, got {self.max_length}")
