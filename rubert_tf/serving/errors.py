"""Status errors with TensorFlow Serving's codes, and how they map to HTTP and gRPC.

Every failure inside the server is a `StatusError(code, message)`; the REST layer turns the code into
an HTTP status exactly as tensorflow_serving/model_servers/http_server.cc (ToHTTPStatusCode) does, the
gRPC layer into the grpc.StatusCode of the same name (grpc_status_util.cc).
"""

# tensorflow/core/protobuf/error_codes.proto, by number.
CODE_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
    11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
CODE_NUMBERS = {name: number for number, name in CODE_NAMES.items()}

# http_server.cc ToHTTPStatusCode.
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}


class StatusError(Exception):
    """A failed tensorflow::Status: `code` is the canonical name ("NOT_FOUND"), `message` the text."""

    def __init__(self, code, message):
        if code not in CODE_NUMBERS:
            raise ValueError(f"unknown status code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self):
        return HTTP_STATUS[self.code]

    def to_string(self):
        """absl::Status::ToString(), which TF Serving embeds in some nested messages."""
        return f"{self.code}: {self.message}"

    def __repr__(self):
        return f"StatusError({self.code}, {self.message!r})"


def invalid_argument(message):
    return StatusError("INVALID_ARGUMENT", message)


def not_found(message):
    return StatusError("NOT_FOUND", message)


def from_exception(error):
    """Map anything raised while running a model to a StatusError (TF op errors keep their code)."""
    if isinstance(error, StatusError):
        return error
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        return StatusError(CODE_NAMES.get(error.error_code, "UNKNOWN"), error.message)
    if isinstance(error, (TypeError, ValueError)):
        # tf.function argument binding and tensor conversion report bad client inputs this way.
        return StatusError("INVALID_ARGUMENT", str(error))
    if isinstance(error, MemoryError):
        return StatusError("RESOURCE_EXHAUSTED", "Out of memory while running the request")
    return StatusError("INTERNAL", f"{type(error).__name__}: {error}")
