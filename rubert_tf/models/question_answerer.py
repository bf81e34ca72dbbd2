"""RuBertQuestionAnswerer: BertForQuestionAnswering in Keras (SQuAD v1.1 / v2 extractive QA)."""

import keras

from rubert_tf.models.encoder import RuBertEncoder, as_config, encoder_inputs
from rubert_tf.models.task import TaskModel


@keras.saving.register_keras_serializable(package="rubert_tf")
class SplitStartEnd(keras.layers.Layer):
    """[B, T, 2] -> start and end logits [B, T] each."""

    def call(self, inputs):
        return inputs[..., 0], inputs[..., 1]

    def compute_output_shape(self, input_shape):
        return input_shape[:-1], input_shape[:-1]

    def get_config(self):
        # Written out: Keras' automatic config cannot serialise a DTypePolicy object given as `dtype`.
        return super().get_config()


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertQuestionAnswerer(TaskModel):
    """Sequence output -> `qa_outputs` dense (2 units) -> `start_logits`, `end_logits` [B, T] (float32).

    Inputs are [CLS] question [SEP] context [SEP]; position 0 ([CLS]) stands for "no answer" (SQuAD v2).
    `answer(questions, contexts)` handles raw strings, long contexts (windows with a stride) and
    returns the answer text exactly as it stands in the context.

    Example (tiny and random; `from_pretrained(path)` loads a checkpoint):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> batch = {"token_ids": np.array([[2, 10, 11, 3, 0]]), "segment_ids": np.zeros((1, 5), "int32"),
    ...          "padding_mask": np.array([[1, 1, 1, 1, 0]])}
    >>> model = rt.RuBertQuestionAnswerer(config)
    >>> {name: tuple(value.shape) for name, value in sorted(model(batch).items())}
    {'end_logits': (1, 5), 'start_logits': (1, 5)}
    """
    task_name = "qa"  # the task unit that serves it (rubert_tf.tasks.qa)

    hf_architecture = "BertForQuestionAnswering"
    hf_electra_architecture = "ElectraForQuestionAnswering"

    def __init__(self, config, **kwargs):
        config = as_config(config)
        dtype = kwargs.pop("dtype", None)
        encoder = RuBertEncoder(config, include_pooler=False, name="encoder", dtype=dtype)
        inputs = encoder_inputs()
        sequence = encoder(inputs)["sequence_output"]
        logits = keras.layers.Dense(
            2, name="qa_outputs", dtype="float32",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range))(sequence)
        start_logits, end_logits = SplitStartEnd(name="split_start_end", dtype="float32")(logits)
        super().__init__(inputs=inputs, outputs={"start_logits": start_logits, "end_logits": end_logits}, **kwargs)
        self._finish(config, encoder, {})

    def hf_head_weights(self):
        head = self.get_layer("qa_outputs")
        return {"qa_outputs.weight": (head.kernel, True), "qa_outputs.bias": (head.bias, False)}

    @staticmethod
    def default_loss():
        return {"start_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                "end_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}

    def answer(self, questions, contexts, max_length=None, stride=None, max_answer_length=None, batch_size=16,
               allow_no_answer=None, no_answer_threshold=None, max_question_length=None, max_windows=None,
               settings=None):
        """Raw strings -> [{"answer", "start", "end", "score", "null_score", "truncated"}] (code-point offsets
        into the context; "" and None offsets, and the null score as score, when there is no answer).

        A thin forwarder: it runs the QA task unit's serving module (rubert_tf.tasks.qa.processing,
        imported here lazily since a model knows no task), the very graph `rubert_tf.export` saves, so
        served answers equal these. Long contexts are cut into strided windows (at most `max_windows`;
        `truncated` says a context needed more). Keyword arguments (those not None) and `settings` (a
        dict or rubert_tf.tasks.qa.QuestionAnsweringSettings) override what fine-tuning stored, which
        overrides the defaults; `allow_no_answer` is `version_2_with_negative`. `batch_size` questions
        run per call."""
        from rubert_tf.tasks.qa.processing import answer
        from rubert_tf.tasks.qa.settings import QuestionAnsweringSettings

        given = dict(max_length=max_length, stride=stride, max_answer_length=max_answer_length,
                     version_2_with_negative=allow_no_answer, no_answer_threshold=no_answer_threshold,
                     max_question_length=max_question_length, max_windows=max_windows)
        given = {key: value for key, value in given.items() if value is not None}
        if isinstance(settings, QuestionAnsweringSettings):
            settings = settings.replace(**given)
        else:
            settings = {**(settings or {}), **given}
        return answer(self, questions, contexts, settings, batch_size)
