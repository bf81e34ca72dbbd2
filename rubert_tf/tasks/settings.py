"""The settings of a task: one small dataclass per task, stored with the fine-tuned model.

Pure Python (no TensorFlow), so `rubert-tf TASK --help` can list every task's flags at once.

    @dataclasses.dataclass
    class ClassificationSettings(TaskSettings):
        task = "classification"
        text_column: str = setting("text", "column of the text")
        ...

What a field's `setting(...)` says becomes the command-line flag (`--text-column`, help, default,
choices), and the whole dataclass is written into the model's config.json under
`"task_settings"` at fine-tuning, so evaluate, predict and export read it back instead of asking
for the flags again. Resolution order: explicit overrides (flags, keyword arguments), else the stored
settings, else the defaults.
"""

import argparse
import dataclasses
import typing

CONFIG_KEY = "task_settings"

# When a flag is shown: "train" flags only where data is read for fine-tuning or scoring (finetune,
# evaluate); "inference" flags also where a model answers raw text (predict, export).
TRAIN, INFERENCE = "train", "inference"


def setting(default, help, *, choices=None, stage=INFERENCE, flag=None, aliases=(), parse=None, metavar=None):
    """A dataclass field with what the command line needs to know about it.

    parse: str -> value for the command line (e.g. "a,b,c" -> list); the Python API takes values as
    they are. aliases: more flag names (old spellings keep working)."""
    metadata = {"help": help, "choices": choices, "stage": stage, "flag": flag, "aliases": tuple(aliases),
                "parse": parse, "metavar": metavar}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def comma_list(text):
    """"a, b,c" -> ["a", "b", "c"] (a list stays a list); no names, or a name twice, is an error."""
    if text is None:
        return None
    names = [part.strip() for part in text.split(",")] if isinstance(text, str) else [str(v).strip() for v in text]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"no names in {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"a name occurs twice in {text!r}")
    return names


def label_list(value):
    """--labels: "a,b,c" or a list -> ["a", "b", "c"] (None stays None); errors say it is about labels."""
    try:
        return comma_list(value)
    except ValueError as error:
        raise ValueError(f"labels: {error}") from None


def _base_type(annotation):
    """int / float / str / bool / list / dict of a field annotation such as `typing.Optional[int]`."""
    if isinstance(annotation, str):  # `from __future__ import annotations` style
        annotation = eval(annotation, {"typing": typing, "Optional": typing.Optional})  # noqa: S307 (our own code)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
    return typing.get_origin(annotation) or annotation


@dataclasses.dataclass
class TaskSettings:
    """Base of every task's settings. Subclasses are dataclasses that set the class attribute `task`."""

    task: typing.ClassVar[str] = None
    # The config.extra key where models fine-tuned before "task_settings" existed kept their settings.
    legacy_config_key: typing.ClassVar[str] = None

    # ---- validation: subclasses check their own values (and call super)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = _base_type(field.type)
            if value is None or kind in (list, dict, typing.Any) or not isinstance(kind, type):
                continue
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, field.name, float(value))
                continue
            if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(f"{self.task} setting {field.name!r} must be {kind.__name__}, got {value!r}")
            choices = field.metadata.get("choices")
            if choices and value not in choices:
                raise ValueError(f"{self.task} setting {field.name!r} must be one of {list(choices)}, got {value!r}")

    # ---- dict / config.json

    def to_dict(self):
        return {"task": self.task, **dataclasses.asdict(self)}

    @classmethod
    def names(cls):
        return [field.name for field in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values, source="settings"):
        """From a dict (the stored one, or keyword overrides); unknown names are an error that lists the known."""
        values = {key: value for key, value in dict(values or {}).items() if key != "task"}
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown {cls.task} setting(s) {unknown} in {source}; known: {sorted(cls.names())}")
        return cls(**values)

    @classmethod
    def stored(cls, model):
        """The dict fine-tuning wrote into `model.config` for this task ({} when there is none)."""
        config = getattr(model, "config", None)
        extra = getattr(config, "extra", None) or {}
        values = extra.get(CONFIG_KEY) or (extra.get(cls.legacy_config_key) or {} if cls.legacy_config_key else {})
        if values.get("task") not in (None, cls.task):
            raise ValueError(f"this model was fine-tuned for the task {values['task']!r}, not {cls.task!r}")
        return {key: value for key, value in values.items() if key in cls.names()}

    @classmethod
    def resolve(cls, model=None, overrides=None):
        """Overrides (those not None) > the model's stored settings > the defaults, checked by `check_override`."""
        if isinstance(overrides, TaskSettings):
            overrides = dataclasses.asdict(overrides)
        overrides = {key: value for key, value in dict(overrides or {}).items() if value is not None and key != "task"}
        stored = cls.stored(model) if model is not None else {}
        unknown = sorted(set(overrides) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown {cls.task} setting(s) {unknown}; known: {sorted(cls.names())}")
        for key, value in overrides.items():
            if key in stored:
                cls.check_override(key, stored[key], value)
        return cls.from_dict({**stored, **overrides})

    @classmethod
    def check_override(cls, name, stored, value):
        """Raise when overriding stored setting `name` with `value` would make the model answer wrongly
        (a pair model asked for single texts, say). Default: every override is allowed."""

    def store(self, model):
        """Write these settings into `model.config` (saved to config.json with the model)."""
        model.config.extra[CONFIG_KEY] = self.to_dict()
        return self

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    # ---- command line

    @classmethod
    def add_arguments(cls, parser, stages=(TRAIN, INFERENCE)):
        """One flag per field of the given stages, dest = the field name, default None (= not given), the
        real default shown in the help."""
        group = parser.add_argument_group(f"{cls.task} settings (stored with the model at fine-tuning; a flag "
                                          "overrides the stored value)")
        for field in dataclasses.fields(cls):
            meta = field.metadata
            if meta.get("stage", INFERENCE) not in stages:
                continue
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            flag = meta.get("flag") or "--" + field.name.replace("_", "-")
            names = [flag, *meta.get("aliases", ())]
            help_text = meta.get("help") or ""
            if default is not None and default != [] and default != {}:
                help_text += f" (default: {default})"
            kind = _base_type(field.type)
            if kind is bool:
                group.add_argument(*names, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                   help=help_text)
                continue
            parse = meta.get("parse") or (kind if kind in (int, float) else str)
            group.add_argument(*names, dest=field.name, type=parse, default=None, choices=meta.get("choices"),
                               metavar=meta.get("metavar"), help=help_text)
        return parser

    @classmethod
    def from_arguments(cls, namespace):
        """The fields given on the command line ({name: value}), for `resolve(..., overrides=...)`."""
        values = vars(namespace) if not isinstance(namespace, dict) else namespace
        return {name: values[name] for name in cls.names() if values.get(name) is not None}
