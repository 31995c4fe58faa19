"""Tensor shapes of the main graph, inferred in pure Python for the ops of a CNN (no onnx).

What it is for: telling which conv layers have a spatial output (CAM's default layer) without
``onnx.shape_inference`` and its 0.7 s import. It follows the graph inputs' fixed sizes through the
ops a convolutional network is made of (convolutions, pools, element-wise ops, normalisations,
concatenation, flattening, reductions); any other op's outputs are unknown, as are the tensors after
them. A dimension that is not a fixed number (a free batch, a free height) is None, as a symbolic one
is in onnx's answer. Where the file records a shape (``value_info``, the outputs) and the ops give none,
the file's is kept.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from onnxvis.model.proto import attribute_value, to_array

if TYPE_CHECKING:
    from onnxvis.model.file import Model

__all__ = ["infer_shapes"]

Shape = list  # of int | None

_SAME_AS_FIRST = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "BatchNormalization", "Dropout", "Identity",
    "HardSigmoid", "HardSwish", "Softmax", "LogSoftmax", "LRN", "InstanceNormalization", "Cast", "Elu", "Selu",
    "Softplus", "Softsign", "Mish", "Gelu", "Neg", "Abs", "Exp", "Log", "Sqrt", "Erf", "Reciprocal", "Floor", "Ceil",
    "Round", "QuantizeLinear", "DequantizeLinear", "ThresholdedRelu", "Celu", "Swish", "LayerNormalization",
})
_BROADCAST = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where"})
_POOLS = frozenset({"MaxPool", "AveragePool", "LpPool"})
_GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
_REDUCE = frozenset({"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "ReduceL1", "ReduceProd"})


def _dims(value) -> Shape | None:
    t = value.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]


def _attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        try:
            out[a.name] = attribute_value(a)
        except ValueError:
            continue
    return out


def _window(x: Shape, kernel: list[int], a: dict, out_channels: int | None, ceil: bool) -> Shape | None:
    """The output shape of a convolution or a pool over NCHW ``x`` (None past what the attributes say)."""
    n = len(kernel)
    if len(x) != n + 2:
        return None
    strides = list(a.get("strides") or [1] * n)
    dilations = list(a.get("dilations") or [1] * n)
    pads = list(a.get("pads") or [0] * (2 * n))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        return None
    out: Shape = [x[0], out_channels if out_channels is not None else x[1]]
    for i in range(n):
        size = x[2 + i]
        if size is None:
            out.append(None)
            continue
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(math.ceil(size / strides[i]))
            continue
        span = (kernel[i] - 1) * dilations[i] + 1
        if auto == "VALID":
            total = size - span
        else:
            total = size + pads[i] + pads[i + n] - span
        if total < 0 or strides[i] <= 0:
            return None
        steps = -(-total // strides[i]) if ceil else total // strides[i]
        if ceil and steps * strides[i] >= size + pads[i]:  # onnx: the last window must start inside the input
            steps -= 1
        out.append(steps + 1)
    return out


def _broadcast(shapes: list[Shape]) -> Shape | None:
    rank = max(len(s) for s in shapes)
    out: Shape = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = [d for d in dims if d is not None]
        big = [d for d in known if d != 1]
        if len(set(big)) > 1:
            return None
        if big:
            out.append(big[0])
        elif len(known) == len(dims):
            out.append(1)
        else:
            out.append(None)
    return out


def _infer(node, shapes: dict[str, Shape], weight_dims, values: dict) -> Shape | None:
    op = node.op_type
    ins = [shapes.get(name) if name else None for name in node.input]
    x = ins[0] if ins else None
    a = _attrs(node)
    if op in _SAME_AS_FIRST:
        return list(x) if x is not None else None
    if op in _BROADCAST:
        if any(s is None for s in ins) or not ins:
            return None
        return _broadcast([s for s in ins if s is not None])
    if x is None:
        return None
    if op in ("Conv", "ConvInteger", "FusedConv", "QLinearConv"):
        w = weight_dims(node.input[3] if op == "QLinearConv" else node.input[1]) if len(node.input) > 1 else None
        kernel = list(a.get("kernel_shape") or (w[2:] if w else []))
        if not kernel or any(k is None for k in kernel):
            return None
        out = _window(x, kernel, a, w[0] if w else None, False)
        if out is not None and not w:
            out[1] = None  # a computed weight of unknown shape: the channels are unknown, the size is not
        return out
    if op in _POOLS:
        kernel = list(a.get("kernel_shape") or [])
        return _window(x, kernel, a, None, bool(a.get("ceil_mode", 0))) if kernel else None
    if op in _GLOBAL_POOLS:
        return [*x[:2], *([1] * (len(x) - 2))] if len(x) >= 2 else None
    if op == "Concat":
        if any(s is None or len(s) != len(x) for s in ins):
            return None
        axis = a.get("axis", 0)
        axis = axis + len(x) if axis < 0 else axis
        if not 0 <= axis < len(x):
            return None
        out = list(x)
        sizes = [s[axis] for s in ins if s is not None]
        out[axis] = None if any(d is None for d in sizes) else sum(d for d in sizes if d is not None)
        return out
    if op == "Flatten":
        axis = a.get("axis", 1)
        axis = axis + len(x) if axis < 0 else axis
        head, tail = x[:axis], x[axis:]
        return [None if any(d is None for d in head) else math.prod(head),
                None if any(d is None for d in tail) else math.prod(tail)]
    if op == "Transpose":
        perm = list(a.get("perm") or range(len(x))[::-1])
        return [x[p] for p in perm] if sorted(perm) == list(range(len(x))) else None
    if op == "Reshape" and len(node.input) > 1 and node.input[1] in values:
        target = [int(d) for d in values[node.input[1]]]
        if a.get("allowzero", 0) and 0 in target:
            return None
        out = [x[i] if d == 0 and i < len(x) else (None if d == -1 else d) for i, d in enumerate(target)]
        if target.count(-1) == 1 and None not in x:
            known = math.prod(d for d in out if d is not None)
            if known:
                out[target.index(-1)] = math.prod(x) // known
        return out
    if op in _REDUCE and "axes" in a and len(node.input) < 2:
        axes = {ax + len(x) if ax < 0 else ax for ax in a["axes"]}
        keep = a.get("keepdims", 1)
        return [1 if i in axes else d for i, d in enumerate(x) if keep or i not in axes]
    return None


def infer_shapes(model: "Model") -> dict[str, Shape]:
    """Tensor name -> shape (None for a dimension that is not a fixed number), for the main graph's
    tensors whose shape the ops above give, or the file records."""
    graph = model.graph
    shapes: dict[str, Shape] = {}
    recorded: dict[str, Shape] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = _dims(value)
        if dims is not None:
            recorded[value.name] = dims
    for value in graph.input:
        if value.name in recorded:
            shapes[value.name] = recorded[value.name]
    stored = {t.name: list(t.dims) for t in graph.initializer}
    constants = {}
    values = {}  # the values of small integer Constant nodes (a Reshape's target shape)
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            tensor = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            if tensor is not None:
                constants[node.output[0]] = list(tensor.dims)
                if tensor.data_type in (6, 7) and len(tensor.dims) == 1 and tensor.dims[0] <= 8:
                    try:
                        values[node.output[0]] = to_array(tensor).tolist()
                    except Exception:  # noqa: BLE001  (a damaged constant: its value is unknown)
                        pass
    shapes.update(stored)
    shapes.update(constants)

    def weight_dims(name: str) -> Shape | None:
        return stored.get(name) or constants.get(name) or shapes.get(name)

    for node in graph.node:
        try:
            out = _infer(node, shapes, weight_dims, values)
        except (TypeError, ValueError, IndexError, KeyError):  # damaged attributes: the shape is unknown
            out = None
        if node.output and node.output[0]:
            first = node.output[0]
            if out is not None:
                shapes[first] = out
            elif first in recorded:
                shapes[first] = recorded[first]
        for extra in node.output[1:]:
            if extra in recorded:
                shapes[extra] = recorded[extra]
    return shapes
