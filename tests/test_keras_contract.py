"""The contract every Keras class that rubert_tf registers must keep (after keras-hub's
run_serialization_test / run_model_saving_test / run_precision_test, written for our classes):

- layers: get_config -> from_config gives the same config; the revived layer with the same weights
  gives the same output; a mixed_bfloat16 policy survives the round trip, on the layer and its sublayers;
- models: the same config round trip; `.keras` save and load gives the same class and outputs; a model
  built under mixed_bfloat16 loads back with that policy on itself and every sublayer;
- losses, metrics, schedules, optimizers: config round trip with the same values computed.

Classes are found through Keras' registry after importing every rubert_tf module (but the server and
the CLI), so a class moved or added elsewhere is still checked. Each needs a factory in FACTORIES: a
registered class without one fails, so none can skip the contract.
"""

import dataclasses
import importlib
import json
import pkgutil

import keras
import numpy as np
import pytest

import rubert_tf
from rubert_tf.config import RuBertConfig
from rubert_tf.models.seq2seq_config import Seq2SeqConfig

NOT_IMPORTED = ("rubert_tf.serving", "rubert_tf.cli")  # the server imports no models; the CLI is on top
MIXED = "mixed_bfloat16"


def _import_all(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name in NOT_IMPORTED:
            continue
        module = importlib.import_module(info.name)
        if info.ispkg:
            _import_all(module)


def registered_classes():
    _import_all(rubert_tf)
    return {key.split(">", 1)[1]: cls for key, cls in keras.saving.get_custom_objects().items()
            if key.startswith("rubert_tf>")}


REGISTERED = registered_classes()

# ---- small inputs ----------------------------------------------------------------------------

RNG = np.random.default_rng(0)
TINY = RuBertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=16)


def floats(*shape):
    return RNG.standard_normal(shape).astype("float32")


def ints(high, *shape):
    return RNG.integers(0, high, shape).astype("int32")


MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], "int32")
BATCH = {"token_ids": ints(40, 2, 6) * MASK, "segment_ids": np.array([[0, 0, 0, 1, 1, 1]] * 2, "int32"),
         "padding_mask": MASK}
POSITIONS = np.array([[1, 3], [2, 0]], "int32")
SEQ2SEQ_BATCH = {"encoder_token_ids": BATCH["token_ids"], "encoder_padding_mask": MASK,
                 "decoder_token_ids": ints(40, 2, 4),
                 "decoder_padding_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32")}
LABELS = np.array([[3, -100, 7, 1], [-100, -100, 2, 9]], "int32")


@dataclasses.dataclass
class Case:
    """Constructor arguments, and what to call the built object with."""
    kwargs: dict
    args: tuple = ()
    call_kwargs: dict = dataclasses.field(default_factory=dict)


def model_case(inputs=BATCH, **kwargs):
    return Case(kwargs, (inputs,), {"training": False})


def seq2seq_config(architecture):
    return Seq2SeqConfig(encoder=TINY, decoder=TINY, architecture=architecture, decoder_start_token_id=2,
                         eos_token_id=3, pad_token_id=0)


# Class name -> the cases it is checked on (several when the class builds different graphs).
FACTORIES = {
    # layers
    "Dropout": lambda: [Case({"rate": 0.1}, (floats(2, 6, 8),), {"training": False})],
    "ElectraDiscriminatorHead": lambda: [Case({"activation": "gelu"}, (floats(2, 6, 8),))],
    "ElectraGeneratorHead": lambda: [Case({"embedding_size": 8}, (floats(2, 6, 4),))],
    "FirstToken": lambda: [Case({}, (floats(2, 6, 8),))],
    "GatherPositions": lambda: [Case({}, (floats(2, 6, 8), POSITIONS))],
    "LogitsBias": lambda: [Case({}, (floats(2, 6, 8),))],
    "MaskedLMTransform": lambda: [Case({"activation": "gelu", "layer_norm_epsilon": 1e-6}, (floats(2, 6, 8),))],
    "MultiHeadAttention": lambda: [Case({"num_heads": 2, "head_size": 4}, (floats(2, 6, 8),),
                                        {"padding_mask": MASK})],
    "PositionEmbedding": lambda: [Case({"sequence_length": 10}, (floats(2, 6, 8),))],
    "SampleReplacements": lambda: [Case({"seed": 1}, (floats(2, 2, 40), BATCH["token_ids"], POSITIONS),
                                        {"training": False})],
    "ScaleEmbedding": lambda: [Case({}, (floats(2, 6, 8),))],
    "SentencePooling": lambda: [Case({"pooling": "mean"}, (floats(2, 6, 8), MASK)),
                                Case({"pooling": "cls", "normalize": False}, (floats(2, 6, 8), MASK))],
    "SinusoidalPositionalEncoding": lambda: [Case({}, (floats(2, 6, 8),), {"start_index": 2})],
    "SplitStartEnd": lambda: [Case({}, (floats(2, 6, 2),))],
    "TokenEmbedding": lambda: [Case({"input_dim": 40, "output_dim": 8}, (BATCH["token_ids"],)),
                               Case({"input_dim": 40, "output_dim": 8}, (floats(2, 6, 8),), {"reverse": True})],
    "TransformerDecoderBlock": lambda: [Case({"num_heads": 2, "intermediate_size": 16},
                                             (floats(2, 4, 8), floats(2, 6, 8)),
                                             {"decoder_padding_mask": SEQ2SEQ_BATCH["decoder_padding_mask"],
                                              "encoder_padding_mask": MASK})],
    "TransformerEncoderBlock": lambda: [Case({"num_heads": 2, "intermediate_size": 16}, (floats(2, 6, 8),),
                                             {"padding_mask": MASK}),
                                        Case({"num_heads": 2, "intermediate_size": 16, "normalize_first": True},
                                             (floats(2, 6, 8),), {"padding_mask": MASK})],
    # models
    "RuBertEncoder": lambda: [model_case(config=TINY)],
    "RuBertForMaskedLM": lambda: [model_case(config=TINY),
                                  model_case({**BATCH, "mask_positions": POSITIONS}, config=TINY,
                                             with_mask_positions=True)],
    "RuBertForPreTraining": lambda: [model_case({**BATCH, "mask_positions": POSITIONS}, config=TINY)],
    "RuBertForReplacedTokenDetection": lambda: [
        model_case({**BATCH, "mask_positions": POSITIONS}, config=TINY),
        model_case({**BATCH, "mask_positions": POSITIONS}, config=dataclasses.replace(TINY, embedding_size=8),
                   rtd_weight=10.0, seed=3)],
    "RuBertClassifier": lambda: [model_case(config=TINY, labels=["negative", "positive"]),
                                 model_case(config=TINY, num_labels=3, multi_label=True)],
    "RuBertTokenClassifier": lambda: [model_case(config=TINY, labels=["O", "B-PER", "I-PER"])],
    "RuBertQuestionAnswerer": lambda: [model_case(config=TINY)],
    "RuBertSentenceEncoder": lambda: [model_case(config=TINY, pooling="cls", normalize=False)],
    "RuBertSeq2Seq": lambda: [model_case(SEQ2SEQ_BATCH, config=seq2seq_config("bert2bert")),
                              model_case(SEQ2SEQ_BATCH, config=seq2seq_config("transformer"))],
    # losses and metrics: called as (y_true, y_pred)
    "MaskedSparseCrossEntropy": lambda: [Case({"label_smoothing": 0.1}, (LABELS, floats(2, 4, 10)))],
    "MultipleNegativesRankingLoss": lambda: [Case({"scale": 10.0, "symmetric": True},
                                                  (np.arange(2, dtype="int32"), floats(4, 8)))],
    "MaskedAccuracy": lambda: [Case({"name": "masked_accuracy"}, (LABELS, floats(2, 4, 10)))],
    "MaskedCrossEntropy": lambda: [Case({}, (LABELS, floats(2, 4, 10)))],
    # schedules: called on these steps; optimizers: config only
    "WarmupLinearDecay": lambda: [Case({"peak_learning_rate": 1e-3, "warmup_steps": 2, "total_steps": 10},
                                       (np.arange(12),))],
    "WarmupDecay": lambda: [Case({"peak_learning_rate": 1e-3, "total_steps": 10, "warmup_steps": 2, "decay": decay,
                                  "min_lr_ratio": 0.1}, (np.arange(12),))
                            for decay in ("constant", "linear", "cosine", "inverse_sqrt")],
    "AccumulatedStepsSchedule": lambda: [Case({"schedule": REGISTERED["WarmupLinearDecay"](1e-3, 2, 10), "steps": 3},
                                              (np.arange(12),))],
    "AdamW": lambda: [Case({"learning_rate": 1e-3, "weight_decay": 0.01, "sparse_updates": True})],
}


def kind(cls):
    for base, name in ((keras.Model, "model"), (keras.layers.Layer, "layer"), (keras.losses.Loss, "loss"),
                       (keras.metrics.Metric, "metric"),
                       (keras.optimizers.schedules.LearningRateSchedule, "schedule"),
                       (keras.optimizers.Optimizer, "optimizer")):
        if issubclass(cls, base):
            return name
    raise TypeError(f"{cls.__module__}.{cls.__name__}: registered, but not a kind the contract knows")


def cases_of(wanted):
    """(class name, case index) of every registered class of kind `wanted` (factories called in the test)."""
    params = []
    for name, cls in sorted(REGISTERED.items()):
        if kind(cls) == wanted:
            count = len(FACTORIES[name]()) if name in FACTORIES else 1
            params += [pytest.param(name, index, id=f"{name}-{index}") for index in range(count)]
    return params


def case_for(name, index):
    if name not in FACTORIES:
        pytest.fail(f"{name} ({REGISTERED[name].__module__}) is registered with Keras but has no factory in "
                    "tests/test_keras_contract.py FACTORIES: add one so it is checked like every other class")
    return REGISTERED[name], FACTORIES[name]()[index]


# ---- assertions --------------------------------------------------------------------------------

def as_json(config):
    return json.dumps(config, sort_keys=True)


def assert_config_round_trip(obj):
    """Serialised as JSON (as a .keras file stores it) and revived through Keras' registered name, which
    calls from_config: the same class with the same config. Returns the revived object."""
    cls = type(obj)
    text = as_json(obj.get_config())
    serialized = json.loads(as_json(keras.saving.serialize_keras_object(obj)))
    assert serialized["registered_name"] == f"rubert_tf>{cls.__name__}"
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is cls
    assert as_json(revived.get_config()) == text
    return revived


def assert_same_outputs(expected, actual, atol=1e-6):
    keras.tree.assert_same_structure(expected, actual)
    for want, got in zip(keras.tree.flatten(expected), keras.tree.flatten(actual)):
        assert keras.backend.standardize_dtype(got.dtype) == keras.backend.standardize_dtype(want.dtype)
        np.testing.assert_allclose(np.asarray(keras.ops.convert_to_numpy(got), "float32"),
                                   np.asarray(keras.ops.convert_to_numpy(want), "float32"), rtol=1e-6, atol=atol)


def layer_policies(layer):
    """(class, dtype policy) of the layer and every sublayer, in order (auto names differ between runs).
    InputLayers are left out: they only pass the int32 inputs on, under whatever policy was global."""
    return [(type(sub).__name__, sub.dtype_policy.name) for sub in layer._flatten_layers(include_self=True)
            if not isinstance(sub, keras.layers.InputLayer)]


# ---- the contract ----------------------------------------------------------------------------

def test_every_registered_class_has_a_factory():
    missing = sorted(set(REGISTERED) - set(FACTORIES))
    assert not missing, f"registered Keras classes without a factory in FACTORIES: {missing}"


def test_every_factory_is_for_a_registered_class():
    stale = sorted(set(FACTORIES) - set(REGISTERED))
    assert not stale, (f"FACTORIES has {stale}, which no rubert_tf module registers with "
                       "keras.saving.register_keras_serializable(package='rubert_tf')")


@pytest.mark.parametrize("name, index", cases_of("layer"))
def test_layer_config_weights_and_dtype_round_trip(name, index):
    cls, case = case_for(name, index)
    layer = cls(**case.kwargs)
    expected = layer(*case.args, **case.call_kwargs)
    revived = assert_config_round_trip(layer)
    revived(*case.args, **case.call_kwargs)  # builds its weights
    revived.set_weights(layer.get_weights())
    assert_same_outputs(expected, revived(*case.args, **case.call_kwargs))

    mixed = cls(**case.kwargs, dtype=keras.DTypePolicy(MIXED))
    mixed(*case.args, **case.call_kwargs)
    revived = cls.from_config(json.loads(as_json(mixed.get_config())))
    revived(*case.args, **case.call_kwargs)
    assert revived.dtype_policy.name == MIXED
    assert layer_policies(revived) == layer_policies(mixed)


@pytest.mark.parametrize("name, index", cases_of("model"))
def test_model_config_and_keras_file_round_trip(name, index, tmp_path):
    cls, case = case_for(name, index)
    keras.utils.set_random_seed(0)
    model = cls(**case.kwargs)
    expected = model(*case.args, **case.call_kwargs)
    assert_config_round_trip(model)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is cls
    assert [v.path for v in restored.weights] == [v.path for v in model.weights]
    assert_same_outputs(expected, restored(*case.args, **case.call_kwargs))


@pytest.mark.parametrize("name, index", cases_of("model"))
def test_model_keeps_its_dtype_policy_through_a_keras_file(name, index, tmp_path):
    cls, case = case_for(name, index)
    model = cls(**case.kwargs, dtype=keras.DTypePolicy(MIXED))
    assert model.dtype_policy.name == MIXED
    policies = layer_policies(model)
    assert sum(policy == MIXED for _, policy in policies) > len(policies) // 2, policies  # reached the layers
    expected = model(*case.args, **case.call_kwargs)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.dtype_policy.name == MIXED
    assert layer_policies(restored) == policies
    assert_same_outputs(expected, restored(*case.args, **case.call_kwargs))


@pytest.fixture
def global_mixed_policy():
    keras.mixed_precision.set_global_policy(MIXED)
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_model_built_under_a_global_policy_keeps_it(global_mixed_policy, tmp_path):
    """Training sets the global policy and builds the model with no dtype; a float32 process that loads
    the saved model still gets mixed_bfloat16, as it was trained."""
    model = REGISTERED["RuBertClassifier"](TINY, num_labels=2)
    keras.mixed_precision.set_global_policy("float32")
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.dtype_policy.name == MIXED
    assert layer_policies(restored) == layer_policies(model)


@pytest.mark.parametrize("name, index", cases_of("loss") + cases_of("metric") + cases_of("schedule")
                         + cases_of("optimizer"))
def test_config_round_trip_computes_the_same(name, index):
    cls, case = case_for(name, index)
    obj = cls(**case.kwargs)
    revived = assert_config_round_trip(obj)
    if kind(cls) == "metric":
        for metric in (obj, revived):
            metric.update_state(*case.args)
        assert_same_outputs(obj.result(), revived.result())
    elif case.args:  # losses and schedules
        assert_same_outputs(obj(*case.args), revived(*case.args))
