"""TF Serving-compatible serving of exported SavedModels.

`rubert-tf serve` / `python -m rubert_tf.serving` (see server.py) answers tensorflow_model_server's REST
and gRPC APIs for SavedModels on disk; `Client` talks to it (or to the real server) over REST.

As TF Serving, the server reads SavedModels only: it imports tensorflow, tensorflow_text (for the ops),
the tensorflow-serving-api protos, grpc and the standard library; nothing of rubert_tf's models, training or
data. The heavy parts are imported on first use, so `from rubert_tf.serving import Client` stays light.
"""

from rubert_tf.serving.client import Client, ServingError


def main(argv=None, prog="rubert-tf serve"):
    """Run the server with tensorflow_model_server-style flags; returns the exit code."""
    from rubert_tf.serving.server import main as server_main

    return server_main(argv, prog=prog)


serve = main

__all__ = ["Client", "ServingError", "main", "serve"]
