"""`rubert-tf serve` / `python -m rubert_tf.serving`: a local stand-in for tensorflow_model_server.

    python -m rubert_tf.serving --model_name=sentiment --model_base_path=savedmodels/sentiment \\
        --rest_api_port=8501 --port=8500
    python -m rubert_tf.serving --model_config_file=models.config --rest_api_port=0 --port=0

Flags are tensorflow_model_server's where they apply (`--flag=value` or `--flag value`; booleans also as
bare `--flag`). Differences: both servers bind 127.0.0.1 unless --rest_api_host / --grpc_host say
otherwise; port 0 picks a free port (tensorflow_model_server uses --rest_api_port=0 to disable REST);
--max_batch_size, --batch_timeout_micros, --num_batch_threads, --max_enqueued_batches and
--rest_api_max_request_bytes exist only here. Once every model's first versions are loaded it prints

    rubert-tf serve: ready grpc_port=8500 rest_api_port=8501 models=sentiment:[2]
"""

import argparse
import logging
import os
import re
import signal
import sys
import threading

log = logging.getLogger("rubert_tf.serving")


def _bool(text):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser(prog="rubert-tf serve"):
    parser = argparse.ArgumentParser(prog=prog, description="TensorFlow Serving-compatible REST + gRPC server for "
                                                            "SavedModels on disk (a local stand-in for "
                                                            "tensorflow_model_server)")
    flag = parser.add_argument

    def boolean(name, default, help):   # noqa: A002
        flag(name, type=_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help)

    flag("--port", type=int, default=8500, help="gRPC port (0: a free one; default %(default)s)")
    flag("--grpc_host", default="127.0.0.1", help="gRPC bind address (default %(default)s)")
    flag("--rest_api_port", type=int, default=8501, help="REST port (0: a free one; default %(default)s)")
    flag("--rest_api_host", default="127.0.0.1", help="REST bind address (default %(default)s)")
    flag("--rest_api_num_threads", type=int, default=0, help="accepted for compatibility (one thread per connection, "
                                                             "see --rest_api_max_connections)")
    flag("--rest_api_max_connections", type=int, default=256,
         help="REST connections served at once (one thread each); more are answered 503 at once (default "
              "%(default)s)")
    flag("--rest_api_header_timeout_seconds", type=float, default=10.0,
         help="time a REST connection has to send each request line and headers, idle keep-alive included; "
              "then it is closed (slow clients cannot hold threads; default %(default)s)")
    flag("--rest_api_body_timeout_seconds", type=float, default=60.0,
         help="time a REST request has to send its body (default %(default)s)")
    flag("--rest_api_timeout_in_ms", type=int, default=30000, help="accepted for compatibility")
    flag("--rest_api_max_request_bytes", type=int, default=64 << 20,
         help="largest REST request body; larger ones get 413 (default %(default)s)")
    flag("--grpc_max_threads", type=int, default=0, help="gRPC worker threads (default 4 x CPUs)")
    flag("--model_name", default="default", help="name of the model with --model_base_path (default %(default)s)")
    flag("--model_base_path", default="", help="folder holding the model's integer version folders")
    flag("--model_config_file", default="", help="text-proto ModelServerConfig (model_config_list)")
    flag("--model_config_file_poll_wait_seconds", type=int, default=0,
         help="re-read --model_config_file this often (0: never; default %(default)s)")
    flag("--file_system_poll_wait_seconds", type=float, default=1,
         help="look for new versions this often (0: once at start-up, < 0: never; default %(default)s)")
    flag("--saved_model_tags", default="serve", help="comma-separated MetaGraph tags (default %(default)s)")
    boolean("--enable_model_warmup", True, "replay assets.extra/tf_serving_warmup_requests before serving a version")
    flag("--num_request_iterations_for_warmup", type=int, default=1)
    flag("--max_num_load_retries", type=int, default=5)
    flag("--load_retry_interval_micros", type=int, default=60_000_000)
    boolean("--enable_batching", False, "merge concurrent requests into batches along dim 0")
    flag("--batching_parameters_file", default="",
         help="text-proto BatchingParameters (max_batch_size, batch_timeout_micros, num_batch_threads, "
              "max_enqueued_batches); explicit flags win")
    flag("--max_batch_size", type=int, default=None, help="largest merged batch (TF Serving default 1000)")
    flag("--batch_timeout_micros", type=int, default=None,
         help="how long a batch waits to fill up (TF Serving default 0: take what is queued)")
    flag("--num_batch_threads", type=int, default=None, help="batches run at once (default: CPUs)")
    flag("--max_enqueued_batches", type=int, default=None, help="queue bound in batches (default 100)")
    boolean("--allow_grpc_reload_config", False,
            "let gRPC ModelService/HandleReloadConfigRequest replace the served models (TF Serving always "
            "does; here it is off by default, and new base paths must lie inside the starting ones)")
    boolean("--allow_version_labels_for_unavailable_models", False, "accepted for compatibility (labels are "
                                                                    "resolved per request)")
    flag("--tensorflow_intra_op_parallelism", type=int, default=0)
    flag("--tensorflow_inter_op_parallelism", type=int, default=0)
    flag("--log_level", default="INFO", help="Python logging level on stderr (default %(default)s)")
    return parser


def _batching_parameters(path):
    """The scalar fields of a BatchingParameters text proto (`max_batch_size { value: 32 }`)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    values = {}
    for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
        match = re.search(rf"\b{name}\s*:?\s*{{\s*value\s*:\s*(\d+)\s*}}", text)
        if match:
            values[name] = int(match.group(1))
    return values


class ModelServer:
    """Everything a running server owns; `start()` returns once both ports are bound."""

    def __init__(self, args):
        self.args = args
        self.rest = self.grpc = self.batcher = self.registry = None
        self._config_thread = None
        self._stop = threading.Event()

    def start(self):
        args = self.args
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (the ops our SavedModels use, linked into TF Serving too)

        from rubert_tf.serving.batching import BatchScheduler
        from rubert_tf.serving.core import ServingCore
        from rubert_tf.serving.grpc_service import GrpcServer
        from rubert_tf.serving.model_registry import ModelRegistry, config_from_flags, parse_config_file
        from rubert_tf.serving.rest import RestServer

        if args.tensorflow_intra_op_parallelism:
            tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
        if args.tensorflow_inter_op_parallelism:
            tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)

        if args.model_config_file:
            config = parse_config_file(args.model_config_file)
        else:
            config = config_from_flags(args.model_name, args.model_base_path)

        if args.enable_batching:
            params = _batching_parameters(args.batching_parameters_file) if args.batching_parameters_file else {}
            for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
                if getattr(args, name) is not None:
                    params[name] = getattr(args, name)
            params.setdefault("num_batch_threads", os.cpu_count() or 1)
            self.batcher = BatchScheduler(**params)

        core = ServingCore(None, self.batcher)
        warmup = None
        if args.enable_model_warmup:
            def warmup(servable):
                core.warmup(servable, args.num_request_iterations_for_warmup)
        self.registry = ModelRegistry(
            config, tags=[t for t in args.saved_model_tags.split(",") if t],
            poll_wait_seconds=args.file_system_poll_wait_seconds, warmup=warmup,
            max_load_retries=args.max_num_load_retries,
            load_retry_interval_seconds=args.load_retry_interval_micros / 1e6)
        core.registry = self.registry
        self.core = core
        self.registry.start()   # the first versions are loaded before the ports open, as in TF Serving

        workers = args.grpc_max_threads or 4 * (os.cpu_count() or 1)
        self.grpc = GrpcServer(args.grpc_host, args.port, core, max_workers=workers,
                               allow_reload_config=args.allow_grpc_reload_config,
                               allowed_base_paths=[m.base_path for m in config.model_config_list.config])
        self.grpc.start()
        self.rest = RestServer(args.rest_api_host, args.rest_api_port, core, args.rest_api_max_request_bytes,
                               max_connections=args.rest_api_max_connections,
                               header_timeout=args.rest_api_header_timeout_seconds,
                               body_timeout=args.rest_api_body_timeout_seconds)
        self.rest.start()
        if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
            self._config_thread = threading.Thread(target=self._poll_config, daemon=True, name="config-poll")
            self._config_thread.start()
        return self

    def _poll_config(self):
        from rubert_tf.serving.model_registry import parse_config_file

        while not self._stop.wait(self.args.model_config_file_poll_wait_seconds):
            try:
                self.registry.reload_config(parse_config_file(self.args.model_config_file))
            except Exception as error:
                log.error("Reloading %s failed: %s", self.args.model_config_file, error)

    def ready_line(self):
        models = " ".join(f"{name}:{versions}".replace(" ", "") for name, versions in self.registry.available().items())
        return f"rubert-tf serve: ready grpc_port={self.grpc.port} rest_api_port={self.rest.port} models={models}"

    def stop(self):
        self._stop.set()
        for part in (self.rest, self.grpc):
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    log.exception("Stopping %s failed", type(part).__name__)
        if self.registry is not None:
            self.registry.stop()
        if self.batcher is not None:
            log.info("Batching: %s", self.batcher.stats())
            self.batcher.stop()


def main(argv=None, prog="rubert-tf serve"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(args.model_config_file) == bool(args.model_base_path):
        print(f"{prog}: error: give exactly one of --model_base_path (with --model_name) or --model_config_file",
              file=sys.stderr)
        return 2
    if args.port == args.rest_api_port and args.port != 0:
        print(f"{prog}: error: --rest_api_port cannot be same as --port", file=sys.stderr)
        return 2

    from rubert_tf.serving.errors import StatusError

    server = ModelServer(args)
    try:
        server.start()
    except (StatusError, OSError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        server.stop()
        return 1
    print(f"Running gRPC ModelServer at {args.grpc_host}:{server.grpc.port} ...", flush=True)
    print(f"Exporting HTTP/REST API at:{args.rest_api_host}:{server.rest.port} ...", flush=True)
    print(server.ready_line(), flush=True)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


serve = main
