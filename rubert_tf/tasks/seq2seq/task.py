"""Sequence-to-sequence fine-tuning (translation, summarization) of RuBertSeq2Seq (bert2bert).

    rubert-tf finetune seq2seq --model rubert-tiny2 --train train.ru train.en --eval dev.ru dev.en \\
        --out models/ru-en [--max-source-length 128 --max-target-length 128 --num-beams 4]
    rubert-tf finetune seq2seq --model rubert-tiny2 --train data.jsonl --source-column text \\
        --target-column summary --metric rouge --out models/summaries
    rubert-tf evaluate seq2seq --model models/ru-en --eval test.ru test.en
    rubert-tf generate --model models/ru-en --num-beams 4 "Привет, мир!"

Data: two line-aligned files (source, then target), a prefix with --source-lang/--target-lang, a
CSV/TSV/JSONL table (--source-column/--target-column, default source/target) or
`tfds:ted_hrlr_translate/ru_to_en` (see rubert_tf.data.seq2seq). A plain BERT checkpoint is warm-
started into bert2bert (encoder and decoder from it, or the decoder from --decoder); an
EncoderDecoderModel directory is loaded as it is.

Evaluation generates for every source (greedy, or beam search with --num-beams) and scores with
sacreBLEU's BLEU and chrF (--metric bleu, translation) or ROUGE-1/2/L F1 (--metric rouge,
summarization), besides the teacher-forced token loss. Settings (settings.py) resolve as for every
task: the flags, else what fine-tuning stored in the model's config.json, else the defaults. Greedy
and beam search run the serving module (processing.py), the graph that export saves.
"""

from rubert_tf.data.readers import DataError
from rubert_tf.data.seq2seq import read_seq2seq, seq2seq_dataset
from rubert_tf.metrics.generation import generation_scores
from rubert_tf.models.seq2seq import RuBertSeq2Seq
from rubert_tf.tasks.base import Task
from rubert_tf.tasks.seq2seq import processing
from rubert_tf.tasks.seq2seq.settings import Seq2SeqSettings

# Arguments of model.generate that the serving graph does not take (sampling): with any of them set,
# generation runs model.generate in Python instead of the serving module.
SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "seed")


class Seq2SeqTask(Task):
    name = "seq2seq"
    model_class = RuBertSeq2Seq
    settings_class = Seq2SeqSettings
    reads_file_pairs = True  # --train/--eval may name two aligned files

    # ---- the Task contract

    def read(self, path, settings=None):
        s = self.settings(overrides=settings)
        if path is None:
            raise ValueError("no data file given")
        return read_seq2seq(path, source_column=s.source_column, target_column=s.target_column,
                            source_lang=s.source_lang, target_lang=s.target_lang)

    def model_kwargs(self, examples, settings=None):
        decoder = self.settings(overrides=settings).decoder
        return {"decoder_path": decoder} if decoder else {}

    def loss(self, model, settings=None):
        return model.default_loss(label_smoothing=self.settings(model, settings).label_smoothing)

    def dataset(self, model, tokenizer, examples, settings=None, batch_size=32, shuffle=False, seed=None):
        """Training batches are shuffled and bucketed by length; evaluation batches keep the file order."""
        s = self.settings(model, settings)
        _fill_token_ids(model, tokenizer)
        return seq2seq_dataset(tokenizer, [e["source"] for e in examples], [e["target"] for e in examples],
                               batch_size=batch_size, max_source_length=s.source_length,
                               max_target_length=s.target_length, shuffle=shuffle, seed=seed,
                               bucket_boundaries="auto" if shuffle else None)

    def serving_module(self, model, tokenizer, settings=None, generation=None):
        _fill_token_ids(model, tokenizer)
        return processing.serving_module(model, tokenizer, self.settings(model, settings), generation)

    # ---- scoring and inference

    def mean_loss(self, model, examples, settings=None, batch_size=32):
        """Teacher-forced cross-entropy per target token (label smoothing off), over all examples."""
        import numpy as np

        tokenizer = _require_tokenizer(model)
        s = self.settings(model, settings)
        dataset = seq2seq_dataset(tokenizer, [e["source"] for e in examples], [e["target"] for e in examples],
                                  batch_size=batch_size, max_source_length=s.source_length,
                                  max_target_length=s.target_length, cache=False)
        loss_fn = model.default_loss()
        total, tokens = 0.0, 0
        for features, labels in dataset:
            count = int(np.sum(labels.numpy() != -100))
            total += float(loss_fn(labels, model(features, training=False))) * count
            tokens += count
        return total / max(tokens, 1)

    def generate(self, model, sources, settings=None, batch_size=32, generation=None):
        """Generated strings for `sources`: the serving module (greedy / beam search, as served), or
        model.generate when `generation` asks for sampling. `generation` wins over the settings."""
        s = self.settings(model, settings)
        _fill_token_ids(model, _require_tokenizer(model))
        generation = {key: value for key, value in (generation or {}).items() if value is not None}
        if "max_input_length" in generation:
            s = s.replace(max_source_length=generation.pop("max_input_length"))
        if any(generation.get(key) for key in SAMPLING_KEYS):
            kwargs = processing.generation_config(model, s, generation)
            return model.generate(list(sources), batch_size=batch_size, max_input_length=s.source_length, **kwargs)
        return processing.generate(model, list(sources), s, batch_size, generation)

    def evaluate(self, model, examples, settings=None, batch_size=32):
        """bleu + chrf (or rouge1/2/L), the teacher-forced loss, and the number of examples."""
        s = self.settings(model, settings)
        if not examples:
            raise DataError("no examples to evaluate")
        hypotheses = self.generate(model, [e["source"] for e in examples], s, batch_size)
        metrics = generation_scores(hypotheses, [e["target"] for e in examples], metric=s.metric)
        metrics["loss"] = self.mean_loss(model, examples, s, batch_size)
        metrics["examples"] = len(examples)
        metrics["num_beams"] = s.num_beams
        return metrics

    def predict(self, model, inputs, settings=None, batch_size=32, generation=None):
        """Strings, or dicts {"text"} (or {"source"}) -> [{"text", "generated"}]; `generation` holds
        `model.generate` arguments (num_beams, max_length, ...) that win over the stored settings."""
        texts = []
        for number, item in enumerate(inputs, start=1):
            if isinstance(item, dict):
                item = item.get("text", item.get("source"))
            if not isinstance(item, str):
                raise ValueError(f"input {number}: expected a string or an object with a \"text\" string, "
                                 f"got {item!r:.200}")
            texts.append(item)
        if not texts:
            return []
        return [{"text": text, "generated": output}
                for text, output in zip(texts, self.generate(model, texts, settings, batch_size, generation))]


def _require_tokenizer(model):
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(f"{type(model).__name__} has no tokenizer: load it with from_pretrained from a directory "
                         "with vocab.txt, or set `model.tokenizer`")
    return model.tokenizer


def _fill_token_ids(model, tokenizer):
    """bert2bert's decoder start / eos / pad = the tokenizer's [CLS] / [SEP] / [PAD] where the
    checkpoint did not say (a warm start from a plain BERT checkpoint loaded without its tokenizer)."""
    config = model.config
    for key, value in (("decoder_start_token_id", tokenizer.cls_id), ("eos_token_id", tokenizer.sep_id),
                       ("pad_token_id", tokenizer.pad_id)):
        if getattr(config, key) is None:
            setattr(config, key, int(value))
