"""Checkpoint I/O against transformers: parity on real Russian text for HF safetensors,
pytorch_model.bin and google-research TF1 checkpoints; save_pretrained round trips that
transformers loads back; and the errors a broken or hostile checkpoint must produce."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

import reference_models as ref
import rubert_tf as rt
from rubert_tf import hub
from rubert_tf.checkpoints import CheckpointError
from rubert_tf.checkpoints.hf import read_torch_bin
from rubert_tf.checkpoints.tf1 import tf1_to_hf_name

TOLERANCE = 1e-4
KERAS_CLASS = {"BertModel": rt.RuBertEncoder, "BertForMaskedLM": rt.RuBertForMaskedLM}


# float32 global policy in every test, the previous one restored after (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("float32_policy")


def assert_parity(label, model, reference, batch):
    diffs = ref.max_abs_diffs(ref.keras_outputs(model, batch), reference, batch["padding_mask"])
    print(f"\nmax abs diff [{label}]: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    assert set(diffs) == set(reference)
    for name, diff in diffs.items():
        assert diff <= TOLERANCE, f"{label}: {name} differs from transformers by {diff:.3e}"
    return diffs


# ---- parity: safetensors and pytorch_model.bin -------------------------------------------------

CASES = {"small-gelu": (ref.SMALL, "gelu"), "small-gelu_new": (ref.SMALL, "gelu_new"),
         "tiny2-gelu": (ref.TINY2, "gelu"), "tiny2-gelu_new": (ref.TINY2, "gelu_new")}


@pytest.fixture(scope="module", params=list(CASES))
def reference(request, tmp_path_factory):
    """For one (size, activation): transformers BertModel + BertForMaskedLM with random weights,
    each saved both ways, and their outputs on a padded Russian batch."""
    sizes, act = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    batch = ref.russian_batch(sizes["vocab_size"])
    case = {"name": request.param, "batch": batch, "dirs": {}, "outputs": {}}
    for seed, architecture in enumerate(KERAS_CLASS):
        model = ref.torch_model(architecture, sizes, act, seed=seed)
        case["outputs"][architecture] = ref.torch_outputs(model, batch)
        case["dirs"][architecture, "safetensors"] = ref.save_safetensors(model, str(root / f"{architecture}-st"))
        case["dirs"][architecture, "bin"] = ref.save_bin(model, str(root / f"{architecture}-bin"))
    yield case
    ref.remove(str(root))


@pytest.mark.parametrize("file_format", ["safetensors", "bin"])
@pytest.mark.parametrize("architecture", list(KERAS_CLASS))
def test_parity_with_transformers(reference, architecture, file_format, caplog):
    directory = reference["dirs"][architecture, file_format]
    assert os.listdir(directory).count("model.safetensors" if file_format == "safetensors" else "pytorch_model.bin")
    with caplog.at_level(logging.INFO, logger="rubert_tf"):
        model = KERAS_CLASS[architecture].from_pretrained(directory)
    # A checkpoint of the model's own architecture loads completely: nothing left random.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert_parity(f"{reference['name']} {architecture} {file_format}", model,
                  reference["outputs"][architecture], reference["batch"])


def test_parity_detects_the_wrong_gelu(tmp_path):
    """The 1e-4 tolerance means something: exact vs. tanh GELU (a ~1e-3 difference per activation)
    moves the outputs several times further than the tolerance, while real parity is ~1e-6."""
    model = ref.torch_model("BertModel", ref.SMALL, "gelu_new")
    batch = ref.russian_batch(ref.SMALL["vocab_size"])
    directory = ref.save_safetensors(model, str(tmp_path / "ckpt"))
    config = json.load(open(os.path.join(directory, "config.json")))
    config["hidden_act"] = "gelu"
    json.dump(config, open(os.path.join(directory, "config.json"), "w"))
    wrong = rt.RuBertEncoder.from_pretrained(directory)
    diffs = ref.max_abs_diffs(ref.keras_outputs(wrong, batch), ref.torch_outputs(model, batch),
                              batch["padding_mask"])
    print(f"\nwrong GELU on purpose: {diffs}")
    assert diffs["sequence_output"] > 5 * TOLERANCE


# ---- small reference used by the remaining tests ------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Small BertModel and BertForMaskedLM checkpoints (safetensors), with their torch models."""
    root = tmp_path_factory.mktemp("small")
    models = {a: ref.torch_model(a, ref.SMALL, "gelu", seed=10 + i) for i, a in enumerate(KERAS_CLASS)}
    dirs = {a: ref.save_safetensors(m, str(root / a)) for a, m in models.items()}
    return {"models": models, "dirs": dirs, "batch": ref.russian_batch(ref.SMALL["vocab_size"])}


def copy_checkpoint(source, target, edit=None):
    """Copy a safetensors checkpoint directory, optionally editing its {name: array}."""
    shutil.copytree(source, target)
    if edit is not None:
        path = os.path.join(target, "model.safetensors")
        tensors = load_file(path)
        edit(tensors)
        save_file(tensors, path, metadata={"format": "pt"})
    return str(target)


# ---- TF1 (google-research) --------------------------------------------------------------------

def test_tf1_checkpoint_loads_to_the_same_numbers(tmp_path, caplog):
    model = ref.torch_model("BertForPreTraining", ref.SMALL, "gelu", seed=3)
    batch = ref.russian_batch(ref.SMALL["vocab_size"])
    expected = ref.torch_outputs(model, batch)
    directory = ref.save_tf1(model, str(tmp_path / "tf1"))
    assert sorted(os.listdir(directory)) == ["bert_config.json", "bert_model.ckpt.data-00000-of-00001",
                                             "bert_model.ckpt.index", "vocab.txt"]
    with caplog.at_level(logging.INFO, logger="rubert_tf"):
        encoder = rt.RuBertEncoder.from_pretrained(directory)
        mlm = rt.RuBertForMaskedLM.from_pretrained(directory)
    assert "adam_m" in caplog.text and "global_step" in caplog.text  # skipped, and said so
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert_parity("tf1 encoder", encoder, {k: expected[k] for k in ("sequence_output", "pooled_output")}, batch)
    assert_parity("tf1 mlm", mlm, {"logits": expected["logits"]}, batch)


def test_tf1_names():
    assert tf1_to_hf_name("bert/encoder/layer_11/attention/self/query/kernel") == (
        "bert.encoder.layer.11.attention.self.query.weight", True)
    assert tf1_to_hf_name("bert/embeddings/LayerNorm/gamma") == ("bert.embeddings.LayerNorm.weight", False)
    assert tf1_to_hf_name("bert/embeddings/word_embeddings") == ("bert.embeddings.word_embeddings.weight", False)
    assert tf1_to_hf_name("cls/predictions/transform/dense/kernel") == ("cls.predictions.transform.dense.weight", True)
    assert tf1_to_hf_name("cls/squad/output_weights") == ("qa_outputs.weight", False)
    for skipped in ("global_step", "bert/pooler/dense/kernel/adam_m", "bert/pooler/dense/bias/adam_v"):
        assert tf1_to_hf_name(skipped) is None


# ---- save_pretrained round trip ----------------------------------------------------------------

@pytest.mark.parametrize("architecture", list(KERAS_CLASS))
def test_save_pretrained_round_trip(small, architecture, tmp_path):
    source = small["dirs"][architecture]
    ours = KERAS_CLASS[architecture].from_pretrained(source)
    tokenizer = rt.RuBertTokenizer.from_pretrained(ref.TINY2_DIR)
    out = str(tmp_path / "ours")
    ours.save_pretrained(out, tokenizer=tokenizer)

    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"} <= set(os.listdir(out))
    assert not [name for name in os.listdir(out) if name.startswith(".")], "staging files left behind"
    original, written = load_file(os.path.join(source, "model.safetensors")), load_file(os.path.join(out, "model.safetensors"))
    assert set(written) == set(original)  # exactly the keys transformers writes (no tied decoder)
    for name in original:
        assert written[name].dtype == original[name].dtype and np.array_equal(written[name], original[name]), name
    assert json.load(open(os.path.join(out, "config.json")))["architectures"] == [architecture]
    with open(os.path.join(out, "vocab.txt"), encoding="utf-8") as a, open(
            os.path.join(ref.TINY2_DIR, "vocab.txt"), encoding="utf-8") as b:
        assert a.read() == b.read()

    reloaded, info = getattr(transformers, architecture).from_pretrained(out, output_loading_info=True)
    assert not any(info[key] for key in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    batch = small["batch"]
    expected = ref.torch_outputs(small["models"][architecture], batch)
    again = ref.torch_outputs(reloaded.eval(), batch)
    for name in expected:
        np.testing.assert_array_equal(again[name], expected[name])
    assert_parity(f"round trip {architecture}", ours, expected, batch)


def test_save_writes_nothing_when_it_fails(small, tmp_path):
    ours = rt.RuBertEncoder.from_pretrained(small["dirs"]["BertModel"])

    class BrokenTokenizer:
        def save_pretrained(self, directory):
            raise OSError("disk full")

    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        ours.save_pretrained(str(out), tokenizer=BrokenTokenizer())
    assert os.listdir(out) == []


# ---- prefixes, heads, legacy names, shards -----------------------------------------------------

def test_encoder_from_masked_lm_checkpoint_warns_about_the_pooler(small, caplog):
    with caplog.at_level(logging.INFO, logger="rubert_tf"):
        encoder = rt.RuBertEncoder.from_pretrained(small["dirs"]["BertForMaskedLM"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "pooler.dense.weight" in warnings[0] and "pooler.dense.bias" in warnings[0]
    assert "cls.predictions.transform.dense.weight" in caplog.text  # unused head: logged, not silent
    expected = ref.torch_outputs(small["models"]["BertForMaskedLM"], small["batch"])
    assert_parity("encoder <- BertForMaskedLM", encoder, {"sequence_output": expected["sequence_output"]},
                  small["batch"])


def test_masked_lm_from_bert_model_checkpoint_keeps_the_encoder(small, caplog):
    with caplog.at_level(logging.WARNING, logger="rubert_tf"):
        mlm = rt.RuBertForMaskedLM.from_pretrained(small["dirs"]["BertModel"])
    assert "cls.predictions.bias" in caplog.text  # random head, said so
    reference = small["models"]["BertModel"].embeddings.word_embeddings.weight.detach().numpy()
    np.testing.assert_array_equal(mlm.encoder.get_layer("token_embedding").embeddings.numpy(), reference)


@pytest.mark.parametrize("architecture", ["BertForPreTraining", "BertForSequenceClassification"])
def test_encoder_from_task_checkpoints(architecture, tmp_path, caplog):
    model = ref.torch_model(architecture, ref.SMALL, "gelu", seed=4)
    batch = ref.russian_batch(ref.SMALL["vocab_size"])
    with caplog.at_level(logging.WARNING, logger="rubert_tf"):
        encoder = rt.RuBertEncoder.from_pretrained(ref.save_bin(model, str(tmp_path / "ckpt")))
    assert not caplog.records, caplog.text  # both have a pooler; their heads are known and ignored
    expected = ref.torch_outputs(model, batch)
    assert_parity(f"encoder <- {architecture}", encoder,
                  {k: expected[k] for k in ("sequence_output", "pooled_output")}, batch)


def test_legacy_layer_norm_gamma_beta_names(small, tmp_path):
    def rename(tensors):
        for name in [n for n in tensors if "LayerNorm" in n]:
            tensors[name.replace(".weight", ".gamma").replace(".bias", ".beta")] = tensors.pop(name)

    directory = copy_checkpoint(small["dirs"]["BertModel"], tmp_path / "legacy", rename)
    assert any(name.endswith("LayerNorm.gamma") for name in load_file(os.path.join(directory, "model.safetensors")))
    expected = ref.torch_outputs(small["models"]["BertModel"], small["batch"])
    assert_parity("legacy names", rt.RuBertEncoder.from_pretrained(directory), expected, small["batch"])


def test_sharded_safetensors_and_bin(small, tmp_path):
    model, batch = small["models"]["BertForMaskedLM"], small["batch"]
    expected = ref.torch_outputs(model, batch)
    st_dir = ref.save_safetensors(model, str(tmp_path / "st"), max_shard_size="100KB")
    assert "model.safetensors.index.json" in os.listdir(st_dir)
    assert_parity("sharded safetensors", rt.RuBertForMaskedLM.from_pretrained(st_dir), expected, batch)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = model.state_dict()
    names = list(state)
    weight_map = {}
    for index, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        shard = f"pytorch_model-0000{index + 1}-of-00002.bin"
        torch.save({name: state[name] for name in part}, bin_dir / shard)
        weight_map.update({name: shard for name in part})
    json.dump({"metadata": {}, "weight_map": weight_map}, open(bin_dir / "pytorch_model.bin.index.json", "w"))
    model.config.to_json_file(bin_dir / "config.json")
    assert_parity("sharded bin", rt.RuBertForMaskedLM.from_pretrained(str(bin_dir)), expected, batch)


def test_torch_bin_reader_honours_dtypes_strides_and_offsets(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {"plain": base, "transposed": base.t(), "row": base[2], "strided": base[:, 1::2],
             "half": base.half(), "bf16": base.bfloat16(), "long": torch.arange(5), "scalar": torch.tensor(7.5),
             "flags": torch.tensor([True, False]), "parameter": torch.nn.Parameter(base * 2), "empty": torch.zeros(0, 3)}
    torch.save(state, tmp_path / "x.bin")
    loaded = read_torch_bin(str(tmp_path / "x.bin"))
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        expected = tensor.detach().float().numpy() if name == "bf16" else tensor.detach().numpy()
        got = loaded[name].astype(np.float32) if name == "bf16" else loaded[name]
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_an_expanded_tensor_is_refused_before_anything_is_allocated(tmp_path):
    import tracemalloc

    # 1 float of storage viewed as 2.5e8 floats (stride 0): a ~1 KB file claiming a 1 GB tensor.
    torch.save({"weight": torch.zeros(1).expand(250_000_000), "position_ids": torch.arange(8).expand(1, -1)},
               tmp_path / "expanded.bin")
    assert os.path.getsize(tmp_path / "expanded.bin") < 4096
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"250000000 elements but its storage holds 1 from offset 0"):
            read_torch_bin(str(tmp_path / "expanded.bin"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000, peak  # refused before any allocation: was ~1 GB
    # HF's position_ids buffer (arange expanded to [1, T]: stride 0 on a size-1 axis) is a real state dict's
    torch.save({"position_ids": torch.arange(8).expand(1, -1)}, tmp_path / "buffer.bin")
    np.testing.assert_array_equal(read_torch_bin(str(tmp_path / "buffer.bin"))["position_ids"], [np.arange(8)])


# ---- errors ------------------------------------------------------------------------------------

def test_mis_shaped_tensor_names_tensor_variable_and_both_shapes(small, tmp_path):
    name = "encoder.layer.1.attention.self.query.weight"

    def shrink(tensors):
        tensors[name] = tensors[name][:, :32].copy()

    directory = copy_checkpoint(small["dirs"]["BertModel"], tmp_path / "bad", shrink)
    with pytest.raises(ValueError) as error:
        rt.RuBertEncoder.from_pretrained(directory)
    message = str(error.value)
    assert name in message and "(64, 32)" in message and "(64, 64)" in message
    assert "transformer_layer_1" in message and "model.safetensors" in message


def test_missing_required_tensor(small, tmp_path):
    name = "encoder.layer.0.output.dense.weight"
    directory = copy_checkpoint(small["dirs"]["BertModel"], tmp_path / "bad", lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match="missing.*" + name.replace(".", r"\.")):
        rt.RuBertEncoder.from_pretrained(directory)


def test_unexpected_unknown_tensor_but_known_heads_are_fine(small, tmp_path, caplog):
    def add_unknown(tensors):
        tensors["encoder.layer.0.attention.self.rotary.weight"] = np.zeros(3, np.float32)

    directory = copy_checkpoint(small["dirs"]["BertModel"], tmp_path / "bad", add_unknown)
    with pytest.raises(CheckpointError, match=r"unexpected.*encoder\.layer\.0\.attention\.self\.rotary\.weight"):
        rt.RuBertEncoder.from_pretrained(directory)

    def add_heads(tensors):
        tensors["classifier.weight"] = np.zeros((3, 64), np.float32)
        tensors["embeddings.position_ids"] = np.arange(128)[None]

    directory = copy_checkpoint(small["dirs"]["BertModel"], tmp_path / "heads", add_heads)
    with caplog.at_level(logging.INFO, logger="rubert_tf"):
        rt.RuBertEncoder.from_pretrained(directory)
    assert "classifier.weight" in caplog.text and "embeddings.position_ids" in caplog.text


def test_optional_weights_are_overridable_by_the_model_class(small, tmp_path):
    class StrictEncoder(rt.RuBertEncoder):
        hf_optional_weights = ()  # this model insists on its pooler

    with pytest.raises(CheckpointError, match=r"missing.*pooler\.dense\.weight"):
        StrictEncoder.from_pretrained(small["dirs"]["BertForMaskedLM"])


def test_empty_directory_or_missing_files(small, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        rt.RuBertEncoder.from_pretrained(str(empty))
    for looked_for in (str(empty), "model.safetensors", "pytorch_model.bin", "bert_model.ckpt.index", "config.json"):
        assert looked_for in str(error.value)
    no_config = copy_checkpoint(small["dirs"]["BertModel"], tmp_path / "no_config")
    os.remove(os.path.join(no_config, "config.json"))
    with pytest.raises(FileNotFoundError, match="no config.json or bert_config.json"):
        rt.RuBertEncoder.from_pretrained(no_config)


def test_broken_config_json(small, tmp_path):
    directory = copy_checkpoint(small["dirs"]["BertModel"], tmp_path / "bad")
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write('{"hidden_size": 64,')
    with pytest.raises(ValueError, match=r"config\.json.*not valid JSON"):
        rt.RuBertEncoder.from_pretrained(directory)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_bin_with_code_is_refused_without_running_it(small, tmp_path):
    marker = tmp_path / "pwned"
    directory = tmp_path / "evil"
    directory.mkdir()
    shutil.copy(os.path.join(small["dirs"]["BertModel"], "config.json"), directory)
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2), "payload": _Exploit(marker)},
               directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="not a plain PyTorch state dict.*system"):
        rt.RuBertEncoder.from_pretrained(str(directory))
    assert not marker.exists()


def test_bin_that_is_not_a_state_dict_or_is_legacy(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.bin")
    with pytest.raises(CheckpointError, match="not a plain PyTorch state dict.*list"):
        read_torch_bin(str(tmp_path / "list.bin"))
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy"):
        read_torch_bin(str(tmp_path / "legacy.bin"))


# ---- hub ---------------------------------------------------------------------------------------

def test_resolve_local_and_nonexistent_paths(tmp_path):
    assert hub.resolve(str(tmp_path)) == str(tmp_path)
    for path in (str(tmp_path / "no" / "such"), "./missing_dir", "a/b/c"):
        with pytest.raises(FileNotFoundError, match=path.replace(".", r"\.")):
            hub.resolve(path)


def test_hub_id_offline_says_it_needs_network(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    with pytest.raises(ConnectionError) as error:
        rt.RuBertEncoder.from_pretrained("DeepPavlov/rubert-base-cased")
    message = str(error.value)
    assert "DeepPavlov/rubert-base-cased" in message and "network" in message and "local" in message


def test_hub_file_selection_prefers_safetensors():
    files = ["config.json", "vocab.txt", "pytorch_model.bin", "model.safetensors", "tf_model.h5", "README.md"]
    assert hub.files_to_download("x/y", files) == ["model.safetensors", "config.json", "vocab.txt"]
    sharded = ["config.json", "pytorch_model.bin.index.json", "pytorch_model-1.bin", "pytorch_model-2.bin"]
    index = {"weight_map": {"a": "pytorch_model-1.bin", "b": "pytorch_model-2.bin"}}
    assert hub.files_to_download("x/y", sharded, lambda name: index) == [
        "pytorch_model.bin.index.json", "pytorch_model-1.bin", "pytorch_model-2.bin", "config.json"]
    tf1 = ["bert_config.json", "bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001", "vocab.txt"]
    assert hub.files_to_download("x/y", tf1) == tf1[1:3] + ["bert_config.json", "vocab.txt"]
    with pytest.raises(FileNotFoundError, match="x/y.*no BERT weights"):
        hub.files_to_download("x/y", ["config.json", "tf_model.h5"])


def test_bfloat16_safetensors_load_as_float32(small, tmp_path):
    model = ref.torch_model("BertModel", ref.SMALL, "gelu", seed=5).to(torch.bfloat16)
    directory = ref.save_safetensors(model, str(tmp_path / "bf16"))
    encoder = rt.RuBertEncoder.from_pretrained(directory)
    table = encoder.get_layer("token_embedding").embeddings
    assert table.dtype == "float32"
    np.testing.assert_array_equal(table.numpy(), model.embeddings.word_embeddings.weight.float().detach().numpy())


def test_untied_decoder_in_the_file_is_reported(small, tmp_path, caplog):
    model = small["models"]["BertForMaskedLM"]
    state = {name: value.clone() for name, value in model.state_dict().items()}
    state["cls.predictions.decoder.weight"] += 1.0
    directory = copy_checkpoint(small["dirs"]["BertForMaskedLM"], tmp_path / "untied")
    os.remove(os.path.join(directory, "model.safetensors"))
    torch.save(state, os.path.join(directory, "pytorch_model.bin"))
    with caplog.at_level(logging.WARNING, logger="rubert_tf"):
        rt.RuBertForMaskedLM.from_pretrained(directory)
    assert "cls.predictions.decoder.weight differs from bert.embeddings.word_embeddings.weight" in caplog.text
