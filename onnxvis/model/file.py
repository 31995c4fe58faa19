"""Open an ONNX file: its structure without weight bytes, and one tensor decoded on demand.

Callers ask :class:`Model` for the graph structure and for named tensors; they never see how the
bytes are read.

How it stays fast on big files (VGG16's ONNX is 528 MB): :meth:`Model.open` reads only the
protobuf tags and lengths (:mod:`onnxvis.model.protoscan`), building a small "skeleton"
ModelProto in which the top-level initializers have no data, parsed by :mod:`onnxvis.model.proto`
(pure Python: opening a model never imports onnx). :meth:`Model.tensor` then reads the
bytes of just that one tensor from the file (or from its external data file) and decodes them.
No file handle stays open between calls: each read reopens the file and checks
that it has not changed since :meth:`Model.open`.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.model import proto as _pb
from onnxvis.model import protoscan as _protoscan

if TYPE_CHECKING:
    import onnx

# data_types whose raw_data onnx.numpy_helper.to_array decodes with
# ``np.frombuffer(raw, np_dtype).reshape(dims)`` (whole bytes per element, no packing): FLOAT, UINT8,
# INT8, UINT16, INT16, INT32, INT64, BOOL, FLOAT16, DOUBLE, UINT32, UINT64, COMPLEX64, COMPLEX128,
# BFLOAT16, the four FLOAT8 types and FLOAT8E8M0. Everything else (STRING, the packed 4-, 2- and
# 6-bit types, codes added later) goes through to_array itself.
_WHOLE_BYTE_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 24})


def model_name(path: str | os.PathLike) -> str:
    """A model's name: its file name without ``.onnx`` (what the default output folder is named after)."""
    name = Path(path).name
    return name[: -len(".onnx")] if name.endswith(".onnx") else Path(path).stem


def _np_dtype_for_raw(data_type: int) -> np.dtype | None:
    """The numpy dtype that to_array uses with frombuffer for this data_type, or None."""
    if data_type not in _WHOLE_BYTE_TYPES or sys.byteorder != "little":
        return None
    try:
        return _pb.np_dtype_of(data_type)  # ml_dtypes only for bfloat16 and the float8 types
    except (KeyError, TypeError, ValueError, ImportError):
        return None


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # the head may end inside a multi-byte character
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\r\n\t\f" for c in text)


def _not_an_onnx_model(path: Path, detail: str, fallback: OnnxvisError | None = None) -> OnnxvisError:
    """The error for a file that is not a readable binary ONNX model, worded for the common causes.

    A Git LFS pointer or a text file gets its own message; otherwise ``fallback`` if given.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    if head.startswith(b"version https://git-lfs"):
        return OnnxvisError(
            f"{path} is a Git LFS pointer, not the model itself; run `git lfs pull` to fetch the real file"
        )
    if _looks_like_text(head):
        return OnnxvisError(
            f"{path} is a text file, not a binary ONNX model; give the .onnx file that your framework exported"
        )
    if fallback is not None:
        return fallback
    return OnnxvisError(
        f"{path} is not a readable ONNX model ({detail}); check the file, it may be damaged or "
        "incompletely downloaded"
    )


class Model:
    """An opened ONNX model.

    Attributes:
        path: the model file.
        name: the file name without its suffix, used for the default output folder.
        proto: the model's structure, as :mod:`onnxvis.model.proto`'s messages (onnx's field names,
            read without onnx; :meth:`onnx_proto` gives onnx's own, for its functions). Top-level initializers keep name, dims, data_type,
            data_location and external_data, but their data is absent (no raw_data, no typed
            ``*_data`` fields): use :meth:`tensor` or :meth:`initializer_proto` to read it. Tensors
            inside node attributes (Constant nodes, subgraph initializers) are complete.
    """

    def __init__(
        self,
        path: Path,
        proto: Any,
        initializers: dict[str, Any],
        *,
        _spans: dict[str, _protoscan.TensorSpan] | None = None,
        _stat: os.stat_result | None = None,
    ):
        """Wrap an already loaded model.

        ``proto`` is :mod:`onnxvis.model.proto`'s ModelProto, or onnx's own (a model built in memory):
        the callers read both alike, by onnx's field names.

        ``initializers`` maps names to TensorProtos. Without ``_spans`` (a model built in memory)
        they must hold their data; :meth:`open` passes data-less skeleton tensors plus where each
        one's data lies in the file.
        """
        self.path = Path(path)
        self.name = model_name(self.path)
        self.proto = proto
        self._initializers = initializers
        self._spans = _spans
        self._stat = _stat
        self._abspath = self.path.absolute()
        self._onnx_proto: "onnx.ModelProto | None" = None

    # ----------------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Model":
        """Open ``path``; raise :class:`OnnxvisError` when it is not a readable ONNX model.

        Reads only the model's structure: weight bytes stay on disk until :meth:`tensor` asks.
        """
        path = Path(path)
        if not path.exists():
            raise OnnxvisError(f"model file not found: {path}; check the path")
        if path.is_dir():
            raise OnnxvisError(f"{path} is a directory; give the path of a .onnx file")
        if not path.is_file():
            raise OnnxvisError(f"{path} is not a regular file; give the path of a .onnx file")
        try:
            scan, stat = _protoscan.scan_file(path)
        except _protoscan.WireFormatError as exc:
            if str(exc) == "the file is empty":
                raise OnnxvisError(f"{path} is empty (0 bytes); export or download the model again") from None
            raise _not_an_onnx_model(path, f"malformed protobuf: {exc}") from None
        except OSError as exc:
            raise OnnxvisError(
                f"cannot read {path}: {exc.strerror or exc}; check that the file exists and is readable"
            ) from None
        bad_text = None
        try:
            proto = _pb.parse_model(scan.skeleton)
        except _pb.NotUtf8 as exc:
            # onnx.proto is proto2, whose parser lets such bytes through; every name, op type or
            # producer would then reach the rest of onnxvis as bytes instead of str
            bad_text, proto = "model" + str(exc)[len("ModelProto"):], None
        except _pb.WireFormatError as exc:
            raise _not_an_onnx_model(path, f"malformed protobuf: {exc}") from None
        if bad_text is not None:
            raise OnnxvisError(
                f"{path} is damaged: its field {bad_text!r} is not UTF-8 text, as ONNX requires; "
                "export or download the model again"
            )
        assert proto is not None
        if not proto.HasField("graph"):
            raise _not_an_onnx_model(path, "it holds no graph")
        if not proto.graph.node:
            raise _not_an_onnx_model(
                path, "", OnnxvisError(f"{path} has an empty ONNX graph (no nodes); check that it is the whole model")
            )
        inits = list(proto.graph.initializer)
        if len(inits) != len(scan.initializers):  # cannot happen for bytes protobuf accepted
            raise _not_an_onnx_model(path, "its initializers could not be located")
        tensors: dict[str, _pb.TensorProto] = {}
        spans: dict[str, _protoscan.TensorSpan] = {}
        for tensor, span in zip(inits, scan.initializers, strict=True):  # on duplicate names, the last one wins
            tensors[tensor.name] = tensor
            spans[tensor.name] = span
        return cls(path, proto, tensors, _spans=spans, _stat=stat)

    def close(self) -> None:
        """Nothing to release (no file stays open between reads); kept for ``with`` blocks."""

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, {len(self.graph.node)} nodes, {len(self._initializers)} initializers)"

    # ---------------------------------------------------------------------------------- structure

    @property
    def graph(self) -> "onnx.GraphProto":
        return self.proto.graph

    @property
    def metadata(self) -> dict[str, str]:
        return {p.key: p.value for p in self.proto.metadata_props}

    @property
    def opsets(self) -> dict[str, int]:
        return {(o.domain or "ai.onnx"): o.version for o in self.proto.opset_import}

    @property
    def producer(self) -> str:
        return self.proto.producer_name

    @property
    def producer_version(self) -> str:
        return self.proto.producer_version

    @property
    def ir_version(self) -> int:
        return self.proto.ir_version

    @property
    def initializer_names(self) -> list[str]:
        """Names of the top-level initializers, in file order (duplicates once)."""
        return list(self._initializers)

    def has_initializer(self, name: str) -> bool:
        return name in self._initializers

    def initializer_info(self, name: str) -> tuple[tuple[int, ...], int]:
        """(dims, data_type) of a top-level initializer, without reading its data."""
        t = self._get(name)
        return tuple(t.dims), t.data_type

    def raw_data_range(self, name: str) -> tuple[int, int] | None:
        """(offset, length) of a top-level initializer's ``raw_data`` bytes inside the model file.

        None when its data is not one ``raw_data`` field of the model file: external data, typed
        data fields, segments, or a model built in memory. This lets a reader that maps the file
        itself (onnxruntime, see :mod:`onnxvis.engine.runner`) take the bytes from where they lie; call
        :meth:`check_unchanged` first.
        """
        skeleton = self._get(name)
        span = self._spans.get(name) if self._spans is not None else None
        if span is None or span.raw is None or span.has_typed_data or skeleton.HasField("segment"):
            return None
        if _pb.uses_external_data(skeleton):
            return None
        return span.raw

    def check_unchanged(self) -> None:
        """Raise :class:`OnnxvisError` when the model file changed on disk since :meth:`open`."""
        if self._stat is None:
            return
        try:
            st = os.stat(self._abspath)
        except OSError as exc:
            raise OnnxvisError(
                f"cannot read {self.path}: {exc.strerror or exc}; check that the file is still there and readable"
            ) from None
        if st.st_size != self._stat.st_size or st.st_mtime_ns != self._stat.st_mtime_ns:
            raise OnnxvisError(f"{self.path} changed on disk after it was opened; open the model again")

    # ------------------------------------------------------------------------------------- data

    def _get(self, name: str) -> "onnx.TensorProto":
        try:
            return self._initializers[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a top-level initializer of {self.path}") from None

    def onnx_proto(self) -> "onnx.ModelProto":
        """The structure as onnx's own ModelProto, for onnx's functions (shape inference, the reference
        evaluator, version conversion): imports onnx. Top-level initializers are data-less, as in
        :attr:`proto`."""
        import onnx

        if isinstance(self.proto, onnx.ModelProto):
            return self.proto
        if self._onnx_proto is None:
            self._onnx_proto = onnx.ModelProto.FromString(self.proto.SerializeToString())
        return self._onnx_proto

    def initializer_proto(self, name: str) -> "_pb.TensorProto":
        """The full TensorProto of a top-level initializer, with its data loaded.

        It equals the initializer of ``onnx.load(path)`` (which loads external data into
        ``raw_data`` and sets ``data_location`` to DEFAULT).
        """
        skeleton = self._get(name)
        if self._spans is None:  # built in memory: the protos hold their data
            if not _pb.uses_external_data(skeleton):
                return skeleton
            full = _pb.TensorProto.FromString(skeleton.SerializeToString())
            full.raw_data = self._read_external(skeleton)
        elif _pb.uses_external_data(skeleton):
            full = _pb.TensorProto.FromString(skeleton.SerializeToString())
            full.raw_data = self._read_external(skeleton)
        else:
            offset, length = self._spans[name].record
            record = self._read_model_bytes(offset, length, name)
            try:
                return _pb.TensorProto.FromString(record.tobytes())  # type: ignore[return-value]
            except Exception as exc:
                raise self._damaged(name, f"{type(exc).__name__}: {exc}") from None
        full.data_location = _pb.DEFAULT
        full.external_data = []
        return full  # type: ignore[return-value]

    def tensor(self, name: str) -> np.ndarray:
        """Decode a top-level initializer to numpy, keeping its dtype (float16 stays float16).

        The result equals ``onnx.numpy_helper.to_array`` of the same initializer after a plain
        ``onnx.load`` (same dtype, same bytes), and is a writable array owning its memory.
        """
        skeleton = self._get(name)
        span = self._spans.get(name) if self._spans is not None else None
        np_dtype = _np_dtype_for_raw(skeleton.data_type)
        if np_dtype is not None and not skeleton.HasField("segment"):
            dims = tuple(skeleton.dims)
            if _pb.uses_external_data(skeleton):
                data = self._read_external(skeleton, as_array=True)
                return self._shape(data, np_dtype, dims, name)
            if span is not None and span.raw is not None:
                data = self._read_model_bytes(*span.raw, name)
                return self._shape(data, np_dtype, dims, name)
        return self._to_array(self.initializer_proto(name), name)

    def decode(self, tensor) -> np.ndarray:
        """Decode a TensorProto held in the graph (a Constant's value, a subgraph's initializer).

        External data is read relative to the model's folder with onnx's own location checks.
        """
        try:
            if _pb.uses_external_data(tensor):
                return _pb._onnx_to_array(tensor, base_dir=str(self.path.absolute().parent))
            return _pb.to_array(tensor)
        except Exception as exc:  # ValueError / checker errors for bad or unsafe external data, damaged bytes
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise OnnxvisError(f"tensor {tensor.name!r} of {self.path} cannot be decoded: {text[:300]}") from None

    # ------------------------------------------------------------------------------- internals

    def _damaged(self, name: str, detail: str) -> OnnxvisError:
        return OnnxvisError(
            f"tensor {name!r} of {self.path} cannot be decoded ({detail}); the file is damaged, "
            "export or download it again"
        )

    def _to_array(self, tensor, name: str) -> np.ndarray:
        try:
            return _pb.to_array(tensor)
        except Exception as exc:  # ValueError for bad sizes/segments, TypeError for UNDEFINED, ...
            raise self._damaged(name, f"{type(exc).__name__}: {exc}") from None

    def _shape(self, data: np.ndarray, np_dtype: np.dtype, dims: tuple[int, ...], name: str) -> np.ndarray:
        """View uint8 ``data`` as ``np_dtype`` with shape ``dims``, as to_array's frombuffer does."""
        count = math.prod(dims)
        if any(d < 0 for d in dims) or count * np_dtype.itemsize != data.size:
            raise self._damaged(
                name, f"{data.size} bytes of data, but shape {list(dims)} of {np_dtype} needs "
                f"{count * np_dtype.itemsize if count >= 0 else 'a non-negative count of'} bytes"
            )
        return data.view(np_dtype).reshape(dims)

    def _read_model_bytes(self, offset: int, length: int, name: str) -> np.ndarray:
        """Read ``length`` bytes at ``offset`` of the model file into a fresh uint8 array."""
        try:
            with open(self._abspath, "rb") as f:
                st = os.fstat(f.fileno())
                if self._stat is not None and (
                    st.st_size != self._stat.st_size or st.st_mtime_ns != self._stat.st_mtime_ns
                ):
                    raise OnnxvisError(
                        f"{self.path} changed on disk after it was opened; open the model again"
                    )
                return _read_exactly(f, offset, length, name, self.path)
        except OSError as exc:
            raise OnnxvisError(
                f"cannot read tensor {name!r} from {self.path}: {exc.strerror or exc}; "
                "check that the file is still there and readable"
            ) from None

    def _read_external(self, tensor: "onnx.TensorProto", as_array: bool = False):
        """Read the external data of ``tensor`` with onnx's location checks.

        Returns bytes, or a fresh uint8 array when ``as_array``.
        """
        name = tensor.name
        base_dir = str(self._abspath.parent)
        hint = "keep the model's data file beside it, inside the model's folder, and re-export it if it is damaged"
        try:
            info = _ExternalDataInfo(tensor)
        except (ValueError, TypeError) as exc:
            raise OnnxvisError(f"bad external data entry for tensor {name!r} of {self.path}: {exc}; {hint}") from None
        location = info.location
        fd = _open_external_data(base_dir, location, name, self.path, hint)
        try:
            with os.fdopen(fd, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                offset = info.offset or 0
                if offset > size:
                    raise OnnxvisError(
                        f"external data of tensor {name!r} starts at byte {offset}, past the end of "
                        f"{location!r} ({size} bytes); {hint}"
                    )
                length = size - offset if info.length is None else info.length
                if length > size - offset:
                    raise OnnxvisError(
                        f"external data of tensor {name!r} ({length} bytes from byte {offset}) runs past "
                        f"the end of {location!r} ({size} bytes); {hint}"
                    )
                data = _read_exactly(f, offset, length, name, location)
        except OSError as exc:
            raise OnnxvisError(
                f"cannot read external data {location!r} of tensor {name!r}: {exc.strerror or exc}; {hint}"
            ) from None
        return data if as_array else data.tobytes()


class _ExternalDataInfo:
    """A tensor's external data entry, read as ``onnx.external_data_helper.ExternalDataInfo`` does
    (the keys it allows; offset and length non-negative integers)."""

    _KEYS = frozenset({"location", "offset", "length", "checksum", "basepath"})

    def __init__(self, tensor) -> None:
        self.location = ""
        self.offset: int | None = None
        self.length: int | None = None
        found = {entry.key: entry.value for entry in tensor.external_data if entry.key in self._KEYS}
        self.location = found.get("location", "")
        for key in ("offset", "length"):
            if key in found:
                value = int(found[key])
                if value < 0:
                    raise ValueError(f"External data {key} must be non-negative, got {value} for tensor {tensor.name!r}")
                setattr(self, key, value)


def _read_exactly(f, offset: int, length: int, name: str, where) -> np.ndarray:
    out = np.empty(length, dtype=np.uint8)
    f.seek(offset)
    view = out.data
    done = 0
    while done < length:
        n = f.readinto(view[done:])
        if not n:
            raise OnnxvisError(
                f"{where} ended before the data of tensor {name!r} ({length} bytes at byte {offset}); "
                "the file is damaged or was truncated, get it again"
            )
        done += n
    return out


def _open_external_data(base_dir: str, location: str, name: str, model_path: Path, hint: str) -> int:
    """Open an external data file read-only with onnx's own safety checks; return an fd.

    onnx refuses an empty or absolute location, one that escapes ``base_dir`` (``..``), a symbolic
    link, and anything that is not a regular file. onnx >= 1.20 opens the file itself (no race
    between check and open); older versions resolve the path, which is then opened without
    following symlinks.
    """
    import onnx.onnx_cpp2py_export.checker as c_checker

    what = f"external data {location!r} of tensor {name!r} of {model_path}"
    # Our own precheck first, for a clear message (onnx checks it again below).
    if not location:
        raise OnnxvisError(f"{what} has no location; {hint}")
    if os.path.isabs(location) or location.startswith(("/", "\\")):
        raise OnnxvisError(f"{what} is an absolute path, which onnx refuses; {hint}")
    full = os.path.join(base_dir, location)
    try:
        if hasattr(c_checker, "_open_external_data"):
            return c_checker._open_external_data(base_dir, location, name, True)
        if hasattr(c_checker, "_resolve_external_data_location"):
            resolved = c_checker._resolve_external_data_location(base_dir, location, name)
        else:  # very old onnx: the same rules, checked here
            resolved = full
            real_base = os.path.realpath(base_dir)
            if os.path.commonpath([real_base, os.path.realpath(full)]) != real_base:
                raise ValueError(f"{location!r} points outside the directory {base_dir!r}")
            if os.path.islink(full) or not os.path.isfile(full):
                raise ValueError(f"{full!r} is a symbolic link or not a regular file")
        return os.open(resolved, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except Exception as exc:  # onnx raises checker.ValidationError
        inside = os.path.normpath(full).startswith(os.path.join(os.path.normpath(base_dir), ""))
        if inside and not os.path.lexists(full):
            raise OnnxvisError(f"{what} is missing: no file {full}; {hint}") from None
        msg = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).rstrip(".")
        raise OnnxvisError(f"onnx refuses {what}: {msg}; {hint}") from None
