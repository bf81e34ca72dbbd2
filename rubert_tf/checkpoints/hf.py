"""HuggingFace checkpoint files <-> {HF weight name: np.ndarray}.

Reads `model.safetensors`, `pytorch_model.bin` and their sharded `*.index.json` variants, and
writes the HF layout (config.json + model.safetensors [+ tokenizer files]).

`pytorch_model.bin` is a torch zip archive holding a pickle. We read it without torch and
without trusting the pickle: a restricted unpickler accepts only the handful of globals a
plain state dict needs (torch's tensor-rebuild functions, storage types, OrderedDict), so a
file carrying any other object is refused before that object is ever created.
"""

import collections
import json
import math
import os
import pickle
import shutil
import tempfile
import zipfile

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint file or its contents is not what a BERT checkpoint should be."""


# ---- safetensors --------------------------------------------------------------------

def read_safetensors(path):
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except TypeError as error:
        # numpy has no bfloat16: safetensors.numpy refuses BF16 files, so read those ourselves.
        if "bfloat16" not in str(error):
            raise
        return _read_safetensors_with_ml_dtypes(path)
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error


def _read_safetensors_with_ml_dtypes(path):
    """Minimal safetensors reader (8-byte header length, JSON header, raw little-endian data)
    for dtypes numpy lacks; ml_dtypes ships with TensorFlow."""
    import ml_dtypes

    dtypes = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_}
    with open(path, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_size))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            raise CheckpointError(f"{path}: tensor '{name}' has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors


# ---- pytorch_model.bin (torch zip pickle) ------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _numpy_dtype(name):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _StorageType(str):
    """Stands in for `torch.FloatStorage` etc. A str subclass without __dict__, so a crafted
    pickle cannot set attributes on it."""

    __slots__ = ()


def _check_ints(value, what):
    if not isinstance(value, tuple) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise CheckpointError(f"tensor {what} must be a tuple of non-negative ints, got {value!r}")
    return value


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Our `torch._utils._rebuild_tensor_v2`: a numpy view of `storage` with torch's
    offset/size/stride (in elements), bounds-checked so a crafted file cannot read past it."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise CheckpointError(f"tensor storage must come from the archive, got {type(storage).__name__}")
    size, stride = _check_ints(tuple(size), "size"), _check_ints(tuple(stride), "stride")
    if len(size) != len(stride) or not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointError(f"inconsistent tensor layout: offset {storage_offset!r}, size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    # Checked before anything is allocated: a stride-0 (expanded) or overlapping view of a tiny storage
    # would otherwise be compacted into as many elements as its size claims (1 KB of file -> 1 GB).
    count = math.prod(size)
    if count > storage.size - storage_offset:
        raise CheckpointError(f"tensor of size {size} (stride {stride}) has {count} elements but its storage "
                              f"holds {storage.size - storage_offset} from offset {storage_offset}: an expanded "
                              "or overlapping view, which a state dict of weights does not have")
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise CheckpointError(f"tensor (offset {storage_offset}, size {size}, stride {stride}) "
                              f"reaches past its storage of {storage.size} elements")
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=[s * storage.itemsize for s in stride], writeable=False)
    # Contiguous tensors stay views of the storage (no copy); transposed/strided ones get compacted.
    return view if view.flags.c_contiguous else np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    # nn.Parameter in a state dict (some scripts save those): the data is all we need.
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


def _not_a_state_dict(path, detail):
    return CheckpointError(
        f"{path}: not a plain PyTorch state dict ({detail}). Only dicts of tensors can be read, and "
        "nothing else in the file is executed; re-save it with torch.save(model.state_dict(), ...) "
        "or as safetensors.")


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles `data.pkl` of a torch zip archive into {name: np.ndarray}."""

    def __init__(self, file, archive, prefix, path, byteorder):
        super().__init__(file)
        self._archive, self._prefix, self._path, self._byteorder = archive, prefix, path, byteorder
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise _not_a_state_dict(self._path, f"it references {module}.{name}")

    def persistent_load(self, pid):
        # torch writes ('storage', storage_type, key, location, numel) for every tensor storage.
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise _not_a_state_dict(self._path, f"unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            entry = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(entry)
            except KeyError:
                raise CheckpointError(f"{self._path}: archive entry {entry} is missing") from None
            dtype = _numpy_dtype(_STORAGE_DTYPES[storage_type]).newbyteorder(self._byteorder)
            if len(raw) < numel * dtype.itemsize:
                raise CheckpointError(f"{self._path}: {entry} holds {len(raw)} bytes, "
                                      f"expected {numel} x {dtype.itemsize}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        return self._storages[key]


def read_torch_bin(path):
    """{name: np.ndarray} from a `torch.save(state_dict)` zip archive, without torch."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a zip archive. This is a legacy (pre-PyTorch-1.6) torch file, or not a torch "
            "file at all; re-save it with a current torch (torch.save(torch.load(path))) or convert it "
            "to safetensors.")
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the torch archive, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "<"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = ">" if archive.read(f"{prefix}byteorder").strip() == b"big" else "<"
        with archive.open(pickles[0]) as file:
            unpickler = _StateDictUnpickler(file, archive, prefix, path, byteorder)
            try:
                state = unpickler.load()
            except CheckpointError:
                raise
            except Exception as error:
                raise _not_a_state_dict(path, f"unpickling failed: {error}") from error
    if not isinstance(state, dict):
        raise _not_a_state_dict(path, f"it holds a {type(state).__name__}")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise _not_a_state_dict(path, f"entry {name!r} is a {type(value).__name__}, not a tensor")
    # Big-endian files: convert once here so everything downstream sees native arrays.
    return {name: value.astype(value.dtype.newbyteorder("=")) if not value.dtype.isnative else value
            for name, value in state.items()}


# ---- any HF weight file ------------------------------------------------------------------

def read_sharded(index_path, read_shard):
    """`*.index.json` ({"weight_map": {name: shard file}}) -> merged {name: array}."""
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{index_path}: not a valid shard index ({error!r})") from None
    directory = os.path.dirname(index_path)
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(directory, shard)
        if not os.path.isfile(shard_path):
            raise FileNotFoundError(f"{index_path} lists shard {shard}, which is not in {directory}")
        tensors.update(read_shard(shard_path))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise CheckpointError(f"{index_path}: tensors listed in the index are not in their shards: {missing[:10]}")
    return tensors


def read_hf_weights(path):
    """{HF name: np.ndarray} from model.safetensors, pytorch_model.bin or a sharded *.index.json."""
    if path.endswith(".safetensors.index.json"):
        return read_sharded(path, read_safetensors)
    if path.endswith(".bin.index.json"):
        return read_sharded(path, read_torch_bin)
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    if path.endswith(".bin"):
        return read_torch_bin(path)
    raise CheckpointError(f"{path}: unknown HF weight file type")


# ---- writing -----------------------------------------------------------------------------

def hf_state_dict(model):
    """{HF name: np.ndarray} of a model, in HF's layout (kernels back to [out, in])."""
    tensors = {}
    for name, (variable, transpose) in model.hf_weight_map().items():
        value = np.asarray(variable.numpy())
        tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    return tensors


def save_hf_checkpoint(model, directory, tokenizer=None, architecture="BertModel", config_values=None):
    """Write the HF layout transformers reads: config.json, model.safetensors (+ tokenizer files).

    `config_values`: the config.json dict (default: `model.config.to_hf_dict()`, a BertConfig); the
    Electra layout passes its own (rubert_tf.checkpoints.electra).

    The tensor names are exactly the ones transformers 5 writes for `architecture`: tied weights
    (BertForMaskedLM's `cls.predictions.decoder.*`) are not stored, as transformers does not
    store them either. Everything is written into a staging folder first and then moved into
    place with os.replace, config.json last, so a failure never leaves a half-written checkpoint.
    """
    from safetensors.numpy import save_file

    is_bert = architecture.startswith("Bert")
    if is_bert and getattr(model.config, "factorized_embeddings", False):
        raise CheckpointError(
            f"{type(model).__name__} has factorised embeddings (embedding_size={model.config.embedding_size}, "
            f"hidden_size={model.config.hidden_size}): the {architecture} layout has no embeddings_project, so it "
            "cannot be saved as a BERT checkpoint (an ELECTRA model is saved in the Electra layout: "
            "RuBertForReplacedTokenDetection.save_pretrained)")
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".saving-", dir=directory)
    try:
        save_file(hf_state_dict(model), os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
        values = dict(model.config.to_hf_dict() if config_values is None else config_values)
        # A config loaded from another architecture's checkpoint carries its old "architectures" (and an
        # Electra one its "model_type", which would make transformers build an Electra model).
        values["architectures"] = [architecture]
        if is_bert:
            values["model_type"] = "bert"
        with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2, ensure_ascii=False)
            f.write("\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        names = sorted(os.listdir(staging), key=lambda name: name == "config.json")
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
