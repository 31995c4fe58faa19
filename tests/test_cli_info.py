"""`onnxvis info MODEL`: producer, opsets, inputs with layout / size / preprocessing, and the conv layers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import asset, real_models
from onnxvis.cli.common import GUESS_HINT
from onnxvis.image import preprocess as pp


def _info(cli, path) -> str:
    done = cli("info", path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _save(path, nodes, inputs, inits=(), producer="", metadata=None, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_empty_tensor_value_info("y")], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer, producer_version="9.9")
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _weight(*shape):
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("name", real_models())
def test_info_on_every_real_model(cli, name):
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    model = Model.open(asset(f"models/{name}"))
    out = _info(cli, asset(f"models/{name}"))
    proto = model.proto
    assert f"producer  {proto.producer_name} {proto.producer_version}".rstrip() in out
    assert "opsets    ai.onnx " in out
    assert ": the image, " in out
    assert "\npreproc   " in out and "\nsize      " in out
    layers = find_conv_layers(model)
    assert f"conv layers: {len(layers)} (weights: " in out
    rows = out.split("conv layers:", 1)[1].splitlines()[2:]
    assert len(rows) == len(layers)
    for layer, row in zip(layers, rows, strict=True):
        assert row.split()[:3] == [str(layer.index), layer.name, layer.op_type]
        assert layer.source.describe() in row


@pytest.mark.parametrize(
    "name, expected",
    [
        ("squeezenet1.0_caffe2_fp16.onnx", ["'data_0' [1x3x224x224] float16: the image, NCHW", "size      fixed 224x224",
                                            "batch     fixed 1",
                                            "caffe (guessed): resize 256x256, crop 224x224, BGR", "guessed from the producer onnx-caffe2",
                                            GUESS_HINT, "(weights: 26 initializer float16)"]),
        ("mnist_cntk.onnx", ["producer  CNTK 2.5.1", "ir        3", "opsets    ai.onnx 7",
            "channels  1: colour photos are converted to grey",
                             "raw (guessed): resize 28x28, L, 0..255", "output    'Plus214_Output_0' [1x10] float32"]),
        ("mnist_cntk_int8_qdq.onnx", ["quantized (int8 per-channel (axis 0, 8 scales) via DequantizeLinear)"]),
        ("mnist_cntk_int8_qlinearconv.onnx", ["opsets    ai.onnx 13, com.microsoft 1",
            "quantized (int8 per-tensor in QLinearConv (w_scale, w_zero_point))"]),
        ("ppocr_mobile_v2.0_cls_paddle.onnx", ["'x' [?x3x?x?] float32: the image, NCHW", "size      dynamic (?x?)",
                                               "batch     free: up to 8 images a run",
                                               "any size works", "(weights: 53 constant float32)"]),
        ("mtcnn_pnet_keras2onnx.onnx", ["'input_1' [?x?x?x3] float32: the image, NHWC (a Transpose to NCHW", "tf (guessed)",
                                        "guessed from the producer keras2onnx"]),
        ("light_squeezenet_constantofshape.onnx", ["(weights: 26 computed by ConstantOfShape, folded)"]),
        ("ultraface_rfb320_pytorch.onnx", ["size      fixed 240x320", "imagenet (guessed): resize 240x320",
            "output    'scores' [1x4420x2] float32"]),
    ],
)
def test_info_details_of_real_models(cli, name, expected):
    out = _info(cli, asset(f"models/{name}"))
    for text in expected:
        assert text in out, f"{text!r} missing from:\n{out}"


def test_info_names_the_other_inputs_and_the_flag(cli, tmp_path):
    nodes = [helper.make_node("Mul", ["x", "gain"], ["xg"]), helper.make_node("Conv", ["xg", "w"], ["y"], name="conv")]
    inputs = [helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    out = _info(cli, _save(tmp_path / "m.onnx", nodes, inputs, [numpy_helper.from_array(_weight(2, 3, 3, 3), "w")]))
    assert "input     'gain' [1] float32: not the image; a run needs a value for it (set with --input NAME=VALUE)" in out
    assert "input     'x' [1x3x8x8] float32: the image, NCHW" in out


def test_info_of_a_model_without_an_image_input(cli, tmp_path):
    nodes = [helper.make_node("Conv", ["audio", "w"], ["y"], name="conv1d")]
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, 16000])]
    out = _info(cli, _save(tmp_path / "m.onnx", nodes, inputs, [numpy_helper.from_array(_weight(4, 1, 9), "w")]))
    assert "image     none: model input 'audio' [1x1x16000] float32 is not an image (rank 3, a 1-D signal" in out
    assert "conv layers: 1 (weights: 1 initializer float32)" in out


def test_info_with_our_exporters_metadata_is_not_a_guess(cli, tmp_path):
    stored = pp.Preprocess(resize=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])]
    path = _save(tmp_path / "m.onnx", nodes, inputs, [numpy_helper.from_array(_weight(2, 3, 3, 3), "w")],
                 producer="pytorch", metadata={pp.METADATA_KEY: stored.to_json(), "onnxvis.source": "torchvision"})
    out = _info(cli, path)
    assert "preproc   metadata: resize 16x16, RGB, 0..1, mean [0.5, 0.5, 0.5], std [0.25, 0.25, 0.25]" in out
    assert "(the model's onnxvis.preprocess metadata)" in out
    assert GUESS_HINT not in out
    assert "source    torchvision" in out


def test_info_on_a_size_that_must_be_a_multiple(cli, tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["d"], strides=[2, 2], pads=[1, 1, 1, 1], name="down"),
        helper.make_node("Resize", ["d", "", "scales"], ["u"], mode="nearest"),
        helper.make_node("Add", ["u", "x"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])]
    inits = [numpy_helper.from_array(_weight(3, 3, 3, 3), "w"), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    out = _info(cli, _save(tmp_path / "m.onnx", nodes, inputs, inits))
    assert "size      dynamic (?x?)" in out
    assert "rounded to a multiple of 2: it upsamples (Resize) a map downsampled by 2 and joins it with others" in out


def test_info_of_a_weight_fed_at_run_time(cli, tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3, 3, 3])]
    out = _info(cli, _save(tmp_path / "m.onnx", nodes, inputs))
    assert "runtime input (fed at run time as input 'w' of the model)" in out
    assert "input     'w' [2x3x3x3] float32: not the image; a run needs a value for it (set with --input NAME=VALUE)" in out


def test_info_of_a_missing_file_is_one_line(cli, tmp_path):
    done = cli("info", tmp_path / "nope.onnx")
    assert done.returncode == 2
    assert done.stderr.startswith("onnxvis: error: model file not found") and len(done.stderr.strip().splitlines()) == 1
