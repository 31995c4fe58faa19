"""Finding conv layers: every conv-like op, in graph order, inside If / Loop bodies too, and selecting them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import asset, conv_model
from onnxvis.errors import OnnxvisError
from onnxvis.model.file import Model
from onnxvis.model.layers import channels_first, find_conv_layers, select_layers
from onnxvis.model.weights import kernel_weights

RNG = np.random.default_rng(7)


def f32(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def save(model, path):
    onnx.save(model, str(path))
    return Model.open(path)


# ------------------------------------------------------------------------------ main graph


def test_layers_in_graph_order_with_their_attributes(tmp_path):
    w1, w2, w3 = f32(4, 3, 3, 3), f32(4, 1, 3, 3), f32(4, 2, 1, 1)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="stem", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "w2"], ["c"], group=4, dilations=[2, 2], auto_pad="SAME_UPPER"),  # unnamed
        helper.make_node("ConvTranspose", ["c", "w3"], ["y"], name="up", group=2, strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))],
    )
    model = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    layers = find_conv_layers(model)
    assert [layer.index for layer in layers] == [0, 1, 2]
    assert [layer.name for layer in layers] == ["stem", "Conv_1", "up"]
    assert [layer.op_type for layer in layers] == ["Conv", "Conv", "ConvTranspose"]
    stem, depthwise, up = layers
    assert (stem.input_name, stem.weight_name, stem.output_name) == ("x", "w1", "a")
    assert stem.strides == (2, 2) and stem.pads == (1, 1, 1, 1) and stem.dilations == (1, 1) and stem.group == 1
    assert depthwise.group == 4 and depthwise.dilations == (2, 2) and depthwise.attributes["auto_pad"] == "SAME_UPPER"
    assert depthwise.strides == (1, 1) and depthwise.pads == (0, 0, 0, 0)
    assert up.weight_shape == (4, 2, 1, 1) and up.out_channels == 4 and up.group == 2
    assert stem.param_count == 108 and stem.spatial_rank == 2 and stem.kernel_size == (3, 3)
    assert all(layer.in_main_graph for layer in layers)


def test_only_real_conv_ops_of_the_right_domain_count(tmp_path):
    w = f32(2, 2, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="custom_conv", domain="my.ops"),
        helper.make_node("FusedConv", ["x", "w"], ["b"], name="fake_fused"),  # default domain: not onnxruntime's
        helper.make_node("FusedConv", ["x", "w"], ["c"], name="fused", domain="com.microsoft", activation="Relu"),
        helper.make_node("NhwcConv", ["x", "w"], ["d"], name="nhwc", domain="com.microsoft"),
        helper.make_node("Conv", ["x", "w"], ["e"], name="plain"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "abcde"], [numpy_helper.from_array(w, "w")],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("my.ops", 1)]
    model = save(helper.make_model(graph, opset_imports=opsets), tmp_path / "m.onnx")
    layers = find_conv_layers(model)
    assert [layer.name for layer in layers] == ["fused", "nhwc", "plain"]
    assert layers[0].fused_activation == "Relu" and layers[2].fused_activation is None
    for layer in layers:
        np.testing.assert_array_equal(kernel_weights(layer), w)
    # only the NhwcConv gives channels-last maps, which every analysis turns channels first alike
    assert [layer.channels_last for layer in layers] == [False, True, False]
    hwc = np.arange(2 * 3 * 4, dtype=np.float16).reshape(2, 3, 4)
    maps = channels_first(layers[1], hwc)
    assert maps.shape == (4, 2, 3) and maps.dtype == np.float32 and maps[1, 0, 2] == hwc[0, 2, 1]
    assert channels_first(layers[2], hwc, dtype=None).dtype == np.float16 and channels_first(layers[2], hwc).shape == (2, 3, 4)
    for bad, rank in [(np.zeros((4, 5)), 3), (np.zeros(4), None), (np.zeros((0, 3, 3)), None)]:
        with pytest.raises(OnnxvisError, match=r"layer 2 \(plain\) gave an output of shape .* not feature maps"):
            channels_first(layers[2], bad, rank=rank)


def test_model_without_conv_has_no_layers_and_selecting_says_so(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    assert find_conv_layers(model) == []
    with pytest.raises(OnnxvisError, match="no convolution layer"):
        select_layers([], None)


# ------------------------------------------------------------------------------- subgraphs


def _if_loop_model():
    """x -> Conv(main) -> If(cond){then: Conv with a body initializer, else: Conv with an outer weight}
    -> Loop(2 iterations){Conv with a Constant weight in the body}."""
    w_main, w_then, w_else, w_loop = f32(3, 3, 3, 3), f32(3, 3, 3, 3), f32(3, 3, 3, 3), f32(3, 3, 1, 1)
    then_graph = helper.make_graph(
        [helper.make_node("Conv", ["h", "w_then"], ["t"], name="then_conv", pads=[1, 1, 1, 1])],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)], [numpy_helper.from_array(w_then, "w_then")],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Conv", ["h", "w_else"], ["e"], name="else_conv", pads=[1, 1, 1, 1])],
        "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["w_loop"], value=numpy_helper.from_array(w_loop, "w_loop_value")),
            helper.make_node("Conv", ["state", "w_loop"], ["state_out"], name="loop_conv"),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, None),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Conv", ["x", "w_main"], ["h"], name="main_conv", pads=[1, 1, 1, 1]),
        helper.make_node("If", ["cond"], ["branch"], name="branch", then_branch=then_graph, else_branch=else_graph),
        helper.make_node("Loop", ["trips", "", "branch"], ["y"], name="repeat", body=body),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w_main, "w_main"), numpy_helper.from_array(w_else, "w_else"),
            numpy_helper.from_array(np.array(2, np.int64), "trips")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, {"main_conv": w_main, "then_conv": w_then, "else_conv": w_else, "loop_conv": w_loop}


def test_convs_inside_if_and_loop_are_listed_with_their_kernels(tmp_path):
    proto, weights = _if_loop_model()
    # the model is valid and runs: the branches and the loop body are real convolutions
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = f32(1, 3, 8, 8)
    assert session.run(None, {"x": x, "cond": np.array(True)})[0].shape == (1, 3, 8, 8)
    model = save(proto, tmp_path / "m.onnx")
    layers = find_conv_layers(model)
    # a subgraph's layers come at its node's place; the If's branches in the node's attribute order
    assert layers[0].name == "main_conv" and layers[3].name == "loop_conv"
    assert {layer.name for layer in layers[1:3]} == {"then_conv", "else_conv"}
    path = {layer.name: layer.graph_path for layer in layers}
    assert path == {"main_conv": "", "then_conv": "branch.then_branch", "else_conv": "branch.else_branch", "loop_conv": "repeat.body"}
    kind = {layer.name: layer.source.kind for layer in layers}
    assert kind == {"main_conv": "initializer", "then_conv": "initializer", "else_conv": "initializer", "loop_conv": "constant"}
    then_layer = next(layer for layer in layers if layer.name == "then_conv")
    assert "in subgraph branch.then_branch" in then_layer.source.describe()
    for layer in layers:
        np.testing.assert_array_equal(kernel_weights(layer), weights[layer.name])


def test_subgraph_layers_can_be_selected_and_their_fmaps_are_refused_clearly(tmp_path):
    from PIL import Image

    from onnxvis.engine.shortcuts import feature_maps

    proto, _ = _if_loop_model()
    model = save(proto, tmp_path / "m.onnx")
    layers = find_conv_layers(model)
    assert select_layers(layers, "loop_conv") == [layers[3]]
    image = Image.fromarray((RNG.random((8, 8, 3)) * 255).astype(np.uint8))
    with pytest.raises(OnnxvisError, match=r"inside a subgraph \(repeat.body\).*'onnxvis kernels' draws its kernels"):
        feature_maps(model, image, [layers[3]], inputs={"cond": 1})
    result = feature_maps(model, image, [layers[0]], inputs={"cond": 1})
    assert result.maps[layers[0]].shape == (3, 8, 8)


def test_computed_weight_inside_a_subgraph_from_an_outer_initializer(tmp_path):
    w = f32(2, 2, 3, 3)
    then_graph = helper.make_graph(
        [helper.make_node("Mul", ["w_outer", "two"], ["w2"]), helper.make_node("Conv", ["x", "w2"], ["t"], name="inner")],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)], [numpy_helper.from_array(np.float32(2), "two")],
    )
    else_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w_outer")],
    )
    model = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    (layer,) = find_conv_layers(model)
    assert layer.graph_path == "If_0.then_branch"
    assert layer.source.kind == "computed" and layer.weight_shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(kernel_weights(layer), 2 * w)


# ------------------------------------------------------------------------------- selection


@pytest.fixture
def three_layers(tmp_path):
    w = f32(2, 2, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w"], ["b"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "w"], ["y"], name="conv2", pads=[1, 1, 1, 1]),  # duplicate name
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w")],
    )
    return find_conv_layers(save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx"))


def test_select_by_index_name_all_and_first(three_layers):
    a, b, c = three_layers
    assert select_layers(three_layers, None) == [a, b, c]
    assert select_layers(three_layers, None, default="first") == [a]
    assert select_layers(three_layers, "all") == [a, b, c]
    assert select_layers(three_layers, "2,0") == [c, a]
    assert select_layers(three_layers, "-1") == [c]
    assert select_layers(three_layers, "conv1, 0 ,conv1") == [a]
    assert select_layers(three_layers, "conv2") == [b], "a duplicate name selects its first layer"


@pytest.mark.parametrize(
    "spec, match",
    [("3", "out of range: the model has 3 conv layers"), ("-4", "out of range"),
        ("nope", "no conv layer is named 'nope'"), (",", "selects no layer")],
)
def test_bad_selection_is_a_clear_error(three_layers, spec, match):
    with pytest.raises(OnnxvisError, match=match):
        select_layers(three_layers, spec)


def test_conftest_conv_model_is_one_layer(tmp_path):
    conv_model(f32(4, 3, 5, 5), path=tmp_path / "c.onnx")
    (layer,) = find_conv_layers(Model.open(tmp_path / "c.onnx"))
    assert layer.name == "conv0" and layer.weight_shape == (4, 3, 5, 5)


# ------------------------------------------------------------------------------ real models

REAL = {
    # file: (conv layers, weight kinds, first weight shape, op types)
    "mnist_cntk.onnx": (2, {"initializer"}, (8, 1, 5, 5), {"Conv"}),
    "mnist_cntk_int8_qdq.onnx": (2, {"quantized"}, (8, 1, 5, 5), {"Conv"}),
    "mnist_cntk_int8_qlinearconv.onnx": (2, {"quantized"}, (8, 1, 5, 5), {"QLinearConv"}),
    "squeezenet1.0_caffe2_fp16.onnx": (26, {"initializer"}, (64, 3, 3, 3), {"Conv"}),
    "ppocr_mobile_v2.0_cls_paddle.onnx": (53, {"constant"}, (8, 3, 3, 3), {"Conv"}),
    "mtcnn_pnet_keras2onnx.onnx": (5, {"initializer"}, (10, 3, 3, 3), {"Conv"}),
    "cifar10_tutorial_pytorch.onnx": (4, {"initializer"}, (12, 3, 5, 5), {"Conv"}),
    "ultraface_rfb320_pytorch.onnx": (52, {"initializer"}, (16, 3, 3, 3), {"Conv"}),
    "light_squeezenet_constantofshape.onnx": (26, {"computed"}, (64, 3, 3, 3), {"Conv"}),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_model_layers(name):
    count, kinds, first_shape, ops = REAL[name]
    model = Model.open(asset(f"models/{name}"))
    layers = find_conv_layers(model)
    assert len(layers) == count
    assert {layer.source.kind for layer in layers} == kinds
    assert {layer.op_type for layer in layers} == ops
    assert layers[0].weight_shape == first_shape
    assert all(layer.in_main_graph for layer in layers)
    assert all(layer.weight_shape is not None and layer.source.loadable for layer in layers)
    names = [layer.name for layer in layers]
    assert len(set(names)) == len(names), "every layer can be selected by its name"


def test_real_squeezenet_weights_are_described_as_float16():
    layers = find_conv_layers(Model.open(asset("models/squeezenet1.0_caffe2_fp16.onnx")))
    assert {layer.source.describe() for layer in layers} == {"initializer float16"}


def test_real_depthwise_layers_of_ultraface():
    layers = find_conv_layers(Model.open(asset("models/ultraface_rfb320_pytorch.onnx")))
    depthwise = [layer for layer in layers if layer.group > 1]
    assert depthwise, "the RFB net has depthwise convolutions"
    for layer in depthwise:
        assert layer.weight_shape[1] == 1 and layer.group == layer.out_channels
        assert kernel_weights(layer).shape == layer.weight_shape


def test_param_count_includes_the_bias_like_torch(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    w = np.zeros((6, 3, 3, 3), np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y"], name="with_bias"),
        helper.make_node("Conv", ["y", "w2"], ["z"], name="without"),
        helper.make_node("ConvTranspose", ["z", "wt", "bt"], ["t"], name="up", group=2),
    ]
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.zeros(6, np.float32), "b"),
        numpy_helper.from_array(np.zeros((4, 6, 3, 3), np.float32), "w2"),
        numpy_helper.from_array(np.zeros((4, 5, 2, 2), np.float32), "wt"),
        numpy_helper.from_array(np.zeros(10, np.float32), "bt"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 9])],
                              [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "bias.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with_bias, without, up = find_conv_layers(Model.open(path))
    assert (with_bias.has_bias, without.has_bias, up.has_bias) == (True, False, True)
    assert with_bias.param_count == 6 * 3 * 3 * 3 + 6 and with_bias.weight_count == 162
    assert without.param_count == 4 * 6 * 3 * 3
    # ConvTranspose (C_in=4, C_out/group=5, group 2): 10 output channels, 10 biases
    assert up.out_channels == 10 and up.param_count == 4 * 5 * 2 * 2 + 10
