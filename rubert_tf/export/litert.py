"""LiteRT (TFLite) deploy folders: the network as a .tflite (optionally dynamic-range int8), the tokenizer
and the task settings beside it, and a runner that answers raw text exactly as the SavedModel does.

    import rubert_tf as rt
    rt.export_litert(classifier, "deploy/sentiment", quantize="int8")     # or: rubert-tf export ... --format tflite
    lite = rt.LiteRTModel.load("deploy/sentiment")
    lite.serve(text=["Отличный фильм"])          # the SavedModel's serving_default outputs, numpy
    rt.tasks.get_task("classification").predict(lite, [{"text": "..."}])   # or evaluate(): same task code

Why the network alone is in the .tflite: the in-graph tokenizer needs string ops (Select TF ops) and
tensorflow-text's FastWordpiece custom op, which the stock LiteRT runtime does not link. The network is
all TFLite builtins, so XNNPACK runs it (int8 weights with `quantize="int8"`: what production CPU inference
of BERT-size models uses); the runner tokenizes with the same RuBertTokenizer and post-processes with the
task's own serving code, which calls the network through `LiteRTModel.__call__` (tf.numpy_function) where
the SavedModel calls the Keras model. So answers differ from the SavedModel's only by the network's
numerics (float32: ~1e-6; int8: quantization error, measured in BENCHMARKS.md).

Folder: model.tflite, litert.json (task, inputs, output names in order, quantization), config.json (the
model config with the task settings and labels), vocab.txt + tokenizer_config.json.
"""

import copy
import json
import os
import shutil
import tempfile
import threading

import numpy as np
import tensorflow as tf

FORMAT = 1
MODEL_FILE, META_FILE, CONFIG_FILE = "model.tflite", "litert.json", "config.json"
QUANTIZATIONS = (None, "int8")


def is_litert_folder(path):
    return os.path.isfile(os.path.join(path, MODEL_FILE)) and os.path.isfile(os.path.join(path, META_FILE))


def _network_function(model):
    """tf.function over the Keras model's int32 [B, T] inputs -> its output dict, and the input names."""
    if not isinstance(model.input, dict):
        raise TypeError(f"{type(model).__name__}: a LiteRT export needs a model with named int inputs")
    names = sorted(model.input)
    spec = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in names}

    @tf.function(input_signature=[spec])
    def network(inputs):
        outputs = model(inputs, training=False)
        if not isinstance(outputs, dict):
            outputs = {"output": outputs}
        return {key: tf.cast(value, tf.float32) for key, value in outputs.items()}

    return network, names


def convert(model, quantize=None):
    """The model's network as TFLite flatbuffer bytes, and (input names, output names in tensor order)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize={quantize!r}: expected one of {QUANTIZATIONS}")
    network, input_names = _network_function(model)
    # Frozen first: the converter does not fold Keras 3's resource variables (it keeps VAR_HANDLE ops
    # that a fresh interpreter reads as uninitialised).
    concrete = network.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    output_names = sorted(concrete.structured_outputs)  # the frozen outputs: the dict flattened by sorted keys
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights, float activations
    return converter.convert(), input_names, output_names


def export_litert(model, out, tokenizer=None, quantize=None, settings=None, overwrite=False):
    """Write a deploy folder `out` (see the module docstring). `settings`: task setting overrides, stored
    with the model as export() stores them. Refuses an existing non-empty `out` unless `overwrite`;
    the folder appears whole (written beside it, then renamed)."""
    from rubert_tf.tasks import task_of_model

    out = os.fspath(out)
    task = task_of_model(model)
    if task.name == "seq2seq":
        raise ValueError("a LiteRT export covers the encoder tasks (classification, ner, qa, sentence); "
                         "seq2seq generation (beam search) is exported as a SavedModel only")
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("export_litert needs the tokenizer (argument or model.tokenizer) to answer raw text")
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True / --overwrite to replace it)")
    resolved = task.settings(model, settings)
    blob, input_names, output_names = convert(model, quantize)

    config = copy.deepcopy(model.config)
    from rubert_tf.tasks.settings import CONFIG_KEY

    config.extra[CONFIG_KEY] = dict(resolved.to_dict(), task=task.name)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        with open(os.path.join(staging, MODEL_FILE), "wb") as handle:
            handle.write(blob)
        meta = {"format": FORMAT, "task": task.name, "model_class": type(model).__name__, "inputs": input_names,
                "outputs": output_names, "quantize": quantize,
                "multi_label": bool(getattr(model, "multi_label", False))}
        with open(os.path.join(staging, META_FILE), "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2)
        with open(os.path.join(staging, CONFIG_FILE), "w", encoding="utf-8") as handle:
            json.dump(config.to_dict(), handle, ensure_ascii=False, indent=2)
        tokenizer.save_pretrained(staging)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a deploy folder is read by other users
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _interpreter(path, threads):
    """LiteRT's interpreter (ai-edge-litert) when installed, else TensorFlow's copy of it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - ai-edge-litert is a requirement; this is the fallback
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=path, num_threads=threads)
    return Interpreter(model_path=path, num_threads=threads)


class LiteRTNetwork:
    """A .tflite network with named int32 [B, T] inputs: `run(inputs)` -> float32 outputs by name. The
    interpreter is resized when the input shape changes; calls from several threads take turns."""

    def __init__(self, model_path, input_names, output_names, threads=None):
        threads = threads or int(os.environ.get("RUBERT_TF_LITERT_THREADS", "0")) or os.cpu_count() or 1
        self._interpreter = _interpreter(model_path, threads)
        details = {d["name"]: d for d in self._interpreter.get_input_details()}
        self.inputs = {name: self._input_index(details, name) for name in input_names}
        outputs = self._output_details(output_names)
        # (name, tensor index, static shape with None for dynamic dimensions)
        self.outputs = [(name, d["index"], [None if n < 0 else int(n) for n in d["shape_signature"]])
                        for name, d in zip(output_names, outputs)]
        self._shape = None
        self._lock = threading.Lock()

    def _output_details(self, output_names):
        """The output tensors in the order of `output_names` (the frozen function's outputs). The
        interpreter's own output list is in no promised order (two [B, T] logits of QA came swapped);
        the converter's signature names them output_<i> after the function's i-th output."""
        signatures = self._interpreter.get_signature_list()
        if len(signatures) == 1:
            key = next(iter(signatures))
            details = self._interpreter.get_signature_runner(key).get_output_details()
            if sorted(details) == sorted(f"output_{i}" for i in range(len(output_names))):
                return [details[f"output_{i}"] for i in range(len(output_names))]
        raise ValueError(f"the .tflite's signature does not name its {len(output_names)} outputs "
                         f"{output_names} as output_0..output_{len(output_names) - 1}: {signatures}")

    @staticmethod
    def _input_index(details, name):
        for key, detail in details.items():
            if key in (name, f"{name}:0") or key.endswith((f"_{name}", f"_{name}:0")):
                return detail["index"]
        raise ValueError(f"the .tflite has no input {name!r} (it has {sorted(details)})")

    def run(self, inputs):
        arrays = {name: np.ascontiguousarray(inputs[name], dtype=np.int32) for name in self.inputs}
        shape = next(iter(arrays.values())).shape
        with self._lock:
            if shape != self._shape:
                for name, index in self.inputs.items():
                    self._interpreter.resize_tensor_input(index, list(shape))
                self._interpreter.allocate_tensors()
                self._shape = shape
            for name, index in self.inputs.items():
                self._interpreter.set_tensor(index, arrays[name])
            self._interpreter.invoke()
            return {name: self._interpreter.get_tensor(index).copy() for name, index, _ in self.outputs}


class LiteRTModel:
    """A deploy folder loaded for inference: quacks like the task model where the task code needs it
    (`config`, `labels`, `multi_label`, `tokenizer`, `model(inputs)["logits"]`), so the task's serving,
    predict and evaluate code runs on it unchanged.

    Example (a tiny random classifier exported with int8 weights, then run on text):

    >>> import tempfile, rubert_tf as rt
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Отличный", "фильм", "плохой", "!"]
    >>> config = rt.RuBertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> model = rt.RuBertClassifier(config, labels=["negative", "positive"])
    >>> folder = rt.export_litert(model, tempfile.mkdtemp() + "/sentiment", tokenizer=rt.RuBertTokenizer(vocab),
    ...                           quantize="int8")
    >>> lite = rt.LiteRTModel.load(folder)
    >>> lite.task_name, lite.labels
    ('classification', ['negative', 'positive'])
    >>> outputs = lite.serve(text=["Отличный фильм!", "плохой фильм"])
    >>> sorted(outputs), outputs["probabilities"].shape
    (['label', 'label_id', 'probabilities'], (2, 2))
    """

    def __init__(self, path, threads=None):
        from rubert_tf.config import RuBertConfig
        from rubert_tf.models.task import labels_from_config
        from rubert_tf.tokenizer import RuBertTokenizer

        path = os.fspath(path)
        if not is_litert_folder(path):
            raise FileNotFoundError(f"{path} is not a LiteRT deploy folder (expected {MODEL_FILE} and {META_FILE})")
        with open(os.path.join(path, META_FILE), encoding="utf-8") as handle:
            self.meta = json.load(handle)
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{path}/{META_FILE}: format {self.meta.get('format')!r}, this library reads {FORMAT}")
        self.path = path
        self.config = RuBertConfig.from_json_file(os.path.join(path, CONFIG_FILE))
        self.labels = labels_from_config(self.config)
        self.multi_label = self.meta["multi_label"]
        self.tokenizer = RuBertTokenizer.from_pretrained(path)
        self.task_name = self.meta["task"]
        self.network = LiteRTNetwork(os.path.join(path, MODEL_FILE), self.meta["inputs"], self.meta["outputs"], threads)

    @classmethod
    def load(cls, path, threads=None):
        return cls(path, threads=threads)

    def __call__(self, inputs, training=False):
        """The network on int tensors [B, T] -> dict of float32 tensors, inside or outside a tf.function."""
        names = list(self.network.inputs)

        def run(*arrays):
            outputs = self.network.run(dict(zip(names, arrays)))
            return [outputs[name] for name, _, _ in self.network.outputs]

        values = tf.numpy_function(run, [tf.cast(inputs[name], tf.int32) for name in names],
                                   [tf.float32] * len(self.network.outputs), stateful=False)
        result = {}
        for (name, _, shape), value in zip(self.network.outputs, values):
            value.set_shape(shape)
            result[name] = value
        return result

    def _require_tokenizer(self):
        return self.tokenizer

    def task(self):
        from rubert_tf.tasks import get_task

        return get_task(self.task_name)

    def serve(self, signature="serving_default", settings=None, **inputs):
        """The SavedModel signature's outputs for raw inputs (lists of strings) -> dict of numpy arrays."""
        from rubert_tf.tasks.module import cached_module

        task = self.task()
        module = cached_module(self, self.tokenizer, task.settings(self, settings), task.serving_module)
        return module(signature, **inputs)
