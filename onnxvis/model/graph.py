"""Helpers for reading an ONNX graph, shared by the modules that walk it.

The table of conv-like op types, the walk into If / Loop / Scan bodies, the names a subgraph reads
from outside, the consumer map, name lookups that follow ONNX's outer scope (:class:`GraphIndex`),
and the numpy types of ONNX's tensor element types. Nothing here reads tensor data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

    from onnxvis.model.file import Model

__all__ = [
    "CONV_WEIGHT_INPUT",
    "CONV_DOMAINS",
    "CONV_BIAS_INPUT",
    "CONV_OPS",
    "GRAPH_ATTRIBUTE_TYPES",
    "subgraphs",
    "outer_names",
    "consumers",
    "downstream",
    "GraphIndex",
    "np_dtype",
    "dtype_name",
]

# op type -> index of its weight input. Standard ops count in the default domain; FusedConv and
# NhwcConv only in com.microsoft, where onnxruntime also defines a QLinearConv.
CONV_WEIGHT_INPUT = {
    "Conv": 1,
    "ConvTranspose": 1,
    "QLinearConv": 3,
    "ConvInteger": 1,
    "FusedConv": 1,
    "NhwcConv": 1,
}
# op type -> the domains in which it is a conv layer
CONV_DOMAINS = {
    "Conv": ("", "ai.onnx"),
    "ConvTranspose": ("", "ai.onnx"),
    "QLinearConv": ("", "ai.onnx", "com.microsoft"),
    "ConvInteger": ("", "ai.onnx"),
    "FusedConv": ("com.microsoft",),
    "NhwcConv": ("com.microsoft",),
}
# op type -> index of its optional bias input
CONV_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "FusedConv": 2, "NhwcConv": 2, "QLinearConv": 8}
CONV_OPS = frozenset(CONV_WEIGHT_INPUT)

# onnx.AttributeProto.GRAPH and GRAPHS: the attribute types that hold subgraphs (If, Loop, Scan).
# Spelled as numbers so that walking a graph does not import onnx.
_GRAPH = 5
_GRAPHS = 10
GRAPH_ATTRIBUTE_TYPES = (_GRAPH, _GRAPHS)


def subgraphs(node: "onnx.NodeProto") -> Iterator[tuple[str, "onnx.GraphProto"]]:
    """The subgraphs a node holds, each with its attribute name (``then_branch``, ``body[0]`` for a list)."""
    for attr in node.attribute:
        if attr.type == _GRAPH:
            yield attr.name, attr.g
        elif attr.type == _GRAPHS:
            for j, sub in enumerate(attr.graphs):
                yield f"{attr.name}[{j}]", sub


def outer_names(node: "onnx.NodeProto") -> set[str]:
    """Names a node's subgraphs use without defining them (ONNX outer-scope references)."""
    names: set[str] = set()

    def scan(graph: "onnx.GraphProto") -> None:
        defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
        for sub_node in graph.node:
            names.update(n for n in sub_node.input if n and n not in defined)
            defined.update(sub_node.output)
            for _, sub in subgraphs(sub_node):
                scan(sub)

    for _, sub in subgraphs(node):
        scan(sub)
    return names


def consumers(graph: "onnx.GraphProto") -> dict[str, list["onnx.NodeProto"]]:
    """Tensor name -> the nodes of ``graph`` that read it, in graph order."""
    out: dict[str, list["onnx.NodeProto"]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                out.setdefault(name, []).append(node)
    return out


def downstream(graph: "onnx.GraphProto", sources: Iterable[str]) -> set[str]:
    """The tensors of ``graph`` computed from ``sources`` (the sources included), through any node
    that reads one of them, in a subgraph too. ONNX lists nodes in topological order, so one pass does."""
    reached = set(sources)
    for node in graph.node:
        if any(name in reached for name in node.input) or (node.attribute and outer_names(node) & reached):
            reached.update(name for name in node.output if name)
    return reached


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
        self.depth: int = 0 if parent is None else parent.depth + 1
        self._consumers: dict[str, list["onnx.NodeProto"]] | None = None
        self.traced: dict[str, object] = {}  # node outputs already traced (see onnxvis.model.tracing)

    @property
    def is_main(self) -> bool:
        return self.parent is None

    def consumers(self, name: str) -> list["onnx.NodeProto"]:
        """Nodes of this graph that read ``name``."""
        if self._consumers is None:
            self._consumers = consumers(self.graph)
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


def dtype_name(data_type: int) -> str:
    """The numpy name of an ONNX element type (``float16``, ``int4``), else its ONNX name."""
    from onnxvis.model.proto import dtype_name_of

    return dtype_name_of(data_type)


def np_dtype(data_type: int) -> np.dtype:
    """The numpy type of an ONNX element type; raises for a type numpy does not have."""
    from onnxvis.model.proto import np_dtype_of

    return np_dtype_of(data_type)


def required_nodes(
    graph: "onnx.GraphProto", targets: Iterable[str], given: Iterable[str] = ()
) -> tuple[list["onnx.NodeProto"], set[str]]:
    """The nodes (in graph order) that compute ``targets``, and every tensor name they read.

    Names that subgraphs read from the outer scope count as read by the node that holds them.
    Tensors in ``given`` are fed from outside, so the walk stops there (the nodes that would
    compute them are not needed).
    """
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    stops = set(given)
    needed: set[int] = set()
    read: set[str] = set()
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name in read:
            continue
        read.add(name)
        i = None if name in stops else producers.get(name)
        if i is None or i in needed:
            continue
        needed.add(i)
        stack.extend(n for n in graph.node[i].input if n)
        stack.extend(outer_names(graph.node[i]))
    return [graph.node[i] for i in sorted(needed)], read


def needed_inputs(model: "Model", targets: list[str]) -> list["onnx.ValueInfoProto"]:
    """The runtime inputs (graph inputs that are not initializers) needed to compute ``targets``."""
    graph = model.graph
    _, read = required_nodes(graph, targets)
    return [i for i in graph.input if i.name in read and not model.has_initializer(i.name)]
