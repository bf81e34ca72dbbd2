"""SavedModel export: text in, answers out, loadable with only tensorflow + tensorflow_text, in TF
Serving's folder layout, with only ops the model server has."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

import rubert_tf as rt
from rubert_tf.cli import main
from rubert_tf.export import existing_versions, next_version, write_model_config
from rubert_tf.export.ops import saved_model_ops, unservable_ops

TEXTS = ["Встреча с послом Италии в Москве.", "Иван Петров живёт в Санкт-Петербурге", "", "Ёжик 🦔!"]
QUESTIONS = ["Где живёт Иван?", "Сколько очков?"]
CONTEXTS = ["\ufeffИван Петров живёт в Санкт-Петербурге, а работает в Москве.", "Защита уступила всего 308 очков."]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

# Every op our four exports use today. All are TF core or tensorflow-text ops; a new op must be
# checked against TF Serving before it is added here.
ALLOWED_OPS = {
    "AddN", "AddV2", "All", "ArgMax", "Assert", "AssignVariableOp", "BatchMatMulV2", "BiasAdd", "BroadcastTo",
    "Cast", "ConcatV2", "Const", "Cumsum", "DenseBincount", "DisableCopyOnRead", "EnsureShape", "Equal", "Erfc",
    "ExpandDims", "FastWordpieceTokenizeWithOffsets", "Fill", "FloorDiv", "FloorMod", "GatherV2", "Greater",
    "GreaterEqual", "HashTableV2", "Identity", "If", "InitializeTableFromTextFileV2", "Less", "LessEqual",
    "LogicalAnd", "LogicalNot", "LogicalOr", "LookupTableFindV2", "MatMul", "Max", "Maximum", "Mean",
    "MergeV2Checkpoints", "Minimum", "Mul", "Neg", "NoOp", "NotEqual", "OnesLike", "Pack", "PartitionedCall",
    "Placeholder", "Prod", "RaggedRange", "RaggedTensorToTensor", "Range", "ReadVariableOp", "RealDiv", "Reshape",
    "RestoreV2", "Roll", "Rsqrt", "SaveV2", "Select", "SelectV2", "Shape", "ShardedFilename", "Size", "Slice",
    "Softmax", "Sqrt", "SquaredDifference", "Squeeze", "StatefulPartitionedCall", "StaticRegexFullMatch",
    "StopGradient", "StridedSlice", "StringJoin", "Sub", "Substr", "Sum", "Tanh", "Tile", "Transpose",
    "UnicodeDecode", "UnicodeEncode", "UnsortedSegmentMax", "UnsortedSegmentSum", "UpperBound", "VarHandleOp",
    "VarIsInitializedOp", "Where", "ZerosLike", "Sigmoid",
    # TF core kernels (resource_variable_ops, scatter_nd_op), linked into every TF Serving build: the token
    # embedding's sparse read and the tokenizer's added-token marks.
    "ResourceGather", "TensorScatterUpdate",
    # TF core (array_ops): the NER postprocessor's per-word gathers.
    "GatherNd",
    # TF core (string_ops, parsing_ops, functional_ops), in every TF Serving build: the tokenizer's bound on
    # the prefix of a huge text that is tokenized (issue 14).
    "StringLength", "DecodePaddedRaw", "StatelessIf",
}


@pytest.fixture(scope="module")
def models(tiny_checkpoint):
    return {
        "classifier": rt.RuBertClassifier.from_pretrained(tiny_checkpoint, labels=["негатив", "нейтрально", "позитив"]),
        "ner": rt.RuBertTokenClassifier.from_pretrained(tiny_checkpoint, labels=NER_LABELS),
        "qa": rt.RuBertQuestionAnswerer.from_pretrained(tiny_checkpoint),
        "sentence": rt.RuBertSentenceEncoder.from_pretrained(tiny_checkpoint, pooling="mean"),
    }


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    base = tmp_path_factory.mktemp("savedmodels")
    return {name: rt.export(model, base_path=str(base / name), max_length=128) for name, model in models.items()}


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # the only extra import TF Serving's binary has an equivalent of
    assert "rubert_tf" not in sys.modules
    paths, texts, questions, contexts, out = json.loads(sys.argv[1])
    def plain(value):
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value.decode("utf-8") if isinstance(value, bytes) else value
    results = {}
    for name, path in paths.items():
        serve = tf.saved_model.load(path).signatures["serving_default"]
        if name == "qa":
            outputs = serve(question=tf.constant(questions), context=tf.constant(contexts))
        else:
            outputs = serve(text=tf.constant(texts))
        results[name] = {k: plain(v.numpy().tolist()) for k, v in outputs.items()}
    json.dump(results, open(out, "w"))
""")


@pytest.fixture(scope="module")
def fresh_outputs(exported, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fresh") / "outputs.json")
    argument = json.dumps([exported, TEXTS, QUESTIONS, CONTEXTS, out])
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, argument], check=True, timeout=300)
    with open(out) as f:
        return json.load(f)


def test_layout_is_what_tf_serving_reads(exported):
    for path in exported.values():
        assert os.path.basename(path) == "1"
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        assert os.path.isdir(os.path.join(path, "variables"))
        assert os.path.isfile(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
        assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp")]
    assert open(os.path.join(exported["classifier"], "assets", "labels.txt"), encoding="utf-8").read().split() == [
        "негатив", "нейтрально", "позитив"]


def test_classifier_in_a_fresh_process_equals_keras(models, fresh_outputs):
    model, outputs = models["classifier"], fresh_outputs["classifier"]
    expected = model.classify(TEXTS, max_length=128)
    np.testing.assert_allclose(outputs["probabilities"],
                               [[r["probabilities"][label] for label in model.labels] for r in expected], atol=1e-5)
    assert outputs["label"] == [r["label"] for r in expected]
    assert outputs["label_id"] == [r["label_id"] for r in expected]


def test_ner_in_a_fresh_process_equals_keras(models, fresh_outputs):
    model, outputs = models["ner"], fresh_outputs["ner"]
    expected = model.extract_entities(TEXTS, max_length=128)
    assert len(outputs["entity_count"]) == len(TEXTS)
    for row, result in enumerate(expected):
        count = outputs["entity_count"][row]
        got = [{"start": outputs["entity_start"][row][i], "end": outputs["entity_end"][row][i],
                "label": outputs["entity_label"][row][i]} for i in range(count)]
        assert got == [{"start": e["start"], "end": e["end"], "label": e["label"]} for e in result["entities"]]
        word_tags = [tag for tag in outputs["tags"][row] if tag]
        assert word_tags == [w["tag"] for w in result["words"]]


def test_qa_in_a_fresh_process_equals_keras(models, fresh_outputs):
    model, outputs = models["qa"], fresh_outputs["qa"]
    expected = model.answer(QUESTIONS, CONTEXTS, max_length=128)  # the settings the export used
    for row, result in enumerate(expected):
        assert outputs["answer"][row] == result["answer"]
        assert outputs["answer"][row] == CONTEXTS[row][outputs["start"][row]:outputs["end"][row]]
        assert (outputs["start"][row], outputs["end"][row]) == (result["start"], result["end"])


def test_embeddings_in_a_fresh_process_equal_keras(models, fresh_outputs):
    expected = models["sentence"].encode(TEXTS, max_length=128)
    np.testing.assert_allclose(fresh_outputs["sentence"]["embedding"], expected, atol=1e-5)


def test_signatures_are_batch_major_text_in(exported):
    for name, path in exported.items():
        signature = tf.saved_model.load(path).signatures["serving_default"]
        inputs = signature.structured_input_signature[1]
        expected_inputs = {"question", "context"} if name == "qa" else {"text"}
        assert set(inputs) == expected_inputs
        assert all(spec.dtype == tf.string and spec.shape.as_list() == [None] for spec in inputs.values())
        for output, spec in signature.structured_outputs.items():
            assert spec.shape.rank >= 1 and spec.shape[0] is None, (name, output, spec.shape)


def test_only_ops_tf_serving_has(exported):
    for name, path in exported.items():
        ops = set(saved_model_ops(path))
        assert not ops - ALLOWED_OPS, f"{name} uses ops outside the allow-list: {sorted(ops - ALLOWED_OPS)}"
        assert unservable_ops(path) == []
        assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}


def test_warmup_requests_are_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(exported["qa"], "assets.extra", "tf_serving_warmup_requests")
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert 1 <= len(records) <= 1000
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    assert set(log.predict_log.request.inputs) == {"question", "context"}
    assert log.predict_log.request.model_spec.signature_name == "serving_default"


def test_versions_are_next_free_and_never_overwritten(models, tmp_path):
    base = str(tmp_path / "sentiment")
    os.makedirs(os.path.join(base, "01"))  # TF Serving reads "01" as version 1
    os.makedirs(os.path.join(base, "not-a-version"))
    assert existing_versions(base) == [1] and next_version(base) == 2
    path = rt.export(models["sentence"], base_path=base, warmup=False)
    assert path == os.path.join(base, "2")
    with pytest.raises(FileExistsError, match="never overwritten"):
        rt.export(models["sentence"], base_path=base, version=2)


def test_failed_export_leaves_nothing_behind(models, tmp_path, monkeypatch):
    base = str(tmp_path / "broken")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        rt.export(models["sentence"], base_path=base)
    assert os.listdir(base) == []


def test_model_config_file_is_a_model_server_config(tmp_path):
    from tensorflow_serving.config import model_server_config_pb2

    path = write_model_config({"sentiment": "savedmodels/sentiment", "ner": "savedmodels/ner"},
                              str(tmp_path / "models.config"), labels={"sentiment": {"stable": 1}})
    config = text_format.Parse(open(path).read(), model_server_config_pb2.ModelServerConfig())
    names = [c.name for c in config.model_config_list.config]
    assert names == ["sentiment", "ner"]
    assert config.model_config_list.config[0].version_labels["stable"] == 1
    assert config.model_config_list.config[0].model_platform == "tensorflow"


def test_cli_export_and_saved_model_cli(tiny_checkpoint, tmp_path, capfd):
    base = str(tmp_path / "emb")
    assert main(["export", "sentence", "--model", tiny_checkpoint, "--out", base, "--max-length", "64"]) == 0
    assert existing_versions(base) == [1]
    with pytest.raises(SystemExit) as exit_info:
        main(["saved-model-cli", "show", "--dir", os.path.join(base, "1"), "--all"])
    assert exit_info.value.code in (0, None)
    printed = capfd.readouterr().out
    assert "inputs['text']" in printed and "DT_STRING" in printed and "outputs['embedding']" in printed
