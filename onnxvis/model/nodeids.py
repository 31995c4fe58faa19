"""The node ids that Google's Model Explorer gives an ONNX file, through its model-explorer-onnx adapter.

Model Explorer's "node data" files (one value per node, coloured on the graph) are keyed by node id,
so onnxvis must name nodes exactly as the adapter does. This module reproduces the rule of
**model-explorer-onnx 0.4.2** (with onnx-ir 1.1), reading only the graph, without importing
onnx_ir (which the adapter uses) or onnx:

1. onnx_ir's ``NameFixPass`` gives unnamed nodes a name and makes duplicate names unique: an
   unnamed node is called ``node``, then ``node_1``, ``node_2``, ...; a repeated name ``conv``
   becomes ``conv_1``. Nodes are visited in graph order, each node before the nodes of its
   subgraphs; names are unique within one graph, and the counters are shared by the whole model.
   Values (tensors) are fixed alike, inside their scope: inputs, outputs and initializers first.
2. The adapter's own passes: the nodes of an ``If``'s branches move into the ``If``'s graph as
   ``<if>/<branch>/<node>``, beside a ``<if>_phi`` node; a node with other subgraphs (Loop, Scan)
   that reads outer values gets a ``<node>_capture`` node.
3. Graphs: the main graph is called by its name (``<main>`` when it has none); the body of a node
   of the main graph is a graph of its own, ``<node>/<attribute>``; functions are
   ``[function]<domain>::<name>``. Inputs, initializers and outputs are nodes called
   ``[value] <name>``. Older adapters said ``[io]`` and ``[initializer]``: files made for 0.4.2
   do not line up with them.

Node ids are asked for by onnxvis's own address of a node: the path of its graph as
:func:`onnxvis.model.layers.find_conv_layers` writes it (``""`` for the main graph) and its position
in that graph. onnxvis's own layer names (``<op>_<index>`` for an unnamed conv) are not changed.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from onnxvis.model.graph import GRAPH_ATTRIBUTE_TYPES

if TYPE_CHECKING:
    import onnx

__all__ = ["ADAPTER_VERSION", "VALUE_PREFIX", "MAIN_GRAPH_FALLBACK", "ExplorerNode", "ExplorerIds", "explorer_ids"]

ADAPTER_VERSION = "0.4.2"
"""The model-explorer-onnx version whose node ids this module reproduces."""
VALUE_PREFIX = "[value] "
MAIN_GRAPH_FALLBACK = "<main>"
_GRAPH, _GRAPHS = GRAPH_ATTRIBUTE_TYPES


@dataclass(frozen=True)
class ExplorerNode:
    """A node of Model Explorer's graph: the graph's id and the node's id in it."""

    graph: str
    node: str


class _Value:
    """One tensor, as onnx_ir sees it: a name that NameFixPass may change."""

    __slots__ = ("name", "original", "owner")

    def __init__(self, name: str, owner: "_Graph | None") -> None:
        self.name = name
        self.original = name  # the name in the file, by which onnxvis asks
        self.owner = owner  # the graph that defines it (None: read but defined nowhere)


@dataclass(eq=False)
class _Node:
    proto: "onnx.NodeProto | None"  # None for the nodes the adapter adds
    name: str
    op_type: str
    domain: str
    inputs: list[_Value | None] = field(default_factory=list)
    outputs: list[_Value] = field(default_factory=list)
    subgraphs: list[tuple[str, int, "_Graph"]] = field(default_factory=list)  # (attribute name, type, graph)
    address: tuple[str, int] | None = None  # onnxvis's (graph path, position)


@dataclass(eq=False)
class _Graph:
    name: str | None
    path: str  # onnxvis's path of this graph
    inputs: list[_Value] = field(default_factory=list)
    outputs: list[_Value] = field(default_factory=list)
    initializers: list[_Value] = field(default_factory=list)
    nodes: list[_Node] = field(default_factory=list)
    implicit: list[_Value] = field(default_factory=list)  # outer values its nodes read


# ------------------------------------------------------------------------------------------------
# Reading the protos into onnx_ir's shape: values resolved by scope, as onnx_ir's deserializer does
# ------------------------------------------------------------------------------------------------


def _read_graph(proto: "onnx.GraphProto", path: str, scopes: list[dict[str, _Value]], named: bool) -> _Graph:
    graph = _Graph(proto.name if (named and proto.HasField("name")) else None, path)
    values: dict[str, _Value] = {}
    for info in proto.input:
        value = _Value(info.name, graph)
        graph.inputs.append(value)
        values[info.name] = value
    scopes.append(values)
    seen_initializers: set[str] = set()
    for tensor in proto.initializer:
        if not tensor.name or tensor.name in seen_initializers:
            continue
        seen_initializers.add(tensor.name)
        known = values.get(tensor.name)
        if known is None:
            known = values[tensor.name] = _Value(tensor.name, graph)
        graph.initializers.append(known)
    for node in proto.node:  # every output is declared before any node reads it (unsorted graphs)
        for name in node.output:
            if name and name not in values:
                values[name] = _Value(name, graph)
    for position, node_proto in enumerate(proto.node):
        graph.nodes.append(_read_node(node_proto, graph, position, scopes))
    for info in proto.output:
        output = values.get(info.name)
        graph.outputs.append(output if output is not None else _Value(info.name, graph))
    scopes.pop()
    return graph


def _resolve(name: str, scopes: list[dict[str, _Value]]) -> _Value:
    for scope in reversed(scopes):
        if name in scope:
            return scope[name]
    value = scopes[-1][name] = _Value(name, None)  # read but defined nowhere
    return value


def _read_node(proto: "onnx.NodeProto", graph: _Graph, position: int, scopes: list[dict[str, _Value]]) -> _Node:
    node = _Node(proto, proto.name, proto.op_type, proto.domain, address=(graph.path, position))
    node.inputs = [_resolve(name, scopes) if name else None for name in proto.input]
    label = proto.name or f"{proto.op_type}_{position}"  # onnxvis's path of a subgraph (see find_conv_layers)
    where = f"{graph.path}/{label}" if graph.path else label
    for attr in proto.attribute:
        if attr.type == _GRAPH:
            node.subgraphs.append((attr.name, _GRAPH, _read_graph(attr.g, f"{where}.{attr.name}", scopes, named=True)))
        elif attr.type == _GRAPHS:
            for j, sub in enumerate(attr.graphs):
                node.subgraphs.append((attr.name, _GRAPHS, _read_graph(sub, f"{where}.{attr.name}[{j}]", scopes, named=True)))
    node.outputs = [scopes[-1][name] if name else _Value("", graph) for name in proto.output]
    return node


# ------------------------------------------------------------------------------------------------
# onnx_ir 1.1's NameFixPass
# ------------------------------------------------------------------------------------------------


def _unique(preferred: str, used: set[str], counter: collections.Counter[str]) -> str:
    name = preferred
    while name in used:
        counter[preferred] += 1
        name = f"{preferred}_{counter[preferred]}"
    used.add(name)
    return name


class _NameFix:
    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.values: list[set[str]] = [set()]
        self.nodes: list[set[str]] = [set()]
        self.value_counter: collections.Counter[str] = collections.Counter()
        self.node_counter: collections.Counter[str] = collections.Counter()

    def value(self, value: _Value) -> None:
        if id(value) in self.seen:
            return
        used = self.values[-1]
        if not value.name:
            value.name = _unique("v", used, self.value_counter)
        elif value.name in used:
            value.name = _unique(value.name, used, self.value_counter)
        else:
            used.add(value.name)
        self.seen.add(id(value))

    def graph(self, graph: _Graph) -> None:
        self.values.append(set(self.values[-1]))
        self.nodes.append(set())
        for value in (*graph.inputs, *graph.outputs, *graph.initializers):
            self.value(value)
        for node in graph.nodes:
            used = self.nodes[-1]
            if not node.name:
                node.name = _unique("node", used, self.node_counter)
            elif node.name in used:
                node.name = _unique(node.name, used, self.node_counter)
            else:
                used.add(node.name)
            for read in node.inputs:
                if read is not None:
                    self.value(read)
            for made in node.outputs:
                self.value(made)
            for _, _, sub in node.subgraphs:
                self.graph(sub)
        self.values.pop()
        self.nodes.pop()


# ------------------------------------------------------------------------------------------------
# The adapter's passes (model_explorer_onnx/_passes.py) and graphs (main.py)
# ------------------------------------------------------------------------------------------------


def _all_nodes(graph: _Graph) -> Iterator[_Node]:
    """onnx_ir's Graph.all_nodes(): each node, then the nodes of its subgraphs. The list is read as it
    is changed, as onnx_ir's linked list is: nodes added after the current one are visited too."""
    i = 0
    while i < len(graph.nodes):
        node = graph.nodes[i]
        yield node
        for _, _, sub in list(node.subgraphs):
            yield from _all_nodes(sub)
        i += 1


def _owner_of(node: _Node, root: _Graph) -> _Graph:
    for graph in _graphs_of(root):
        if any(n is node for n in graph.nodes):
            return graph
    raise AssertionError("node not found in its model")


def _graphs_of(graph: _Graph) -> Iterator[_Graph]:
    yield graph
    for node in graph.nodes:
        for _, _, sub in node.subgraphs:
            yield from _graphs_of(sub)


def _implicit_uses(main: _Graph) -> None:
    """ImplicitUseAnalysisPass: for each subgraph, the values from outside it that its nodes read."""

    def visit(node: _Node, stack: list[_Graph]) -> None:
        for _, _, sub in node.subgraphs:
            stack.append(sub)
            for inner in sub.nodes:
                for value in inner.inputs:
                    if value is not None and value.owner is not sub:
                        for graph in reversed(stack):
                            if graph is value.owner:
                                break
                            graph.implicit.append(value)
                visit(inner, stack)
            stack.pop()

    for node in main.nodes:
        visit(node, [])


def _is_if(node: _Node) -> bool:
    return node.op_type == "If" and node.domain == ""


def _add_captures(main: _Graph) -> None:
    """AddCaptureNodePass: a ``<node>_capture`` node before each non-If node whose subgraphs read outer values."""
    for node in list(_all_nodes(main)):
        if not node.subgraphs or _is_if(node):
            continue
        if any(sub.implicit for _, _, sub in node.subgraphs):
            graph = _owner_of(node, main)
            at = next(i for i, n in enumerate(graph.nodes) if n is node)
            graph.nodes.insert(at, _Node(None, f"{node.name}_capture", "(Capture)", ""))


def _embed_ifs(main: _Graph) -> None:
    """EmbedIfPass: an If's branch nodes move after it, renamed ``<if>/<branch>/<node>``, then ``<if>_phi``."""
    for node in _all_nodes(main):
        if not _is_if(node):
            continue
        branches = [(name, sub) for name, kind, sub in node.subgraphs if kind == _GRAPH]
        node.subgraphs = [s for s in node.subgraphs if s[1] != _GRAPH]
        if not branches:
            continue
        graph = _owner_of(node, main)
        moved: list[_Node] = []
        for attr_name, sub in branches:
            for inner in sub.nodes:
                inner.name = f"{node.name}/{attr_name}/{inner.name}"
            moved.extend(sub.nodes)
            sub.nodes = []
        moved.append(_Node(None, f"{node.name}_phi", "(Phi)", ""))
        at = next(i for i, n in enumerate(graph.nodes) if n is node) + 1
        graph.nodes[at:at] = moved


class ExplorerIds:
    """The node ids of Model Explorer's graphs of one model (model-explorer-onnx 0.4.2's rule).

    Attributes:
        main: the id of the main graph.
        graphs: graph id -> the ids of its nodes (inputs, op nodes, initializers, outputs).
    """

    def __init__(self, main: str, graphs: dict[str, list[str]], nodes: dict[tuple[str, int], ExplorerNode],
                 values: dict[tuple[str, str], ExplorerNode], producers: dict[tuple[str, str], ExplorerNode]) -> None:
        self.main = main
        self.graphs = graphs
        self._nodes = nodes
        self._values = values
        self._producers = producers

    def node(self, path: str, position: int) -> ExplorerNode | None:
        """The Model Explorer node of the node at ``position`` of the graph at onnxvis's ``path``
        (``""``: the main graph); None when Model Explorer does not show that graph."""
        return self._nodes.get((path, position))

    def producer(self, tensor: str, path: str = "") -> ExplorerNode | None:
        """The Model Explorer node of the node that computes ``tensor`` (a conv layer's ``output_name``,
        any activation) in the graph at ``path``; None when there is none or it is not shown."""
        return self._producers.get((path, tensor))

    def value(self, name: str, path: str = "") -> ExplorerNode | None:
        """The ``[value] NAME`` node of an input, initializer or output called ``name`` of the graph at ``path``."""
        return self._values.get((path, name))


def explorer_ids(model: "onnx.ModelProto") -> ExplorerIds:
    """Model Explorer's node ids for ``model`` (its structure: initializer data is not read)."""
    main = _read_graph(model.graph, "", [], named=True)
    _NameFix().graph(main)
    functions = []
    for function in model.functions:
        fixer = _NameFix()  # each function is fixed on its own, with fresh counters
        graph = _Graph(None, "")
        scope: dict[str, _Value] = {}
        graph.inputs = [scope.setdefault(name, _Value(name, graph)) for name in function.input]
        for node_proto in function.node:
            for name in node_proto.output:
                if name:
                    scope.setdefault(name, _Value(name, graph))
        for node_proto in function.node:
            node = _Node(None, node_proto.name, node_proto.op_type, node_proto.domain)
            node.inputs = [_resolve(n, [scope]) if n else None for n in node_proto.input]
            node.outputs = [scope[n] if n else _Value("", graph) for n in node_proto.output]
            graph.nodes.append(node)
        graph.outputs = [scope[name] if name in scope else _Value(name, graph) for name in function.output]
        fixer.graph(graph)
        overload = getattr(function, "overload", "")
        functions.append((f"[function]{function.domain}::{function.name}" + (f"::{overload}" if overload else ""), graph))
    _implicit_uses(main)
    _add_captures(main)
    _embed_ifs(main)

    graphs: dict[str, list[str]] = {}
    nodes: dict[tuple[str, int], ExplorerNode] = {}
    values: dict[tuple[str, str], ExplorerNode] = {}
    producers: dict[tuple[str, str], ExplorerNode] = {}

    def shown(graph: _Graph, graph_id: str, addressed: bool = True) -> None:
        ids = graphs.setdefault(graph_id, [])
        known = set(ids)
        for group in (graph.inputs, graph.initializers, graph.outputs):
            for value in group:
                value_node = ExplorerNode(graph_id, VALUE_PREFIX + value.name)
                if addressed:
                    values.setdefault((graph.path, value.original), value_node)
                if value_node.node not in known:  # an initializer listed as an input too is one node
                    ids.append(value_node.node)
                    known.add(value_node.node)
        for op in graph.nodes:
            if op.name not in known:
                ids.append(op.name)
                known.add(op.name)
            if op.address is not None and addressed:
                nodes[op.address] = ExplorerNode(graph_id, op.name)
                for made in op.outputs:
                    if made.original:
                        producers[(op.address[0], made.original)] = ExplorerNode(graph_id, op.name)

    main_id = main.name if main.name is not None else MAIN_GRAPH_FALLBACK
    shown(main, main_id)
    for node in main.nodes:  # each body of a main-graph node (after the passes) is a graph of its own
        for attr_name, kind, sub in node.subgraphs:
            if kind == _GRAPH:
                shown(sub, f"{node.name}/{attr_name}")
    for graph_id, graph in functions:  # onnxvis does not look inside functions: listed, not addressed
        shown(graph, graph_id, addressed=False)
    return ExplorerIds(main_id, graphs, nodes, values, producers)
