"""Seq2seq fine-tuning benchmark: bert2bert on NTREX ru->en (or en->ru), BLEU/chrF on held-out pairs (not a test).

    /work/venv/bin/python benchmarks/finetune_seq2seq.py                          # random-init rubert-tiny2 shape
    /work/venv/bin/python benchmarks/finetune_seq2seq.py --model PATH             # any BERT checkpoint (warm start)
    /work/venv/bin/python benchmarks/finetune_seq2seq.py --steps 300 --num-layers 2 --hidden-size 128 --json out.json

Data: ../shared/data/ntrex-en-ru (1,500 line-aligned news sentences). A seeded shuffle holds out
--eval-pairs pairs; the model trains on the rest with `rubert_tf.finetune.finetune("seq2seq", ...)`
(AdamW, warmup + linear decay, length bucketing, bert2bert warm start: encoder and decoder both from
the checkpoint, new cross-attention), then generates for the held-out sources (greedy, or beam search
with --num-beams) and is scored with sacreBLEU's BLEU and chrF. The "copy the source" baseline is
printed beside them (names and numbers pass through untranslated).

Without --model the checkpoint is rubert-tiny2's architecture (its real config.json and vocab from
../shared/data/rubert-tiny2; the size flags shrink it) with random weights, since the published
weights cannot be downloaded here: a few hundred steps on 1,400 pairs from scratch learn the most
frequent English words, not translation, so expect BLEU near 0 and chrF in single digits. With a real
pretrained RuBERT the same command gives meaningful scores (bert2bert warm starts still need thousands
of steps and far more than 1,400 pairs to translate well).

One run on a shared 2-core CPU (--steps 150 --num-layers 2 --hidden-size 128 --max-length 32
--learning-rate 2e-3, 5.5 minutes): train loss 8.78 -> 7.23 (epoch means), held-out loss 6.85, BLEU
0.04, chrF 4.84 (copy-the-source baseline: BLEU 0.21, chrF 0.67); the output is "The the the ...".
"""

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")
sys.path.insert(0, ROOT)


def random_checkpoint(directory, data, overrides):
    """rubert-tiny2's architecture (optionally shrunk) and real vocab with random weights, HF layout."""
    import keras

    import rubert_tf as rt

    keras.utils.set_random_seed(0)
    tiny2 = os.path.join(data, "rubert-tiny2")
    tokenizer = rt.RuBertTokenizer.from_pretrained(tiny2)
    config = rt.RuBertConfig.from_pretrained(tiny2)
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    if "emb_size" in config.extra:  # rubert-tiny2's emb_size must equal hidden_size
        config.extra["emb_size"] = config.hidden_size
    rt.RuBertEncoder(config).save_pretrained(directory, tokenizer=tokenizer)
    return directory, config


def split_ntrex(data, work, direction, eval_pairs, seed):
    """Seeded shuffle of NTREX, the last `eval_pairs` held out; (train [src, tgt], eval [src, tgt]) file paths."""
    source, target = direction.split("-")
    lines = {}
    for lang in (source, target):
        with open(os.path.join(data, "ntrex-en-ru", f"train.{lang}"), encoding="utf-8") as f:
            lines[lang] = f.read().splitlines()
    order = list(range(len(lines[source])))
    random.Random(seed).shuffle(order)
    parts = {"train": order[:-eval_pairs], "eval": order[-eval_pairs:]}
    paths = {}
    for part, rows in parts.items():
        paths[part] = []
        for lang in (source, target):
            path = os.path.join(work, f"{part}.{lang}")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines[lang][i] for i in rows) + "\n")
            paths[part].append(path)
    return paths


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="BERT checkpoint to warm-start from (default: random rubert-tiny2 shape)")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--direction", default="ru-en", choices=["ru-en", "en-ru"])
    parser.add_argument("--eval-pairs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps (split into equal epochs)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=64, help="source and target tokens")
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--num-layers", type=int, help="random model: layers of encoder and decoder")
    parser.add_argument("--hidden-size", type=int, help="random model: width (heads = width / 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from rubert_tf.finetune import finetune
    from rubert_tf.metrics.generation import corpus_bleu, corpus_chrf

    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        if args.model:
            model, shape = args.model, "pretrained checkpoint"
        else:
            overrides = {"num_hidden_layers": args.num_layers, "hidden_size": args.hidden_size}
            if args.hidden_size:
                overrides["num_attention_heads"] = max(1, args.hidden_size // 64)
                overrides["intermediate_size"] = 2 * args.hidden_size
            model, config = random_checkpoint(os.path.join(work, "init"), args.data, overrides)
            shape = (f"random init, rubert-tiny2 vocab, {config.num_hidden_layers}+{config.num_hidden_layers} layers, "
                     f"hidden {config.hidden_size}")
        paths = split_ntrex(args.data, work, args.direction, args.eval_pairs, args.seed)
        train_pairs = len(read(paths["train"][0]))
        batches = math.ceil(train_pairs / args.batch_size)
        # Whole passes over the data when --steps allows, else one shorter epoch: epochs * per_epoch ~= steps.
        epochs = max(1, math.ceil(args.steps / batches))
        per_epoch = min(batches, math.ceil(args.steps / epochs))
        options = {"max_source_length": args.max_length, "max_target_length": args.max_length,
                   "num_beams": args.num_beams, "label_smoothing": args.label_smoothing}
        metrics = finetune("seq2seq", overwrite=True, model=model, train=paths["train"], eval=paths["eval"],
                           out=os.path.join(work, "out"), options=options, epochs=epochs, batch_size=args.batch_size,
                           learning_rate=args.learning_rate, max_length=args.max_length,
                           max_steps=per_epoch, seed=args.seed, verbose=0)
        sources, references = read(paths["eval"][0]), read(paths["eval"][1])

        from rubert_tf.models.seq2seq import RuBertSeq2Seq
        from rubert_tf.tasks import get_task

        trained = RuBertSeq2Seq.from_pretrained(os.path.join(work, "out"))
        samples = get_task("seq2seq").predict(trained, sources[:3], None, args.batch_size)

    results = {
        "task": f"NTREX {args.direction}, {train_pairs} train / {len(sources)} held-out pairs",
        "model": shape,
        "steps": metrics.get("optimizer_steps", epochs * per_epoch),
        "epochs": epochs,
        "train_loss_first_epoch": round(metrics["train_loss_first_epoch"], 3),
        "train_loss_last_epoch": round(metrics["train_loss_last_epoch"], 3),
        "eval_loss": round(metrics["loss"], 3),
        "bleu": round(metrics["bleu"], 2),
        "chrf": round(metrics["chrf"], 2),
        "copy_source_bleu": round(corpus_bleu(sources, references), 2),
        "copy_source_chrf": round(corpus_chrf(sources, references), 2),
        "num_beams": args.num_beams,
        "train_seconds": metrics["train_seconds"],
        "total_seconds": round(time.time() - started, 1),
        "samples": [{"source": s["text"], "generated": s["generated"], "reference": r}
                    for s, r in zip(samples, references)],
    }
    for key, value in results.items():
        if key != "samples":
            print(f"{key + ':':26}{value}")
    for sample in results["samples"]:
        print(json.dumps(sample, ensure_ascii=False))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, ensure_ascii=False, indent=2)
    return results


if __name__ == "__main__":
    main()
