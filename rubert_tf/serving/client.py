"""A small REST client for TF Serving's API (`rubert-tf serve` or the real tensorflow_model_server).

    from rubert_tf.serving import Client, ServingError
    client = Client("http://127.0.0.1:8501", "sentiment")
    client.predict(["Отличный фильм!"])                      # row format -> list of predictions
    client.predict(inputs={"text": ["a", "b"]})              # columnar -> outputs
    client.predict(["..."], label="stable", signature_name="serving_default")
    client.status(); client.metadata()
    try:
        client.predict([1.5])
    except ServingError as error:
        error.status_code, error.message                     # 400, "... is not of expected type: string"

Standard library only (http.client, one keep-alive connection per thread); bytes values are sent as
{"b64": ...}, numpy arrays as lists.
"""

import base64
import http.client
import json
import threading
import time
import urllib.parse


class ServingError(Exception):
    """The server answered with an error: `status_code` (HTTP) and `message` (its "error" text)."""

    def __init__(self, status_code, message, method="", url=""):
        super().__init__(f"HTTP {status_code} for {method} {url}: {message}".replace("  ", " "))
        self.status_code = status_code
        self.message = message
        self.method = method
        self.url = url


def _jsonable(value):
    """bytes -> {"b64": ...}; numpy arrays and scalars -> lists and Python numbers; the rest unchanged."""
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):   # numpy array or scalar
        if getattr(value.dtype, "kind", "") in "OS":
            return _jsonable(value.tolist())
        return value.tolist()
    return value


class Client:
    def __init__(self, base_url="http://127.0.0.1:8501", model_name="default", timeout=60.0):
        parts = urllib.parse.urlsplit(base_url if "://" in base_url else "http://" + base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"base_url must be http:// or https://, got {base_url!r}")
        self.base_url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.model_name = model_name
        self.timeout = timeout
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")
        self._local = threading.local()

    # ------------------------------------------------------------------------------------------ API

    def model_path(self, version=None, label=None):
        if version is not None and label is not None:
            raise ValueError("give version or label, not both")
        path = "/v1/models/" + urllib.parse.quote(self.model_name, safe="")
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += "/labels/" + urllib.parse.quote(str(label), safe="")
        return path

    def predict(self, instances=None, inputs=None, signature_name=None, version=None, label=None):
        """Row format (`instances`) returns the "predictions" list; columnar (`inputs`) the "outputs"."""
        if (instances is None) == (inputs is None):
            raise ValueError("give exactly one of instances (row format) or inputs (columnar format)")
        body = {}
        if signature_name is not None:
            body["signature_name"] = signature_name
        if instances is not None:
            body["instances"] = _jsonable(instances)
        else:
            body["inputs"] = _jsonable(inputs)
        answer = self.request("POST", self.model_path(version, label) + ":predict", body)
        return answer["predictions"] if instances is not None else answer["outputs"]

    def status(self, version=None, label=None):
        return self.request("GET", self.model_path(version, label))

    def metadata(self, version=None, label=None):
        return self.request("GET", self.model_path(version, label) + "/metadata")

    def wait_until_available(self, timeout=60.0, version=None, interval=0.2):
        """Poll status until a version (the given one, or any) is AVAILABLE; returns the status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self.status()
                for entry in status.get("model_version_status", []):
                    if entry["state"] == "AVAILABLE" and (version is None or int(entry["version"]) == int(version)):
                        return status
            except (ServingError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"model {self.model_name!r} not available at {self.base_url} after {timeout}s")
            time.sleep(interval)

    # ------------------------------------------------------------------------------------------ transport

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            connection = cls(self._netloc, timeout=self.timeout)
            self._local.connection = connection
            self._local.used = False
        return connection

    def close(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def request(self, method, path, body=None):
        """Send one request; the decoded JSON answer, or ServingError for a non-2xx status."""
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        url = self.base_url + path
        for attempt in (1, 2):
            connection = self._connection()
            reused = self._local.used
            try:
                connection.request(method, self._prefix + path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                self._local.used = True
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self.close()
                if attempt == 2 or not reused:   # a stale keep-alive connection gets one retry
                    raise
        text = payload.decode("utf-8", "replace")
        try:
            answer = json.loads(text) if text else {}
        except json.JSONDecodeError:
            answer = None
        if not 200 <= response.status < 300:
            message = answer.get("error", text) if isinstance(answer, dict) else text
            raise ServingError(response.status, message, method, url)
        if answer is None:
            raise ServingError(response.status, f"the answer is not JSON: {text[:200]}", method, url)
        return answer
