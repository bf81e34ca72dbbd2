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
