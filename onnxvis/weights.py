"""Follow a conv node's weight input back to its data, and decode it to float32 kernels.

ONNX files store weights in many ways: initializers (also listed as graph inputs before IR 4),
external data files, Constant nodes (PaddlePaddle), behind Identity / Cast / Reshape / Transpose
chains, quantized behind DequantizeLinear (per tensor, per channel on any axis, blocked; int8,
uint8, int16, int4, uint4, float8, float4), inside QLinearConv / ConvInteger, or computed by the
graph (ConstantOfShape, ...). :func:`trace_weight` says which, once, without decoding anything
big; the returned :class:`WeightSource` decodes on demand.

Rules that make the kernels trustworthy:

- Dequantization is ``(q - zero_point) * scale`` computed in float32 and rounded to the scale's
  type, as the ONNX spec and onnxruntime define it.
- A weight computed by the graph is folded with onnx's reference evaluator, only when every node
  that computes it reads stored data (no run-time input, no random op) and has a reference
  implementation. Otherwise the source says why it cannot be drawn.
- ConvTranspose weights (C_in, C_out/group, *k) are regrouped to one kernel per output channel,
  (C_out, C_in/group, *k), like every other conv (:func:`kernel_weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    import onnx

    from onnxvis.layers import ConvLayer
    from onnxvis.model import Model

__all__ = ["WeightSource", "GraphIndex", "trace_weight", "kernel_weights", "dequantize"]

# Ops that change only the arrangement of a stored weight, not its values.
_SHAPE_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"}
# Ops whose output is random: folding them would draw numbers the model never uses.
_RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
# A weight computed by more nodes than this is not folded.
_MAX_FOLD_NODES = 500
# The largest conv weight drawn: 64 Mi values (256 MiB as float32), far above any real conv layer
# (VGG16's largest is 2.4 Mi). A computed weight (ConstantOfShape of a stored shape) can claim any
# size in a few bytes of file; past this it is refused before it is made.
MAX_KERNEL_VALUES = 1 << 26
# Leaves smaller than this are given to shape inference with their data (shapes, axes, fill values).
_SMALL_LEAF_BYTES = 1 << 16


@dataclass(frozen=True)
class WeightSource:
    """Where a layer's weight comes from.

    Attributes:
        kind: "initializer", "constant", "quantized", "computed", "runtime input" or "unknown".
        detail: a short human description, e.g. "int8 per-channel (axis 0, 8 scales) via
            DequantizeLinear"; empty for a plain float initializer.
        shape: the weight's shape as the conv node receives it, when known without running the model.
        dtype: the stored data type's name (e.g. "float16", "int8", "int4").
        quantization: for quantized weights, how: e.g. "int8 per-channel (axis 0)"; else "".
    """

    kind: str
    detail: str
    shape: tuple[int, ...] | None
    dtype: str = ""
    quantization: str = ""
    _load: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def loadable(self) -> bool:
        """True when the weight's values can be had from the file (possibly by folding)."""
        return self._load is not None

    def describe(self) -> str:
        """One line for listings, e.g. ``initializer float16`` or ``quantized (int8 per-tensor ...)``."""
        head = self.kind
        if self.dtype and self.kind in ("initializer", "constant") and self.dtype not in self.detail:
            head = f"{head} {self.dtype}"
        if not self.detail:
            return head
        if self.detail.startswith(self.kind):
            return self.detail
        return f"{head} ({self.detail})"

    def load(self) -> np.ndarray:
        """Decode the weight to float32. Raises OnnxvisError when it cannot be had from the file."""
        if self._load is None:
            raise OnnxvisError(
                f"the weight is {_a(self.kind)} ({self.detail}); its values are not in the file, so its kernels cannot be drawn"
            )
        value = self._load()
        return np.ascontiguousarray(np.asarray(value).astype(np.float32, copy=False))

    def _with(self, **changes) -> "WeightSource":
        from dataclasses import replace

        return replace(self, **changes)


def _a(kind: str) -> str:
    return ("an " if kind[:1] in "aeiou" else "a ") + kind


class GraphIndex:
    """Name lookups in one graph, falling back to the enclosing graphs (ONNX's outer scope)."""

    def __init__(self, graph: "onnx.GraphProto", parent: "GraphIndex | None" = None, path: str = ""):
        self.graph = graph
        self.parent = parent
        self.path = path
        self.producers = {out: node for node in graph.node for out in node.output if out}
        self.position = {id(node): i for i, node in enumerate(graph.node)}
        self.initializers = {t.name: t for t in graph.initializer}
        self.inputs = {i.name for i in graph.input}
        self.depth = 0 if parent is None else parent.depth + 1
        self._consumers: dict[str, list["onnx.NodeProto"]] | None = None
        self.traced: dict[str, object] = {}  # node outputs already traced (see _trace_tensor)

    @property
    def is_main(self) -> bool:
        return self.parent is None

    def consumers(self, name: str) -> list["onnx.NodeProto"]:
        """Nodes of this graph that read ``name``."""
        if self._consumers is None:
            self._consumers = {}
            for node in self.graph.node:
                for i in node.input:
                    if i:
                        self._consumers.setdefault(i, []).append(node)
        return self._consumers.get(name, [])

    def find(self, name: str) -> tuple["GraphIndex", str] | None:
        """The scope that defines ``name`` and how: "initializer", "node" or "input".

        Before IR 4 initializers are listed as graph inputs too; they count as initializers.
        """
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


# ----------------------------------------------------------------------------------- helpers


def _dtype_name(data_type: int) -> str:
    from onnx import TensorProto, helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).name
    except Exception:
        try:
            return TensorProto.DataType.Name(data_type).lower()
        except ValueError:
            return f"type {data_type}"


def _np_dtype(data_type: int) -> np.dtype:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(data_type))


def _decode(model: "Model", tensor: "onnx.TensorProto") -> np.ndarray:
    """Decode a TensorProto held in the graph (Constant value, subgraph initializer).

    External data is read relative to the model's folder with onnx's own location checks.
    """
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(tensor, base_dir=str(model.path.absolute().parent))
    except Exception as exc:  # ValueError / checker errors for bad or unsafe external data, damaged bytes
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise OnnxvisError(f"tensor {tensor.name!r} of {model.path} cannot be decoded: {text[:300]}") from None


def _stored(model: "Model", scope: GraphIndex, name: str) -> Callable[[], np.ndarray]:
    """A loader for an initializer: lazy from the file in the main graph, decoded inline in subgraphs."""
    if scope.is_main and model.has_initializer(name):
        return lambda: model.tensor(name)
    tensor = scope.initializers[name]
    return lambda: _decode(model, tensor)


def _opsets(model: "Model") -> dict[str, int]:
    return {(o.domain if o.domain != "ai.onnx" else ""): o.version for o in model.proto.opset_import}


def _run_node(model: "Model", node: "onnx.NodeProto", values: list[np.ndarray | None]) -> np.ndarray:
    """Evaluate one node with onnx's reference implementation; returns its first output."""
    from onnx.reference import ReferenceEvaluator

    names = [name for name in node.input]
    feeds = {name: value for name, value in zip(names, values) if name and value is not None}
    try:
        evaluator = ReferenceEvaluator(node, opsets=_opsets(model))
        return np.asarray(evaluator.run(None, feeds)[0])
    except Exception as exc:  # the reference implementation raises anything on odd attributes or inputs
        raise OnnxvisError(
            f"the weight goes through a {node.op_type} node that cannot be evaluated ({type(exc).__name__}); "
            "the model is damaged, or uses it in a way onnxvis cannot follow"
        ) from None


def _attr(node: "onnx.NodeProto", name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape)


# ----------------------------------------------------------------------------------- tracing


def _trace_tensor(model: "Model", scope: GraphIndex, name: str, depth: int = 0) -> WeightSource:
    found = scope.find(name)
    if found is None:
        return WeightSource("unknown", f"tensor {name!r} is defined nowhere in the graph", None)
    if depth > 64:
        return WeightSource("unknown", f"the chain of nodes before {name!r} is too long to follow", None)
    owner, how = found
    if how == "initializer":
        tensor = owner.initializers[name]
        detail = ""
        from onnx import external_data_helper

        if external_data_helper.uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            detail = f"external data in {location}"
        if not owner.is_main:
            detail = ", ".join(filter(None, [detail, f"in subgraph {owner.path}"]))
        return WeightSource("initializer", detail, tuple(tensor.dims), _dtype_name(tensor.data_type), "", _stored(model, owner, name))
    if how == "input":
        where = "the model" if owner.is_main else f"subgraph {owner.path}"
        return WeightSource("runtime input", f"fed at run time as input {name!r} of {where}", None)
    # Each node output is traced once: a damaged file can make a node read its own output (a cycle),
    # or chain nodes that each read the one before twice (2^n paths to follow without this).
    cached = owner.traced.get(name)
    if cached is _TRACING:
        return WeightSource("unknown", f"tensor {name!r} depends on itself (a cycle in the graph)", None)
    if cached is not None:
        return cached  # type: ignore[return-value]
    owner.traced[name] = _TRACING
    try:
        result = _trace_produced(model, owner, name, depth)
    except BaseException:
        owner.traced.pop(name, None)
        raise
    owner.traced[name] = result
    return result


_TRACING = object()


def _trace_produced(model: "Model", owner: GraphIndex, name: str, depth: int) -> WeightSource:
    """_trace_tensor for a tensor that a node of ``owner`` produces."""
    node = owner.producers[name]
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return _trace_computed(model, owner, name)
    if op == "Constant":
        return _trace_constant(model, node)
    if op in ("Identity", "Cast", "CastLike") or op in _SHAPE_OPS:
        return _trace_pass(model, owner, node, depth)
    if op == "DequantizeLinear":
        return _trace_dequantize(model, owner, node, depth)
    return _trace_computed(model, owner, name)


def _trace_constant(model: "Model", node: "onnx.NodeProto") -> WeightSource:
    from onnx import helper, numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            tensor = attr.t
            return WeightSource("constant", "", tuple(tensor.dims), _dtype_name(tensor.data_type), "", lambda t=tensor: _decode(model, t))
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            value = np.array(helper.get_attribute_value(attr), dtype=np.float32 if "float" in attr.name else np.int64)
            return WeightSource("constant", "", tuple(value.shape), value.dtype.name, "", lambda v=value: v)
        if attr.name == "sparse_value":
            sparse = attr.sparse_tensor
            dims = tuple(sparse.dims)
            return WeightSource(
                "constant", "sparse Constant", dims, _dtype_name(sparse.values.data_type), "",
                lambda: _run_node(model, node, []),
            )
    return WeightSource("unknown", "a Constant node holding strings or nothing", None)


def _trace_pass(model: "Model", scope: GraphIndex, node: "onnx.NodeProto", depth: int) -> WeightSource:
    """Identity, Cast, CastLike and the pure reshaping ops: the stored weight, rearranged or cast."""
    if not node.input or not node.input[0]:  # a damaged file
        return WeightSource("unknown", f"a {node.op_type} node without its input", None)
    inner = _trace_tensor(model, scope, node.input[0], depth + 1)
    op = node.op_type
    extra = [_trace_tensor(model, scope, n, depth + 1) if n else None for n in node.input[1:]]
    if op == "Cast":
        to = _attr(node, "to")
        step = f"Cast to {_dtype_name(to)}" if to is not None else "Cast"
    else:
        step = op
    detail = ", ".join(filter(None, [inner.detail, f"via {step}"]))
    if not inner.loadable or any(e is not None and not e.loadable for e in extra):
        blocker = next((e for e in [inner, *extra] if e is not None and not e.loadable), inner)
        if blocker is inner:
            return inner._with(detail=detail, shape=None if op in _SHAPE_OPS else inner.shape, _load=None)
        return WeightSource(blocker.kind, f"{op} of the weight takes {blocker.detail}", None, inner.dtype)
    if op == "Identity":
        return inner._with(detail=detail)
    if op == "Cast":
        try:
            target = _np_dtype(_attr(node, "to"))
        except Exception:  # no "to", or not a type numpy has: a damaged file
            return WeightSource("unknown", f"a Cast to the invalid type {_attr(node, 'to')!r}", None, inner.dtype)
        return inner._with(detail=detail, _load=lambda: inner._load().astype(target))
    if op == "CastLike":
        like = extra[0]

        def load_castlike() -> np.ndarray:
            return inner._load().astype(like._load().dtype)

        return inner._with(detail=f"{inner.detail + ', ' if inner.detail else ''}via CastLike to {like.dtype}", _load=load_castlike)

    def load() -> np.ndarray:
        return _run_node(model, node, [inner._load(), *[e._load() if e is not None else None for e in extra]])

    shape = _shape_after(model, node, inner, extra)
    return inner._with(detail=detail, shape=shape, _load=load)


def _shape_after(model: "Model", node: "onnx.NodeProto", inner: WeightSource, extra: list) -> tuple[int, ...] | None:
    """The output shape of a reshaping node, without reading the weight's data."""
    if inner.shape is None:
        return None
    if node.op_type == "Transpose":
        perm = _attr(node, "perm")
        perm = list(perm) if perm is not None else list(range(len(inner.shape)))[::-1]
        return tuple(inner.shape[p] for p in perm)
    try:
        # np.empty does not touch its memory, and these ops return views of it.
        proxy = np.empty(inner.shape, dtype=np.uint8)
        return tuple(_run_node(model, node, [proxy, *[e._load() if e is not None else None for e in extra]]).shape)
    except Exception:
        return None


# ------------------------------------------------------------------------------ quantization


def dequantize(
    q: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None = None,
    axis: int = 1,
    block_size: int = 0,
    out_dtype: np.dtype | None = None,
) -> np.ndarray:
    """``(q - zero_point) * scale`` as ONNX's DequantizeLinear defines it, returned as float32.

    Args:
        q: quantized values of any type numpy and ml_dtypes can convert to float32 (int8, uint8,
            int16, int32, int4, uint4, float8 variants, float4).
        scale: a scalar (per tensor), a 1-D array along ``axis`` (per channel), or, with
            ``block_size``, an array shaped like ``q`` except ``ceil(q.shape[axis] / block_size)``
            along ``axis`` (blocked).
        zero_point: same shape as ``scale``, or None for 0.
        axis: the channel axis for per-channel and blocked scales (negative counts from the end).
        block_size: > 0 for blocked quantization.
        out_dtype: the output type of the node (the scale's type by default); the result is rounded
            to it, as the runtime does, before it is returned as float32.
    """
    q = np.asarray(q)
    scale = np.asarray(scale)
    values = q.astype(np.float32)
    zp = np.zeros((), np.float32) if zero_point is None else np.asarray(zero_point).astype(np.float32)
    s = scale.astype(np.float32)
    axis = axis + q.ndim if axis < 0 else axis
    if block_size and block_size > 0:
        if s.ndim != q.ndim:
            raise OnnxvisError(f"blocked dequantization needs a scale of rank {q.ndim}, got shape {s.shape}")
        s = np.repeat(s, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
        if zp.ndim:
            zp = np.repeat(zp, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
    elif s.size > 1 or s.ndim == 1:
        if s.ndim != 1 or s.size != q.shape[axis]:
            raise OnnxvisError(
                f"a per-channel scale of shape {s.shape} does not fit axis {axis} of a weight of shape {q.shape}"
            )
        shape = [1] * q.ndim
        shape[axis] = s.size
        s = s.reshape(shape)
        if zp.ndim:
            zp = zp.reshape(shape)
    try:
        result = (values - zp) * s
    except ValueError:  # a zero point whose shape fits neither the scale nor the weight
        raise OnnxvisError(
            f"the zero point of shape {np.shape(zero_point)} does not fit the weight {q.shape} and its scale "
            f"{scale.shape}; the file is damaged, export it again"
        ) from None
    target = np.dtype(out_dtype) if out_dtype is not None else scale.dtype
    if target != np.float32:
        result = result.astype(target).astype(np.float32)
    return result


def _scale_text(scale_shape: tuple[int, ...] | None, axis: int, block_size: int = 0) -> str:
    if block_size:
        return f"blocked (axis {axis}, block {block_size})"
    if scale_shape is None:
        return "scale computed"
    count = math.prod(scale_shape) if scale_shape else 1
    return "per-tensor" if count == 1 else f"per-channel (axis {axis}, {count} scales)"


def _trace_dequantize(model: "Model", scope: GraphIndex, node: "onnx.NodeProto", depth: int) -> WeightSource:
    if len(node.input) < 2 or not node.input[1]:  # a damaged file
        return WeightSource("unknown", "a DequantizeLinear without its scale input", None)
    stored = _trace_tensor(model, scope, node.input[0], depth + 1)
    scale_src = _trace_tensor(model, scope, node.input[1], depth + 1)
    zp_src = _trace_tensor(model, scope, node.input[2], depth + 1) if len(node.input) > 2 and node.input[2] else None
    axis = int(_attr(node, "axis", 1))
    rank = len(stored.shape) if stored.shape else None
    if rank is not None and axis < 0:
        axis += rank
    block_size = int(_attr(node, "block_size", 0) or 0)
    out_type = _attr(node, "output_dtype", 0)
    how = f"{stored.dtype or '?'} {_scale_text(scale_src.shape, axis, block_size)}"
    if stored.detail:
        how += f", {stored.detail}"
    detail = f"{how} via DequantizeLinear"
    parts = [stored, scale_src] + ([zp_src] if zp_src else [])
    blocker = next((p for p in parts if not p.loadable), None)
    if blocker is not None:
        return WeightSource("quantized", f"{detail}; {blocker.kind}: {blocker.detail}", stored.shape, stored.dtype, how)

    def load() -> np.ndarray:
        out_dtype = _np_dtype(out_type) if out_type else None
        return dequantize(stored._load(), scale_src._load(), zp_src._load() if zp_src else None, axis, block_size, out_dtype)

    return WeightSource("quantized", detail, stored.shape, stored.dtype, how, load)


def _trace_qlinear(model: "Model", scope: GraphIndex, node: "onnx.NodeProto") -> WeightSource:
    """QLinearConv: weight input 3, w_scale input 4 (scalar or one per output channel), w_zero_point input 5."""
    stored = _trace_tensor(model, scope, node.input[3])
    scale_src = _trace_tensor(model, scope, node.input[4]) if len(node.input) > 4 and node.input[4] else None
    zp_src = _trace_tensor(model, scope, node.input[5]) if len(node.input) > 5 and node.input[5] else None
    how = f"{stored.dtype or '?'} {_scale_text(scale_src.shape if scale_src else (), 0)}"
    detail = f"{how} in QLinearConv (w_scale, w_zero_point)"
    parts = [stored] + [p for p in (scale_src, zp_src) if p is not None]
    blocker = next((p for p in parts if not p.loadable), None)
    if blocker is not None or scale_src is None:
        why = f"{blocker.kind}: {blocker.detail}" if blocker else "no w_scale"
        return WeightSource("quantized", f"{detail}; {why}", stored.shape, stored.dtype, how)

    def load() -> np.ndarray:
        return dequantize(stored._load(), scale_src._load(), zp_src._load() if zp_src else None, 0)

    return WeightSource("quantized", detail, stored.shape, stored.dtype, how, load)


def _conv_integer_scale(model: "Model", scope: GraphIndex, node: "onnx.NodeProto") -> WeightSource | None:
    """The weight scale of a ConvInteger, found in onnxruntime's dynamic-quantization pattern.

    ``y = Cast(ConvInteger(x_q, w_q, x_zp, w_zp)) * Mul(x_scale, w_scale)``: x_scale is computed at
    run time by DynamicQuantizeLinear, w_scale is stored. Returns None when the pattern is absent.
    """
    out = node.output[0]
    consumers = scope.consumers(out)
    if len(consumers) == 1 and consumers[0].op_type == "Cast":
        out = consumers[0].output[0]
        consumers = scope.consumers(out)
    if len(consumers) != 1 or consumers[0].op_type != "Mul":
        return None
    mul = consumers[0]
    other = next((i for i in mul.input if i != out), None)
    found = scope.find(other) if other else None
    if found is None or found[1] != "node":
        return None
    product = found[0].producers[other]
    if product.op_type != "Mul":
        return None
    sources = [_trace_tensor(model, scope, i) for i in product.input]
    stored = [s for s in sources if s.loadable]
    if len(stored) != 1 or len(sources) != 2:
        return None
    return stored[0]


def _trace_conv_integer(model: "Model", scope: GraphIndex, node: "onnx.NodeProto") -> WeightSource:
    """ConvInteger: input 1 is the integer weight, input 3 its zero point; the scale, if any, is after the node."""
    stored = _trace_tensor(model, scope, node.input[1])
    zp_src = _trace_tensor(model, scope, node.input[3]) if len(node.input) > 3 and node.input[3] else None
    scale_src = _conv_integer_scale(model, scope, node)
    if scale_src is not None:
        how = f"{stored.dtype or '?'} {_scale_text(scale_src.shape, 0)}"
        detail = f"{how} in ConvInteger, w_scale from the Mul after it"
    else:
        how = f"{stored.dtype or '?'} without a scale"
        detail = f"{how} in ConvInteger; shown as integer steps (weight - w_zero_point)"
    parts = [stored] + ([zp_src] if zp_src else [])
    blocker = next((p for p in parts if not p.loadable), None)
    if blocker is not None:
        return WeightSource("quantized", f"{detail}; {blocker.kind}: {blocker.detail}", stored.shape, stored.dtype, how)

    def load() -> np.ndarray:
        q = stored._load()
        zp = zp_src._load() if zp_src else None
        scale = scale_src._load() if scale_src is not None else np.ones((), np.float32)
        if zp is not None and zp.size == 1:
            zp = zp.reshape(())
        if scale.size == 1:
            scale = scale.reshape(())
        if zp is not None and zp.ndim and not scale.ndim:
            scale = np.full(zp.shape, scale, dtype=np.float32)
        if scale.ndim and zp is not None and not zp.ndim:
            zp = np.full(scale.shape, zp, dtype=np.float32)
        return dequantize(q, scale, zp, 0)

    return WeightSource("quantized", detail, stored.shape, stored.dtype, how, load)


# ----------------------------------------------------------------------------------- folding


def _ancestors(scope: GraphIndex, name: str):
    """What computes ``name``: (nodes in evaluation order, stored leaves, run-time inputs, blockers).

    Walks through enclosing scopes: a subgraph's weight may be computed from the outer graph.
    Leaves are (scope, name) of initializers.
    """
    nodes: dict[tuple[int, int], tuple[GraphIndex, "onnx.NodeProto"]] = {}
    leaves: dict[str, GraphIndex] = {}
    runtime: list[str] = []
    stack = [name]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if not tensor or tensor in seen:
            continue
        seen.add(tensor)
        found = scope.find(tensor)
        if found is None:
            runtime.append(tensor)
            continue
        owner, how = found
        if how == "initializer":
            leaves[tensor] = owner
        elif how == "input":
            runtime.append(tensor)
        else:
            node = owner.producers[tensor]
            nodes[(owner.depth, owner.position[id(node)])] = (owner, node)
            stack.extend(node.input)
    ordered = [nodes[k] for k in sorted(nodes)]
    return ordered, leaves, runtime


def _unfoldable(model: "Model", nodes) -> str | None:
    """Why these nodes cannot be folded by the reference evaluator, or None."""
    from onnx.reference.ops import load_op

    opsets = _opsets(model)
    for _, node in nodes:
        if node.op_type in _RANDOM_OPS:
            return f"{node.op_type} draws random values at run time"
        domain = node.domain if node.domain != "ai.onnx" else ""
        if domain not in ("", "ai.onnx.ml"):
            return f"{node.op_type} of domain {domain} has no reference implementation in onnx"
        try:
            load_op(domain, node.op_type, opsets.get(domain))
        except Exception:
            return f"{node.op_type} has no reference implementation in onnx"
        if any(a.type in (5, 10) for a in node.attribute):  # GRAPH, GRAPHS: If/Loop/Scan
            return f"{node.op_type} holds a subgraph"
    return None


def _fold_model(model: "Model", nodes, leaves: dict[str, GraphIndex], name: str, with_data: Callable[[str], bool]) -> "onnx.ModelProto":
    """A model computing ``name`` from the leaves: those for which ``with_data`` holds are
    initializers with their data, the others typed inputs."""
    from onnx import TensorProto, helper, numpy_helper

    inits = []
    inputs = []
    for leaf, owner in sorted(leaves.items()):
        tensor = owner.initializers[leaf]
        if with_data(leaf):
            if owner.is_main and model.has_initializer(leaf):
                inits.append(model.initializer_proto(leaf))
            else:
                inits.append(numpy_helper.from_array(_decode(model, tensor), leaf))
        else:
            inputs.append(helper.make_tensor_value_info(leaf, tensor.data_type, list(tensor.dims)))
    output = helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)
    graph = helper.make_graph([n for _, n in nodes], "fold", inputs, [output], inits)
    folded = helper.make_model(graph, opset_imports=list(model.proto.opset_import))
    folded.ir_version = max(model.proto.ir_version or 0, 4)
    return folded


def _leaf_bytes(owner: GraphIndex, leaf: str) -> int:
    tensor = owner.initializers[leaf]
    try:
        itemsize = _np_dtype(tensor.data_type).itemsize
    except Exception:
        itemsize = 8
    return math.prod(tensor.dims) * itemsize


def _infer_shape(model: "Model", nodes, leaves, name: str) -> tuple[int, ...] | None:
    """The folded weight's shape by onnx shape inference, reading only small leaves."""
    from onnx import shape_inference

    try:
        folded = _fold_model(model, nodes, leaves, name, lambda leaf: _leaf_bytes(leaves[leaf], leaf) <= _SMALL_LEAF_BYTES)
        inferred = shape_inference.infer_shapes(folded, strict_mode=False, data_prop=True)
    except Exception:
        return None
    for value in inferred.graph.output:
        if value.name == name and value.type.tensor_type.HasField("shape"):
            dims = value.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                return tuple(d.dim_value for d in dims)
    return None


def _evaluate(model: "Model", nodes, leaves, name: str) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    folded = _fold_model(model, nodes, leaves, name, lambda leaf: True)
    (value,) = ReferenceEvaluator(folded).run(None, {})
    return np.asarray(value)


def _trace_computed(model: "Model", scope: GraphIndex, name: str) -> WeightSource:
    nodes, leaves, runtime = _ancestors(scope, name)
    ops = sorted({str(n.op_type) for _, n in nodes})  # str(): a damaged file can hold a non-UTF-8 (bytes) op type
    what = f"computed by {', '.join(ops)}" if ops else "computed"
    if runtime:
        return WeightSource("runtime input", f"{what} from the run-time input {sorted(runtime)[0]!r}", None)
    if len(nodes) > _MAX_FOLD_NODES:
        return WeightSource("computed", f"{what}: {len(nodes)} nodes, too many to fold", None)
    why = _unfoldable(model, nodes)
    if why is not None:
        return WeightSource("computed", f"{what}; cannot be folded: {why}", None)
    shape = _infer_shape(model, nodes, leaves, name)

    def load() -> np.ndarray:
        try:
            return _evaluate(model, nodes, leaves, name)
        except OnnxvisError:
            raise
        except Exception as exc:  # the reference evaluator raises many types
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise OnnxvisError(f"the weight {name!r} is {what}, and folding it failed: {text}") from None

    if shape is None and sum(_leaf_bytes(o, leaf) for leaf, o in leaves.items()) <= (64 << 20):
        # Shape inference could not tell: fold now (cheap) so that the listing is exact.
        try:
            value = load()
        except OnnxvisError as exc:
            return WeightSource("computed", f"{what}; cannot be folded: {exc}", None)
        return WeightSource("computed", f"{what}, folded", tuple(value.shape), value.dtype.name, "", lambda: value)
    return WeightSource("computed", f"{what}, folded", shape, "", "", load)


# ------------------------------------------------------------------------------------ public


def trace_weight(model: "Model", scope: GraphIndex, node: "onnx.NodeProto") -> WeightSource:
    """Find where the weight of conv-like ``node`` comes from. Decodes nothing big."""
    if node.op_type == "QLinearConv":
        return _trace_qlinear(model, scope, node)
    if node.op_type == "ConvInteger":
        return _trace_conv_integer(model, scope, node)
    return _trace_tensor(model, scope, node.input[1])


def _check_kernel_size(layer: "ConvLayer", shape: tuple[int, ...] | None) -> None:
    if shape is not None and math.prod(shape) > MAX_KERNEL_VALUES:
        raise OnnxvisError(
            f"layer {layer.index} ({layer.name}) has a weight of shape {_fmt_shape(shape)}, {math.prod(shape):,} values, "
            f"more than the {MAX_KERNEL_VALUES:,} onnxvis draws; choose other layers with --layers"
        )


def kernel_weights(layer: "ConvLayer") -> np.ndarray:
    """The layer's kernels as float32, one per output channel: (O, I/group, *kernel).

    ConvTranspose stores (I, O/group, *kernel); it is regrouped so that every layer is drawn per
    output channel: kernel ``o`` of group ``g = o // (O/group)`` holds, for each input channel
    ``i`` of that group, the stored slice ``W[g * I/group + i, o % (O/group)]``.

    Raises:
        OnnxvisError: the weight is not stored in the file (a runtime input, or a computation that
            cannot be evaluated), or it does not have a conv weight's shape.
    """
    if layer.source is None:
        raise OnnxvisError(f"layer {layer.index} ({layer.name}) has no traced weight")
    _check_kernel_size(layer, layer.weight_shape)
    try:
        weight = layer.source.load()
    except OnnxvisError as exc:
        raise OnnxvisError(f"layer {layer.index} ({layer.name}): {exc}") from None
    _check_kernel_size(layer, weight.shape)
    if not 3 <= weight.ndim <= 5:
        raise OnnxvisError(
            f"layer {layer.index} ({layer.name}) has a weight of shape {weight.shape}; a conv weight has 3 to 5 "
            "dimensions (1-D to 3-D kernels), check the model"
        )
    if weight.size == 0:
        raise OnnxvisError(
            f"layer {layer.index} ({layer.name}) has an empty weight of shape {weight.shape}; the file is damaged, export it again"
        )
    if layer.op_type == "ConvTranspose":
        group = layer.group
        c_in, o_per_group = weight.shape[:2]
        kernel = weight.shape[2:]
        if group < 1 or c_in % group:
            raise OnnxvisError(
                f"layer {layer.index} ({layer.name}): ConvTranspose weight {_fmt_shape(weight.shape)} has {c_in} input "
                f"channels, not divisible by group {group}"
            )
        # (group, I/g, O/g, *k) -> (group, O/g, I/g, *k) -> (O, I/g, *k)
        weight = (
            weight.reshape(group, c_in // group, o_per_group, *kernel)
            .swapaxes(1, 2)
            .reshape(group * o_per_group, c_in // group, *kernel)
        )
    return np.ascontiguousarray(weight)
