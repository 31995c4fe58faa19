"""Receptive fields from the graph: which input pixels a feature-map position sees.

Each spatial tensor gets, per axis (y, x), a *jump* (input pixels between two neighbouring
positions), a *start* (the first input pixel position 0 sees, negative inside the padding) and a
*size* (how many input pixels one position sees). Position i then sees input pixels
``[start + i * jump, start + i * jump + size)``.

The image input has jump 1, start 0, size 1. Convs and pools (kernel, stride, pads, dilation)
change it in the usual way (Araujo et al., "Computing receptive fields of convolutional neural
networks", Distill 2019); element-wise ops keep it; where several branches meet (Add, Concat, ...)
with the same jump, the field is the envelope of theirs. A Split or a Slice along the channels (or the
batch) keeps it: each part sees what the whole saw (YOLOv8's C2f blocks split their channels in two and
concatenate them again). A tensor past an op that this module
does not know in spatial terms (Resize, Reshape, ConvTranspose, a Transpose other than the
layout change, ...), past a global pool, or in a subgraph gets no field (None): its callers fall
back to the whole image, as NetDissect does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from onnxvis.model.layers import ConvLayer

__all__ = ["Field", "receptive_fields"]


@dataclass(frozen=True)
class Field:
    """The receptive field of a spatial tensor's positions, per axis (y, x)."""

    jump: tuple[int, int]
    start: tuple[int, int]
    size: tuple[int, int]

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the input pixels that position (y, x) sees; bottom and
        right are exclusive, and the box may reach outside the image (into the padding)."""
        top = self.start[0] + y * self.jump[0]
        left = self.start[1] + x * self.jump[1]
        return top, left, top + self.size[0], left + self.size[1]


# The whole image, for tensors past a global pooling: any position sees everything.
_GLOBAL = "global"
_UNKNOWN = "unknown"

_IDENTITY = Field((1, 1), (0, 0), (1, 1))

# Ops whose output positions see exactly what the same positions of their inputs see.
_POINTWISE = {
    "Abs", "Add", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "DequantizeLinear", "Div", "Dropout",
    "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "Log", "Max",
    "Mean", "Min", "Mish", "Mul", "Neg", "Pow", "PRelu", "QuantizeLinear", "Reciprocal", "Relu", "Round", "Selu",
    "Sigmoid", "Sign", "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Tanh", "ThresholdedRelu", "Where",
    "QLinearAdd", "QLinearMul", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearConcat", "FastGelu", "BiasGelu",
}
# LRN mixes channels only; Softmax/LogSoftmax over channels (axis 1) too, but not over space: checked below.
_CHANNEL_ONLY = {"LRN", "InstanceNormalization"}
_WINDOWED = {"Conv", "ConvInteger", "QLinearConv", "FusedConv", "MaxPool", "AveragePool", "LpPool", "QLinearAveragePool"}
_GLOBAL_OPS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "QLinearGlobalAveragePool"}
_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "FusedConv": 1}


def _attrs(node: "onnx.NodeProto") -> dict:
    from onnxvis.model.proto import attribute_value

    return {a.name: attribute_value(a) for a in node.attribute}


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


def _windowed(
    node: "onnx.NodeProto", field: Field, size: tuple[int, int] | None, kernel: Sequence[int] | None
) -> tuple[Field | str, tuple[int, int] | None]:
    attrs = _attrs(node)
    kernel = list(attrs.get("kernel_shape") or kernel or [])
    if len(kernel) != 2:
        return _UNKNOWN, None
    strides = list(attrs.get("strides") or [1, 1])
    dilations = list(attrs.get("dilations") or [1, 1])
    pads = list(attrs.get("pads") or [0, 0, 0, 0])
    auto_pad = _decode(attrs.get("auto_pad", "NOTSET"))
    ceil_mode = int(attrs.get("ceil_mode", 0))
    if len(strides) != 2 or len(dilations) != 2 or len(pads) != 4:
        return _UNKNOWN, None
    effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilations, strict=True)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if size is None:
            return _UNKNOWN, None
        begin = []
        for axis in range(2):
            total = max((math.ceil(size[axis] / strides[axis]) - 1) * strides[axis] + effective[axis] - size[axis], 0)
            begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        pads = [begin[0], begin[1], 0, 0]  # the end pads do not move the field; sizes below use ceil(in / s)
        out = None if size is None else (math.ceil(size[0] / strides[0]), math.ceil(size[1] / strides[1]))
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
        out = None if size is None else tuple(  # type: ignore[assignment]
            (size[a] - effective[a]) // strides[a] + 1 for a in range(2)
        )
    else:
        rounding = math.ceil if ceil_mode else math.floor
        out = None if size is None else tuple(  # type: ignore[assignment]
            int(rounding((size[a] + pads[a] + pads[a + 2] - effective[a]) / strides[a])) + 1 for a in range(2)
        )
    new = Field(
        (field.jump[0] * strides[0], field.jump[1] * strides[1]),
        (field.start[0] - pads[0] * field.jump[0], field.start[1] - pads[1] * field.jump[1]),
        (field.size[0] + (effective[0] - 1) * field.jump[0], field.size[1] + (effective[1] - 1) * field.jump[1]),
    )
    return new, out


# Axes of an NCHW tensor along which a part keeps every position's field: the batch and the channels.
_NOT_SPATIAL = {0, 1, -4, -3}


def _constant_values(
    graph: "onnx.GraphProto", initializer: "Callable[[str], np.ndarray | None] | None"
) -> Callable[[str], list[int] | None]:
    """name -> its integer values, for a Constant node's output or (through ``initializer``) an initializer."""
    from onnx import numpy_helper

    made = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    made[node.output[0]] = a.t
                elif a.name in ("value_int", "value_ints"):
                    made[node.output[0]] = a

    def values(name: str) -> list[int] | None:
        found = made.get(name)
        if found is not None:
            if hasattr(found, "dims"):
                return [int(v) for v in numpy_helper.to_array(found).reshape(-1)]
            return [int(found.i)] if found.name == "value_int" else [int(v) for v in found.ints]
        if initializer is None:
            return None
        try:
            array = initializer(name)
        except Exception:  # noqa: BLE001  (a missing or unreadable tensor: the field is unknown, not an error)
            return None
        return None if array is None else [int(v) for v in array.reshape(-1)]

    return values


def _slice_axes(node: "onnx.NodeProto", values: Callable[[str], list[int] | None]) -> list[int] | None:
    """The axes a Slice cuts (opset 10's inputs or opset 1's attributes); None when the graph does not say."""
    attrs = _attrs(node)
    if "starts" in attrs:  # opset 1: starts, ends and axes are attributes
        return list(attrs.get("axes") or range(len(attrs["starts"])))
    if len(node.input) > 3 and node.input[3]:
        return values(node.input[3])
    starts = values(node.input[1]) if len(node.input) > 1 else None
    return None if starts is None else list(range(len(starts)))


def _envelope(fields: Iterable[Field | str]) -> Field | str:
    fields = list(fields)
    if _UNKNOWN in fields:
        return _UNKNOWN
    if _GLOBAL in fields:
        return _GLOBAL
    first = fields[0]
    assert isinstance(first, Field)
    if any(isinstance(f, Field) and f.jump != first.jump for f in fields):
        return _UNKNOWN
    starts = [min(f.start[a] for f in fields if isinstance(f, Field)) for a in range(2)]
    ends = [max(f.start[a] + f.size[a] for f in fields if isinstance(f, Field)) for a in range(2)]
    return Field(first.jump, (starts[0], starts[1]), (ends[0] - starts[0], ends[1] - starts[1]))


def receptive_fields(
    graph: "onnx.GraphProto",
    image_input: str,
    layers: Sequence["ConvLayer"],
    input_size: tuple[int, int] | None = None,
    layout: str = "NCHW",
    initializer: "Callable[[str], np.ndarray | None] | None" = None,
) -> dict[str, Field | None]:
    """The receptive field of each layer's output (by ``output_name``), or None where the graph
    does not tell (the caller then uses the whole image).

    Args:
        graph: the model's main graph (topologically sorted, as ONNX requires).
        image_input: the name of the image input.
        layers: the conv layers; their weight shapes give kernel sizes that are not attributes.
        input_size: (H, W) of the image fed, needed only for ``auto_pad=SAME_*``.
        layout: the image input's layout; an NHWC input is allowed one Transpose to NCHW.
        initializer: reads a (small) initializer by name, for the axes of a Slice; Constant nodes are read
            from the graph itself.
    """
    values = _constant_values(graph, initializer)
    kernels = {layer.weight_name: layer.weight_shape[2:] for layer in layers if layer.weight_shape and len(layer.weight_shape) == 4}
    fields: dict[str, Field | str] = {image_input: _IDENTITY}
    sizes: dict[str, tuple[int, int] | None] = {image_input: input_size}
    for node in graph.node:
        spatial = [name for name in node.input if name in fields]
        if not spatial:
            continue
        outputs = [name for name in node.output if name]
        op = node.op_type
        result: Field | str
        size = sizes.get(spatial[0])
        if op in _WINDOWED and node.input and node.input[0] in fields and len(spatial) == 1:
            field = fields[node.input[0]]
            if isinstance(field, Field):
                weight = node.input[_WEIGHT_INPUT[op]] if op in _WEIGHT_INPUT and len(node.input) > _WEIGHT_INPUT[op] else ""
                result, size = _windowed(node, field, size, kernels.get(weight))
            else:
                result, size = field, None
            outputs = outputs[:1]  # MaxPool's Indices output is not an image
        elif op in _POINTWISE or op in _CHANNEL_ONLY:
            if op == "Concat" and _attrs(node).get("axis", 1) not in (1, -3):
                result = _UNKNOWN
            else:
                result = _envelope(fields[name] for name in spatial)
                if len({sizes.get(name) for name in spatial}) > 1:
                    size = None
        elif op == "Split" and node.input[0] in fields:
            # every part of a split along the channels (or the batch) sees what the whole saw
            result = fields[node.input[0]] if _attrs(node).get("axis", 0) in _NOT_SPATIAL else _UNKNOWN
        elif op == "Slice" and node.input[0] in fields and len(spatial) == 1:
            axes = _slice_axes(node, values)
            result = fields[node.input[0]] if axes is not None and set(axes) <= _NOT_SPATIAL else _UNKNOWN
        elif op in ("Softmax", "LogSoftmax") and _attrs(node).get("axis", 1) in (1, -3):
            result = fields[spatial[0]]
        elif op in _GLOBAL_OPS:
            result, size = _GLOBAL, (1, 1)
        elif (
            op == "Transpose"
            and layout == "NHWC"
            and spatial == [image_input]
            and list(_attrs(node).get("perm", [])) == [0, 3, 1, 2]
        ):
            result = fields[image_input]
        else:
            result = _UNKNOWN
        for name in outputs:
            fields[name] = result
            sizes[name] = size
    found: dict[str, Field | None] = {}
    for layer in layers:
        known = fields.get(layer.output_name) if not layer.graph_path else None
        found[layer.output_name] = known if isinstance(known, Field) else None
    return found
