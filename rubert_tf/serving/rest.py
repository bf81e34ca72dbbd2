"""The REST API on http.server: TF Serving's URLs, JSON bodies, error codes and messages.

Routing follows tensorflow_serving/model_servers/http_rest_api_util.cc (case-insensitive whole-path
regexes), handling follows http_rest_api_handler.cc, status codes http_server.cc. Anything under /v1 that
is not an API call is 400 "Malformed request: METHOD PATH"; paths outside /v1 are 404.
"""

import json
import logging
import re
import socket
import sys
import threading
import time
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
    timeout = 30                     # seconds one read may wait (the deadlines below bound the total)

    def handle_one_request(self):
        # Waiting for a request line and headers (also on an idle keep-alive connection) has a deadline:
        # a client that sends them a byte at a time (slowloris) loses the connection and its thread.
        self.server.watch(self, self.server.header_timeout)
        try:
            super().handle_one_request()
        finally:
            self.server.unwatch(self)

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
        self.server.watch(self, self.server.body_timeout)  # the body too must arrive in bounded time
        body = self._read_body()
        self.server.unwatch(self)  # not while the model runs
        if body is None:
            return
        if not PATH_REGEX.fullmatch(path):
            self._send(404, error_json(f"Not found: {self.command} {path} (the REST API is under /v1/)"))
            return
        status, text = self.server.api.process(self.command, path, body)
        self._send(status, text)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

    def __getattr__(self, name):
        # Any other method (TRACE, CONNECT, made-up ones) gets the API's own answer, as in TF Serving:
        # "Malformed request: METHOD PATH" under /v1, 404 elsewhere; http.server would send a 501 page.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def parse_request(self):
        words = str(self.raw_requestline, "iso-8859-1").split()
        if len(words) == 2:  # "GET /" without a version (HTTP/0.9): http.server would wait for headers and
            self.requestline = " ".join(words)  # then answer without any (and fail): a plain 400, then close
            self.command, self.path, self.request_version = None, words[1], "HTTP/1.0"
            self.close_connection = True
            self.send_error(400, "Bad request: the request line has no HTTP version")
            return False
        if not super().parse_request():
            return False
        self.server.unwatch(self)  # the head is in
        return True

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (400 bad request line, 414, 431, ...) in TF Serving's error shape,
        {"error": ...} JSON, and the connection closed: after such a request the stream cannot be trusted."""
        if self.request_version == "HTTP/0.9":  # http.server's placeholder until the version is read:
            self.request_version = "HTTP/1.0"  # with it, the answer would go out without a status line
        self.log_message("%d %s", code, message or "")
        text = message or self.responses.get(code, ("error",))[0]
        self._send(code, error_json(text), close=True)
        # The rest of a refused request is still unread: closing now would reset the connection and the
        # client could lose the answer. Read (a bounded amount of) it first.
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            for _ in range(64):
                if not self.connection.recv(65536):
                    break
        except OSError:
            pass


class RestServer(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` of them: a connection over that bound is
    answered 503 at once and closed, without a thread. A connection must deliver each request head
    (request line + headers) within `header_timeout` seconds of waiting for it, and its body within
    `body_timeout`; otherwise a reaper closes it (slow clients cannot pin threads)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, host, port, core, max_request_bytes, max_connections=256, header_timeout=10.0,
                 body_timeout=60.0):
        self.api = RestApiHandler(core)
        self.max_request_bytes = max_request_bytes
        self.header_timeout, self.body_timeout = float(header_timeout), float(body_timeout)
        self.max_connections = int(max_connections)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._deadlines = {}  # handler -> monotonic deadline of what it is waiting for
        self._deadlines_lock = threading.Lock()
        self._reaper_stop = threading.Event()
        super().__init__((host, port), _RequestHandler)
        self._thread = self._reaper = None

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            body = error_json(f"Too many connections (--rest_api_max_connections={self.max_connections}); "
                              "retry later").encode()
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def watch(self, handler, seconds):
        with self._deadlines_lock:
            self._deadlines[handler] = time.monotonic() + seconds

    def unwatch(self, handler):
        with self._deadlines_lock:
            self._deadlines.pop(handler, None)

    def _reap(self):
        while not self._reaper_stop.wait(0.25):
            now = time.monotonic()
            with self._deadlines_lock:
                late = [h for h, deadline in self._deadlines.items() if deadline <= now]
                for handler in late:
                    del self._deadlines[handler]
            for handler in late:
                handler.close_connection = True
                try:  # wakes the thread blocked in recv(): it sees the end of the stream and returns
                    handler.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if late:
                log.warning("closed %d connection(s) that did not send a request in time (%.0f s for the "
                            "request line and headers, %.0f s for a body)", len(late), self.header_timeout,
                            self.body_timeout)

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away, or the reaper closed a late connection
            log.debug("connection from %s ended: %s", client_address, error)
            return
        log.exception("REST connection from %s failed", client_address)

    def connections(self):
        """Connections holding a thread now."""
        return self.max_connections - self._slots._value

    @property
    def port(self):
        return self.server_address[1]

    def start(self):
        self._reaper = threading.Thread(target=self._reap, name="rest-api-deadlines", daemon=True)
        self._reaper.start()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="rest-api", daemon=True)
        self._thread.start()

    def stop(self):
        self._reaper_stop.set()
        self.shutdown()
        self.server_close()
