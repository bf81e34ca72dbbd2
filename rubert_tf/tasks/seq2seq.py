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
summarization), besides the teacher-forced token loss. Settings resolve as in the QA task: the
flags, else what fine-tuning stored in the model's config.json under "seq2seq", else the defaults.
"""

from rubert_tf.data.readers import DataError
from rubert_tf.data.seq2seq import read_seq2seq, seq2seq_dataset
from rubert_tf.metrics.generation import generation_scores
from rubert_tf.models.seq2seq import RuBertSeq2Seq
from rubert_tf.tasks.base import Task

CONFIG_KEY = "seq2seq"
# max_source_length / max_target_length: None = the runner's --max-length. generation_max_length
# counts the decoder start token (as transformers' generate): None = max_target_length + 1.
DEFAULTS = {"source_column": None, "target_column": None, "source_lang": None, "target_lang": None, "decoder": None,
            "metric": "bleu", "max_source_length": None, "max_target_length": None, "label_smoothing": 0.0,
            "num_beams": 1, "generation_max_length": None, "length_penalty": 1.0, "no_repeat_ngram_size": 0}
# What inference later needs to behave as it was evaluated (kept in the model's config.json).
STORED = ("metric", "max_source_length", "max_target_length", "num_beams", "generation_max_length",
          "length_penalty", "no_repeat_ngram_size")
GENERATION_KEYS = ("num_beams", "length_penalty", "no_repeat_ngram_size")


class Seq2SeqTask(Task):
    name = "seq2seq"
    model_class = RuBertSeq2Seq
    reads_file_pairs = True  # --train/--eval may name two aligned files

    defaults = DEFAULTS
    config_key = CONFIG_KEY

    def __init__(self):
        self.options = {}

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--source-column", help="table column / tfds feature of the source (default: source, "
                                                    "or X of a tfds X_to_Y config)")
        parser.add_argument("--target-column", help="table column / tfds feature of the target (default: target)")
        parser.add_argument("--source-lang", help="with a prefix PATH: read PATH.SOURCE_LANG ...")
        parser.add_argument("--target-lang", help="... and PATH.TARGET_LANG (fairseq style)")
        parser.add_argument("--decoder", help="warm-start the decoder from this checkpoint (default: --model)")
        parser.add_argument("--metric", choices=["bleu", "rouge"], default=None,
                            help="bleu: sacreBLEU BLEU + chrF (translation, default); rouge: ROUGE-1/2/L (summaries)")
        parser.add_argument("--max-source-length", type=int,
                            help="source tokens incl. [CLS]/[SEP] (default --max-length)")
        parser.add_argument("--max-target-length", type=int,
                            help="decoder tokens, [CLS] y / y [SEP] (default --max-length)")
        parser.add_argument("--label-smoothing", type=float, help="label smoothing of the loss (default 0)")
        parser.add_argument("--num-beams", type=int, help="beam search width for evaluation (default 1: greedy)")
        parser.add_argument("--generation-max-length", type=int,
                            help="generated tokens incl. the start token (default max-target-length + 1)")
        parser.add_argument("--length-penalty", type=float, help="beam search length penalty (default 1.0)")
        parser.add_argument("--no-repeat-ngram-size", type=int, help="forbid repeating n-grams (default 0: off)")

    # ---- settings

    def settings(self, model=None, max_length=None):
        """Options, else the model's stored settings, else the defaults; lengths resolved for max_length."""
        resolved = self.resolve_settings(model)
        for key in ("max_source_length", "max_target_length"):
            if resolved[key] is None:
                resolved[key] = max_length
        if resolved["generation_max_length"] is None and resolved["max_target_length"] is not None:
            resolved["generation_max_length"] = resolved["max_target_length"] + 1
        return resolved

    def generation_kwargs(self, model, max_length=None, overrides=None):
        """Keyword arguments of `model.generate` from the settings; `overrides` (those not None) win."""
        settings = self.settings(model, max_length)
        kwargs = {key: settings[key] for key in GENERATION_KEYS}
        if settings["generation_max_length"] is not None:
            kwargs["max_length"] = settings["generation_max_length"]
            # A long --max-length (predict's 512 + 1) stops at the decoder's last position; an explicit
            # `overrides` max_length is the caller's (the model names the limit it breaks).
            positions = getattr(getattr(model.config, "decoder", None), "max_position_embeddings", None)
            if positions:
                kwargs["max_length"] = min(kwargs["max_length"], positions)
        if settings["max_source_length"] is not None:
            kwargs["max_input_length"] = settings["max_source_length"]
        kwargs.update({key: value for key, value in (overrides or {}).items() if value is not None})
        return kwargs

    # ---- the Task contract

    def read(self, path, options):
        self.configure(options)
        s = self.settings()
        if path is None:
            raise ValueError("no data file given")
        return read_seq2seq(path, source_column=s["source_column"], target_column=s["target_column"],
                            source_lang=s["source_lang"], target_lang=s["target_lang"])

    def model_kwargs(self, examples, options):
        decoder = (options or {}).get("decoder") or self.options.get("decoder")
        return {"decoder_path": decoder} if decoder else {}

    def loss(self, model):
        return model.default_loss(label_smoothing=self.settings(model)["label_smoothing"])

    def dataset(self, model, tokenizer, examples, batch_size, max_length, shuffle=False, seed=None):
        """Training batches are shuffled and bucketed by length; evaluation batches keep the file order."""
        settings = self.settings(model, max_length)
        _fill_token_ids(model, tokenizer)
        # Inference later (evaluate / predict / generate) behaves as the model was trained and evaluated.
        model.config.extra[CONFIG_KEY] = {key: settings[key] for key in STORED}
        return seq2seq_dataset(tokenizer, [e["source"] for e in examples], [e["target"] for e in examples],
                               batch_size=batch_size, max_source_length=settings["max_source_length"],
                               max_target_length=settings["max_target_length"], shuffle=shuffle, seed=seed,
                               bucket_boundaries="auto" if shuffle else None)

    # ---- scoring and inference

    def mean_loss(self, model, examples, max_length, batch_size):
        """Teacher-forced cross-entropy per target token (label smoothing off), over all examples."""
        import numpy as np

        tokenizer = _require_tokenizer(model)
        settings = self.settings(model, max_length)
        dataset = seq2seq_dataset(tokenizer, [e["source"] for e in examples], [e["target"] for e in examples],
                                  batch_size=batch_size, max_source_length=settings["max_source_length"],
                                  max_target_length=settings["max_target_length"], cache=False)
        loss_fn = model.default_loss()
        total, tokens = 0.0, 0
        for features, labels in dataset:
            count = int(np.sum(labels.numpy() != -100))
            total += float(loss_fn(labels, model(features, training=False))) * count
            tokens += count
        return total / max(tokens, 1)

    def generate(self, model, sources, max_length, batch_size, generation=None):
        """Generated strings for `sources`; `generation`: model.generate arguments that win over the settings."""
        _fill_token_ids(model, _require_tokenizer(model))
        return model.generate(list(sources), batch_size=batch_size,
                              **self.generation_kwargs(model, max_length, generation))

    def evaluate(self, model, examples, max_length, batch_size):
        """bleu + chrf (or rouge1/2/L), the teacher-forced loss, and the number of examples."""
        settings = self.settings(model, max_length)
        if not examples:
            raise DataError("no examples to evaluate")
        hypotheses = self.generate(model, [e["source"] for e in examples], max_length, batch_size)
        metrics = generation_scores(hypotheses, [e["target"] for e in examples], metric=settings["metric"])
        metrics["loss"] = self.mean_loss(model, examples, max_length, batch_size)
        metrics["examples"] = len(examples)
        metrics["num_beams"] = settings["num_beams"]
        return metrics

    def predict(self, model, inputs, max_length, batch_size, generation=None):
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
                for text, output in zip(texts, self.generate(model, texts, max_length, batch_size, generation))]


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
