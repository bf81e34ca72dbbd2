"""Turn a `from_pretrained` argument into a local checkpoint directory.

A local directory is used as is. A HuggingFace hub id ("DeepPavlov/rubert-base-cased") is
downloaded into the HF cache: one weight format only (safetensors preferred over .bin, TF1
as the last resort) plus the config and tokenizer files.
"""

import json
import logging
import os
import re

logger = logging.getLogger(__name__)

# Preference order: the first one a repository has is downloaded, the others are not.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "bert_model.ckpt.index")
CONFIG_AND_TOKENIZER_FILES = ("config.json", "bert_config.json", "vocab.txt", "tokenizer_config.json",
                              "special_tokens_map.json", "tokenizer.json")

# "name" or "org/name": letters, digits, "-", "_", "." (what the hub accepts), no path tricks.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def looks_like_hub_id(name):
    return bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith(".")


def resolve_model_dir(name_or_path, revision=None):
    """A local directory for `name_or_path`: the directory itself, or the hub snapshot in the cache."""
    path = os.path.expanduser(os.fspath(name_or_path))
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise NotADirectoryError(f"{path}: expected a checkpoint directory, got a file")
    if not looks_like_hub_id(path):
        raise FileNotFoundError(f"{path}: no such directory (and it is not a HuggingFace hub id)")
    return download(path, revision=revision)


def files_to_download(repo_id, files, read_index=None):
    """The files of a repository a RuBERT model needs: the preferred weight format and its shards,
    the configs and the tokenizer files."""
    weights = next((name for name in WEIGHT_FILES if name in files), None)
    if weights is None:
        raise FileNotFoundError(f"hub repository {repo_id} has no BERT weights: looked for "
                                f"{', '.join(WEIGHT_FILES)}; it has {sorted(files)}")
    wanted = [weights]
    if weights.endswith(".index.json"):
        # Shard names come from the index itself, so unusual shard names still work.
        wanted += sorted(set(read_index(weights)["weight_map"].values()))
    elif weights == "bert_model.ckpt.index":
        wanted += [name for name in files if name.startswith("bert_model.ckpt.data-")]
    wanted += [name for name in CONFIG_AND_TOKENIZER_FILES if name in files]
    return wanted


def download(repo_id, revision=None):
    """Download `repo_id` into the HF cache (or reuse the cache when offline); returns the snapshot dir."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        files = huggingface_hub.list_repo_files(repo_id, revision=revision)
    except GatedRepoError as error:
        raise PermissionError(f"{repo_id}: gated hub repository; log in with `hf auth login` "
                              f"after accepting its terms ({error})") from error
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise FileNotFoundError(f"{repo_id}: neither a local directory nor a model on the HuggingFace hub "
                                f"(or it is private and needs a token): {error}") from error
    except Exception as error:
        # No network (or offline mode): a previous download in the cache is still good.
        try:
            directory = huggingface_hub.snapshot_download(repo_id, revision=revision, local_files_only=True)
        except Exception:
            raise ConnectionError(
                f"{repo_id}: not a local directory, and downloading it from the HuggingFace hub failed "
                f"({type(error).__name__}: {error}). Downloading needs network access; without it, pass "
                "the path of a local checkpoint directory (config.json + model.safetensors or "
                "pytorch_model.bin, or a TF1 bert_config.json + bert_model.ckpt).") from error
        logger.warning("%s: hub not reachable (%s); using the cached copy in %s", repo_id, error, directory)
        return directory

    def read_index(name):
        with open(huggingface_hub.hf_hub_download(repo_id, name, revision=revision), encoding="utf-8") as f:
            return json.load(f)

    wanted = files_to_download(repo_id, files, read_index)
    logger.info("%s: downloading %s", repo_id, ", ".join(wanted))
    return huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=wanted)
