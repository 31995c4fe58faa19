"""Model Explorer's "node data" files: one number per node of the graph, with how to colour it.

Google's Model Explorer (``ai-edge-model-explorer``, with the ``model-explorer-onnx`` adapter) opens
an ONNX model as a graph and colours its nodes from such files (``--node_data_paths=...``). The
format is ``model_explorer.node_data_builder``'s ``ModelNodeData``: for each graph id, a
``GraphNodeData`` of ``results`` (node id -> ``{"value": number}``), a ``name``, and either
``thresholds`` (a colour for the values up to each threshold) or a ``gradient`` (colours at stops
from 0, the smallest value, to 1, the largest).

Any command that measures something per node writes it with :func:`write_node_data`: give it a
:class:`NodeMetric` (file name, title, colours) and the values by :class:`~onnxvis.model.nodeids.ExplorerNode`
(see :func:`onnxvis.model.nodeids.explorer_ids` for the node ids the adapter gives each node).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxvis.model.nodeids import ExplorerNode
    from onnxvis.outdir import OutputDir

__all__ = [
    "Colours", "NodeMetric", "SEQUENTIAL_BLUE", "SEQUENTIAL_BLUE_REVERSED", "SEQUENTIAL_ORANGE", "DIVERGING",
    "SQNR_DB", "share_thresholds", "node_data", "node_data_bytes", "write_node_data", "node_data_name",
]


@dataclass(frozen=True)
class Colours:
    """How Model Explorer colours a metric's nodes: a gradient, or thresholds (not both).

    Attributes:
        gradient: (stop, colour) pairs, stops from 0 (the smallest value of the file) to 1 (the largest).
        thresholds: (value, colour) pairs, increasing: a node takes the colour of the first threshold
            its value does not exceed; a value above the last one stays uncoloured.
    """

    gradient: tuple[tuple[float, str], ...] = ()
    thresholds: tuple[tuple[float, str], ...] = ()

    def __post_init__(self) -> None:
        if bool(self.gradient) == bool(self.thresholds):
            raise ValueError("give either a gradient or thresholds")
        if self.gradient and (self.gradient[0][0] != 0 or self.gradient[-1][0] != 1):
            raise ValueError("a gradient runs from stop 0 to stop 1")


# ColorBrewer's sequential and diverging scales (Blues, Oranges, RdBu), light for small values.
SEQUENTIAL_BLUE = Colours(gradient=((0.0, "#f7fbff"), (0.5, "#6baed6"), (1.0, "#08306b")))
SEQUENTIAL_BLUE_REVERSED = Colours(gradient=((0.0, "#08306b"), (0.5, "#6baed6"), (1.0, "#f7fbff")))
SEQUENTIAL_ORANGE = Colours(gradient=((0.0, "#fff5eb"), (0.5, "#fd8d3c"), (1.0, "#7f2704")))
DIVERGING = Colours(gradient=((0.0, "#b2182b"), (0.5, "#f7f7f7"), (1.0, "#2166ac")))
# Signal-to-quantisation-noise ratio in dB, on an absolute scale diverging at 20 dB (a tenth of the
# signal's amplitude as error): red where a quantised or converted layer is far from the original,
# blue where it is faithful.
SQNR_DB = Colours(thresholds=(
    (0.0, "#67001f"), (10.0, "#d6604d"), (20.0, "#fddbc7"), (30.0, "#d1e5f0"), (40.0, "#4393c3"), (math.inf, "#053061"),
))


def share_thresholds(warn: float, bad: float, *, ok: str = "#e8f5e9", mild: str = "#ffcdd2", strong: str = "#e57373",
                     worst: str = "#b71c1c") -> Colours:
    """Thresholds for a share from 0 to 1 where more is worse: 0 pale green, up to ``warn`` pale red,
    up to ``bad`` red, above it dark red."""
    return Colours(thresholds=((0.0, ok), (warn, mild), (bad, strong), (1.0, worst)))


@dataclass(frozen=True)
class NodeMetric:
    """One node-data file: what it measures and how it is coloured.

    Attributes:
        key: the file's name, ``nodedata_<key>.json``, e.g. "weight_near_dead".
        title: the name Model Explorer shows for the data, e.g. "onnxvis: near-dead filters (share)".
        colours: its gradient or thresholds.
    """

    key: str
    title: str
    colours: Colours


def _value(v: float) -> float | int:
    """A finite number as JSON shows it (6 significant digits, since Model Explorer prints it on the node)."""
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return int(v)
    rounded = float(f"{float(v):.6g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


def node_data(metric: NodeMetric, values: Mapping["ExplorerNode", float]) -> dict:
    """The ModelNodeData JSON object of ``values`` (NaN and infinite values are left out: JSON has none).

    A gradient over values that are all equal would colour nothing (Model Explorer divides by the
    range), so such a file gets one threshold at that value, in the gradient's middle colour.
    """
    graphs: dict[str, dict] = {}
    for node, value in values.items():
        if value is None or not math.isfinite(float(value)):
            continue
        graphs.setdefault(node.graph, {"results": {}})["results"][node.node] = {"value": _value(value)}
    numbers = [r["value"] for g in graphs.values() for r in g["results"].values()]
    colours = metric.colours
    for data in graphs.values():
        data["name"] = metric.title
        if colours.gradient and len(set(numbers)) > 1:
            data["gradient"] = [{"stop": stop, "bgColor": colour} for stop, colour in colours.gradient]
        elif colours.gradient:
            middle = colours.gradient[len(colours.gradient) // 2][1]
            data["thresholds"] = [{"value": numbers[0], "bgColor": middle}]
        else:
            data["thresholds"] = [{"value": _threshold(limit), "bgColor": colour} for limit, colour in colours.thresholds]
    return graphs


def _threshold(limit: float) -> float:
    return _value(limit) if math.isfinite(limit) else 1e308  # JSON has no infinity: the largest double instead


def node_data_name(metric: NodeMetric) -> str:
    return f"nodedata_{metric.key}"


def node_data_bytes(metric: NodeMetric, values: Mapping["ExplorerNode", float]) -> bytes | None:
    """The file :func:`write_node_data` writes, made in memory; None when no value is finite."""
    data = node_data(metric, values)
    if not data:
        return None
    return (json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_node_data(out: "OutputDir", metric: NodeMetric, values: Mapping["ExplorerNode", float]) -> Path | None:
    """Write ``nodedata_<key>.json`` into the output folder (atomically); None when no value is finite."""
    data = node_data_bytes(metric, values)
    return None if data is None else out.write_bytes(out.path_for(node_data_name(metric), ".json"), data)
