"""Follow a conv node's weight input back to its data, and decode it to float32 kernels.

ONNX files store weights in many ways: initializers (also listed as graph inputs before IR 4),
Constant nodes (PaddlePaddle), behind Identity / Cast / Reshape chains, quantized behind
DequantizeLinear, inside QLinearConv / ConvInteger, or computed by the graph (ConstantOfShape).
:func:`trace_weight` says which, once, without decoding anything big; the returned
:class:`WeightSource` decodes on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    import onnx

    from onnxvis.layers import ConvLayer
    from onnxvis.model import Model

# Ops that pass a stored weight through unchanged in value (Cast changes only the dtype).
_PASS_THROUGH = {"Identity", "Cast", "CastLike"}
# Ops the folding evaluator may run to compute a weight from stored data.
_MAX_FOLD_NODES = 200


@dataclass(frozen=True)
class WeightSource:
    """Where a layer's weight comes from.

    Attributes:
        kind: "initializer", "constant", "quantized", "computed", "runtime input" or "unknown".
        detail: a short human description, e.g. "int8 per-channel (axis 0) via DequantizeLinear".
        shape: the weight's shape, when known without running the model.
        dtype: the stored data type's name (e.g. "float16", "int8").
    """

    kind: str
    detail: str
    shape: tuple[int, ...] | None
    dtype: str = ""
    _load: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def loadable(self) -> bool:
        return self._load is not None

    def describe(self) -> str:
        text = self.kind if not self.detail else f"{self.kind} ({self.detail})"
        return text

    def load(self) -> np.ndarray:
        """Decode the weight to float32. Raises OnnxvisError when it cannot be had from the file."""
        if self._load is None:
            raise OnnxvisError(f"the weight is a {self.kind} ({self.detail}); it is not stored in the file, so its kernels cannot be drawn")
        return np.ascontiguousarray(self._load(), dtype=np.float32)


class GraphIndex:
    """Name lookups in one graph, falling back to the enclosing graphs (ONNX's outer scope)."""

    def __init__(self, graph: "onnx.GraphProto", parent: "GraphIndex | None" = None):
        self.graph = graph
        self.parent = parent
        self.producers = {out: node for node in graph.node for out in node.output if out}
        self.initializers = {t.name: t for t in graph.initializer}
        self.inputs = {i.name for i in graph.input}

    @property
    def is_main(self) -> bool:
        return self.parent is None

    def find(self, name: str) -> tuple["GraphIndex", str] | None:
        """The scope that defines ``name`` and how: "initializer", "node" or "input"."""
        scope: GraphIndex | None = self
        while scope is not None:
            if name in scope.initializers:
                return scope, "initializer"
            if name in scope.producers:
                return scope, "node"
            if name in scope.inputs:
                return scope, "input"
            scope = scope.parent
        return None


def _dtype_name(data_type: int) -> str:
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(data_type).name
    except Exception:
        from onnx import TensorProto

        return TensorProto.DataType.Name(data_type).lower()


def _stored(model: "Model", scope: GraphIndex, name: str) -> Callable[[], np.ndarray]:
    """A loader for an initializer: lazy from the file in the main graph, inline in subgraphs."""
    if scope.is_main:
        return lambda: model.tensor(name)
    tensor = scope.initializers[name]

    def load() -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor)

    return load


def _constant_value(node: "onnx.NodeProto") -> "onnx.TensorProto | None":
    from onnx import helper, numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            return attr.t
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            value = np.array(helper.get_attribute_value(attr), dtype=np.float32 if "float" in attr.name else np.int64)
            return numpy_helper.from_array(value)
    return None


def _trace_tensor(model: "Model", scope: GraphIndex, name: str, depth: int = 0) -> WeightSource:
    found = scope.find(name)
    if found is None or depth > 50:
        return WeightSource("unknown", f"tensor {name!r} is defined nowhere in the graph", None)
    owner, how = found
    if how == "initializer":
        tensor = owner.initializers[name]
        return WeightSource("initializer", "", tuple(tensor.dims), _dtype_name(tensor.data_type), _stored(model, owner, name))
    if how == "input":
        return WeightSource("runtime input", f"fed at run time as graph input {name!r}", None)
    node = owner.producers[name]
    if node.op_type == "Constant":
        value = _constant_value(node)
        if value is None:
            return WeightSource("unknown", "a Constant node with a sparse or string value", None)

        def load_constant(value=value) -> np.ndarray:
            from onnx import numpy_helper

            return numpy_helper.to_array(value)

        return WeightSource("constant", "", tuple(value.dims), _dtype_name(value.data_type), load_constant)
    if node.op_type in _PASS_THROUGH and node.input:
        inner = _trace_tensor(model, scope, node.input[0], depth + 1)
        detail = f"via {node.op_type}" + (f", {inner.detail}" if inner.detail else "")
        return WeightSource(inner.kind, detail, inner.shape, inner.dtype, inner._load)
    if node.op_type == "DequantizeLinear":
        return _trace_dequantize(model, scope, node, depth)
    return _trace_computed(model, scope, name, node)


def _scale_axis_text(scale: np.ndarray, axis: int) -> str:
    return "per-tensor" if scale.size == 1 else f"per-channel (axis {axis})"


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int) -> np.ndarray:
    """(q - zero_point) * scale, per tensor or along ``axis``; computed in float32 like onnxruntime."""
    values = q.astype(np.float32)
    scale = scale.astype(np.float32)
    zp = np.zeros_like(scale) if zero_point is None else zero_point.astype(np.float32)
    if scale.size > 1:
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
        zp = zp.reshape(shape)
    return (values - zp) * scale


def _trace_dequantize(model: "Model", scope: GraphIndex, node: "onnx.NodeProto", depth: int) -> WeightSource:
    from onnx import helper

    stored = _trace_tensor(model, scope, node.input[0], depth + 1)
    scale_src = _trace_tensor(model, scope, node.input[1], depth + 1)
    zp_src = _trace_tensor(model, scope, node.input[2], depth + 1) if len(node.input) > 2 and node.input[2] else None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if not stored.loadable or not scale_src.loadable or (zp_src is not None and not zp_src.loadable):
        return WeightSource("quantized", "DequantizeLinear of data not stored in the file", stored.shape, stored.dtype)
    axis = int(attrs.get("axis", 1))
    rank = len(stored.shape) if stored.shape else 4
    axis = axis + rank if axis < 0 else axis
    if attrs.get("block_size"):
        return _trace_computed(model, scope, node.output[0], node, kind="quantized", detail=f"{stored.dtype} blocked (block {attrs['block_size']}) via DequantizeLinear")
    if stored.dtype not in ("int8", "uint8", "int16", "uint16", "int32"):
        # int4 / float8 have their own rounding rules; let onnx's reference implementation decode them.
        return _trace_computed(model, scope, node.output[0], node, kind="quantized", detail=f"{stored.dtype} via DequantizeLinear")
    scale = scale_src._load()
    detail = f"{stored.dtype} {_scale_axis_text(scale, axis)} via DequantizeLinear"

    def load() -> np.ndarray:
        return _dequantize(stored._load(), scale, zp_src._load() if zp_src else None, axis)

    return WeightSource("quantized", detail, stored.shape, stored.dtype, load)


def _trace_qlinear(model: "Model", scope: GraphIndex, node: "onnx.NodeProto") -> WeightSource:
    stored = _trace_tensor(model, scope, node.input[3])
    scale_src = _trace_tensor(model, scope, node.input[4])
    zp_src = _trace_tensor(model, scope, node.input[5]) if len(node.input) > 5 and node.input[5] else None
    if not (stored.loadable and scale_src.loadable and (zp_src is None or zp_src.loadable)):
        return WeightSource("quantized", "QLinearConv weight not stored in the file", stored.shape, stored.dtype)
    scale = scale_src._load()
    detail = f"{stored.dtype} {_scale_axis_text(scale, 0)} QLinearConv (w_scale, w_zero_point)"

    def load() -> np.ndarray:
        return _dequantize(stored._load(), scale, zp_src._load() if zp_src else None, 0)

    return WeightSource("quantized", detail, stored.shape, stored.dtype, load)


def _trace_conv_integer(model: "Model", scope: GraphIndex, node: "onnx.NodeProto") -> WeightSource:
    stored = _trace_tensor(model, scope, node.input[1])
    zp_src = _trace_tensor(model, scope, node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if not stored.loadable or (zp_src is not None and not zp_src.loadable):
        return WeightSource("quantized", "ConvInteger weight not stored in the file", stored.shape, stored.dtype)
    detail = f"{stored.dtype} ConvInteger (weight minus w_zero_point; ConvInteger has no scale)"

    def load() -> np.ndarray:
        zp = zp_src._load() if zp_src else None
        return _dequantize(stored._load(), np.ones(1 if zp is None else zp.size, np.float32), zp, 0)

    return WeightSource("quantized", detail, stored.shape, stored.dtype, load)


def _ancestors(scope: GraphIndex, name: str) -> tuple[list["onnx.NodeProto"], set[str], set[str]]:
    """Nodes of this scope that compute ``name``, with the stored leaves and runtime inputs they need."""
    nodes: dict[int, "onnx.NodeProto"] = {}
    leaves: set[str] = set()
    runtime: set[str] = set()
    stack = [name]
    seen: set[str] = set()
    order = {id(n): i for i, n in enumerate(scope.graph.node)}
    while stack:
        tensor = stack.pop()
        if tensor in seen or not tensor:
            continue
        seen.add(tensor)
        found = scope.find(tensor)
        if found is None:
            runtime.add(tensor)
            continue
        owner, how = found
        if how == "initializer":
            leaves.add(tensor)
        elif how == "input" or owner is not scope:
            runtime.add(tensor)
        else:
            node = owner.producers[tensor]
            nodes[order[id(node)]] = node
            stack.extend(node.input)
    return [nodes[i] for i in sorted(nodes)], leaves, runtime


def _trace_computed(
    model: "Model",
    scope: GraphIndex,
    name: str,
    node: "onnx.NodeProto",
    kind: str = "computed",
    detail: str | None = None,
) -> WeightSource:
    nodes, leaves, runtime = _ancestors(scope, name)
    ops = sorted({n.op_type for n in nodes})
    detail = detail or f"computed by {', '.join(ops)}"
    if runtime:
        return WeightSource("runtime input", f"{detail} from run-time input {sorted(runtime)[0]!r}", None)
    if len(nodes) > _MAX_FOLD_NODES:
        return WeightSource(kind, f"{detail} ({len(nodes)} nodes; too many to fold)", None)
    try:
        value = _fold(model, scope, nodes, leaves, name)
    except Exception as exc:  # the reference evaluator raises many types for ops it lacks
        return WeightSource(kind, f"{detail}; cannot be evaluated without running the model ({type(exc).__name__})", None)
    return WeightSource(kind, detail, tuple(value.shape), value.dtype.name, lambda: value)


def _fold(model: "Model", scope: GraphIndex, nodes: list, leaves: set[str], name: str) -> np.ndarray:
    """Evaluate the constant subgraph that produces ``name`` with onnx's reference evaluator."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = []
    for leaf in sorted(leaves):
        owner, _ = scope.find(leaf)
        inits.append(model.initializer_proto(leaf) if owner.is_main else owner.initializers[leaf])
    graph = helper.make_graph(nodes, "fold", [], [helper.make_value_info(name, helper.TypeProto())], inits)
    folded = helper.make_model(graph, opset_imports=list(model.proto.opset_import), ir_version=model.proto.ir_version or 8)
    (value,) = ReferenceEvaluator(folded).run(None, {})
    if isinstance(value, np.ndarray):
        return value
    return numpy_helper.to_array(value)


def trace_weight(model: "Model", scope: GraphIndex, node: "onnx.NodeProto") -> WeightSource:
    """Find where the weight of conv-like ``node`` comes from. Decodes nothing big."""
    if node.op_type == "QLinearConv":
        return _trace_qlinear(model, scope, node)
    if node.op_type == "ConvInteger":
        return _trace_conv_integer(model, scope, node)
    return _trace_tensor(model, scope, node.input[1])


def kernel_weights(layer: "ConvLayer") -> np.ndarray:
    """The layer's kernels as float32, one per output channel: (O, I/group, *kernel).

    ConvTranspose stores (I, O/group, *kernel); it is regrouped so that every layer is drawn per
    output channel.

    Raises:
        OnnxvisError: the weight is not stored in the file (a runtime input, or a computation that
            cannot be evaluated).
    """
    if layer.source is None:
        raise OnnxvisError(f"layer {layer.name!r} has no traced weight")
    try:
        weight = layer.source.load()
    except OnnxvisError as exc:
        raise OnnxvisError(f"layer {layer.index} ({layer.name}): {exc}") from None
    if weight.ndim < 3:
        raise OnnxvisError(f"layer {layer.index} ({layer.name}) has a weight of shape {weight.shape}; a conv weight has at least 3 dimensions")
    if layer.op_type == "ConvTranspose":
        group = layer.group
        c_in, o_per_group = weight.shape[:2]
        kernel = weight.shape[2:]
        # (group, I/g, O/g, *k) -> (group, O/g, I/g, *k) -> (O, I/g, *k)
        weight = (
            weight.reshape(group, c_in // group, o_per_group, *kernel)
            .swapaxes(1, 2)
            .reshape(group * o_per_group, c_in // group, *kernel)
        )
    return np.ascontiguousarray(weight)
