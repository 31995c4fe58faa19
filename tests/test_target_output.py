"""--target-output is the one flag that chooses the class output (issue 25, item 13): predict, cam, report, serve."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_class_scores import run_cli

from onnxvis.cli import build_parser


def two_heads(path):
    """x [1,3,8,8] -> Conv -> pool -> two (1, K) heads, 'a' (4 scores) and 'b' (6 scores)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "m")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["a"]),
             helper.make_node("MatMul", ["a", "m"], ["b"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 6])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(path)
    return path


def test_every_command_that_scores_classes_takes_target_output():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in ("predict", "cam", "report", "serve"):
        flags = {s for a in sub.choices[name]._actions for s in a.option_strings}
        assert "--target-output" in flags, name
        assert "--output-name" not in flags, name


def test_the_error_that_asks_for_an_output_names_the_flag(tmp_path, capsys, photo):
    model = two_heads(tmp_path / "heads.onnx")
    code, out, err = run_cli(capsys, "predict", model, photo)
    assert code == 2 and out == ""
    assert err.strip() == (
        "onnxvis: error: several outputs could hold the class scores (a, b); name the one to use (set with --target-output NAME)"
    )
    code, out, err = run_cli(capsys, "predict", model, photo, "--target-output", "b", "--format", "jsonl")
    assert code == 0, err
    classes = [t["class"] for t in json.loads(out)["top"]]
    assert len(classes) == 5 and max(classes) >= 4  # head a has 4 classes only: these are head b's 6
    assert "output 'b'" in err
    code, out, err = run_cli(capsys, "predict", model, photo, "--target-output", "nope")
    assert code == 2 and "the model has no output 'nope'" in err and "(set with --target-output NAME)" in err


def test_report_scores_the_chosen_output(tmp_path, capsys, photo):
    model = two_heads(tmp_path / "heads.onnx")
    labels = tmp_path / "six.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(6)))
    code, out, err = run_cli(capsys, "report", model, photo, "--labels", labels, "--target-output", "b", "--cam", "none",
                             "-o", tmp_path / "r")
    assert code == 0, err
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Top-5 predictions (b" in page
    assert "class4" in page or "class5" in page  # the top-5 of 6 classes holds one of them; head a has 4
    code, out, err = run_cli(capsys, "report", model, photo, "--labels", labels, "--target-output", "a", "-o", tmp_path / "r2")
    assert code == 2 and "names 6 classes but the model scores 4" in err
