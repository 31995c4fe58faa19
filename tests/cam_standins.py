"""Small classifiers built with onnx.helper that show what CAM runs meet in exported models: a head
whose Reshape reads the batch from the input's shape (torch.export's ``sym_size``), a head that fixes
the batch to 1 (a YOLOv8 export), a head whose shape depends on the values (it fails on ablated
copies), and a scores output that turns NaN on some inputs.

Every one is input (batch, 3, 16, 16) -> Conv 3x3 (6, "conv1", output ``c1``) -> Relu (``r1``) -> a
head -> ``logits`` (batch, 5); :func:`scores` computes the same logits in numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADS = ("flatten", "sym_size", "batch1", "values", "nan", "refuse", "dead")


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w1": rng.normal(size=(6, 3, 3, 3)).astype(np.float32),
        "fc": rng.normal(size=(6, 5)).astype(np.float32),  # on the pooled (batch, 6)
        "fc_flat": rng.normal(size=(6 * 16 * 16, 5)).astype(np.float32) / 16,  # on the flattened (1, 1536)
    }


def classifier(path: Path, head: str = "flatten") -> Path:
    """Save the stand-in with ``head`` at ``path``:

    - ``flatten``: GlobalAveragePool -> Flatten -> MatMul; the batch is free.
    - ``sym_size``: GlobalAveragePool -> Reshape to [batch, -1], with batch = Shape(input)[0], as
      torch.export writes ``x.view(x.size(0), -1)`` -> MatMul; the batch is free.
    - ``batch1``: Reshape to [1, -1] -> MatMul on the flattened activations; the input's batch is 1.
    - ``values``: as ``batch1``, plus table[1000 if min(c1) < -1e6 else 0] (a table of 5 zeros): a
      Gather that fails on AblationCAM's copies of ``c1`` (a channel at its minimum - 1e7).
    - ``nan``: as ``flatten``, plus 0 * sqrt(min(input row)): NaN scores for an input below 0.
    - ``dead``: as ``flatten``, with the conv's weights all below 0: on a photo (values >= 0) ``r1``
      is all zeros, and so is any map there.
    - ``refuse``: as ``flatten``, plus table[1000 if min(input) < 0 else 0]: onnxruntime refuses an
      input below 0.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if head not in HEADS:
        raise ValueError(head)
    w = weights()
    inits = [numpy_helper.from_array(-np.abs(w["w1"]) if head == "dead" else w["w1"], "w1")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"])]

    def const(name: str, value: np.ndarray) -> None:
        inits.append(numpy_helper.from_array(value, name))

    if head in ("flatten", "nan", "refuse", "dead"):
        const("fc", w["fc"])
        nodes += [helper.make_node("GlobalAveragePool", ["r1"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
                  helper.make_node("MatMul", ["flat", "fc"], ["logits" if head in ("flatten", "dead") else "raw"])]
        if head == "refuse":
            const("zero", np.zeros((), np.float32))
            const("far", np.array(1000, np.int64))
            const("table", np.zeros(5, np.float32))
            nodes += [helper.make_node("ReduceMin", ["x"], ["low"], keepdims=0), helper.make_node("Less", ["low", "zero"], ["below"]),
                      helper.make_node("Cast", ["below"], ["below_int"], to=TensorProto.INT64),
                      helper.make_node("Mul", ["below_int", "far"], ["index"]),
                      helper.make_node("Gather", ["table", "index"], ["nothing"], name="pick"),
                      helper.make_node("Add", ["raw", "nothing"], ["logits"])]
        if head == "nan":
            const("zero", np.zeros((), np.float32))
            nodes += [helper.make_node("ReduceMin", ["x"], ["low"], axes=[1, 2, 3], keepdims=1),  # per row
                      helper.make_node("Flatten", ["low"], ["low_row"]), helper.make_node("Sqrt", ["low_row"], ["root"]),
                      helper.make_node("Mul", ["root", "zero"], ["nothing"]), helper.make_node("Add", ["raw", "nothing"], ["logits"])]
    elif head == "sym_size":
        const("fc", w["fc"])
        const("zero_index", np.array(0, np.int64))
        const("axes0", np.array([0], np.int64))
        const("minus_one", np.array([-1], np.int64))
        nodes += [
            helper.make_node("GlobalAveragePool", ["r1"], ["gap"]),
            helper.make_node("Shape", ["x"], ["x_shape"]),
            helper.make_node("Gather", ["x_shape", "zero_index"], ["sym_size"], axis=0),
            helper.make_node("Unsqueeze", ["sym_size", "axes0"], ["batch"]),
            helper.make_node("Concat", ["batch", "minus_one"], ["view_shape"], axis=0),
            helper.make_node("Reshape", ["gap", "view_shape"], ["view"], name="node_view"),
            helper.make_node("MatMul", ["view", "fc"], ["logits"]),
        ]
    else:
        const("fc_flat", w["fc_flat"])
        const("view_shape", np.array([1, -1], np.int64))
        if head == "values":
            const("limit", np.array(-1e6, np.float32))
            const("far", np.array(1000, np.int64))
            const("table", np.zeros(5, np.float32))
            nodes += [
                helper.make_node("ReduceMin", ["c1"], ["low"], keepdims=0),
                helper.make_node("Less", ["low", "limit"], ["insane"]),
                helper.make_node("Cast", ["insane"], ["insane_int"], to=TensorProto.INT64),
                helper.make_node("Mul", ["insane_int", "far"], ["index"]),
                helper.make_node("Gather", ["table", "index"], ["nothing"], name="pick"),
            ]
        nodes += [helper.make_node("Reshape", ["r1", "view_shape"], ["view"], name="head_reshape"),
                  helper.make_node("MatMul", ["view", "fc_flat"], ["logits" if head == "batch1" else "raw"])]
        if head == "values":
            nodes.append(helper.make_node("Add", ["raw", "nothing"], ["logits"]))
    batch: int | str = 1 if head in ("batch1", "values") else "N"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def scores(r1: np.ndarray, head: str = "flatten") -> np.ndarray:
    """The logits (n, 5) of each of n values (n, 6, 16, 16) of ``r1``, in numpy."""
    w = weights()
    if head in ("flatten", "sym_size", "nan", "refuse", "dead"):
        return r1.mean(axis=(2, 3)) @ w["fc"]
    return r1.reshape(len(r1), -1) @ w["fc_flat"]


def photo(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(path)
    return path
