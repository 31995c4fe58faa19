"""The ONNX protobuf messages, read and written in pure Python: no ``onnx``, no ``protobuf``.

Why: ``import onnx`` costs most of a one-picture command's time (it imports ``ml_dtypes``, 0.6 s for
its release 0.7). The commands that only walk the graph and run onnxruntime need none of onnx's
functions, only its messages' fields.

The classes below carry onnx's field names and types (``node.op_type``, ``attr.ints``,
``value.type.tensor_type.shape.dim[0].dim_value``), with protobuf's reading rules: a missing scalar
reads as its default, a missing message as an empty one, ``HasField`` tells presence (proto2), a
repeated field is a list, a singular field seen twice keeps the last value (a message is merged),
``WhichOneof`` names the set member of a oneof. A field of an unexpected wire type, or an unknown
field, is skipped on reading and kept in the bytes.

They are for reading. A message parsed from bytes remembers them: :meth:`Message.SerializeToString`
gives them back unchanged (so a node handed to onnxruntime is the file's node, byte for byte). A
message built in Python (``TensorProto(name=..., dims=...)``) is encoded from its fields, in field
order, as protobuf does. Changing a parsed message in place is not supported.

``msg == other`` compares with another of these messages by bytes, and with an onnx message (in
tests) by parsing these bytes into the other's class.

Field numbers and types: ``onnx/onnx.proto`` of onnx 1.23.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np

__all__ = [
    "WireFormatError", "Message", "ModelProto", "GraphProto", "NodeProto", "AttributeProto", "TensorProto",
    "ValueInfoProto", "TypeProto", "parse_model", "attribute_value", "np_dtype_of", "dtype_name_of",
    "uses_external_data", "to_array", "encode_field", "encode_varint", "read_varint", "EXTERNAL", "DEFAULT",
    "ATTRIBUTE_TYPES", "as_onnx", "value_info", "tensor_from_array", "tensor_dtype_of",
]


class WireFormatError(ValueError):
    """The bytes are not valid protobuf wire data (or not in the shape of an ONNX model)."""


class NotUtf8(ValueError):
    """A string field holds bytes that are not UTF-8 (its path, as ``model.graph.node.name``)."""


# TensorProto.DataLocation
DEFAULT, EXTERNAL = 0, 1

# AttributeProto.AttributeType, by number
ATTRIBUTE_TYPES = {
    0: "UNDEFINED", 1: "FLOAT", 2: "INT", 3: "STRING", 4: "TENSOR", 5: "GRAPH", 11: "SPARSE_TENSOR", 13: "TYPE_PROTO",
    6: "FLOATS", 7: "INTS", 8: "STRINGS", 9: "TENSORS", 10: "GRAPHS", 12: "SPARSE_TENSORS", 14: "TYPE_PROTOS",
}

# TensorProto.DataType names, by number
DATA_TYPE_NAMES = {
    0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING",
    9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128",
    16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4",
    22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2", 27: "FLOAT6E2M3", 28: "FLOAT6E3M2",
}

# numpy dtypes of the element types numpy has itself (onnx.helper.tensor_dtype_to_np_dtype's, without ml_dtypes)
_PLAIN_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("float32"), 2: np.dtype("uint8"), 3: np.dtype("int8"), 4: np.dtype("uint16"), 5: np.dtype("int16"),
    6: np.dtype("int32"), 7: np.dtype("int64"), 8: np.dtype("object"), 9: np.dtype("bool"), 10: np.dtype("float16"),
    11: np.dtype("float64"), 12: np.dtype("uint32"), 13: np.dtype("uint64"), 14: np.dtype("complex64"),
    15: np.dtype("complex128"),
}
# The types whose numpy dtype comes from ml_dtypes (as onnx's own mapping): loaded only for them.
_ML_DTYPES = {
    16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2", 20: "float8_e5m2fnuz",
    21: "uint4", 22: "int4", 23: "float4_e2m1fn", 24: "float8_e8m0fnu", 25: "uint2", 26: "int2",
    27: "float6_e2m3fn", 28: "float6_e3m2fn",
}


def np_dtype_of(data_type: int) -> np.dtype:
    """The numpy dtype of an ONNX element type (as ``onnx.helper.tensor_dtype_to_np_dtype``).

    Raises KeyError for an unknown type. Only the ml_dtypes types load ml_dtypes.
    """
    if data_type in _PLAIN_DTYPES:
        return _PLAIN_DTYPES[data_type]
    name = _ML_DTYPES[data_type]
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, name))


def tensor_dtype_of(dtype: np.dtype) -> int:
    """The ONNX element type of a numpy dtype (as ``onnx.helper.np_dtype_to_tensor_dtype``)."""
    dtype = np.dtype(dtype)
    for code, plain in _PLAIN_DTYPES.items():
        if plain == dtype and code != 8:
            return code
    if dtype.kind in "OSU":
        return 8
    for code, name in _ML_DTYPES.items():
        if dtype.name == name:
            return code
    raise KeyError(f"no ONNX element type for numpy {dtype}")


def dtype_name_of(data_type: int) -> str:
    """The numpy name of an ONNX element type (``float16``, ``int4``), else its ONNX name in lower case."""
    try:
        return np_dtype_of(data_type).name
    except Exception:
        name = DATA_TYPE_NAMES.get(data_type)
        return name.lower() if name else f"type {data_type}"


# ------------------------------------------------------------------------------------- wire format

def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a message, a string, bytes, a packed list)."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (unsigned 64-bit; protobuf's wire rules)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireFormatError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise WireFormatError(f"varint longer than 10 bytes at byte {pos}")


def _skip_group(buf, pos: int, end: int, field: int, depth: int) -> int:
    if depth > 64:
        raise WireFormatError("groups nested too deeply")
    while True:
        key, pos = read_varint(buf, pos, end)
        inner, wire = key >> 3, key & 7
        if wire == 4:
            if inner != field:
                raise WireFormatError(f"mismatched end-group tag at byte {pos}")
            return pos
        pos = _skip(buf, pos, end, inner, wire, depth + 1)


def _skip(buf, pos: int, end: int, field: int, wire: int, depth: int = 0) -> int:
    if wire == 0:
        return read_varint(buf, pos, end)[1]
    if wire == 1:
        new = pos + 8
    elif wire == 5:
        new = pos + 4
    elif wire == 2:
        length, pos = read_varint(buf, pos, end)
        new = pos + length
    elif wire == 3:
        return _skip_group(buf, pos, end, field, depth)
    else:
        raise WireFormatError(f"unexpected wire type {wire} at byte {pos}")
    if new > end:
        raise WireFormatError(f"field {field} runs past the end of its message (byte {end})")
    return new


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


# field kinds: (wire type of one element, decode of a varint / fixed value)
_INT64, _INT32, _UINT64, _FLOAT, _DOUBLE, _STRING, _BYTES, _MSG, _ENUM = range(9)
_SCALAR_WIRE = {_INT64: 0, _INT32: 0, _UINT64: 0, _ENUM: 0, _FLOAT: 5, _DOUBLE: 1}
_DEFAULTS: dict[int, Any] = {_INT64: 0, _INT32: 0, _UINT64: 0, _ENUM: 0, _FLOAT: 0.0, _DOUBLE: 0.0, _STRING: "", _BYTES: b""}


def _decode_scalar(kind: int, v: int) -> Any:
    if kind == _INT64:
        return _signed64(v)
    if kind in (_INT32, _ENUM):
        return _signed32(v)
    return v


class Message:
    """A protobuf message of onnx.proto, read-only once parsed (see the module's docstring)."""

    # number -> (name, kind, repeated, message class or None); filled by _define
    _FIELDS: dict[int, tuple[str, int, bool, Any]] = {}
    _BY_NAME: dict[str, tuple[int, int, bool, Any]] = {}
    _ONEOF: dict[str, tuple[str, tuple[str, ...]]] = {}  # member -> (oneof name, its members)
    _PACKED: frozenset[int] = frozenset()  # repeated scalars declared [packed = true]

    def __init__(self, **fields: Any) -> None:
        object.__setattr__(self, "_raw", None)
        for name, value in fields.items():
            setattr(self, name, value)

    # ---- reading
    def __getattr__(self, name: str) -> Any:
        spec = type(self)._BY_NAME.get(name)
        if spec is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        _number, kind, repeated, cls = spec
        if repeated:
            value: Any = []
            object.__setattr__(self, name, value)
            return value
        if kind == _MSG:  # an empty message, not marked present (as protobuf's default instance)
            defaults = self.__dict__.setdefault("_defaults", {})
            if name not in defaults:
                defaults[name] = cls()
            return defaults[name]
        return _DEFAULTS[kind]

    def __setattr__(self, name: str, value: Any) -> None:
        spec = type(self)._BY_NAME.get(name)
        if spec is None:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        if spec[2]:
            value = list(value)
        object.__setattr__(self, "_raw", None)
        self._clear_oneof(name)
        object.__setattr__(self, name, value)

    def _clear_oneof(self, name: str) -> None:
        group = type(self)._ONEOF.get(name)
        if group:
            for other in group[1]:
                if other != name:
                    self.__dict__.pop(other, None)

    def HasField(self, name: str) -> bool:  # noqa: N802 (protobuf's name)
        spec = type(self)._BY_NAME.get(name)
        if spec is None or spec[2]:
            raise ValueError(f"{type(self).__name__} has no singular field {name!r}")
        return name in self.__dict__

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802
        for member, (oneof, _members) in type(self)._ONEOF.items():
            if oneof == group and member in self.__dict__:
                return member
        return None

    def ListFields(self) -> list[tuple[str, Any]]:  # noqa: N802
        """(name, value) of every set field, in field-number order (names, not descriptors)."""
        out = []
        for number in sorted(type(self)._FIELDS):
            name, _kind, repeated, _cls = type(self)._FIELDS[number]
            if name in self.__dict__ and (not repeated or self.__dict__[name]):
                out.append((name, self.__dict__[name]))
        return out

    # ---- bytes
    @classmethod
    def FromString(cls, data: bytes) -> "Message":  # noqa: N802
        msg = cls()
        msg._parse(memoryview(data) if not isinstance(data, memoryview) else data, 0, len(data), type(msg).__name__)
        object.__setattr__(msg, "_raw", bytes(data))
        return msg

    def _parse(self, buf, pos: int, end: int, path: str) -> None:
        fields = type(self)._FIELDS
        d = self.__dict__
        while pos < end:
            key, pos = read_varint(buf, pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise WireFormatError(f"invalid field number 0 at byte {pos}")
            spec = fields.get(number)
            if spec is None:
                pos = _skip(buf, pos, end, number, wire)
                continue
            name, kind, repeated, cls = spec
            if wire == 2:
                length, start = read_varint(buf, pos, end)
                stop = start + length
                if stop > end:
                    raise WireFormatError(f"field {name} claims {length} bytes, past the end of its message")
                pos = stop
                if kind == _MSG:
                    if repeated:
                        sub = cls()
                        sub._parse(buf, start, stop, f"{path}.{name}")
                        object.__setattr__(sub, "_raw", bytes(buf[start:stop]))
                        lst = d.get(name)
                        if lst is None:
                            lst = d[name] = []
                        lst.append(sub)
                    else:
                        sub = d.get(name)
                        fresh = sub is None
                        if fresh:
                            sub = cls()
                        sub._parse(buf, start, stop, f"{path}.{name}")
                        # merged: the bytes are the concatenation of both records (protobuf's merge)
                        object.__setattr__(sub, "_raw", bytes(buf[start:stop]) if fresh or sub._raw is None
                                           else sub._raw + bytes(buf[start:stop]))
                        self._clear_oneof(name)
                        d[name] = sub
                elif kind == _STRING or kind == _BYTES:
                    raw = bytes(buf[start:stop])
                    if kind == _STRING:
                        try:
                            value: Any = raw.decode("utf-8")
                        except UnicodeDecodeError:
                            raise NotUtf8(f"{path}.{name}") from None
                    else:
                        value = raw
                    if repeated:
                        d.setdefault(name, []).append(value)
                    else:
                        self._clear_oneof(name)
                        d[name] = value
                elif repeated:  # a packed list of scalars
                    d.setdefault(name, []).extend(_unpack(buf, start, stop, kind))
                else:  # a scalar with the wrong wire type: protobuf keeps it as an unknown field
                    continue
            elif kind in _SCALAR_WIRE and wire == _SCALAR_WIRE[kind]:
                if wire == 0:
                    raw_value, pos = read_varint(buf, pos, end)
                    value = _decode_scalar(kind, raw_value)
                elif wire == 5:
                    if pos + 4 > end:
                        raise WireFormatError("truncated fixed32")
                    value = struct.unpack_from("<f", buf, pos)[0]
                    pos += 4
                else:
                    if pos + 8 > end:
                        raise WireFormatError("truncated fixed64")
                    value = struct.unpack_from("<d", buf, pos)[0]
                    pos += 8
                if repeated:
                    d.setdefault(name, []).append(value)
                else:
                    self._clear_oneof(name)
                    d[name] = value
            else:
                pos = _skip(buf, pos, end, number, wire)

    def SerializeToString(self) -> bytes:  # noqa: N802
        if self._raw is not None:
            return self._raw
        out = bytearray()
        d = self.__dict__
        for number in sorted(type(self)._FIELDS):
            name, kind, repeated, _cls = type(self)._FIELDS[number]
            if name not in d:
                continue
            values = d[name] if repeated else [d[name]]
            if kind == _MSG:
                for v in values:
                    out += encode_field(number, v.SerializeToString())
            elif kind == _STRING:
                for v in values:
                    out += encode_field(number, v.encode("utf-8"))
            elif kind == _BYTES:
                for v in values:
                    out += encode_field(number, bytes(v))
            elif repeated and number in type(self)._PACKED:
                if values:
                    out += encode_field(number, _pack(values, kind))
            elif repeated:  # proto2's default: one field per element
                for v in values:
                    out += encode_varint(number << 3 | _SCALAR_WIRE[kind]) + _pack([v], kind)
            else:
                out += encode_varint(number << 3 | _SCALAR_WIRE[kind]) + _pack([d[name]], kind)
        return bytes(out)

    def ByteSize(self) -> int:  # noqa: N802
        return len(self.SerializeToString())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Message):
            return type(self) is type(other) and self.SerializeToString() == other.SerializeToString()
        parse = getattr(type(other), "FromString", None)
        if parse is None or not hasattr(other, "SerializeToString"):
            return NotImplemented
        return parse(self.SerializeToString()) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={value!r}" for name, value in self.ListFields())
        return f"{type(self).__name__}({body})"


def _unpack(buf, start: int, stop: int, kind: int) -> list:
    if kind == _FLOAT:
        return list(np.frombuffer(bytes(buf[start:stop]), "<f4").tolist())
    if kind == _DOUBLE:
        return list(np.frombuffer(bytes(buf[start:stop]), "<f8").tolist())
    out = []
    pos = start
    while pos < stop:
        v, pos = read_varint(buf, pos, stop)
        out.append(_decode_scalar(kind, v))
    return out


def _pack(values: list, kind: int) -> bytes:
    if kind == _FLOAT:
        return struct.pack(f"<{len(values)}f", *values)
    if kind == _DOUBLE:
        return struct.pack(f"<{len(values)}d", *values)
    return b"".join(encode_varint(int(v)) for v in values)


def _define(cls: type[Message], fields: dict[int, tuple], oneofs: dict[str, tuple[str, ...]] | None = None) -> None:
    specs = {}
    for number, spec in fields.items():
        name, kind = spec[0], spec[1]
        repeated = len(spec) > 2 and spec[2]
        sub = spec[3] if len(spec) > 3 else None
        specs[number] = (name, kind, repeated, sub)
    cls._FIELDS = specs
    cls._BY_NAME = {name: (number, kind, repeated, sub) for number, (name, kind, repeated, sub) in specs.items()}
    cls._ONEOF = {member: (group, members) for group, members in (oneofs or {}).items() for member in members}


class StringStringEntryProto(Message):
    pass


class OperatorSetIdProto(Message):
    pass


class TensorShapeProto(Message):
    class Dimension(Message):
        pass


class TypeProto(Message):
    class Tensor(Message):
        pass

    class Sequence(Message):
        pass

    class Map(Message):
        pass

    class Optional(Message):
        pass

    class SparseTensor(Message):
        pass


class ValueInfoProto(Message):
    pass


class TensorProto(Message):
    class Segment(Message):
        pass

    EXTERNAL = EXTERNAL
    DEFAULT = DEFAULT


class SparseTensorProto(Message):
    pass


class AttributeProto(Message):
    pass


class NodeProto(Message):
    pass


class GraphProto(Message):
    pass


class FunctionProto(Message):
    pass


class ModelProto(Message):
    pass


for _number, _name in ATTRIBUTE_TYPES.items():
    setattr(AttributeProto, _name, _number)
for _number, _name in DATA_TYPE_NAMES.items():
    setattr(TensorProto, _name, _number)

_T = TensorProto
_define(StringStringEntryProto, {1: ("key", _STRING), 2: ("value", _STRING)})
_define(OperatorSetIdProto, {1: ("domain", _STRING), 2: ("version", _INT64)})
_define(TensorShapeProto.Dimension, {1: ("dim_value", _INT64), 2: ("dim_param", _STRING), 3: ("denotation", _STRING)},
        {"value": ("dim_value", "dim_param")})
_define(TensorShapeProto, {1: ("dim", _MSG, True, TensorShapeProto.Dimension)})
_define(TypeProto.Tensor, {1: ("elem_type", _INT32), 2: ("shape", _MSG, False, TensorShapeProto)})
_define(TypeProto.SparseTensor, {1: ("elem_type", _INT32), 2: ("shape", _MSG, False, TensorShapeProto)})
_define(TypeProto.Sequence, {1: ("elem_type", _MSG, False, TypeProto)})
_define(TypeProto.Optional, {1: ("elem_type", _MSG, False, TypeProto)})
_define(TypeProto.Map, {1: ("key_type", _INT32), 2: ("value_type", _MSG, False, TypeProto)})
_define(TypeProto, {
    1: ("tensor_type", _MSG, False, TypeProto.Tensor), 4: ("sequence_type", _MSG, False, TypeProto.Sequence),
    5: ("map_type", _MSG, False, TypeProto.Map), 6: ("denotation", _STRING),
    8: ("sparse_tensor_type", _MSG, False, TypeProto.SparseTensor), 9: ("optional_type", _MSG, False, TypeProto.Optional),
}, {"value": ("tensor_type", "sequence_type", "map_type", "optional_type", "sparse_tensor_type")})
_define(ValueInfoProto, {1: ("name", _STRING), 2: ("type", _MSG, False, TypeProto), 3: ("doc_string", _STRING),
                         4: ("metadata_props", _MSG, True, StringStringEntryProto)})
_define(TensorProto.Segment, {1: ("begin", _INT64), 2: ("end", _INT64)})
_define(TensorProto, {
    1: ("dims", _INT64, True), 2: ("data_type", _INT32), 3: ("segment", _MSG, False, TensorProto.Segment),
    4: ("float_data", _FLOAT, True), 5: ("int32_data", _INT32, True), 6: ("string_data", _BYTES, True),
    7: ("int64_data", _INT64, True), 8: ("name", _STRING), 9: ("raw_data", _BYTES), 10: ("double_data", _DOUBLE, True),
    11: ("uint64_data", _UINT64, True), 12: ("doc_string", _STRING), 13: ("external_data", _MSG, True, StringStringEntryProto),
    14: ("data_location", _ENUM), 16: ("metadata_props", _MSG, True, StringStringEntryProto),
})
TensorProto._PACKED = frozenset({4, 5, 7, 10, 11})  # float_data, int32_data, int64_data, double_data, uint64_data
_define(SparseTensorProto, {1: ("values", _MSG, False, TensorProto), 2: ("indices", _MSG, False, TensorProto),
                            3: ("dims", _INT64, True)})
_define(AttributeProto, {
    1: ("name", _STRING), 21: ("ref_attr_name", _STRING), 13: ("doc_string", _STRING), 20: ("type", _ENUM),
    2: ("f", _FLOAT), 3: ("i", _INT64), 4: ("s", _BYTES), 5: ("t", _MSG, False, TensorProto), 6: ("g", _MSG, False, GraphProto),
    22: ("sparse_tensor", _MSG, False, SparseTensorProto), 14: ("tp", _MSG, False, TypeProto),
    7: ("floats", _FLOAT, True), 8: ("ints", _INT64, True), 9: ("strings", _BYTES, True),
    10: ("tensors", _MSG, True, TensorProto), 11: ("graphs", _MSG, True, GraphProto),
    23: ("sparse_tensors", _MSG, True, SparseTensorProto), 15: ("type_protos", _MSG, True, TypeProto),
})
_define(NodeProto, {
    1: ("input", _STRING, True), 2: ("output", _STRING, True), 3: ("name", _STRING), 4: ("op_type", _STRING),
    7: ("domain", _STRING), 8: ("overload", _STRING), 5: ("attribute", _MSG, True, AttributeProto), 6: ("doc_string", _STRING),
    9: ("metadata_props", _MSG, True, StringStringEntryProto),
})
_define(GraphProto, {
    1: ("node", _MSG, True, NodeProto), 2: ("name", _STRING), 5: ("initializer", _MSG, True, TensorProto),
    15: ("sparse_initializer", _MSG, True, SparseTensorProto), 10: ("doc_string", _STRING),
    11: ("input", _MSG, True, ValueInfoProto), 12: ("output", _MSG, True, ValueInfoProto),
    13: ("value_info", _MSG, True, ValueInfoProto), 16: ("metadata_props", _MSG, True, StringStringEntryProto),
})
_define(FunctionProto, {
    1: ("name", _STRING), 4: ("input", _STRING, True), 5: ("output", _STRING, True), 6: ("attribute", _STRING, True),
    11: ("attribute_proto", _MSG, True, AttributeProto), 7: ("node", _MSG, True, NodeProto), 8: ("doc_string", _STRING),
    9: ("opset_import", _MSG, True, OperatorSetIdProto), 10: ("domain", _STRING), 13: ("overload", _STRING),
    12: ("value_info", _MSG, True, ValueInfoProto), 14: ("metadata_props", _MSG, True, StringStringEntryProto),
})
_define(ModelProto, {
    1: ("ir_version", _INT64), 8: ("opset_import", _MSG, True, OperatorSetIdProto), 2: ("producer_name", _STRING),
    3: ("producer_version", _STRING), 4: ("domain", _STRING), 5: ("model_version", _INT64), 6: ("doc_string", _STRING),
    7: ("graph", _MSG, False, GraphProto), 14: ("metadata_props", _MSG, True, StringStringEntryProto),
    25: ("functions", _MSG, True, FunctionProto),
})


def parse_model(data: bytes) -> ModelProto:
    """Parse a serialized ModelProto.

    Raises:
        WireFormatError: malformed wire data.
        NotUtf8: a string field is not UTF-8 (its path in the message).
    """
    try:
        return ModelProto.FromString(data)  # type: ignore[return-value]
    except (WireFormatError, NotUtf8):
        raise
    except (IndexError, OverflowError, ValueError, struct.error) as exc:  # defensive: report, never escape raw
        raise WireFormatError(f"{type(exc).__name__}: {exc}") from None


# ----------------------------------------------------------------------------------- helpers

def attribute_value(attr: Any) -> Any:
    """An attribute's value, as ``onnx.helper.get_attribute_value`` (works on onnx's messages too)."""
    kind = attr.type
    if kind == 1:
        return attr.f
    if kind == 2:
        return attr.i
    if kind == 3:
        return attr.s
    if kind == 4:
        return attr.t
    if kind == 5:
        return attr.g
    if kind == 11:
        return attr.sparse_tensor
    if kind == 13:
        return attr.tp
    if kind == 6:
        return list(attr.floats)
    if kind == 7:
        return list(attr.ints)
    if kind == 8:
        return list(attr.strings)
    if kind == 9:
        return list(attr.tensors)
    if kind == 10:
        return list(attr.graphs)
    if kind == 12:
        return list(attr.sparse_tensors)
    if kind == 14:
        return list(attr.type_protos)
    if kind == 0:
        return None
    raise ValueError(f"Unsupported ONNX attribute: {attr}")


def uses_external_data(tensor: Any) -> bool:
    """Whether a TensorProto keeps its data in an external file (``onnx.external_data_helper``'s test)."""
    return tensor.HasField("data_location") and tensor.data_location == EXTERNAL


# the typed field each plain type is stored in, and its numpy type (onnx's storage types)
_STORAGE: dict[int, tuple[str, type]] = {
    1: ("float_data", np.float32), 2: ("int32_data", np.int32), 3: ("int32_data", np.int32),
    6: ("int32_data", np.int32), 7: ("int64_data", np.int64), 11: ("double_data", np.float64),
    12: ("uint64_data", np.uint64), 13: ("uint64_data", np.uint64),
}


def to_array(tensor: Any) -> np.ndarray:
    """Decode a TensorProto that holds its data (as ``onnx.numpy_helper.to_array``).

    Plain numeric types in ``raw_data`` or in the typed fields are decoded here; the rest (strings,
    segments, external data, complex numbers, the types of ml_dtypes and the packed 4- and 2-bit
    types) goes to onnx itself, which is loaded only then.
    """
    data_type = tensor.data_type
    dims = tuple(tensor.dims)
    dtype = _PLAIN_DTYPES.get(data_type)
    if data_type == 0:
        raise TypeError("The element type in the input tensor is UNDEFINED.")
    if dtype is None:
        return _onnx_to_array(tensor)
    simple = (
        data_type != 8 and not tensor.HasField("segment") and not uses_external_data(tensor)
        and sys.byteorder == "little"
    )
    if simple and tensor.HasField("raw_data"):
        return np.frombuffer(tensor.raw_data, dtype=dtype).reshape(dims).copy()
    if simple and data_type not in (14, 15):  # the typed fields, as onnx.numpy_helper.to_array reads them
        if data_type in (4, 5, 10):  # 16-bit values, one per int32
            return np.array(tensor.int32_data, dtype=np.int32).view(np.uint32).astype(np.uint16).reshape(dims).view(dtype)
        if data_type == 9:
            return np.array(tensor.int32_data, dtype=np.int32).view(np.uint32).astype(np.uint8).view(dtype).reshape(dims)
        field, storage = _STORAGE[data_type]
        return np.asarray(getattr(tensor, field), dtype=storage).astype(dtype).reshape(dims)
    return _onnx_to_array(tensor)


def _onnx_to_array(tensor: Any, base_dir: str = "") -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    if not isinstance(tensor, onnx.TensorProto):
        tensor = onnx.TensorProto.FromString(tensor.SerializeToString())
    return numpy_helper.to_array(tensor, base_dir=base_dir)


def as_onnx(message: Any) -> Any:
    """The same message as onnx's own class (for onnx's functions): imports onnx. An onnx message is
    returned as it is."""
    if not isinstance(message, Message):
        return message
    import onnx

    return getattr(onnx, type(message).__name__).FromString(message.SerializeToString())


def tensor_from_array(array: np.ndarray, name: str = "") -> TensorProto:
    """A TensorProto holding ``array`` in ``raw_data`` (as ``onnx.numpy_helper.from_array`` for numeric types)."""
    array = np.asarray(array)
    data_type = tensor_dtype_of(array.dtype)
    if data_type == 8 or data_type not in _PLAIN_DTYPES:
        from onnx import numpy_helper

        return TensorProto.FromString(numpy_helper.from_array(array, name).SerializeToString())  # type: ignore[return-value]
    tensor = TensorProto(dims=list(array.shape), data_type=data_type)
    if name:
        tensor.name = name
    tensor.raw_data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return tensor


def value_info(name: str, elem_type: int | None = None, shape: list | None = None) -> ValueInfoProto:
    """A ValueInfoProto (``onnx.helper.make_tensor_value_info``; with ``elem_type`` None, the empty one of
    ``make_empty_tensor_value_info``). Dimensions: ints are values, strings are parameters."""
    info = ValueInfoProto(name=name)
    if elem_type is None:
        return info
    tensor = TypeProto.Tensor(elem_type=elem_type)
    if shape is not None:
        dims = []
        for d in shape:
            dim = TensorShapeProto.Dimension()
            if isinstance(d, str):
                dim.dim_param = d
            elif d is not None:
                dim.dim_value = int(d)
            dims.append(dim)
        tensor.shape = TensorShapeProto(dim=dims)
    info.type = TypeProto(tensor_type=tensor)
    return info
