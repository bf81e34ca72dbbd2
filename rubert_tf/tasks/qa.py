"""Extractive question answering (SQuAD v1.1 / v2.0 JSON) as a fine-tuning task.

    rubert-tf finetune qa --model rubert-tiny2 --train train.json --eval dev.json --out models/qa \\
        --max-length 384 --stride 128 [--version-2-with-negative]
    rubert-tf evaluate qa --model models/qa --eval dev.json
    echo '{"question": "...", "context": "..."}' | rubert-tf predict qa --model models/qa

Settings resolve in this order: the task's options (command-line flags), else what fine-tuning stored
in the model's config.json under "question_answering", else the defaults below. So a model fine-tuned
on SQuAD v2 data keeps answering "" when the null score wins, without repeating the flag.
"""

from rubert_tf.data.qa import MAX_QUESTION_LENGTH, qa_training_dataset
from rubert_tf.data.readers import DataError, read_squad
from rubert_tf.metrics.squad import squad_scores
from rubert_tf.models.question_answerer import RuBertQuestionAnswerer
from rubert_tf.tasks.base import Task

CONFIG_KEY = "question_answering"
DEFAULTS = {"stride": None,  # None: min(128, max_length // 2), as transformers' QA pipeline
            "max_answer_length": 30, "max_question_length": MAX_QUESTION_LENGTH,
            "version_2_with_negative": False, "no_answer_threshold": 0.0}
# Settings written into the fine-tuned model's config (what inference needs to behave as evaluated).
STORED = ("stride", "max_answer_length", "max_question_length", "version_2_with_negative", "no_answer_threshold")


class QuestionAnsweringTask(Task):
    name = "qa"
    model_class = RuBertQuestionAnswerer

    defaults = DEFAULTS
    config_key = CONFIG_KEY

    def __init__(self):
        self.options = {}

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--stride", type=int, default=None,
                            help="tokens shared by neighbouring windows of a long context "
                                 "(default min(128, max_length // 2))")
        parser.add_argument("--max-answer-length", type=int, default=None, help="in tokens (default 30)")
        parser.add_argument("--max-question-length", type=int, default=None,
                            help="longer questions keep their first tokens (default 64)")
        parser.add_argument("--version-2-with-negative", "--allow-no-answer", dest="version_2_with_negative",
                            action="store_true", default=None,
                            help="SQuAD v2: questions may have no answer; predict '' when the [CLS] score wins")
        parser.add_argument("--no-answer-threshold", type=float, default=None,
                            help="SQuAD v2: answer '' when null_score - best_span_score > this (default 0)")

    # ---- settings

    def settings(self, model=None, max_length=None):
        """Options, else the model's stored settings, else the defaults; stride resolved for max_length."""
        resolved = self.resolve_settings(model)
        if resolved["stride"] is None and max_length is not None:
            resolved["stride"] = min(128, max_length // 2)
        return resolved

    # ---- the Task contract

    def read(self, path, options):
        """SQuAD v1.1/v2.0 JSON; a question without an answer needs --version-2-with-negative."""
        self.configure(options)
        examples = read_squad(path)
        if not self.settings()["version_2_with_negative"]:
            for example in examples:
                if example["is_impossible"]:
                    raise DataError(f"{path}: question {example['id']} has no answer (SQuAD v2 data); "
                                    "pass --version-2-with-negative to train and score 'no answer'")
        return examples

    def dataset(self, model, tokenizer, examples, batch_size, max_length, shuffle=False, seed=None):
        settings = self.settings(model, max_length)
        # Inference later (evaluate / predict / export) behaves as the model was trained.
        model.config.extra[CONFIG_KEY] = {key: settings[key] for key in STORED}
        dataset, _ = qa_training_dataset(
            tokenizer, examples, batch_size, max_length=max_length, stride=settings["stride"],
            max_question_length=settings["max_question_length"], shuffle=shuffle, seed=seed,
            allow_no_answer=settings["version_2_with_negative"])
        return dataset

    def answers(self, model, questions, contexts, max_length, batch_size):
        settings = self.settings(model, max_length)
        return model.answer(questions, contexts, max_length=max_length, stride=settings["stride"],
                            max_answer_length=settings["max_answer_length"], batch_size=batch_size,
                            allow_no_answer=settings["version_2_with_negative"],
                            no_answer_threshold=settings["no_answer_threshold"],
                            max_question_length=settings["max_question_length"])

    def predictions(self, model, examples, max_length, batch_size):
        """{question id: predicted text} for read_squad examples."""
        answers = self.answers(model, [e["question"] for e in examples], [e["context"] for e in examples],
                               max_length, batch_size)
        predictions = {}
        for example, answer in zip(examples, answers):
            if example["id"] in predictions:
                raise DataError(f"question id {example['id']!r} occurs more than once")
            predictions[example["id"]] = answer["answer"]
        return predictions

    def evaluate(self, model, examples, max_length, batch_size):
        """SQuAD exact_match and f1 (percentages); with v2 data also has_answer_* and no_answer_*."""
        predictions = self.predictions(model, examples, max_length, batch_size)
        references = {e["id"]: [] if e["is_impossible"] else [a["text"] for a in e["answers"]] for e in examples}
        metrics = dict(squad_scores(predictions, references))
        metrics["questions"] = len(examples)
        if self.settings(model)["version_2_with_negative"]:
            for name, keep in (("has_answer", lambda e: not e["is_impossible"]), ("no_answer", lambda e: e["is_impossible"])):
                subset = {e["id"]: references[e["id"]] for e in examples if keep(e)}
                if subset:
                    scores = squad_scores(predictions, subset)
                    metrics[f"{name}_exact_match"], metrics[f"{name}_f1"] = scores["exact_match"], scores["f1"]
        return metrics

    def predict(self, model, inputs, max_length, batch_size):
        """[{"question", "context"(, "id")}] -> [{"answer", "start", "end", "score"(, "id")}]."""
        questions, contexts = [], []
        for number, item in enumerate(inputs, start=1):
            if not isinstance(item, dict) or not isinstance(item.get("question"), str) \
                    or not isinstance(item.get("context"), str):
                raise ValueError(f"input {number}: QA needs a JSON object with string fields "
                                 f'"question" and "context", got {str(item)[:80]!r}')
            questions.append(item["question"])
            contexts.append(item["context"])
        if not questions:
            return []
        results = []
        for item, answer in zip(inputs, self.answers(model, questions, contexts, max_length, batch_size)):
            result = {"id": item["id"]} if "id" in item else {}
            result.update({key: answer[key] for key in ("answer", "start", "end", "score")})
            results.append(result)
        return results
