"""Fine-tuning benchmark for sequence classification on real Russian data (not a test).

    /work/venv/bin/python benchmarks/finetune_classification.py                    # random-init rubert-tiny2 shape
    /work/venv/bin/python benchmarks/finetune_classification.py --model PATH       # any checkpoint from_pretrained reads
    /work/venv/bin/python benchmarks/finetune_classification.py --steps 600 --tasks rucola --json results.json

Without --model the encoder is rubert-tiny2's architecture (its real config.json and vocab from
../shared/data/rubert-tiny2) with random weights, since the published weights cannot be downloaded
here: expect numbers near the majority-class baseline, which is printed beside them. With a real
pretrained checkpoint the same command gives meaningful scores.

Tasks (data from ../shared/data, see its README):
  rusentne  RuSentNE-2023, 3-class sentiment toward an entity (the entity is the text pair). Only the
            train file is public, so a seeded 80/20 split of it is used. Reports accuracy, 3-class
            macro-F1 and the official macro-F1 over the positive and negative classes.
  rucola    RuCoLA in-domain train -> in-domain dev. Reports accuracy, macro-F1 and MCC (official).

Each task runs `rubert_tf.finetune.finetune` (AdamW, warmup + linear decay, clipping, length
bucketing) for --steps optimizer steps, then evaluates. Results go to stdout (and --json).
"""

import argparse
import collections
import csv
import json
import math
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")


def random_tiny2(directory, data):
    """rubert-tiny2's architecture and real vocab with random weights, saved in HF layout."""
    import keras

    import rubert_tf as rt

    keras.utils.set_random_seed(0)
    tiny2 = os.path.join(data, "rubert-tiny2")
    tokenizer = rt.RuBertTokenizer.from_pretrained(tiny2)
    rt.RuBertEncoder(rt.RuBertConfig.from_pretrained(tiny2)).save_pretrained(directory, tokenizer=tokenizer)
    return directory


def split_rusentne(data, work, seed, eval_fraction=0.2):
    """Seeded 80/20 split of RuSentNE's train file (tab-separated, header kept in both parts)."""
    with open(os.path.join(data, "rusentne2023", "train_data.csv"), encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    rows = [row for row in rows if row.strip()]
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - eval_fraction))
    paths = []
    for name, part in (("train.tsv", rows[:cut]), ("eval.tsv", rows[cut:])):
        path = os.path.join(work, "rusentne_" + name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join([header] + part) + "\n")
        paths.append(path)
    return paths


def majority_baseline(task, train, evaluation, options, labels):
    """Scores of always predicting the training set's most frequent label."""
    from rubert_tf.tasks.classification import classification_metrics

    train_labels = [e["label"] for e in task.read(train, options)]
    majority = collections.Counter(train_labels).most_common(1)[0][0]
    gold = [labels.index(e["label"]) for e in task.read(evaluation, options)]
    return classification_metrics(labels, gold, [labels.index(majority)] * len(gold))


def count_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1 if path.endswith(".csv") else sum(1 for line in f if line.strip()) - 1


def run_task(name, args, model, work):
    from rubert_tf.finetune import finetune
    from rubert_tf.tasks import get_task

    task = get_task("classification")
    if name == "rusentne":
        train, evaluation = split_rusentne(args.data, work, args.seed)
        options = {"text_column": "sentence", "text_pair_column": "entity", "label_column": "label"}
    else:
        train = os.path.join(args.data, "rucola", "in_domain_train.csv")
        evaluation = os.path.join(args.data, "rucola", "in_domain_dev.csv")
        options = {"text_column": "sentence", "label_column": "acceptable"}
    train_size = count_rows(train)
    epochs = max(1, args.epochs)
    steps_per_epoch = min(math.ceil(args.steps / epochs), math.ceil(train_size / args.batch_size))
    epochs = math.ceil(args.steps / steps_per_epoch)
    started = time.time()
    metrics = finetune(task, overwrite=True, model=model, train=train, eval=evaluation, out=os.path.join(work, name), options=options,
                       epochs=epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       max_length=args.max_length, mixed_precision=args.mixed_precision, seed=args.seed,
                       max_steps=steps_per_epoch, verbose=2 if args.verbose else 0)
    labels = task.model_kwargs(task.read(train, options), options)["labels"]
    return {"task": name, "train_examples": train_size, "eval_examples": metrics.get("examples"),
            "steps": epochs * steps_per_epoch, "seconds": round(time.time() - started, 1), **metrics,
            "majority_baseline": majority_baseline(task, train, evaluation, options, labels)}


SHOWN = ("accuracy", "macro_f1", "macro_f1_pos_neg", "mcc")


def report(result):
    def row(scores):
        return "  ".join(f"{key}={scores[key]:.4f}" for key in SHOWN if key in scores)

    print(f"\n{result['task']}: {result['train_examples']} train / {result['eval_examples']} eval examples, "
          f"{result['steps']} steps, {result['seconds']} s, train loss {result['train_loss_first_epoch']:.4f} "
          f"(first epoch) -> {result['train_loss_last_epoch']:.4f} (last), eval loss {result['loss']:.4f}")
    print(f"  model:    {row(result)}")
    print(f"  majority: {row(result['majority_baseline'])}")
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint directory or hub id (default: random-init rubert-tiny2 shape)")
    parser.add_argument("--data", default=DATA, help="the shared data folder (default: %(default)s)")
    parser.add_argument("--tasks", nargs="+", choices=["rusentne", "rucola"], default=["rusentne", "rucola"])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per task (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="the steps are split into this many epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float,
                        help="peak learning rate (default: 5e-5 with --model, 5e-4 for the random init)")
    parser.add_argument("--mixed-precision", choices=["bf16", "fp16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", help="where models and splits go (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true", help="Keras progress per epoch")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.learning_rate is None:
        args.learning_rate = 5e-5 if args.model else 5e-4

    work = args.work_dir or tempfile.mkdtemp(prefix="rubert_tf_finetune_bench_")
    os.makedirs(work, exist_ok=True)
    model = args.model or random_tiny2(os.path.join(work, "random_tiny2"), args.data)
    print(f"model: {args.model or 'rubert-tiny2 architecture, random weights (' + model + ')'}; "
          f"steps={args.steps} batch={args.batch_size} max_length={args.max_length} lr={args.learning_rate} "
          f"mixed_precision={args.mixed_precision}")
    results = []
    for name in args.tasks:
        results.append(run_task(name, args, model, work))
        report(results[-1])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": args.model or "random-init rubert-tiny2", "args": vars(args), "results": results}, f,
                      indent=2, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
