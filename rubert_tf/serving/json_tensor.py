"""JSON <-> tensors with TensorFlow Serving's rules (tensorflow_serving/util/json_tensor.cc).

Requests: `{"signature_name": ..., "instances": [...]}` (row format) or `{"inputs": ...}` (columnar).
Values are checked against the signature's dtypes as FillTensorProto does, with the same error messages.
Responses: `{"predictions": [...]}` / `{"outputs": ...}`; floats written as WriteDecimal does (printf "%g",
or max_digits10 when that does not round-trip at the tensor's precision, ".0" on whole numbers); strings as
JSON strings, except outputs named "*_bytes", which are written as {"b64": ...}.
"""

import base64
import binascii
import json
import math
import re

import numpy as np
from tensorflow.core.framework import types_pb2

from rubert_tf.serving.errors import StatusError, invalid_argument

DEFAULT_SIGNATURE = "serving_default"
BYTES_SUFFIX = "_bytes"

# DataTypeString() names where they differ from the enum's lower-cased suffix.
_DTYPE_STRINGS = {types_pb2.DT_FLOAT: "float", types_pb2.DT_DOUBLE: "double", types_pb2.DT_HALF: "half",
                  types_pb2.DT_BFLOAT16: "bfloat16"}
_NUMPY_DTYPES = {
    types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64, types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT16: np.int16, types_pb2.DT_INT8: np.int8, types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_INT64: np.int64, types_pb2.DT_BOOL: np.bool_, types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64, types_pb2.DT_STRING: object,
}
_INT_RANGES = {
    types_pb2.DT_INT32: (-2**31, 2**31 - 1), types_pb2.DT_INT16: (-2**31, 2**31 - 1),
    types_pb2.DT_INT8: (-2**31, 2**31 - 1), types_pb2.DT_UINT8: (-2**31, 2**31 - 1),
    types_pb2.DT_INT64: (-2**63, 2**63 - 1), types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}
_FLOAT_MAX_EXACT_INT = {types_pb2.DT_FLOAT: 2**24 - 1, types_pb2.DT_DOUBLE: 2**53 - 1}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def dtype_string(dtype):
    """tensorflow::DataTypeString: DT_FLOAT -> "float", DT_STRING -> "string"."""
    if dtype in _DTYPE_STRINGS:
        return _DTYPE_STRINGS[dtype]
    name = types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else f"unknown({dtype})"
    return name[3:].lower() if name.startswith("DT_") else name


def numpy_dtype(dtype):
    return _NUMPY_DTYPES.get(dtype)


# ----------------------------------------------------------------------------------------------- parsing

_RAPIDJSON_MESSAGES = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name enclosed in double quotes", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Expecting ',' delimiter", "Missing a comma or ']' after an array element."),
    ("Extra data", "The document root must not be followed by other values."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
    ("Invalid control character", "Invalid encoding in string."),
)


def _reject_constant(name):
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def parse_json(body):
    """ParseJson: the request body as a JSON object, or INVALID_ARGUMENT "JSON Parse error: ..."."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    # rapidjson does not validate UTF-8, so neither do we: invalid bytes survive as surrogates and are
    # turned back into the same bytes when they become a string tensor.
    text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        message = next((ours for theirs, ours in _RAPIDJSON_MESSAGES if error.msg.startswith(theirs)),
                       error.msg + ".")
        raise invalid_argument(f"JSON Parse error: {message} at offset: {error.pos}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: The document is nested too deeply.") from None
    _check_document(doc, text)
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {json_value_to_string(doc)} Is not object")
    return doc


# Deeper than any tensor a signature takes (TF's rank limit is 254, but no request nests more than a few
# levels); every recursive walk of a request (the error messages' JSON Value dumps) stays far from
# Python's recursion limit.
MAX_JSON_DEPTH = 128
# Surrogates that only a \\uXXXX escape without its pair can produce: invalid UTF-8 bytes survive the
# surrogateescape decoding as U+DC80..U+DCFF, which are left alone (rapidjson passes such bytes through).
_LONE_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _check_document(doc, text):
    """rapidjson's refusals that Python's json module lacks: nesting too deep for the walks that follow,
    and a \\uD800-\\uDFFF escape that is not half of a surrogate pair (INVALID_ARGUMENT, as TF Serving)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                raise invalid_argument(f"JSON Parse error: The document is nested more than {MAX_JSON_DEPTH} "
                                       "levels deep.")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if key is not None:
                    stack.append((key, depth))
                stack.append((item, depth + 1))
        elif isinstance(value, str) and _LONE_SURROGATE.search(value):
            offset = _lone_surrogate_offset(text)
            where = f" at offset: {offset}" if offset is not None else ""
            raise invalid_argument(f"JSON Parse error: The surrogate pair in string is invalid.{where}")


def _lone_surrogate_offset(text):
    """Offset of the first \\uD800-\\uDFFF escape that is not a high surrogate followed by a low one."""
    paired_low = -1
    for match in _SURROGATE_ESCAPE.finditer(text):
        if match.start() == paired_low:
            continue
        escape = match.group()
        after = text[match.end():match.end() + 6]
        if escape[3] in "89abAB" and _SURROGATE_ESCAPE.fullmatch(after) and after[3] in "cdefCDEF":
            paired_low = match.end()
            continue
        return match.start()
    return None


def signature_name_from_json(doc):
    """FillSignature: the optional "signature_name", which must be a string."""
    if "signature_name" not in doc:
        return ""
    name = doc["signature_name"]
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {json_value_to_string(doc)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return name


def json_type_string(value):
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def json_value_to_string(value, indent=0):
    """JsonValueToString: rapidjson's PrettyWriter layout (4-space indent), floats as WriteDecimal."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        as_float32 = np.float32(value) if abs(value) <= _FLOAT32_MAX or not math.isfinite(value) else None
        if as_float32 is not None and float(as_float32) == value:
            return write_decimal(value, np.float32)
        return write_decimal(value, np.float64)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    inner = " " * (indent + 4)
    if isinstance(value, list):
        if not value:
            return "[]"
        items = ",\n".join(inner + json_value_to_string(v, indent + 4) for v in value)
        return "[\n" + items + "\n" + " " * indent + "]"
    if not value:
        return "{}"
    items = ",\n".join(f"{inner}{json.dumps(k, ensure_ascii=False)}: {json_value_to_string(v, indent + 4)}"
                       for k, v in value.items())
    return "{\n" + items + "\n" + " " * indent + "}"


def _is_base64_object(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _type_error(value, dtype):
    return invalid_argument(f"JSON Value: {json_value_to_string(value)} Type: {json_type_string(value)} "
                            f"is not of expected type: {dtype_string(dtype)}")


def _decode_base64(value):
    if not _is_base64_object(value):
        raise invalid_argument(f"JSON Value: {json_value_to_string(value)} not formatted correctly for base64 data")
    text = value["b64"]
    try:
        # absl::Base64Unescape accepts standard and web-safe alphabets, padding optional.
        data = text.encode("ascii")
        data = data.replace(b"-", b"+").replace(b"_", b"/")
        data += b"=" * (-len(data.rstrip(b"=")) % 4 if not data.endswith(b"=") else 0)
        return base64.b64decode(data, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _convert_value(value, dtype):
    """AddValueToTensor: one JSON scalar as a Python value of the signature's dtype."""
    if dtype == types_pb2.DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogateescape")
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if not is_number:
            raise _type_error(value, dtype)
        target = "float" if dtype == types_pb2.DT_FLOAT else "double"
        if isinstance(value, int):
            if abs(value) > _FLOAT_MAX_EXACT_INT[dtype]:
                raise invalid_argument(f"Cannot convert JSON value: {json_value_to_string(value)} to {target} "
                                       "without loss of precision.")
        elif dtype == types_pb2.DT_FLOAT and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise invalid_argument(f"Cannot convert JSON value: {json_value_to_string(value)} to {target} "
                                   "without loss of precision.")
        return float(value)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if not is_number or not isinstance(value, int) or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    raise StatusError("UNIMPLEMENTED", f"Conversion of JSON Value: {json_value_to_string(value)} "
                                       f"to type: {dtype_string(dtype)}")


def _dense_shape(value):
    """GetDenseTensorShape: follow the first element of every nested list."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, level, shape, dtype, out):
    """FillTensorProto: check a nested list against `shape` and append its leaves to `out`."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(f"JSON Value: {json_value_to_string(value)} found at incorrect level: "
                                   f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        if isinstance(value, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(value, dtype)
            out.append(_decode_base64(value))
        else:
            out.append(_convert_value(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(f"Encountered list at unexpected size: {len(value)} at level: {level} "
                               f"expected size: {shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _to_array(values, shape, dtype):
    np_dtype = _NUMPY_DTYPES[dtype]
    if np_dtype is object:
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif dtype in (types_pb2.DT_INT16, types_pb2.DT_INT8, types_pb2.DT_UINT8):
        array = np.array(values, dtype=np.int64).astype(np_dtype)  # GetInt() then narrowed, as the C++ does
    else:
        array = np.array(values, dtype=np_dtype)
    return array.reshape(shape)


def _tensor_from_json(value, dtype):
    shape = _dense_shape(value)
    values = []
    _fill(value, 0, shape, dtype, values)
    return _to_array(values, shape, dtype), shape, len(values)


def _shape_string(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def _tensors_from_instances(instances, input_dtypes):
    """FillTensorMapFromInstancesList."""
    first = instances[0]
    if not isinstance(first, dict) and len(input_dtypes) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as multiple input "
                               "tensors required as per tensorinfo_map")

    def is_element_object(item):
        return isinstance(item, dict) and not _is_base64_object(item)

    objects = is_element_object(first)
    input_names = sorted(input_dtypes)
    values, shapes, sizes = {}, {}, {}

    def add_item(item, name):
        if name not in input_dtypes:
            raise invalid_argument(f"JSON object: does not have named input: {name}")
        dtype = input_dtypes[name]
        shape = _dense_shape(item)
        leaves = []
        _fill(item, 0, shape, dtype, leaves)
        if name not in sizes:
            sizes[name], shapes[name] = len(leaves), shape
        elif sizes[name] != len(leaves):
            raise invalid_argument(f"Expecting tensor size: {sizes[name]} but got: {len(leaves)}")
        elif shapes[name] != shape:
            raise invalid_argument(f"Expecting shape {_shape_string(shapes[name])} but got: {_shape_string(shape)}")
        values.setdefault(name, []).extend(leaves)

    for index, element in enumerate(instances):
        if objects:
            if not is_element_object(element):
                raise invalid_argument(f"Expecting object but got list at item {index} of input list")
            for name, item in element.items():
                try:
                    add_item(item, name)
                except StatusError as error:
                    raise invalid_argument(f"Failed to process element: {index} key: {name} of 'instances' list. "
                                           f"Error: {error.to_string()}") from None
            if sorted(element) != input_names:
                raise invalid_argument(f"Failed to process element: {index} of 'instances' list. JSON object: "
                                       f"{json_value_to_string(element)} keys must be equal to: "
                                       f"{','.join(input_names)}")
        else:
            if is_element_object(element):
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            try:
                add_item(element, input_names[0])
            except StatusError as error:
                raise invalid_argument(f"Failed to process element: {index} of 'instances' list. "
                                       f"Error: {error.to_string()}") from None
    return {name: _to_array(values[name], [len(instances)] + shapes[name], input_dtypes[name]) for name in values}


def _tensors_from_inputs(value, input_dtypes):
    """FillTensorMapFromInputsMap."""
    if not isinstance(value, dict) or _is_base64_object(value):
        if len(input_dtypes) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple input "
                                   "tensors required as per tensorinfo_map")
        name, dtype = next(iter(input_dtypes.items()))
        return {name: _tensor_from_json(value, dtype)[0]}
    tensors = {}
    for name in sorted(input_dtypes):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _tensor_from_json(value[name], input_dtypes[name])[0]
    return tensors


def tensors_from_json(doc, input_dtypes, signature_name=""):
    """FillPredictRequestFromJson after the signature is known: returns (tensors, "row" | "columnar").

    `input_dtypes` maps the signature's input names to DataType enums.
    """
    if not input_dtypes:
        raise invalid_argument(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument(f"JSON Value: {json_value_to_string(doc)} Not formatted correctly expecting only "
                               "one of 'inputs' or 'instances' keys to exist ")
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid_argument(f"JSON Value: {json_value_to_string(doc)} Excepting 'instances' to be an "
                                   "list/array")
        if not instances:
            raise invalid_argument(f"JSON Value: {json_value_to_string(doc)} No values in 'instances' array")
        return _tensors_from_instances(instances, input_dtypes), "row"
    if has_inputs:
        return _tensors_from_inputs(doc["inputs"], input_dtypes), "columnar"
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def check_examples_request(doc):
    """FillClassifyRegressRequestFromJson's checks on "examples" (its messages say "classify" for both)."""
    if "examples" not in doc:
        raise invalid_argument(f"JSON Value: {json_value_to_string(doc)} When method is classify, key 'examples' "
                               "is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {json_value_to_string(doc)} Expecting 'examples' value to be an "
                               "list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {json_value_to_string(doc)} 'examples' value is an empty array")
    for example in examples:
        if not isinstance(example, dict):
            raise invalid_argument(f"Example must be JSON object but got JSON {json_type_string(example)}")


# ----------------------------------------------------------------------------------------------- writing

def write_decimal(value, dtype=np.float32):
    """WriteDecimal for one value: "%g"; if that does not round-trip at `dtype`, "%.9g"/"%.17g"."""
    return _decimal_tokens(np.asarray([value], dtype=dtype))[0]


def _decimal_tokens(array):
    flat = np.asarray(array).ravel()
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float32)  # half and bfloat16 are written as float, as the C++ does
    if flat.size == 0:
        return []
    digits = 9 if flat.dtype == np.float32 else 17
    finite = np.isfinite(flat)
    wide = flat.astype(np.float64)
    tokens = np.char.mod("%g", np.where(finite, wide, 0.0)).astype(object)
    if finite.any():
        parsed = tokens[finite].astype(str).astype(flat.dtype)
        inexact = np.flatnonzero(finite)[parsed != flat[finite]]
        if inexact.size:
            tokens[inexact] = np.char.mod(f"%.{digits}g", wide[inexact]).astype(object)
    result = tokens.tolist()
    for i in np.flatnonzero(~finite).tolist():
        v = flat[i]
        result[i] = "NaN" if np.isnan(v) else ("-Infinity" if v < 0 else "Infinity")
    for i in np.flatnonzero(finite).tolist():
        token = result[i]
        if "." not in token and "e" not in token:
            result[i] = token + ".0"
    return result


def _value_tokens(name, array):
    """AddSingleValueAndAdvance for every element of `array`, flattened, as JSON text."""
    kind = array.dtype.kind
    if kind == "f" or array.dtype.name == "bfloat16":
        return _decimal_tokens(array)
    if kind in "iu":
        return array.ravel().astype(str).tolist()
    if kind == "b":
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if kind in "OSU":
        tokens = []
        as_bytes = name.endswith(BYTES_SUFFIX)
        for v in array.ravel().tolist():
            if isinstance(v, str):
                v = v.encode("utf-8")
            if as_bytes:
                tokens.append('{"b64": "' + base64.b64encode(v).decode("ascii") + '"}')
            else:
                tokens.append(json.dumps(v.decode("utf-8", "replace"), ensure_ascii=False))
        return tokens
    raise invalid_argument(f"Failed to write JSON value for tensor type: {array.dtype.name}")


def _nest(tokens, shape):
    """Group a flat list of JSON tokens into nested JSON arrays of `shape`."""
    items = tokens
    for axis in range(len(shape) - 1, -1, -1):
        size = shape[axis]
        groups = int(np.prod(shape[:axis], dtype=np.int64))
        items = ["[" + ", ".join(items[g * size:(g + 1) * size]) + "]" for g in range(groups)]
    return items[0]


def json_from_tensors(outputs, fmt):
    """MakeJsonFromTensors: `outputs` maps output names to numpy arrays; `fmt` is "row" or "columnar"."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    if fmt == "columnar":
        parts = {name: _nest(_value_tokens(name, arrays[name]), list(arrays[name].shape)) for name in names}
        if len(names) == 1:
            return '{"outputs": ' + parts[names[0]] + "}"
        body = ", ".join(json.dumps(name, ensure_ascii=False) + ": " + parts[name] for name in names)
        return '{"outputs": {' + body + "}}"

    batch_size = -1
    for name in names:
        shape = arrays[name].shape
        if len(shape) == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size >= 0 and shape[0] != batch_size:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {shape[0]} "
                                   f"expecting: {batch_size}")
        batch_size = shape[0]
    per_item = {}
    for name in names:
        array = arrays[name]
        tokens = _value_tokens(name, array)
        item_shape = list(array.shape[1:])
        step = int(np.prod(item_shape, dtype=np.int64))
        per_item[name] = [_nest(tokens[i * step:(i + 1) * step], item_shape) for i in range(batch_size)]
    if len(names) == 1:
        rows = per_item[names[0]]
    else:
        keys = {name: json.dumps(name, ensure_ascii=False) + ": " for name in names}
        rows = ["{" + ", ".join(keys[name] + per_item[name][i] for name in names) + "}" for i in range(batch_size)]
    return '{"predictions": [' + ", ".join(rows) + "]}"


def error_json(message):
    return json.dumps({"error": message}, ensure_ascii=False)
