"""TaskModule: the model, its tokenizer and the task's graph functions in one tf.Module.

The same object answers eager calls (`module("serving_default", text=[...])`) and is what
`rubert_tf.export` writes as a SavedModel (`serving_functions` become its signatures), so an exported
model answers exactly as the Python API does.
"""

import json
import os
import tempfile

import tensorflow as tf


def text_spec(name):
    return tf.TensorSpec([None], tf.string, name=name)


class TaskModule(tf.Module):
    """Holds the Keras model, the tokenizer and any lookup tables, so SavedModel tracks them all.
    (`signatures` is reserved by SavedModel, hence `serving_functions`.)"""

    def __init__(self, model, tokenizer, settings):
        super().__init__(name="rubert_serving")
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.serving_functions = {}

    def add_signature(self, name, fn, input_names):
        """`fn(**strings)` -> dict of batch-major tensors; inputs are rank-1 string tensors named as given."""
        # A plain function wrapped here, not a method, so the signature's inputs are exactly the names.
        self.serving_functions[name] = tf.function(fn, input_signature=[text_spec(n) for n in input_names])
        return self.serving_functions[name]

    def input_names(self, signature="serving_default"):
        return [spec.name for spec in self.serving_functions[signature].input_signature]

    def __call__(self, signature="serving_default", **inputs):
        """Run a signature on Python strings (lists) -> dict of numpy arrays."""
        function = self.serving_functions[signature]
        names = self.input_names(signature)
        missing = sorted(set(names) - set(inputs))
        unknown = sorted(set(inputs) - set(names))
        if missing or unknown:
            raise ValueError(f"signature {signature!r} takes {names}; missing {missing}, unknown {unknown}")
        outputs = function(*[tf.constant(list(inputs[name]), tf.string) for name in names])
        return {key: value.numpy() for key, value in outputs.items()}


def label_table(labels):
    """int64 id -> label name, read from an asset file (labels.txt) that travels in the SavedModel."""
    directory = tempfile.mkdtemp(prefix="rubert_labels_")
    path = os.path.join(directory, "labels.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    initializer = tf.lookup.TextFileInitializer(
        path, key_dtype=tf.int64, key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        value_dtype=tf.string, value_index=tf.lookup.TextFileIndex.WHOLE_LINE)
    return tf.lookup.StaticHashTable(initializer, default_value="")


def cached_module(model, tokenizer, settings, build, variant=None):
    """`build(model, tokenizer, settings)`, one per (model, tokenizer, settings, variant) in a process:
    the graph is traced once, not per call. `variant` tells apart modules of the same settings (NER's
    text and words modules, a seq2seq search), and must be JSON-serialisable."""
    key = (id(tokenizer), json.dumps([settings.to_dict(), variant], sort_keys=True))
    cache = model.__dict__.setdefault("_rubert_task_modules", {})
    if key not in cache:
        cache[key] = build(model, tokenizer, settings)
    return cache[key]
