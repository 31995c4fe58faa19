"""Follow a conv node's weight input back to its data.

ONNX files store weights in many ways: initializers (also listed as graph inputs before IR 4),
external data files, Constant nodes (PaddlePaddle), behind Identity / Cast / Reshape / Transpose
chains, quantized behind DequantizeLinear (per tensor, per channel on any axis, blocked; int8,
uint8, int16, int4, uint4, float8, float4), inside QLinearConv / ConvInteger, or computed by the
graph (ConstantOfShape, ...). :func:`trace_weight` says which, once, without decoding anything
big; the returned :class:`WeightSource` decodes on demand.

Rules that make the kernels trustworthy:

- Dequantization is ``(q - zero_point) * scale`` computed in float32 and rounded to the scale's
  type, as the ONNX spec and onnxruntime define it (:mod:`onnxvis.model.dequantize`).
- A weight computed by the graph is folded with onnx's reference evaluator, only when every node
  that computes it reads stored data (no run-time input, no random op) and has a reference
  implementation (:mod:`onnxvis.model.folding`). Otherwise the source says why it cannot be drawn.

Reshaping the decoded weight into kernels is :mod:`onnxvis.model.weights`' job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.model.dequantize import dequantize, scale_layout
from onnxvis.model.folding import (
    MAX_FOLD_NODES,
    ancestors,
    evaluate,
    infer_shape,
    leaf_bytes,
    run_node,
    unfoldable,
)
from onnxvis.model.graph import GraphIndex, dtype_name, np_dtype

if TYPE_CHECKING:
    import onnx

    from onnxvis.model.file import Model

__all__ = ["WeightSource", "trace_weight", "trace_tensor"]

# Ops that change only the arrangement of a stored weight, not its values.
_SHAPE_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"}


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
        return np.ascontiguousarray(np.asarray(self._raw()).astype(np.float32, copy=False))

    def _raw(self) -> np.ndarray:
        """The values in their stored type (the steps after it decide the type)."""
        if self._load is None:
            raise OnnxvisError(
                f"the weight is {_a(self.kind)} ({self.detail}); its values are not in the file, so its kernels cannot be drawn"
            )
        return self._load()

    def _with(self, **changes) -> "WeightSource":
        return replace(self, **changes)


def _a(kind: str) -> str:
    return ("an " if kind[:1] in "aeiou" else "a ") + kind


# ----------------------------------------------------------------------------------- helpers


def _stored(model: "Model", scope: GraphIndex, name: str) -> Callable[[], np.ndarray]:
    """A loader for an initializer: lazy from the file in the main graph, decoded inline in subgraphs."""
    if scope.is_main and model.has_initializer(name):
        return lambda: model.tensor(name)
    tensor = scope.initializers[name]
    return lambda: model.decode(tensor)


def _attr(node: "onnx.NodeProto", name: str, default=None):
    from onnxvis.model.proto import attribute_value

    for a in node.attribute:
        if a.name == name:
            return attribute_value(a)
    return default


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
        from onnxvis.model.proto import uses_external_data

        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            detail = f"external data in {location}"
        if not owner.is_main:
            detail = ", ".join(filter(None, [detail, f"in subgraph {owner.path}"]))
        return WeightSource("initializer", detail, tuple(tensor.dims), dtype_name(tensor.data_type), "", _stored(model, owner, name))
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
    from onnxvis.model.proto import attribute_value

    for attr in node.attribute:
        if attr.name == "value":
            tensor = attr.t
            return WeightSource("constant", "", tuple(tensor.dims), dtype_name(tensor.data_type), "", partial(model.decode, tensor))
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            value = np.array(attribute_value(attr), dtype=np.float32 if "float" in attr.name else np.int64)
            return WeightSource("constant", "", tuple(value.shape), value.dtype.name, "", partial(np.asarray, value))
        if attr.name == "sparse_value":
            sparse = attr.sparse_tensor
            dims = tuple(sparse.dims)
            return WeightSource(
                "constant", "sparse Constant", dims, dtype_name(sparse.values.data_type), "",
                lambda: run_node(model, node, []),
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
        step = f"Cast to {dtype_name(to)}" if to is not None else "Cast"
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
            target = np_dtype(_attr(node, "to"))
        except Exception:  # no "to", or not a type numpy has: a damaged file
            return WeightSource("unknown", f"a Cast to the invalid type {_attr(node, 'to')!r}", None, inner.dtype)
        return inner._with(detail=detail, _load=lambda: inner._raw().astype(target))
    if op == "CastLike":
        like = extra[0]
        if like is None:  # a damaged file
            return WeightSource("unknown", "a CastLike node without its target-type input", None, inner.dtype)

        def load_castlike() -> np.ndarray:
            return inner._raw().astype(like._raw().dtype)

        return inner._with(detail=f"{inner.detail + ', ' if inner.detail else ''}via CastLike to {like.dtype}", _load=load_castlike)

    def load() -> np.ndarray:
        return run_node(model, node, [inner._raw(), *[e._raw() if e is not None else None for e in extra]])

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
        return tuple(run_node(model, node, [proxy, *[e._raw() if e is not None else None for e in extra]]).shape)
    except Exception:
        return None


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
    how = f"{stored.dtype or '?'} {scale_layout(scale_src.shape, axis, block_size)}"
    if stored.detail:
        how += f", {stored.detail}"
    detail = f"{how} via DequantizeLinear"
    parts = [stored, scale_src] + ([zp_src] if zp_src else [])
    blocker = next((p for p in parts if not p.loadable), None)
    if blocker is not None:
        return WeightSource("quantized", f"{detail}; {blocker.kind}: {blocker.detail}", stored.shape, stored.dtype, how)

    def load() -> np.ndarray:
        out_dtype = np_dtype(out_type) if out_type else None
        return dequantize(stored._raw(), scale_src._raw(), zp_src._raw() if zp_src else None, axis, block_size, out_dtype)

    return WeightSource("quantized", detail, stored.shape, stored.dtype, how, load)


def _trace_qlinear(model: "Model", scope: GraphIndex, node: "onnx.NodeProto", axis: int = 0) -> WeightSource:
    """QLinearConv (and QLinearMatMul, QGemm): weight input 3, w_scale input 4 (scalar or one per output
    channel, along ``axis`` of the stored weight), w_zero_point input 5."""
    stored = _trace_tensor(model, scope, node.input[3])
    scale_src = _trace_tensor(model, scope, node.input[4]) if len(node.input) > 4 and node.input[4] else None
    zp_src = _trace_tensor(model, scope, node.input[5]) if len(node.input) > 5 and node.input[5] else None
    how = f"{stored.dtype or '?'} {scale_layout(scale_src.shape if scale_src else (), axis)}"
    detail = f"{how} in {node.op_type} (w_scale, w_zero_point)"
    parts = [stored] + [p for p in (scale_src, zp_src) if p is not None]
    blocker = next((p for p in parts if not p.loadable), None)
    if blocker is not None or scale_src is None:
        why = f"{blocker.kind}: {blocker.detail}" if blocker else "no w_scale"
        return WeightSource("quantized", f"{detail}; {why}", stored.shape, stored.dtype, how)

    def load() -> np.ndarray:
        return dequantize(stored._raw(), scale_src._raw(), zp_src._raw() if zp_src else None, axis)

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
        how = f"{stored.dtype or '?'} {scale_layout(scale_src.shape, 0)}"
        detail = f"{how} in ConvInteger, w_scale from the Mul after it"
    else:
        how = f"{stored.dtype or '?'} without a scale"
        detail = f"{how} in ConvInteger; shown as integer steps (weight - w_zero_point)"
    parts = [stored] + ([zp_src] if zp_src else [])
    blocker = next((p for p in parts if not p.loadable), None)
    if blocker is not None:
        return WeightSource("quantized", f"{detail}; {blocker.kind}: {blocker.detail}", stored.shape, stored.dtype, how)

    def load() -> np.ndarray:
        q = stored._raw()
        zp = zp_src._raw() if zp_src else None
        scale = scale_src._raw() if scale_src is not None else np.ones((), np.float32)
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

def _trace_computed(model: "Model", scope: GraphIndex, name: str) -> WeightSource:
    nodes, leaves, runtime = ancestors(scope, name)
    ops = sorted({str(n.op_type) for _, n in nodes})  # str(): a damaged file can hold a non-UTF-8 (bytes) op type
    what = f"computed by {', '.join(ops)}" if ops else "computed"
    if runtime:
        return WeightSource("runtime input", f"{what} from the run-time input {sorted(runtime)[0]!r}", None)
    if len(nodes) > MAX_FOLD_NODES:
        return WeightSource("computed", f"{what}: {len(nodes)} nodes, too many to fold", None)
    why = unfoldable(model, nodes)
    if why is not None:
        return WeightSource("computed", f"{what}; cannot be folded: {why}", None)
    shape = infer_shape(model, nodes, leaves, name)

    def load() -> np.ndarray:
        try:
            return evaluate(model, nodes, leaves, name)
        except OnnxvisError:
            raise
        except Exception as exc:  # the reference evaluator raises many types
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise OnnxvisError(f"the weight {name!r} is {what}, and folding it failed: {text}") from None

    if shape is None and sum(leaf_bytes(o, leaf) for leaf, o in leaves.items()) <= (64 << 20):
        # Shape inference could not tell: fold now (cheap) so that the listing is exact.
        try:
            value = load()
        except OnnxvisError as exc:
            return WeightSource("computed", f"{what}; cannot be folded: {exc}", None)
        return WeightSource("computed", f"{what}, folded", tuple(value.shape), value.dtype.name, "", lambda: value)
    return WeightSource("computed", f"{what}, folded", shape, "", "", load)


def trace_weight(model: "Model", scope: GraphIndex, node: "onnx.NodeProto") -> WeightSource:
    """Find where the weight of conv-like ``node`` (or of a Gemm / MatMul, input 1) comes from. Decodes nothing big."""
    if node.op_type == "QLinearConv":
        return _trace_qlinear(model, scope, node)
    if node.op_type == "QLinearMatMul":  # b is (K, N), its scale one per column (output)
        return _trace_qlinear(model, scope, node, axis=1)
    if node.op_type == "QGemm":  # com.microsoft: B is (N, K) with transB, else (K, N)
        return _trace_qlinear(model, scope, node, axis=0 if _attr(node, "transB", 0) else 1)
    if node.op_type == "ConvInteger":
        return _trace_conv_integer(model, scope, node)
    return _trace_tensor(model, scope, node.input[1])


def trace_tensor(model: "Model", scope: GraphIndex, name: str) -> WeightSource:
    """Find where any tensor of ``scope`` comes from (a Gemm or MatMul weight, a quantization scale). Decodes nothing big."""
    return _trace_tensor(model, scope, name)
