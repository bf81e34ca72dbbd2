"""Fine-tune extractive QA on XQuAD-ru part 1 (split by article into train / test) and print SQuAD EM/F1.

    python benchmarks/finetune_qa.py --model /path/to/rubert-tiny2 --epochs 3
    python benchmarks/finetune_qa.py --epochs 1 --max-steps 20      # no --model: random-init tiny2 body

Not a test. Without --model (the real checkpoints cannot be downloaded on offline machines) it fine-tunes a
randomly initialised model with rubert-tiny2's architecture and real vocabulary: the numbers then show that
the path works and how fast, not how good RuBERT is. XQuAD-ru part 1 is small (24 articles, 632
questions); the first `--train-articles` articles train, the rest are the test set, so no context is in both.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def random_tiny2(directory):
    """A checkpoint of rubert-tiny2's architecture (its config.json) with random weights and its vocab."""
    import rubert_tf as rt

    source = os.path.join(DATA, "rubert-tiny2")
    config = rt.RuBertConfig.from_pretrained(source)
    tokenizer = rt.RuBertTokenizer.from_pretrained(source)
    rt.RuBertEncoder(config).save_pretrained(directory, tokenizer=tokenizer)
    return directory


def split_xquad(path, train_articles, directory):
    with open(path, encoding="utf-8-sig") as f:
        data = json.load(f)
    files = {}
    for name, articles in (("train", data["data"][:train_articles]), ("test", data["data"][train_articles:])):
        files[name] = os.path.join(directory, f"xquad-ru-{name}.json")
        with open(files[name], "w", encoding="utf-8") as f:
            json.dump({"version": data.get("version", "1.1"), "data": articles}, f, ensure_ascii=False)
        questions = sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
        print(f"{name}: {len(articles)} articles, {questions} questions", flush=True)
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint directory (default: random-init rubert-tiny2 architecture)")
    parser.add_argument("--data", default=os.path.join(DATA, "xquad-ru", "xquad.ru.part1.json"))
    parser.add_argument("--train-articles", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, help="cap on steps per epoch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--out", help="where the fine-tuned model goes (default: a temporary folder)")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from rubert_tf.finetune import finetune

    work = tempfile.mkdtemp(prefix="finetune_qa-")
    model = args.model or random_tiny2(os.path.join(work, "random-tiny2"))
    files = split_xquad(args.data, args.train_articles, work)
    started = time.time()
    metrics = finetune("qa", overwrite=True, model=model, train=files["train"], eval=files["test"], out=args.out or os.path.join(work, "qa"),
                       options={"stride": args.stride}, epochs=args.epochs, batch_size=args.batch_size,
                       learning_rate=args.learning_rate, max_length=args.max_length, max_steps=args.max_steps,
                       verbose=2)
    metrics["total_seconds"] = round(time.time() - started, 1)
    metrics["model"] = args.model or "random-init rubert-tiny2 architecture (no pretrained weights)"
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    print(f"XQuAD-ru part 1 test articles: EM {metrics['exact_match']:.2f}  F1 {metrics['f1']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
