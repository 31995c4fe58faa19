"""``stats``' outputs: a text table, JSON lines, Model Explorer node data, TensorBoard histograms.

Every metric is a number per node (:data:`METRICS`), taken from the :class:`~onnxvis.analysis.nodestats.NodeStats`
of :func:`~onnxvis.analysis.nodestats.compute_stats`. The same numbers go into every format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from onnxvis.errors import printable
from onnxvis.write.formats import parse_format_list
from onnxvis.write.nodedata import (
    SEQUENTIAL_BLUE,
    SEQUENTIAL_BLUE_REVERSED,
    SEQUENTIAL_ORANGE,
    Colours,
    NodeMetric,
    share_thresholds,
    write_node_data,
)

if TYPE_CHECKING:
    from onnxvis.analysis.nodestats import NodeStats
    from onnxvis.outdir import OutputDir

__all__ = ["STATS_FORMATS", "Metric", "METRICS", "parse_stats_formats", "metric_values", "text_table", "jsonl_lines", "write_stats"]

STATS_FORMATS = ("text", "jsonl", "model-explorer", "tensorboard")


@dataclass(frozen=True)
class Metric:
    """One number per node.

    Attributes:
        explorer: its node-data file (key, title, colours).
        column: the text table's column heading.
        of: reads it from a node's statistics (None: the node has no such number).
        share: a share from 0 to 1 (the table shows a percentage).
    """

    explorer: NodeMetric
    column: str
    of: Callable[["NodeStats"], float | None]
    share: bool = False

    @property
    def key(self) -> str:
        return self.explorer.key


def _w(read: Callable) -> Callable[["NodeStats"], float | None]:
    return lambda s: read(s.weight) if s.weight is not None else None


def _a(read: Callable, zeros: bool = False, channels: bool = False) -> Callable[["NodeStats"], float | None]:
    def get(s: "NodeStats") -> float | None:
        act = s.activations
        if act is None or act.count == 0 or (zeros and not act.count_zeros) or (channels and act.channels is None):
            return None
        return read(act)

    return get


_RED = share_thresholds(0.05, 0.25)
_ZEROS = Colours(thresholds=((0.5, "#e8f5e9"), (0.8, "#fff59d"), (0.95, "#ffb74d"), (1.0, "#e53935")))
_SPARSE = Colours(thresholds=((0.0, "#f5f5f5"), (0.1, "#c6dbef"), (0.5, "#6baed6"), (1.0, "#08519c")))


def _m(key: str, title: str, colours: Colours, column: str, of, share: bool = False) -> Metric:
    return Metric(NodeMetric(key, f"onnxvis: {title}", colours), column, of, share)


METRICS: tuple[Metric, ...] = (
    _m("weight_norm", "weight L2 norm", SEQUENTIAL_BLUE, "norm", _w(lambda w: w.norm)),
    _m("weight_min", "weight min", SEQUENTIAL_BLUE_REVERSED, "min", _w(lambda w: w.min)),
    _m("weight_max", "weight max", SEQUENTIAL_BLUE, "max", _w(lambda w: w.max)),
    _m("weight_std", "weight std", SEQUENTIAL_BLUE, "std", _w(lambda w: w.std)),
    _m("weight_near_dead", "near-dead filters (share; norm < 1% of the layer's median)", _RED, "dead",
       _w(lambda w: w.near_dead_share), True),
    _m("weight_sparsity", "weight sparsity (share of zeros)", _SPARSE, "sparse", _w(lambda w: w.sparsity), True),
    _m("act_mean", "activation mean over the images", SEQUENTIAL_ORANGE, "mean", _a(lambda a: a.mean)),
    _m("act_std", "activation std over the images", SEQUENTIAL_ORANGE, "std", _a(lambda a: a.std)),
    _m("act_max", "activation max over the images", SEQUENTIAL_ORANGE, "max", _a(lambda a: a.max)),
    _m("act_zeros", "zeros after the activation (share)", _ZEROS, "zeros", _a(lambda a: a.zero_share, zeros=True), True),
    _m("act_dead_channels", "channels that never fire over the images (share)", _RED, "silent",
       _a(lambda a: a.dead_channels, channels=True), True),
)
_WEIGHT_METRICS = METRICS[:6]
_ACTIVATION_METRICS = METRICS[6:]


def parse_stats_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"text,jsonl"`` -> ``("text", "jsonl")``, checked."""
    return parse_format_list(formats, STATS_FORMATS, "text,model-explorer")


def metric_values(stats: Sequence["NodeStats"], metric: Metric) -> dict:
    """The metric's value per Model Explorer node (nodes Model Explorer does not show are left out)."""
    values = {}
    for s in stats:
        value = metric.of(s)
        if value is not None and s.node.explorer is not None and math.isfinite(value):
            values[s.node.explorer] = value
    return values


def _cell(value: float | None, share: bool) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if share:
        return f"{100 * value:.1f}%"
    return f"{value:.4g}"


def shown(stats: Sequence["NodeStats"]) -> list["NodeStats"]:
    """The nodes with something to show: a weight, activations, or a problem (without images an
    activation has nothing)."""
    return [s for s in stats if s.weight is not None or s.activations is not None or s.problem]


def text_table(stats: Sequence["NodeStats"], images: int) -> list[str]:
    """The table, one row per node in graph order: weights' columns, then activations' (with images)."""
    stats = shown(stats)
    names = [printable(s.node.name) for s in stats]
    width = max([4, *map(len, names)])
    ops = max([2, *(len(s.node.op_type) for s in stats)])
    shapes = [("x".join(map(str, s.node.layer.weight_shape)) if s.node.layer and s.node.layer.weight_shape else
               ("x".join(map(str, s.node.dense.shape)) if s.node.dense is not None and s.node.dense.shape else "")) for s in stats]
    shape_w = max([6, *map(len, shapes)])
    metrics = list(_WEIGHT_METRICS) + (list(_ACTIVATION_METRICS) if images else [])
    head = f"{'node':<{width}}  {'op':<{ops}}  {'weight':<{shape_w}}" + "".join(f" {m.column:>9}" for m in metrics)
    rows = [head]
    if images:
        split = len(f"{'node':<{width}}  {'op':<{ops}}  {'weight':<{shape_w}}") + 10 * len(_WEIGHT_METRICS)
        rows.insert(0, " " * split + f"  activations over {images} image{'s' if images != 1 else ''}:")
    for s, name, shape in zip(stats, names, shapes, strict=True):
        row = f"{name:<{width}}  {s.node.op_type:<{ops}}  {shape:<{shape_w}}" + "".join(f" {_cell(m.of(s), m.share):>9}" for m in metrics)
        if s.problem:
            row += f"  ({printable(s.problem)[:120]})"
        rows.append(row)
    return rows


def jsonl_lines(stats: Sequence["NodeStats"]) -> list[str]:
    """One JSON object per node: names, ids, and every metric it has (null where it has none)."""
    lines = []
    for s in shown(stats):
        node = s.node
        item: dict[str, object] = {
            "name": node.name,
            "op": node.op_type,
            "kind": node.kind,
            "layer": node.layer.index if node.layer is not None else None,
            "graph_path": node.path,
            "explorer_graph": node.explorer.graph if node.explorer else None,
            "explorer_node": node.explorer.node if node.explorer else None,
            "tensor": node.output or None,
        }
        if s.weight is not None:
            item["weight_filters"] = int(s.weight.norms.size)
            item["weight_near_dead_filters"] = s.weight.near_dead
        if s.activations is not None:
            item["act_images"] = s.activations.images
            item["act_values"] = s.activations.count
            item["act_channels"] = s.activations.channels
        for metric in METRICS:
            value = metric.of(s)
            item[metric.key] = value if value is not None and math.isfinite(value) else None
        if s.problem:
            item["problem"] = s.problem
        lines.append(json.dumps(item, ensure_ascii=False, allow_nan=False))
    return lines


def write_stats(stats: Sequence["NodeStats"], out: "OutputDir", formats: Sequence[str]) -> list[Path]:
    """Write the file formats (jsonl, model-explorer, tensorboard) of ``formats``; returns the paths written."""
    written: list[Path] = []
    if "jsonl" in formats:
        text = "".join(line + "\n" for line in jsonl_lines(stats))
        written.append(out.write_bytes(out.path_for("stats", ".jsonl"), text.encode()))
    if "model-explorer" in formats:
        for metric in METRICS:
            path = write_node_data(out, metric.explorer, metric_values(stats, metric))
            if path is not None:
                written.append(path)
    if "tensorboard" in formats:
        from onnxvis.write.tensorboard import EventFile

        events = EventFile()
        for s in stats:
            if s.weight_histogram is not None:
                events.add_histogram(f"weights/{s.node.stem}", s.weight_histogram)
        for s in stats:
            if s.activation_histogram is not None and s.activation_histogram.num:
                events.add_histogram(f"activations/{s.node.stem}", s.activation_histogram.result())
        written.append(events.save(out, "stats"))
    return written
