"""`rubert-tf serve` against TF Serving's REST and gRPC contract.

Small SavedModels are built here (a tensorflow_text WhitespaceTokenizer inside the graph, batch-major
outputs), saved as integer versions under temporary base paths, and served by `python -m rubert_tf.serving`
subprocesses on free ports. Expected messages and formats are TF Serving's (2.20 sources:
http_rest_api_handler.cc, http_rest_api_util.cc, json_tensor.cc, predict_util.cc, get_model_status_impl.cc).
"""

import ast
import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING_DIR = os.path.join(REPO, "rubert_tf", "serving")
LABELS = ["negative", "neutral", "positive"]
CLASSIFY_METHOD = "tensorflow/serving/classify"


# ---------------------------------------------------------------------------------------------- models

def build_saved_model(path, version):
    """A tiny 'classifier' whose answers name its version (label "negative@v2")."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    class TinyServing(tf.Module):
        def __init__(self):
            super().__init__()
            self.tokenizer = tf_text.WhitespaceTokenizer()
            self.weights = tf.Variable([[0.5, -0.25, 0.1 * version], [0.0, 0.3, -0.2]], dtype=tf.float32)
            self.names = tf.constant(LABELS)

    module = TinyServing()
    tag = f"v{version}"

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def classify(text):
        tokens = module.tokenizer.tokenize(text)
        count = tf.cast(tokens.row_lengths(), tf.float32)
        chars = tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.float32) / 10.0
        probabilities = tf.nn.softmax(tf.matmul(tf.stack([count, chars], axis=1), module.weights), axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        label = tf.strings.join([tf.gather(module.names, label_id), tag], separator="@")
        seen_batch = tf.fill(tf.shape(text), tf.cast(tf.size(text), tf.int64))   # rows in the batch that ran
        return {"probabilities": probabilities, "label": label, "label_id": label_id, "seen_batch": seen_batch}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="context")])
    def answer(question, context):
        words = module.tokenizer.tokenize(context)
        first = words[:, :1].to_tensor(default_value="")[:, 0]
        score = tf.cast(tf.strings.length(question), tf.float32) / (1.0 + tf.cast(words.row_lengths(), tf.float32))
        return {"answer": first, "score": score, "answer_bytes": first}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def length(text):
        return {"length": tf.strings.length(text, unit="UTF8_CHAR")}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def summary(text):
        return {"per_text": tf.strings.length(text), "total": tf.reshape(tf.reduce_sum(tf.strings.length(text)), [1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def floats(x):
        return {"third": x / 3.0, "same": x, "doubled": tf.cast(x, tf.float64) * 2.0}

    signatures = {"serving_default": classify, "qa": answer, "length": length, "summary": summary, "floats": floats}
    tf.saved_model.save(module, path, signatures=signatures)
    write_warmup_requests(path, {"serving_default": {"text": ["разогрев"]},
                                 "qa": {"question": ["кто?"], "context": ["Пушкин"]}})


def write_warmup_requests(path, requests_by_signature):
    """assets.extra/tf_serving_warmup_requests: PredictLog records, replayed before a version serves."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    os.makedirs(os.path.join(path, "assets.extra"))
    with tf.io.TFRecordWriter(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")) as writer:
        for signature, inputs in requests_by_signature.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "warmup"
            request.model_spec.signature_name = signature
            for name, values in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def set_method_name(saved_model_dir, signature, method_name):
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(saved_model_dir, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    proto.meta_graphs[0].signature_def[signature].method_name = method_name
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Built versions 1..4 (each answers '@vN'), to be copied into base paths."""
    root = tmp_path_factory.mktemp("built")
    for version in (1, 2, 3, 4):
        build_saved_model(str(root / str(version)), version)
    return root


def publish(store, version, base, folder=None):
    """Copy under a non-integer name (skipped by the server), then rename: an atomic publish."""
    staging = os.path.join(base, f"staging-{version}")
    shutil.copytree(os.path.join(store, str(version)), staging)
    os.rename(staging, os.path.join(base, folder or str(version)))


# ---------------------------------------------------------------------------------------------- servers

class ServerProcess:
    READY = re.compile(r"ready grpc_port=(\d+) rest_api_port=(\d+)")

    def __init__(self, args, log_path):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "rubert_tf.serving", *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.log_path = log_path
        self.grpc_port = self.rest_port = None

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout=240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            match = self.READY.search(line)
            if match:
                self.grpc_port, self.rest_port = int(match.group(1)), int(match.group(2))
                self.url = f"http://127.0.0.1:{self.rest_port}"
                return self
        self.stop()
        with open(self.log_path) as f:
            raise AssertionError("server did not become ready:\n" + f.read()[-4000:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


MULTI_CONFIG = """
model_config_list {{
  config {{
    name: "multi"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{
    name: "pinned"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 }} }}
  }}
}}
"""


@pytest.fixture(scope="module")
def servers(store, tmp_path_factory):
    """A: one model by flags, batching on, fast polling. B: two models from a config file, no batching."""
    root = tmp_path_factory.mktemp("serving")
    clf = root / "models" / "clf"
    clf.mkdir(parents=True)
    for version in (1, 2):
        publish(store, version, str(clf))
    multi = root / "models" / "multi"
    multi.mkdir(parents=True)
    publish(store, 1, str(multi), folder="01")         # "01" is version 1
    publish(store, 2, str(multi))
    (multi / "notes").mkdir()                           # not a number: skipped
    (multi / "3x").mkdir()
    set_method_name(str(multi / "2"), "summary", CLASSIFY_METHOD)
    config = root / "models.config"
    config.write_text(MULTI_CONFIG.format(base=multi))

    a = ServerProcess(["--model_name=clf", f"--model_base_path={clf}", "--port=0", "--rest_api_port=0",
                       "--file_system_poll_wait_seconds=0.5", "--enable_batching", "--max_batch_size=16",
                       "--batch_timeout_micros=2000", "--rest_api_max_request_bytes=200000"], str(root / "a.log"))
    b = ServerProcess([f"--model_config_file={config}", "--port", "0", "--rest_api_port", "0",
                       "--allow_grpc_reload_config", "--rest_api_max_connections=24",
                       "--rest_api_header_timeout_seconds=2"], str(root / "b.log"))
    try:
        yield {"a": a.wait_ready(), "b": b.wait_ready(), "clf_base": str(clf), "store": str(store),
               "config": str(config), "multi_base": str(multi)}
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def api(servers):
    return servers["a"].url + "/v1/models"


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        yield s


def post(session, url, body):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return session.post(url, data=data, timeout=60)


# ---------------------------------------------------------------------------------------------- unit level

def test_server_imports_only_what_tf_serving_has():
    """DESIGN: the server reads SavedModels only; nothing of rubert_tf's models, training or data."""
    allowed = {"tensorflow", "tensorflow_text", "tensorflow_serving", "grpc", "google", "numpy"}
    for name in os.listdir(SERVING_DIR):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(SERVING_DIR, name), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for module in modules:
                root = module.split(".")[0]
                if module.startswith("rubert_tf"):
                    assert module.startswith("rubert_tf.serving"), f"{name} imports {module}"
                else:
                    assert root in allowed or root in sys.stdlib_module_names, f"{name} imports {module}"


def test_float_writing_follows_write_decimal():
    from rubert_tf.serving.json_tensor import json_from_tensors, write_decimal

    # "%g" when it round-trips at the tensor's precision, else max_digits10; ".0" on whole numbers.
    assert write_decimal(0.1, np.float32) == "0.1"
    assert write_decimal(1 / 3, np.float32) == "0.333333343"
    assert write_decimal(1 / 3, np.float64) == "0.33333333333333331"
    assert write_decimal(9000000, np.float32) == "9e+06"
    assert write_decimal(3e-05, np.float32) == "3e-05"
    assert write_decimal(2.0, np.float32) == "2.0"
    assert write_decimal(16777215, np.float32) == "16777215.0"
    assert write_decimal(-0.0, np.float32) == "-0.0"
    assert write_decimal(float("nan")) == "NaN" and write_decimal(float("-inf")) == "-Infinity"
    text = json_from_tensors({"p": np.array([[0.1, 0.7]], np.float32)}, "row")
    assert text == '{"predictions": [[0.1, 0.7]]}'
    # float32 noise never leaks as float64 digits, and every value parses back to the same float32
    values = np.random.default_rng(0).random(1000).astype(np.float32)
    parsed = json.loads(json_from_tensors({"x": values}, "columnar"))["outputs"]
    assert np.array_equal(np.array(parsed, np.float32), values)


def test_batch_scheduler_merges_compatible_requests_only():
    from rubert_tf.serving.batching import BatchScheduler
    from rubert_tf.serving.errors import StatusError

    calls = []

    def runner(inputs):
        x = inputs["x"]
        calls.append(x.shape)
        if (x < 0).any():
            raise StatusError("INVALID_ARGUMENT", f"negative input in {x.tolist()}")
        return {"y": x * 2, "rows": np.full(x.shape[:1], x.shape[0])}

    class Servable:
        name, version = "m", 1

    scheduler = BatchScheduler(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1)

    def send_all(arrays):
        results = [None] * len(arrays)

        def send(i):
            try:
                results[i] = scheduler.run(Servable, "serving_default", runner, {"x": arrays[i]})
            except StatusError as error:
                results[i] = error

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(arrays))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        return results

    try:
        arrays = [np.full((1, 3), i, np.float32) for i in range(4)] + [np.ones((2, 5), np.float32)]
        results = send_all(arrays)
        for i in range(4):   # merged with each other, and each got its own rows back
            assert np.array_equal(results[i]["y"], arrays[i] * 2)
        assert max(int(r["rows"][0]) for r in results[:4]) > 1
        assert np.array_equal(results[4]["y"], np.full((2, 5), 2.0)) and results[4]["rows"].tolist() == [2, 2]
        assert all(shape[1:] in ((3,), (5,)) for shape in calls)   # trailing shapes never mixed

        # a failing request in a merged batch fails alone; its neighbours still get their answers
        results = send_all([np.full((1, 3), -1, np.float32), np.full((1, 3), 7, np.float32)])
        assert isinstance(results[0], StatusError) and results[0].message == "negative input in [[-1.0, -1.0, -1.0]]"
        assert np.array_equal(results[1]["y"], np.full((1, 3), 14.0))
    finally:
        scheduler.stop()


# ---------------------------------------------------------------------------------------------- status, metadata

def test_warmup_requests_are_replayed_before_serving(servers):
    with open(servers["a"].log_path) as f:
        log = f.read()
    assert "Number of warmup records read: 2." in log
    assert log.index("warmup records read") < log.index("Successfully loaded servable version {name: clf version: 2}")


def test_status_serves_only_the_latest_version(session, api):
    r = session.get(api + "/clf")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert session.get(api + "/clf/versions/2").json()["model_version_status"][0]["version"] == "2"
    r = session.get(api + "/clf/versions/1")
    assert (r.status_code, r.json()) == (404, {"error": "Could not find version 1 of model clf"})


def test_metadata_in_tf_serving_format(session, api):
    r = session.get(api + "/clf/metadata")
    assert r.status_code == 200
    body = r.json()
    assert body["model_spec"] == {"name": "clf", "signature_name": "", "version": "2"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "qa", "length", "summary", "floats"} <= set(signatures)
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    text = default["inputs"]["text"]
    assert text["dtype"] == "DT_STRING"
    assert text["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert text["name"].startswith("serving_default_text")
    outputs = default["outputs"]
    assert outputs["probabilities"]["dtype"] == "DT_FLOAT"
    assert outputs["probabilities"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": "3", "name": ""}]
    assert outputs["label"]["dtype"] == "DT_STRING" and outputs["label_id"]["dtype"] == "DT_INT64"
    assert set(signatures["qa"]["inputs"]) == {"question", "context"}
    assert session.get(api + "/clf/versions/2/metadata").json()["model_spec"]["version"] == "2"
    r = session.get(api + "/clf/versions/1/metadata")
    assert (r.status_code, r.json()["error"]) == (404, "Servable not found for request: Specific(clf, 1)")


# ---------------------------------------------------------------------------------------------- predict

def test_predict_row_and_columnar(session, api):
    texts = ["Отличный фильм , всем советую", "скучно"]
    r = post(session, api + "/clf:predict", {"instances": texts})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 2
    for p in predictions:
        assert set(p) == {"probabilities", "label", "label_id", "seen_batch"}
        assert len(p["probabilities"]) == 3 and abs(sum(p["probabilities"]) - 1) < 1e-5
        assert p["label"] == f"{LABELS[p['label_id']]}@v2"
        assert isinstance(p["label_id"], int)

    columnar = post(session, api + "/clf:predict", {"inputs": texts}).json()["outputs"]
    assert set(columnar) == {"probabilities", "label", "label_id", "seen_batch"}
    assert columnar["label"] == [p["label"] for p in predictions]
    assert np.allclose(columnar["probabilities"], [p["probabilities"] for p in predictions], atol=1e-6)
    named = post(session, api + "/clf:predict", {"inputs": {"text": texts}}).json()["outputs"]
    assert named["label"] == columnar["label"]
    objects = post(session, api + "/clf:predict", {"instances": [{"text": t} for t in texts]}).json()["predictions"]
    assert [p["label"] for p in objects] == columnar["label"]

    explicit = post(session, api + "/clf:predict", {"signature_name": "serving_default", "instances": texts})
    assert [p["label"] for p in explicit.json()["predictions"]] == columnar["label"]
    by_version = post(session, api + "/clf/versions/2:predict", {"instances": texts})
    assert [p["label"] for p in by_version.json()["predictions"]] == columnar["label"]


def test_b64_values_are_bytes(session, api):
    text = "Привет, мир"
    plain = post(session, api + "/clf:predict", {"signature_name": "length", "instances": [text]}).json()
    b64 = {"b64": base64.b64encode(text.encode()).decode()}
    encoded = post(session, api + "/clf:predict", {"signature_name": "length", "instances": [b64]}).json()
    assert plain == encoded == {"predictions": [11]}
    columnar = post(session, api + "/clf:predict", {"signature_name": "length", "inputs": [b64, "ab"]}).json()
    assert columnar == {"outputs": [11, 2]}


def test_one_output_and_two_inputs(session, api):
    # one output: predictions are plain values, outputs a plain list
    r = post(session, api + "/clf:predict", {"signature_name": "length", "instances": ["abc", "дом", ""]})
    assert r.json() == {"predictions": [3, 3, 0]}
    r = post(session, api + "/clf:predict", {"signature_name": "length", "inputs": ["abc"]})
    assert r.json() == {"outputs": [3]}

    # two inputs: objects keyed by the input names; outputs ending in _bytes come back as {"b64"}
    rows = [{"question": "Где?", "context": "Москва столица России"}, {"question": "Кто", "context": "Пушкин"}]
    r = post(session, api + "/clf:predict", {"signature_name": "qa", "instances": rows})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert [p["answer"] for p in predictions] == ["Москва", "Пушкин"]
    assert [base64.b64decode(p["answer_bytes"]["b64"]).decode() for p in predictions] == ["Москва", "Пушкин"]
    assert predictions[1]["score"] == pytest.approx(len("Кто".encode()) / 2)  # bytes / (1 + words)
    columnar = post(session, api + "/clf:predict", {"signature_name": "qa", "inputs": {
        "question": [r["question"] for r in rows], "context": [r["context"] for r in rows]}}).json()["outputs"]
    assert columnar["answer"] == ["Москва", "Пушкин"]
    assert columnar["answer_bytes"] == [p["answer_bytes"] for p in predictions]


def test_floats_are_written_at_their_precision(session, api):
    r = post(session, api + "/clf:predict", {"signature_name": "floats", "inputs": [0.1, 1, 9000000, 3e-05, -0.5]})
    assert r.status_code == 200, r.text
    raw = r.text
    assert '"same": [0.1, 1.0, 9e+06, 3e-05, -0.5]' in raw              # float32 0.1 is not 0.10000000149
    assert '"third": [0.0333333351, 0.333333343, 3e+06, 1e-05, -0.166666672]' in raw
    assert '"doubled": [0.20000000298023224, 2.0, 1.8e+07, 5.999999848427251e-05, -1.0]' in raw
    third = np.array(r.json()["outputs"]["third"], dtype=np.float32)
    assert np.array_equal(third, np.array([0.1, 1, 9000000, 3e-05, -0.5], np.float32) / np.float32(3))


def test_row_format_needs_batch_major_outputs(session, api):
    r = post(session, api + "/clf:predict", {"signature_name": "summary", "instances": ["a", "bb"]})
    assert r.status_code == 400
    assert r.json() == {"error": "Tensor name: total has inconsistent batch size: 1 expecting: 2"}
    r = post(session, api + "/clf:predict", {"signature_name": "summary", "inputs": ["a", "bb"]})
    assert r.json() == {"outputs": {"per_text": [1, 2], "total": [3]}}


ERRORS = [
    # (method, path, body, HTTP status, exact message or None, substring)
    ("GET", "/v1/models", None, 400, "Missing model name in request.", None),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope", None),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo", None),
    ("POST", "/v1/models", "{}", 400, "Malformed request: POST /v1/models", None),
    ("GET", "/v1/models/clf:predict", None, 400, "Malformed request: GET /v1/models/clf:predict", None),
    ("POST", "/v1/models/clf/metadata", "{}", 400, "Malformed request: POST /v1/models/clf/metadata", None),
    ("POST", "/v1/models/clf/version/2:predict", "{}", 400, None, "Malformed request"),
    ("DELETE", "/v1/models/clf", None, 400, "Malformed request: DELETE /v1/models/clf", None),
    ("POST", "/v1/models/clf/versions/99999999999999999999:predict", "{}", 400,
     "Failed to convert version: 99999999999999999999 to numeric.", None),
    ("POST", "/v1/models/nope:predict", {"instances": ["a"]}, 404,
     "Servable not found for request: Latest(nope)", None),
    ("POST", "/v1/models/clf/versions/7:predict", {"instances": ["a"]}, 404,
     "Servable not found for request: Specific(clf, 7)", None),
    ("POST", "/v1/models/clf/labels/nope:predict", {"instances": ["a"]}, 400,
     "Unrecognized servable version label: nope", None),
    ("GET", "/v1/models/clf/labels/nope", None, 400, "Unrecognized servable version label: nope", None),
    ("POST", "/v1/models/clf:predict", "", 400, "JSON Parse error: The document is empty", None),
    ("POST", "/v1/models/clf:predict", "instances = [1, 2]", 400, None, "JSON Parse error: Invalid value"),
    ("POST", "/v1/models/clf:predict", '{"instances": ["a"', 400, None, "JSON Parse error"),
    ("POST", "/v1/models/clf:predict", "[1]", 400, None, "Is not object"),
    ("POST", "/v1/models/clf:predict", {}, 400, "Missing 'inputs' or 'instances' key", None),
    ("POST", "/v1/models/clf:predict", {"instances": ["a"], "inputs": ["a"]}, 400, None,
     "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
    ("POST", "/v1/models/clf:predict", {"instances": []}, 400, None, "No values in 'instances' array"),
    ("POST", "/v1/models/clf:predict", {"instances": "a"}, 400, None, "Excepting 'instances' to be an list/array"),
    ("POST", "/v1/models/clf:predict", {"instances": [1]}, 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: 1 Type: Number "
     "is not of expected type: string", None),
    ("POST", "/v1/models/clf:predict", {"inputs": {"text": [True]}}, 400,
     "JSON Value: true Type: True is not of expected type: string", None),
    ("POST", "/v1/models/clf:predict", {"instances": ["a", ["b"]]}, 400,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [] but got: [1]",
     None),
    ("POST", "/v1/models/clf:predict", {"instances": [["a"], ["b", "c"]]}, 400, None,
     "Expecting tensor size: 1 but got: 2"),
    ("POST", "/v1/models/clf:predict", {"instances": [{"b64": "***"}]}, 400, None, "Unable to base64 decode"),
    ("POST", "/v1/models/clf:predict", {"instances": ["a"], "signature_name": 100}, 400, None,
     "'signature_name' key must be a string value."),
    ("POST", "/v1/models/clf:predict", {"instances": ["a"], "signature_name": "nope"}, 400,
     'Serving signature name: "nope" not found in signature def', None),
    ("POST", "/v1/models/clf:predict", {"signature_name": "qa", "instances": ["a"]}, 400,
     "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
     "tensorinfo_map", None),
    ("POST", "/v1/models/clf:predict", {"signature_name": "qa", "instances": [{"question": "a"}]}, 400, None,
     "keys must be equal to: context,question"),
    ("POST", "/v1/models/clf:predict", {"signature_name": "qa", "inputs": {"question": ["a"]}}, 400,
     "Missing named input: context in 'inputs' object.", None),
    ("POST", "/v1/models/clf:predict", {"signature_name": "floats", "instances": [16777217]}, 400, None,
     "Cannot convert JSON value: 16777217 to float without loss of precision."),
    ("POST", "/v1/models/clf:predict", {"signature_name": "floats", "instances": ["1"]}, 400, None,
     "is not of expected type: float"),
    # a scalar or rank-2 string would crash the tokenizer kernel: refused against the signature's shape
    ("POST", "/v1/models/clf:predict", {"inputs": "a"}, 400, None, "incompatible with the signature"),
    ("POST", "/v1/models/clf:predict", {"instances": [["a"]]}, 400, None, "incompatible with the signature"),
    ("POST", "/v1/models/clf:classify", {"examples": [{"x": 1}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify. "
     "Was: tensorflow/serving/predict", None),
    ("POST", "/v1/models/clf:regress", {"examples": [{"x": 1}]}, 400,
     "Expected regression signature method_name to be tensorflow/serving/regress. "
     "Was: tensorflow/serving/predict", None),
    ("POST", "/v1/models/clf:classify", {"instances": ["a"]}, 400, None, "key 'examples' is expected"),
    # hostile input (issue 14): nesting that Python's json parses but the error dumps could not walk
    # (was a RecursionError, HTTP 500), also inside {"b64": ...}; a lone surrogate escape (was a traceback)
    ("POST", "/v1/models/clf:predict", '{"instances": [' + "[" * 400 + "]" * 400 + "]}", 400,
     "JSON Parse error: The document is nested more than 128 levels deep.", None),
    ("POST", "/v1/models/clf:predict", '{"instances": [{"b64": ' + "[" * 400 + "]" * 400 + "}]}", 400,
     "JSON Parse error: The document is nested more than 128 levels deep.", None),
    ("POST", "/v1/models/clf:predict", '{"instances": ["ok", "\\ud800"]}', 400,
     "JSON Parse error: The surrogate pair in string is invalid. at offset: 22", None),
]


@pytest.mark.parametrize("method,path,body,code,message,substring", ERRORS,
                         ids=[f"{e[0]} {e[1]} {str(e[2])[:40]}" for e in ERRORS])
def test_errors_match_tf_serving(servers, session, method, path, body, code, message, substring):
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    r = session.request(method, servers["a"].url + path, data=data, timeout=60)
    assert r.status_code == code, r.text
    assert r.headers["Content-Type"] == "application/json"
    error = r.json()["error"]
    if message is not None:
        assert error == message
    if substring is not None:
        assert substring in error


def raw_exchange(port, data, timeout=30):
    """Send raw bytes, read until the server closes: (status code, headers text, body bytes)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:  # after the answer: the server closed with our unread bytes
            assert received, "the connection was reset before any answer"
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1"), body


@pytest.mark.parametrize("request_bytes,code,substring", [
    (b"GET /v1/models/clf\r\n\r\n", 400, "the request line has no HTTP version"),
    (b"TRACE /v1/models/clf HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Malformed request: TRACE /v1/models/clf"),
    (b"BREW /v1/models/clf HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Malformed request: BREW /v1/models/clf"),
    (b"GET /v1/models/" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "URI Too Long"),
    (b"GET /v1/models/clf HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431,
     "Too many headers"),
    (b"GET /v1/models/clf HTTP/3.0\r\n\r\n", 505, "Invalid HTTP version"),
])
def test_protocol_edges_answer_json_and_close(servers, request_bytes, code, substring):
    """http.server's own refusals (and methods it does not know) in TF Serving's {"error": ...} shape;
    a request line without a version is answered at once instead of never (issue 14)."""
    status, head, body = raw_exchange(servers["a"].rest_port, request_bytes)
    assert status == code, (head, body[:200])
    assert "Content-Type: application/json" in head
    assert substring in json.loads(body)["error"]


def test_slow_clients_lose_their_thread_and_good_requests_are_served(servers):
    """Server B: 24 connections at most, 2 s for a request head. Slowloris sockets (a head never finished)
    were held forever, one thread each (issue 14): now they are closed at the deadline, connections over
    the bound get a 503 at once, and a good request is answered throughout."""
    import socket

    port, url = servers["b"].rest_port, servers["b"].url + "/v1/models/multi"
    slow = []
    for _ in range(16):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"GET /v1/models/multi HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(sock)
    started = time.time()
    assert requests.get(url, timeout=30).status_code == 200  # 16 of 24 threads held: still served
    assert time.time() - started < 1.9  # before the slow ones were reaped
    extra = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(12)]  # 16 + 12 > 24
    refused = 0
    for sock in extra:
        sock.settimeout(1.0)
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            continue  # got a thread: waits for its head like the slow ones
        if answer.startswith(b"HTTP/1.1 503"):
            refused += 1
            assert b"Too many connections" in answer and b"application/json" in answer
    assert refused >= 3
    for sock in slow:  # the server closes them at the 2 s deadline (plus the reaper's 0.25 s tick)
        sock.settimeout(15)
        try:
            assert sock.recv(4096) == b""  # closed without an answer: the head never ended
        except ConnectionResetError:
            pass
    assert time.time() - started < 15
    for sock in slow + extra:
        sock.close()
    assert requests.get(url, timeout=30).status_code == 200


def test_hostile_json_leaves_one_log_line_and_no_traceback(servers, session, api):
    r = post(session, api + "/clf:predict", '{"instances": ["\\udfff"]}')
    assert r.status_code == 400 and "surrogate pair" in r.json()["error"]
    with open(servers["a"].log.name, encoding="utf-8", errors="replace") as log:
        assert "Traceback" not in log.read()


def test_paths_are_case_insensitive_and_outside_v1_is_404(servers, session):
    r = post(session, servers["a"].url + "/V1/MODELS/clf:predict", {"instances": ["a"]})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"].endswith("@v2")
    assert session.get(servers["a"].url + "/index.html").status_code == 404


def test_request_size_limit_and_garbage_never_5xx(servers, session, api):
    big = json.dumps({"instances": ["x" * 1000] * 300})   # ~300 KB > --rest_api_max_request_bytes=200000
    r = post(session, api + "/clf:predict", big)
    assert r.status_code == 413 and "exceeds the limit of 200000 bytes" in r.json()["error"]

    garbage = [b"\xff\xfe\x00", b"null", b"{\"instances\": [" + b"[" * 50000 + b"]" * 50000 + b"]}",
               b'{"instances": [1e999]}', b'{"instances": [NaN]}', b'{"instances": [{"b64": null}]}',
               b'{"instances": [{}]}', b'{"instances": [[]]}', b'{"inputs": []}', b'{"inputs": [[[]]]}',
               b'{"instances": ["\xff\xfe bytes"]}', b'{"signature_name": "floats", "instances": [[1, 2], 3]}',
               b'{"signature_name": "floats", "inputs": {"x": [Infinity, -Infinity, NaN]}}',
               b'{"signature_name": "qa", "inputs": {"question": ["a", "b"], "context": []}}',
               b'{"signature_name": "__saved_model_init_op", "instances": ["a"]}']
    for body in garbage:
        for path in ("/clf:predict", "/clf/versions/2:predict", "/clf:classify"):
            r = session.post(api + path, data=body, timeout=60)
            assert r.status_code < 500, (path, body[:60], r.status_code, r.text[:300])
            assert r.status_code == 200 or "error" in r.json()
    assert post(session, api + "/clf:predict", {"instances": ["still alive"]}).status_code == 200


# ---------------------------------------------------------------------------------------------- gRPC

def test_grpc_predict_metadata_status(servers):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    with grpc.insecure_channel(f"127.0.0.1:{servers['a'].grpc_port}") as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "clf"
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(["текст один", "два"], dtype=tf.string))
        response = predict.Predict(request, timeout=30)
        assert response.model_spec.name == "clf" and response.model_spec.version.value == 2
        assert response.model_spec.signature_name == "serving_default"
        probabilities = tf.make_ndarray(response.outputs["probabilities"])
        assert probabilities.shape == (2, 3) and probabilities.dtype == np.float32
        labels = [b.decode() for b in tf.make_ndarray(response.outputs["label"])]
        assert all(label.endswith("@v2") for label in labels)
        # the same numbers as REST
        rest = requests.post(servers["a"].url + "/v1/models/clf:predict",
                             json={"instances": ["текст один", "два"]}, timeout=30).json()["predictions"]
        assert np.allclose(probabilities, [p["probabilities"] for p in rest], atol=1e-6)

        request.output_filter.append("label_id")
        assert set(predict.Predict(request, timeout=30).outputs) == {"label_id"}

        def error(call, req):
            with pytest.raises(grpc.RpcError) as info:
                call(req, timeout=30)
            return info.value.code(), info.value.details()

        bad = predict_pb2.PredictRequest()
        bad.CopyFrom(request)
        del bad.output_filter[:]
        bad.model_spec.name = "nope"
        assert error(predict.Predict, bad) == (grpc.StatusCode.NOT_FOUND,
                                               "Servable not found for request: Latest(nope)")
        bad.model_spec.name = "clf"
        bad.model_spec.version.value = 9
        assert error(predict.Predict, bad) == (grpc.StatusCode.NOT_FOUND,
                                               "Servable not found for request: Specific(clf, 9)")
        bad.model_spec.version_label = "nope"
        assert error(predict.Predict, bad) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "Unrecognized servable version label: nope")
        bad.model_spec.ClearField("version_label")
        bad.model_spec.signature_name = "nope"
        assert error(predict.Predict, bad) == (grpc.StatusCode.FAILED_PRECONDITION,
                                               'Serving signature key "nope" not found.')
        bad.model_spec.signature_name = "qa"
        code, message = error(predict.Predict, bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert message == ("input size does not match signature: 1!=2 len({text}) != len({context,question}). "
                           "Sent extra: {text}. Missing but required: {context,question}.")
        bad.model_spec.signature_name = ""
        bad.inputs["text"].CopyFrom(tf.make_tensor_proto([1.5]))
        assert error(predict.Predict, bad)[0] == grpc.StatusCode.INVALID_ARGUMENT

        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata_request.model_spec.name = "clf"
        assert error(predict.GetModelMetadata, metadata_request) == (
            grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
        metadata_request.metadata_field.append("signature_def")
        metadata = predict.GetModelMetadata(metadata_request, timeout=30)
        assert metadata.model_spec.name == "clf" and metadata.model_spec.version.value == 2
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        assert metadata.metadata["signature_def"].Unpack(signature_map)
        default = signature_map.signature_def["serving_default"]
        assert default.method_name == "tensorflow/serving/predict"
        assert default.inputs["text"].dtype == tf.string.as_datatype_enum

        models = model_service_pb2_grpc.ModelServiceStub(channel)
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "clf"
        status = models.GetModelStatus(status_request, timeout=30)
        assert [(s.version, s.state) for s in status.model_version_status] == [
            (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
        status_request.model_spec.name = "nope"
        assert error(models.GetModelStatus, status_request) == (grpc.StatusCode.NOT_FOUND,
                                                                "Could not find any versions of model nope")

        # hostile input (issue 14): a negative dimension is numpy's "infer" to make_ndarray; TF's parser refuses it
        negative = predict_pb2.PredictRequest()
        negative.CopyFrom(request)
        del negative.output_filter[:]
        del negative.inputs["text"].tensor_shape.dim[:]
        negative.inputs["text"].tensor_shape.dim.add(size=-1)
        assert error(predict.Predict, negative) == (grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: text")
        # without --allow_grpc_reload_config no client may replace the served models
        from tensorflow_serving.apis import model_management_pb2

        reload = model_management_pb2.ReloadConfigRequest()
        model = reload.config.model_config_list.config.add(name="evil", base_path="/tmp", model_platform="tensorflow")
        code, message = error(models.HandleReloadConfigRequest, reload)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "--allow_grpc_reload_config" in message
        assert requests.get(servers["a"].url + "/v1/models/clf", timeout=30).status_code == 200  # still served
        assert model.name == "evil"


def test_a_version_caught_mid_copy_loads_at_the_next_poll_and_names_a_missing_file(store, tmp_path):
    """The poller meets a version whose copy has not finished: the error names the missing file (not an
    opaque INTERNAL), and once the folder changed the next poll loads it, not the 60 s retry interval."""
    from rubert_tf.serving.model_registry import ModelRegistry, config_from_flags

    base = tmp_path / "clf"
    partial = base / "3"
    shutil.copytree(os.path.join(store, "1"), partial)
    index = partial / "variables" / "variables.index"
    index.rename(tmp_path / "variables.index")  # the copy has not reached this file yet
    registry = ModelRegistry(config_from_flags("clf", str(base)), poll_wait_seconds=-1,
                             load_retry_interval_seconds=60.0)
    registry.poll()
    state = registry._models["clf"].versions[3]
    assert (state.state, state.error_code) == ("END", "NOT_FOUND")
    assert state.error_message.endswith("variables/variables.index is missing (an unfinished copy of the version?)")
    registry.poll()  # nothing changed: waits for the retry interval
    assert state.failures == 1 and state.state == "END"
    (tmp_path / "variables.index").rename(index)  # the copy finishes
    started = time.time()
    registry.poll()
    assert state.state == "AVAILABLE" and time.time() - started < 30
    registry.stop()


# ---------------------------------------------------------------------------------------------- config file

def test_grpc_reload_config_only_inside_the_starting_base_paths(servers):
    """Server B runs with --allow_grpc_reload_config: its own config reloads; a base path outside the
    one it started with (or escaping it with ..) is refused and nothing changes."""
    import grpc
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    from rubert_tf.serving.model_registry import parse_config_file

    with grpc.insecure_channel(f"127.0.0.1:{servers['b'].grpc_port}") as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        for outside in ("/", os.path.join(servers["multi_base"], "..", "..")):
            reload = model_management_pb2.ReloadConfigRequest()
            reload.config.CopyFrom(parse_config_file(servers["config"]))
            reload.config.model_config_list.config[0].base_path = outside
            with pytest.raises(grpc.RpcError) as info:
                models.HandleReloadConfigRequest(reload, timeout=30)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, outside
            assert "outside the base paths this server was started with" in info.value.details()
        reload = model_management_pb2.ReloadConfigRequest()
        reload.config.CopyFrom(parse_config_file(servers["config"]))
        assert models.HandleReloadConfigRequest(reload, timeout=60).status.error_code == 0
    assert requests.get(servers["b"].url + "/v1/models/multi", timeout=30).status_code == 200


def test_config_file_policies_versions_and_labels(servers):
    url = servers["b"].url + "/v1/models"
    status = requests.get(url + "/multi", timeout=30).json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]  # all; "01" = 1

    def label_of(path, signature=None):
        body = {"instances": ["три слова тут"]}
        if signature:
            body["signature_name"] = signature
        r = requests.post(url + path + ":predict", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]["label"].split("@")[1]

    assert label_of("/multi") == "v2"
    assert label_of("/multi/versions/1") == "v1"
    assert label_of("/multi/versions/2") == "v2"
    assert label_of("/multi/labels/stable") == "v1"
    assert label_of("/multi/labels/canary") == "v2"
    assert requests.get(url + "/multi/labels/stable", timeout=30).json()["model_version_status"][0]["version"] == "1"
    assert requests.get(url + "/multi/labels/canary/metadata", timeout=30).json()["model_spec"]["version"] == "2"
    r = requests.get(url + "/multi/labels/nope", timeout=30)
    assert (r.status_code, r.json()["error"]) == (400, "Unrecognized servable version label: nope")

    # specific policy: only version 1 of the same folder
    assert [s["version"] for s in requests.get(url + "/pinned", timeout=30).json()["model_version_status"]] == ["1"]
    assert label_of("/pinned") == "v1"
    r = requests.post(url + "/pinned/versions/2:predict", json={"instances": ["a"]}, timeout=30)
    assert (r.status_code, r.json()["error"]) == (404, "Servable not found for request: Specific(pinned, 2)")

    # a real classify signature is recognised, but running tf.Example signatures is not built: 501
    r = requests.post(url + "/multi/versions/2:classify", json={"signature_name": "summary", "examples": [{"a": 1}]},
                      timeout=30)
    assert r.status_code == 501 and "not supported" in r.json()["error"]

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{servers['b'].grpc_port}") as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "multi"
        request.model_spec.version_label = "stable"
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(["a"], dtype=tf.string))
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        assert response.model_spec.version.value == 1
        assert tf.make_ndarray(response.outputs["label"])[0].decode().endswith("@v1")


def test_a_broken_version_does_not_take_the_model_down(servers):
    url = servers["b"].url + "/v1/models/multi"
    base = json.loads(json.dumps(requests.get(url, timeout=30).json()))
    broken = os.path.join(os.path.dirname(servers["clf_base"]), "multi", "5")
    os.makedirs(os.path.join(broken, "variables"))
    with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(url, timeout=30).json()["model_version_status"]
        if status[0]["version"] == "5" and status[0]["state"] == "END":
            break
        time.sleep(0.2)
    assert status[0]["version"] == "5" and status[0]["state"] == "END"
    assert status[0]["status"]["error_code"] != "OK" and status[0]["status"]["error_message"]
    assert status[1:] == base["model_version_status"]          # 2 and 1 still AVAILABLE
    r = requests.post(url + ":predict", json={"instances": ["a"]}, timeout=30)
    assert r.status_code == 200 and r.json()["predictions"][0]["label"].endswith("@v2")
    r = requests.post(url + "/versions/5:predict", json={"instances": ["a"]}, timeout=30)
    assert (r.status_code, r.json()["error"]) == (404, "Servable not found for request: Specific(multi, 5)")


# ---------------------------------------------------------------------------------------------- Python client

def test_client(servers):
    from rubert_tf.serving import Client, ServingError

    client = Client(servers["a"].url, "clf")
    predictions = client.predict(["Привет мир"])
    assert predictions[0]["label"].endswith("@v2")
    assert client.predict(inputs={"text": ["a", "b c"]})["label_id"] == [p["label_id"] for p in
                                                                           client.predict(["a", "b c"])]
    assert client.predict([b"\xd0\x94\xd0\xb0"], signature_name="length") == [2]   # bytes go as {"b64"}
    assert client.predict(["x"], version=2)[0]["label"].endswith("@v2")
    assert client.status()["model_version_status"][0]["state"] == "AVAILABLE"
    assert client.metadata()["model_spec"]["name"] == "clf"
    with pytest.raises(ServingError) as info:
        client.predict([1])
    assert info.value.status_code == 400 and "is not of expected type: string" in info.value.message
    with pytest.raises(ServingError) as info:
        Client(servers["a"].url, "nope").status()
    assert info.value.status_code == 404 and info.value.message == "Could not find any versions of model nope"
    with pytest.raises(ServingError) as info:
        client.predict(["x"], label="nope")
    assert info.value.status_code == 400 and "Unrecognized servable version label: nope" in str(info.value)
    assert Client(servers["b"].url, "multi").predict(["x"], label="stable")[0]["label"].endswith("@v1")


# ---------------------------------------------------------------------------------------------- versions on disk

def wait_for_version(session, url, version, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {s["version"]: s["state"] for s in session.get(url, timeout=30).json()["model_version_status"]}
        if states.get(str(version)) == "AVAILABLE":
            return states
        time.sleep(0.1)
    raise AssertionError(f"version {version} never became AVAILABLE: {states}")


def test_new_version_is_picked_up_without_restart(servers, session, api):
    publish(servers["store"], 3, servers["clf_base"])
    states = wait_for_version(session, api + "/clf", 3)
    deadline = time.monotonic() + 30
    while states.get("2") != "END" and time.monotonic() < deadline:   # the old one goes once the new answers
        time.sleep(0.1)
        status = session.get(api + "/clf", timeout=30).json()["model_version_status"]
        states = {s["version"]: s["state"] for s in status}
    assert states == {"3": "AVAILABLE", "2": "END"}
    r = post(session, api + "/clf:predict", {"instances": ["новая версия"]})
    assert r.json()["predictions"][0]["label"].endswith("@v3")
    assert post(session, api + "/clf/versions/2:predict", {"instances": ["x"]}).status_code == 404


def test_load_with_batching_and_a_version_published_mid_load(servers, api, capsys):
    threads_count, per_thread = 8, 250
    total = threads_count * per_thread
    url = api + "/clf:predict"
    latencies, failures, versions_seen, batch_sizes = [], [], [], []
    lock = threading.Lock()
    progress = {"done": 0}
    published = threading.Event()

    def worker(index):
        with requests.Session() as s:
            for i in range(per_thread):
                body = {"instances": [f"запрос {index} номер {i} " + "слово " * (i % 5)]}
                started = time.perf_counter()
                try:
                    r = s.post(url, json=body, timeout=60)
                    ok = r.status_code == 200
                    result = r.json()
                except Exception as error:   # a dropped connection is a failure too
                    ok, result = False, {"error": repr(error)}
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    progress["done"] += 1
                    if not ok:
                        failures.append(result)
                    else:
                        prediction = result["predictions"][0]
                        versions_seen.append((time.perf_counter(), prediction["label"].split("@")[1]))
                        batch_sizes.append(prediction["seen_batch"])

    def publisher():
        while progress["done"] < total // 10:
            time.sleep(0.01)
        publish(servers["store"], 4, servers["clf_base"])
        published.set()

    before = requests.post(url, json={"instances": ["до нагрузки"]}, timeout=30).json()["predictions"][0]["label"]
    before = before.split("@")[1]   # v3 after the test above (v2 when this test runs alone)
    started = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    side = threading.Thread(target=publisher)
    side.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=600)
    side.join(timeout=60)
    wall = time.perf_counter() - started

    assert published.is_set()
    assert not failures, failures[:3]
    assert len(latencies) == total
    lat = np.array(latencies) * 1000
    labels = [v for _, v in sorted(versions_seen)]
    with capsys.disabled():
        print(f"\n[serving load test] {threads_count} threads x {per_thread} requests, batching on: "
              f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, "
              f"{total / wall:.0f} req/s; merged batches up to {max(batch_sizes)} rows; "
              f"answers: {labels.count(before)} from {before}, {labels.count('v4')} from v4")
    assert max(batch_sizes) > 1                     # concurrent requests were merged
    assert set(labels) <= {before, "v4"} and labels[0] == before
    # the switch happened during the run, without a failed request; once v4 answers, v3 no longer does
    assert "v4" in labels, "version 4 was not picked up before the load ended"
    first_v4 = labels.index("v4")
    assert labels[first_v4:].count(before) <= threads_count   # requests already in flight at the switch
    states = wait_for_version(requests, api + "/clf", 4)
    assert states["4"] == "AVAILABLE"
    r = requests.post(url, json={"instances": ["после нагрузки"]}, timeout=30)
    assert r.json()["predictions"][0]["label"].endswith("@v4")
