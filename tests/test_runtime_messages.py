"""No onnxruntime message reaches the user raw (issue 25, item 5), whatever the command: one line, whole
words, the node that stopped, no C++ source paths or signatures, and advice that fits the failure."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import call_onnxvis
from onnxvis.engine import runner
from onnxvis.errors import OnnxvisError


def fixed_reshape_model(path):
    """x [1,3,H,W] (free H and W) -> Conv(4) -> Reshape to [1, 4*16*16] -> MatMul -> y [1, 10]: a head
    exported at 16x16 that a graph with a free input size cannot run at any other size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([1, 4 * 16 * 16], np.int64), "shape"),
        numpy_helper.from_array(rng.standard_normal((4 * 16 * 16, 10)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["flat"], name="head_view"),
        helper.make_node("MatMul", ["flat", "fc"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def setting(tmp_path):
    model = fixed_reshape_model(tmp_path / "fixed.onnx")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photo)
    return model, photo


@pytest.mark.parametrize(
    "command",
    [["predict"], ["cam", "--method", "eigen"], ["cam", "--method", "ablation"], ["saliency"], ["report"]],
)
def test_a_graph_that_fails_inside_is_one_line_of_words(tmp_path, setting, command):
    model, photo = setting
    args = [command[0], str(model), str(photo), *command[1:], "--resize", "32,32"]
    if command[0] != "predict":
        args += ["-o", str(tmp_path / "out")]
    result = call_onnxvis(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxvis: error: "), result.stderr
    line = lines[0]
    assert "onnxruntime's Reshape node 'head_view' stops: The input tensor cannot be reshaped to the requested shape" in line, line
    for raw in (".h:", ".cc:", "::", "ONNXRuntimeError", "was false", "Status Message"):
        assert raw not in line, line
    assert "check the input size and preprocessing" not in line  # the input was taken; the graph fails inside


def test_a_refused_input_keeps_the_advice_on_size_and_preprocessing(tmp_path):
    from conftest import conv_model
    from onnxvis.model.file import Model

    path = tmp_path / "m.onnx"
    conv_model(np.ones((2, 3, 3, 3), np.float32), path=path)
    model = Model.open(path)
    with pytest.raises(OnnxvisError) as info:
        runner.Session(model, [model.graph.output[0].name]).run({model.graph.input[0].name: np.zeros((1, 5, 7, 7), np.float32)})
    text = str(info.value)
    assert "onnxruntime stops: Got invalid dimensions for input" in text and text.endswith("check the input size and preprocessing")
    assert "[ONNXRuntimeError]" not in text


def test_runtime_reason_lives_in_the_engine():
    """One place puts onnxruntime in words; cam uses the engine's."""
    from onnxvis.analysis.cam import runs

    assert runs.runtime_reason is runner.runtime_reason
