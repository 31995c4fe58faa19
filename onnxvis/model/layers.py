"""Find the convolution layers of a model, in graph order, and select them by a user's spec.

A layer is one conv-like node: Conv, ConvTranspose, QLinearConv, ConvInteger or com.microsoft's
FusedConv / NhwcConv, in the main graph or inside an If / Loop / Scan body. Each layer records where
its weight comes from, so that ``layers``, ``info`` and the report show it without tracing again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.model.graph import CONV_BIAS_INPUT, CONV_DOMAINS, CONV_WEIGHT_INPUT, GraphIndex, subgraphs
from onnxvis.model.tracing import WeightSource, trace_weight

if TYPE_CHECKING:
    import onnx
    from numpy.typing import DTypeLike

    from onnxvis.model.file import Model


@dataclass(frozen=True)
class ConvLayer:
    """One conv-like node and what a picture of it needs.

    Attributes:
        index: position among the model's conv layers (0 is the first).
        name: the node's name, or ``<op>_<index>`` when the node has none.
        op_type: Conv, ConvTranspose, QLinearConv, ConvInteger, FusedConv or NhwcConv.
        domain: the node's operator domain ("" for the default one).
        input_name: the tensor the layer convolves.
        weight_name: the tensor feeding the weight input.
        output_name: the node's first output: the feature map, before any activation.
        graph_path: "" for the main graph; otherwise the node/attribute path of the subgraph.
        attributes: strides, pads, dilations, group, kernel_shape, auto_pad when present.
        source: where the weight comes from, traced once (see :mod:`onnxvis.model.tracing`).
        has_bias: the node adds a bias (one value per output channel).
    """

    index: int
    name: str
    op_type: str
    domain: str
    input_name: str
    weight_name: str
    output_name: str
    graph_path: str
    attributes: dict = field(default_factory=dict, hash=False, compare=False)
    source: "WeightSource | None" = field(default=None, hash=False, compare=False)
    has_bias: bool = field(default=False, compare=False)

    @property
    def weight_shape(self) -> tuple[int, ...] | None:
        return self.source.shape if self.source is not None else None

    @property
    def group(self) -> int:
        return int(self.attributes.get("group", 1))

    @property
    def spatial_rank(self) -> int | None:
        shape = self.weight_shape
        return len(shape) - 2 if shape else None

    @property
    def strides(self) -> tuple[int, ...]:
        rank = self.spatial_rank or 2
        return tuple(self.attributes.get("strides", (1,) * rank))

    @property
    def pads(self) -> tuple[int, ...]:
        rank = self.spatial_rank or 2
        return tuple(self.attributes.get("pads", (0,) * (2 * rank)))

    @property
    def dilations(self) -> tuple[int, ...]:
        rank = self.spatial_rank or 2
        return tuple(self.attributes.get("dilations", (1,) * rank))

    @property
    def weight_count(self) -> int | None:
        """Number of kernel weights."""
        shape = self.weight_shape
        return None if shape is None else math.prod(shape)

    @property
    def param_count(self) -> int | None:
        """Kernel weights plus the bias, as torch's ``numel`` of the layer's parameters counts them."""
        weights = self.weight_count
        if weights is None:
            return None
        return weights + ((self.out_channels or 0) if self.has_bias else 0)

    @property
    def in_main_graph(self) -> bool:
        return self.graph_path == ""

    @property
    def channels_last(self) -> bool:
        """The layer's output is (N, H, W, C): com.microsoft's NhwcConv. Every other conv gives (N, C, H, W)."""
        return self.op_type == "NhwcConv"

    @property
    def out_channels(self) -> int | None:
        """Output channels (kernels drawn); ConvTranspose stores (C_in, C_out/group, ...)."""
        shape = self.weight_shape
        if not shape or len(shape) < 2:  # not a conv weight's shape: a damaged file
            return None
        return shape[1] * self.group if self.op_type == "ConvTranspose" else shape[0]

    @property
    def kernel_size(self) -> tuple[int, ...] | None:
        shape = self.weight_shape
        return tuple(shape[2:]) if shape else None

    @property
    def fused_activation(self) -> str | None:
        """The activation a FusedConv applies inside the node (its output is after it), else None."""
        return self.attributes.get("activation") if self.op_type == "FusedConv" else None


def _attributes(node: "onnx.NodeProto") -> dict:
    from onnxvis.model.proto import attribute_value

    wanted = {"strides", "pads", "dilations", "group", "kernel_shape", "auto_pad", "activation"}
    int_lists = {"strides", "pads", "dilations", "kernel_shape"}
    out = {}
    for attr in node.attribute:
        if attr.name in wanted:
            try:
                value = attribute_value(attr)
            except Exception:  # an attribute of undefined type in a damaged file
                continue
            value = value.decode("utf-8", "replace") if isinstance(value, bytes) else (tuple(value) if isinstance(value, list) else value)
            # A damaged or hand-made file can hold any type (strides as a float, group as a list):
            # keep only the types ONNX defines, so that the properties above cannot fail.
            if attr.name in int_lists and not (isinstance(value, tuple) and all(isinstance(v, int) for v in value)):
                continue
            if attr.name == "group" and not isinstance(value, int):
                continue
            out[attr.name] = value
    return out


def _has_bias(node: "onnx.NodeProto") -> bool:
    bias = CONV_BIAS_INPUT.get(node.op_type)
    return bias is not None and len(node.input) > bias and bool(node.input[bias])


def find_conv_layers(model: "Model") -> list[ConvLayer]:
    """All conv-like layers of ``model`` in graph order; a subgraph's layers come at its node's place.

    Returns an empty list for a model without conv layers; :func:`select_layers` turns that into
    a user error.
    """
    layers: list[ConvLayer] = []

    def visit(graph: "onnx.GraphProto", path: str, parent: "GraphIndex | None") -> None:
        scope = GraphIndex(graph, parent, path)
        for position, node in enumerate(graph.node):
            weight_input = CONV_WEIGHT_INPUT.get(node.op_type)
            is_conv = (
                weight_input is not None
                and node.domain in CONV_DOMAINS[node.op_type]
                and len(node.input) > weight_input
                and bool(node.input[weight_input])
            )
            if is_conv:
                i = len(layers)
                layers.append(
                    ConvLayer(
                        index=i,
                        name=node.name or f"{node.op_type}_{i}",
                        op_type=node.op_type,
                        domain=node.domain,
                        input_name=node.input[0],
                        weight_name=node.input[weight_input],
                        output_name=node.output[0] if node.output else "",
                        graph_path=path,
                        attributes=_attributes(node),
                        source=trace_weight(model, scope, node),
                        has_bias=_has_bias(node),
                    )
                )
            label = node.name or f"{node.op_type}_{position}"
            where = f"{path}/{label}" if path else label
            for attr_name, sub in subgraphs(node):
                visit(sub, f"{where}.{attr_name}", scope)

    visit(model.graph, "", None)
    return layers


class MapSource(Protocol):
    """What :func:`channels_first` needs of a layer: a :class:`ConvLayer`, or a picklable summary of one."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def channels_last(self) -> bool: ...


def no_conv_layer(model: str = "the model", consequence: str = "nothing to draw") -> OnnxvisError:
    """The error for a model without a conv layer; ``consequence`` says what cannot be done."""
    return OnnxvisError(f"{model} has no convolution layer (Conv, ConvTranspose, QLinearConv, ConvInteger); {consequence}")


def require_main_graph(
    layers: Iterable[ConvLayer],
    consequence: str = "its feature maps cannot be exposed, but 'onnxvis kernels' draws its kernels",
    setting: str | None = None,
) -> None:
    """Raise for the first layer inside a subgraph (an If / Loop / Scan body), whose output only exists
    inside that body, so no run of the model can return it; ``consequence`` says what that means here."""
    for layer in layers:
        if not layer.in_main_graph:
            raise OnnxvisError(
                f"layer {layer.index} ({layer.name}) is inside a subgraph ({layer.graph_path}); {consequence}", setting=setting
            )


def channels_first(layer: MapSource, value: np.ndarray, dtype: "DTypeLike | None" = np.float32, rank: int | None = None) -> np.ndarray:
    """One image's output of ``layer`` (batch removed) as maps, channels first: (C, H, W) whatever the
    layer's layout (an NhwcConv gives (H, W, C)).

    Args:
        layer: the conv layer the value is the output of.
        value: its raw output for one image.
        dtype: the maps' type (float32 by default); None keeps the model's.
        rank: the number of dimensions the caller needs (3 for 2-D maps); any of 2 and more by default.

    Raises:
        OnnxvisError: the value is empty, or has too few (or not ``rank``) dimensions to be maps.
    """
    value = np.asarray(value)
    if value.ndim < 2 or value.size == 0 or (rank is not None and value.ndim != rank):
        raise OnnxvisError(
            f"layer {layer.index} ({layer.name}) gave an output of shape {(1, *value.shape)}, not feature maps; check the model"
        )
    if layer.channels_last:
        value = np.moveaxis(value, -1, 0)
    return value if dtype is None else value.astype(dtype, copy=False)


def select_layers(layers: list[ConvLayer], spec: str | None, default: str = "all") -> list[ConvLayer]:
    """Select layers by a comma list of indexes, ranges of indexes, node names, or ``all``.

    An index counts from 0; a negative one from the end (-1 is the last conv layer). A range ``A-B``
    takes A to B, both included (``0-3``: the first four; ``-3--1``: the last three). A node name wins
    over an index or a range that reads the same.

    Args:
        layers: the model's conv layers.
        spec: e.g. "0,1", "0-3,7", "conv1,features.3", "-1", "all"; None means ``default``.
        default: used when ``spec`` is None: "all" or "first".

    Raises:
        OnnxvisError: the model has no conv layer, or an item names no layer.
    """
    if not layers:
        raise no_conv_layer()
    spec = default if spec is None else spec
    if spec.strip() == "first":
        return [layers[0]]
    if spec.strip() == "all":
        return list(layers)
    by_name: dict[str, ConvLayer] = {}
    for layer in layers:
        by_name.setdefault(layer.name, layer)

    def at(i: int) -> int:
        """``i`` as a position in ``layers`` (a negative index counts from the end)."""
        if not -len(layers) <= i < len(layers):
            raise OnnxvisError(
                f"layer index {i} is out of range: the model has {len(layers)} conv layers (0 to {len(layers) - 1}, or -1 "
                f"for the last); run 'onnxvis layers MODEL' to list them",
                setting="layers",
            )
        return i % len(layers)

    chosen: list[ConvLayer] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        span = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", item)
        if item in by_name:
            picked = [by_name[item]]
        elif item.lstrip("-").isdigit():
            picked = [layers[at(int(item))]]
        elif span:
            first, last = at(int(span.group(1))), at(int(span.group(2)))
            if first > last:
                raise OnnxvisError(
                    f"the layer range {item!r} runs backwards (from layer {first} to layer {last}); give it as "
                    f"{last}-{first}", setting="layers",
                )
            picked = layers[first : last + 1]
        else:
            raise OnnxvisError(
                f"no conv layer is named {item!r}; run 'onnxvis layers MODEL' to list names and indexes, and give indexes "
                "(0, or -1 for the last), ranges (0-3) or names",
                setting="layers",
            )
        chosen.extend(layer for layer in picked if layer not in chosen)
    if not chosen:
        raise OnnxvisError(f"the layer selection {spec!r} selects no layer; give indexes, ranges, names or 'all'", setting="layers")
    return chosen


def layer_stem(layer: "ConvLayer") -> str:
    return f"{layer.index:02d}_{layer.name}"


def layer_title(layer: "ConvLayer", what: str) -> str:
    """A picture's title, e.g. ``0 conv1 - kernels 64x3x11x11`` (``what="kernels"`` adds the weight shape)."""
    if what == "kernels":
        what += " " + ("x".join(map(str, layer.weight_shape)) if layer.weight_shape else "?")
    return f"{layer.index} {layer.name} - {what}"
