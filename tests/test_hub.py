"""rubert_tf.hub: one id rule and one download path for config, tokenizer and models.

The network is cut at the transport (httpx2.Client.send raises ConnectError and records the URL) and
huggingface_hub's back-off sleeps are recorded instead of slept, so a test sees every hub request and
every retry, and none reaches the internet. The HF cache is a fresh folder, seeded where a test says.
"""

import os
import shutil
import time

import httpx2
import numpy as np
import pytest

import rubert_tf as rt
from rubert_tf import PRESETS, RuBertConfig, hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "привет", "мир", "мама", "мыла", "раму", "##у", ",", "!"]
TINY = dict(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=32)


class CutNetwork:
    """What the hub was asked (URLs) and how long huggingface_hub wanted to wait between retries."""

    def __init__(self):
        self.urls, self.sleeps = [], []

    @property
    def model_requests(self):  # huggingface_hub also fetches an agent registry once; not a model request
        return [url for url in self.urls if "agent-harnesses" not in url]


@pytest.fixture
def network(monkeypatch, tmp_path):
    import huggingface_hub.constants
    import huggingface_hub.utils._http

    cut = CutNetwork()

    def send(client, request, **kwargs):
        cut.urls.append(str(request.url))
        raise httpx2.ConnectError("network cut by the test", request=request)

    monkeypatch.setattr(httpx2.Client, "send", send)
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", cut.sleeps.append)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    return cut


def seed_cache(cache, repo_id):
    """A tiny random checkpoint in the HF cache under `repo_id`, as a finished download leaves it."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(COMMIT)
    snapshot = os.path.join(repo, "snapshots", COMMIT)
    encoder = rt.RuBertEncoder(RuBertConfig(**TINY))
    encoder.save_pretrained(snapshot, tokenizer=rt.RuBertTokenizer(VOCAB))
    return snapshot, encoder


def test_short_names_and_presets_agree():
    assert set(hub.SHORT_NAMES.values()) == set(PRESETS)
    for short, full in hub.SHORT_NAMES.items():
        assert full.split("/")[1] == short and hub.hub_id(short) == full
    assert hub.hub_id("someone/model") == "someone/model"


def test_preset_short_names_resolve_offline_without_a_hub_call(network):
    for short, full in hub.SHORT_NAMES.items():
        assert RuBertConfig.from_pretrained(short) == RuBertConfig.from_dict(PRESETS[full]), short
        assert RuBertConfig.from_pretrained(full) == RuBertConfig.from_pretrained(short)
    tiny2 = RuBertConfig.from_pretrained("rubert-tiny2")
    assert (tiny2.vocab_size, tiny2.hidden_size, tiny2.num_hidden_layers) == (83828, 312, 3)
    assert network.urls == [] and network.sleeps == []


def test_a_local_folder_named_like_a_preset_wins(network, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("rubert-tiny2", "cointegrated/rubert-tiny2"):
        RuBertConfig(**TINY).save_pretrained(name)
        assert RuBertConfig.from_pretrained(name).hidden_size == TINY["hidden_size"], name
        assert hub.resolve(name) == name
    assert network.urls == []


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "hub_unreachable"])
def test_short_name_loads_model_and_tokenizer_cached_under_the_full_id(network, tmp_path, monkeypatch, offline):
    import huggingface_hub.constants

    snapshot, saved = seed_cache(str(tmp_path / "hf_cache"), "cointegrated/rubert-tiny2")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)

    tokenizer = rt.RuBertTokenizer.from_pretrained("rubert-tiny2")
    encoder = rt.RuBertEncoder.from_pretrained("rubert-tiny2")
    mlm = rt.RuBertForMaskedLM.from_pretrained("cointegrated/rubert-tiny2")

    assert tokenizer.vocab_size == len(VOCAB)
    assert tokenizer(["привет, мир!"], padding="longest")["token_ids"].numpy().tolist() == [[2, 5, 11, 6, 12, 3]]
    assert hub.resolve("rubert-tiny2", files="tokenizer") == snapshot
    want = {weight.path: weight.numpy() for weight in saved.weights}
    assert sorted(weight.path for weight in encoder.weights) == sorted(want)
    for got in encoder.weights + mlm.encoder.weights:  # the MLM's encoder has no pooler
        np.testing.assert_array_equal(got.numpy(), want[got.path], err_msg=got.path)
    # Offline: no request at all. Unreachable: one request per load, and no retry.
    assert len(network.model_requests) == (0 if offline else 4)
    assert network.sleeps == []


@pytest.mark.parametrize("load,files", [
    (rt.RuBertConfig.from_pretrained, "config"),
    (rt.RuBertTokenizer.from_pretrained, "tokenizer"),
    (rt.RuBertEncoder.from_pretrained, "model"),
    (rt.RuBertClassifier.from_pretrained, "model"),
])
def test_unreachable_hub_fails_fast_in_one_line(network, load, files):
    start = time.perf_counter()
    with pytest.raises(hub.HubError) as caught:
        load("someone/not-cached-bert")
    seconds = time.perf_counter() - start
    error, message = caught.value, str(caught.value)
    assert isinstance(error, ConnectionError)
    assert "\n" not in message and len(message) < 400, message
    assert message.startswith("someone/not-cached-bert: the HuggingFace hub cannot be reached (ConnectError")
    assert "network access" in message and "local directory with " + hub._LOCAL_LAYOUT[files] in message
    assert error.__cause__ is None and error.__suppress_context__  # no chained traceback
    assert network.model_requests == ["https://huggingface.co/api/models/someone/not-cached-bert"]
    assert network.sleeps == [] and seconds < 5


def test_offline_mode_without_cache_says_so(network, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.HubError, match=r"^cointegrated/rubert-tiny2: HF_HUB_OFFLINE is set .* local "
                                           r"directory with vocab\.txt$"):
        rt.RuBertTokenizer.from_pretrained("rubert-tiny2")
    assert network.urls == []


def test_tokenizer_config_and_models_share_one_resolver(monkeypatch, tmp_path):
    """Every loader turns a name into a directory through hub.download, with the same id rule: short
    names become full ids, and single-name ids ("bert-base-cased") are hub ids for all of them."""
    checkpoint = str(tmp_path / "checkpoint")
    rt.RuBertEncoder(RuBertConfig(**TINY)).save_pretrained(checkpoint, tokenizer=rt.RuBertTokenizer(VOCAB))
    asked = []

    def download(repo_id, files="model", revision=None):
        asked.append((repo_id, files))
        return checkpoint

    monkeypatch.setattr(hub, "download", download)
    rt.RuBertTokenizer.from_pretrained("rubert-tiny2")
    rt.RuBertEncoder.from_pretrained("rubert-tiny2")
    rt.RuBertClassifier.from_pretrained("rubert-base-cased", num_labels=2)
    rt.RuBertConfig.from_pretrained("someone/bert.v2")
    rt.RuBertTokenizer.from_pretrained("bert-base-cased")
    rt.RuBertForMaskedLM.from_pretrained("bert-base-cased")
    assert asked == [("cointegrated/rubert-tiny2", "tokenizer"), ("cointegrated/rubert-tiny2", "model"),
                     ("DeepPavlov/rubert-base-cased", "model"), ("someone/bert.v2", "config"),
                     ("bert-base-cased", "tokenizer"), ("bert-base-cased", "model")]
    for bad in ("a/b/c", "../up", "org/name.", "-x"):
        with pytest.raises(FileNotFoundError, match="not a HuggingFace hub id"):
            rt.RuBertTokenizer.from_pretrained(bad)
    assert len(asked) == 6


def test_each_loader_downloads_only_what_it_needs():
    listing = ["config.json", "vocab.txt", "tokenizer_config.json", "tokenizer.json", "model.safetensors",
               "pytorch_model.bin", "tf_model.h5", "README.md"]
    assert hub.files_to_download("x/y", listing, files="config") == ["config.json"]
    assert hub.files_to_download("x/y", ["bert_config.json", "vocab.txt"], files="config") == ["bert_config.json"]
    assert hub.files_to_download("x/y", listing, files="tokenizer") == [
        "vocab.txt", "tokenizer_config.json", "tokenizer.json"]
    assert hub.files_to_download("x/y", listing) == [
        "model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json", "tokenizer.json"]
    with pytest.raises(FileNotFoundError, match="x/y has no vocab.txt"):
        hub.files_to_download("x/y", ["config.json", "model.safetensors"], files="tokenizer")
    with pytest.raises(ValueError, match="files='weights'"):
        hub.resolve("x/y", files="weights")


def test_a_reachable_hub_is_asked_once_for_the_listing_then_for_only_the_needed_files(network, monkeypatch):
    import huggingface_hub
    from huggingface_hub.hf_api import ModelInfo

    listing = ["config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors", "pytorch_model.bin"]
    info = ModelInfo(id="someone/bert", sha=COMMIT, siblings=[{"rfilename": name} for name in listing])
    snapshots = []
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda api, repo_id, revision=None, timeout=None: info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, revision=None, allow_patterns=None: snapshots.append(
                            (repo_id, allow_patterns)) or "/snapshot")
    for files in ("config", "tokenizer", "model"):
        assert hub.resolve("someone/bert", files=files) == "/snapshot"
    assert snapshots == [("someone/bert", ["config.json"]),
                         ("someone/bert", ["vocab.txt", "tokenizer_config.json"]),
                         ("someone/bert", ["model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json"])]
    assert network.urls == []


def test_a_cached_tokenizer_is_not_a_cached_model(network, tmp_path):
    """A snapshot holding only the tokenizer files (what RuBertTokenizer downloads) serves the tokenizer
    offline, but a model needs its weights: that fails in one line instead of loading half a model."""
    snapshot, _ = seed_cache(str(tmp_path / "hf_cache"), "someone/tok-only")
    for name in os.listdir(snapshot):
        if name not in hub.TOKENIZER_FILES:
            os.remove(os.path.join(snapshot, name))
    assert rt.RuBertTokenizer.from_pretrained("someone/tok-only").vocab_size == len(VOCAB)
    with pytest.raises(hub.HubError, match="someone/tok-only: the HuggingFace hub cannot be reached"):
        rt.RuBertEncoder.from_pretrained("someone/tok-only")
    shutil.rmtree(snapshot)
