"""The `rubert-tf` command line: the small commands (the quickstart is in test_quickstart.py)."""

import json

import tokenizers

from rubert_tf.cli import main

TINY2 = "../shared/data/rubert-tiny2"


# `rubert-tf quickstart` (the README's main job) runs end to end in tests/test_quickstart.py, which also
# checks that transformers reads its checkpoint and gives the probabilities the server answered.


def test_tokenize_command_gives_hf_ids(request, capsys):
    model = str(request.config.rootpath / TINY2)
    text = "Ёжик в тумане, 2024 год — «хорошо»!"
    assert main(["tokenize", "--model", model, text]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    reference = tokenizers.Tokenizer.from_file(f"{model}/tokenizer.json").encode(text)
    assert row["token_ids"] == reference.ids
    assert [tuple(o) for o in row["offsets"]] == reference.offsets


def test_missing_model_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["encode", "--model", str(tmp_path / "nope"), "текст"]) == 2
    assert "nope" in capsys.readouterr().err


# ---- help without TensorFlow, flags from the task settings, no C++ log noise ---------------------

HELP_PROBE = """
import contextlib, io, json, sys, time
started = time.perf_counter()
from rubert_tf.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps({"seconds": time.perf_counter() - started, "tensorflow": "tensorflow" in sys.modules,
                  "keras": "keras" in sys.modules, "help": out.getvalue()}))
"""


def _help(*argv):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HELP_PROBE, *argv, "--help"], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_help_answers_without_importing_tensorflow():
    from rubert_tf.tasks import TASKS

    probes = [(), ("finetune",)] + [(command, task) for command in ("finetune", "evaluate", "predict", "export")
                                    for task in TASKS]
    slowest = 0.0
    for argv in probes:
        result = _help(*argv)
        assert not result["tensorflow"] and not result["keras"], f"rubert-tf {' '.join(argv)} --help imported TF"
        assert "usage: rubert-tf" in result["help"]
        slowest = max(slowest, result["seconds"])
    print(f"\nslowest `rubert-tf ... --help` of {len(probes)}: {slowest:.2f} s (in-process, after interpreter start)")
    assert slowest < 5.0  # about 0.1 s on an idle machine; generous for a loaded CI box


def test_finetune_help_lists_every_task_setting():
    import dataclasses

    from rubert_tf.tasks import TASKS, get_settings_class

    for task in TASKS:
        text = _help("finetune", task)["help"]
        for field in dataclasses.fields(get_settings_class(task)):
            flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
            assert flag in text, f"`rubert-tf finetune {task} --help` does not list {flag}"
    classification = _help("finetune", "classification")["help"]
    for flag in ("--text-pair-column", "--labels", "--label-map", "--multi-label", "--max-length", "--overwrite"):
        assert flag in classification
    assert "(default: text)" in classification  # the real defaults are shown
    predict = _help("predict", "classification")["help"]
    assert "--threshold" in predict and "--label-column" not in predict  # predict shows what answering needs


def test_commands_keep_tensorflow_log_noise_out_of_stderr(request):
    import subprocess
    import sys

    model = str(request.config.rootpath / TINY2)
    command = [sys.executable, "-m", "rubert_tf.cli", "tokenize", "--model", model, "Привет, мир!"]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    for noise in ("cudart_stub", "cuInit", "cpu_feature_guard", "absl::InitializeLog", "oneDNN"):
        assert noise not in quiet.stderr, quiet.stderr
    assert json.loads(quiet.stdout)["tokens"][:2] == ["[CLS]", "Привет"]
    loud = subprocess.run(command + ["--verbose"], capture_output=True, text=True, timeout=300, check=True)
    assert loud.stdout == quiet.stdout
