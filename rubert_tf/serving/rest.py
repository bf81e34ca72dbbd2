"""The REST API on http.server: TF Serving's URLs, JSON bodies, error codes and messages.

Routing follows tensorflow_serving/model_servers/http_rest_api_util.cc (case-insensitive whole-path
regexes), handling follows http_rest_api_handler.cc, status codes http_server.cc. Anything under /v1 that
is not an API call is 400 "Malformed request: METHOD PATH"; paths outside /v1 are 404.
"""

import json
import logging
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format, struct_pb2

from rubert_tf.serving.errors import StatusError, from_exception, invalid_argument
from rubert_tf.serving.json_tensor import (check_examples_request, error_json, json_from_tensors, parse_json,
                                           signature_name_from_json, tensors_from_json)

log = logging.getLogger("rubert_tf.serving")

PATH_REGEX = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
PREDICTION_API_REGEX = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE)
MODEL_STATUS_API_REGEX = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE)
_MAX_INT64 = 2**63 - 1
_CHUNK = 1 << 16
# TF Serving prints with always_print_primitive_fields; protobuf renamed the Python option in 5.26.
try:
    json_format.MessageToJson(struct_pb2.Struct(), always_print_fields_with_no_presence=True)
    _PRINT_DEFAULTS = {"always_print_fields_with_no_presence": True}
except TypeError:
    _PRINT_DEFAULTS = {"including_default_value_fields": True}


def _version(text):
    if not text:
        return None
    value = int(text)
    if value > _MAX_INT64:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return value


def _decode(text):
    return urllib.parse.unquote(text, errors="surrogateescape") if text else text


class RestApiHandler:
    """HttpRestApiHandler::ProcessRequest: (method, path, body) -> (http status, JSON text)."""

    def __init__(self, core):
        self.core = core

    def process(self, method, path, body):
        try:
            return 200, self._dispatch(method, path, body)
        except StatusError as error:
            return error.http_status, error_json(error.message)
        except Exception as error:  # never let a request kill the handler thread
            log.exception("Unexpected error for %s %s", method, path)
            status = from_exception(error)
            return status.http_status, error_json(status.message)

    def _dispatch(self, method, path, body):
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = PREDICTION_API_REGEX.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, verb = match.groups()
            name, label, version = _decode(name), _decode(label), _version(version)
            if verb == "predict":
                return self.predict(name, version, label, body)
            if verb in ("classify", "regress"):
                return self.classify_or_regress(verb, name, version, label, body)
            raise malformed   # the regex is case-insensitive, the verb comparison is not (as in TF Serving)
        if method == "GET":
            match = MODEL_STATUS_API_REGEX.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, subresource = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            name, label, version = _decode(name), _decode(label), _version(version)
            if subresource == "metadata":
                return self.metadata(name, version, label)
            return self.status(name, version, label)
        raise malformed

    def predict(self, name, version, label, body):
        doc = parse_json(body)
        signature_name = signature_name_from_json(doc)
        servable = self.core.resolve(name, version, label)
        input_dtypes = self.core.input_dtypes(servable, signature_name)
        inputs, fmt = tensors_from_json(doc, input_dtypes, signature_name)
        outputs = self.core.predict(servable, signature_name, inputs)
        return json_from_tensors(outputs, fmt)

    def classify_or_regress(self, verb, name, version, label, body):
        doc = parse_json(body)
        signature_name = signature_name_from_json(doc)
        check_examples_request(doc)
        servable = self.core.resolve(name, version, label)
        self.core.check_classify_regress(servable, signature_name, verb)
        raise StatusError("UNIMPLEMENTED", f"{verb} is not implemented")   # not reached

    def status(self, name, version, label):
        response = self.core.status(name, version, label)
        return json_format.MessageToJson(response, **_PRINT_DEFAULTS)

    def metadata(self, name, version, label):
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = self.core.metadata(name, version, label)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        options = dict(preserving_proto_field_name=True, **_PRINT_DEFAULTS)
        document = {"model_spec": json_format.MessageToDict(response.model_spec, **options),
                    "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)}}
        return json.dumps(document, indent=1, ensure_ascii=False)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rubert-tf-serve"
    sys_version = ""
    disable_nagle_algorithm = True   # else headers and body in two segments meet delayed ACKs: +40 ms
    timeout = 300                    # seconds an idle keep-alive connection may hold its thread

    def log_request(self, code="-", size="-"):
        if log.isEnabledFor(logging.DEBUG):   # one line per request only when asked for
            log.debug('"%s" %s %s', self.requestline, code, size)

    def log_message(self, format, *args):   # noqa: A002  (http.server's signature)
        log.warning("%s - %s", self.address_string(), format % args)

    def _send(self, status, text, close=False):
        data = text.encode("utf-8", "replace") if text else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        # end_headers() without its flush, so status line, headers and body leave in one write
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.flush_headers()

    def _read_body(self):
        """The request body, or None after an error answer (too large, bad framing)."""
        limit = self.server.max_request_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    self._send(400, error_json("Malformed chunked request body"), close=True)
                    return None
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass
                    return b"".join(chunks)
                total += size
                if total > limit:
                    self._send(413, error_json(f"Request body exceeds the limit of {limit} bytes "
                                               "(--rest_api_max_request_bytes)"), close=True)
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        header = self.headers.get("Content-Length")
        if header is None:
            return b""
        try:
            length = int(header)
            if length < 0:
                raise ValueError
        except ValueError:
            self._send(400, error_json(f"Invalid Content-Length header: {header!r}"), close=True)
            return None
        if length > limit:
            # Drain a moderately large body so the client can read the answer instead of a reset.
            if length <= 8 * limit:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            self._send(413, error_json(f"Request body of {length} bytes exceeds the limit of {limit} bytes "
                                       "(--rest_api_max_request_bytes)"), close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self):
        path = urllib.parse.urlsplit(self.path).path if not self.path.startswith("/") else self.path.split("?", 1)[0]
        body = self._read_body()
        if body is None:
            return
        if not PATH_REGEX.fullmatch(path):
            self._send(404, error_json(f"Not found: {self.command} {path} (the REST API is under /v1/)"))
            return
        status, text = self.server.api.process(self.command, path, body)
        self._send(status, text)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, host, port, core, max_request_bytes):
        self.api = RestApiHandler(core)
        self.max_request_bytes = max_request_bytes
        super().__init__((host, port), _RequestHandler)
        self._thread = None

    @property
    def port(self):
        return self.server_address[1]

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="rest-api", daemon=True)
        self._thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()
