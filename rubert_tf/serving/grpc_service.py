"""The gRPC API: PredictionService (Predict, GetModelMetadata; Classify/Regress/MultiInference answer as
far as this server can) and ModelService (GetModelStatus, HandleReloadConfigRequest).

Statuses carry TF Serving's codes and messages (grpc_status_util.cc: messages over 1024 bytes are cut and
end in "...[truncated]"). Tensors cross the wire as TensorProtos (tf.make_ndarray / tf.make_tensor_proto).
"""

import logging
import os
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     model_management_pb2)

from rubert_tf.serving.errors import StatusError, from_exception, invalid_argument
from rubert_tf.serving.json_tensor import DEFAULT_SIGNATURE

log = logging.getLogger("rubert_tf.serving")
ERROR_MESSAGE_LIMIT = 1024
MAX_MESSAGE_SIZE = 2**31 - 1   # builder.SetMaxMessageSize(kint32max)


def _abort(context, error):
    status = from_exception(error)
    message = status.message
    if len(message) > ERROR_MESSAGE_LIMIT:
        message = message[:ERROR_MESSAGE_LIMIT] + "...[truncated]"
    context.abort(getattr(grpc.StatusCode, status.code), message)


def _spec(model_spec):
    """(name, version, label) of a ModelSpec."""
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core):
        self.core = core

    def Predict(self, request, context):
        try:
            servable = self.core.resolve(*_spec(request.model_spec))
            inputs = {}
            for alias, proto in request.inputs.items():
                # make_ndarray would take a -1 as numpy's "infer this dimension": TF's parser refuses it.
                if proto.tensor_shape.unknown_rank or any(dim.size < 0 for dim in proto.tensor_shape.dim):
                    raise invalid_argument(f"tensor parsing error: {alias}")
                try:
                    inputs[alias] = tf.make_ndarray(proto)
                except Exception:
                    raise invalid_argument(f"tensor parsing error: {alias}") from None
            signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            outputs = self.core.predict(servable, signature_name, inputs, list(request.output_filter))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature_name
            for alias, value in outputs.items():
                response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
            return response
        except Exception as error:
            _abort(context, error)

    def GetModelMetadata(self, request, context):
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            return self.core.metadata(*_spec(request.model_spec), fields=request.metadata_field)
        except Exception as error:
            _abort(context, error)

    def _classify_or_regress(self, request, context, verb):
        try:
            servable = self.core.resolve(*_spec(request.model_spec))
            self.core.check_classify_regress(servable, request.model_spec.signature_name, verb)
        except Exception as error:
            _abort(context, error)

    def Classify(self, request, context):
        self._classify_or_regress(request, context, "classify")

    def Regress(self, request, context):
        self._classify_or_regress(request, context, "regress")

    def MultiInference(self, request, context):
        _abort(context, StatusError("UNIMPLEMENTED", "MultiInference is not supported by rubert-tf serve"))


def _inside(path, roots):
    """Whether `path` is one of `roots` or inside one (symlinks resolved, so ../ and links cannot escape)."""
    if "://" in path:  # gs://, s3://: compared as written
        return any(path.rstrip("/") == root.rstrip("/") or path.startswith(root.rstrip("/") + "/") for root in roots)
    real = os.path.realpath(path)
    for root in roots:
        if "://" in root:
            continue
        root = os.path.realpath(root)
        if real == root or os.path.commonpath([real, root]) == root:
            return True
    return False


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus, and HandleReloadConfigRequest only when the server was started with
    --allow_grpc_reload_config: unlike TF Serving (which always accepts it), any local client could
    otherwise unload every model and load a SavedModel (which may run any op) from any folder. Even then
    the new config's base paths must lie inside the base paths the server started with."""

    def __init__(self, core, allow_reload=False, allowed_base_paths=()):
        self.core = core
        self.allow_reload = allow_reload
        self.allowed_base_paths = tuple(allowed_base_paths)

    def GetModelStatus(self, request, context):
        try:
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            return self.core.status(*_spec(request.model_spec))
        except Exception as error:
            _abort(context, error)

    def HandleReloadConfigRequest(self, request, context):
        try:
            if not self.allow_reload:
                raise StatusError("PERMISSION_DENIED", "HandleReloadConfigRequest is disabled: start rubert-tf serve "
                                  "with --allow_grpc_reload_config to let gRPC clients change the served models")
            for model in request.config.model_config_list.config:
                if not _inside(model.base_path, self.allowed_base_paths):
                    raise StatusError("PERMISSION_DENIED", f"model {model.name}: base_path {model.base_path!r} is "
                                      "outside the base paths this server was started with ("
                                      + ", ".join(self.allowed_base_paths) + ")")
            self.core.registry.reload_config(request.config)
            return model_management_pb2.ReloadConfigResponse()
        except Exception as error:
            _abort(context, error)


class GrpcServer:
    def __init__(self, host, port, core, max_workers=16, allow_reload_config=False, allowed_base_paths=()):
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
                   ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
                   ("grpc.so_reuseport", 0)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                                  options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(core), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(core, allow_reload_config, allowed_base_paths), self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise OSError(f"Cannot bind the gRPC server to {address}")

    def start(self):
        self.server.start()

    def stop(self, grace=2.0):
        self.server.stop(grace).wait(grace + 1)
