"""The pure-Python helpers of benchmarks/russian_tasks.py (splits, lengths, table, markers): no training, no TF."""

import importlib.util
import os

import pytest

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "russian_tasks.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("russian_tasks_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_documents_holds_out_every_20th(bench):
    text = "\n\n".join(f"doc {i}\nline" for i in range(45)) + "\n"
    train, heldout = bench.split_documents(text)
    assert heldout == ["doc 19\nline", "doc 39\nline"]
    assert len(train) == 43 and not set(train) & set(heldout)


def test_split_rows_is_seeded_disjoint_and_complete(bench):
    rows = [f"row {i}" for i in range(101)]
    train, test = bench.split_rows(rows, seed=0)
    assert (len(train), len(test)) == (80, 21)
    assert sorted(train + test) == sorted(rows)
    assert bench.split_rows(rows, seed=0) == (train, test)
    assert bench.split_rows(rows, seed=1) != (train, test)


def test_split_blocks_keeps_blocks_together(bench):
    items = list(range(100))
    train, test = bench.split_blocks(items, block_size=20, seed=0)
    assert len(test) == 20 and sorted(train + test) == items
    assert test == list(range(test[0], test[0] + 20)) and test[0] % 20 == 0
    assert train == sorted(train)  # original order kept
    assert bench.split_blocks(items, 20, seed=0) == (train, test)


def test_split_articles_and_question_limit(bench):
    articles = [{"title": str(a), "paragraphs": [{"context": f"c{a}{p}", "qas": [{"id": f"{a}-{p}-{q}"}
                                                                              for q in range(3)]}
                                                for p in range(2)]} for a in range(10)]
    train, test = bench.split_articles(articles, seed=0)
    assert (len(train), len(test)) == (8, 2)
    assert not {a["title"] for a in train} & {a["title"] for a in test}
    limited = bench.limit_questions(train, 5, seed=0)
    assert sum(len(p["qas"]) for a in limited for p in a["paragraphs"]) == 5
    assert all(p["qas"] for a in limited for p in a["paragraphs"])
    assert bench.limit_questions(train, None) == train


def test_task_corpus_drops_test_texts_and_duplicates(bench):
    train = {"rusentne": ["Путин  приехал в Москву.", "Путин приехал в Москву.", "Сбербank вырос.", "  "],
             "rucola": ["Мама мыла раму.", "Тест\nв двух строках."],
             "ntrex-ru": ["Новость дня."]}
    test = {"rusentne": ["Сбербank вырос."], "xquad": ["Мама  мыла\tраму."]}
    documents, kept = bench.task_corpus_documents(train, test)
    # whitespace-normalised duplicates once, a test text (also in another task's test part) never, one line each
    assert documents == ["Путин приехал в Москву.", "Тест в двух строках.", "Новость дня."]
    assert kept == {"rusentne": 1, "rucola": 1, "ntrex-ru": 1}
    everything_tested, _ = bench.task_corpus_documents({"rucola": ["a b"]}, {"rucola": ["a  b"]})
    assert everything_tested == []


def test_task_corpus_on_the_real_splits(bench, tmp_path):
    """The files the benchmark pretrains on hold no text of any test part (real data, real readers)."""
    splits = bench.make_splits(str(tmp_path), seed=0, train_limit=None)
    path, kept = bench.write_task_corpus(str(tmp_path), splits)
    lines = {line for line in open(path, encoding="utf-8").read().split("\n") if line.strip()}
    assert set(kept) == {"rusentne", "rucola", "factrueval", "xquad", "ntrex-ru"} and all(kept.values())
    for task in bench.TASKS:
        tested = {" ".join(t.split()) for t in bench.task_texts(task, splits[task]["test_path"])}
        assert tested and not lines & tested, task
    assert len(lines) == sum(kept.values())


def test_limit_items(bench):
    items = list(range(50))
    assert bench.limit_items(items, None) == items
    kept = bench.limit_items(items, 10, seed=3)
    assert len(kept) == 10 and kept == sorted(kept) and kept == bench.limit_items(items, 10, seed=3)


def test_pick_max_length(bench):
    lengths = list(range(1, 101))  # p95 = 95.05
    assert bench.pick_max_length(lengths, 0.95, cap=256) == 96
    assert bench.pick_max_length(lengths, 1.0, cap=256) == 112
    assert bench.pick_max_length([500] * 10, 0.95, cap=256) == 256
    assert bench.pick_max_length([3, 4], 0.95, cap=256) == 16
    summary = bench.length_summary(lengths, 96)
    assert summary["max"] == 100 and summary["truncated_share"] == 0.04 and summary["p50"] == 50.5


def test_parse_per_task(bench):
    defaults = {"rusentne": 4, "xquad": 8}
    assert bench.parse_per_task("3", defaults, int, "x") == {"rusentne": 3, "xquad": 3}
    assert bench.parse_per_task("xquad=2", defaults, int, "x") == {"rusentne": 4, "xquad": 2}
    with pytest.raises(ValueError, match="TASK=VALUE"):
        bench.parse_per_task("nope=2", defaults, int, "x")


def test_paired_difference(bench):
    difference = bench.paired_difference({0: 0.5, 1: 0.4, 2: 0.7}, {0: 0.4, 1: 0.5, 2: 0.6, 3: 0.9})
    assert difference["n"] == 3 and difference["wins"] == 2
    assert difference["mean"] == pytest.approx(0.1 / 3)
    assert bench.paired_difference({0: 1.0}, {1: 1.0}) is None
    assert bench.mean_std([0.5]) == (0.5, 0.0)


def fake_results(bench):
    runs = {"random": {0: {"macro_f1": 0.40, "macro_f1_pos_neg": 0.30},
                       1: {"macro_f1": 0.42, "macro_f1_pos_neg": 0.32}},
            "mlm": {0: {"macro_f1": 0.45, "macro_f1_pos_neg": 0.31},
                    1: {"macro_f1": 0.41, "macro_f1_pos_neg": 0.35}}}
    return {"tasks": ["rusentne"], "inits": ["random", "mlm"], "finetuning": {"rusentne": runs},
            "baseline": {"rusentne": {"macro_f1": 0.5, "macro_f1_pos_neg": 0.4}},
            "lengths": {"rusentne": {"max_length": 96, "p95": 90.0, "max": 200, "truncated_share": 0.05}},
            "splits": {"rusentne": {"train": 5309, "test": 1328, "unit": "rows"}},
            "pretraining": {"mlm": {"metrics": {"steps": 100, "train_seconds": 60.0,
                                                "eval_after": {"mlm_accuracy": 0.2, "mlm_loss": 5.0}},
                                    "plan": {"planned_steps": 100, "budget_minutes": 1, "seconds_per_step": 0.5,
                                             "source": "TensorBoard", "eval_before": {"mlm_accuracy": 0.0,
                                                                                      "mlm_loss": 9.7}}},
                            "rtd": {"skipped": "pretrain() has no objective= argument"}},
            "stage_seconds": {"vocab": 12.0, "pretrain mlm": 61.0}, "commit": "abc123",
            "invocation": {"date": "2026-12-01 10:00", "command": "python benchmarks/russian_tasks.py --work w",
                           "load_start": "load average: 1.0", "load_end": "load average: 2.0", "seconds": 100}}


def test_results_table(bench):
    table = bench.results_table(fake_results(bench))
    lines = table.splitlines()
    assert lines[0].startswith(
        "| task | metric | TF-IDF char + LR | random init | pretrained MLM | Δ MLM − random |")
    assert len(lines) == 4  # header, rule, two metrics of RuSentNE
    assert "0.4100 ± 0.0141 (n=2)" in lines[2]  # random macro-F1
    assert "+0.0200 ± 0.0424, wins 1/2" in lines[2]
    assert "0.528 (keras-hub recipe, issue 13)" in lines[2] and lines[3].endswith("| – |")
    assert "| 0.5000 |" in lines[2]


def test_markdown_report_and_section_replacement(bench):
    report = bench.markdown_report(fake_results(bench))
    assert "abc123" in report and "0.0000 → 0.2000" in report and "9.7000 → 5.0000" in report
    assert "pretrain() has no objective= argument" in report and "quoted, not run here" in report
    document = "# Benchmarks\n\nold text\n"
    once = bench.replace_section(document, report)
    assert once.startswith(document.rstrip("\n")) and once.count(bench.BEGIN) == 1 and once.endswith(bench.END + "\n")
    twice = bench.replace_section(once.replace("abc123", "OLD"), report.replace("abc123", "def456"))
    assert twice.count(bench.BEGIN) == 1 and "def456" in twice and "OLD" not in twice and "old text" in twice


def test_git_commit_reads_refs(bench, tmp_path):
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("0123abc\n")
    assert bench.git_commit(str(tmp_path)) == "0123abc"
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text("# pack-refs\n4567def refs/heads/main\n")
    assert bench.git_commit(str(tmp_path)) == "4567def"
    assert bench.git_commit(str(tmp_path / "nowhere")) is None


def test_help_lists_every_flag(bench):
    text = bench.build_parser().format_help()
    for flag in ("--work", "--corpus", "--pretrain-minutes", "--objectives", "--tasks", "--seeds", "--vocab-size",
                 "--vocab",
                 "--max-length-quantile", "--max-length-cap", "--num-layers", "--hidden-size", "--num-heads",
                 "--intermediate-size", "--pretrain-batch-size", "--pretrain-learning-rate", "--finetune-epochs",
                 "--finetune-learning-rate", "--finetune-batch-size", "--lr-schedule", "--train-limit",
                 "--skip-finetune", "--skip-pretrain", "--write-benchmarks", "--no-write-benchmarks"):
        assert flag in text
    args = bench.parse_args(["--work", "w", "--finetune-epochs", "xquad=2", "--seeds", "1,2"])
    assert args.epochs["xquad"] == 2 and args.epochs["rusentne"] == 4 and args.seeds == [1, 2]
    assert bench.parse_args(["--work", "w", "--skip-pretrain"]).objectives == []
    assert args.corpus == "ruslit+tasks" and bench.parse_args(["--work", "w", "--corpus", "ruslit"]).corpus == "ruslit"
