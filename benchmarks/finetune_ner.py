"""Fine-tune a RuBERT NER tagger on factRuEval-2016 and print seqeval's entity-level P/R/F1 (not a test).

    /work/venv/bin/python benchmarks/finetune_ner.py --model PATH [--epochs 3] [--max-length 128]

factRuEval-2016's dev.bio (../shared/data/factrueval2016) is split by sentence order into a train
part (first 80 %) and a test part (the rest); its one malformed I-PER is read as B-PER (--repair-bio).
PATH is any checkpoint `from_pretrained` reads (HF, TF1 or our own layout). Without --model, a
rubert-tiny2-shaped model with rubert-tiny2's real vocabulary and RANDOM weights is built first: that
measures the pipeline and its speed, and its scores are far below a pretrained model's.
The test part is scored twice, by rubert_tf's metrics (through the task) and by seqeval itself.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def split_file(source, train_path, test_path, train_fraction):
    """Write the sentences (raw lines, so malformed tags stay as they are) into two files."""
    with open(source, encoding="utf-8") as f:
        blocks = [block for block in f.read().split("\n\n") if block.strip()]
    cut = int(len(blocks) * train_fraction)
    for path, part in ((train_path, blocks[:cut]), (test_path, blocks[cut:])):
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n\n".join(block.strip("\n") for block in part) + "\n")
    return cut, len(blocks) - cut


def random_tiny2(directory):
    import rubert_tf as rt

    tokenizer = rt.RuBertTokenizer.from_pretrained(os.path.join(DATA, "rubert-tiny2"))
    config = rt.RuBertConfig.from_pretrained(os.path.join(DATA, "rubert-tiny2"))
    rt.RuBertEncoder(config).save_pretrained(directory, tokenizer=tokenizer)
    return directory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint directory (default: random-weight rubert-tiny2 architecture)")
    parser.add_argument("--data", default=os.path.join(DATA, "factrueval2016", "dev.bio"))
    parser.add_argument("--train-fraction", type=float, default=0.8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-steps", type=int, help="cap on steps per epoch")
    parser.add_argument("--mixed-precision", choices=["bf16", "fp16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="where the fine-tuned model goes (default: a temporary folder)")
    args = parser.parse_args(argv)

    import keras
    import seqeval.metrics

    from rubert_tf.finetune import finetune
    from rubert_tf.models.token_classifier import RuBertTokenClassifier
    from rubert_tf.tasks import get_task

    work = tempfile.mkdtemp(prefix="finetune_ner_")
    train, test = os.path.join(work, "train.bio"), os.path.join(work, "test.bio")
    n_train, n_test = split_file(args.data, train, test, args.train_fraction)
    model = args.model or random_tiny2(os.path.join(work, "random-tiny2"))
    out = args.out or os.path.join(work, "model")
    print(f"data: {args.data}: {n_train} train / {n_test} test sentences; model: {model}", flush=True)

    started = time.time()
    metrics = finetune("ner", overwrite=True, model=model, train=train, eval=test, out=out, options={"repair_bio": True},
                       epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       max_length=args.max_length, mixed_precision=args.mixed_precision, seed=args.seed,
                       max_steps=args.max_steps, verbose=2)
    seconds = time.time() - started

    keras.config.set_dtype_policy("float32")
    task = get_task("ner")
    examples = task.read(test, {"repair_bio": True})
    tagger = RuBertTokenClassifier.from_pretrained(out)
    gold = [e["tags"] for e in examples]
    predicted = tagger.tag_words([e["tokens"] for e in examples], max_length=args.max_length)
    reference = {"precision": seqeval.metrics.precision_score(gold, predicted, zero_division=0),
                 "recall": seqeval.metrics.recall_score(gold, predicted, zero_division=0),
                 "f1": seqeval.metrics.f1_score(gold, predicted, zero_division=0)}
    print(seqeval.metrics.classification_report(gold, predicted, digits=4, zero_division=0))
    summary = {"train_loss_first_epoch": round(metrics["train_loss_first_epoch"], 4),
               "train_loss_last_epoch": round(metrics["train_loss_last_epoch"], 4),
               **{f"rubert_tf_{k}": round(metrics[k], 4) for k in ("precision", "recall", "f1")},
               **{f"seqeval_{k}": round(v, 4) for k, v in reference.items()},
               "word_accuracy": round(metrics["word_accuracy"], 4),
               "seconds": round(seconds, 1), "out": out}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
