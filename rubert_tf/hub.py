"""From a `from_pretrained` name to a local directory: the one hub module of rubert_tf.

    resolve("path/to/dir")                        -> "path/to/dir" (a local directory is used as is)
    resolve("rubert-tiny2")                       -> the HF cache snapshot of cointegrated/rubert-tiny2
    resolve("DeepPavlov/rubert-base-cased", files="tokenizer")   -> a snapshot with vocab.txt & co only

Config, tokenizer and checkpoints all resolve names here, so they accept the same names and share one
download path. It imports nothing from rubert_tf (none of them depends on another through it), and
huggingface_hub only when something has to come from the hub.
"""

import json
import logging
import os
import re

logger = logging.getLogger(__name__)

# Short names of the published RuBERT models (their architectures are in config.PRESETS, under the
# full ids): "rubert-tiny2" means cointegrated/rubert-tiny2 everywhere a name is accepted.
SHORT_NAMES = {
    "rubert-base-cased": "DeepPavlov/rubert-base-cased",
    "rubert-base-cased-sentence": "DeepPavlov/rubert-base-cased-sentence",
    "rubert-tiny": "cointegrated/rubert-tiny",
    "rubert-tiny2": "cointegrated/rubert-tiny2",
    "ruBert-base": "ai-forever/ruBert-base",
    "ruBert-large": "ai-forever/ruBert-large",
    "sbert_large_nlu_ru": "ai-forever/sbert_large_nlu_ru",
}

# Preference order: the first one a repository has is downloaded, the others are not.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "bert_model.ckpt.index")
CONFIG_FILES = ("config.json", "bert_config.json")
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")

# What each kind of caller needs from a repository: (files of which at least one is required, the
# others taken when present), and what a local directory must hold instead (said in errors).
_NEEDS = {
    "model": (WEIGHT_FILES, CONFIG_FILES + TOKENIZER_FILES),
    "tokenizer": (("vocab.txt",), TOKENIZER_FILES[1:]),
    "config": (CONFIG_FILES, ()),
}
_LOCAL_LAYOUT = {
    "model": "config.json + model.safetensors or pytorch_model.bin (or TF1 bert_config.json + bert_model.ckpt.*)",
    "tokenizer": "vocab.txt",
    "config": "config.json or bert_config.json",
}

# "name" or "org/name": letters, digits, "-", "_", "." (what the hub accepts), no path tricks.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class HubError(ConnectionError):
    """The hub could not be reached and the HF cache has no copy. The message is one line: the id,
    why, and what to do."""


def hub_id(name):
    """The full hub id of a short preset name ("rubert-tiny2" -> "cointegrated/rubert-tiny2"); any other
    name unchanged."""
    return SHORT_NAMES.get(name, name)


def looks_like_hub_id(name):
    return bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith(".")


def resolve(name_or_path, files="model", revision=None):
    """A local directory holding what `files` ("model", "tokenizer" or "config") needs: `name_or_path`
    itself when it is a directory, else the HF cache snapshot of that hub id (or short name)."""
    if files not in _NEEDS:
        raise ValueError(f"files={files!r}: expected one of {sorted(_NEEDS)}")
    path = os.path.expanduser(os.fspath(name_or_path))
    # Checked before the short names and hub ids: a user's folder is never shadowed by a download,
    # even when it is called "rubert-tiny2" or "cointegrated/rubert-tiny2".
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise NotADirectoryError(f"{path}: expected a directory ({_LOCAL_LAYOUT[files]}), got a file")
    repo_id = hub_id(path)
    if not looks_like_hub_id(repo_id):
        raise FileNotFoundError(f"{path}: no such directory (and it is not a HuggingFace hub id)")
    return download(repo_id, files, revision)


def files_to_download(repo_id, listing, read_index=None, files="model"):
    """The files of a repository that `files` needs: for a model the preferred weight format and its
    shards, the configs and the tokenizer files; for a tokenizer vocab.txt and its configs; for a
    config config.json / bert_config.json."""
    required, optional = _NEEDS[files]
    first = next((name for name in required if name in listing), None)
    if first is None:
        what = "BERT weights" if files == "model" else " or ".join(required)
        raise FileNotFoundError(f"hub repository {repo_id} has no {what}: looked for "
                                f"{', '.join(required)}; it has {sorted(listing)}")
    wanted = [first]
    if first.endswith(".index.json"):
        # Shard names come from the index itself, so unusual shard names still work.
        wanted += sorted(set(read_index(first)["weight_map"].values()))
    elif first == "bert_model.ckpt.index":
        wanted += [name for name in listing if name.startswith("bert_model.ckpt.data-")]
    wanted += [name for name in optional if name in listing]
    return wanted


def download(repo_id, files="model", revision=None):
    """Download what `files` needs of `repo_id` into the HF cache (or reuse the cache when the hub
    cannot be reached); returns the snapshot directory."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE:
        return _cached_copy(repo_id, files, revision, offline=True)
    try:
        # One request, no retries: list_repo_files backs off 5 times (1+2+4+8+8 s, plus a timeout each)
        # when the hub cannot be reached; model_info lists the files too and fails at once.
        info = huggingface_hub.HfApi().model_info(repo_id, revision=revision,
                                                  timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except GatedRepoError:
        raise PermissionError(f"{repo_id}: gated hub repository; accept its terms on huggingface.co, "
                              "then log in with `hf auth login`") from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"{repo_id}: the hub repository has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"{repo_id}: neither a local directory nor a model on the HuggingFace hub "
                                "(a private one needs `hf auth login`)") from None
    except Exception as error:  # no network, a timeout, the hub down: a previous download still serves
        return _cached_copy(repo_id, files, revision, reason=_one_line(error))

    def read_index(name):
        with open(huggingface_hub.hf_hub_download(repo_id, name, revision=revision), encoding="utf-8") as f:
            return json.load(f)

    listing = [sibling.rfilename for sibling in info.siblings or ()]
    wanted = files_to_download(repo_id, listing, read_index, files)
    logger.info("%s: downloading %s", repo_id, ", ".join(wanted))
    try:
        return huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=wanted)
    except Exception as error:  # the connection dropped mid-way
        raise HubError(f"{repo_id}: downloading {', '.join(wanted)} from the HuggingFace hub failed "
                       f"({_one_line(error)}); run it again, or pass a local directory with "
                       f"{_LOCAL_LAYOUT[files]}") from None


def _cached_copy(repo_id, files, revision, offline=False, reason=""):
    """The HF cache snapshot of an earlier download that has what `files` needs, or a one-line HubError.

    Looked up file by file rather than with snapshot_download(local_files_only=True): that call refuses a
    snapshot that lacks any file of the repository, and we download only one weight format."""
    from huggingface_hub import try_to_load_from_cache

    for name in _NEEDS[files][0]:
        cached = try_to_load_from_cache(repo_id, name, revision=revision)
        if isinstance(cached, str):
            directory = os.path.dirname(cached)
            log = logger.info if offline else logger.warning
            log("%s: %s; using the cached copy in %s", repo_id,
                "HF_HUB_OFFLINE is set" if offline else f"hub not reachable ({reason})", directory)
            return directory
    layout = _LOCAL_LAYOUT[files]
    if offline:
        raise HubError(f"{repo_id}: HF_HUB_OFFLINE is set and the HF cache has no copy; unset it and run once "
                       f"with network access to download it, or pass a local directory with {layout}") from None
    raise HubError(f"{repo_id}: the HuggingFace hub cannot be reached ({reason}) and the HF cache has no copy; "
                   f"run once with network access to download it, or pass a local directory with {layout}") from None


def _one_line(error):
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
