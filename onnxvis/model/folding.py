"""Compute a tensor of the graph from stored data with onnx's reference evaluator.

A weight computed by the graph (ConstantOfShape of a stored shape, a Mul of two stored tensors, a
sparse Constant, a Reshape of a stored weight) is folded only when every node that computes it
reads stored data (no run-time input, no random op) and has a reference implementation
(:func:`unfoldable` says why not). Its shape comes from onnx's shape inference, reading only small
leaves (:func:`infer_shape`), so that a listing does not decode big weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.model.graph import GRAPH_ATTRIBUTE_TYPES, GraphIndex, np_dtype

if TYPE_CHECKING:
    import onnx

    from onnxvis.model.file import Model

__all__ = ["MAX_FOLD_NODES", "run_node", "ancestors", "unfoldable", "leaf_bytes", "infer_shape", "evaluate"]

# Ops whose output is random: folding them would draw numbers the model never uses.
_RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
# A weight computed by more nodes than this is not folded.
MAX_FOLD_NODES = 500
# Leaves smaller than this are given to shape inference with their data (shapes, axes, fill values).
_SMALL_LEAF_BYTES = 1 << 16


def _opsets(model: "Model") -> dict[str, int]:
    return {(o.domain if o.domain != "ai.onnx" else ""): o.version for o in model.proto.opset_import}


def run_node(model: "Model", node: "onnx.NodeProto", values: list[np.ndarray | None]) -> np.ndarray:
    """Evaluate one node with onnx's reference implementation; returns its first output."""
    from onnx.reference import ReferenceEvaluator

    from onnxvis.model.proto import as_onnx

    names = [name for name in node.input]
    feeds = {name: value for name, value in zip(names, values, strict=True) if name and value is not None}
    try:
        evaluator = ReferenceEvaluator(as_onnx(node), opsets=_opsets(model))
        (first, *_) = evaluator.run(None, feeds)  # a list: no intermediate results were asked for
        return np.asarray(first)
    except Exception as exc:  # the reference implementation raises anything on odd attributes or inputs
        raise OnnxvisError(
            f"the weight goes through a {node.op_type} node that cannot be evaluated ({type(exc).__name__}); "
            "the model is damaged, or uses it in a way onnxvis cannot follow"
        ) from None


def ancestors(scope: GraphIndex, name: str):
    """What computes ``name``: (nodes in evaluation order, stored leaves, run-time inputs).

    Walks through enclosing scopes: a subgraph's weight may be computed from the outer graph.
    Leaves are (scope, name) of initializers.
    """
    nodes: dict[tuple[int, int], tuple[GraphIndex, "onnx.NodeProto"]] = {}
    leaves: dict[str, GraphIndex] = {}
    runtime: list[str] = []
    stack = [name]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if not tensor or tensor in seen:
            continue
        seen.add(tensor)
        found = scope.find(tensor)
        if found is None:
            runtime.append(tensor)
            continue
        owner, how = found
        if how == "initializer":
            leaves[tensor] = owner
        elif how == "input":
            runtime.append(tensor)
        else:
            node = owner.producers[tensor]
            nodes[(owner.depth, owner.position[id(node)])] = (owner, node)
            stack.extend(node.input)
    ordered = [nodes[k] for k in sorted(nodes)]
    return ordered, leaves, runtime


def unfoldable(model: "Model", nodes) -> str | None:
    """Why these nodes cannot be folded by the reference evaluator, or None."""
    from onnx.reference.ops import load_op

    opsets = _opsets(model)
    for _, node in nodes:
        if node.op_type in _RANDOM_OPS:
            return f"{node.op_type} draws random values at run time"
        domain = node.domain if node.domain != "ai.onnx" else ""
        if domain not in ("", "ai.onnx.ml"):
            return f"{node.op_type} of domain {domain} has no reference implementation in onnx"
        try:
            load_op(domain, node.op_type, opsets.get(domain))
        except Exception:
            return f"{node.op_type} has no reference implementation in onnx"
        if any(a.type in GRAPH_ATTRIBUTE_TYPES for a in node.attribute):  # If/Loop/Scan
            return f"{node.op_type} holds a subgraph"
    return None


def _fold_model(model: "Model", nodes, leaves: dict[str, GraphIndex], name: str, with_data: Callable[[str], bool]) -> "onnx.ModelProto":
    """A model computing ``name`` from the leaves: those for which ``with_data`` holds are
    initializers with their data, the others typed inputs."""
    from onnx import TensorProto, helper, numpy_helper

    from onnxvis.model.proto import as_onnx

    inits = []
    inputs = []
    for leaf, owner in sorted(leaves.items()):
        tensor = owner.initializers[leaf]
        if with_data(leaf):
            if owner.is_main and model.has_initializer(leaf):
                inits.append(as_onnx(model.initializer_proto(leaf)))
            else:
                inits.append(numpy_helper.from_array(model.decode(tensor), leaf))
        else:
            inputs.append(helper.make_tensor_value_info(leaf, tensor.data_type, list(tensor.dims)))
    output = helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)
    graph = helper.make_graph([as_onnx(n) for _, n in nodes], "fold", inputs, [output], inits)
    folded = helper.make_model(graph, opset_imports=[as_onnx(o) for o in model.proto.opset_import])
    folded.ir_version = max(model.proto.ir_version or 0, 4)
    return folded


def leaf_bytes(owner: GraphIndex, leaf: str) -> int:
    """The size of a stored leaf in bytes, from its header (8 bytes a value when the type is unknown)."""
    tensor = owner.initializers[leaf]
    try:
        itemsize = np_dtype(tensor.data_type).itemsize
    except Exception:
        itemsize = 8
    return math.prod(tensor.dims) * itemsize


def infer_shape(model: "Model", nodes, leaves, name: str) -> tuple[int, ...] | None:
    """The folded weight's shape by onnx shape inference, reading only small leaves."""
    from onnx import shape_inference

    try:
        folded = _fold_model(model, nodes, leaves, name, lambda leaf: leaf_bytes(leaves[leaf], leaf) <= _SMALL_LEAF_BYTES)
        inferred = shape_inference.infer_shapes(folded, strict_mode=False, data_prop=True)
    except Exception:
        return None
    for value in inferred.graph.output:
        if value.name == name and value.type.tensor_type.HasField("shape"):
            dims = value.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                return tuple(d.dim_value for d in dims)
    return None


def evaluate(model: "Model", nodes, leaves, name: str) -> np.ndarray:
    """The value of ``name``, computed by the reference evaluator from all the leaves' data."""
    from onnx.reference import ReferenceEvaluator

    folded = _fold_model(model, nodes, leaves, name, lambda leaf: True)
    (value,) = ReferenceEvaluator(folded).run(None, {})
    return np.asarray(value)
