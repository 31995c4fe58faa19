"""Run onnxruntime on the smallest graph that yields the requested tensors.

This is the only module that imports onnxruntime. A feature map of conv1 needs conv1 and nothing
else, so the graph handed to onnxruntime holds only the ancestors of the requested tensors and
only the initializers they read. Every requested tensor is a graph output, so no optimisation can
fuse it away (a Conv followed by Relu stays a Conv output).

The big initializers do not travel inside that small model: each is a reference to the byte range
where its data lies in the model file, which onnxruntime maps itself (or, when the weights sit in an
external data file, a numpy array read once and lent to onnxruntime without a copy). So the cost of
a run follows the layers asked for, not the size of the file.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError, one_line
from onnxvis.model import proto as _pb
from onnxvis.model.graph import needed_inputs, required_nodes

if TYPE_CHECKING:
    import onnx

    from onnxvis.model.file import Model


# Initializers at least this big do not travel inside the serialized model (where protobuf would copy
# them three times and onnxruntime once more): onnxruntime maps them from the model file itself, or
# takes them as numpy arrays without copying.
_BIG_BYTES = 1 << 16
# Where the proto says an initializer handed over as an array lies. Nothing is ever read from there:
# the session options supply the array under the initializer's name before the model is loaded.
_IN_MEMORY = "onnxvis-in-memory-initializer"
# Item sizes of the TensorProto data types that onnxruntime's OrtValue.ortvalue_from_numpy takes as
# plain numpy dtypes: FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, BOOL, FLOAT16, DOUBLE, UINT32,
# UINT64. Other types (strings, bfloat16, float8, 4-bit) stay inside the proto unless read from the file.
_ARRAY_ITEM_SIZES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8}
# onnxruntime >= 1.21: the folder that external data locations are relative to, for a model given as bytes.
_DATA_FOLDER_KEY = "session.model_external_initializers_file_folder_path"


def minimal_model_bytes(
    model: "Model",
    targets: list[str],
    arrays: dict[str, np.ndarray] | None = None,
    from_file: bool = False,
    given: Mapping[str, np.ndarray] | None = None,
) -> bytes:
    """A serialized model whose outputs are ``targets``, holding only the nodes and initializers they need.

    Written without onnx: the nodes, value infos, opsets and functions are the file's own bytes; only
    the graph's lists are new. By default every needed initializer holds its data (its record in the
    file, byte for byte), so the result is a complete model. Two options keep the big ones (64 KiB and
    more) out of it, for :func:`run_tensors`:

    Args:
        model: the opened model.
        targets: tensor names of the main graph.
        arrays: when a dict is given, a big initializer of a plain numeric type becomes a data-less
            TensorProto marked as external, and its array (read once from the file) is put in
            ``arrays`` under its name, for ``SessionOptions.add_external_initializers``.
        from_file: a big initializer stored as ``raw_data`` in the model file becomes an external
            data reference to that very file (location: its name; offset and length of the bytes),
            so that onnxruntime maps the bytes itself; the session needs :data:`_DATA_FOLDER_KEY`
            set to the file's folder (see :func:`session_options`). Takes precedence over ``arrays``.
        given: tensors fed from outside, by name, with an example array (for its dtype and its
            shape after the batch axis): they become graph inputs, and the nodes that would
            compute them are left out. This is how a run starts in the middle of the graph.
    """
    graph = model.graph
    cut = dict(given or {})
    nodes, read = required_nodes(graph, targets, cut)
    real_file = os.path.realpath(model.path) if from_file else ""
    initializers: list[bytes] = []
    init_names: set[str] = set()
    external = False
    for stub in graph.initializer:
        if stub.name not in read or stub.name in init_names:
            continue
        init_names.add(stub.name)
        where = model.raw_data_range(stub.name) if from_file and _is_big(stub) else None
        if where is not None:
            tensor = _external_stub(stub, os.path.basename(real_file), *where)
            external = True
        elif arrays is not None and stub.data_type in _ARRAY_ITEM_SIZES and _is_big(stub) and not stub.HasField("segment"):
            arrays[stub.name] = np.ascontiguousarray(model.tensor(stub.name))
            tensor = _external_stub(stub, _IN_MEMORY)
            external = True
        else:
            tensor = model.initializer_proto(stub.name)
            external = external or _pb.uses_external_data(tensor)
        initializers.append(tensor.SerializeToString())
    inputs = [i.SerializeToString() for i in graph.input if i.name in read and i.name not in init_names and i.name not in cut]
    for name, example in cut.items():  # a cut tensor becomes an input of any batch size
        example = np.asarray(example)
        inputs.append(_pb.value_info(name, _pb.tensor_dtype_of(example.dtype), ["batch", *example.shape[1:]]).SerializeToString())
    known = {v.name: v for v in list(graph.value_info) + list(graph.output)}
    outputs = [(known[t] if t in known else _pb.value_info(t)).SerializeToString() for t in targets]
    named = [n.name for n in nodes if n.name]
    renamed = len(set(named)) < len(named)  # ONNX allows equal node names; onnxruntime refuses them
    body = bytearray()
    for i, node in enumerate(nodes):
        data = node.SerializeToString()
        if renamed and node.name:  # a later name field wins (protobuf): the node's own bytes stay
            data += _pb.encode_field(3, f"{node.name}#{i}".encode())
        body += _pb.encode_field(1, data)
    body += _pb.encode_field(2, (graph.name or "onnxvis").encode())
    for data in initializers:
        body += _pb.encode_field(5, data)
    for data in inputs:
        body += _pb.encode_field(11, data)
    for data in outputs:
        body += _pb.encode_field(12, data)
    wanted = set(targets)
    for v in graph.value_info:
        if v.name in read and v.name not in wanted and v.name not in cut:
            body += _pb.encode_field(13, v.SerializeToString())
    proto = model.proto
    # External data needs IR version 4 or later (and the initializers are not graph inputs here).
    out = bytearray(_pb.encode_varint(1 << 3) + _pb.encode_varint(max(proto.ir_version, 4) if external else proto.ir_version))
    out += _pb.encode_field(7, bytes(body))
    for opset in proto.opset_import:
        out += _pb.encode_field(8, opset.SerializeToString())
    for function in proto.functions:
        out += _pb.encode_field(25, function.SerializeToString())
    return bytes(out)


def minimal_model(
    model: "Model",
    targets: list[str],
    arrays: dict[str, np.ndarray] | None = None,
    from_file: bool = False,
    given: Mapping[str, np.ndarray] | None = None,
) -> "onnx.ModelProto":
    """:func:`minimal_model_bytes` as onnx's ModelProto, for code that changes the graph with onnx's
    functions (the gradient engine). Imports onnx."""
    import onnx

    return onnx.ModelProto.FromString(minimal_model_bytes(model, targets, arrays, from_file, given))


def array_initializer(name: str, array: np.ndarray, arrays: dict[str, np.ndarray] | None) -> "onnx.TensorProto":
    """An initializer holding ``array``: for a big array of a plain numeric type, a data-less stub whose
    data is handed to onnxruntime from ``arrays`` (as :func:`minimal_model` does); else the data itself."""
    from onnx import helper, numpy_helper

    array = np.ascontiguousarray(array)
    elem = helper.np_dtype_to_tensor_dtype(array.dtype)
    if arrays is not None and elem in _ARRAY_ITEM_SIZES and array.nbytes >= _BIG_BYTES:
        arrays[name] = array
        from onnx import TensorProto

        stub = _external_stub(TensorProto(name=name, dims=array.shape, data_type=elem), _IN_MEMORY)
        return TensorProto.FromString(stub.SerializeToString())
    return numpy_helper.from_array(array, name)


def initializer_value(model: "Model", tensor: "onnx.TensorProto", arrays: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The data of an initializer of a model :func:`minimal_model` made: inline, handed over in
    ``arrays``, or a reference to the model file (read from there)."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_location != TensorProto.EXTERNAL:
        return numpy_helper.to_array(tensor)
    if arrays is not None and tensor.name in arrays:
        return arrays[tensor.name]
    return model.tensor(tensor.name)


def _is_big(stub: "onnx.TensorProto") -> bool:
    return math.prod(stub.dims) * _ARRAY_ITEM_SIZES.get(stub.data_type, 1) >= _BIG_BYTES


def _external_stub(stub, location: str, offset: int | None = None, length: int | None = None) -> "_pb.TensorProto":
    """A data-less copy of initializer ``stub`` whose data is external, at ``location``."""
    entries = [("location", location)]
    if offset is not None:
        entries += [("offset", str(offset)), ("length", str(length))]
    return _pb.TensorProto(
        dims=list(stub.dims), data_type=stub.data_type, name=stub.name, data_location=_pb.EXTERNAL,
        external_data=[_pb.StringStringEntryProto(key=k, value=v) for k, v in entries],
    )


def session_options(data_folder: str | None = None, threads: int | None = None, many_runs: bool = False):
    """onnxruntime session options.

    Args:
        data_folder: the folder that external data locations are relative to (the model's, when
            :func:`minimal_model` was asked for ``from_file``).
        threads: intra-op threads; None lets onnxruntime choose (one per core).
        many_runs: the session will run many times (the Inspector's): pay for the memory arena, memory
            patterns and all of onnxruntime's optimisations, which pay off from the second run.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One run: basic optimisations only (constant folding, eliminations; the higher levels' layout
    # transforms and fusions cost more time than they save on a single run, and the requested
    # tensors are graph outputs, which no fusion removes), and no memory arena or memory-pattern
    # planning (they pay off from the second run). Many runs: every optimisation ("all"). Its layout
    # transforms make a result depend, in the last bits, on how many images share a batch; the
    # answers that batch differently (the local and Ray examples engines) agree by the top-K
    # contract instead of bit for bit (onnxvis.analysis.examples.topk).
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if many_runs else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    options.enable_cpu_mem_arena = many_runs
    options.enable_mem_pattern = many_runs
    if threads is not None:
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
    # Fatal only: onnxruntime's own error lines would go to stderr beside the one-line
    # OnnxvisError that run_tensors raises for the same failure. Its default logger (used by the
    # allocator, e.g. for a tensor whose size overflows) is set too.
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)
    # Threads that finish their share go to sleep instead of spinning: on a busy machine spinning
    # burns CPU time that the process's other work (or other processes) needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if data_folder is not None:
        options.add_session_config_entry(_DATA_FOLDER_KEY, data_folder)
    return options


class _BuildFailed(Exception):
    """An exception of a Session's ``build`` function, carried past the fallback that retries onnxruntime."""


class Session:
    """One onnxruntime session over the part of the graph between some fed tensors and ``targets``.

    Opened once and run many times: this is what the Inspector keeps per set of requested tensors.

    Args:
        model: the opened model.
        targets: tensor names of the main graph to compute.
        given: tensors fed from the middle of the graph, with an example array each (see
            :func:`minimal_model`); graph inputs need no entry.
        threads: intra-op threads (None: onnxruntime's default, one per core).
        many_runs: tune the session for repeated runs (see :func:`session_options`).
        build: makes the graph to run instead of :func:`minimal_model`, from the same two choices
            (``arrays``, ``from_file``: see there); the session then computes that graph's outputs,
            whatever ``targets`` says. The gradient engine's prepared graphs come this way.

    Raises:
        OnnxvisError: onnxruntime cannot load that part of the model.
    """

    def __init__(
        self,
        model: "Model",
        targets: list[str],
        given: Mapping[str, np.ndarray] | None = None,
        threads: int | None = None,
        many_runs: bool = False,
        build: "Callable[[dict[str, np.ndarray], bool], onnx.ModelProto] | None" = None,
    ) -> None:
        self.model = model
        self.targets = list(dict.fromkeys(targets))
        self.given = dict(given or {})
        self._build = build
        try:
            try:
                self._open(from_file=True, threads=threads, many_runs=many_runs)
            except (OnnxvisError, _BuildFailed):
                raise
            except Exception:
                # An onnxruntime older than 1.21 (no data-folder option), or a file it will not map:
                # hand every weight over as an array instead.
                self._open(from_file=False, threads=threads, many_runs=many_runs)
        except OnnxvisError:
            raise
        except _BuildFailed as failed:  # a bug in the builder, not onnxruntime's refusal: shown as it is
            raise failed.args[0] from None
        except Exception as exc:
            raise OnnxvisError(
                f"onnxruntime cannot load the part of {model.path.name} that computes these tensors: {runtime_reason(exc)}"
            ) from None
        self.input_names = [i.name for i in self._session.get_inputs()]

    def _open(self, from_file: bool, threads: int | None, many_runs: bool) -> None:
        import onnxruntime as ort

        arrays: dict[str, np.ndarray] = {}
        if self._build is not None:
            try:
                small = self._build(arrays, from_file)
            except OnnxvisError:
                raise
            except Exception as exc:
                raise _BuildFailed(exc) from exc
            self.targets = [o.name for o in small.graph.output]
            data = small.SerializeToString()
            del small
        else:
            data = minimal_model_bytes(self.model, self.targets, arrays, from_file=from_file, given=self.given)
        folder = os.path.dirname(os.path.realpath(self.model.path)) if from_file else None
        options = session_options(folder, threads, many_runs)
        # The OrtValues wrap the arrays without copying; both must outlive the session.
        values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays.values()]
        if arrays:
            options.add_external_initializers(list(arrays), values)
        if from_file:
            self.model.check_unchanged()
        self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self._borrowed = (arrays, values)
        self.from_file = from_file  # whether onnxruntime maps the weights from the model file itself

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self._session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compute the targets; ``feeds`` may hold more arrays than this part of the graph reads.

        Raises:
            OnnxvisError: onnxruntime refuses the input (a wrong size, type or batch).
        """
        try:
            results = self._session.run(self.targets, {k: feeds[k] for k in self.input_names})
        except KeyError as exc:
            raise OnnxvisError(f"the model needs input {exc.args[0]!r} to compute these tensors; it cannot be fed from an image") from None
        except Exception as exc:
            reason = runtime_reason(exc) + run_advice(exc)
            raise OnnxvisError(f"onnxruntime cannot run {self.model.path.name} on this input: {reason}") from None
        return dict(zip(self.targets, results, strict=True))


def run_graph(
    proto: "onnx.ModelProto", arrays: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray], data_folder: str | None = None
) -> dict[str, np.ndarray]:
    """One run of a graph made from :func:`minimal_model` (and changed, e.g. by the gradient engine's
    shape probe), with its big initializers in ``arrays`` or in the model file (``data_folder``).

    Raises:
        OnnxvisError: onnxruntime refuses the graph or the input.
    """
    import onnxruntime as ort

    options = session_options(data_folder)
    values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in arrays.values()]
    if arrays:
        options.add_external_initializers(list(arrays), values)
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, {i.name: feeds[i.name] for i in session.get_inputs()})
    except Exception as exc:
        raise OnnxvisError(f"onnxruntime cannot run the probe of the graph's shapes: {runtime_reason(exc)}") from None
    return dict(zip(names, results, strict=True))


def run_tensors(model: "Model", feeds: Mapping[str, np.ndarray], targets: list[str]) -> dict[str, np.ndarray]:
    """Compute the named tensors of the main graph for the given inputs, in a one-off session.

    onnxruntime gets the smallest graph that computes them (:func:`minimal_model`); it maps the big
    weights from the model file itself, so they are neither copied nor all read.

    Args:
        model: the opened model.
        feeds: arrays for the graph inputs the targets depend on.
        targets: tensor names, e.g. the conv layers' ``output_name``.

    Returns:
        name -> array, in the order of ``targets``.

    Raises:
        OnnxvisError: an input is missing, or onnxruntime refuses the model or the input.
    """
    if not targets:
        return {}
    targets = list(dict.fromkeys(targets))
    missing = [i.name for i in needed_inputs(model, targets) if i.name not in feeds]
    if missing:
        raise OnnxvisError(f"the model needs input {missing[0]!r} to compute these feature maps; it cannot be fed from an image")
    return Session(model, targets).run(feeds)


def runtime_reason(exc: BaseException) -> str:
    """What onnxruntime said when a run or a load failed, in words: the node that stopped and why, without
    its source paths and C++ signatures, on one line and never cut mid-word.

    ``exc`` is onnxruntime's exception, or an :class:`OnnxvisError` raised while handling it (onnxruntime's
    is then its context). Every onnxruntime message that reaches the user goes through here.
    """
    raw = _raw_text(exc)
    found = re.search(r"running (\S+) node\. Name:'([^']*)' Status Message: (.*)", raw)
    status = found.group(3) if found else re.sub(r"^.*?\[ONNXRuntimeError\] : \d+ : \w+ : ", "", raw)
    status = re.sub(r"\S+\.(?:h|hpp|cc|cpp|c):\d+\s*", "", status)  # a source file and line
    status = re.sub(r"\S*::\S*\(.*?\)\s*", "", status)  # a C++ signature
    status = re.sub(r"^.*? was false\.\s*", "", status)  # the failed check's condition; its sentence follows
    words = _whole_words(status.strip().rstrip("."), 200)
    if found:
        return f"onnxruntime's {found.group(1)} node {one_line(found.group(2))!r} stops: {words}"
    return f"onnxruntime stops: {words}"


_INPUT_REFUSED = re.compile(r"invalid (?:dimensions|rank) for input|unexpected input data type", re.I)


def run_advice(exc: BaseException) -> str:
    """The advice after a refused run, as '; ...': the input's size and preprocessing when onnxruntime refused
    the fed input itself, else that the graph fails inside (a fixed Reshape, a shape the graph computes)."""
    raw = _raw_text(exc)
    if _INPUT_REFUSED.search(raw):
        return "; check the input size and preprocessing"
    return "; the graph fails inside on this input: try the model's own input size, or another layer or tensor"


def _raw_text(exc: BaseException) -> str:
    """onnxruntime's own text: the exception's, or its context's when onnxvis wrapped it."""
    if isinstance(exc, OnnxvisError) and exc.__context__ is not None:
        exc = exc.__context__
    return " ".join(str(exc).split()) or type(exc).__name__


def _whole_words(text: str, limit: int) -> str:
    text = one_line(text)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."
