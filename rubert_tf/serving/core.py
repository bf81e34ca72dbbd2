"""What both APIs do: resolve a model spec, run a signature, report status and metadata.

Mirrors TF Serving's predict_util.cc (input checks and messages), get_model_status_impl.cc and
get_model_metadata_impl.cc. REST (rest.py) and gRPC (grpc_service.py) only translate to and from this.
"""

import logging
import os

import numpy as np

from rubert_tf.serving.errors import CODE_NUMBERS, StatusError, from_exception, invalid_argument
from rubert_tf.serving.json_tensor import DEFAULT_SIGNATURE, dtype_string, numpy_dtype
from rubert_tf.serving.model_registry import (CLASSIFY_METHOD, MAX_WARMUP_RECORDS, PREDICT_METHOD, REGRESS_METHOD,
                                              WARMUP_FILE)

log = logging.getLogger("rubert_tf.serving")


def _shape_of(tensor_info):
    """(known rank?, [dims]) of a TensorInfo; -1 is an unknown dimension."""
    shape = tensor_info.tensor_shape
    return (not shape.unknown_rank), [d.size for d in shape.dim]


def _compatible(shape, tensor_info):
    known_rank, dims = _shape_of(tensor_info)
    if not known_rank:
        return True
    return len(shape) == len(dims) and all(d < 0 or d == s for d, s in zip(dims, shape))


def _format_dims(dims):
    return "[" + ",".join(str(d) for d in dims) + "]"


class ServingCore:
    def __init__(self, registry, batcher=None):
        self.registry = registry
        self.batcher = batcher

    # ------------------------------------------------------------------------------------------ lookups

    def resolve(self, name, version=None, label=None):
        return self.registry.get_servable(name, version=version, label=label)

    @staticmethod
    def input_dtypes(servable, signature_name):
        """HttpRestApiHandler::GetInfoMap: the signature's inputs as {name: DataType}."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = servable.signature_defs.get(name)
        if signature is None:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
        return {key: info.dtype for key, info in signature.inputs.items()}

    # ------------------------------------------------------------------------------------------ predict

    def predict(self, servable, signature_name, inputs, output_filter=(), batch=True):
        """RunPredict: validate `inputs` ({alias: numpy array}) against the signature and run it."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = servable.signature_defs.get(name)
        if signature is None:
            raise StatusError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            # TF Serving answers INTERNAL here; a client chose the signature, so this is their error.
            raise invalid_argument(f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, "
                                   f"{CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}")
        expected = set(signature.inputs)
        sent = set(inputs)
        if len(sent) != len(expected):
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
                f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
        for alias in sorted(inputs):
            if alias not in signature.inputs:
                raise invalid_argument(f"input tensor alias not found in signature: {alias}. Inputs expected to be "
                                       f"in the set {{{','.join(sorted(expected))}}}.")
        arrays = {}
        for alias in sorted(inputs):
            info = signature.inputs[alias]
            arrays[alias] = self._checked_input(name, alias, np.asarray(inputs[alias]), info)
        outputs = list(output_filter)
        for alias in outputs:
            if alias not in signature.outputs:
                raise invalid_argument(f"output tensor alias not found in signature: {alias} Outputs expected to "
                                       f"be in the set {{{','.join(sorted(signature.outputs))}}}.")
        if len(set(outputs)) != len(outputs):
            duplicate = next(a for a in outputs if outputs.count(a) > 1)
            raise invalid_argument(f"duplicate output tensor alias: {duplicate}")
        function = servable.functions.get(name)
        if function is None:
            raise invalid_argument(f"Signature {name} of {servable.name} version {servable.version} cannot be run "
                                   "(it is not a callable signature of the SavedModel)")

        if batch and self.batcher is not None and self._batchable(signature, arrays):
            results = self.batcher.run(servable, name, lambda merged: self._run(function, merged), arrays)
        else:
            results = self._run(function, arrays)
        if outputs:
            results = {alias: results[alias] for alias in outputs}
        return results

    def _checked_input(self, signature_name, alias, array, info):
        expected = numpy_dtype(info.dtype)
        if expected is None:
            raise StatusError("UNIMPLEMENTED", f"Input {alias} of signature {signature_name} has dtype "
                                               f"{dtype_string(info.dtype)}, which this server cannot feed")
        if expected is object:
            if array.dtype.kind not in "OSU":
                raise invalid_argument(f"Expects arg {alias} of signature {signature_name} to be string but "
                                       f"{array.dtype.name} is provided")
            if array.dtype.kind != "O":
                array = array.astype(object)
        elif array.dtype != np.dtype(expected):
            raise invalid_argument(f"Expects arg {alias} of signature {signature_name} to be "
                                   f"{dtype_string(info.dtype)} but {array.dtype.name} is provided")
        if not _compatible(array.shape, info):
            # Checked here: a graph fed a tensor of the wrong rank may crash inside a kernel.
            raise invalid_argument(f"Input {alias} of signature {signature_name} has shape "
                                   f"{_format_dims(array.shape)}, incompatible with the signature's "
                                   f"{_format_dims(_shape_of(info)[1])} (-1 = any size)")
        return array

    def _batchable(self, signature, arrays):
        """Batch only tensors of rank >= 1 with the same dim 0, fed to inputs whose dim 0 is free."""
        sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
        if len(sizes) != 1 or None in sizes:
            return False
        size = sizes.pop()
        if size < 1 or size > self.batcher.max_batch_size:
            return False
        for alias in arrays:
            known_rank, dims = _shape_of(signature.inputs[alias])
            if known_rank and (not dims or dims[0] >= 0):
                return False
        return True

    @staticmethod
    def _run(function, arrays):
        import tensorflow as tf

        try:
            feeds = {alias: tf.constant(array, dtype=tf.string if array.dtype == object else None)
                     for alias, array in arrays.items()}
            results = function(**feeds)
            return {alias: value.numpy() for alias, value in results.items()}
        except Exception as error:
            raise from_exception(error) from None

    # ------------------------------------------------------------------------------------------ classify / regress

    def check_classify_regress(self, servable, signature_name, method):
        """What TF Serving checks before running a classify/regress signature; running them is not built."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = servable.signature_defs.get(name)
        if signature is None:
            raise invalid_argument(f"No signature was found with the name: {name}")
        expected, kind = ((CLASSIFY_METHOD, "classification") if method == "classify"
                          else (REGRESS_METHOD, "regression"))
        if signature.method_name != expected:
            raise invalid_argument(f"Expected {kind} signature method_name to be {expected}. "
                                   f"Was: {signature.method_name}")
        raise StatusError("UNIMPLEMENTED", f"{method.capitalize()} signatures (tf.Example input) are not supported by "
                                           "rubert-tf serve; use :predict, or the real tensorflow_model_server")

    # ------------------------------------------------------------------------------------------ status / metadata

    def status(self, name, version=None, label=None):
        """GetModelStatusResponse for a model, or one version of it."""
        from tensorflow_serving.apis import get_model_status_pb2

        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state, code, message in self.registry.version_states(name, version, label):
            entry = response.model_version_status.add()
            entry.version = number
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
            entry.status.error_code = CODE_NUMBERS.get(code, 2)
            entry.status.error_message = message
        return response

    def metadata(self, name, version=None, label=None, fields=("signature_def",)):
        """GetModelMetadataResponse with the SignatureDefMap packed in an Any under "signature_def"."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        fields = list(fields)
        if not fields:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self.resolve(name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    # ------------------------------------------------------------------------------------------ warm-up

    def warmup(self, servable, iterations=1):
        """Replay assets.extra/tf_serving_warmup_requests (PredictLog records) before serving a version."""
        path = os.path.join(servable.path, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        if len(records) > MAX_WARMUP_RECORDS:
            raise invalid_argument(f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}")
        replayed = 0
        for record in records:
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            if entry.WhichOneof("log_type") != "predict_log":
                log.warning("Skipping a %s warm-up record of %s (only predict_log is replayed)",
                            entry.WhichOneof("log_type"), servable.path)
                continue
            request = entry.predict_log.request
            inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
            for _ in range(max(1, iterations)):
                self.predict(servable, request.model_spec.signature_name, inputs, batch=False)
                replayed += 1
        log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.", path, replayed)
        return replayed
