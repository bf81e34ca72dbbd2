"""Extractive question answering (SQuAD v1.1 / v2.0 JSON) as a fine-tuning task.

    rubert-tf finetune qa --model rubert-tiny2 --train train.json --eval dev.json --out models/qa \\
        --max-length 384 --stride 128 [--version-2-with-negative]
    rubert-tf evaluate qa --model models/qa --eval dev.json
    echo '{"question": "...", "context": "..."}' | rubert-tf predict qa --model models/qa

Settings (rubert_tf.tasks.qa.settings) resolve in this order: explicit overrides (flags), else what
fine-tuning stored in the model's config.json, else the defaults. So a model fine-tuned on SQuAD v2
data keeps answering "" when the null score wins, without repeating the flag. Evaluate and predict run
the serving module (rubert_tf.tasks.qa.processing), so they score exactly what export serves.
"""

from rubert_tf.data.qa import qa_training_dataset
from rubert_tf.data.readers import DataError, read_squad
from rubert_tf.metrics.squad import squad_scores
from rubert_tf.models.question_answerer import RuBertQuestionAnswerer
from rubert_tf.tasks.base import Task
from rubert_tf.tasks.qa import processing
from rubert_tf.tasks.qa.settings import QuestionAnsweringSettings


class QuestionAnsweringTask(Task):
    name = "qa"
    model_class = RuBertQuestionAnswerer
    settings_class = QuestionAnsweringSettings

    # ---- the Task contract

    def read(self, path, settings=None):
        """SQuAD v1.1/v2.0 JSON; a question without an answer needs --version-2-with-negative."""
        settings = self.settings(None, settings)
        examples = read_squad(path)
        if not settings.version_2_with_negative:
            for example in examples:
                if example["is_impossible"]:
                    raise DataError(f"{path}: question {example['id']} has no answer (SQuAD v2 data); "
                                    "pass --version-2-with-negative to train and score 'no answer'")
        return examples

    def dataset(self, model, tokenizer, examples, settings=None, batch_size=32, shuffle=False, seed=None):
        settings = self.settings(model, settings)
        # Inference later (evaluate / predict / export) behaves as the model was trained.
        settings.store(model)
        dataset, _ = qa_training_dataset(
            tokenizer, examples, batch_size, max_length=settings.max_length, stride=settings.window_stride,
            max_question_length=settings.max_question_length, shuffle=shuffle, seed=seed,
            allow_no_answer=settings.version_2_with_negative)
        return dataset

    def serving_module(self, model, tokenizer, settings=None):
        return processing.serving_module(model, tokenizer, self.settings(model, settings))

    def answers(self, model, questions, contexts, settings=None, batch_size=32):
        """The serving module's answers (dicts) for raw question/context strings."""
        return processing.answer(model, questions, contexts, self.settings(model, settings), batch_size)

    def predictions(self, model, examples, settings=None, batch_size=32):
        """{question id: predicted text} for read_squad examples."""
        answers = self.answers(model, [e["question"] for e in examples], [e["context"] for e in examples],
                               settings, batch_size)
        predictions = {}
        for example, answer in zip(examples, answers):
            if example["id"] in predictions:
                raise DataError(f"question id {example['id']!r} occurs more than once")
            predictions[example["id"]] = answer["answer"]
        return predictions

    def evaluate(self, model, examples, settings=None, batch_size=32):
        """SQuAD exact_match and f1 (percentages); with v2 data also has_answer_* and no_answer_*."""
        settings = self.settings(model, settings)
        predictions = self.predictions(model, examples, settings, batch_size)
        references = {e["id"]: [] if e["is_impossible"] else [a["text"] for a in e["answers"]] for e in examples}
        metrics = dict(squad_scores(predictions, references))
        metrics["questions"] = len(examples)
        if settings.version_2_with_negative:
            for name, keep in (("has_answer", lambda e: not e["is_impossible"]), ("no_answer", lambda e: e["is_impossible"])):
                subset = {e["id"]: references[e["id"]] for e in examples if keep(e)}
                if subset:
                    scores = squad_scores(predictions, subset)
                    metrics[f"{name}_exact_match"], metrics[f"{name}_f1"] = scores["exact_match"], scores["f1"]
        return metrics

    def predict(self, model, inputs, settings=None, batch_size=32):
        """[{"question", "context"(, "id")}] -> [{"answer", "start", "end", "score", "truncated"(, "id")}];
        truncated: the context was longer than max_windows windows and only its start was searched."""
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
        for item, answer in zip(inputs, self.answers(model, questions, contexts, settings, batch_size)):
            result = {"id": item["id"]} if "id" in item else {}
            result.update({key: answer[key] for key in ("answer", "start", "end", "score", "truncated")})
            results.append(result)
        return results
