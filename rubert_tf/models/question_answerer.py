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


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertQuestionAnswerer(TaskModel):
    """Sequence output -> `qa_outputs` dense (2 units) -> `start_logits`, `end_logits` [B, T] (float32).

    Inputs are [CLS] question [SEP] context [SEP]; position 0 ([CLS]) stands for "no answer" (SQuAD v2).
    `answer(questions, contexts)` handles raw strings, long contexts (windows with a stride) and
    returns the answer text exactly as it stands in the context.
    """

    hf_architecture = "BertForQuestionAnswering"

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

    def answer(self, questions, contexts, max_length=384, stride=128, max_answer_length=30, batch_size=16,
               allow_no_answer=False, no_answer_threshold=0.0, max_question_length=64):
        """Raw strings -> [{"answer", "start", "end", "score", "null_score"}] (character offsets into the
        context; "" and None offsets when there is no answer). See rubert_tf.data.qa."""
        import numpy as np

        from rubert_tf.data.qa import decode_answers, encode_qa_windows

        tokenizer = self._require_tokenizer()
        single = isinstance(questions, str)
        questions = [questions] if single else list(questions)
        contexts = [contexts] if isinstance(contexts, str) else list(contexts)
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
        windows = encode_qa_windows(tokenizer, questions, contexts, max_length=max_length, stride=stride,
                                    max_question_length=max_question_length)
        start_logits, end_logits = [], []
        for begin in range(0, len(windows["example_index"]), batch_size):
            mask = windows["padding_mask"][begin:begin + batch_size]
            width = -(-int(mask.sum(axis=1).max()) // 8) * 8  # this batch's longest window, multiple of 8
            batch = {key: windows[key][begin:begin + batch_size, :width]
                     for key in ("token_ids", "segment_ids", "padding_mask")}
            outputs = self(batch, training=False)
            start_logits.extend(np.asarray(keras.ops.convert_to_numpy(outputs["start_logits"])))
            end_logits.extend(np.asarray(keras.ops.convert_to_numpy(outputs["end_logits"])))
        answers = decode_answers(windows, start_logits, end_logits, contexts, max_answer_length=max_answer_length,
                                 allow_no_answer=allow_no_answer, no_answer_threshold=no_answer_threshold)
        return answers[0] if single else answers
