"""Kernels of a BGR model are drawn in RGB order (issue 25, item 2): the conv that reads a BGR image has blue
in its weight's input channel 0; --channel-order rgb (default) draws it as blue, stored as it is stored."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_class_scores import run_cli

from conftest import asset
from onnxvis.engine.inspector import Inspector


def blue_model(path, bgr: bool):
    """x [1,3,8,8] -> Sub (mean) -> conv1 (4 kernels that see only input channel 0) -> conv2; ``bgr``: its
    metadata says the image is fed in BGR order, so channel 0 is blue."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = np.zeros((4, 3, 3, 3), np.float32)
    w1[:, 0] = 1.0
    w1[:, 0, 1, 1] = 2.0  # not constant, so that min-max scaling keeps the colour
    w2 = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Sub", ["x", "mean"], ["centred"]),
             helper.make_node("Conv", ["centred", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1])]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.zeros((1, 3, 1, 1), np.float32), "mean")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("c2", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    color = "BGR" if bgr else "RGB"
    helper.set_model_props(model, {"onnxvis.preprocess": json.dumps({"resize": [8, 8], "color": color, "scale": 255})})
    onnx.save(model, str(path))
    return path


def dominant(png: str) -> int:
    """The channel (0 R, 1 G, 2 B) that the picture's brightest kernel pixel is strongest in."""
    pixels = np.asarray(Image.open(png)).astype(int)
    y, x = np.unravel_index(np.argmax(pixels.sum(axis=2)), pixels.shape[:2])
    return int(np.argmax(pixels[y, x]))


@pytest.mark.parametrize(
    "bgr, flags, colour, said",
    [(True, [], 2, True), (True, ["--channel-order", "stored"], 0, False), (False, [], 0, False), (False, ["--bgr"], 2, True)],
)
def test_the_first_conv_of_a_bgr_model_is_drawn_in_rgb_order(tmp_path, capsys, bgr, flags, colour, said):
    model = blue_model(tmp_path / "m.onnx", bgr)
    code, out, err = run_cli(capsys, "kernels", model, "--layers", "0", *flags, "-o", tmp_path / "k")
    assert code == 0, err
    (png,) = out.split()
    assert dominant(png) == colour  # 2: blue, as a BGR image's channel 0 is; 0: red, the stored order drawn as RGB
    note = "layer 0 (conv1) reads the image in BGR order"
    assert (note in err) is said
    if said:
        assert "--channel-order stored draws them as stored" in err


def test_only_the_conv_that_reads_the_image_is_reordered(tmp_path):
    with Inspector(blue_model(tmp_path / "m.onnx", True)) as insp:
        assert [layer.name for layer in insp.bgr_layers()] == ["conv1"]  # through the Sub; conv2 reads conv1
    with Inspector(blue_model(tmp_path / "rgb.onnx", False)) as insp:
        assert insp.bgr_layers() == []


def test_the_caffe_squeezenet_first_conv_reads_bgr():
    with Inspector(asset("models/squeezenet1.0_caffe2_fp16.onnx")) as insp:
        assert [layer.index for layer in insp.bgr_layers()] == [0]  # its guessed caffe preprocessing is BGR
    with Inspector(asset("models/squeezenet1.0_caffe2_fp16.onnx"), preset="imagenet") as insp:
        assert insp.bgr_layers() == []


def test_report_draws_the_kernels_in_rgb_order_too(tmp_path, capsys):
    model = blue_model(tmp_path / "m.onnx", True)
    code, out, err = run_cli(capsys, "report", model, "-o", tmp_path / "r")
    assert code == 0, err
    assert "layer 0 (conv1) reads the image in BGR order" in err
