"""Run onnxruntime on the smallest graph that yields the requested tensors.

This is the only module that imports onnxruntime. A feature map of conv1 needs conv1 and nothing
else, so the graph handed to onnxruntime holds only the ancestors of the requested tensors and
only the initializers they read. Every requested tensor is a graph output, so no optimisation can
fuse it away (a Conv followed by Relu stays a Conv output).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    import onnx

    from onnxvis.model import Model


def required_nodes(graph: "onnx.GraphProto", targets: Iterable[str]) -> tuple[list["onnx.NodeProto"], set[str]]:
    """The nodes (in graph order) that compute ``targets``, and every tensor name they read.

    Names that subgraphs read from the outer scope count as read by the node that holds them.
    """
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    needed: set[int] = set()
    read: set[str] = set()
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name in read:
            continue
        read.add(name)
        i = producers.get(name)
        if i is None or i in needed:
            continue
        needed.add(i)
        stack.extend(n for n in graph.node[i].input if n)
        stack.extend(_outer_names(graph.node[i]))
    return [graph.node[i] for i in sorted(needed)], read


def _outer_names(node: "onnx.NodeProto") -> set[str]:
    """Names a node's subgraphs use without defining them (ONNX outer-scope references)."""
    from onnx import AttributeProto

    names: set[str] = set()

    def scan(graph: "onnx.GraphProto") -> None:
        defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
        for sub_node in graph.node:
            names.update(n for n in sub_node.input if n and n not in defined)
            defined.update(sub_node.output)
            for attr in sub_node.attribute:
                if attr.type == AttributeProto.GRAPH:
                    scan(attr.g)
                elif attr.type == AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        scan(g)

    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            scan(attr.g)
        elif attr.type == AttributeProto.GRAPHS:
            for g in attr.graphs:
                scan(g)
    return names


def minimal_model(model: "Model", targets: list[str]) -> "onnx.ModelProto":
    """A model whose outputs are ``targets``, holding only the nodes and initializers they need."""
    from onnx import helper

    graph = model.graph
    nodes, read = required_nodes(graph, targets)
    initializers = [model.initializer_proto(t.name) for t in graph.initializer if t.name in read]
    init_names = {t.name for t in initializers}
    inputs = [i for i in graph.input if i.name in read and i.name not in init_names]
    known = {v.name: v for v in list(graph.value_info) + list(graph.output)}
    outputs = [known[t] if t in known else helper.make_empty_tensor_value_info(t) for t in targets]
    small = helper.make_graph(nodes, graph.name or "onnxvis", inputs, outputs, initializers)
    small.value_info.extend(v for v in graph.value_info if v.name in read and v.name not in set(targets))
    result = helper.make_model(small, opset_imports=list(model.proto.opset_import))
    result.ir_version = model.proto.ir_version
    result.functions.extend(model.proto.functions)
    return result


def needed_inputs(model: "Model", targets: list[str]) -> list["onnx.ValueInfoProto"]:
    """The runtime inputs (graph inputs that are not initializers) needed to compute ``targets``."""
    graph = model.graph
    _, read = required_nodes(graph, targets)
    return [i for i in graph.input if i.name in read and not model.has_initializer(i.name)]


def _session_options():
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One run per process: full optimisation and a memory arena cost more than they save.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.log_severity_level = 3
    return options


def run_tensors(model: "Model", feeds: Mapping[str, np.ndarray], targets: list[str]) -> dict[str, np.ndarray]:
    """Compute the named tensors of the main graph for the given inputs.

    Args:
        model: the opened model.
        feeds: arrays for the graph inputs the targets depend on.
        targets: tensor names, e.g. the conv layers' ``output_name``.

    Returns:
        name -> array, in the order of ``targets``.

    Raises:
        OnnxvisError: an input is missing, or onnxruntime refuses the model or the input.
    """
    import onnxruntime as ort

    if not targets:
        return {}
    targets = list(dict.fromkeys(targets))
    missing = [i.name for i in needed_inputs(model, targets) if i.name not in feeds]
    if missing:
        raise OnnxvisError(f"the model needs input {missing[0]!r} to compute these feature maps; it cannot be fed from an image")
    small = minimal_model(model, targets)
    used_inputs = {i.name for i in small.graph.input}
    try:
        session = ort.InferenceSession(small.SerializeToString(), _session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxvisError(f"onnxruntime cannot load the part of {model.path.name} that computes these layers: {_first_line(exc)}") from None
    try:
        values = session.run(targets, {k: v for k, v in feeds.items() if k in used_inputs})
    except Exception as exc:
        raise OnnxvisError(f"onnxruntime cannot run {model.path.name} on this input: {_first_line(exc)}; check the input size and preprocessing") from None
    return dict(zip(targets, values))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
