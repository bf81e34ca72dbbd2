"""What a fine-tuned question answerer remembers: how long contexts are cut into windows, how answers
are chosen, and whether "no answer" is an answer (SQuAD v2)."""

import dataclasses
from typing import Optional

from rubert_tf.tasks.settings import CONFIG_KEY, TaskSettings, setting

# Where models fine-tuned before the task units stored their QA settings (config.json "extra").
LEGACY_CONFIG_KEY = "question_answering"
MAX_QUESTION_LENGTH = 64  # tokens; the value of HF's legacy SQuAD scripts (max_query_length)


@dataclasses.dataclass
class QuestionAnsweringSettings(TaskSettings):
    task = "qa"

    max_length: int = setting(384, "tokens per window: [CLS] question [SEP] context piece [SEP]")
    stride: Optional[int] = setting(
        None, "tokens shared by neighbouring windows of a long context (default: min(128, max_length // 2))")
    max_windows: int = setting(
        16, "windows per question at most, a bound on the work of one question: a longer context is searched "
            "for the answer only in its first windows (with the defaults about 3,000-4,000 tokens), the rest "
            "is not; predict and the served model then say `truncated`")
    max_question_length: int = setting(MAX_QUESTION_LENGTH, "question tokens kept (longer questions keep their first)")
    max_answer_length: int = setting(30, "answer tokens at most")
    version_2_with_negative: bool = setting(
        False, "SQuAD v2: questions may have no answer; answer '' when the [CLS] (null) score wins",
        aliases=("--allow-no-answer",))
    no_answer_threshold: float = setting(
        0.0, "SQuAD v2: answer '' when null_score - best_span_score > this")

    def __post_init__(self):
        super().__post_init__()
        for name in ("max_windows", "max_question_length", "max_answer_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"qa setting {name} must be >= 1, got {getattr(self, name)}")
        if self.stride is not None and self.stride < 0:
            raise ValueError(f"qa setting stride must be >= 0, got {self.stride}")
        if self.question_cap < 1:
            raise ValueError(f"qa settings max_length={self.max_length} and stride={self.window_stride} leave no "
                             "room for a question and a context piece longer than the stride ([CLS] question "
                             "[SEP] context [SEP]); use a larger max_length or a smaller stride")

    @property
    def window_stride(self):
        """The stride in tokens, None resolved as transformers' QA pipeline does."""
        return min(128, self.max_length // 2) if self.stride is None else self.stride

    @property
    def question_cap(self):
        """Question tokens kept: at most max_question_length, and few enough that each context piece is
        longer than the stride (so the windows move on)."""
        return min(self.max_question_length, self.max_length - 3 - (self.window_stride + 1))

    @classmethod
    def stored(cls, model):
        """The stored settings; for models fine-tuned before the task units, the older
        config.extra["question_answering"] (same names, no max_length)."""
        extra = getattr(getattr(model, "config", None), "extra", None) or {}
        if CONFIG_KEY not in extra and isinstance(extra.get(LEGACY_CONFIG_KEY), dict):
            return {key: value for key, value in extra[LEGACY_CONFIG_KEY].items() if key in cls.names()}
        return super().stored(model)
