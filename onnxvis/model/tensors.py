"""Every tensor of a model's main graph with its shape, as ``--tensor`` takes them (issue 25, item 12).

The shapes are onnx's shape inference over the graph without its weight bytes: a dimension that depends
on the input's free size keeps its symbol (``H``), one that inference cannot tell is ``?``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from onnxvis.model.graph import dtype_name

if TYPE_CHECKING:
    import onnx

    from onnxvis.model.file import Model

__all__ = ["TensorRow", "tensor_rows"]


@dataclass(frozen=True)
class TensorRow:
    """One tensor: its name, shape (ints, symbols, or None where unknown), element type, and what makes it
    ("input" for a graph input; else the op type and node name)."""

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: str
    op: str
    node: str

    def shape_text(self) -> str:
        if self.shape is None:
            return "?"
        return "[" + "x".join("?" if d is None else str(d) for d in self.shape) + "]"


def _shape_of(value: "onnx.ValueInfoProto") -> tuple[tuple[int | str | None, ...] | None, str]:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return None, kind or "?"
    tensor = value.type.tensor_type
    dtype = dtype_name(tensor.elem_type) if tensor.elem_type else "?"
    if not tensor.HasField("shape"):
        return None, dtype
    dims: list[int | str | None] = []
    for d in tensor.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return tuple(dims), dtype


def tensor_rows(model: "Model") -> list[TensorRow]:
    """The main graph's inputs (weights excluded) and every node output, in graph order; the outputs of
    Constant nodes are weights too (PaddlePaddle stores its kernels so) and are left out."""
    import onnx

    proto = model.onnx_proto()  # onnx's own messages: shape inference takes nothing else
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False).graph
        values = list(inferred.input) + list(inferred.value_info) + list(inferred.output)
    except Exception:  # noqa: BLE001  (inference is a convenience: without it the declared shapes are shown)
        values = list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output)
    known = {v.name: _shape_of(v) for v in values}
    weights = {t.name for t in proto.graph.initializer}
    rows = []
    for value in proto.graph.input:
        if value.name not in weights:
            shape, dtype = known.get(value.name, (None, "?"))
            rows.append(TensorRow(value.name, shape, dtype, "input", ""))
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            continue
        for name in node.output:
            if name:
                shape, dtype = known.get(name, (None, "?"))
                rows.append(TensorRow(name, shape, dtype, node.op_type, node.name))
    return rows
