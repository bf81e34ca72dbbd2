"""The `rubert-tf` command line: the README's main job and the small commands."""

import json

import numpy as np
import pytest
import tokenizers
import torch
import transformers

from rubert_tf.cli import main

TINY2 = "../shared/data/rubert-tiny2"


def test_quickstart_runs_offline_and_writes_a_checkpoint_transformers_reads(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path), "--no-progress", "--text", "Привет, мир!"]) == 0
    printed = capsys.readouterr().out
    tokens = next(line for line in printed.splitlines() if line.startswith("tokens:")).split()[1:]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "," in tokens
    # The sample model is a real HF checkpoint: transformers loads it and agrees with us.
    model_dir = tmp_path / "model"
    hf = transformers.BertModel.from_pretrained(model_dir).eval()
    hf_tok = transformers.BertTokenizerFast.from_pretrained(model_dir)
    ids = hf_tok("Привет, мир!")["input_ids"]
    assert hf_tok.convert_ids_to_tokens(ids) == tokens
    norm_line = next(line for line in printed.splitlines() if line.startswith("pooled_output_norm:"))
    with torch.no_grad():
        pooled = hf(torch.tensor([ids])).pooler_output[0].numpy()
    assert float(norm_line.split()[1]) == pytest.approx(np.linalg.norm(pooled), abs=1e-3)


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
