"""`onnxvis layers MODEL`: one row per conv layer saying how its weight is stored; and what
`kernels` does with layers whose weights are not in the file, or are very large."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import asset, real_models


def _weight(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _save(path, nodes, inputs, inits=(), outputs=("y",), opsets=(("", 17),)):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_empty_tensor_value_info(o) for o in outputs], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _rows(done) -> list[str]:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["idx", "name", "op"] and lines[0].endswith("weight source")
    return lines[1:]


@pytest.mark.parametrize("name", real_models())
def test_layers_of_every_real_model(cli, name):
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    layers = find_conv_layers(Model.open(asset(f"models/{name}")))
    rows = _rows(cli("layers", asset(f"models/{name}")))
    assert len(rows) == len(layers)
    for layer, row in zip(layers, rows, strict=True):
        fields = row.split()
        assert fields[:4] == [str(layer.index), layer.name, layer.op_type, "x".join(map(str, layer.weight_shape))]
        assert f"{layer.param_count:,}" in fields
        assert row.rstrip().endswith(layer.source.describe())


@pytest.mark.parametrize(
    "name, first_row",
    [
        ("mnist_cntk_int8_qdq.onnx",
            "0  Convolution28 Conv 8x1x5x5 1x1 0,0,0,0 1 200 quantized (int8 per-channel (axis 0, 8 scales) via DequantizeLinear)"),
        ("ppocr_mobile_v2.0_cls_paddle.onnx", "0  Conv@0 Conv 8x3x3x3 2x2 1,1,1,1 1 216 constant float32"),
        ("light_squeezenet_constantofshape.onnx", "0  n0 Conv 64x3x3x3 2x2 0,0,0,0 1 1,792 computed by ConstantOfShape, folded"),
        ("squeezenet1.0_caffe2_fp16.onnx", "0  Conv_0 Conv 64x3x3x3 2x2 0,0,0,0 1 1,792 initializer float16"),  # 1,728 weights + 64 biases
    ],
)
def test_first_rows_say_how_the_weights_are_stored(cli, name, first_row):
    rows = _rows(cli("layers", asset(f"models/{name}")))
    assert " ".join(rows[0].split()) == " ".join(first_row.split())


def test_layers_of_subgraphs_conv_transpose_and_fused_conv(cli, tmp_path):
    then_graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["t"], name="then_conv")], "then", [],
        [helper.make_empty_tensor_value_info("t")],
    )
    else_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [helper.make_empty_tensor_value_info("e")])
    nodes = [
        helper.make_node("If", ["cond"], ["b"], name="branch", then_branch=then_graph, else_branch=else_graph),
        helper.make_node("ConvTranspose", ["x", "wt"], ["up"], name="up", group=2),
        helper.make_node("FusedConv", ["x", "w"], ["y"], name="fused", domain="com.microsoft", activation="Relu"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
        helper.make_tensor_value_info("cond", TensorProto.BOOL, [])]
    inits = [numpy_helper.from_array(_weight(2, 4, 3, 3), "w"), numpy_helper.from_array(_weight(4, 3, 2, 2), "wt")]
    path = _save(tmp_path / "m.onnx", nodes, inputs, inits, outputs=("b", "up", "y"), opsets=(("", 17), ("com.microsoft", 1)))
    rows = _rows(cli("layers", path))
    assert len(rows) == 3
    assert "then_conv" in rows[0] and rows[0].endswith("[in branch.then_branch]")
    assert "up" in rows[1] and "4x3x2x2" in rows[1] and "[stored in x out/group; drawn per output channel]" in rows[1]
    assert "fused" in rows[2] and rows[2].endswith("[Relu fused: maps are after it]")


def test_layers_of_a_model_without_conv_is_an_error(cli, tmp_path):
    path = _save(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])])
    done = cli("layers", path)
    assert done.returncode == 2
    assert done.stderr.startswith("onnxvis: error: ") and "no convolution layer" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _runtime_weight_model(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w_stored"], ["h"], name="stored", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "w_fed"], ["y"], name="fed"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
        helper.make_tensor_value_info("w_fed", TensorProto.FLOAT, [2, 4, 3, 3])]
    return _save(tmp_path / "m.onnx", nodes, inputs, [numpy_helper.from_array(_weight(4, 3, 3, 3), "w_stored")])


def test_a_weight_fed_at_run_time_is_listed_and_skipped_by_kernels(cli, tmp_path):
    path = _runtime_weight_model(tmp_path)
    rows = _rows(cli("layers", path))
    assert rows[1].rstrip().endswith("runtime input (fed at run time as input 'w_fed' of the model)")
    assert rows[1].split()[3] == "?"
    done = cli("kernels", path, "-o", tmp_path / "k")
    assert done.returncode == 0, done.stderr
    (png,) = [line for line in done.stdout.splitlines() if line.endswith(".png")]
    assert "00_stored" in png and np.asarray(Image.open(png)).std() > 0
    assert "skipped: layer 1 (fed)" in done.stderr and "not in the file" in done.stderr
    alone = cli("kernels", path, "--layers", "fed", "-o", tmp_path / "k2")
    assert alone.returncode == 2
    assert alone.stderr.startswith("onnxvis: error: layer 1 (fed): the weight is a runtime input")


def test_a_very_large_layer_is_capped_and_the_flag_lifts_the_cap(cli, tmp_path):
    """300 output x 20 input channels of 3x3 is 6000 tiles; --max-tiles 1000 keeps the first 50 kernels."""
    path = _save(
        tmp_path / "m.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="big")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 20, 8, 8])], [numpy_helper.from_array(_weight(300, 20, 3, 3), "w")],
    )
    capped = cli("kernels", path, "--max-tiles", "1000", "-o", tmp_path / "a")
    assert capped.returncode == 0, capped.stderr
    assert "drew the first 50 of 300 output channels" in capped.stderr and "max_tiles) of 0 draws all" in capped.stderr
    full = cli("kernels", path, "--max-tiles", "0", "-o", tmp_path / "b")
    assert full.returncode == 0, full.stderr
    assert "drew the first" not in full.stderr
    small = np.asarray(Image.open(capped.stdout.split()[0]))
    large = np.asarray(Image.open(full.stdout.split()[0]))
    # one row of tiles (3 px + 2 px padding) per output channel
    assert small.shape[0] == 2 + 50 * 5 and large.shape[0] == 2 + 300 * 5
    assert small.shape[1] == large.shape[1] == 2 + 20 * 5


@pytest.mark.parametrize(
    "op, weight_shape, attrs, x_shape, layout, png_shape",
    [
        ("Conv", (4, 2, 5), {}, [1, 2, 16], "strips", (2 + 4 * 3, 2 + 2 * 7)),  # 1-D: one strip per input channel
        ("Conv", (3, 2, 2, 3, 3), {}, [1, 2, 6, 8, 8], "slices", (2 + 3 * 5, 2 + 4 * 5)),  # 3-D: 2 inputs x 2 depth slices
        ("ConvTranspose", (4, 3, 2, 2), {"group": 2}, [1, 4, 8, 8], "mosaic", (2 + 6 * 4, 2 + 2 * 4)),  # 6 kernels of 2 inputs
        ("Conv", (6, 1, 3, 3), {"group": 6}, [1, 6, 8, 8], "grey", (2 + 5, 2 + 6 * 5)),  # depthwise: one grey tile each
        ("Conv", (5, 4, 1, 1), {}, [1, 4, 8, 8], "heatmap", (5, 4)),  # 1x1: one pixel per weight, O x I
    ],
)
def test_kernels_of_every_conv_kind_through_the_cli(cli, tmp_path, op, weight_shape, attrs, x_shape, layout, png_shape):
    from onnxvis.draw import grids
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers
    from onnxvis.model.weights import kernel_weights

    path = _save(
        tmp_path / "m.onnx", [helper.make_node(op, ["x", "w"], ["y"], name="k", **attrs)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)], [numpy_helper.from_array(_weight(*weight_shape), "w")],
    )
    done = cli("kernels", path, "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    (png,) = done.stdout.split()
    pixels = np.asarray(Image.open(png))
    assert pixels.shape == png_shape and pixels.std() > 0
    (layer,) = find_conv_layers(Model.open(path))
    picture = grids.kernel_grid(kernel_weights(layer))
    assert picture.layout == layout
    assert np.array_equal(pixels, grids.to_uint8(picture.grid))


def test_kernels_of_a_conv_inside_a_loop_body_through_the_cli(cli, tmp_path):
    w = _weight(3, 3, 3, 3)
    body = helper.make_graph(
        [helper.make_node("Conv", ["s", "w"], ["s_out"], name="body_conv", pads=[1, 1, 1, 1]),
            helper.make_node("Identity", ["c"], ["c_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("s_out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    path = _save(
        tmp_path / "m.onnx", [helper.make_node("Loop", ["n", "", "x"], ["y"], name="loop", body=body)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])], [numpy_helper.from_array(np.array(2, np.int64), "n")],
    )
    rows = _rows(cli("layers", path))
    assert len(rows) == 1 and rows[0].endswith("[in loop.body]") and "initializer float32 (in subgraph loop.body)" in rows[0]
    done = cli("kernels", path, "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    (png,) = done.stdout.split()
    pixels = np.asarray(Image.open(png))
    assert pixels.shape == (2 + 5, 2 + 3 * 5, 3) and pixels.std() > 0  # an RGB grid of 3 kernels
    refused = cli("fmaps", path, "--layers", "body_conv", "-o", tmp_path / "f")
    assert refused.returncode == 2 and "inside a subgraph (loop.body)" in refused.stderr


def test_the_table_stays_aligned_with_long_node_names(cli, tmp_path):
    """tf2onnx and JAX name nodes with long paths: the columns after the name still line up."""
    long_name = "model/sequential/block_1/conv2d_with_a_very_long_name/Conv2D__42"
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["h"], name=long_name, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "w1"], ["y"], name="c"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    inits = [numpy_helper.from_array(_weight(4, 3, 3, 3), "w0"), numpy_helper.from_array(_weight(2, 4, 3, 3), "w1")]
    path = _save(tmp_path / "m.onnx", nodes, inputs, inits)
    done = cli("layers", path)
    header, *rows = done.stdout.splitlines()
    assert len(rows) == 2 and long_name in rows[0]
    op_column = header.index(" op ") + 1
    assert rows[0][op_column:].startswith("Conv ") and rows[1][op_column:].startswith("Conv ")
    weight_column = header.index(" weight ") + 1
    assert rows[0][weight_column:].startswith("4x3x3x3") and rows[1][weight_column:].startswith("2x4x3x3")
