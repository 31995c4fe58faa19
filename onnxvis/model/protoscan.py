"""Read an ONNX file's structure without reading its weight bytes.

An ONNX file is one serialized ``ModelProto``. Almost all of its bytes are the data of the graph's
initializers (the weights). :func:`scan` walks the protobuf *wire format* of the top two levels
(ModelProto -> GraphProto) and of every top-level initializer (TensorProto), and returns

* a **skeleton**: the same ModelProto bytes, except that every top-level initializer lost its data
  fields (``raw_data`` and the typed ``*_data`` fields, see :data:`DATA_FIELDS`). Everything else -
  name, dims, data_type, data_location, external_data, doc_string, unknown fields, the nodes, the
  subgraphs inside node attributes and their own initializers - is copied byte for byte. So
  ``onnx.ModelProto.FromString(skeleton)`` equals a plain ``onnx.load`` minus the weight data;
* for each top-level initializer, in file order, a :class:`TensorSpan`: where its TensorProto
  record and its ``raw_data`` bytes lie in the file, so that one tensor can be read on demand.

Choice: *all* data fields of top-level initializers are stripped, however small, so that the
skeleton never half-holds data: code that wants values must ask for them. Data inside node
attributes (``Constant`` nodes, subgraph initializers) and in ``training_info`` / ``functions``
is not touched and stays in the skeleton.

The scanner only reads tags and lengths: :func:`scan_file` reads a 500 MB file with ``pread`` in
small blocks, only where the scan looks, so the weight bytes are never read. (Not a memory map:
each fault on a map of a cached file can bring in a whole large folio, and those count towards the
process's memory: 22 MB for the 33 tensor headers of VGG16.) Every length is checked against the end of its enclosing
message (and so against the file size) before use, so garbage claiming huge lengths costs nothing.
Any malformed wire data raises :class:`WireFormatError` (internal; ``onnxvis.model.file`` turns it into
an ``OnnxvisError`` for the user).

Field numbers (checked against ``onnx/onnx.proto`` of onnx 1.23):
ModelProto.graph = 7; GraphProto.initializer = 5; TensorProto: dims 1, data_type 2, segment 3,
float_data 4, int32_data 5, string_data 6, int64_data 7, name 8, raw_data 9, double_data 10,
uint64_data 11, doc_string 12, external_data 13, data_location 14, metadata_props 16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from onnxvis.model.proto import WireFormatError, encode_varint, read_varint

MODEL_GRAPH = 7
GRAPH_INITIALIZER = 5
TENSOR_RAW_DATA = 9

# Typed data fields of TensorProto and the wire types protobuf accepts for each: 2 (length-delimited,
# i.e. packed or bytes) and, when unpacked, the scalar wire type of the element.
# A field arriving with another wire type is an *unknown* field for protobuf, and is kept verbatim.
_TYPED_DATA_WIRE_TYPES = {
    4: (2, 5),  # float_data: packed, or fixed32
    5: (2, 0),  # int32_data: packed, or varint
    6: (2,),  # string_data: bytes
    7: (2, 0),  # int64_data
    10: (2, 1),  # double_data: packed, or fixed64
    11: (2, 0),  # uint64_data
}
DATA_FIELDS = frozenset([TENSOR_RAW_DATA, *_TYPED_DATA_WIRE_TYPES])

_MAX_GROUP_DEPTH = 64
_MAX_FIELD_NUMBER = (1 << 29) - 1


@dataclass(frozen=True)
class TensorSpan:
    """Where one top-level initializer lies in the file. Offsets are absolute file offsets.

    Attributes:
        record: (offset, length) of the serialized TensorProto (all its fields, data included).
        raw: (offset, length) of its ``raw_data`` bytes, or None when the field is absent.
            When ``raw_data`` occurs several times, the last one wins, as in protobuf.
        has_typed_data: whether any typed data field (float_data, int32_data, ...) is present.
    """

    record: tuple[int, int]
    raw: tuple[int, int] | None
    has_typed_data: bool


@dataclass(frozen=True)
class ScanResult:
    skeleton: bytes
    initializers: list[TensorSpan]
    graph_count: int  # number of ModelProto.graph records seen (protobuf merges several into one)


def _read_tag(buf, pos: int, end: int) -> tuple[int, int, int]:
    key, pos = read_varint(buf, pos, end)
    field, wire_type = key >> 3, key & 7
    if field == 0 or field > _MAX_FIELD_NUMBER:
        raise WireFormatError(f"invalid field number {field} at byte {pos}")
    if wire_type > 5:
        raise WireFormatError(f"invalid wire type {wire_type} at byte {pos}")
    return field, wire_type, pos


def _skip_value(buf, pos: int, end: int, field: int, wire_type: int, depth: int = 0) -> int:
    """Return the position after the value of a field whose tag ended at ``pos``."""
    if wire_type == 0:
        return read_varint(buf, pos, end)[1]
    if wire_type == 1:
        new = pos + 8
    elif wire_type == 5:
        new = pos + 4
    elif wire_type == 2:
        length, pos = read_varint(buf, pos, end)
        new = pos + length
    elif wire_type == 3:  # start group (deprecated, but valid protobuf): skip to the matching end
        if depth >= _MAX_GROUP_DEPTH:
            raise WireFormatError("groups nested too deeply")
        while True:
            inner_field, inner_type, pos = _read_tag(buf, pos, end)
            if inner_type == 4:
                if inner_field != field:
                    raise WireFormatError(f"mismatched end-group tag at byte {pos}")
                return pos
            pos = _skip_value(buf, pos, end, inner_field, inner_type, depth + 1)
    else:  # 4: an end-group tag without its start
        raise WireFormatError(f"unexpected end-group tag at byte {pos}")
    if new > end:
        raise WireFormatError(f"field {field} at byte {pos} runs past the end of its message (byte {end})")
    return new


def _fields(buf, start: int, end: int):
    """Yield (field, wire_type, tag_start, tag_end, value_start, next_pos) per field in buf[start:end].

    For wire type 2, value_start is where the payload starts (after the length prefix).
    """
    pos = start
    while pos < end:
        tag_start = pos
        field, wire_type, pos = _read_tag(buf, pos, end)
        tag_end = pos
        if wire_type == 2:
            length, value_start = read_varint(buf, pos, end)
            nxt = value_start + length
            if nxt > end:
                raise WireFormatError(
                    f"field {field} at byte {tag_start} claims {length} bytes, past the end of its message"
                )
        else:
            value_start = pos
            nxt = _skip_value(buf, pos, end, field, wire_type)
        yield field, wire_type, tag_start, tag_end, value_start, nxt
        pos = nxt


class _Rewriter:
    """Copy buf[start:end] verbatim except for replaced fields; collects pieces lazily."""

    def __init__(self, buf, start: int):
        self.buf = buf
        self.pieces: list[bytes] = []
        self.copy_from = start

    def replace(self, tag_start: int, tag_end: int, payload: bytes, nxt: int) -> None:
        """Replace the length-delimited field at tag_start..nxt by the same tag with a new payload."""
        if tag_start > self.copy_from:
            self.pieces.append(self.buf[self.copy_from : tag_start])
        self.pieces.append(self.buf[tag_start:tag_end])
        self.pieces.append(encode_varint(len(payload)))
        self.pieces.append(payload)
        self.copy_from = nxt

    def drop(self, tag_start: int, nxt: int) -> None:
        if tag_start > self.copy_from:
            self.pieces.append(self.buf[self.copy_from : tag_start])
        self.copy_from = nxt

    def finish(self, end: int) -> bytes:
        if end > self.copy_from:
            self.pieces.append(self.buf[self.copy_from : end])
        return b"".join(self.pieces)


def _scan_tensor(buf, start: int, end: int) -> tuple[bytes, TensorSpan]:
    out = _Rewriter(buf, start)
    raw = None
    typed = False
    for field, wire_type, tag_start, _tag_end, value_start, nxt in _fields(buf, start, end):
        if field == TENSOR_RAW_DATA and wire_type == 2:
            raw = (value_start, nxt - value_start)
            out.drop(tag_start, nxt)
        elif field in _TYPED_DATA_WIRE_TYPES and wire_type in _TYPED_DATA_WIRE_TYPES[field]:
            typed = True
            out.drop(tag_start, nxt)
    return out.finish(end), TensorSpan(record=(start, end - start), raw=raw, has_typed_data=typed)


def _scan_graph(buf, start: int, end: int, spans: list[TensorSpan]) -> bytes:
    out = _Rewriter(buf, start)
    for field, wire_type, tag_start, tag_end, value_start, nxt in _fields(buf, start, end):
        if field == GRAPH_INITIALIZER and wire_type == 2:
            stripped, span = _scan_tensor(buf, value_start, nxt)
            spans.append(span)
            out.replace(tag_start, tag_end, stripped, nxt)
    return out.finish(end)


def scan(buf) -> ScanResult:
    """Scan a serialized ModelProto held in ``buf`` (bytes, memoryview or mmap).

    Raises:
        WireFormatError: when the bytes are not well-formed protobuf at the levels scanned.
    """
    end = len(buf)
    out = _Rewriter(buf, 0)
    spans: list[TensorSpan] = []
    graphs = 0
    try:
        for field, wire_type, tag_start, tag_end, value_start, nxt in _fields(buf, 0, end):
            if field == MODEL_GRAPH and wire_type == 2:
                graphs += 1
                graph = _scan_graph(buf, value_start, nxt, spans)
                out.replace(tag_start, tag_end, graph, nxt)
    except (IndexError, OverflowError, ValueError) as exc:  # defensive: report, never escape raw
        if isinstance(exc, WireFormatError):
            raise
        raise WireFormatError(f"{type(exc).__name__}: {exc}") from None
    return ScanResult(skeleton=out.finish(end), initializers=spans, graph_count=graphs)


class _FileBytes:
    """The bytes of an open file, read on demand with ``pread``: what :func:`scan` needs of a buffer.

    Single bytes come from a few cached blocks (the scan reads tags and lengths close together);
    slices (the parts copied into the skeleton) are read directly. A file that shrinks under the
    scan gives an IndexError, which :func:`scan` reports as a WireFormatError.
    """

    _BLOCK = 1 << 14
    _MAX_BLOCKS = 8

    def __init__(self, fd: int, size: int):
        self._fd = fd
        self._size = size
        self._blocks: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            if step != 1:
                raise ValueError("only contiguous slices")
            return self._read(start, stop - start) if stop > start else b""
        if key < 0:
            key += self._size
        if not 0 <= key < self._size:
            raise IndexError(f"byte {key} is outside the file")
        index, offset = divmod(key, self._BLOCK)
        block = self._blocks.get(index)
        if block is None:
            if len(self._blocks) >= self._MAX_BLOCKS:
                self._blocks.clear()
            block = self._blocks[index] = os.pread(self._fd, self._BLOCK, index * self._BLOCK)
        return block[offset]

    def _read(self, start: int, length: int) -> bytes:
        parts = []
        while length > 0:
            chunk = os.pread(self._fd, length, start)
            if not chunk:
                raise IndexError(f"the file ended before byte {start + length}")
            parts.append(chunk)
            start += len(chunk)
            length -= len(chunk)
        return b"".join(parts)


def scan_file(path: str | os.PathLike) -> tuple[ScanResult, os.stat_result]:
    """Scan the file at ``path``, reading only the bytes the scan needs; the file is closed on return.

    Returns the scan and the ``os.stat_result`` of the opened file (to notice later changes).
    Raises OSError for I/O problems and WireFormatError for malformed content; an empty file is
    a WireFormatError.
    """
    with open(Path(path), "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size == 0:
            raise WireFormatError("the file is empty")
        if not hasattr(os, "pread"):  # Windows: read it all (slow for big files, but correct)
            return scan(f.read()), st
        return scan(_FileBytes(f.fileno(), st.st_size)), st
