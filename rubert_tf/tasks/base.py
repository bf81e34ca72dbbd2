"""The contract every task fulfils, so one runner (`rubert_tf.finetune`), one CLI and one export serve
classification, NER, QA, sentence embeddings and seq2seq alike.

A task is one unit (a package under rubert_tf/tasks/): its settings dataclass (settings.py), the graph
functions text -> model inputs (preprocessor) and model outputs -> answers (postprocessor), the head
(a Keras model of rubert_tf.models, tensors in and out), and its metrics. `serving_module` joins them
as `post(head(pre(text)))`; the eager methods (`classify`, `extract_entities`, ...) and the exported
SavedModel both call that one function, so what is served equals what is evaluated.
"""

from rubert_tf.tasks.settings import TaskSettings


class Task:
    """One task. Subclasses set `name`, `model_class` and `settings_class`, and implement the methods."""

    name = None
    model_class = None
    settings_class = TaskSettings
    reads_file_pairs = False  # --train/--eval may name two aligned files (seq2seq)

    def settings(self, model=None, overrides=None):
        """Resolved settings: `overrides` (a dict, those not None, or a settings object) > what
        fine-tuning stored in `model`'s config > the defaults. Conflicting overrides are an error."""
        if isinstance(overrides, self.settings_class) and model is None:
            return overrides
        return self.settings_class.resolve(model, overrides)

    # ---- fine-tuning

    def read(self, path, settings=None):
        """Examples from a file (or `tfds:NAME`); errors name the file and line."""
        raise NotImplementedError

    def model_kwargs(self, examples, settings=None):
        """Constructor arguments of `model_class` beyond the config (e.g. labels seen in training data)."""
        return {}

    def dataset(self, model, tokenizer, examples, settings=None, batch_size=32, shuffle=False, seed=None):
        """tf.data.Dataset of (features, labels) batches for `model.fit` / `model.evaluate`."""
        raise NotImplementedError

    def loss(self, model, settings=None):
        return model.default_loss()

    # ---- text -> answer, the one definition

    def serving_module(self, model, tokenizer, settings=None):
        """A `rubert_tf.tasks.module.TaskModule` whose `serving_functions` are post(head(pre(text)))."""
        raise NotImplementedError

    def evaluate(self, model, examples, settings=None, batch_size=32):
        """The field's metrics as a flat dict of floats (e.g. accuracy, macro_f1), computed on the
        postprocessor's output."""
        raise NotImplementedError

    def predict(self, model, inputs, settings=None, batch_size=32):
        """Raw inputs (strings, or dicts for pairs/questions) -> JSON-serialisable results."""
        raise NotImplementedError
