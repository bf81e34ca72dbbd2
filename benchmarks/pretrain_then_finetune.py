"""Does MLM pretraining on ruslit help? Pretrain a rubert-tiny2-shaped model from scratch, fine-tune it on
RuSentNE-2023 and RuCoLA, and compare with the same model fine-tuned from random init.

    # the benchmark: a GPU job (on 2 CPU cores a pretraining step of batch 32 x 128 tokens takes ~6 s, most
    # of it the 83,828-token output layer; --vocab-size 16000 makes it several times cheaper)
    python benchmarks/pretrain_then_finetune.py --pretrain-steps 20000 --finetune-epochs 3
    # a short run that checks the path works (about 12 minutes on 2 busy CPU cores)
    python benchmarks/pretrain_then_finetune.py --pretrain-steps 60 --finetune-epochs 1 --finetune-max-steps 30 \
        --eval-steps 20

    # what fits a shared 2-core CPU: a smaller-than-tiny2 model (2 x 256), a ruslit vocab, T=64.
    # 400 steps x batch 64 (2026-11-30): held-out MLM acc 0.116, no win (pretrained vs random RuSentNE F1
    # 0.41/0.43, pos/neg 0.31/0.28, RuCoLA MCC 0.13/0.15; one fine-tuning seed).
    # 3000 steps x batch 32 (2026-11-30, nice -n 10 on 2 busy shared cores; pretraining 33 min at 0.43-1 s/step,
    # each fine-tuning run 3-5 min), fine-tuning seeds 0,1,2:
    nice -n 10 python benchmarks/pretrain_then_finetune.py --vocab-size 8000 --max-length 64 --num-layers 2 \
        --hidden-size 256 --num-heads 4 --intermediate-size 1024 --pretrain-steps 3000 --pretrain-batch-size 32 \
        --pretrain-learning-rate 1e-3 --eval-steps 20 --finetune-epochs 3 --finetune-train-limit 3200 \
        --finetune-learning-rate 5e-4 --seeds 0,1,2 --work /tmp/ptf3k
    # (to save wall time the 12 fine-tunings ran in parallel side processes calling this file's task_data and
    # finetune_one with the same arguments, the random-init ones during the pretraining; the same command with
    # --reuse-pretrained --reuse-finetuned then printed the table from their metrics.json files)
    #   (the pretraining itself: this command before --seeds existed, stopped once pretrained/ was written)
    #
    #   init          MLM acc     RuSentNE F1 (3) RuSentNE F1 pos/neg        RuSentNE acc          RuCoLA MCC
    #   pretrained     0.1609    0.4463 +- 0.0201    0.3104 +- 0.0229    0.5771 +- 0.0221    0.1456 +- 0.0313
    #   random-init    0.0000    0.4415 +- 0.0124    0.3035 +- 0.0177    0.5710 +- 0.0260    0.1404 +- 0.0371
    #   difference              +0.0048 +- 0.0301   +0.0069 +- 0.0406   +0.0060 +- 0.0276   +0.0052 +- 0.0542
    #     wins                          1/3 seeds           2/3 seeds           2/3 seeds           1/3 seeds
    #   (RuCoLA acc 0.6548 +- 0.0298 vs 0.6307 +- 0.0102, paired +0.0241 +- 0.0349, 2/3 seeds)
    #
    # STILL NO WIN: every paired difference is well inside its seed-to-seed spread. The MLM did not get past
    # the frequent-token plateau (held-out loss 9.01 -> 6.55, accuracy 0.16 after 3000 steps, flat at ~0.15-0.16
    # from step ~1250 on), so there is little for fine-tuning to inherit; a real test needs far more pretraining
    # (a GPU: the 20000-step command above) or an MLM recipe that leaves the plateau sooner on this budget.
    #
    # Recipe probes (2026-11-30 afternoon, same corpus/vocab/model, 1000 steps x 32, held-out MLM after 1000):
    #   unigram baseline on the held-out split: cross-entropy 7.25, always-"," accuracy 0.078
    #   lr 1e-3 (above): loss 6.74, acc 0.142 | lr 1e-3, dropout 0: 6.73, 0.145 | lr 3e-3: stuck at the
    #   unigram solution (acc 0.0754 from step 250 to 750, post-LN BERT does not take the higher rate)
    # and a smaller fine-tuning set (800 examples, 8 epochs, lr 2e-4, seed 0) with the 3000-step model:
    #   RuSentNE F1 0.408 vs 0.327 random, RuCoLA MCC 0.044 vs 0.158 random: opposite signs, seed noise.
    # 6000 steps (the 3000-step model continued for 3000 more at lr 1e-3, re-warmed; seed 1; 26 min alone at
    # ~0.3 s/step with the faster dropout): the plateau breaks, held-out MLM accuracy 0.202, loss 5.82 (3000
    # steps: 0.161 / 6.55). Fine-tuned with the settings above (3 seeds; the random-init runs reused from
    # /tmp/ptf3k, fine-tuned with the library of that morning):
    #   RuSentNE F1 (3) 6k 0.420 (0.409 0.431 0.421) vs random 0.442 (0.429 0.443 0.453)  -> worse
    #   RuCoLA MCC      6k 0.168 (0.182 0.141 0.182) vs random 0.140 (0.147 0.174 0.100)  -> +0.028, 2/3 seeds
    # Still no consistent win: the issue's "pretrained beats random" needs a longer (GPU) run.

Not a test. Steps:
1. ../shared/data/ruslit: every 20th document is held out, the rest is the pretraining corpus; both are
   packed by `prepare_corpus` (T=128) with rubert-tiny2's real vocabulary (cased; `--vocab-size N` learns
   a new WordPiece vocab on the training split instead).
2. `pretrain(...)`: rubert-tiny2's architecture (3 layers, hidden 312) from random weights, dynamic
   15% masking (whole-word with --whole-word-masking), AdamW + warmup/decay, for `--pretrain-steps`.
   Prints the masked-LM loss and accuracy on the held-out documents before and after.
3. `rubert_tf.finetune.finetune("classification", ...)` from (a) that checkpoint and (b) the same
   architecture with the same random init and vocabulary, on
   - RuSentNE-2023 (sentence + entity -> -1/0/1; its train_data.csv split 80/20 by row, seeded): macro-F1
     over the three classes and the official macro-F1 over positive/negative;
   - RuCoLA (in_domain_train -> in_domain_dev): MCC and accuracy.
ruslit is literary prose and poetry; RuSentNE is news, so gains there come from Russian itself, not the domain.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def split_ruslit(directory, every=20):
    """ruslit documents (blank-line-separated) -> train.txt and heldout.txt (every `every`-th document)."""
    with open(os.path.join(DATA, "ruslit", "ruslit_train.txt"), encoding="utf-8") as f:
        documents = [block.strip("\n") for block in f.read().split("\n\n") if block.strip()]
    heldout = documents[every - 1::every]
    train = [doc for i, doc in enumerate(documents) if (i + 1) % every]
    paths = {}
    for name, docs in (("train", train), ("heldout", heldout)):
        paths[name] = os.path.join(directory, f"ruslit_{name}.txt")
        with open(paths[name], "w", encoding="utf-8") as f:
            f.write("\n\n".join(docs) + "\n")
    print(f"ruslit: {len(train)} documents for pretraining, {len(heldout)} held out", flush=True)
    return paths


def split_rusentne(directory, seed=0, test_share=0.2):
    with open(os.path.join(DATA, "rusentne2023", "train_data.csv"), encoding="utf-8") as f:
        header, *rows = [line for line in f.read().split("\n") if line.strip()]
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - test_share))
    paths = {}
    for name, part in (("train", rows[:cut]), ("test", rows[cut:])):
        paths[name] = os.path.join(directory, f"rusentne_{name}.tsv")
        with open(paths[name], "w", encoding="utf-8") as f:
            f.write("\n".join([header] + part) + "\n")
    return paths


TASKS = {
    "RuSentNE-2023": {"options": {"text_column": "sentence", "text_pair_column": "entity", "label_column": "label"},
                      "scores": ("macro_f1", "macro_f1_pos_neg", "accuracy")},
    "RuCoLA": {"options": {"text_column": "sentence", "label_column": "acceptable"},
               "scores": ("mcc", "accuracy", "macro_f1")},
}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-steps", type=int, default=20_000)
    parser.add_argument("--pretrain-batch-size", type=int, default=32)
    parser.add_argument("--pretrain-learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--whole-word-masking", action="store_true")
    parser.add_argument("--vocab-size", type=int, help="learn a new vocab of this size on ruslit (default: tiny2's)")
    parser.add_argument("--eval-steps", type=int, default=40, help="held-out MLM batches to score")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--finetune-max-steps", type=int, help="cap on fine-tuning steps per epoch")
    parser.add_argument("--finetune-batch-size", type=int, default=32)
    parser.add_argument("--finetune-learning-rate", type=float, default=5e-5)
    parser.add_argument("--num-layers", type=int, help="smaller than rubert-tiny2 (3): e.g. 2 (labelled in the output)")
    parser.add_argument("--hidden-size", type=int, help="smaller than rubert-tiny2 (312): e.g. 256")
    parser.add_argument("--num-heads", type=int, help="attention heads (default: tiny2's 12; hidden must divide)")
    parser.add_argument("--intermediate-size", type=int, help="feed-forward width (default: tiny2's 600)")
    parser.add_argument("--finetune-train-limit", type=int,
                        help="fine-tune on the first N (shuffled, seeded) training examples of each task")
    parser.add_argument("--class-weight", choices=["balanced", "none"], default="balanced",
                        help="balanced (default): weigh classes by n / (classes * count), so a classifier gains "
                             "nothing from predicting the majority class")
    parser.add_argument("--reuse-pretrained", action="store_true",
                        help="with --work of an earlier run: keep its vocab, random init and pretrained model "
                             "(metrics from its metrics.json) and only fine-tune again")
    parser.add_argument("--reuse-finetuned", action="store_true",
                        help="with --work of an earlier run: load the metrics.json of fine-tunings that finished "
                             "there (same settings!) instead of running them again")
    parser.add_argument("--mixed-precision", choices=["auto", "bf16", "fp16"])
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initialisation, the pretraining and the RuSentNE split / training subset")
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",")],
                        help="fine-tuning seeds, comma-separated (e.g. 0,1,2; default: --seed): each fine-tunes "
                             "both inits again (classifier head, dropout, batch order); the table shows mean +- "
                             "std and the paired pretrained - random difference")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import rubert_tf as rt
    from rubert_tf.pretraining import prepare_corpus, pretrain
    from rubert_tf.pretraining.pretrain import build_config

    work = args.work or tempfile.mkdtemp(prefix="pretrain_then_finetune-")
    os.makedirs(work, exist_ok=True)
    started = time.time()
    pretrained_dir = os.path.join(work, "pretrained")
    reuse = args.reuse_pretrained and os.path.exists(os.path.join(pretrained_dir, "metrics.json"))
    ruslit = split_ruslit(work) if not reuse else {}
    if reuse and args.vocab_size:
        vocab = os.path.join(work, "vocab.txt")
    elif args.vocab_size:
        vocab = os.path.join(work, "vocab.txt")
        rt.train_vocab([ruslit["train"]], vocab_size=args.vocab_size, output_path=vocab)
        print(f"vocab: {args.vocab_size} WordPiece tokens learnt on the ruslit training split "
              f"({time.time() - started:.0f} s)", flush=True)
    else:
        vocab = os.path.join(DATA, "rubert-tiny2", "vocab.txt")
    tokenizer = rt.RuBertTokenizer(vocab)  # cased, as RuBERT
    corpora = {name: os.path.join(work, f"shards_{name}") for name in ruslit}
    for name, path in ruslit.items():  # (nothing to do when reusing an earlier run)
        info = prepare_corpus(path, corpora[name], tokenizer, max_length=args.max_length, overwrite=True,
                              progress=False)
        print(f"{name}: {info['num_sequences']} sequences of {args.max_length} tokens ({info['num_tokens']} tokens)",
              flush=True)

    overrides = {"num_layers": args.num_layers, "hidden_size": args.hidden_size, "num_heads": args.num_heads,
                 "intermediate_size": args.intermediate_size}
    config = build_config("cointegrated/rubert-tiny2", tokenizer.vocab_size, overrides)
    shape = (f"{config.num_hidden_layers} layers x hidden {config.hidden_size}, {config.num_attention_heads} heads, "
             f"FFN {config.intermediate_size}, vocab {config.vocab_size}")
    smaller = any(v is not None for v in overrides.values())
    label = f"{'smaller than rubert-tiny2' if smaller else 'rubert-tiny2-shaped'} ({shape})"
    print(f"model: {label}", flush=True)

    # (b) the random-init baseline: same architecture, vocab and initialisation seed.
    keras.utils.set_random_seed(args.seed)
    random_dir = os.path.join(work, "random-init")
    if not reuse:
        rt.RuBertEncoder(config).save_pretrained(random_dir, tokenizer=tokenizer)

    # (a) pretrained on ruslit from the same seed.
    pretrain_started = time.time()
    if reuse:
        with open(os.path.join(pretrained_dir, "metrics.json"), encoding="utf-8") as f:
            mlm = json.load(f)
        print(f"reusing {pretrained_dir} ({mlm['steps']} pretraining steps) and {random_dir}", flush=True)
    else:
        mlm = pretrain(overwrite=True, train=corpora["train"], eval=corpora["heldout"], out=pretrained_dir,
                       config="cointegrated/rubert-tiny2", vocab=vocab, overrides=overrides,
                       max_length=args.max_length, batch_size=args.pretrain_batch_size, steps=args.pretrain_steps,
                       learning_rate=args.pretrain_learning_rate, warmup_ratio=0.05,
                       whole_word=args.whole_word_masking, eval_steps=args.eval_steps,
                       checkpoint_every=max(1, min(250, args.pretrain_steps)), backup_every=200,
                       mixed_precision=args.mixed_precision, seed=args.seed, verbose=2)
    pretrain_seconds = time.time() - pretrain_started
    before, after = mlm["eval_before"], mlm["eval_after"]
    print(f"held-out ruslit MLM: loss {before['mlm_loss']:.3f} -> {after['mlm_loss']:.3f}, accuracy "
          f"{before['mlm_accuracy']:.4f} -> {after['mlm_accuracy']:.4f} after {mlm['steps']} steps "
          f"({mlm['train_seconds']} s, {mlm['sequences_per_second']} sequences/s)", flush=True)

    data = task_data(args, work)
    seeds = args.seeds or [args.seed]
    results = {"model": label, "pretraining": mlm, "finetuning": {}, "args": vars(args)}
    for seed in seeds:  # seed by seed, both inits in turn: an interrupted run still has paired results
        for task, (train, test) in data.items():
            for init, model in (("pretrained", pretrained_dir), ("random-init", random_dir)):
                metrics = finetune_one(args, task, init, model, train, test, work, seed)
                results["finetuning"].setdefault(f"{task} / {init}", {})[str(seed)] = metrics
                with open(os.path.join(work, "results.json"), "w", encoding="utf-8") as f:
                    json.dump(results, f, indent=2, ensure_ascii=False)

    results["seconds"] = {"pretraining": round(pretrain_seconds), "total": round(time.time() - started)}
    with open(os.path.join(work, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
    print_table(results, args, mlm)
    print(f"total {time.time() - started:.0f} s (pretraining {pretrain_seconds:.0f} s); everything in {work}")
    return 0


def finetune_one(args, task, init, model, train, test, work, seed):
    """One fine-tuning run (the same call for both inits); with --reuse-finetuned a finished run's metrics.json."""
    from rubert_tf.finetune import finetune

    out = os.path.join(work, f"{task}-{init}-seed{seed}")
    if args.reuse_finetuned and os.path.exists(os.path.join(out, "metrics.json")):
        with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        print(f"reusing {out}", flush=True)
    else:
        print(f"fine-tuning {task} from {init}, seed {seed} ...", flush=True)
        metrics = finetune("classification", overwrite=True, model=model, train=train, eval=test, out=out,
                           options=TASKS[task]["options"], epochs=args.finetune_epochs,
                           batch_size=args.finetune_batch_size, learning_rate=args.finetune_learning_rate,
                           max_length=args.max_length, mixed_precision=args.mixed_precision, seed=seed,
                           max_steps=args.finetune_max_steps, verbose=2,
                           class_weight=None if args.class_weight == "none" else args.class_weight)
    print(f"  {task} / {init} / seed {seed}: " + ", ".join(
        f"{k} {metrics[k]:.4f}" for k in ("macro_f1", "macro_f1_pos_neg", "mcc", "accuracy") if k in metrics),
        flush=True)
    return metrics


def task_data(args, work):
    """{task: (train, test)}: RuSentNE's seeded 80/20 split, RuCoLA's train/dev; --finetune-train-limit applied."""
    rusentne = split_rusentne(work, seed=args.seed)
    data = {"RuSentNE-2023": (rusentne["train"], rusentne["test"]),
            "RuCoLA": (os.path.join(DATA, "rucola", "in_domain_train.csv"),
                       os.path.join(DATA, "rucola", "in_domain_dev.csv"))}
    if args.finetune_train_limit:
        data = {task: (limit_rows(train, args.finetune_train_limit, work, task, args.seed), test)
                for task, (train, test) in data.items()}
    return data


def limit_rows(path, limit, work, task, seed):
    """The first `limit` rows of a CSV/TSV after a seeded shuffle (header kept; one example per line)."""
    with open(path, encoding="utf-8") as f:
        header, *rows = [line for line in f.read().split("\n") if line.strip()]
    random.Random(seed).shuffle(rows)
    out = os.path.join(work, f"{task}_train_{limit}{os.path.splitext(path)[1]}")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join([header] + rows[:limit]) + "\n")
    return out


def print_table(results, args, mlm):
    """Mean +- std over the fine-tuning seeds, and the paired (same seed) pretrained - random difference."""
    import statistics

    before, after = mlm["eval_before"], mlm["eval_after"]
    finetuning = results["finetuning"]
    seeds = sorted(set(finetuning["RuSentNE-2023 / pretrained"]) & set(finetuning["RuSentNE-2023 / random-init"])
                   & set(finetuning["RuCoLA / pretrained"]) & set(finetuning["RuCoLA / random-init"]), key=int)
    print(f"\nmodel: {results['model']}; pretraining {mlm['steps']} steps x batch {mlm['batch_size']} x "
          f"{mlm['max_length']} tokens on ruslit; fine-tuning {args.finetune_epochs} epochs, batch "
          f"{args.finetune_batch_size}, lr {args.finetune_learning_rate}, class weights {args.class_weight}, "
          f"train limit {args.finetune_train_limit}; fine-tuning seeds {','.join(seeds)} (mean +- std)")
    columns = (("RuSentNE F1 (3)", "RuSentNE-2023", "macro_f1"), ("RuSentNE F1 pos/neg", "RuSentNE-2023",
                                                                   "macro_f1_pos_neg"),
               ("RuSentNE acc", "RuSentNE-2023", "accuracy"), ("RuCoLA MCC", "RuCoLA", "mcc"),
               ("RuCoLA acc", "RuCoLA", "accuracy"))

    def cell(values, sign=""):
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):{sign}.4f} +- {std:.4f}"

    print(f"{'init':12} {'MLM acc':>8} " + " ".join(f"{c[0]:>19}" for c in columns))
    for init, accuracy in (("pretrained", after["mlm_accuracy"]), ("random-init", before["mlm_accuracy"])):
        print(f"{init:12} {accuracy:8.4f} " + " ".join(
            f"{cell([finetuning[f'{task} / {init}'][s][key] for s in seeds]):>19}" for _, task, key in columns))
    differences = [[finetuning[f"{task} / pretrained"][s][key] - finetuning[f"{task} / random-init"][s][key]
                    for s in seeds] for _, task, key in columns]
    print(f"{'difference':12} {'':8} " + " ".join(f"{cell(d, '+'):>19}" for d in differences))
    print(f"{'  wins':12} {'':8} " + " ".join(f"{f'{sum(x > 0 for x in d)}/{len(d)} seeds':>19}"
                                               for d in differences))
    print("(MLM acc: held-out ruslit masked-token accuracy; random-init's = the model before its first "
          "pretraining step, same seed. difference: pretrained - random-init with the same fine-tuning seed)")


if __name__ == "__main__":
    sys.exit(main())
