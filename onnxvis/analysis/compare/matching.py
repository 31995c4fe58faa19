"""Which layer of model B is which layer of model A, and which tensor of each to compare.

The layers are the conv-like nodes (:func:`onnxvis.model.layers.find_conv_layers`) and the dense ones
(Gemm, MatMul with a stored weight, QLinearMatMul, com.microsoft's QGemm) of the main graph, in
graph order. They are paired in three rounds, each on the layers the rounds before left:

1. by node name (the same name, the same weight shape);
2. by node and weight names with the quantizer's suffixes removed (``_quant``, ``_quantized``,
   ``_DequantizeLinear``...): onnxruntime's quantizer turns node ``conv1`` into ``conv1_quant`` and
   weight ``W`` into ``W_quantized``, so a QLinearConv pairs with the Conv it replaced;
3. by order and shape: between two pairs already made, the remaining layers of the same kind and
   weight shape, in graph order.

A pair always has equal weight shapes (one kernel per output channel): a classifier head with
another class count stays unmatched, with the reason.

Which tensor stands for a layer's output (:func:`probes`): the node's output; in a QDQ graph the
DequantizeLinear output after it (what the next layer reads, what onnxruntime's
``qdq_loss_debug`` calls ``post_qdq``); for QLinearConv / QLinearMatMul the integer output,
dequantized with the node's own output scale and zero point. When one model applies a Relu (or
Clip) after the layer and the other folded it into its quantized output (onnxruntime removes the
Relu and lets the uint8 range clip at zero), the first is compared after its Relu.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.model.graph import CONV_OPS, GraphIndex
from onnxvis.model.layers import ConvLayer, find_conv_layers
from onnxvis.model.tracing import WeightSource, trace_weight
from onnxvis.model.weights import kernel_weights

if TYPE_CHECKING:
    import onnx

    from onnxvis.model.file import Model

__all__ = [
    "CompareLayer",
    "Pair",
    "Matching",
    "Probe",
    "find_compare_layers",
    "match_layers",
    "strip_quantizer_suffixes",
    "probes",
    "layer_weights",
]

# What onnxruntime's quantizer (QDQ and QOperator formats, and its dynamic quantizer) appends to names.
QUANTIZER_SUFFIXES = (
    "_DequantizeLinear_Output",
    "_QuantizeLinear_Output",
    "_QuantizeLinear_Input",
    "_DequantizeLinear",
    "_QuantizeLinear",
    "_dequantized",
    "_quantized",
    "_quant",
    "_scale",
    "_zero_point",
)
DENSE_OPS = {"Gemm": 1, "MatMul": 1, "QLinearMatMul": 3, "QGemm": 3}  # op -> index of its weight input
_QLINEAR_OUTPUT = {"QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QGemm": (7, 8)}  # op -> y_scale, y_zero_point inputs
# Element-wise activations a quantizer folds into the integer range of the layer's output.
_FOLDABLE = {"Relu", "Clip"}
# Ops that only pass a stored weight on (the walk from a layer's weight input back to its initializer).
_PASS_OPS = {"Identity", "Cast", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "DequantizeLinear", "QuantizeLinear"}


@dataclass(frozen=True)
class CompareLayer:
    """One layer of a model, as the comparison sees it.

    Attributes:
        index: position among the model's compared layers, in graph order.
        position: the node's position in the main graph.
        name: the node's name ("" when it has none).
        label: the name, or ``<op>_<position>`` for a node without one.
        op_type: Conv, QLinearConv, Gemm, MatMul, ...
        kind: "conv" or "dense".
        weight_name: the tensor the node reads as its weight.
        stored_name: the initializer behind it (through DequantizeLinear, Reshape, Cast, ...), else weight_name.
        output_name: the node's first output.
        source: where the weight comes from (see :mod:`onnxvis.model.tracing`).
        shape: the weight as compared: one row per output channel, (O, I/group, *k) or (N, K); None when unknown.
        conv: the conv layer, for conv-like nodes.
        transposed: a dense weight stored (K, N), compared as its transpose.
    """

    index: int
    position: int
    name: str
    label: str
    op_type: str
    kind: str
    weight_name: str
    stored_name: str
    output_name: str
    source: WeightSource = field(hash=False, compare=False)
    shape: tuple[int, ...] | None = field(default=None, compare=False)
    conv: ConvLayer | None = field(default=None, hash=False, compare=False)
    transposed: bool = field(default=False, compare=False)

    def describe(self) -> str:
        shape = "x".join(map(str, self.shape)) if self.shape else "?"
        return f"{self.label} ({self.op_type} {shape})"


@dataclass(frozen=True)
class Pair:
    """A layer of A and its partner in B, and how they were paired."""

    a: CompareLayer
    b: CompareLayer
    how: str


@dataclass
class Matching:
    """The pairs in A's graph order, and the layers of each model left without a partner (with why)."""

    pairs: list[Pair]
    unmatched_a: list[tuple[CompareLayer, str]]
    unmatched_b: list[tuple[CompareLayer, str]]


# ------------------------------------------------------------------------------------ the layers


def _attr_int(node: "onnx.NodeProto", name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _stored_name(scope: GraphIndex, name: str) -> str:
    """The initializer a weight input comes from, through the ops that only pass it on."""
    current = name
    for _ in range(16):
        if current in scope.initializers:
            return current
        node = scope.producers.get(current)
        if node is None or node.op_type not in _PASS_OPS or not node.input or not node.input[0]:
            break
        current = node.input[0]
    return current if current in scope.initializers else name


def _dense_shape(source: WeightSource, transposed: bool) -> tuple[int, ...] | None:
    shape = source.shape
    if shape is None or len(shape) != 2:
        return None
    return (shape[1], shape[0]) if transposed else tuple(shape)


def find_compare_layers(model: "Model") -> list[CompareLayer]:
    """The conv and dense layers of the main graph, in graph order."""
    convs = {layer.output_name: layer for layer in find_conv_layers(model) if layer.in_main_graph}
    scope = GraphIndex(model.graph)
    found: list[CompareLayer] = []
    for position, node in enumerate(model.graph.node):
        if not node.output:
            continue
        label = node.name or f"{node.op_type}_{position}"
        conv = convs.get(node.output[0]) if node.op_type in CONV_OPS else None
        if conv is not None and conv.source is not None:
            found.append(CompareLayer(
                len(found), position, node.name, label, node.op_type, "conv", conv.weight_name,
                _stored_name(scope, conv.weight_name), conv.output_name, conv.source, _conv_shape(conv), conv,
            ))
            continue
        weight_input = DENSE_OPS.get(node.op_type)
        if weight_input is None or len(node.input) <= weight_input or not node.input[weight_input]:
            continue
        if node.op_type == "QGemm" and node.domain != "com.microsoft":
            continue
        if node.op_type in ("Gemm", "MatMul") and node.domain not in ("", "ai.onnx"):
            continue
        source = trace_weight(model, scope, node)  # input 1 of Gemm and MatMul; 3, with its scale, of the quantized ones
        if not source.loadable:
            continue  # a product of two run-time tensors (attention), not a layer with weights
        if node.op_type == "Gemm" and _attr_int(node, "transA", 0):
            continue  # the stored operand is the first one: not a layer's weight
        if node.op_type in ("Gemm", "QGemm"):
            transposed = not _attr_int(node, "transB", 0)
        else:
            transposed = True  # MatMul's weight is (K, N)
        shape = _dense_shape(source, transposed)
        if shape is None:
            continue
        weight_name = node.input[weight_input]
        found.append(CompareLayer(
            len(found), position, node.name, label, node.op_type, "dense", weight_name,
            _stored_name(scope, weight_name), node.output[0], source, shape, None, transposed,
        ))
    return found


def _conv_shape(layer: ConvLayer) -> tuple[int, ...] | None:
    shape = layer.weight_shape
    if shape is None or len(shape) < 3:
        return None
    if layer.op_type == "ConvTranspose":  # stored (I, O/group, *k), compared per output channel
        group = layer.group
        if group < 1 or shape[0] % group:
            return None
        return (shape[1] * group, shape[0] // group, *shape[2:])
    return tuple(shape)


def layer_weights(layer: CompareLayer) -> np.ndarray:
    """The layer's weight as float32, one row per output channel: (O, I/group, *k) or (N, K).

    Raises:
        OnnxvisError: the weight is not in the file, or not of a layer's shape.
    """
    if layer.conv is not None:
        return kernel_weights(layer.conv)
    try:
        weight = layer.source.load()
    except OnnxvisError as exc:
        raise OnnxvisError(f"layer {layer.label}: {exc}") from None
    if weight.ndim != 2:
        raise OnnxvisError(f"layer {layer.label} has a weight of shape {weight.shape}, not a matrix")
    return np.ascontiguousarray(weight.T if layer.transposed else weight)


# ------------------------------------------------------------------------------------ matching


def strip_quantizer_suffixes(name: str) -> str:
    """``name`` without the suffixes onnxruntime's quantizer adds (repeatedly: ``W_quantized_scale`` -> ``W``)."""
    changed = True
    while changed and name:
        changed = False
        for suffix in QUANTIZER_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                changed = True
                break
    return name


def _signature(layer: CompareLayer) -> tuple:
    return (layer.kind, layer.shape)


def _shape_text(layer: CompareLayer) -> str:
    return "x".join(map(str, layer.shape)) if layer.shape else "unknown"


def match_layers(a: Sequence[CompareLayer], b: Sequence[CompareLayer]) -> Matching:
    """Pair the layers of A with those of B: by name, by name without quantizer suffixes, by order and shape."""
    partner: dict[int, tuple[int, str]] = {}  # A index -> (B index, how)
    taken: set[int] = set()
    near_miss: dict[int, str] = {}  # A index -> why its namesake in B was not taken

    def pair_by(key_a, key_b, how: str) -> None:
        groups: dict[object, list[int]] = {}
        for layer in b:
            key = key_b(layer)
            if layer.index not in taken and key:
                groups.setdefault(key, []).append(layer.index)
        for layer in a:
            key = key_a(layer)
            if layer.index in partner or not key or key not in groups:
                continue
            candidates = [j for j in groups[key] if j not in taken]
            fitting = [j for j in candidates if layer.shape is not None and _signature(b[j]) == _signature(layer)]
            if fitting:
                other = b[fitting[0]]
                exact = how.replace(" without quantizer suffixes", "")
                same = (layer.name == other.name) if how.startswith("node name") else (layer.stored_name == other.stored_name)
                partner[layer.index] = (fitting[0], exact if same and how != exact and "and" not in how else how)
                taken.add(fitting[0])
            elif candidates:
                other = b[candidates[0]]
                near_miss.setdefault(
                    layer.index,
                    f"{other.label} in B has its name but a weight of {_shape_text(other)}, not {_shape_text(layer)}",
                )

    pair_by(lambda layer: layer.name, lambda layer: layer.name, "node name")
    pair_by(
        lambda layer: (strip_quantizer_suffixes(layer.name), strip_quantizer_suffixes(layer.stored_name)) if layer.name else None,
        lambda layer: (strip_quantizer_suffixes(layer.name), strip_quantizer_suffixes(layer.stored_name)) if layer.name else None,
        "node and weight names without quantizer suffixes",
    )
    pair_by(lambda layer: strip_quantizer_suffixes(layer.name), lambda layer: strip_quantizer_suffixes(layer.name),
            "node name without quantizer suffixes")
    pair_by(lambda layer: strip_quantizer_suffixes(layer.stored_name), lambda layer: strip_quantizer_suffixes(layer.stored_name),
            "weight name without quantizer suffixes")
    _pair_by_order(a, b, partner, taken)

    pairs = [Pair(layer, b[partner[layer.index][0]], partner[layer.index][1]) for layer in a if layer.index in partner]
    unmatched_a = [(layer, near_miss.get(layer.index, "no layer of B has its name or, in its place, its weight shape"))
                   for layer in a if layer.index not in partner]
    unmatched_b = [(layer, "no layer of A has its name or, in its place, its weight shape") for layer in b if layer.index not in taken]
    return Matching(pairs, unmatched_a, unmatched_b)


def _pair_by_order(a: Sequence[CompareLayer], b: Sequence[CompareLayer], partner: dict[int, tuple[int, str]], taken: set[int]) -> None:
    """Between consecutive pairs (in A's order), pair the left layers of equal kind and shape, in order."""
    anchors = sorted((i, j) for i, (j, _) in partner.items())
    bounds = [(-1, -1), *anchors, (len(a), len(b))]
    for (i0, j0), (i1, j1) in zip(bounds, bounds[1:], strict=False):
        if j1 < j0:  # pairs that cross: look at all of B's free layers
            j0, j1 = -1, len(b)
        free_b = [j for j in range(j0 + 1, j1) if j not in taken]
        cursor = 0
        for i in range(i0 + 1, i1):
            if i in partner or a[i].shape is None:
                continue
            for k in range(cursor, len(free_b)):
                if _signature(b[free_b[k]]) == _signature(a[i]):
                    partner[i] = (free_b[k], "order and shape")
                    taken.add(free_b[k])
                    cursor = k + 1
                    break


# ------------------------------------------------------------------------------------ what to compare


@dataclass(frozen=True)
class Probe:
    """The tensor that stands for a layer's output in one model.

    Attributes:
        tensor: the name to ask the model for.
        dequantize: (scale, zero point) initializer names when ``tensor`` is integer, else None.
        channels_last: the tensor holds channels last (com.microsoft NhwcConv).
        where: in words, e.g. "conv output", "after DequantizeLinear", "after Relu".
    """

    tensor: str
    dequantize: tuple[str, str | None] | None = None
    channels_last: bool = False
    where: str = "output"


@dataclass(frozen=True)
class _Side:
    probe: Probe
    activation: Probe | None  # the same, after a Relu / Clip that follows the layer
    folded: bool  # the output is quantized (or fused): an activation may live inside it


def _only_consumer(scope: GraphIndex, name: str, op_types: set[str]) -> "onnx.NodeProto | None":
    consumers = scope.consumers(name)
    if len(consumers) == 1 and consumers[0].op_type in op_types and consumers[0].output:
        return consumers[0]
    return None


def _after_qdq(scope: GraphIndex, name: str) -> str | None:
    """The DequantizeLinear output that follows ``name`` through a QuantizeLinear (a QDQ pair), if any."""
    quantize = _only_consumer(scope, name, {"QuantizeLinear"})
    if quantize is None:
        return None
    dequant = next((n for n in scope.consumers(quantize.output[0]) if n.op_type == "DequantizeLinear" and n.output), None)
    return dequant.output[0] if dequant is not None else None


def _side(model: "Model", scope: GraphIndex, layer: CompareLayer) -> _Side:
    node = model.graph.node[layer.position]
    tensor = layer.output_name
    folded = False
    channels_last = layer.op_type == "NhwcConv"
    dequantize: tuple[str, str | None] | None = None
    where = "output"
    if layer.op_type in _QLINEAR_OUTPUT:
        scale_at, zp_at = _QLINEAR_OUTPUT[layer.op_type]
        if len(node.input) > scale_at and node.input[scale_at]:
            folded = True
            dq = _only_consumer(scope, tensor, {"DequantizeLinear"})
            if dq is not None:
                tensor, where = dq.output[0], "after DequantizeLinear"
            else:
                zp = node.input[zp_at] if len(node.input) > zp_at and node.input[zp_at] else None
                dequantize, where = (node.input[scale_at], zp), "dequantized with its output scale and zero point"
    else:
        post = _after_qdq(scope, tensor)
        if post is not None:
            tensor, folded, where = post, True, "after QuantizeLinear + DequantizeLinear"
        if layer.conv is not None and layer.conv.fused_activation:
            folded = True
    probe = Probe(tensor, dequantize, channels_last, where)
    activation = None
    act = _only_consumer(scope, tensor, _FOLDABLE) if dequantize is None else None
    if act is not None:
        out = act.output[0]
        post = _after_qdq(scope, out)
        activation = Probe(post or out, None, channels_last, f"after {act.op_type}" + (" + QDQ" if post else ""))
    return _Side(probe, activation, folded)


def probes(model_a: "Model", model_b: "Model", pairs: Sequence[Pair]) -> list[tuple[Probe, Probe]]:
    """For each pair, the tensor of A and the tensor of B that hold the same values when the models agree."""
    scope_a, scope_b = GraphIndex(model_a.graph), GraphIndex(model_b.graph)
    found = []
    for pair in pairs:
        side_a, side_b = _side(model_a, scope_a, pair.a), _side(model_b, scope_b, pair.b)
        probe_a, probe_b = side_a.probe, side_b.probe
        if side_a.activation is not None and side_b.activation is None and side_b.folded:
            probe_a = side_a.activation  # B's quantized output clips where A's Relu does
        elif side_b.activation is not None and side_a.activation is None and side_a.folded:
            probe_b = side_b.activation
        found.append((probe_a, probe_b))
    return found
