"""Per-node statistics of a model: its layers' weights, and with images their activations.

Which nodes (:func:`stats_nodes`), in graph order:

- every conv layer (:func:`onnxvis.model.layers.find_conv_layers`, subgraphs included): its weight;
  in the main graph also its output, the map ``fmaps`` draws;
- every dense layer of the main graph: Gemm, MatMul, QLinearMatMul, com.microsoft's QGemm whose
  weight is stored in the file (an initializer, a Constant, quantized or folded), as ``compare``
  finds them (:func:`onnxvis.analysis.compare.matching.find_compare_layers`): its weight, one
  "filter" per output unit;
- every activation (Relu, Clip, PRelu, Sigmoid, ...) of the main graph whose input comes from one of
  those layers through ops that keep the channel axis where it is (BatchNormalization, Add, pooling,
  Concat, another activation, ...): its output. The channel axis is then known, which the share of
  channels that never fire needs.

The activations come from one :meth:`~onnxvis.engine.inspector.Inspector.run` over the images that
asks for every measured tensor at once, batched, and go into running sums
(:class:`~onnxvis.analysis.stats.RunningStats`): memory is one batch's tensors, whatever the number
of images. Each node carries its Model Explorer node id (:mod:`onnxvis.model.nodeids`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from onnxvis.analysis.compare.matching import find_compare_layers, layer_weights
from onnxvis.analysis.stats import Histogram, RunningHistogram, RunningStats, WeightStats, histogram, weight_stats
from onnxvis.errors import OnnxvisError
from onnxvis.model.graph import GraphIndex, subgraphs
from onnxvis.model.layers import layer_stem
from onnxvis.model.nodeids import ExplorerNode, explorer_ids
from onnxvis.model.tracing import WeightSource, trace_tensor
from onnxvis.model.weights import kernel_weights

if TYPE_CHECKING:
    import onnx

    from onnxvis.analysis.compare.matching import CompareLayer
    from onnxvis.engine.inspector import ImageLike, Inspector
    from onnxvis.model.layers import ConvLayer

__all__ = ["ACTIVATIONS", "StatsNode", "NodeStats", "stats_nodes", "compute_stats"]

# Activations, by domain: their outputs are measured (mean, std, max, zeros, silent channels).
ACTIVATIONS = {
    "": frozenset({
        "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
        "Softplus", "Softsign", "ThresholdedRelu", "Gelu", "Mish", "Swish",
    }),
    "com.microsoft": frozenset({"Gelu", "FastGelu", "QuickGelu", "BiasGelu"}),
}
# Ops whose output keeps its first input's channel axis where it is (element-wise ops, normalisation,
# pooling, concatenation): an activation after them still has the layer's channels on that axis.
_KEEP_CHANNELS = frozenset({
    "Add", "Sub", "Mul", "Div", "BatchNormalization", "InstanceNormalization", "LRN", "Dropout", "Identity", "Cast",
    "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "Concat", "Pad",
    "Resize", "Upsample", "Abs", "Neg", "Sqrt", "Exp", "Pow", "Max", "Min", "Sum", "Mean", "Where",
    "QuantizeLinear", "DequantizeLinear",
})

Kind = Literal["conv", "dense", "activation"]


@dataclass(frozen=True, eq=False)
class StatsNode:
    """One node that ``stats`` measures.

    Attributes:
        kind: "conv", "dense" (Gemm, MatMul) or "activation".
        name: onnxvis's name: the conv layer's name (``<op>_<index>`` when the node has none), else
            the node's name or ``<op>_<position>``.
        stem: a unique short name for tags and file names (``00_conv1`` for conv layer 0).
        op_type: the node's op.
        path: onnxvis's path of its graph ("" for the main graph).
        position: its position in that graph.
        explorer: its Model Explorer node (None when Model Explorer does not show its graph).
        output: the tensor whose values are measured over the images ("" for none: weights only).
        channel_axis: the channels' axis in that tensor without the batch (0: NCHW, -1: last).
        count_zeros: count the exact zeros of the output (activations; a FusedConv's own one).
        layer: the conv layer, for "conv".
        dense: the dense layer, for "dense" (as :func:`onnxvis.analysis.compare.matching.find_compare_layers`
            finds it: where its weight comes from, stored as (K, N) or (N, K)).
        quantized_output: (scale, zero point) loaders of a QLinearConv's output, which is dequantized.
    """

    kind: Kind
    name: str
    stem: str
    op_type: str
    path: str
    position: int
    explorer: ExplorerNode | None
    output: str = ""
    channel_axis: int | None = 0
    count_zeros: bool = False
    layer: "ConvLayer | None" = None
    dense: "CompareLayer | None" = None
    quantized_output: tuple[WeightSource, WeightSource | None] | None = field(default=None, repr=False)

    @property
    def has_weight(self) -> bool:
        return self.kind in ("conv", "dense")


@dataclass
class NodeStats:
    """What ``stats`` found for one node.

    Attributes:
        node: the node.
        weight: its weight's statistics (None: no weight, or it could not be read: see ``problem``).
        weight_histogram: the weight's TensorBoard histogram, when asked for.
        activations: running sums of its output over the images (None without images or output).
        activation_histogram: the output's histogram over all images, when asked for.
        problem: why a weight or an output could not be measured, else "".
    """

    node: StatsNode
    weight: WeightStats | None = None
    weight_histogram: Histogram | None = None
    activations: RunningStats | None = None
    activation_histogram: RunningHistogram | None = None
    problem: str = ""


def _channel_axes(graph: "onnx.GraphProto", sources: dict[str, int]) -> dict[str, int]:
    """Tensor -> the channels' axis (without the batch), for the tensors that come from a layer's
    output (``sources``: output -> axis) through ops that keep the channels where they are."""
    axes = dict(sources)
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or not node.output or node.output[0] in axes:
            continue
        if node.op_type in _KEEP_CHANNELS or node.op_type in ACTIVATIONS[""]:
            known = [axes[name] for name in node.input if name in axes]
            if known:
                axes[node.output[0]] = known[0]
    return axes


def stats_nodes(inspector: "Inspector") -> list[StatsNode]:
    """The nodes ``stats`` measures, in graph order (a subgraph's conv layers at their node's place)."""
    model = inspector.model
    ids = explorer_ids(model.proto)
    layers = {(layer.graph_path, layer.output_name): layer for layer in inspector.layers}
    main_scope = GraphIndex(model.graph)
    found: list[StatsNode] = []
    stems: set[str] = set()

    def stem_for(text: str) -> str:
        candidate, n = text, 2
        while candidate in stems:
            candidate, n = f"{text}_{n}", n + 1
        stems.add(candidate)
        return candidate

    # Gemm, MatMul, QLinearMatMul, QGemm with a stored weight: the dense layers compare pairs, found alike
    dense = {layer.position: layer for layer in find_compare_layers(model) if layer.kind == "dense"}
    main_sources: dict[str, int] = {}
    main_nodes: list[tuple[int, "onnx.NodeProto"]] = []

    def visit(graph: "onnx.GraphProto", path: str) -> None:
        for position, node in enumerate(graph.node):
            layer = layers.get((path, node.output[0] if node.output else ""))
            name = node.name or f"{node.op_type}_{position}"
            if layer is not None:
                in_main = layer.in_main_graph
                quantized = None
                if layer.op_type == "QLinearConv" and in_main and len(node.input) > 6 and node.input[6]:
                    scale = trace_tensor(model, main_scope, node.input[6])
                    zero = trace_tensor(model, main_scope, node.input[7]) if len(node.input) > 7 and node.input[7] else None
                    quantized = (scale, zero) if scale.loadable and (zero is None or zero.loadable) else None
                axis = -1 if layer.op_type == "NhwcConv" else 0
                usable = in_main and layer.op_type != "ConvInteger"  # ConvInteger's output is an integer accumulator
                if in_main:
                    main_sources[layer.output_name] = axis
                found.append(StatsNode(
                    "conv", layer.name, stem_for(layer_stem(layer)), node.op_type, path, position, ids.node(path, position),
                    output=layer.output_name if usable else "", channel_axis=axis,
                    count_zeros=layer.fused_activation is not None, layer=layer, quantized_output=quantized,
                ))
            elif path == "" and position in dense:
                main_sources[node.output[0]] = -1
                found.append(StatsNode(
                    "dense", name, stem_for(name), node.op_type, path, position, ids.node(path, position), dense=dense[position],
                ))
            if path == "":
                main_nodes.append((len(found), node))
            label = node.name or f"{node.op_type}_{position}"
            where = f"{path}/{label}" if path else label
            for attr_name, sub in subgraphs(node):  # the paths find_conv_layers gives
                visit(sub, f"{where}.{attr_name}")

    visit(model.graph, "")
    axes = _channel_axes(model.graph, main_sources)
    activations: list[tuple[int, StatsNode]] = []
    positions = {id(node): i for i, node in enumerate(model.graph.node)}
    for at, node in main_nodes:
        if node.op_type not in ACTIVATIONS.get(node.domain if node.domain != "ai.onnx" else "", frozenset()):
            continue
        if not node.input or node.input[0] not in axes or not node.output or not node.output[0]:
            continue
        position = positions[id(node)]
        name = node.name or f"{node.op_type}_{position}"
        activations.append((at, StatsNode(
            "activation", name, stem_for(name), node.op_type, "", position, ids.node("", position),
            output=node.output[0], channel_axis=axes[node.input[0]], count_zeros=True,
        )))
    for offset, (at, node_stats) in enumerate(activations):  # each after the node before it in the graph
        found.insert(at + offset, node_stats)
    return found


def _dequantized(values: np.ndarray, node: StatsNode) -> np.ndarray:
    assert node.quantized_output is not None
    scale_src, zero_src = node.quantized_output
    scale = np.asarray(scale_src.load(), dtype=np.float32).reshape(-1)
    zero = np.asarray(zero_src.load(), dtype=np.float32).reshape(-1) if zero_src is not None else np.zeros(1, np.float32)
    if scale.size != 1 or zero.size != 1:  # the output of QLinearConv is per-tensor quantized by the spec
        raise OnnxvisError(f"the output scale of {node.name} is not one number")
    return (values.astype(np.float32) - zero[0]) * scale[0]


def compute_stats(
    inspector: "Inspector",
    nodes: list[StatsNode],
    images: Iterable["ImageLike"] = (),
    histograms: bool = False,
    each: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[NodeStats]:
    """The statistics of ``nodes``: weights, then, over ``images``, their outputs.

    Args:
        inspector: the model, opened once, with its preprocessing.
        nodes: from :func:`stats_nodes`.
        images: image paths (or PIL images); none: weights only.
        histograms: also make TensorBoard histograms of the weights and of the outputs.
        each: called with an image's name after each image.
        log: where a note about a node that cannot be measured goes.

    Raises:
        OnnxvisError: an image cannot be used, or the model cannot run on it.
    """
    results = [NodeStats(node) for node in nodes]
    for result in results:
        node = result.node
        if not node.has_weight:
            continue
        try:
            if node.kind == "conv":
                assert node.layer is not None
                weight = kernel_weights(node.layer)  # not the Inspector's cache: one layer's weight in memory at a time
            else:
                assert node.dense is not None
                weight = layer_weights(node.dense)  # (N, K): one row, one "filter", per output unit
        except OnnxvisError as exc:
            result.problem = f"weight: {exc}"
            if log:
                log(f"{node.name}: no weight statistics: {exc}")
            continue
        result.weight = weight_stats(weight)
        if histograms and weight.size:
            result.weight_histogram = histogram(weight)
    measured = [r for r in results if r.node.output]
    image_list = list(images)
    if not image_list or not measured:
        return results
    for result in measured:
        result.activations = RunningStats(result.node.channel_axis, result.node.count_zeros)
        if histograms:
            result.activation_histogram = RunningHistogram()
    tensors = list(dict.fromkeys(r.node.output for r in measured))
    for image in inspector.run(image_list, tensors):
        for result in measured:
            if result.activations is None:
                continue
            values = np.asarray(image.values[result.node.output])
            if result.node.quantized_output is not None:
                values = _dequantized(values, result.node)
            if values.dtype.kind != "f":
                result.problem = f"output: {values.dtype} values, not real numbers"
                result.activations = result.activation_histogram = None
                if log:
                    log(f"{result.node.name}: no activation statistics: its output holds {values.dtype} values")
                continue
            result.activations.add(values)
            if result.activation_histogram is not None:
                result.activation_histogram.add(values)
        if each:
            each(image.image.name)
    return results
