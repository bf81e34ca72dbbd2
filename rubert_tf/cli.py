"""`rubert-tf` command line. The library knows nothing of this file; it only calls the library."""

import argparse
import json
import os
import re
import sys
import tempfile

from rubert_tf.tasks.settings import INFERENCE, TRAIN  # pure Python: no TensorFlow for --help

# TensorFlow's C++ start-up lines that say nothing a user can act on (no GPU here, CPU features,
# oneDNN on): kept out of the terminal unless --verbose. Anything else on stderr is shown.
_NOISE = re.compile(r"All log messages before absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc|cuda_dnn|"
                    r"cuda_fft|cuda_blas|cpu_feature_guard|oneDNN custom operations|rebuild TensorFlow with the "
                    r"appropriate compiler flags|TF-TRT Warning|computation_placer|Unable to register cu")


def _quiet_tensorflow():
    """Import TensorFlow with its C++ log noise filtered out of stderr (the messages are printed by
    C++ before Python's logging exists, so the file descriptor itself is captured for the import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
            import tensorflow_text  # noqa: F401  (the tokenizer's ops; same noise)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if line.strip() and not _NOISE.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _print(message):
    print(message, flush=True)


def command_quickstart(args):
    """The README's main job: sample data -> vocab -> pretraining -> classifier -> export -> serve -> one request."""
    from rubert_tf.quickstart import print_summary, run_quickstart

    summary = run_quickstart(
        out=args.out, name=args.name, work_dir=args.work_dir, model=args.model, data=args.data,
        eval_data=args.eval_data, corpus=args.corpus, text_column=args.text_column, label_column=args.label_column,
        fast=args.fast, vocab_size=args.vocab_size, pretrain_steps=args.pretrain_steps, epochs=args.epochs,
        learning_rate=args.learning_rate, batch_size=args.batch_size, max_length=args.max_length, text=args.text,
        seed=args.seed, progress=not args.no_progress)
    print_summary(summary)
    return 0


def command_encode(args):
    import numpy as np

    import rubert_tf as rt

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise SystemExit("rubert-tf encode: no text given (pass texts as arguments or on stdin)")
    tokenizer = rt.RuBertTokenizer.from_pretrained(args.model)
    encoder = rt.RuBertEncoder.from_pretrained(args.model)
    outputs = encoder(tokenizer(texts, max_length=args.max_length, padding="longest"))
    for text, vector in zip(texts, np.asarray(outputs["pooled_output"])):
        _print(json.dumps({"text": text, "pooled_output": [round(float(v), 6) for v in vector]}, ensure_ascii=False))
    return 0


def command_tokenize(args):
    import rubert_tf as rt

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    tokenizer = rt.RuBertTokenizer.from_pretrained(args.model)
    batch = tokenizer(texts, max_length=args.max_length, padding="longest", return_offsets=True)
    for row, text in enumerate(texts):
        length = int(batch["padding_mask"][row].numpy().sum())
        ids = [int(i) for i in batch["token_ids"][row].numpy()[:length]]
        offsets = batch["offsets"][row].numpy()[:length].tolist()
        _print(json.dumps({"text": text, "token_ids": ids, "tokens": [tokenizer.id_to_token(i) for i in ids],
                           "offsets": offsets}, ensure_ascii=False))
    return 0


def command_train_vocab(args):
    import rubert_tf as rt

    vocab = rt.train_vocab(args.files, vocab_size=args.vocab_size, output_path=args.out)
    _print(f"wrote {len(vocab)} tokens to {args.out}")
    return 0


def _read_inputs(args):
    """Texts from arguments, else stdin lines; a line that is a JSON object is passed as a dict
    (pairs: {"text", "text_pair"}; QA: {"question", "context"})."""
    lines = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not lines:
        raise ValueError("no input: pass texts as arguments or lines on stdin")
    inputs = []
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("{"):
            try:
                inputs.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"input line {number}: broken JSON ({error.msg})") from None
        else:
            inputs.append(line)
    return inputs


def _settings_overrides(args):
    """The task settings given as flags (dest = field name; None = not given)."""
    from rubert_tf.tasks import get_settings_class

    return get_settings_class(args.task).from_arguments(args)


def _data_paths(task, paths):
    """--train / --eval values (lists, nargs="+") -> the one path tasks read, or [source, target]
    for tasks that read two aligned files (seq2seq)."""
    if paths is None or len(paths) == 1:
        return paths[0] if paths else None
    if not getattr(task, "reads_file_pairs", False):
        raise ValueError(f"task {task.name!r} reads one data file, got {len(paths)}: {' '.join(paths)}")
    return list(paths)


def command_finetune(args):
    from rubert_tf.finetune import finetune
    from rubert_tf.tasks import get_task

    task = get_task(args.task)
    try:
        metrics = finetune(
            task, model=args.model, train=_data_paths(task, args.train), eval=_data_paths(task, args.eval),
            out=args.out, options=_settings_overrides(args), epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, mixed_precision=args.mixed_precision,
            seed=args.seed, max_steps=args.max_steps, log_dir=args.log_dir, verbose=0 if args.no_progress else 1,
            strategy=args.strategy, num_logical_cpus=args.num_logical_cpus, grad_accum=args.grad_accum,
            resume=args.resume, backup_every=args.backup_every or None, checkpoint_every=args.checkpoint_every,
            class_weight=args.class_weight, sparse_embedding_updates=args.sparse_embedding_updates,
            overwrite=args.overwrite, init=args.init, **_schedule_kwargs(args))
    except FileExistsError as error:  # an interrupted run's backup without --resume, or a model in --out
        print(f"rubert-tf finetune: error: {error}", file=sys.stderr)
        return 2
    _print(json.dumps(metrics, ensure_ascii=False, indent=2))
    return 0


def _load(task, args):
    """The fine-tuned model and its resolved settings (stored ones, the flags on top); a LiteRT deploy folder
    (export --format tflite) loads as its runner, which the task code runs as it runs the Keras model."""
    from rubert_tf.export.litert import LiteRTModel, is_litert_folder

    if is_litert_folder(args.model):
        model = LiteRTModel.load(args.model)
        if model.task_name != task.name:
            raise SystemExit(f"rubert-tf: error: {args.model} is a {model.task_name} model, not {task.name}")
    else:
        model = task.model_class.from_pretrained(args.model)
    return model, task.settings(model, _settings_overrides(args))


def command_evaluate(args):
    from rubert_tf.tasks import get_task

    task = get_task(args.task)
    model, settings = _load(task, args)
    examples = task.read(_data_paths(task, args.eval), settings)
    _print(json.dumps(task.evaluate(model, examples, settings, args.batch_size), ensure_ascii=False, indent=2))
    return 0


def command_predict(args):
    from rubert_tf.tasks import get_task

    task = get_task(args.task)
    inputs = _read_inputs(args)
    model, settings = _load(task, args)
    for result in task.predict(model, inputs, settings, args.batch_size):
        _print(json.dumps(result, ensure_ascii=False))
    return 0


def command_export(args):
    from rubert_tf.export import export
    from rubert_tf.tasks import get_task

    task = get_task(args.task)
    if args.quantize and args.format != "tflite":
        print("rubert-tf export: error: --quantize needs --format tflite (a SavedModel stays float)", file=sys.stderr)
        return 2
    model = task.model_class.from_pretrained(args.model)
    if args.format == "tflite":
        from rubert_tf.export.litert import export_litert

        try:
            path = export_litert(model, args.out, quantize=args.quantize, settings=_settings_overrides(args),
                                 overwrite=args.overwrite)
        except FileExistsError as error:
            print(f"rubert-tf export: error: {error}", file=sys.stderr)
            return 2
        _print(f"exported {args.task} model to {path} (LiteRT{', int8' if args.quantize else ''})")
        return 0
    path = export(model, base_path=args.out, version=args.version, settings=_settings_overrides(args),
                  warmup=not args.no_warmup)
    _print(f"exported {args.task} model to {path}")
    return 0


# What each task command shows of the task's settings: fine-tuning and scoring read data files
# (columns, label names, ...); predict and export only need what answering raw text needs.
_TASK_COMMANDS = {
    "finetune": ("fine-tune a checkpoint on a task (model.fit, default recipe)", command_finetune, (TRAIN, INFERENCE)),
    "evaluate": ("score a fine-tuned model on labelled data (its stored settings apply)", command_evaluate,
                 (TRAIN, INFERENCE)),
    "predict": ("run a fine-tuned model on raw text (args or stdin), JSON lines", command_predict, (INFERENCE,)),
    "export": ("write a SavedModel (text in, answers out) for TF Serving", command_export, (INFERENCE,)),
}
_TASK_HELP = {
    "classification": "text (or text pair) -> label(s)",
    "ner": "named entities: word tags and entity spans",
    "qa": "extractive question answering (SQuAD)",
    "sentence": "sentence embeddings (in-batch negatives)",
    "seq2seq": "translation / summarization (bert2bert)",
}


# rubert_tf.training.schedules.SCHEDULES, written out: --help must not import TensorFlow (a test keeps them equal).
LR_SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt")


def _add_schedule_flags(parser, default, default_warmup_ratio, auto_help=""):
    """--lr-schedule, --warmup-steps / --warmup-ratio, --min-lr-ratio (finetune and pretrain)."""
    choices = (("auto",) if default == "auto" else ()) + LR_SCHEDULES
    parser.add_argument("--lr-schedule", default=default, choices=choices,
                        help="decay after the linear warmup (default: %(default)s)" + auto_help)
    warmup = parser.add_mutually_exclusive_group()
    warmup.add_argument("--warmup-ratio", type=float, default=default_warmup_ratio,
                        help="warmup as a share of the optimizer steps (default: %(default)s)")
    warmup.add_argument("--warmup-steps", type=int, help="warmup in optimizer steps (instead of --warmup-ratio)")
    parser.add_argument("--min-lr-ratio", type=float, default=0.0,
                        help="the rate decays to this share of the peak (default: %(default)s)")


def _schedule_kwargs(args):
    return {"lr_schedule": args.lr_schedule, "warmup_ratio": args.warmup_ratio, "warmup_steps": args.warmup_steps,
            "min_lr_ratio": args.min_lr_ratio}


def _add_common_flags(name, parser):
    parser.add_argument("--model", required=True,
                        help="checkpoint directory or hub id" if name == "finetune" else "fine-tuned model directory")
    if name != "export":
        parser.add_argument("--batch-size", type=int, default=32, help="examples per batch (default: %(default)s)")
    if name == "finetune":
        parser.add_argument("--train", required=True, nargs="+",
                            help="training file (CSV/TSV/JSONL/CoNLL/SQuAD) or tfds:NAME; seq2seq also takes two "
                                 "line-aligned files, source then target")
        parser.add_argument("--eval", nargs="+", help="evaluation file (seq2seq: or two aligned files)")
        parser.add_argument("--out", required=True, help="output directory (HF layout + metrics.json + logs/)")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace a model already in --out (without it such a folder is refused)")
        parser.add_argument("--epochs", type=int, default=3, help="(default: %(default)s)")
        parser.add_argument("--learning-rate", type=float, default=5e-5, help="peak learning rate (default: %(default)s)")
        _add_schedule_flags(parser, "auto", 0.1, auto_help=": linear from pretrained weights, constant with "
                            "--init random (measured best, see rubert_tf/training/schedules.py)")
        parser.add_argument("--init", default="pretrained", choices=["pretrained", "random"],
                            help="pretrained: load --model's weights; random: only its architecture and vocabulary, "
                                 "randomly initialised from --seed (default: %(default)s)")
        parser.add_argument("--max-steps", type=int, help="cap on steps per epoch (quick runs)")
        parser.add_argument("--mixed-precision", choices=["auto", "bf16", "fp16"],
                            help="auto: fp16 with loss scaling on GPU, bf16 on CPU/TPU")
        parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
        parser.add_argument("--log-dir", help="TensorBoard folder (default OUT/logs)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")
        parser.add_argument("--strategy", default="default", choices=["default", "mirrored", "multi_worker", "tpu"],
                            help="tf.distribute strategy (default: %(default)s)")
        parser.add_argument("--num-logical-cpus", type=int, help="split the CPU into N replicas (mirrored, for testing)")
        parser.add_argument("--grad-accum", type=int, default=1,
                            help="micro-batches of --batch-size per optimizer update (default: %(default)s)")
        parser.add_argument("--resume", action="store_true",
                            help="continue an interrupted run from its backup in --out (at the exact step)")
        parser.add_argument("--backup-every", type=int, default=100,
                            help="steps between backups for --resume (0: one per epoch; default: %(default)s)")
        parser.add_argument("--checkpoint-every", type=int,
                            help="steps between kept checkpoints in OUT/checkpoints (default: only the final one)")
        parser.add_argument("--class-weight", choices=["balanced"],
                            help="balanced: weigh classes by n / (classes * count) (single-label classification)")
        parser.add_argument("--sparse-embedding-updates", action="store_true",
                            help="update only the embedding rows of each batch's tokens (lazy Adam): faster "
                                 "with a large vocabulary, not exactly AdamW")
    if name == "evaluate":
        parser.add_argument("--eval", required=True, nargs="+", help="data file (seq2seq: or two aligned files)")
    if name == "predict":
        parser.add_argument("texts", nargs="*", help="texts (default: lines of stdin); a line that is a JSON object "
                                                     "is passed as one ({\"text\", \"text_pair\"}, "
                                                     "{\"question\", \"context\"})")
    if name == "export":
        parser.add_argument("--out", required=True, help="model base folder, e.g. savedmodels/sentiment "
                                                         "(--format tflite: the deploy folder)")
        parser.add_argument("--format", default="savedmodel", choices=["savedmodel", "tflite"],
                            help="savedmodel: TF Serving's layout; tflite: a LiteRT deploy folder (network as "
                                 ".tflite + tokenizer + settings; run it with evaluate/predict --model FOLDER) "
                                 "(default: %(default)s)")
        parser.add_argument("--quantize", choices=["int8"],
                            help="with --format tflite: dynamic-range int8 weights (smaller, faster on CPU)")
        parser.add_argument("--overwrite", action="store_true", help="with --format tflite: replace a non-empty --out")
        parser.add_argument("--version", type=int, help="integer version (default: the next free one)")
        parser.add_argument("--no-warmup", action="store_true", help="skip assets.extra/tf_serving_warmup_requests")


def _add_task_commands(commands):
    """finetune / evaluate / predict / export, each with one subcommand per task whose flags come from the
    task's settings dataclass (so `rubert-tf finetune classification --help` lists them all)."""
    from rubert_tf.tasks import TASKS, get_settings_class

    for name, (summary, handler, stages) in _TASK_COMMANDS.items():
        command = commands.add_parser(name, help=summary, description=summary)
        tasks = command.add_subparsers(dest="task", required=True, metavar="TASK",
                                       help="; ".join(f"{t}: {_TASK_HELP[t]}" for t in TASKS))
        for task in TASKS:
            parser = tasks.add_parser(task, help=_TASK_HELP[task], description=f"rubert-tf {name} {task}: {summary}")
            _add_common_flags(name, parser)
            get_settings_class(task).add_arguments(parser, stages)
            parser.set_defaults(handler=handler)


def command_generate(args):
    """seq2seq: texts (arguments, or stdin lines; JSON objects with "text" too) -> JSON lines {"text", "generated"}."""
    from rubert_tf.tasks import get_task

    task = get_task("seq2seq")
    inputs = _read_inputs(args)
    model = task.model_class.from_pretrained(args.model)
    overrides = {key: getattr(args, key) for key in (
        "max_length", "min_length", "num_beams", "length_penalty", "no_repeat_ngram_size", "do_sample", "temperature",
        "top_k", "top_p", "seed", "max_input_length")}
    for result in task.predict(model, inputs, None, args.batch_size, generation=overrides):
        _print(json.dumps(result, ensure_ascii=False))
    return 0


def _add_generate_command(commands):
    generate = commands.add_parser(
        "generate", help="generate text with a seq2seq model (texts as args or stdin lines), JSON lines out")
    generate.add_argument("texts", nargs="*")
    generate.add_argument("--model", required=True, help="seq2seq model directory (rubert-tf finetune seq2seq --out)")
    generate.add_argument("--max-length", type=int,
                          help="output tokens incl. the decoder start token (default: as fine-tuned, else 64)")
    generate.add_argument("--min-length", type=int, help="no end of sequence before this length")
    generate.add_argument("--num-beams", type=int, help="beam search width (default: as fine-tuned, else 1 = greedy)")
    generate.add_argument("--length-penalty", type=float, help="beam search: score / length ** this (default 1.0)")
    generate.add_argument("--no-repeat-ngram-size", type=int, help="forbid repeating n-grams of this size")
    generate.add_argument("--do-sample", action="store_true", default=None, help="sample instead of greedy")
    generate.add_argument("--temperature", type=float)
    generate.add_argument("--top-k", type=int)
    generate.add_argument("--top-p", type=float)
    generate.add_argument("--seed", type=int, help="sampling seed")
    generate.add_argument("--max-input-length", type=int, help="source tokens kept (default: as fine-tuned, else 512)")
    generate.add_argument("--batch-size", type=int, default=32)
    generate.set_defaults(handler=command_generate)


def command_saved_model_cli(args):
    """TF's saved_model_cli with tensorflow_text imported first, so our graphs' ops are registered."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
    from tensorflow.python.tools import saved_model_cli

    sys.argv = ["saved_model_cli", *args.task_arguments]
    saved_model_cli.main()
    return 0


def command_prepare_corpus(args):
    from rubert_tf.pretraining import prepare_corpus

    try:
        info = prepare_corpus(args.files, args.out, args.vocab or args.model, max_length=args.max_length,
                              one_document_per_line=args.one_doc_per_line, packing=args.packing.replace("-", "_"),
                              sequences_per_shard=args.sequences_per_shard, overwrite=args.overwrite,
                              progress=not args.no_progress)
    except FileExistsError as error:
        print(f"rubert-tf prepare-corpus: error: {error}", file=sys.stderr)
        return 2
    for error in info["encoding_errors"][:20]:
        print(f"rubert-tf prepare-corpus: warning: {error['message']}", file=sys.stderr)
    if info["num_encoding_errors"] > 20:
        print(f"rubert-tf prepare-corpus: warning: {info['num_encoding_errors']} lines with invalid UTF-8 in all "
              f"(listed in {os.path.join(args.out, 'corpus.json')})", file=sys.stderr)
    _print(json.dumps({key: info[key] for key in ("num_documents", "num_sequences", "num_tokens",
                                                   "num_encoding_errors", "shards")}, ensure_ascii=False))
    return 0


def command_pretrain(args):
    from rubert_tf.pretraining import pretrain

    overrides = {"num_layers": args.num_layers, "hidden_size": args.hidden_size, "num_heads": args.num_heads,
                 "intermediate_size": args.intermediate_size}
    try:
        metrics = pretrain(
            train=args.train, eval=args.eval or None, out=args.out, model=args.model, config=args.config,
            vocab=args.vocab, overrides=overrides, max_length=args.max_length, batch_size=args.batch_size,
            steps=args.steps, learning_rate=args.learning_rate, max_minutes=args.max_minutes, **_schedule_kwargs(args),
            weight_decay=args.weight_decay, mask_rate=args.mask_rate, whole_word=args.whole_word_masking,
            sentence_order=args.sentence_order, objective=args.objective,
            generator_hidden_size=args.generator_hidden_size, rtd_weight=args.rtd_weight,
            max_predictions=args.max_predictions, eval_steps=args.eval_steps,
            checkpoint_every=args.checkpoint_every, backup_every=args.backup_every, strategy=args.strategy,
            num_logical_cpus=args.num_logical_cpus, mixed_precision=args.mixed_precision, resume=args.resume,
            seed=args.seed, log_dir=args.log_dir, verbose=0 if args.no_progress else 1, overwrite=args.overwrite)
    except FileExistsError as error:  # an interrupted run's backup without --resume
        print(f"rubert-tf pretrain: error: {error}", file=sys.stderr)
        return 2
    _print(json.dumps(metrics, ensure_ascii=False, indent=2))
    return 0


def _add_pretraining_commands(commands):
    corpus = commands.add_parser("prepare-corpus", help="tokenize text files into packed TFRecord shards for pretrain")
    corpus.add_argument("files", nargs="+", help="text files or globs (quoted; any tf.io.gfile path, e.g. gs://)")
    corpus.add_argument("--out", required=True, help="output directory (shards, vocab.txt, corpus.json)")
    source = corpus.add_mutually_exclusive_group(required=True)
    source.add_argument("--vocab", help="vocab.txt to tokenize with")
    source.add_argument("--model", help="checkpoint directory whose tokenizer to use")
    corpus.add_argument("--max-length", type=int, default=128, help="packed sequence length (default: 128)")
    corpus.add_argument("--packing", choices=["documents", "segment-pairs", "segment_pairs"], default="documents",
                        help="documents: fill sequences across documents; segment-pairs: [CLS] A [SEP] B [SEP] of one "
                             "document, for --sentence-order")
    corpus.add_argument("--one-doc-per-line", action="store_true",
                        help="every line is a document (default: blank-line-separated blocks)")
    corpus.add_argument("--sequences-per-shard", type=int, default=50_000)
    corpus.add_argument("--overwrite", action="store_true", help="replace a corpus already prepared in --out")
    corpus.add_argument("--no-progress", action="store_true")
    corpus.set_defaults(handler=command_prepare_corpus)

    pre = commands.add_parser("pretrain", help="masked-LM pretraining on prepare-corpus shards (model.fit)")
    pre.add_argument("--train", nargs="+", required=True, help="prepare-corpus directories, shards or globs")
    pre.add_argument("--eval", nargs="*", help="held-out prepare-corpus directories (loss/accuracy before and after)")
    pre.add_argument("--out", required=True, help="output directory (HF layout + metrics.json + logs/)")
    start = pre.add_mutually_exclusive_group(required=True)
    start.add_argument("--model", help="checkpoint to continue (directory or hub id)")
    start.add_argument("--config", help="architecture to start from: preset name, directory or config.json")
    pre.add_argument("--vocab", help="vocab.txt for --config (default: the --train corpus' vocab.txt)")
    pre.add_argument("--num-layers", type=int)
    pre.add_argument("--hidden-size", type=int)
    pre.add_argument("--num-heads", type=int)
    pre.add_argument("--intermediate-size", type=int)
    pre.add_argument("--max-length", type=int, help="default: the corpus' packing length")
    pre.add_argument("--batch-size", type=int, default=32, help="global batch size (default: 32)")
    pre.add_argument("--steps", type=int, default=10_000)
    pre.add_argument("--learning-rate", type=float, default=1e-4, help="peak learning rate (default: %(default)s)")
    _add_schedule_flags(pre, "linear", 0.01)
    pre.add_argument("--max-minutes", type=float,
                     help="wall-clock budget: stop training after this many minutes and save the model as at the "
                          "end (--steps still sets the schedule's length)")
    pre.add_argument("--weight-decay", type=float, default=0.01)
    pre.add_argument("--mask-rate", type=float, default=0.15)
    pre.add_argument("--whole-word-masking", action="store_true")
    pre.add_argument("--sentence-order", action="store_true",
                     help="ALBERT's sentence-order prediction (needs --packing segment-pairs shards)")
    pre.add_argument("--objective", choices=["mlm", "rtd"], default="mlm",
                     help="mlm: BERT's masked LM (default); rtd: ELECTRA's replaced-token detection, a small "
                          "generator fills the masked positions and the model learns to spot its replacements "
                          "(saved as HF ElectraForPreTraining, generator in OUT/generator; fine-tune OUT as usual)")
    pre.add_argument("--generator-hidden-size", type=int,
                     help="--objective rtd: the generator's hidden size (default: a quarter of the model's)")
    pre.add_argument("--rtd-weight", type=float, default=50.0,
                     help="--objective rtd: weight of the discriminator's loss against the generator's MLM loss "
                          "(default: %(default)s, as the ELECTRA paper)")
    pre.add_argument("--max-predictions", type=int, help="masked positions per sequence (default: 1.25 * rate * T)")
    pre.add_argument("--eval-steps", type=int)
    pre.add_argument("--checkpoint-every", type=int, default=1000,
                     help="steps per Keras epoch: a kept checkpoint (OUT/checkpoints) and validation (default: 1000)")
    pre.add_argument("--backup-every", type=int, default=100, help="steps between backups for --resume (default: 100)")
    pre.add_argument("--strategy", default="default", choices=["default", "mirrored", "multi_worker", "tpu"])
    pre.add_argument("--num-logical-cpus", type=int, help="split the CPU into N replicas (mirrored, for testing)")
    pre.add_argument("--mixed-precision", choices=["bf16", "fp16"])
    pre.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from its backup in --out (at the exact step)")
    pre.add_argument("--overwrite", action="store_true",
                     help="replace a model already in --out (without it such a folder is refused)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--log-dir", help="TensorBoard folder (default OUT/logs)")
    pre.add_argument("--no-progress", action="store_true")
    pre.set_defaults(handler=command_pretrain)


def build_parser():
    parser = argparse.ArgumentParser(prog="rubert-tf", description="RuBERT for TensorFlow 2 / Keras 3",
                                     epilog="--verbose (with any command): show TensorFlow's own log lines")
    commands = parser.add_subparsers(dest="command", required=True)

    quick = commands.add_parser(
        "quickstart", help="offline end-to-end run: vocab, pretraining, classifier, export, serve, one REST request",
        description="Offline end-to-end run on sample data the package writes itself: WordPiece vocab, a tiny "
                    "RuBERT pretrained with masked LM, a sentiment classifier fine-tuned and evaluated, a SavedModel "
                    "exported to OUT/NAME/<next version>, `rubert-tf serve` on 127.0.0.1 and one REST request.")
    quick.add_argument("--model", help="start from this checkpoint (directory or hub id): no vocab, no pretraining")
    quick.add_argument("--data", help="your labelled CSV/TSV/JSONL (columns text,label) instead of the sample "
                                      "sentiment sentences; 20%% is held out unless --eval-data is given")
    quick.add_argument("--eval-data", help="your held-out CSV/TSV/JSONL for --data")
    quick.add_argument("--text-column", default="text", help="text column of --data (default: %(default)s)")
    quick.add_argument("--label-column", default="label", help="label column of --data (default: %(default)s)")
    quick.add_argument("--corpus", nargs="+", help="your plain-text files, added to the vocab and pretraining text")
    quick.add_argument("--out", default="savedmodels", help="export folder (default: %(default)s); the model goes "
                                                            "to OUT/NAME/<next version>, earlier versions stay")
    quick.add_argument("--name", help="model name (default: sentiment, or classifier with --data)")
    quick.add_argument("--work-dir", help="working files (default: OUT/.quickstart, replaced on every run)")
    quick.add_argument("--fast", action="store_true", help="short budget for CI (~1-2 min): smaller vocab, "
                                                           "40 pretraining steps, 10 epochs")
    quick.add_argument("--pretrain-steps", type=int, help="masked-LM steps (default 600, --fast 40)")
    quick.add_argument("--epochs", type=int, help="fine-tuning epochs (default 20, --fast 10; 3 with --model)")
    quick.add_argument("--learning-rate", type=float, help="fine-tuning rate (default 1e-3; 5e-5 with --model)")
    quick.add_argument("--batch-size", type=int, default=32)
    quick.add_argument("--vocab-size", type=int, help="WordPiece vocab size (default 4000, --fast 2000)")
    quick.add_argument("--max-length", type=int, help="tokens per training example (default 64; 128 with --data)")
    quick.add_argument("--text", help="text of the REST request (default: a sample review / your first eval text)")
    quick.add_argument("--seed", type=int, default=0)
    quick.add_argument("--no-progress", action="store_true", help="no progress bars")
    quick.set_defaults(handler=command_quickstart)

    encode = commands.add_parser("encode", help="pooled RuBERT vectors of texts (arguments or stdin), JSON lines")
    encode.add_argument("texts", nargs="*")
    encode.add_argument("--model", required=True)
    encode.add_argument("--max-length", type=int, default=512)
    encode.set_defaults(handler=command_encode)

    tokenize = commands.add_parser("tokenize", help="token ids, tokens and character offsets, JSON lines")
    tokenize.add_argument("texts", nargs="*")
    tokenize.add_argument("--model", required=True, help="directory with vocab.txt, or hub id")
    tokenize.add_argument("--max-length", type=int, default=512)
    tokenize.set_defaults(handler=command_tokenize)

    vocab = commands.add_parser("train-vocab", help="learn a cased WordPiece vocab with RuBERT's special tokens")
    vocab.add_argument("files", nargs="+")
    vocab.add_argument("--vocab-size", type=int, default=30000)
    vocab.add_argument("--out", required=True, help="vocab.txt to write")
    vocab.set_defaults(handler=command_train_vocab)
    _add_pretraining_commands(commands)

    _add_task_commands(commands)
    _add_generate_command(commands)

    smcli = commands.add_parser("saved-model-cli", add_help=False,
                                help="TF's saved_model_cli (show --all, run) able to load our exports")
    smcli.set_defaults(handler=command_saved_model_cli, accepts_task_arguments=True)

    serve = commands.add_parser("serve", add_help=False, help="TF Serving-compatible REST + gRPC server for "
                                "SavedModels (tensorflow_model_server flags; serve --help)")
    serve.set_defaults(handler=lambda args: __import__("rubert_tf.serving").serving.main(args.task_arguments),
                       accepts_task_arguments=True)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    # --verbose anywhere: TensorFlow's own log lines stay visible (argparse would only take it first).
    verbose = "--verbose" in argv
    argv = [arg for arg in argv if arg != "--verbose"]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)  # --help exits here, before TensorFlow is imported
    if rest and not getattr(args, "accepts_task_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.task_arguments = rest
    if not verbose:
        _quiet_tensorflow()
    try:
        return args.handler(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"rubert-tf {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
