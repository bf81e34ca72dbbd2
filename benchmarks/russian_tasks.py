"""Issue 13's recipe benchmark: does pretraining (MLM and/or ELECTRA-style RTD, a fixed wall-clock budget each)
on ruslit + the tasks' own training texts beat random init on four Russian tasks? One command, resumable; not
a test.

    # the measured run (defaults: 2 objectives x 60 min pretraining, 4 tasks x 3 inits x 3 seeds;
    # estimated 4-5 hours on 2 CPU cores, most of it the 36 fine-tunings)
    nice -n 10 python benchmarks/russian_tasks.py --work /data/rt_bench
    # smoke run (a few minutes): tiny vocab, 1-minute pretraining, 200 training examples, 1 epoch
    nice -n 10 python benchmarks/russian_tasks.py --pretrain-minutes 1 --objectives mlm --tasks rusentne,rucola \
        --seeds 0 --train-limit 200 --finetune-epochs 1 --vocab-size 2000 --calibration-steps 24 --no-write-benchmarks \
        --work /tmp/rt_smoke

Protocol (every split is seeded and deterministic, written under --work/data, and nothing is scored on
rows it was trained on):
1. Data (../shared/data, see its README):
   - ruslit (blank-line-separated works): every 20th work is held out (held-out MLM/RTD accuracy), the rest
     is the pretraining corpus and the vocabulary's training text;
   - RuSentNE-2023 train_data.csv, 80/20 by row (seeded shuffle; the same split as pretrain_then_finetune.py):
     classification of text=sentence with pair=entity into -1/0/1, scored by macro-F1 over the 3 classes and
     the official macro-F1 over positive/negative (a sentence with two entities may be in both parts, once
     per entity: the split is by row, as in the issue);
   - RuCoLA in_domain_train -> in_domain_dev: MCC (official) and accuracy;
   - factRuEval-2016 dev.bio: the file has no document marks, so its sentences are cut into blocks of 20
     consecutive sentences (neighbouring sentences of one news text stay together) and a seeded 20% of the
     blocks is the test part; entity-level micro-F1 as the NER task's evaluate reports it (seqeval's);
   - XQuAD-ru part 1: a seeded 20% of its 24 articles is the test part (no context is in both): SQuAD EM/F1.
   Full training sets unless --train-limit N (a seeded subset of N training examples per task; tests stay
   whole).
   Pretraining text (--corpus): "ruslit+tasks" (default) is the ruslit training split plus, as task-adaptive
   pretraining (Gururangan et al., 2020), the raw texts of every task's training part (RuSentNE sentences,
   RuCoLA sentences, factRuEval sentences, XQuAD contexts and questions; no labels) and NTREX's Russian side
   (news, scored by no task), each text once, and none that is also a text of any test part
   (work/data/task_texts.txt); "ruslit" is the ruslit training split alone. ruslit is literary prose while
   three of the four tasks are news, and ruslit alone is 0.77 M tokens.
2. Vocabulary: a --vocab-size (16k) cased WordPiece learnt on the pretraining text (rt.train_vocab), unless
   --vocab is given; the random-init baseline uses the same vocabulary.
3. Sequence lengths from the data: each task's training inputs ([CLS] text [SEP] (pair [SEP]); NER: the
   words' pieces + 2; QA: question (at most 64 pieces) + context + 3) are tokenized with that vocab and a
   task's max_length is their --max-length-quantile (0.95), rounded up to a multiple of 16, at most
   --max-length-cap (256); the distributions are printed. Pretraining length: the largest of the four
   tasks' lengths (so every position a fine-tuning uses was pretrained; the cap when XQuAD's contexts reach
   it) unless --pretrain-max-length; the pretraining text is packed at that length by prepare_corpus (held-out:
   ruslit's held-out works).
   All four tasks are measured whatever --tasks says, so the pretraining does not depend on --tasks.
4. Model: rubert-tiny2's config with 4 layers x hidden 256, 4 heads, FFN 1024 (build_config overrides),
   the vocabulary of step 2. The random-init baseline is this architecture + vocab (work/random-init);
   finetune(init="random") builds it from that config without loading weights, seeded by the run's seed.
5. Pretraining, per objective in --objectives (mlm, rtd): a wall-clock budget of --pretrain-minutes. A
   calibration run (work/calibrate-<objective>, --calibration-steps steps in 3 epochs, at most 1-3 minutes,
   thrown away; cached in work/calibration-<objective>.json) measures seconds per step (TensorBoard's
   steps/s windows after the first, i.e. without graph tracing); the planned steps (budget x 0.97 / seconds
   per step, the rest for validation and backups) set the schedule, so its decay ends near the budget, and
   max_minutes is the hard stop. Whole-word masking, AdamW, --pretrain-lr-schedule (linear), 5% warmup.
   Held-out accuracies before/after come from the metrics.json pretrain writes (a resumed run's has no
   "before": pretrain measures it only when it starts from scratch).
6. Fine-tuning: every task x init (random, then each pretrained objective) x seed (--seeds), with
   rubert_tf.finetune.finetune: batch 32, --finetune-epochs / --finetune-learning-rate per task, class
   weights "balanced" for the classification tasks, lr_schedule --lr-schedule ("auto": linear decay from
   pretrained weights, constant from random init), the task's max_length of step 3.
7. Baseline: TF-IDF char_wb 1-5-grams + logistic regression (class_weight balanced, C chosen by 3-fold
   cross-validation on the training part) on the same splits for RuSentNE (entity + " [SEP] " + sentence)
   and RuCoLA, scored with the library's metrics. keras-hub's recipe figure from the issue (RuSentNE
   macro-F1 0.528, same protocol) is shown as a quoted reference: quoted, not run here.
8. Output: a markdown table (mean ± std over seeds, paired pretrained - random differences with wins k/n,
   the baseline, held-out MLM/RTD accuracy, wall time per stage, command, date, load, library commit),
   printed and written between <!-- russian_tasks:begin --> / <!-- russian_tasks:end --> in BENCHMARKS.md
   (appended when the markers are missing; --no-write-benchmarks: not written), and work/results.json.

Resuming: run the same command with the same --work. Finished steps are not redone: the splits, vocab,
lengths, packed corpus and random-init checkpoint are reused, a pretraining or fine-tuning whose out folder
has metrics.json is read back, one with backup/ (killed) continues at its last backup (resume=True; a
pretraining then gets the budget it has left, estimated from the steps done). The settings that change
results are kept in work/settings.json; another invocation with other values for them is refused (use
another --work). --tasks, --seeds and --objectives may grow between invocations.

Results: BENCHMARKS.md, section "Russian tasks" (reduced runs so far: 30-40 minutes of pretraining, RuSentNE
and RuCoLA first; see there for which).
"""

import argparse
import contextlib
import csv
import datetime
import glob
import inspect
import json
import math
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))

TASKS = ("rusentne", "rucola", "factrueval", "xquad")
OBJECTIVES = ("mlm", "rtd")
CORPORA = ("ruslit", "ruslit+tasks")
TASK_TITLES = {"rusentne": "RuSentNE-2023", "rucola": "RuCoLA", "factrueval": "factRuEval-2016",
               "xquad": "XQuAD-ru"}
TASK_KINDS = {"rusentne": "classification", "rucola": "classification", "factrueval": "ner", "xquad": "qa"}
TASK_OPTIONS = {"rusentne": {"text_column": "sentence", "text_pair_column": "entity", "label_column": "label"},
                "rucola": {"text_column": "sentence", "label_column": "acceptable"},
                "factrueval": {"repair_bio": True},  # dev.bio has one I-PER after O
                "xquad": {}}
# (metric key in the task's evaluate, label); the first is the task's main metric.
TASK_METRICS = {"rusentne": (("macro_f1", "macro-F1 (3 classes)"), ("macro_f1_pos_neg", "macro-F1 pos/neg (official)")),
                "rucola": (("mcc", "MCC (official)"), ("accuracy", "accuracy")),
                "factrueval": (("f1", "entity micro-F1"),),
                "xquad": (("exact_match", "EM (%)"), ("f1", "F1 (%)"))}
BASELINE_TASKS = ("rusentne", "rucola")
QUOTED = {("rusentne", "macro_f1"): "0.528 (keras-hub recipe, issue 13)"}
DEFAULT_EPOCHS = {"rusentne": 4, "rucola": 4, "factrueval": 8, "xquad": 8}
DEFAULT_LEARNING_RATE = 1e-4
EPOCHS = 4  # a pretraining's Keras epochs: a kept checkpoint and a held-out validation after each
BEGIN, END = "<!-- russian_tasks:begin -->", "<!-- russian_tasks:end -->"
# argparse names whose values change the results: a --work folder keeps them (settings.json).
RESULT_SETTINGS = ("seed", "corpus", "vocab_size", "vocab", "max_length_quantile", "max_length_cap",
                   "pretrain_max_length", "num_layers", "hidden_size", "num_heads", "intermediate_size", "pretrain_minutes",
                   "pretrain_steps", "calibration_steps", "pretrain_batch_size", "pretrain_learning_rate",
                   "pretrain_lr_schedule", "pretrain_warmup_steps", "pretrain_min_lr_ratio", "finetune_epochs",
                   "finetune_learning_rate", "finetune_batch_size", "lr_schedule", "train_limit", "mixed_precision")


# ============================================================ pure helpers (tests/test_russian_tasks_benchmark.py)

def split_documents(text, every=20):
    """Blank-line-separated documents -> (training documents, held-out documents: every `every`-th)."""
    documents = [block.strip("\n") for block in text.split("\n\n") if block.strip()]
    return ([doc for i, doc in enumerate(documents) if (i + 1) % every],
            documents[every - 1::every])


def split_rows(rows, seed=0, test_share=0.2):
    """Seeded shuffle, then the first (1 - test_share) are training rows: (train, test)."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - test_share))
    return rows[:cut], rows[cut:]


def split_blocks(items, block_size=20, seed=0, test_share=0.2):
    """Consecutive items cut into blocks of `block_size`; a seeded `test_share` of the blocks (at least one)
    is the test part. Each part keeps the original order: (train, test)."""
    blocks = [list(range(i, min(i + block_size, len(items)))) for i in range(0, len(items), block_size)]
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    test_blocks = set(order[:max(1, round(len(blocks) * test_share))]) if len(blocks) > 1 else set()
    test = [items[i] for b, block in enumerate(blocks) if b in test_blocks for i in block]
    train = [items[i] for b, block in enumerate(blocks) if b not in test_blocks for i in block]
    return train, test


def split_articles(articles, seed=0, test_share=0.2):
    """SQuAD articles: a seeded `test_share` of them (at least one) is the test part, original order kept."""
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    test = set(order[:max(1, round(len(articles) * test_share))])
    return ([a for i, a in enumerate(articles) if i not in test], [a for i, a in enumerate(articles) if i in test])


def limit_items(items, limit, seed=0):
    """The first `limit` items after a seeded shuffle (all of them, in order, when limit is None)."""
    if not limit or limit >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    keep = set(order[:limit])
    return [item for i, item in enumerate(items) if i in keep]


def limit_questions(articles, limit, seed=0):
    """SQuAD articles with only a seeded `limit` of their questions (paragraphs left without one dropped)."""
    positions = [(a, p, q) for a, article in enumerate(articles) for p, paragraph in enumerate(article["paragraphs"])
                 for q in range(len(paragraph["qas"]))]
    keep = set(limit_items(positions, limit, seed))
    out = []
    for a, article in enumerate(articles):
        paragraphs = []
        for p, paragraph in enumerate(article["paragraphs"]):
            qas = [qa for q, qa in enumerate(paragraph["qas"]) if (a, p, q) in keep]
            if qas:
                paragraphs.append(dict(paragraph, qas=qas))
        if paragraphs:
            out.append(dict(article, paragraphs=paragraphs))
    return out


def task_corpus_documents(train_texts, test_texts):
    """Task-adaptive pretraining text: {task: training texts} -> one document per task (a line per text, in
    order, duplicates dropped), without any text that is also a test text of any task, so nothing scored is
    ever pretrained on. Returns (documents, {task: texts kept})."""
    def one_line(text):  # the corpus reader splits documents at blank lines
        return " ".join(text.split())

    excluded = {one_line(t) for texts in test_texts.values() for t in texts}
    documents, kept = [], {}
    for task, texts in train_texts.items():
        seen, lines = set(), []
        for text in texts:
            line = one_line(text)
            if line and line not in seen and line not in excluded:
                seen.add(line)
                lines.append(line)
        kept[task] = len(lines)
        if lines:
            documents.append("\n".join(lines))
    return documents, kept


def quantile(values, q):
    """The q-quantile of `values` with linear interpolation (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def pick_max_length(lengths, q=0.95, cap=256, multiple=16):
    """The q-quantile of the token lengths, rounded up to a multiple of `multiple`, at most `cap`."""
    value = multiple * math.ceil(quantile(lengths, q) / multiple)
    return int(max(multiple, min(cap, value)))


def length_summary(lengths, chosen):
    """The distribution printed and stored: count, mean, quantiles, max, share longer than `chosen`."""
    return {"count": len(lengths), "mean": round(statistics.mean(lengths), 1),
            **{f"p{int(q * 100)}": round(quantile(lengths, q), 1) for q in (0.5, 0.9, 0.95, 0.99)},
            "max": max(lengths), "max_length": chosen,
            "truncated_share": round(sum(x > chosen for x in lengths) / len(lengths), 4)}


def parse_per_task(text, defaults, cast, name):
    """"4" (every task) or "rusentne=4,xquad=8" (the others keep `defaults`) -> {task: value}."""
    values = dict(defaults)
    text = str(text).strip()
    if text and "=" not in text:
        return {task: cast(text) for task in values}
    for part in filter(None, (p.strip() for p in text.split(","))):
        task, sep, value = part.partition("=")
        if not sep or task.strip() not in values:
            raise ValueError(f"{name}: expected a number or TASK=VALUE pairs with TASK in {', '.join(values)}, "
                             f"got {part!r}")
        values[task.strip()] = cast(value)
    return values


def parse_list(text, choices, name):
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    unknown = [x for x in items if x not in choices]
    if unknown or not items:
        raise ValueError(f"{name}: expected a comma-separated list from {', '.join(choices)}, got {text!r}")
    return list(dict.fromkeys(items))


def mean_std(values):
    """(mean, sample std; 0 for one value) or None for no values."""
    values = [float(v) for v in values]
    if not values:
        return None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired_difference(values, reference):
    """{seed: value} vs {seed: reference value} on the seeds both have: mean/std of the differences, wins."""
    seeds = sorted(set(values) & set(reference), key=str)
    differences = [float(values[s]) - float(reference[s]) for s in seeds]
    if not differences:
        return None
    mean, std = mean_std(differences)
    return {"mean": mean, "std": std, "wins": sum(d > 0 for d in differences), "n": len(differences),
            "differences": differences}


def metric_digits(task):
    return 2 if task == "xquad" else 4  # SQuAD EM/F1 are percentages


def format_cell(values, digits=4):
    stats = mean_std(values)
    if stats is None:
        return "–"
    return f"{stats[0]:.{digits}f} ± {stats[1]:.{digits}f} (n={len(values)})"


def format_difference(difference, digits=4):
    if difference is None:
        return "–"
    return (f"{difference['mean']:+.{digits}f} ± {difference['std']:.{digits}f}, "
            f"wins {difference['wins']}/{difference['n']}")


def format_seconds(seconds):
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _transition(before, after, key):
    values = [d.get(key) if isinstance(d, dict) else None for d in (before, after)]
    if values[1] is None:
        return "–"
    return f"{values[0]:.4f} → {values[1]:.4f}" if values[0] is not None else f"? → {values[1]:.4f}"


def results_table(results):
    """The main table: one row per task and metric, one column per init (mean ± std over seeds), the
    paired difference of each pretrained init vs random init, the TF-IDF baseline, the quoted reference."""
    inits = results.get("inits") or ["random"]
    pretrained = [init for init in inits if init != "random"]
    header = (["task", "metric", "TF-IDF char + LR", "random init"]
              + [c for init in pretrained for c in (f"pretrained {init.upper()}", f"Δ {init.upper()} − random")]
              + ["quoted, not run here"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    finetuning = results.get("finetuning", {})
    for task in results.get("tasks", []):
        runs = finetuning.get(task, {})
        for key, label in TASK_METRICS[task]:
            digits = metric_digits(task)
            by_init = {init: {seed: m[key] for seed, m in runs.get(init, {}).items() if key in m} for init in inits}
            baseline = (results.get("baseline") or {}).get(task)
            cells = [TASK_TITLES[task], label,
                     f"{baseline[key]:.{digits}f}" if baseline and key in baseline else "–",
                     format_cell(list(by_init["random"].values()), digits)]
            for init in pretrained:
                cells += [format_cell(list(by_init[init].values()), digits),
                          format_difference(paired_difference(by_init[init], by_init["random"]), digits)]
            cells.append(QUOTED.get((task, key), "–"))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trained_steps(metrics, out=None):
    """Optimizer steps a pretraining did: the global step of its last kept checkpoint (written when training
    ends) when `out` has one, else from metrics.json (where the time limit's count starts at the last,
    possibly resumed, call and includes the batches a mid-epoch resume skips)."""
    steps = [int(os.path.basename(p)[len("ckpt-"):-len(".json")])
             for p in glob.glob(os.path.join(out, "checkpoints", "ckpt-*.json"))] if out else []
    if steps:
        return max(steps)
    stopped = metrics.get("stopped_by_time_limit_after_steps")
    if stopped:
        return (metrics.get("resumed_from_step") or 0) + stopped
    return metrics.get("steps", "–")


def pretraining_table(results):
    if not results.get("pretraining"):
        return "(no pretraining in this invocation: --skip-pretrain)"
    lines = ["| objective | planned steps | trained steps | training time (budget) | s/step (calibrated) | "
             "held-out MLM acc before → after | held-out MLM loss before → after | "
             "held-out RTD acc before → after | held-out RTD AUC before → after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for objective, info in (results.get("pretraining") or {}).items():
        if info.get("skipped"):
            lines.append(f"| {objective} | {info['skipped']} |  |  |  |  |  |  |  |")
            continue
        metrics, plan = info.get("metrics") or {}, info.get("plan") or {}
        before, after = metrics.get("eval_before") or plan.get("eval_before"), metrics.get("eval_after")
        resumed = metrics.get("resumed_from_step") or 0
        trained = str(trained_steps(metrics, info.get("out")))
        if metrics.get("stopped_by_time_limit_after_steps"):
            trained += " (time limit)"
        spent = format_seconds(metrics.get("train_seconds"))
        if resumed:
            trained += f", resumed at {resumed}"
            spent += " in the resumed call"
        lines.append(
            f"| {objective} | {plan.get('planned_steps', '–')} | {trained} | {spent} "
            f"({plan.get('budget_minutes')} min) | {plan.get('seconds_per_step', float('nan')):.3f} "
            f"({plan.get('source', '?')}) | "
            f"{_transition(before, after, 'mlm_accuracy')} | {_transition(before, after, 'mlm_loss')} | "
            f"{_transition(before, after, 'rtd_accuracy')} | {_transition(before, after, 'rtd_auc')} |")
    return "\n".join(lines)


def timings_table(results):
    lines = ["| stage | wall time |", "|---|---|"]
    for stage, seconds in (results.get("stage_seconds") or {}).items():
        lines.append(f"| {stage} | {format_seconds(seconds)} |")
    return "\n".join(lines)


def markdown_report(results):
    """The BENCHMARKS.md section (without its markers) from results.json's dict."""
    model, ft = results.get("model", {}), results.get("finetune_settings", {})
    lengths = results.get("lengths", {})
    splits = results.get("splits", {})
    invocation = results.get("invocation", {})
    corpus = results.get("corpus", "ruslit")
    corpus_text = {"ruslit": "the ruslit training split",
                   "ruslit+tasks": "the ruslit training split + the four tasks' training texts + NTREX ru "
                                   "(task-adaptive; every test text removed)"}.get(corpus, corpus)
    text = [
        f"## Russian tasks: pretraining on {corpus} vs random init (benchmarks/russian_tasks.py, issue 13)",
        "",
        f"- date: {invocation.get('date', '?')}; library commit: {results.get('commit') or 'unknown'}",
        f"- command: `{invocation.get('command', '?')}` ({results.get('invocations', 1)} invocation(s) of this "
        f"--work; this one {format_seconds(invocation.get('seconds'))})",
        f"- load (`uptime`) at start: {invocation.get('load_start', '?')}; at end: {invocation.get('load_end', '?')}",
        f"- model: {model.get('description', '?')}; vocabulary: {results.get('vocab', {}).get('description', '?')}",
        f"- pretraining text: {corpus_text}"
        + ("; kept texts: " + ", ".join(f"{k} {v}" for k, v in results["task_corpus"].items())
           if results.get("task_corpus") else ""),
        "- max_length per task (quantile {q} of the training inputs' token lengths, multiple of 16, cap {cap}): "
        .format(q=results.get("max_length_quantile"), cap=results.get("max_length_cap"))
        + ", ".join(f"{TASK_TITLES[t]} {v['max_length']} (p95 {v['p95']}, max {v['max']}, "
                    f"{100 * v['truncated_share']:.1f}% cut)" for t, v in lengths.items())
        + f"; pretraining {results.get('pretrain_max_length', '?')}",
        "- splits (train / test): " + ", ".join(
            f"{TASK_TITLES.get(t, t)} {s['train']} / {s['test']} {s['unit']}" for t, s in splits.items()),
        f"- fine-tuning: {ft.get('description', '?')}",
        "",
        results_table(results),
        "",
        "Mean ± sample std over the fine-tuning seeds; Δ = pretrained − random init with the same seed (mean ± std "
        "of the per-seed differences; wins = seeds where pretrained is higher). TF-IDF char + LR: char_wb 1-5-gram "
        "TF-IDF + logistic regression (balanced class weights, C by 3-fold CV on the training part), same splits. "
        "The quoted column is a figure quoted from the issue, not run here.",
        "",
        "Pretraining (held-out: ruslit's held-out works; before = the seeded init):",
        "",
        pretraining_table(results),
        "",
        "Wall time per stage:",
        "",
        timings_table(results),
    ]
    if results.get("notes"):
        text += [""] + [f"- {note}" for note in results["notes"]]
    return "\n".join(text) + "\n"


def replace_section(document, section):
    """`document` with the text between the markers replaced by `section` (markers kept), or with the
    marked section appended at the end when the markers are missing."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    start, end = document.find(BEGIN), document.find(END)
    if start != -1 and end > start:
        return document[:start] + block + document[end + len(END):]
    return document.rstrip("\n") + ("\n\n" if document.strip() else "") + block + "\n"


def git_commit(repo):
    """The commit checked out in `repo`, read from .git's files (no git process), or None."""
    try:
        git = os.path.join(repo, ".git")
        if os.path.isfile(git):  # a worktree or submodule: "gitdir: PATH"
            with open(git, encoding="utf-8") as f:
                git = os.path.normpath(os.path.join(repo, f.read().split(":", 1)[1].strip()))
        common = git
        if os.path.isfile(os.path.join(git, "commondir")):
            with open(os.path.join(git, "commondir"), encoding="utf-8") as f:
                common = os.path.normpath(os.path.join(git, f.read().strip()))
        with open(os.path.join(git, "HEAD"), encoding="utf-8") as f:
            head = f.read().strip()
        if not head.startswith("ref:"):
            return head
        ref = head[4:].strip()
        for base in (git, common):
            if os.path.isfile(os.path.join(base, ref)):
                with open(os.path.join(base, ref), encoding="utf-8") as f:
                    return f.read().strip()
        with open(os.path.join(common, "packed-refs"), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except (OSError, IndexError):
        pass
    return None


# ============================================================ small I/O helpers

def load_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_json(path, data):
    """Atomic: a killed run never leaves half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
    os.replace(temporary, path)


def write_text(path, text):
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def load_average():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


class Timings:
    """Wall seconds per stage, kept in work/timings.json across invocations (a skipped stage keeps the
    time of the invocation that ran it)."""

    def __init__(self, path):
        self.path = path
        self.values = load_json(path, {})

    @contextlib.contextmanager
    def stage(self, name, record=True):
        print(f"\n=== {name} ...", flush=True)
        started = time.time()
        yield
        seconds = time.time() - started
        if record:
            self.values[name] = round(seconds, 1)
            save_json(self.path, self.values)
        print(f"=== {name}: {seconds:.1f} s", flush=True)

    def set(self, name, seconds):
        self.values[name] = round(seconds, 1)
        save_json(self.path, self.values)


# ============================================================ 1. splits

def read_lines(path):
    with open(path, encoding="utf-8-sig") as f:
        return [line for line in f.read().split("\n") if line.strip()]


def write_table_rows(path, header, rows):
    """One example a line (the data sets have no multi-line records); header first."""
    write_text(path, "\n".join([header] + rows) + "\n")


def make_splits(work, seed, train_limit):
    """Writes work/data/* (deterministic: the same files on every invocation) and returns {task or "ruslit": info}."""
    folder = os.path.join(work, "data")
    os.makedirs(folder, exist_ok=True)
    splits = {}

    # ruslit: every 20th work held out
    train_txt, heldout_txt = os.path.join(folder, "ruslit_train.txt"), os.path.join(folder, "ruslit_heldout.txt")
    with open(os.path.join(DATA, "ruslit", "ruslit_train.txt"), encoding="utf-8") as f:
        train_docs, heldout_docs = split_documents(f.read())
    for path, docs in ((train_txt, train_docs), (heldout_txt, heldout_docs)):
        if not os.path.exists(path):
            write_text(path, "\n\n".join(docs) + "\n")
    splits["ruslit"] = {"train": len(train_docs), "test": len(heldout_docs), "unit": "works",
                        "train_path": train_txt, "test_path": heldout_txt}

    # RuSentNE: 80/20 by row
    header, *rows = read_lines(os.path.join(DATA, "rusentne2023", "train_data.csv"))
    train, test = split_rows(rows, seed)
    train = limit_items(train, train_limit, seed)
    paths = {"train_path": os.path.join(folder, "rusentne_train.tsv"),
             "test_path": os.path.join(folder, "rusentne_test.tsv")}
    for key, part in (("train_path", train), ("test_path", test)):
        write_table_rows(paths[key], header, part)
    splits["rusentne"] = {"train": len(train), "test": len(test), "unit": "rows", **paths}

    # RuCoLA: train -> dev (a CSV with quoted fields: rewritten with csv only when limited)
    rucola_train = os.path.join(DATA, "rucola", "in_domain_train.csv")
    with open(rucola_train, encoding="utf-8", newline="") as f:
        header_row, *records = list(csv.reader(f))
    with open(os.path.join(DATA, "rucola", "in_domain_dev.csv"), encoding="utf-8", newline="") as f:
        dev_count = sum(1 for _ in csv.reader(f)) - 1
    if train_limit:
        records = limit_items(records, train_limit, seed)
        limited = os.path.join(folder, f"rucola_train_{train_limit}.csv")
        with open(limited, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header_row)
            writer.writerows(records)
        rucola_train = limited
    splits["rucola"] = {"train": len(records), "test": dev_count, "unit": "rows", "train_path": rucola_train,
                        "test_path": os.path.join(DATA, "rucola", "in_domain_dev.csv")}

    # factRuEval: blocks of 20 consecutive sentences, a seeded 20% of the blocks for the test
    with open(os.path.join(DATA, "factrueval2016", "dev.bio"), encoding="utf-8") as f:
        sentences = [block.strip("\n") for block in f.read().split("\n\n") if block.strip()]
    train, test = split_blocks(sentences, 20, seed)
    train = limit_items(train, train_limit, seed)
    paths = {"train_path": os.path.join(folder, "factrueval_train.bio"),
             "test_path": os.path.join(folder, "factrueval_test.bio")}
    for key, part in (("train_path", train), ("test_path", test)):
        write_text(paths[key], "\n\n".join(part) + "\n")
    splits["factrueval"] = {"train": len(train), "test": len(test), "unit": "sentences", **paths}

    # XQuAD-ru: by article
    with open(os.path.join(DATA, "xquad-ru", "xquad.ru.part1.json"), encoding="utf-8-sig") as f:
        squad = json.load(f)
    train, test = split_articles(squad["data"], seed)
    train = limit_questions(train, train_limit, seed)
    paths = {"train_path": os.path.join(folder, "xquad_train.json"),
             "test_path": os.path.join(folder, "xquad_test.json")}
    counts = {}
    for key, part in (("train_path", train), ("test_path", test)):
        save_json(paths[key], {"version": squad.get("version", "1.1"), "data": part})
        counts[key] = sum(len(p["qas"]) for a in part for p in a["paragraphs"])
    splits["xquad"] = {"train": counts["train_path"], "test": counts["test_path"], "unit": "questions",
                       "train_articles": len(train), "test_articles": len(test), **paths}
    train_contexts = {p["context"] for a in train for p in a["paragraphs"]}
    if train_contexts & {p["context"] for a in test for p in a["paragraphs"]}:
        raise AssertionError("XQuAD split: a context is in both parts")
    for name, info in splits.items():
        print(f"{name}: {info['train']} train / {info['test']} test {info['unit']}", flush=True)
    return splits


# ============================================================ 7. baseline

def run_baseline(task, split, seed):
    """TF-IDF char_wb 1-5-grams + logistic regression (balanced), C by 3-fold CV on the training part."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, make_scorer, matthews_corrcoef
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline

    from rubert_tf.tasks import get_task
    from rubert_tf.tasks.classification import classification_metrics

    kind = get_task("classification")
    settings = kind.settings(overrides=TASK_OPTIONS[task])
    train, test = kind.read(split["train_path"], settings), kind.read(split["test_path"], settings)
    labels = kind.model_kwargs(train, settings)["labels"]

    def texts(examples):
        return [(e["text_pair"] + " [SEP] " + e["text"]) if e.get("text_pair") is not None else e["text"]
                for e in examples]

    y_train = [labels.index(e["label"]) for e in train]
    y_test = [labels.index(e["label"]) for e in test]
    scoring = (make_scorer(matthews_corrcoef) if len(labels) == 2
               else make_scorer(f1_score, average="macro"))
    pipeline = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True, min_df=2),
                             LogisticRegression(class_weight="balanced", max_iter=3000))
    search = GridSearchCV(pipeline, {"logisticregression__C": [0.5, 2.0, 8.0]}, scoring=scoring, n_jobs=1,
                          cv=StratifiedKFold(3, shuffle=True, random_state=seed))
    search.fit(texts(train), y_train)
    predicted = search.predict(texts(test))
    metrics = classification_metrics(labels, y_test, list(predicted))
    metrics["C"] = search.best_params_["logisticregression__C"]
    return metrics


# ============================================================ 3. lengths

def read_examples(task, path):
    """A task's examples in `path`, read by its task unit with the benchmark's options for it."""
    from rubert_tf.tasks import get_task

    kind = get_task(TASK_KINDS[task])
    return kind.read(path, kind.settings(overrides=TASK_OPTIONS[task]))


def token_lengths(task, split, tokenizer, qa_question_cap=64):
    """Token lengths of the training inputs, special tokens included (see the module docstring)."""
    def counts(texts):
        out = []
        for i in range(0, len(texts), 2048):
            out += [int(n) for n in tokenizer.tokenize(texts[i:i + 2048]).row_lengths().numpy()]
        return out

    examples = read_examples(task, split["train_path"])
    if TASK_KINDS[task] == "classification":
        lengths = [n + 2 for n in counts([e["text"] for e in examples])]
        if examples and examples[0].get("text_pair") is not None:
            lengths = [n + m + 1 for n, m in zip(lengths, counts([e["text_pair"] for e in examples]))]
        return lengths
    if TASK_KINDS[task] == "ner":
        words = [w for e in examples for w in e["tokens"]]
        pieces, lengths, at = counts(words), [], 0
        for e in examples:
            lengths.append(2 + sum(max(1, n) for n in pieces[at:at + len(e["tokens"])]))
            at += len(e["tokens"])
        return lengths
    questions = counts([e["question"] for e in examples])
    contexts = counts([e["context"] for e in examples])
    return [min(q, qa_question_cap) + c + 3 for q, c in zip(questions, contexts)]


# ============================================================ corpus

def task_texts(task, path):
    """The raw texts a task's examples in `path` hold (no labels): what task-adaptive pretraining may read."""
    examples = read_examples(task, path)
    if TASK_KINDS[task] == "classification":
        return [e["text"] for e in examples]
    if TASK_KINDS[task] == "ner":
        return [" ".join(e["tokens"]) for e in examples]
    return [text for e in examples for text in (e["context"], e["question"])]


def write_task_corpus(work, splits):
    """work/data/task_texts.txt: the training texts of the four tasks and NTREX's Russian side (news, scored
    by no task), one document each, minus every test text (task_corpus_documents). Returns the counts."""
    path = os.path.join(work, "data", "task_texts.txt")
    counts_path = path + ".json"
    if os.path.exists(path) and os.path.exists(counts_path):
        return path, load_json(counts_path)
    train = {task: task_texts(task, splits[task]["train_path"]) for task in TASKS}
    train["ntrex-ru"] = read_lines(os.path.join(DATA, "ntrex-en-ru", "train.ru"))
    test = {task: task_texts(task, splits[task]["test_path"]) for task in TASKS}
    documents, kept = task_corpus_documents(train, test)
    write_text(path, "\n\n".join(documents) + "\n")
    save_json(counts_path, kept)
    return path, kept


# ============================================================ 5. pretraining

def steps_per_second_from_logs(log_dir):
    """[(step, steps/s)] of the TensorBoard windows rubert_tf's callback writes (batch_steps_per_second)."""
    import tensorflow as tf

    from tensorflow.core.util import event_pb2

    values = []
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True)):
        try:
            for record in tf.data.TFRecordDataset(path):
                event = event_pb2.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if value.tag == "batch_steps_per_second":
                        number = (value.simple_value if value.HasField("simple_value")
                                  else float(tf.make_ndarray(value.tensor)))
                        values.append((int(event.step), float(number)))
        except Exception as error:  # a truncated event file: use what was read
            print(f"  (reading {path}: {type(error).__name__}: {error})", flush=True)
    return sorted(values)


def pretrain_arguments(objective):
    """(kwargs pretrain() does not take and must be dropped, an error message or None)."""
    from rubert_tf.pretraining import pretrain

    parameters = inspect.signature(pretrain).parameters
    missing = [name for name in ("objective", "max_minutes", "lr_schedule", "warmup_steps", "min_lr_ratio")
               if name not in parameters]
    if "objective" in missing and objective != "mlm":
        return missing, (f"pretrain() has no objective= argument in this library version, so objective "
                         f"{objective!r} cannot run (MLM is pretrain's only objective here)")
    if "max_minutes" in missing:
        return missing, "pretrain() has no max_minutes= argument: a wall-clock budget cannot be enforced"
    return missing, None


def call_pretrain(missing, **kwargs):
    from rubert_tf.pretraining import pretrain

    dropped = {k: kwargs.pop(k) for k in missing if k in kwargs}
    if dropped:
        print(f"  pretrain() lacks {sorted(dropped)}: called without them ({dropped})", flush=True)
    return pretrain(**kwargs)


def calibrate(objective, common, missing, work, args):
    """Seconds per pretraining step, from a short throw-away run (cached in work/calibration-<objective>.json)."""
    cache = os.path.join(work, f"calibration-{objective}.json")
    if os.path.exists(cache):
        plan = load_json(cache)
        print(f"calibration of {objective}: {plan['seconds_per_step']:.3f} s/step (from {cache})", flush=True)
        return plan
    out = os.path.join(work, f"calibrate-{objective}")
    shutil.rmtree(out, ignore_errors=True)  # an interrupted calibration is simply redone
    minutes = min(3.0, max(1.0, 0.1 * args.pretrain_minutes))
    steps = max(3, args.calibration_steps)
    print(f"calibrating {objective}: up to {steps} steps or {minutes:.1f} min ...", flush=True)
    # Three epochs and no held-out set: TensorBoard's steps/s windows are the epochs (pretrain logs every
    # min(50, epoch) steps), the first holds the tracing, the others only steps (and a kept checkpoint).
    metrics = call_pretrain(missing, **dict(common, eval=None), out=out, steps=steps,
                            checkpoint_every=math.ceil(steps / 3), backup_every=0, max_minutes=minutes, verbose=0)
    trained = metrics.get("stopped_by_time_limit_after_steps") or metrics["steps"]
    windows = steps_per_second_from_logs(os.path.join(out, "logs"))
    if len(windows) >= 2:  # the first window includes tracing the train step
        rates = [rate for _, rate in windows[1:]]
        seconds_per_step = 1.0 / statistics.median(rates)
        source = f"TensorBoard, {len(rates)} window(s) after the first"
    else:
        seconds_per_step = metrics["train_seconds"] / max(1, trained)
        source = f"train_seconds / {trained} steps, tracing included (over-estimate)"
    plan = {"objective": objective, "seconds_per_step": seconds_per_step, "source": source,
            "calibration_steps": trained, "calibration_train_seconds": metrics["train_seconds"]}
    save_json(cache, plan)
    print(f"calibration of {objective}: {seconds_per_step:.3f} s/step ({source})", flush=True)
    return plan


def run_pretraining(objective, work, args, corpora, vocab, overrides, max_length, timings):
    """One objective's budgeted pretraining (skipped when work/pretrained-<objective>/metrics.json exists)."""
    out = os.path.join(work, f"pretrained-{objective}")
    plan_path = os.path.join(work, f"pretrained-{objective}.plan.json")
    if os.path.exists(os.path.join(out, "metrics.json")):
        print(f"pretrained-{objective}: finished earlier, reading {out}/metrics.json", flush=True)
        return {"out": out, "metrics": load_json(os.path.join(out, "metrics.json")), "plan": load_json(plan_path, {})}
    missing, error = pretrain_arguments(objective)
    if error:
        print(f"SKIPPING objective {objective}: {error}", flush=True)
        return {"skipped": error}
    common = dict(train=corpora["train"], eval=corpora["heldout"], config="cointegrated/rubert-tiny2", vocab=vocab,
                  overrides=overrides, objective=objective, max_length=max_length, whole_word=True,
                  batch_size=args.pretrain_batch_size, learning_rate=args.pretrain_learning_rate,
                  lr_schedule=args.pretrain_lr_schedule, warmup_ratio=0.05, warmup_steps=args.pretrain_warmup_steps,
                  min_lr_ratio=args.pretrain_min_lr_ratio, mixed_precision=args.mixed_precision, seed=args.seed,
                  overwrite=True)
    plan = load_json(plan_path)
    if plan is None:
        if args.pretrain_steps:
            plan = {"objective": objective, "planned_steps": args.pretrain_steps, "source": "--pretrain-steps",
                    "seconds_per_step": float("nan")}
        else:
            with timings.stage(f"calibrate {objective}"):
                plan = dict(calibrate(objective, common, missing, work, args))
            steps = int(args.pretrain_minutes * 60 * 0.97 / plan["seconds_per_step"])
            plan["planned_steps"] = max(1, steps - steps % EPOCHS if steps >= EPOCHS else steps)
        plan["budget_minutes"] = args.pretrain_minutes
        save_json(plan_path, plan)
    resume = os.path.isdir(os.path.join(out, "backup"))
    minutes_left = args.pretrain_minutes
    if resume:
        from rubert_tf.training.callbacks import resume_state

        state = resume_state(out)
        done = int(state["global_step"]) if state else 0
        if done and math.isfinite(plan.get("seconds_per_step", float("nan"))):
            minutes_left = max(0.5, args.pretrain_minutes - done * plan["seconds_per_step"] / 60)
        print(f"pretrained-{objective}: resuming at step {done} of {plan['planned_steps']}, "
              f"{minutes_left:.1f} of {args.pretrain_minutes} min left", flush=True)
    steps = plan["planned_steps"]
    print(f"pretraining {objective}: {steps} planned steps x batch {args.pretrain_batch_size} x {max_length} "
          f"tokens, budget {minutes_left:.1f} min ...", flush=True)
    started = time.time()
    metrics = call_pretrain(missing, **common, out=out, steps=steps, checkpoint_every=max(1, math.ceil(steps / EPOCHS)),
                            backup_every=100, max_minutes=minutes_left, resume=resume, verbose=2)
    timings.set(f"pretrain {objective}" + (" (last invocation, resumed)" if resume else ""), time.time() - started)
    return {"out": out, "metrics": metrics, "plan": plan}


# ============================================================ 6. fine-tuning

def run_finetune(task, init, model_dir, seed, split, max_length, args, work):
    """One fine-tuning (metrics.json of a finished one read back; a killed one resumed)."""
    from rubert_tf.finetune import finetune

    out = os.path.join(work, "ft", task, init, f"seed{seed}")
    done = os.path.join(out, "metrics.json")
    if os.path.exists(done):
        print(f"  {task} / {init} / seed {seed}: finished earlier ({out})", flush=True)
        return load_json(done), None
    resume = os.path.isdir(os.path.join(out, "backup"))
    kwargs = dict(model=model_dir, train=split["train_path"], eval=split["test_path"], out=out,
                  options=TASK_OPTIONS[task], epochs=args.epochs[task], batch_size=args.finetune_batch_size,
                  learning_rate=args.learning_rates[task], max_length=max_length, seed=seed,
                  lr_schedule=args.lr_schedule, mixed_precision=args.mixed_precision, resume=resume, overwrite=True,
                  backup_every=100, verbose=2)
    if TASK_KINDS[task] == "classification":
        kwargs["class_weight"] = "balanced"
    if init == "random":
        kwargs["init"] = "random"
    missing = [k for k in ("init", "lr_schedule") if k in kwargs and k not in inspect.signature(finetune).parameters]
    if missing:
        raise SystemExit(f"rubert_tf.finetune.finetune() lacks {missing}; this benchmark needs them")
    print(f"  {task} / {init} / seed {seed}: fine-tuning{' (resuming)' if resume else ''} -> {out}", flush=True)
    started = time.time()
    metrics = finetune(TASK_KINDS[task], **kwargs)
    seconds = time.time() - started
    save_json(os.path.join(out, "benchmark_wall_seconds.json"), {"seconds": round(seconds, 1), "resumed": resume})
    return metrics, seconds


def summarize_run(task, metrics):
    return ", ".join(f"{label} {metrics[key]:.{metric_digits(task)}f}" for key, label in TASK_METRICS[task]
                     if key in metrics)


# ============================================================ main

def build_parser():
    parser = argparse.ArgumentParser(
        description="Issue 13's recipe benchmark: ruslit pretraining (MLM / RTD, fixed wall-clock budget) vs random "
                    "init, fine-tuned on RuSentNE, RuCoLA, factRuEval and XQuAD-ru; resumable (same --work).",
        epilog="The protocol and how to resume: the docstring at the top of benchmarks/russian_tasks.py.")
    parser.add_argument("--work", required=True, help="working folder: splits, vocab, corpus, models, results.json; "
                                                      "run again with the same one to resume")
    parser.add_argument("--pretrain-minutes", type=float, default=60.0,
                        help="wall-clock budget of each objective's pretraining, in minutes (default: %(default)s)")
    parser.add_argument("--objectives", default="mlm,rtd",
                        help="pretraining objectives, comma-separated, from mlm, rtd (default: %(default)s)")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="fine-tuning tasks, comma-separated (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds, comma-separated (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the splits, the training subsets, the init and the pretraining "
                             "(default: %(default)s)")
    parser.add_argument("--corpus", choices=CORPORA, default="ruslit+tasks",
                        help="pretraining (and vocabulary) text: the ruslit training split, or that plus the four "
                             "tasks' training texts and NTREX's Russian side, every test text removed (task-adaptive "
                             "pretraining; default: %(default)s)")
    parser.add_argument("--vocab-size", type=int, default=16000,
                        help="WordPiece vocabulary learnt on the --corpus text (default: %(default)s)")
    parser.add_argument("--vocab", help="use this vocab.txt instead of learning one (--vocab-size is then ignored)")
    parser.add_argument("--max-length-quantile", type=float, default=0.95,
                        help="a task's max_length is this quantile of its training inputs' token lengths, rounded up "
                             "to a multiple of 16 (default: %(default)s)")
    parser.add_argument("--max-length-cap", type=int, default=256, help="upper bound of every max_length (default: "
                                                                        "%(default)s)")
    parser.add_argument("--pretrain-max-length", type=int,
                        help="pretraining sequence length (default: the largest of the four tasks' max_length)")
    parser.add_argument("--num-layers", type=int, default=4, help="encoder layers (default: %(default)s)")
    parser.add_argument("--hidden-size", type=int, default=256, help="hidden size (default: %(default)s)")
    parser.add_argument("--num-heads", type=int, default=4, help="attention heads (default: %(default)s)")
    parser.add_argument("--intermediate-size", type=int, default=1024, help="feed-forward width (default: %(default)s)")
    parser.add_argument("--pretrain-batch-size", type=int, default=32, help="pretraining batch (default: %(default)s)")
    parser.add_argument("--pretrain-learning-rate", type=float, default=1e-3,
                        help="peak pretraining learning rate (default: %(default)s; 3e-3 stalled a 2x256 model in "
                             "pretrain_then_finetune.py's probes)")
    parser.add_argument("--pretrain-lr-schedule", default="linear",
                        choices=["linear", "cosine", "constant", "inverse_sqrt"],
                        help="pretraining decay after warmup (default: %(default)s)")
    parser.add_argument("--pretrain-warmup-steps", type=int,
                        help="pretraining warmup steps (default: 5%% of the planned steps)")
    parser.add_argument("--pretrain-min-lr-ratio", type=float, default=0.0,
                        help="the schedule decays to this fraction of the peak (default: %(default)s)")
    parser.add_argument("--pretrain-steps", type=int,
                        help="planned pretraining steps (default: measured by a calibration run to fit the budget)")
    parser.add_argument("--calibration-steps", type=int, default=75,
                        help="steps of the throw-away calibration run that measures seconds per step, in 3 epochs "
                             "(at most min(3, max(1, budget/10)) minutes; default: %(default)s)")
    parser.add_argument("--finetune-epochs", default="rusentne=4,rucola=4,factrueval=8,xquad=8",
                        help="fine-tuning epochs: one number for every task or TASK=N pairs (default: %(default)s)")
    parser.add_argument("--finetune-learning-rate", default=str(DEFAULT_LEARNING_RATE),
                        help="peak fine-tuning learning rate: one number or TASK=LR pairs (default: %(default)s)")
    parser.add_argument("--finetune-batch-size", type=int, default=32, help="fine-tuning batch (default: %(default)s)")
    parser.add_argument("--lr-schedule", default="auto",
                        choices=["auto", "linear", "cosine", "constant", "inverse_sqrt"],
                        help="fine-tuning schedule, passed to finetune (auto: linear from pretrained weights, constant "
                             "from random init; default: %(default)s)")
    parser.add_argument("--train-limit", type=int,
                        help="a seeded subset of N training examples per task (smoke runs; tests stay whole)")
    parser.add_argument("--mixed-precision", choices=["bf16", "fp16", "auto"],
                        help="mixed precision for pretraining and fine-tuning (default: float32)")
    parser.add_argument("--skip-pretrain", action="store_true",
                        help="no corpus and no pretraining: only random init (and the baseline)")
    parser.add_argument("--skip-finetune", action="store_true", help="no fine-tuning (splits, vocab, lengths, "
                                                                     "pretraining, baseline)")
    parser.add_argument("--write-benchmarks", action=argparse.BooleanOptionalAction, default=True,
                        help="write the table into BENCHMARKS.md between the russian_tasks markers (default: yes)")
    parser.add_argument("--benchmarks-file", default=os.path.join(REPO, "BENCHMARKS.md"),
                        help="the markdown file --write-benchmarks writes (default: the repository's BENCHMARKS.md)")
    return parser


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.objectives = [] if args.skip_pretrain else parse_list(args.objectives, OBJECTIVES, "--objectives")
        args.tasks = parse_list(args.tasks, TASKS, "--tasks")
        args.seeds = list(dict.fromkeys(int(s) for s in args.seeds.split(",") if s.strip()))
        if not args.seeds:
            raise ValueError("--seeds: no seed given")
        args.epochs = parse_per_task(args.finetune_epochs, DEFAULT_EPOCHS, int, "--finetune-epochs")
        args.learning_rates = parse_per_task(args.finetune_learning_rate, {t: DEFAULT_LEARNING_RATE for t in TASKS},
                                             float, "--finetune-learning-rate")
    except ValueError as error:
        parser.error(str(error))
    if not 0 < args.max_length_quantile <= 1:
        parser.error("--max-length-quantile must be in (0, 1]")
    if args.pretrain_minutes <= 0:
        parser.error("--pretrain-minutes must be positive")
    return args


def check_settings(work, args):
    """The result-changing settings of this --work (settings.json), or an error naming the differences."""
    path = os.path.join(work, "settings.json")
    current = {name: getattr(args, name) for name in RESULT_SETTINGS}
    current["finetune_epochs"], current["finetune_learning_rate"] = args.epochs, args.learning_rates
    stored = load_json(path)
    if stored is None:
        save_json(path, current)
        return
    different = {k: (stored.get(k), v) for k, v in current.items() if stored.get(k) != v}
    if different:
        listed = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in different.items())
        raise SystemExit(f"{work} was made with other settings ({listed}); use another --work, or the same "
                         "settings to resume")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started, load_start = time.time(), load_average()
    command = "python benchmarks/russian_tasks.py " + shlex.join(argv)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    check_settings(work, args)
    invocations = load_json(os.path.join(work, "invocations.json"), [])
    invocations.append({"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "command": command,
                        "load_start": load_start})
    save_json(os.path.join(work, "invocations.json"), invocations)
    print(f"{command}\nload at start: {load_start}\nwork: {work}", flush=True)
    timings = Timings(os.path.join(work, "timings.json"))
    notes = []

    with timings.stage("splits"):
        splits = make_splits(work, args.seed, args.train_limit)

    import logging

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  [%(name)s] %(message)s"))
    library_logger = logging.getLogger("rubert_tf")
    library_logger.addHandler(handler)
    library_logger.setLevel(logging.INFO)
    library_logger.propagate = False
    logging.getLogger("rubert_tf.training.callbacks").setLevel(logging.WARNING)  # one line per backup otherwise

    baseline = load_json(os.path.join(work, "baseline.json"), {})
    todo = [t for t in BASELINE_TASKS if t in args.tasks and t not in baseline]
    if todo:
        with timings.stage("baseline (TF-IDF char + LR)"):
            for task in todo:
                baseline[task] = run_baseline(task, splits[task], args.seed)
                save_json(os.path.join(work, "baseline.json"), baseline)
                print(f"  {task}: {summarize_run(task, baseline[task])} (C={baseline[task]['C']})", flush=True)

    import keras

    import rubert_tf as rt
    from rubert_tf.data.pretraining import read_corpus_info
    from rubert_tf.data.pretraining_corpus import vocab_sha1
    from rubert_tf.pretraining import prepare_corpus
    from rubert_tf.pretraining.pretrain import build_config

    # 2. vocabulary (learnt on the pretraining text)
    corpus_files, kept = [splits["ruslit"]["train_path"]], None
    if args.corpus == "ruslit+tasks":
        with timings.stage("task corpus"):
            task_corpus, kept = write_task_corpus(work, splits)
        corpus_files.append(task_corpus)
        print("task-adaptive text: " + ", ".join(f"{k} {v}" for k, v in kept.items()) + f" texts -> {task_corpus}",
              flush=True)
    if args.vocab:
        vocab = os.path.abspath(os.path.join(args.vocab, "vocab.txt") if os.path.isdir(args.vocab) else args.vocab)
        vocab_description = f"{vocab}"
    else:
        vocab = os.path.join(work, "vocab.txt")
        if not os.path.exists(vocab):
            with timings.stage("vocab"):
                rt.train_vocab(corpus_files, vocab_size=args.vocab_size, output_path=vocab + ".tmp")
                os.replace(vocab + ".tmp", vocab)
        vocab_description = (f"cased WordPiece learnt on the {args.corpus} pretraining text "
                             f"(--vocab-size {args.vocab_size})")
    tokenizer = rt.RuBertTokenizer(vocab)
    vocab_description = f"{tokenizer.vocab_size} tokens, {vocab_description}"
    print(f"vocab: {vocab_description}", flush=True)

    # 3. lengths (all four tasks, so the pretraining length does not depend on --tasks)
    lengths_path = os.path.join(work, "lengths.json")
    lengths = load_json(lengths_path)
    if lengths is None:
        with timings.stage("lengths"):
            lengths = {}
            for task in TASKS:
                values = token_lengths(task, splits[task], tokenizer)
                lengths[task] = length_summary(values, pick_max_length(values, args.max_length_quantile,
                                                                       args.max_length_cap))
            save_json(lengths_path, lengths)
    for task, info in lengths.items():
        print(f"{TASK_TITLES[task]}: token lengths of {info['count']} training inputs: mean {info['mean']}, p50 "
              f"{info['p50']}, p90 {info['p90']}, p95 {info['p95']}, p99 {info['p99']}, max {info['max']} -> "
              f"max_length {info['max_length']} ({100 * info['truncated_share']:.1f}% cut)", flush=True)
    pretrain_length = args.pretrain_max_length or max(info["max_length"] for info in lengths.values())
    print(f"pretraining max_length: {pretrain_length} "
          f"({'--pretrain-max-length' if args.pretrain_max_length else 'the largest task max_length'})", flush=True)

    # 4. model
    overrides = {"num_layers": args.num_layers, "hidden_size": args.hidden_size, "num_heads": args.num_heads,
                 "intermediate_size": args.intermediate_size}
    config = build_config("cointegrated/rubert-tiny2", tokenizer.vocab_size, overrides)
    description = (f"rubert-tiny2's config with {config.num_hidden_layers} layers x hidden {config.hidden_size}, "
                   f"{config.num_attention_heads} heads, FFN {config.intermediate_size}, vocab {config.vocab_size}")
    random_dir = os.path.join(work, "random-init")
    if not os.path.exists(os.path.join(random_dir, "model.safetensors")):
        with timings.stage("random-init checkpoint"):
            keras.utils.set_random_seed(args.seed)
            encoder = rt.RuBertEncoder(config)
            encoder.save_pretrained(random_dir, tokenizer=tokenizer)
            del encoder
    parameters = _count_parameters(random_dir)
    description += f" ({parameters / 1e6:.2f} M parameters in the encoder)" if parameters else ""
    print(f"model: {description}", flush=True)

    # corpus + 5. pretraining
    pretraining = {}
    if args.objectives:
        corpora = {name: os.path.join(work, f"shards_{name}_T{pretrain_length}") for name in ("train", "heldout")}
        digest = vocab_sha1(tokenizer.vocabulary)
        for name, path in corpora.items():
            info = read_corpus_info(path) if os.path.isdir(path) else None
            if info and info.get("vocab_sha1") == digest and info.get("max_length") == pretrain_length:
                continue
            with timings.stage(f"corpus {name}"):
                info = prepare_corpus(corpus_files if name == "train" else splits["ruslit"]["test_path"], path,
                                      tokenizer, max_length=pretrain_length, overwrite=True, progress=False)
            print(f"  {name}: {info['num_sequences']} sequences of {pretrain_length} tokens "
                  f"({info['num_tokens']} tokens)", flush=True)
        for objective in args.objectives:
            with timings.stage(f"pretraining {objective} (all)", record=False):
                pretraining[objective] = run_pretraining(objective, work, args, corpora, vocab, overrides,
                                                         pretrain_length, timings)
            keras.backend.clear_session()
            info = pretraining[objective]
            if info.get("skipped"):
                notes.append(f"objective {objective} not run: {info['skipped']}")
                continue
            _check_same_architecture(info["out"], random_dir, notes)
            metrics, plan = info["metrics"], info["plan"]
            before, after = metrics.get("eval_before") or plan.get("eval_before") or {}, metrics.get("eval_after") or {}
            print(f"pretrained-{objective}: held-out " + ", ".join(
                f"{k} {before.get(k, float('nan')):.4f} -> {v:.4f}" for k, v in after.items()) +
                f" after {trained_steps(metrics, info['out'])} steps ({metrics.get('train_seconds')} s of training "
                "in the last call)", flush=True)

    # 6. fine-tuning
    inits = ["random"] + [o for o in args.objectives if not pretraining.get(o, {}).get("skipped")]
    models = {"random": random_dir, **{o: pretraining[o]["out"] for o in inits if o != "random"}}
    finetuning = {task: {} for task in args.tasks}
    if not args.skip_finetune:
        for seed in args.seeds:  # seed by seed: an interrupted run still has paired results
            for task in args.tasks:
                for init in inits:
                    metrics, seconds = run_finetune(task, init, models[init], seed, splits[task],
                                                    lengths[task]["max_length"], args, work)
                    finetuning[task].setdefault(init, {})[seed] = metrics
                    if seconds is not None:
                        timings.set(f"finetune/{task}/{init}/seed{seed}", seconds)
                    print(f"  {task} / {init} / seed {seed}: {summarize_run(task, metrics)}", flush=True)
                    keras.backend.clear_session()
    # the table lists only what this invocation's --tasks/--seeds/--objectives ask for
    load_end = load_average()
    stage_seconds = {k: v for k, v in timings.values.items() if not k.startswith("finetune/")}
    for task in args.tasks:
        runs = {k: v for k, v in timings.values.items() if k.startswith(f"finetune/{task}/")}
        if runs:
            stage_seconds[f"fine-tuning {task} ({len(runs)} runs)"] = sum(runs.values())
    ft_description = (f"batch {args.finetune_batch_size}, epochs "
                      + ", ".join(f"{t} {args.epochs[t]}" for t in args.tasks)
                      + ", peak lr " + ", ".join(f"{t} {args.learning_rates[t]:g}" for t in args.tasks)
                      + f", lr_schedule {args.lr_schedule}, class weights balanced (classification), seeds "
                      + ",".join(map(str, args.seeds))
                      + (f", TRAIN LIMIT {args.train_limit} examples per task (smoke run)" if args.train_limit else ""))
    invocation = {**invocations[-1], "load_end": load_end, "seconds": round(time.time() - started, 1)}
    invocations[-1] = invocation
    save_json(os.path.join(work, "invocations.json"), invocations)
    results = {"tasks": args.tasks, "inits": inits, "corpus": args.corpus, "task_corpus": kept, "seeds": args.seeds,
               "splits": {
                   t: {k: v for k, v in s.items() if not k.endswith("_path")} for t, s in splits.items()},
               "split_files": {t: {k: v for k, v in s.items() if k.endswith("_path")} for t, s in splits.items()},
               "baseline": {t: baseline[t] for t in args.tasks if t in baseline},
               "lengths": lengths, "max_length_quantile": args.max_length_quantile,
               "max_length_cap": args.max_length_cap, "pretrain_max_length": pretrain_length,
               "vocab": {"path": vocab, "size": tokenizer.vocab_size, "description": vocab_description},
               "model": {"description": description, "config": config.to_dict(), "overrides": overrides},
               "pretraining": pretraining, "finetuning": finetuning,
               "finetune_settings": {"description": ft_description, "epochs": args.epochs,
                                     "learning_rates": args.learning_rates, "batch_size": args.finetune_batch_size,
                                     "lr_schedule": args.lr_schedule},
               "stage_seconds": stage_seconds, "invocation": invocation, "invocations": len(invocations),
               "commit": git_commit(REPO), "args": {k: v for k, v in vars(args).items()}, "notes": notes}
    report = markdown_report(results)
    results["markdown"] = report
    save_json(os.path.join(work, "results.json"), results)
    print("\n" + report, flush=True)
    if args.write_benchmarks:
        path = args.benchmarks_file
        existing = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        write_text(path, replace_section(existing, report))
        print(f"wrote the section into {path}", flush=True)
    print(f"results: {os.path.join(work, 'results.json')}; this invocation {time.time() - started:.0f} s", flush=True)
    return 0


def _count_parameters(directory):
    try:
        from safetensors import safe_open

        with safe_open(os.path.join(directory, "model.safetensors"), framework="numpy") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:  # only a label in the table
        return None


def _check_same_architecture(pretrained_dir, random_dir, notes):
    """The pretrained encoder and the random-init baseline must have the same architecture and vocab."""
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "type_vocab_size")
    a, b = (load_json(os.path.join(d, "config.json"), {}) for d in (pretrained_dir, random_dir))
    different = {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}
    if different:
        note = f"{pretrained_dir} and {random_dir} differ in {different}: the comparison is not like for like"
        print("WARNING: " + note, flush=True)
        notes.append(note)


if __name__ == "__main__":
    sys.exit(main())
