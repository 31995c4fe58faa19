"""A conv layer's weight as float32 kernels, one per output channel.

Where the weight comes from (an initializer, a Constant, a DequantizeLinear, a folded computation)
is traced once per layer by :mod:`onnxvis.model.tracing`; this module decodes it, checks that it has a
conv weight's shape and size, and regroups ConvTranspose weights (C_in, C_out/group, *k) to one
kernel per output channel, (C_out, C_in/group, *k), like every other conv (:func:`kernel_weights`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.model.dequantize import dequantize
from onnxvis.model.graph import GraphIndex
from onnxvis.model.tracing import WeightSource, trace_weight

if TYPE_CHECKING:
    from onnxvis.model.layers import ConvLayer

# WeightSource, GraphIndex, trace_weight and dequantize are re-exported: they lived here before
# tracing, the graph helpers and dequantization got modules of their own.
__all__ = ["WeightSource", "GraphIndex", "trace_weight", "kernel_weights", "dequantize"]

# The largest conv weight drawn: 64 Mi values (256 MiB as float32), far above any real conv layer
# (VGG16's largest is 2.4 Mi). A computed weight (ConstantOfShape of a stored shape) can claim any
# size in a few bytes of file; past this it is refused before it is made.
MAX_KERNEL_VALUES = 1 << 26


def _fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _check_kernel_size(layer: "ConvLayer", shape: tuple[int, ...] | None) -> None:
    if shape is not None and math.prod(shape) > MAX_KERNEL_VALUES:
        raise OnnxvisError(
            f"layer {layer.index} ({layer.name}) has a weight of shape {_fmt_shape(shape)}, {math.prod(shape):,} values, "
            f"more than the {MAX_KERNEL_VALUES:,} onnxvis draws; choose other layers",
            setting="layers",
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
