"""The contract every fine-tuning task fulfils, so one runner (`rubert_tf.finetune`) and one CLI
serve classification, NER, QA and sentence embeddings alike."""


class Task:
    """One fine-tuning task. Subclasses set `name` and `model_class` and implement the methods.

    `options` is a plain dict of the task's own settings (column names, label list, stride, ...);
    `add_arguments` declares them for the command line with the same names.
    """

    name = None
    model_class = None
    # Tasks whose settings travel with the model: the known options with their defaults, and the
    # config.json key they are stored under (see `configure` and `resolve_settings`).
    defaults = {}
    config_key = None

    def configure(self, options):
        """Keep the options that are set; unknown names are an error that lists the known ones."""
        self.options = {key: value for key, value in dict(options or {}).items() if value is not None}
        unknown = sorted(set(self.options) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown option(s) for task {self.name!r}: {unknown}; known: {sorted(self.defaults)}")
        return self

    def resolve_settings(self, model=None):
        """Options, else the model's stored settings (config.json under `config_key`), else the defaults."""
        stored = {}
        if model is not None and getattr(model, "config", None) is not None:
            stored = model.config.extra.get(self.config_key) or {}
        return {key: self.options.get(key, stored.get(key, default)) for key, default in self.defaults.items()}

    @staticmethod
    def add_arguments(parser):
        """Task-specific command-line flags (argparse); their dest names are the option keys."""

    def read(self, path, options):
        """Examples from a file (or `tfds:NAME`); errors name the file and line."""
        raise NotImplementedError

    def model_kwargs(self, examples, options):
        """Constructor arguments of `model_class` beyond the config (e.g. labels seen in training data)."""
        return {}

    def dataset(self, model, tokenizer, examples, batch_size, max_length, shuffle=False, seed=None):
        """tf.data.Dataset of (features, labels) batches for `model.fit` / `model.evaluate`."""
        raise NotImplementedError

    def loss(self, model):
        return model.default_loss()

    def evaluate(self, model, examples, max_length, batch_size):
        """The field's metrics as a flat dict of floats (e.g. accuracy, macro_f1)."""
        raise NotImplementedError

    def predict(self, model, inputs, max_length, batch_size):
        """Raw inputs (strings, or dicts for pairs/questions) -> JSON-serialisable results."""
        raise NotImplementedError
