"""The gradient engine: a model's forward and backward passes in one onnxruntime session, from the ONNX file.

An ONNX file holds no gradients, and onnxruntime computes none. onnx-ad (pip ``onnx-ad``) turns a
graph into the graph of its vector-Jacobian product, made of ordinary ONNX ops; onnxruntime runs the
forward and the backward pass of that one graph together. What real files need before onnx-ad can
take them is done here, on the smallest graph that computes the score (the runner's
:func:`~onnxvis.engine.runner.minimal_model`), for one input size:

- quantized tensors dequantized: the gradient is that of the model's dequantized float graph
  (QuantizeLinear / DequantizeLinear pairs become the identity; QLinearConv, QLinearMatMul and the
  com.microsoft QLinear ops become their float ops on dequantized weights);
- float16 (and bfloat16) computed in float32;
- opsets before 16 converted to 16 (onnx-ad needs 13's Softmax and ReduceSum, and 16's
  ScatterND with reduction for MaxPool's backward pass);
- concrete shapes for every tensor, from shape inference, else from one probe run;
- explicit pads in place of ``auto_pad`` (SAME_UPPER / SAME_LOWER), and MaxPool's ``ceil_mode``
  as extra end padding (the same windows); unequal begin and end pads of Conv and AveragePool as an
  explicit Pad before them (onnx-ad's backward pass loses them: see :func:`_symmetric_pads`);
- the big weights handed to onnx-ad as graph inputs, so that it never copies them, and back to
  initializers afterwards (onnxruntime maps them from the model file, as in every session here).

The place differentiated is the image input, or any tensor of the graph: there a zero tensor is
added (``t + d``), and the derivative with respect to ``d`` is that with respect to ``t``, through
every path from ``t`` to the score, as a backward hook on ``t`` sees it. Several places can be
differentiated in one pass (FullGrad's every bias layer and the input).

The score is the target output -- or, when the output is a final Softmax's (possibly reshaped), the
Softmax's input: the logits, which grad-cam and Captum differentiate on a torch model. A
:class:`GradientGraph` says so in :attr:`GradientGraph.notes`.

A graph is built once per (places, score output, input shape) and kept by the Inspector
(:meth:`onnxvis.engine.inspector.Inspector.gradients`). Images run in batches of the rows it was
built for (the last batch padded); where the graph fixes its batch to 1 (a Reshape to [1, 512], as
many exports have), one by one: the answer is the same.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.engine.runner import Session, array_initializer, initializer_value, minimal_model, run_graph
from onnxvis.errors import OnnxvisError
from onnxvis.model.dequantize import dequantize
from onnxvis.model.graph import required_nodes, subgraphs

if TYPE_CHECKING:
    import onnx

    from onnxvis.model.file import Model

__all__ = ["GradientGraph", "GradientRun", "ScoreTensor", "score_seeds", "score_tensor"]

# The opset onnx-ad's rules need: 13 for Softmax and the Reduce ops with axes as inputs, 16 for the
# scatter-add of MaxPool's (and Gather's) backward pass.
GRADIENT_OPSET = 16
# Ops that only reshape or copy: a Softmax followed by them still ends the model.
_SHAPE_ONLY = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Dropout", "Cast"}
# ONNX element types.
_FLOAT, _FLOAT16, _BFLOAT16, _DOUBLE = 1, 10, 16, 11
_FLOATS = {_FLOAT, _FLOAT16, _BFLOAT16, _DOUBLE}
# Prefix of the zero tensors added at the places differentiated.
_DELTA = "onnxvis_grad_at_"


# ------------------------------------------------------------------------------------------ the score


@dataclass(frozen=True)
class ScoreTensor:
    """What is differentiated: the target output, or the logits before its final Softmax.

    Attributes:
        tensor: the tensor whose class scores are differentiated.
        output: the model output the user chose.
        softmax: the name of the final Softmax node when ``tensor`` is its input, else None.
        axis: that Softmax's axis (the class axis: a detector's (N, anchors, classes) scores have
            it last), else None (the layout's rule, see :func:`class_axis`).
    """

    tensor: str
    output: str
    softmax: str | None = None
    axis: int | None = None

    @property
    def note(self) -> str | None:
        if self.softmax is None:
            return None
        return (f"output {self.output!r} ends in a Softmax (node {self.softmax!r}): the gradient is that of the class "
                f"score before it, {self.tensor!r} (the logits, as grad-cam and Captum take them)")


def score_tensor(model: "Model", output: str) -> ScoreTensor:
    """The tensor to differentiate for ``output``: the input of a final Softmax (seen through ops
    that only reshape or copy), else the output itself."""
    producers = {out: node for node in model.graph.node for out in node.output if out}
    name = output
    for _ in range(len(producers) + 1):
        node = producers.get(name)
        if node is None:
            break
        if node.op_type == "Softmax" and node.domain in ("", "ai.onnx"):
            opset = model.opsets.get("", model.opsets.get("ai.onnx", 13))
            axis = _attr(node, "axis", -1 if opset >= 13 else 1)
            return ScoreTensor(node.input[0], output, node.name or node.output[0], int(axis))
        if node.op_type not in _SHAPE_ONLY or not node.input:
            break
        name = node.input[0]
    return ScoreTensor(output, output)


def class_axis(shape: Sequence[int], layout: str, axis: int | None = None) -> int:
    """The axis of a score tensor (batch first) that holds the classes, by the rule of
    :func:`onnxvis.analysis.cam.runs.class_scores`: ``axis`` when known (a final Softmax's), else axis
    1, or the last axis of a spatial NHWC output."""
    if len(shape) < 2:
        raise OnnxvisError(f"the scores have shape {tuple(shape)}, without a batch and a class axis")
    if axis is not None and axis % len(shape) != 0:
        return axis % len(shape)
    if layout == "NHWC" and len(shape) > 2:
        return len(shape) - 1
    return 1


def score_seeds(shape: Sequence[int], classes: np.ndarray, layout: str = "NCHW", axis: int | None = None) -> np.ndarray:
    """The seeds of the backward pass: for each row and target, the derivative of the class score
    with respect to the score tensor -- 1 at the class on its class axis, at every position of a
    spatial output (whose class score is the sum over the positions), 0 elsewhere.

    Args:
        shape: the score tensor's shape, batch first.
        classes: (rows, k) class indices: k targets per row, differentiated in the same pass.
        layout: the model input's layout (it decides the class axis of a spatial output).
        axis: the class axis when known (:attr:`ScoreTensor.axis`).

    Returns:
        float32 (rows, *shape[1:], k).

    Raises:
        OnnxvisError: a class out of range.
    """
    classes = np.asarray(classes, dtype=np.int64)
    if classes.ndim == 1:
        classes = classes[:, None]
    axis = class_axis(shape, layout, axis)
    count = int(shape[axis])
    bad = classes[(classes < 0) | (classes >= count)]
    if bad.size:
        raise OnnxvisError(f"target class {int(bad[0])} is out of range: the model scores {count} classes (0..{count - 1})")
    rows, k = classes.shape
    seeds = np.zeros((rows, *shape[1:], k), dtype=np.float32)
    index: list[int | slice] = [slice(None)] * (len(shape) + 1)
    for row in range(rows):
        for j in range(k):
            index[0], index[axis], index[-1] = row, int(classes[row, j]), j
            seeds[tuple(index)] = 1
    return seeds


# ------------------------------------------------------------------------------------------ the graph


@dataclass(frozen=True)
class GradientRun:
    """One pass over some rows.

    Attributes:
        scores: the score tensor (rows, ...) (the logits before a final Softmax).
        values: place -> its value (rows, ...) (the input itself for the image input).
        gradients: place -> the gradient of each target's score, (rows, *place shape, k), float32.
    """

    scores: np.ndarray
    values: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray]


class _FixedBatch(Exception):
    """The graph fixes its batch (a Reshape to [1, ...]): build it again for one row."""


class GradientGraph:
    """Forward and backward passes of a model in one onnxruntime session, for one input size.

    Args:
        model: the opened model.
        input_name: the image input.
        layout: the image input's layout ("NCHW" or "NHWC").
        output: the output with the class scores.
        places: tensors to differentiate at; the image input's name differentiates at the input.
        shape: the shape of one input, without its batch axis.
        rows: rows per run (the batch the graph is built for); 1 where the graph fixes it.
        others: arrays for the model's other run-time inputs.
        threads: onnxruntime's intra-op threads.

    Attributes:
        notes: what changes the meaning of the numbers, in words for the user: the score taken
            before a final Softmax, a quantized graph differentiated as its float graph, float16
            computed in float32.
        rows: rows per run; 1 where the graph fixes its batch.
        shapes: the shapes (at ``rows``) of the input, the score and the places.

    Raises:
        OnnxvisError: the graph cannot be differentiated (control flow or an op without a rule on
            the way, naming the op and node; an opset that cannot be converted), or onnxruntime
            refuses it.
    """

    def __init__(
        self,
        model: "Model",
        input_name: str,
        layout: str,
        output: str,
        places: Sequence[str],
        shape: Sequence[int],
        rows: int = 1,
        others: Mapping[str, np.ndarray] | None = None,
        threads: int | None = None,
    ) -> None:
        if not places:
            raise OnnxvisError("no place to differentiate at")
        self.model = model
        self.input_name = input_name
        self.layout = layout
        self.score = score_tensor(model, output)
        self.places = list(dict.fromkeys(places))
        self.input_shape = tuple(int(d) for d in shape)
        self.others = dict(others or {})
        self.notes: list[str] = []
        self.converted_from: int | None = None  # the opset, when the graph was converted to GRADIENT_OPSET
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._names: dict[str, str] = {}
        self._seed = ""
        known = {out for node in model.graph.node for out in node.output if out}
        _, leading = required_nodes(model.graph, [self.score.tensor])
        for place in self.places:
            if place != input_name and place not in known:
                raise OnnxvisError(f"the model computes no tensor named {place!r}")
            if place not in leading:
                raise OnnxvisError(
                    f"tensor {place!r} does not lead to the scores output {output!r}; choose a tensor before the classifier"
                )
        rows = max(1, int(rows))
        try:
            self._session = self._open(rows, threads)
        except _FixedBatch:
            rows = 1
            self._session = self._open(rows, threads)
        self.rows = rows

    def _open(self, rows: int, threads: int | None) -> Session:
        self.notes = []

        def build(arrays: dict[str, np.ndarray], from_file: bool) -> "onnx.ModelProto":
            return self._build(arrays, from_file, rows)

        return Session(self.model, [], threads=threads, many_runs=True, build=build)

    @property
    def seed_name(self) -> str:
        return self._seed

    def _build(self, arrays: dict[str, np.ndarray], from_file: bool, rows: int) -> "onnx.ModelProto":
        inner = [p for p in self.places if p != self.input_name]
        targets = list(dict.fromkeys([self.score.tensor, *inner]))
        proto = minimal_model(self.model, targets, arrays, from_file=from_file)
        if self.input_name not in {i.name for i in proto.graph.input}:
            raise OnnxvisError(f"tensor {self.score.tensor!r} does not depend on the image input {self.input_name!r}")
        values = _Values(self.model, proto, arrays)
        if self.score.note:
            self.notes.append(self.score.note)
        if _dequantize(proto, values):
            self.notes.append("the model is quantized: the gradient is that of its dequantized float graph")
        if _to_float32(proto, values):
            self.notes.append("the model computes in float16: its gradient graph computes in float32")
        held = _weights_to_inputs(proto)
        opset = _default_opset(proto)
        if opset < GRADIENT_OPSET:
            proto = _convert_opset(proto, opset, self.model.path.name)
            self.converted_from = opset
        _set_input_shape(proto, self.input_name, (rows, *self.input_shape), self.others)
        folder = os.path.dirname(os.path.realpath(self.model.path)) if from_file else None
        proto = _with_shapes(proto, held, arrays, folder, self.input_name, self.others)
        shapes = _static_shapes(proto)
        if rows > 1 and any(shapes.get(t, (rows,))[0] != rows for t in targets):
            raise _FixedBatch()
        self.shapes = {name: shapes[name] for name in [*targets, self.input_name] if name in shapes}
        _explicit_pads(proto, shapes)
        _symmetric_pads(proto, shapes)
        wrt = _add_deltas(proto, inner)
        if self.input_name in self.places:
            wrt[self.input_name] = self.input_name
        _check_control_flow(proto, list(wrt.values()), self.score.tensor)
        result = _reverse(proto, list(wrt.values()), self.score.tensor, self.model.path.name)
        differentiated = list(wrt)
        derivative_outputs = [o.name for o in result.graph.output][-len(differentiated):]
        self._names = dict(zip(differentiated, derivative_outputs, strict=True))
        self._seed = result.graph.input[-1].name
        _weights_back(result, held)
        result.ir_version = max(result.ir_version, 8)
        return result

    # ----------------------------------------------------------------------------------- running

    def run(self, inputs: np.ndarray, seeds: np.ndarray) -> GradientRun:
        """Forward and backward passes over ``inputs`` (n, *input shape) with ``seeds``
        (n, *score shape, k) (:func:`score_seeds`): k targets per row in one pass. Rows run in
        batches of :attr:`rows`, the last one padded with copies of its last row.

        Raises:
            OnnxvisError: onnxruntime refuses the input.
        """
        inputs = np.asarray(inputs, dtype=np.float32)
        seeds = np.asarray(seeds, dtype=np.float32)
        if inputs.shape[1:] != self.input_shape:
            raise OnnxvisError(f"the gradient graph was built for inputs of shape {self.input_shape}, got {inputs.shape[1:]}")
        count = len(inputs)
        if len(seeds) != count:
            raise OnnxvisError(f"{count} inputs but {len(seeds)} rows of seeds")
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, count, self.rows):
            chunk, seed = inputs[start : start + self.rows], seeds[start : start + self.rows]
            real = len(chunk)
            if real < self.rows:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.rows - real, axis=0)])
                seed = np.concatenate([seed, np.zeros((self.rows - real, *seed.shape[1:]), np.float32)])
            feeds = {**self.others, self.input_name: chunk, self._seed: np.ascontiguousarray(seed)}
            for place, name in self._names.items():
                if name != self.input_name and place != self.input_name:
                    feeds[_DELTA + place] = np.zeros(self.shapes[place], np.float32)
            values = self._session.run(feeds)
            parts.append({name: np.asarray(v)[:real] for name, v in values.items()})
        joined = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        place_values = {p: (inputs if p == self.input_name else joined[p]) for p in self.places}
        grads = {p: joined[self._names[p]].astype(np.float32, copy=False) for p in self.places}
        return GradientRun(joined[self.score.tensor], place_values, grads)

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """The score tensor alone (a pass with no seeds: the backward ops run on empty tensors)."""
        inputs = np.asarray(inputs, dtype=np.float32)
        score_shape = self.shapes[self.score.tensor]
        return self.run(inputs, np.zeros((len(inputs), *score_shape[1:], 0), np.float32)).scores


# ------------------------------------------------------------------------------------------ preparing


class _Values:
    """The data of a prepared graph's constants (initializers, Constant nodes), and replacing them."""

    def __init__(self, model: "Model", proto: "onnx.ModelProto", arrays: dict[str, np.ndarray]) -> None:
        self.model, self.proto, self.arrays = model, proto, arrays
        self.inits = {t.name: t for t in proto.graph.initializer}
        self.constants = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant" and n.output}

    def is_constant(self, name: str) -> bool:
        return name in self.inits or name in self.constants

    def get(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        if name in self.inits:
            return np.asarray(initializer_value(self.model, self.inits[name], self.arrays))
        node = self.constants.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                    from onnx import helper

                    value = helper.get_attribute_value(attr)
                    return np.asarray(value, dtype=np.float32 if "float" in attr.name else np.int64)
        raise OnnxvisError(f"tensor {name!r} is computed by the graph; a constant was expected there")

    def put(self, name: str, array: np.ndarray) -> None:
        """Make ``name`` an initializer holding ``array`` (replacing an initializer or Constant node)."""
        graph = self.proto.graph
        if name in self.constants:
            graph.node.remove(self.constants.pop(name))
        if name in self.inits:
            graph.initializer.remove(self.inits.pop(name))
            self.arrays.pop(name, None)
        tensor = array_initializer(name, np.asarray(array), self.arrays)
        graph.initializer.append(tensor)
        self.inits[name] = graph.initializer[-1]


def _attr(node: "onnx.NodeProto", name: str, default=None):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _node_label(node: "onnx.NodeProto") -> str:
    return node.name or (node.output[0] if node.output else "?")


def _input(node: "onnx.NodeProto", i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


# Quantized ops whose float op takes the same attributes, with their (value, scale, zero point) operand positions.
_QLINEAR_ELEMENTWISE = {
    "QLinearAdd": ("Add", [(0, 1, 2), (3, 4, 5)]),
    "QLinearMul": ("Mul", [(0, 1, 2), (3, 4, 5)]),
    "QLinearLeakyRelu": ("LeakyRelu", [(0, 1, 2)]),
    "QLinearSigmoid": ("Sigmoid", [(0, 1, 2)]),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", [(0, 1, 2)]),
    "QLinearAveragePool": ("AveragePool", [(0, 1, 2)]),
}
# Integer ops with no float rule here: refused by name.
_QUANTIZED_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QAttention", "QLinearSoftmax", "QLinearReduceMean",
                  "QLinearWhere", "QEmbedLayerNormalization", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QOrderedMatMul"}


def _dequantize(proto: "onnx.ModelProto", values: _Values) -> bool:
    """Rewrite a quantized graph as its dequantized float graph, in place; False when it has no quantized op.

    Every tensor keeps its name and now holds its dequantized value: QuantizeLinear and
    DequantizeLinear of computed tensors become Identity (the rounding has no derivative, and the
    float graph has none), a DequantizeLinear of stored data becomes that data dequantized, and the
    QLinear ops become their float ops on dequantized weights (QLinearConv's int32 bias times
    x_scale * w_scale).
    """
    from onnx import helper

    graph = proto.graph
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm", "QLinearConcat")
               or n.op_type in _QLINEAR_ELEMENTWISE or n.op_type in _QUANTIZED_OPS for n in graph.node):
        return False

    def real(name: str, scale: str, zero: str, axis: int = 1) -> str:
        """The float tensor for a quantized operand: stored data dequantized here, else the tensor itself."""
        if not values.is_constant(name):
            return name
        zp = values.get(zero) if zero else None
        dequantized = dequantize(values.get(name), values.get(scale), zp, axis=axis)
        values.put(name + "_onnxvis_float", dequantized)
        return name + "_onnxvis_float"

    rewritten = []
    for node in list(graph.node):
        op, label = node.op_type, _node_label(node)
        if op in _QUANTIZED_OPS:
            raise OnnxvisError(f"cannot differentiate the {op} node {label!r}: onnxvis has no float rule for this quantized op")
        if op == "QuantizeLinear":
            rewritten.append(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name))
        elif op == "DequantizeLinear":
            if values.is_constant(node.input[0]):
                axis = int(_attr(node, "axis", 1))
                block = int(_attr(node, "block_size", 0))
                zp = values.get(_input(node, 2)) if _input(node, 2) else None
                stored = dequantize(values.get(node.input[0]), values.get(node.input[1]), zp, axis=axis, block_size=block)
                values.put(node.output[0], stored)
            else:
                rewritten.append(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name))
        elif op == "QLinearConv":
            x, xs, w, ws, wzp = node.input[0], node.input[1], node.input[3], node.input[4], node.input[5]
            if not values.is_constant(w):
                raise OnnxvisError(f"cannot differentiate the QLinearConv node {label!r}: its weight is computed, not stored")
            operands = [x, real(w, ws, wzp, axis=0)]
            bias = _input(node, 8)
            if bias:
                scale = values.get(xs).astype(np.float32) * values.get(ws).astype(np.float32)
                values.put(bias + "_onnxvis_float", (values.get(bias).astype(np.float32) * scale.reshape(-1)).astype(np.float32))
                operands.append(bias + "_onnxvis_float")
            rewritten.append(helper.make_node("Conv", operands, [node.output[0]], name=node.name,
                                              **{a.name: helper.get_attribute_value(a) for a in node.attribute}))
        elif op == "QLinearMatMul":
            a = real(node.input[0], node.input[1], node.input[2], axis=0)
            b = real(node.input[3], node.input[4], node.input[5], axis=-1)
            rewritten.append(helper.make_node("MatMul", [a, b], [node.output[0]], name=node.name))
        elif op == "QGemm":
            trans_b = int(_attr(node, "transB", 0))
            a = real(node.input[0], node.input[1], node.input[2], axis=0)
            b = real(node.input[3], node.input[4], node.input[5], axis=0 if trans_b else -1)
            operands = [a, b]
            bias = _input(node, 6)
            if bias:
                scale = values.get(node.input[1]).astype(np.float32) * values.get(node.input[4]).astype(np.float32)
                values.put(bias + "_onnxvis_float", (values.get(bias).astype(np.float32) * scale.reshape(-1)).astype(np.float32))
                operands.append(bias + "_onnxvis_float")
            attrs = {k: _attr(node, k) for k in ("alpha", "transA", "transB") if _attr(node, k) is not None}
            rewritten.append(helper.make_node("Gemm", operands, [node.output[0]], name=node.name, **attrs))
        elif op == "QLinearConcat":
            triples = [node.input[i : i + 3] for i in range(2, len(node.input), 3)]
            operands = [real(t[0], t[1], t[2]) for t in triples]
            rewritten.append(helper.make_node("Concat", operands, [node.output[0]], name=node.name, axis=int(_attr(node, "axis"))))
        elif op in _QLINEAR_ELEMENTWISE:
            float_op, positions = _QLINEAR_ELEMENTWISE[op]
            if int(_attr(node, "channels_last", 0)):
                raise OnnxvisError(f"cannot differentiate the {op} node {label!r}: channels_last is not supported")
            operands = [real(node.input[v], node.input[s], _input(node, z)) for v, s, z in positions]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "channels_last"}
            rewritten.append(helper.make_node(float_op, operands, [node.output[0]], name=node.name, **attrs))
        else:
            rewritten.append(node)
    del graph.node[:]
    graph.node.extend(rewritten)
    _drop_unused(proto)
    del graph.value_info[:]  # the types changed: shape inference says them again
    return True


def _to_float32(proto: "onnx.ModelProto", values: _Values) -> bool:
    """float16 and bfloat16 tensors, casts and constants as float32, in place; False when there are none."""
    from onnx import numpy_helper

    graph = proto.graph
    changed = False
    for tensor in list(graph.initializer):
        if tensor.data_type in (_FLOAT16, _BFLOAT16):
            values.put(tensor.name, values.get(tensor.name).astype(np.float32))
            changed = True
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == 4 and attr.t.data_type in (_FLOAT16, _BFLOAT16):  # TENSOR: Constant, ConstantOfShape
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name))
                changed = True
            elif attr.name in ("to", "dtype") and attr.type == 2 and attr.i in (_FLOAT16, _BFLOAT16):  # Cast, EyeLike, Random*
                attr.i = _FLOAT
                changed = True
    for value in [*graph.input, *graph.output]:
        if value.type.tensor_type.elem_type in (_FLOAT16, _BFLOAT16):
            value.type.tensor_type.elem_type = _FLOAT
            changed = True
    if changed:
        del graph.value_info[:]
    return changed


def _drop_unused(proto: "onnx.ModelProto") -> None:
    graph = proto.graph
    read = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    for node in graph.node:
        for _, sub in subgraphs(node):
            read |= {n for inner in sub.node for n in inner.input}
    unused = [t for t in graph.initializer if t.name not in read]
    for tensor in unused:
        graph.initializer.remove(tensor)


def _weights_to_inputs(proto: "onnx.ModelProto") -> list["onnx.TensorProto"]:
    """Move the data-less initializers (the big weights, mapped from the file or handed over as arrays)
    to graph inputs, so that neither the converter nor onnx-ad copies or folds them; returns them."""
    from onnx import TensorProto, helper

    graph = proto.graph
    held = [t for t in graph.initializer if t.data_location == TensorProto.EXTERNAL]
    for tensor in held:
        graph.initializer.remove(tensor)
        graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    proto.ir_version = max(proto.ir_version, 8)  # initializers need not be listed as inputs
    return [_copy(t) for t in held]


def _copy(tensor: "onnx.TensorProto") -> "onnx.TensorProto":
    from onnx import TensorProto

    copy = TensorProto()
    copy.CopyFrom(tensor)
    return copy


def _weights_back(proto: "onnx.ModelProto", held: Sequence["onnx.TensorProto"]) -> None:
    graph = proto.graph
    names = {t.name for t in held}
    kept = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend(held)


def _default_opset(proto: "onnx.ModelProto") -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)


def _convert_opset(proto: "onnx.ModelProto", opset: int, model_name: str) -> "onnx.ModelProto":
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, GRADIENT_OPSET)
    except Exception as exc:  # noqa: BLE001  (the converter raises several types, all meaning "cannot")
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise OnnxvisError(
            f"cannot differentiate {model_name}: its opset {opset} must be converted to {GRADIENT_OPSET} for the "
            f"gradient graph, and onnx's converter fails: {reason}"
        ) from None


def _set_input_shape(proto: "onnx.ModelProto", name: str, shape: Sequence[int], others: Mapping[str, np.ndarray]) -> None:
    from onnx import helper

    fixed = {name: tuple(shape), **{k: v.shape for k, v in others.items()}}
    for value in proto.graph.input:
        if value.name in fixed:
            elem = value.type.tensor_type.elem_type
            if value.name == name and elem not in _FLOATS:
                raise OnnxvisError(
                    f"the image input {name!r} is of an integer type: a gradient needs a float input"
                )
            value.CopyFrom(helper.make_tensor_value_info(value.name, _FLOAT if value.name == name else elem, list(fixed[value.name])))
    # The outputs' shapes as the file declares them hold its batch (a Caffe2 file's [1, 256, 13, 13]): left unknown
    # here, they are inferred again at this input's size, like every other tensor's.
    for value in proto.graph.output:
        value.CopyFrom(helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type, None))


def _static_shapes(proto: "onnx.ModelProto") -> dict[str, tuple[int, ...]]:
    shapes = {}
    graph = proto.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    return shapes


def _with_shapes(
    proto: "onnx.ModelProto",
    held: Sequence["onnx.TensorProto"],
    arrays: Mapping[str, np.ndarray],
    folder: str | None,
    input_name: str,
    others: Mapping[str, np.ndarray],
) -> "onnx.ModelProto":
    """``proto`` with a concrete shape and type for every tensor: onnx's shape inference, and where
    it leaves some unknown (shapes computed from data, say), one probe run of the forward graph."""
    from onnx import helper, shape_inference

    del proto.graph.value_info[:]  # the file's own may be symbolic (or -1, as Paddle writes): inferred again at this size
    try:
        inferred = shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001  (inference is a help: the probe below covers what it leaves)
        inferred = proto
    shapes = _static_shapes(inferred)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    produced = [out for node in inferred.graph.node for out in node.output if out]
    missing = [name for name in produced if name not in shapes or not types.get(name)]
    if missing:
        probe = _copy_model(inferred)
        _weights_back(probe, held)
        del probe.graph.output[:]
        probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in produced)
        first = next(i for i in inferred.graph.input if i.name == input_name)
        dims = tuple(d.dim_value for d in first.type.tensor_type.shape.dim)
        feeds = {input_name: np.zeros(dims, np.float32), **others}
        values = run_graph(probe, dict(arrays), feeds, folder)
        known = {v.name for v in inferred.graph.value_info}
        for name, value in values.items():
            value = np.asarray(value)
            if name in known or value.dtype.kind not in "fiub":
                continue
            elem = helper.np_dtype_to_tensor_dtype(value.dtype)
            inferred.graph.value_info.append(helper.make_tensor_value_info(name, elem, list(value.shape)))
        for value in inferred.graph.value_info:
            if value.name in values and value.name in missing:
                array = np.asarray(values[value.name])
                value.CopyFrom(helper.make_tensor_value_info(value.name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape)))
    by_name = {v.name: v for v in inferred.graph.value_info}
    for output in inferred.graph.output:  # outputs whose type was dropped (dequantized, float32 now)
        if output.name in by_name:
            output.CopyFrom(by_name[output.name])
    return inferred


def _copy_model(proto: "onnx.ModelProto") -> "onnx.ModelProto":
    from onnx import ModelProto

    copy = ModelProto()
    copy.CopyFrom(proto)
    return copy


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """ONNX's SAME_UPPER / SAME_LOWER padding of one axis: the output is ceil(size / stride)."""
    out = math.ceil(size / stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def _explicit_pads(proto: "onnx.ModelProto", shapes: Mapping[str, tuple[int, ...]]) -> None:
    """``auto_pad`` as explicit pads, and MaxPool's ``ceil_mode`` as extra end padding, in place (the
    same windows: onnx-ad differentiates only explicit pads and floor mode)."""
    from onnx import helper

    for node in proto.graph.node:
        if node.op_type not in ("Conv", "MaxPool", "AveragePool", "LpPool", "ConvTranspose"):
            continue
        auto = _attr(node, "auto_pad", "NOTSET")
        ceil = int(_attr(node, "ceil_mode", 0))
        if auto in ("NOTSET", "") and not ceil:
            continue
        x = shapes.get(node.input[0])
        if x is None:
            continue
        spatial = x[2:]
        rank = len(spatial)
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1])
            kernel = list(_attr(node, "kernel_shape", None) or (w[2:] if w else []))
        else:
            kernel = list(_attr(node, "kernel_shape"))
        if len(kernel) != rank:
            continue
        strides = list(_attr(node, "strides", None) or [1] * rank)
        dilations = list(_attr(node, "dilations", None) or [1] * rank)
        pads = list(_attr(node, "pads", None) or [0] * (2 * rank))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            if node.op_type == "ConvTranspose":
                continue  # its SAME padding concerns the output; onnx-ad says so if it is on the path
            pairs = [_same_pads(spatial[i], kernel[i], strides[i], dilations[i], auto == "SAME_UPPER") for i in range(rank)]
            pads = [p[0] for p in pairs] + [p[1] for p in pairs]
        elif auto == "VALID":
            pads = [0] * (2 * rank)
        if ceil and node.op_type in ("MaxPool", "AveragePool"):
            y = shapes.get(node.output[0])
            if y is None or (node.op_type == "AveragePool" and int(_attr(node, "count_include_pad", 0))):
                continue  # left as it is: onnx-ad refuses it, naming the node
            for i in range(rank):
                reach = (y[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                pads[rank + i] += max(0, reach - (spatial[i] + pads[i] + pads[rank + i]))
        kept = [a for a in node.attribute if a.name not in ("auto_pad", "pads", "ceil_mode")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(helper.make_attribute("pads", pads))


def _symmetric_pads(proto: "onnx.ModelProto", shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Conv and AveragePool with unequal begin and end pads, rewritten with equal ones, in place.

    onnx-ad's backward pass of Conv and AveragePool is a ConvTranspose given the input's size as its
    ``output_shape``, and onnxruntime then spreads the padding by its own rule: with unequal pads
    (SAME_UPPER's, or ceil_mode's extra end padding) the gradient comes out shifted. So the unequal
    part becomes an explicit Pad before the node (whose backward pass is a Slice); an AveragePool that
    leaves the pads out of its count is then scaled back by a constant, window by window (the same
    averages: the sum over the real elements divided by their number).
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    rewritten = []
    for node in graph.node:
        x = shapes.get(node.input[0]) if node.input else None
        pads = list(_attr(node, "pads", None) or [])
        if node.op_type not in ("Conv", "AveragePool") or x is None or not pads:
            rewritten.append(node)
            continue
        rank = len(pads) // 2
        begin, end = pads[:rank], pads[rank:]
        if begin == end:
            rewritten.append(node)
            continue
        keep = [min(b, e) for b, e in zip(begin, end, strict=True)]
        extra = [0, 0, *(b - k for b, k in zip(begin, keep, strict=True)), 0, 0, *(e - k for e, k in zip(end, keep, strict=True))]
        label = _node_label(node)
        padded = f"{node.input[0]}_onnxvis_padded_{len(rewritten)}"
        amounts = f"{padded}_amounts"
        graph.initializer.append(numpy_helper.from_array(np.asarray(extra, np.int64), amounts))
        rewritten.append(helper.make_node("Pad", [node.input[0], amounts], [padded], name=f"{label}_onnxvis_pad"))
        padded_shape = [x[0], x[1], *(x[2 + i] + extra[2 + i] + extra[rank + 4 + i] for i in range(rank))]
        graph.value_info.append(helper.make_tensor_value_info(padded, _FLOAT, padded_shape))
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "pads"}
        averaged_without_pads = node.op_type == "AveragePool" and not int(_attr(node, "count_include_pad", 0))
        if not averaged_without_pads:
            operands = [padded, *node.input[1:]]
            rewritten.append(helper.make_node(node.op_type, operands, list(node.output), name=node.name, pads=keep + keep, **attrs))
            continue
        y = shapes.get(node.output[0])
        if y is None:
            raise OnnxvisError(f"cannot differentiate the AveragePool node {label!r}: the shape of its output is unknown")
        attrs["count_include_pad"] = 1
        summed = f"{node.output[0]}_onnxvis_with_pads"
        rewritten.append(helper.make_node("AveragePool", [padded], [summed], name=node.name, pads=keep + keep, **attrs))
        graph.value_info.append(helper.make_tensor_value_info(summed, _FLOAT, list(y)))
        factor = _average_rescale(x[2:], y[2:], list(_attr(node, "kernel_shape")), list(_attr(node, "strides", None) or [1] * rank),
                                  begin)
        scale = f"{summed}_scale"
        graph.initializer.append(numpy_helper.from_array(factor, scale))
        rewritten.append(helper.make_node("Mul", [summed, scale], [node.output[0]], name=f"{label}_onnxvis_count"))
    del graph.node[:]
    graph.node.extend(rewritten)


def _average_rescale(
    size: Sequence[int], out: Sequence[int], kernel: Sequence[int], strides: Sequence[int], begin: Sequence[int]
) -> np.ndarray:
    """kernel size / the number of real (not padding) elements of each window: (1, 1, *out) float32."""
    counts: np.ndarray = np.ones((1,), np.float64)
    for axis in range(len(size)):
        starts = np.arange(out[axis]) * strides[axis] - begin[axis]
        real = np.minimum(starts + kernel[axis], size[axis]) - np.maximum(starts, 0)
        counts = np.multiply.outer(counts, np.maximum(real, 1))
    counts = counts.reshape(out)
    return (np.prod(kernel) / counts).astype(np.float32)[None, None]


def _add_deltas(proto: "onnx.ModelProto", places: Sequence[str]) -> dict[str, str]:
    """At each place ``t``, a zero input ``d`` added after the node that computes it (``t`` now being
    ``t_pre + d``): the derivative with respect to ``d`` is that with respect to ``t``. Returns place -> ``d``."""
    from onnx import helper

    graph = proto.graph
    shapes = _static_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.output, *graph.input]}
    added: dict[str, str] = {}
    for place in places:
        index = next((i for i, node in enumerate(graph.node) if place in node.output), None)
        if index is None:
            raise OnnxvisError(f"tensor {place!r} is not computed on the way to the score")
        if types.get(place, _FLOAT) != _FLOAT or place not in shapes:
            raise OnnxvisError(f"tensor {place!r} is not a float tensor of known shape; it cannot be differentiated at")
        node = graph.node[index]
        before = f"{place}_onnxvis_pre"
        node.output[list(node.output).index(place)] = before
        delta = _DELTA + place
        graph.node.insert(index + 1, helper.make_node("Add", [before, delta], [place], name=f"onnxvis_grad_add_{index}"))
        graph.input.append(helper.make_tensor_value_info(delta, _FLOAT, list(shapes[place])))
        graph.value_info.append(helper.make_tensor_value_info(before, _FLOAT, list(shapes[place])))
        added[place] = delta
    return added


def _check_control_flow(proto: "onnx.ModelProto", wrt: Sequence[str], score: str) -> None:
    """Control flow between the places and the score is refused, naming the node."""
    graph = proto.graph
    needed, _ = required_nodes(graph, [score])
    on_path = {id(n) for n in needed}
    live = set(wrt)
    for node in graph.node:
        reads = set(node.input)
        for _, sub in subgraphs(node):
            reads |= {n for inner in sub.node for n in inner.input}
        if reads & live:
            live.update(o for o in node.output if o)
            if id(node) in on_path and any(True for _ in subgraphs(node)):
                raise OnnxvisError(
                    f"cannot differentiate through the {node.op_type} node {_node_label(node)!r}: control flow on the way "
                    "to the score is not supported; the forward methods still work on this model"
                )


def _reverse(proto: "onnx.ModelProto", wrt: Sequence[str], score: str, model_name: str) -> "onnx.ModelProto":
    try:
        from onnx_ad import UnsupportedOperator, reverse
    except ImportError:
        raise OnnxvisError("gradients need onnx-ad: pip install onnx-ad") from None
    try:
        return reverse(proto, inputs=list(wrt), outputs=[score], layout="onnx")
    except (UnsupportedOperator, ValueError) as exc:  # onnx-ad's refusals: an op without a rule (named), a bad name
        text = " ".join(str(exc).split())
        raise OnnxvisError(f"cannot differentiate {model_name}: {text}") from None
