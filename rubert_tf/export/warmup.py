"""`assets.extra/tf_serving_warmup_requests`: PredictionLog records TF Serving replays at load time,
so the first real request does not pay for graph tracing and kernel warm-up."""

import os

import tensorflow as tf


def write_warmup_requests(saved_model_dir, signatures, text, model_name="model", copies=1):
    """One PredictRequest per signature, every string input set to `text` (at most 1000 records)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    directory = os.path.join(saved_model_dir, "assets.extra")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(path) as writer:
        for name, function in signatures.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=name))
            for spec in function.input_signature:
                request.inputs[spec.name].CopyFrom(tf.make_tensor_proto([text], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            for _ in range(copies):
                writer.write(log.SerializeToString())
    return path
