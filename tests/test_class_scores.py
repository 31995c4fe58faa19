"""Which outputs are class scores (issue 25, item 1): predict and info take (N, K) or (N, K, 1, 1) only, and
say whether the probabilities shown are a softmax of the output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import asset
from onnxvis.cli import main
from onnxvis.engine.classes import is_class_shape
from onnxvis.engine.inspector import Inspector


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def stand_in(path, tail: str, declared: list | None | str = "auto"):
    """x [1,3,16,16] -> Conv -> ``tail``: "logits" (N, 10), "softmax" (N, 10), "anchors" (N, 256, 1),
    "map" (N, 1, 16, 16) through a Sigmoid, as a text detector's probability map. ``declared`` is the
    output's declared shape (None: undeclared)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    channels = 10 if tail in ("logits", "softmax") else 1
    inits = [numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1])]
    if tail in ("logits", "softmax"):
        nodes += [helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["f"])]
        nodes += [helper.make_node("Softmax", ["f"], ["y"], axis=1) if tail == "softmax" else helper.make_node("Identity", ["f"], ["y"])]
        shape = [1, 10]
    elif tail == "anchors":
        inits.append(numpy_helper.from_array(np.array([1, 256, 1], np.int64), "s"))
        nodes.append(helper.make_node("Reshape", ["c", "s"], ["y"]))
        shape = [1, 256, 1]
    else:
        nodes.append(helper.make_node("Sigmoid", ["c"], ["y"]))
        shape = [1, 1, 16, 16]
    out_shape = shape if declared == "auto" else declared
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "shape, expected",
    [((1, 1000), True), ((None, 10), True), ((1, 10, 1, 1), True), ((1, None), True),
     ((1, 896, 1), False), ((1, 1, 224, 224), False), ((1, 96, 64), False), ((1, 1), False), ((1000,), False),
     ((1, 10, 1, 2), False)],
)
def test_class_scores_are_n_k_or_n_k_1_1(shape, expected):
    assert is_class_shape(shape) is expected


@pytest.mark.parametrize("tail, shape", [("anchors", "Nx256x1"), ("map", "Nx1x16x16")])
@pytest.mark.parametrize("declared", ["auto", None])
def test_predict_refuses_an_output_that_is_not_class_scores(tmp_path, capsys, photo, tail, shape, declared):
    """A detector's anchor scores and a text detector's probability map are not classes: one line that gives
    the shape (declared, or found on the values when the graph does not declare it) and the flag to choose."""
    model = stand_in(tmp_path / f"{tail}.onnx", tail, declared)
    code, out, err = run_cli(capsys, "predict", model, photo)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("onnxvis: error: output ") and "not class scores, which are (N, K) or (N, K, 1, 1)" in err
    assert (shape.replace("N", "1", 1) if declared == "auto" else shape) in err
    assert "--target-output NAME" in err


def test_predict_says_whether_a_softmax_was_applied(tmp_path, capsys, photo):
    code, out, err = run_cli(capsys, "predict", stand_in(tmp_path / "logits.onnx", "logits"), photo, "--top", "3")
    assert code == 0, err
    assert "scores: a softmax of output 'y', whose values are not probabilities" in err
    code, out, err = run_cli(capsys, "predict", stand_in(tmp_path / "softmax.onnx", "softmax"), photo, "--top", "3")
    assert code == 0, err
    assert "scores: output 'y' as it is, no softmax: its values already are probabilities (they sum to 1)" in err
    assert "softmax of" not in err


def test_the_caffe_squeezenet_output_is_taken_as_it_is():
    """Its output already sums to 1 (MANIFEST.md): no softmax over it."""
    with Inspector(asset("models/squeezenet1.0_caffe2_fp16.onnx")) as insp:
        prediction = insp.predict(asset("images/skimage_coffee.png"), top=1)
    assert prediction.softmax is False and prediction.top[0][0] == 967


def test_info_says_the_class_count_is_a_guess_from_the_shape(tmp_path, capsys):
    code, out, err = run_cli(capsys, "info", stand_in(tmp_path / "logits.onnx", "logits"))
    assert code == 0, err
    assert "classes   10 (guessed from the output's shape), without names; output 'y' [1x10] float32" in out
    code, out, err = run_cli(capsys, "info", stand_in(tmp_path / "anchors.onnx", "anchors"))
    assert code == 0, err
    assert "classes   none: output 'y' [1x256x1] float32 is not class scores, which are (N, K) or (N, K, 1, 1)" in out


@pytest.mark.parametrize(
    "tail, method, rule",
    [("map", "eigen", "output 'y': the output [1x1x16x16] is spatial: its axis 1 holds the 1 classes, and each class's score is its "
      "sum over the 16x16 positions (grad-cam's SemanticSegmentationTarget with the whole image as the mask)"),
     ("map", "grad", "sum over the 16x16 positions"),
     ("anchors", "ablation", "output 'y': the output [1x256x1] is not (N, K): its 256 values along axis 1 are taken as the classes")],
)
def test_cam_says_which_rule_it_used_for_an_output_that_is_not_class_scores(tmp_path, capsys, photo, tail, method, rule):
    """cam keeps its documented rule for spatial and 3-D outputs (a class's score is its sum over the positions), and says it
    once per run; a (N, K) output has no rule to say."""
    model = stand_in(tmp_path / f"{tail}.onnx", tail)
    code, out, err = run_cli(capsys, "cam", model, photo, photo, "--method", method, "--target", "0", "-o", tmp_path / "out")
    assert code == 0, err
    assert rule in err and err.count("note: output 'y':") == 1, err
    code, out, err = run_cli(capsys, "cam", stand_in(tmp_path / "logits.onnx", "logits"), photo, "--method", method, "-o", tmp_path / "o2")
    assert code == 0, err
    assert "note: output" not in err


def test_score_rule_names_the_softmax_axis_and_the_nhwc_layout():
    from onnxvis.analysis.cam.runs import score_rule

    assert score_rule((1, 10)) is None and score_rule((1, 10, 1, 1)) is None
    assert score_rule((1, 4420, 2), axis=2) == (
        "its axis 2 (the final Softmax's) holds the 2 classes; each class's score is its sum over the other 4420 values")
    assert "its last axis holds the 3 classes" in score_rule((1, 8, 8, 3), layout="NHWC")
