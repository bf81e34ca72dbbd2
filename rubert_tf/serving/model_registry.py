"""Which models and versions are served: config, the version folders on disk, loading and unloading.

As TF Serving's ServerCore + FileSystemStoragePathSource + AvailabilityPreservingPolicy:
- a model is BASE/<integer version>/saved_model.pb; folder names are parsed as integers ("01" is 1),
  anything else is skipped;
- the base path is polled every `file_system_poll_wait_seconds` (0: once at start-up; < 0: never);
- the version policy (latest N, default 1 / all / specific) picks the aspired versions;
- an aspired version is loaded completely (tf.saved_model.load, warm-up replayed) before it becomes
  AVAILABLE; versions that are no longer aspired are unloaded only once an aspired one is available,
  so a model never stops answering during an update;
- every version ever seen keeps its state for GetModelStatus (START, LOADING, AVAILABLE, UNLOADING, END).
"""

import logging
import os
import re
import threading
import time

from rubert_tf.serving.errors import StatusError, from_exception, invalid_argument, not_found

log = logging.getLogger("rubert_tf.serving")

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000
_VERSION_FOLDER = re.compile(r"\d+")
_MAX_INT64 = 2**63 - 1


class Servable:
    """One loaded SavedModel version: its SignatureDefs (as the MetaGraphDef has them) and functions."""

    def __init__(self, name, version, path, signature_defs, functions, loaded):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs   # name -> tensorflow.SignatureDef proto
        self.functions = functions             # name -> ConcreteFunction (loaded.signatures)
        self._loaded = loaded                  # keeps the restored objects (variables, tables) alive

    def __repr__(self):
        return f"Servable({self.name!r}, version={self.version})"


class VersionState:
    def __init__(self, version, path):
        self.version = version
        self.path = path
        self.state = "START"
        self.error_code = "OK"
        self.error_message = ""
        self.servable = None
        self.failures = 0
        self.retry_at = 0.0
        self.fingerprint = None   # the folder as it was when loading it failed


class _Model:
    def __init__(self, config):
        self.config = config
        self.versions = {}   # int -> VersionState
        self.warning = None


def config_from_flags(model_name, model_base_path):
    """BuildSingleModelConfig: one model from --model_name / --model_base_path."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = model_base_path
    model.model_platform = "tensorflow"
    return config


def parse_config_file(path):
    """A text-proto ModelServerConfig (--model_config_file)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise StatusError("NOT_FOUND", f"Cannot read --model_config_file {path}: {error.strerror}") from None
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise invalid_argument(f"Invalid protobuf file: '{path}': {error}") from None


def validate_config(config):
    """The checks ServerCore::ReloadConfig makes before touching anything."""
    if config.WhichOneof("config") != "model_config_list":
        raise invalid_argument("ModelServer does not support custom model config; use model_config_list")
    seen = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise invalid_argument("Model config is missing a name")
        if model.name in seen:
            raise invalid_argument(f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if not model.base_path:
            raise invalid_argument(f"Model {model.name} has no base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise invalid_argument(f"Model {model.name} requested unsupported platform {model.model_platform}; "
                                   "only \"tensorflow\" SavedModels are served")
        for label, version in model.version_labels.items():
            if version < 0:
                raise invalid_argument(f"Version label {label} of model {model.name} points at a negative version")


def list_versions(base_path):
    """{version: folder path} of the integer-named folders under `base_path`."""
    try:
        entries = sorted(os.listdir(base_path))
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("Cannot list %s: %s", base_path, error)
        return None
    versions = {}
    for entry in entries:
        if not _VERSION_FOLDER.fullmatch(entry):
            continue
        path = os.path.join(base_path, entry)
        version = int(entry)
        if version > _MAX_INT64 or not os.path.isdir(path):
            continue
        if version in versions:
            log.warning("Folders %s and %s both are version %d of %s; using the first", versions[version], path,
                        version, base_path)
            continue
        versions[version] = path
    return versions


def aspired_versions(policy, available):
    """The versions the policy wants loaded, out of those found on disk."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(available)
    if choice == "specific":
        return set(policy.specific.versions) & set(available)
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return set(sorted(available, reverse=True)[:count])


def _read_signature_defs(path, tags):
    from tensorflow.core.protobuf import saved_model_pb2

    pb = os.path.join(path, "saved_model.pb")
    if not os.path.exists(pb):
        raise StatusError("NOT_FOUND", f"Could not find SavedModel .pb or .pbtxt at supplied export directory "
                                       f"path: {path}")
    saved_model = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return dict(meta_graph.signature_def)
    raise StatusError("NOT_FOUND", f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}. "
                                   "To inspect available tag-sets in the SavedModel, please use the SavedModel "
                                   "CLI: `saved_model_cli`")


_SHARD = re.compile(r"variables\.data-(\d+)-of-(\d+)")


def _check_variables(path):
    """A variables/ folder without its index or one of its data shards (a copy not finished, a file
    lost) names the missing file, where TF's own loader reports an opaque INTERNAL error."""
    folder = os.path.join(path, "variables")
    if not os.path.isdir(folder):
        return
    names = set(os.listdir(folder))
    if "variables.index" not in names:
        raise StatusError("NOT_FOUND", f"{folder}/variables.index is missing (an unfinished copy of the version?)")
    shards = [_SHARD.fullmatch(n) for n in names]
    counts = {int(m.group(2)) for m in shards if m}
    expected = max(counts) if counts else 1
    for index in range(expected):
        shard = f"variables.data-{index:05d}-of-{expected:05d}"
        if shard not in names:
            raise StatusError("NOT_FOUND", f"{folder}/{shard} is missing (an unfinished copy of the version?)")


def folder_fingerprint(path):
    """(files, bytes, newest mtime) of a version folder: changes while a copy is still going on."""
    count = size = newest = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.stat(os.path.join(root, name))
            except OSError:
                continue
            count, size, newest = count + 1, size + info.st_size, max(newest, info.st_mtime_ns)
    return count, size, newest


def load_servable(name, version, path, tags=("serve",)):
    """tf.saved_model.load with tensorflow_text's ops registered, as the model server links them."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops our SavedModels use)

    signature_defs = _read_signature_defs(path, tags)
    _check_variables(path)
    loaded = tf.saved_model.load(path, tags=list(tags))
    functions = {key: loaded.signatures[key] for key in loaded.signatures.keys()}
    return Servable(name, version, path, signature_defs, functions, loaded)


class ModelRegistry:
    """The served models; `poll()` reconciles them with the folders on disk and the version policies."""

    def __init__(self, config, tags=("serve",), poll_wait_seconds=1.0, warmup=None, max_load_retries=5,
                 load_retry_interval_seconds=60.0, on_unload=None):
        validate_config(config)
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._models = {m.name: _Model(m) for m in config.model_config_list.config}
        self._tags = tuple(tags)
        self._poll_wait_seconds = poll_wait_seconds
        self._warmup = warmup              # callable(servable) replaying the warm-up log, or None
        self._max_load_retries = max_load_retries
        self._retry_interval = load_retry_interval_seconds
        self._on_unload = on_unload
        self._stop = threading.Event()
        self._thread = None

    # ------------------------------------------------------------------------------------------ config

    def model_names(self):
        with self._lock:
            return list(self._models)

    def reload_config(self, config):
        """HandleReloadConfigRequest / --model_config_file polling: add, drop and re-policy models."""
        validate_config(config)
        with self._lock:
            new = {m.name: m for m in config.model_config_list.config}
            for name in list(self._models):
                if name not in new:
                    removed = self._models.pop(name)
                    for state in removed.versions.values():
                        self._unload(removed, state)
            for name, model_config in new.items():
                if name in self._models:
                    self._models[name].config = model_config
                else:
                    self._models[name] = _Model(model_config)
        self.poll()

    # ------------------------------------------------------------------------------------------ polling

    def poll(self):
        """One pass: find versions on disk, load the aspired ones, unload the rest (availability first)."""
        with self._poll_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                self._poll_model(model)

    def _poll_model(self, model):
        config = model.config
        found = list_versions(config.base_path)
        warning = None
        if found is None:
            warning = f"File system storage path source: cannot find base path {config.base_path} for servable " \
                      f"{config.name}"
            found = {}
        elif not found:
            warning = f"No versions of servable {config.name} found under base path {config.base_path}. Did you " \
                      "forget to name your leaf directory as a number (eg. '/1/')?"
        if warning != model.warning:   # said once, not at every poll
            if warning:
                log.warning(warning)
            model.warning = warning
        aspired = aspired_versions(config.model_version_policy, found)
        for version in sorted(aspired, reverse=True):
            if self._stop.is_set():
                return
            with self._lock:
                state = model.versions.get(version)
                if state is None or state.state == "END" and state.error_code == "OK":
                    state = VersionState(version, found[version])   # new, or re-aspired after an unload
                    model.versions[version] = state
                elif state.state in ("AVAILABLE", "LOADING"):
                    continue
                elif state.failures and (state.failures > self._max_load_retries or time.time() < state.retry_at):
                    # A version caught mid-copy is tried again at the next poll once its folder changed,
                    # not after the fixed retry interval (a 4 s copy would wait 60 s).
                    if state.fingerprint is None or folder_fingerprint(state.path) == state.fingerprint:
                        continue
                    log.info("Servable {name: %s version: %d}: its folder changed since loading failed: retrying",
                             config.name, version)
                    state.failures = 0  # a copy still growing is not a version that keeps failing
            self._load(model, state)
        with self._lock:
            any_aspired_available = any(s.state == "AVAILABLE" for v, s in model.versions.items() if v in aspired)
            for version, state in list(model.versions.items()):
                if version in aspired or state.state != "AVAILABLE":
                    continue
                if any_aspired_available or not aspired:
                    self._unload(model, state)

    def _load(self, model, state):
        name = model.config.name
        with self._lock:
            state.state = "LOADING"
        log.info("Loading servable: {name: %s version: %d} from %s", name, state.version, state.path)
        started = time.time()
        try:
            servable = load_servable(name, state.version, state.path, self._tags)
            if self._warmup is not None:
                self._warmup(servable)
        except Exception as error:  # any failure is reported in the version's status, never fatal
            status = from_exception(error)
            with self._lock:
                state.state = "END"
                state.error_code = status.code if status.code != "OK" else "UNKNOWN"
                state.error_message = status.message
                state.failures += 1
                state.retry_at = time.time() + self._retry_interval
                state.fingerprint = folder_fingerprint(state.path)
            log.error("Loading servable: {name: %s version: %d} failed: %s", name, state.version, status.message)
            return
        with self._lock:
            state.servable = servable
            state.state = "AVAILABLE"
            state.error_code, state.error_message = "OK", ""
        log.info("Successfully loaded servable version {name: %s version: %d} in %.1fs", name, state.version,
                 time.time() - started)

    def _unload(self, model, state):
        state.state = "UNLOADING"
        servable, state.servable = state.servable, None
        state.state = "END"
        state.error_code, state.error_message = "OK", ""
        if servable is not None:
            log.info("Unloaded servable version {name: %s version: %d}", model.config.name, state.version)
            if self._on_unload is not None:
                self._on_unload(servable)

    def start(self):
        """Poll once now; then keep polling in a daemon thread (TF Serving: 0 = once, < 0 = never)."""
        if self._poll_wait_seconds >= 0:
            self.poll()
        if self._poll_wait_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="file-system-poll", daemon=True)
            self._thread.start()

    def _poll_loop(self):
        while not self._stop.wait(self._poll_wait_seconds):
            try:
                self.poll()
            except Exception:  # a bad poll must not kill the thread
                log.exception("Polling the model folders failed")

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ------------------------------------------------------------------------------------------ lookups

    def _model(self, name):
        model = self._models.get(name)
        return model

    def _label_version(self, name, label):
        model = self._model(name)
        if model is None or label not in model.config.version_labels:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return model.config.version_labels[label]

    def get_servable(self, name, version=None, label=None):
        """ServerCore::GetServableHandle: latest available, a given version, or a labelled one."""
        with self._lock:
            if label is not None:
                version = self._label_version(name, label)
            model = self._model(name)
            if version is None:
                available = [] if model is None else [s for s in model.versions.values() if s.state == "AVAILABLE"]
                if not available:
                    raise not_found(f"Servable not found for request: Latest({name})")
                return max(available, key=lambda s: s.version).servable
            state = None if model is None else model.versions.get(version)
            if state is None or state.state != "AVAILABLE":
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            return state.servable

    def version_states(self, name, version=None, label=None):
        """GetModelStatus: [(version, state, error_code, error_message)], highest version first."""
        with self._lock:
            if label is not None:
                version = self._label_version(name, label)
            model = self._model(name)
            states = {} if model is None else model.versions
            if version is not None:
                if version not in states:
                    raise not_found(f"Could not find version {version} of model {name}")
                chosen = [states[version]]
            else:
                if not states:
                    raise not_found(f"Could not find any versions of model {name}")
                chosen = [states[v] for v in sorted(states, reverse=True)]
            return [(s.version, s.state, s.error_code, s.error_message) for s in chosen]

    def available(self):
        """{model name: [available versions]} (for the ready line and logs)."""
        with self._lock:
            return {name: sorted(v for v, s in model.versions.items() if s.state == "AVAILABLE")
                    for name, model in self._models.items()}


__all__ = ["CLASSIFY_METHOD", "ModelRegistry", "PREDICT_METHOD", "REGRESS_METHOD", "Servable",
           "aspired_versions", "config_from_flags", "list_versions", "load_servable", "parse_config_file"]
