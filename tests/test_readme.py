"""Every code block of README.md runs.

Convention (also stated at the end of the README):
- every ```python block runs, in document order, in one namespace (one subprocess), so a block may use
  what an earlier one defined;
- a ```bash block runs only when the line before it is `<!-- test -->`; it runs in document order between
  the Python blocks, with `bash -euo pipefail`, in the same working folder. Unmarked bash blocks are the
  ones that cannot run here: pip install / pytest (the set-up commands themselves), downloads, docker,
  real multi-machine clusters, and the docker-side curl.
- ``` blocks without a language (the CLI reference) are text.

Offline by construction: the subprocess runs in a temporary folder with HF_HUB_OFFLINE=1 and a fresh
HF cache seeded with tiny random checkpoints under the real hub ids the README uses
("cointegrated/rubert-tiny2", "DeepPavlov/rubert-base-cased"); DeepPavlov's TF1 folder
(`rubert_cased_L-12_H-768_A-12_v2`, which the unmarked wget/tar block would download) is created as a
tiny TF1 checkpoint with google-research's variable names. `$PORT` is a free loopback port.
"""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
TIMEOUT = 900
HUB_IDS = ("cointegrated/rubert-tiny2", "DeepPavlov/rubert-base-cased")
TF1_DIR = "rubert_cased_L-12_H-768_A-12_v2"
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
SETUP_COMMANDS = ('python -m pip install -e . && rubert-tf quickstart',
                  'python -m pip install -e ".[test]" && python -m pytest -q')

_FENCE = re.compile(r"^```(\w*)\s*$")


def readme_blocks(text):
    """[(language, first line number, code, marked)] of every fenced block; `marked`: `<!-- test -->` before it."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        language, start = match.group(1), index + 1
        previous = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        blocks.append((language, start + 1, "\n".join(lines[start:end]) + "\n", previous == "<!-- test -->"))
        index = end + 1
    return blocks


def runnable_blocks(text):
    return [(language, line, code) for language, line, code, marked in readme_blocks(text)
            if language == "python" or (language == "bash" and marked)]


def test_first_screen_has_the_two_setup_commands():
    text = open(README, encoding="utf-8").read()
    first_screen = "\n".join(text.splitlines()[:20])
    for command in SETUP_COMMANDS:
        assert f"```bash\n{command}\n```" in first_screen, command


def test_block_convention():
    text = open(README, encoding="utf-8").read()
    languages = {language for language, *_ in readme_blocks(text)}
    assert languages <= {"python", "bash", ""}, languages
    runnable = runnable_blocks(text)
    assert sum(language == "python" for language, *_ in runnable) >= 8
    assert sum(language == "bash" for language, *_ in runnable) >= 2
    # the set-up commands, downloads and docker are never run by this test
    for language, _, code in runnable:
        assert "pip install" not in code and "docker" not in code and "wget" not in code, code


# ------------------------------------------------------------------------------------ fixtures on disk

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SEED_SCRIPT = r"""
import json, os, sys
import numpy as np
import tensorflow as tf
import keras
import rubert_tf as rt
from rubert_tf.checkpoints.hf import hf_state_dict
from rubert_tf.sample_data import write_sample_corpus

root, hub_cache, tf1_dir, commit = sys.argv[1:5]
hub_ids = json.loads(sys.argv[5])
keras.utils.set_random_seed(0)
vocab = os.path.join(root, "seed", "vocab.txt")
rt.train_vocab([write_sample_corpus(os.path.join(root, "seed"))], vocab_size=600, output_path=vocab)
tok = rt.RuBertTokenizer(vocab)
config = rt.RuBertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)
mlm = rt.RuBertForMaskedLM(config)
for hub_id in hub_ids:   # the HF cache layout huggingface_hub reads with local_files_only
    repo = os.path.join(hub_cache, "models--" + hub_id.replace("/", "--"))
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit)
    mlm.save_pretrained(os.path.join(repo, "snapshots", commit), tokenizer=tok)

# DeepPavlov's TF1 layout: google-research names, kernels [in, out], no decoder variable (tied).
def tf1_name(name):
    special = {"cls.predictions.bias": "cls/predictions/output_bias"}
    if name in special:
        return special[name], False
    tf_name = name.replace("layer.", "layer_").replace(".", "/")
    if tf_name.endswith("_embeddings/weight"):
        return tf_name[: -len("/weight")], False
    if "LayerNorm/" in tf_name:
        return tf_name.replace("LayerNorm/weight", "LayerNorm/gamma").replace("LayerNorm/bias", "LayerNorm/beta"), False
    if tf_name.endswith("/weight"):
        return tf_name[: -len("weight")] + "kernel", True
    return tf_name, False

os.makedirs(tf1_dir, exist_ok=True)
names, tensors = [], []
for name, value in hf_state_dict(mlm).items():
    if name.startswith("cls.predictions.decoder."):
        continue
    tf_name, transpose = tf1_name(name)
    names.append(tf_name)
    tensors.append(tf.constant(np.ascontiguousarray(value.T if transpose else value)))
tf.raw_ops.SaveV2(prefix=os.path.join(tf1_dir, "bert_model.ckpt"), tensor_names=names,
                  shape_and_slices=[""] * len(names), tensors=tensors)
config.save_pretrained(tf1_dir, tf1=True)
with open(vocab, encoding="utf-8") as src, open(os.path.join(tf1_dir, "vocab.txt"), "w", encoding="utf-8") as dst:
    dst.write(src.read())
"""

DRIVER = r"""
import json, subprocess, sys
namespace = {"__name__": "__readme__"}
for language, line, code in json.load(open(sys.argv[1], encoding="utf-8")):
    print(f"=== README.md:{line} ({language})", flush=True)
    if language == "python":
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    else:
        subprocess.run(["bash", "-euo", "pipefail", "-c", code], check=True)
    sys.stdout.flush()
print("=== README done", flush=True)
"""


def test_readme_code_blocks_run(tmp_path):
    blocks = runnable_blocks(open(README, encoding="utf-8").read())
    work = tmp_path / "work"
    work.mkdir()
    hub_cache = tmp_path / "hf" / "hub"
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1",
               PORT=str(_free_port()), PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")   # rubert-tf of this venv
    env.pop("TF_CONFIG", None)
    seed = subprocess.run([sys.executable, "-c", SEED_SCRIPT, str(tmp_path), str(hub_cache), str(work / TF1_DIR),
                           FAKE_COMMIT, json.dumps(HUB_IDS)], env=env, capture_output=True, text=True, timeout=300)
    assert seed.returncode == 0, seed.stderr[-5000:]

    (tmp_path / "blocks.json").write_text(json.dumps(blocks, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "driver.py").write_text(DRIVER, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "blocks.json")], cwd=work,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, f"README block failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    assert "=== README done" in proc.stdout
    # what the blocks claim to produce
    assert (work / "savedmodels" / "sentiment" / "1" / "saved_model.pb").is_file()
    assert (work / "rubert-base-cased-hf" / "model.safetensors").is_file()
    assert (work / "rubert-tiny2-domain" / "config.json").is_file()
    assert '"predictions"' in proc.stdout   # the curl answer of rubert-tf serve
