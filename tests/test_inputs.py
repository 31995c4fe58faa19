"""The model's image input: which one, its layout, channels, dtype, size, the preprocessing, other inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import asset
from onnxvis.cli.common import GUESS_HINT as CLI_GUESS_HINT
from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.inspector import Inspector
from onnxvis.engine.shortcuts import feature_maps, predict
from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp
from onnxvis.image.inputs import (
    GUESS_HINT,
    explain_preprocess,
    fill_inputs,
    fit_size,
    image_input,
    parse_input_values,
    size_multiple,
)
from onnxvis.model.file import Model
from onnxvis.model.layers import find_conv_layers


def prepare_input(model, image, preprocess, changes=None):
    prepared = Inspector(model, InspectorConfig(preprocess=preprocess, changes=changes or {})).prepare(image)
    return None, prepared.preprocess, prepared.array


RNG = np.random.default_rng(3)


def f32(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def build(path, nodes, inputs, inits=(), outputs=("y",), opset=17, producer="", metadata=None):
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_empty_tensor_value_info(o) for o in outputs], list(inits)
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return Model.open(path)


def vinfo(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def conv_nchw(path, shape=(1, 3, 16, 16), elem=TensorProto.FLOAT, **kwargs):
    w = f32(4, shape[1], 3, 3)
    nodes = []
    x = "x"
    if elem != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    nodes.append(helper.make_node("Conv", [x, "w"], ["y"], name="conv"))
    return build(path, nodes, [vinfo("x", elem, list(shape))], [numpy_helper.from_array(w, "w")], **kwargs)


def keras_nhwc(path, shape=("N", "H", "W", 3)):
    """keras2onnx / tf2onnx style: scaling on the NHWC input, then a Transpose to NCHW before the conv."""
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "one"], ["centred"]),
        helper.make_node("Transpose", ["centred"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["nchw", "w"], ["y"], name="conv"),
    ]
    inits = [
        numpy_helper.from_array(f32(4, shape[3], 3, 3), "w"),
        numpy_helper.from_array(np.float32(2 / 255), "k"),
        numpy_helper.from_array(np.float32(1), "one"),
    ]
    return build(path, nodes, [vinfo("x", TensorProto.FLOAT, list(shape))], inits)


def photo(width=45, height=30, mode="RGB"):
    channels = 3 if mode == "RGB" else 1
    pixels = (RNG.random((height, width, channels)) * 255).astype(np.uint8)
    return Image.fromarray(pixels if channels == 3 else pixels[:, :, 0], mode)


# ------------------------------------------------------------------------------ which input


def test_nchw_input_that_feeds_a_conv(tmp_path):
    spec = image_input(conv_nchw(tmp_path / "m.onnx"))
    assert (spec.name, spec.layout, spec.channels, spec.size, spec.dtype) == ("x", "NCHW", 3, (16, 16), np.float32)
    assert "feeds Conv conv directly" in spec.layout_reason


def test_nhwc_input_found_through_the_transpose_after_scaling(tmp_path):
    spec = image_input(keras_nhwc(tmp_path / "m.onnx"))
    assert spec.layout == "NHWC" and spec.channels == 3 and spec.size == (None, None)
    assert "Transpose" in spec.layout_reason


def test_layout_override_and_its_validation(tmp_path):
    model = keras_nhwc(tmp_path / "m.onnx", shape=(1, 3, 8, 3))
    assert image_input(model).layout == "NHWC"
    forced = image_input(model, layout="nchw")
    assert forced.layout == "NCHW" and forced.layout_reason == "set by the user"
    with pytest.raises(OnnxvisError, match="the layout must be NCHW or NHWC"):
        image_input(model, layout="CHW")


def test_layout_from_the_shape_without_a_telling_consumer(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    model = build(tmp_path / "a.onnx", nodes, [vinfo("x", TensorProto.FLOAT, [1, 224, 224, 3])])
    assert image_input(model).layout == "NHWC"
    model = build(tmp_path / "b.onnx", nodes, [vinfo("x", TensorProto.FLOAT, [1, 1, 28, 28])])
    assert image_input(model).layout == "NCHW"


def test_image_is_the_input_that_reaches_the_first_conv(tmp_path):
    nodes = [helper.make_node("Mul", ["x", "gain"], ["xg"]), helper.make_node("Conv", ["xg", "w"], ["y"], name="conv")]
    inputs = [vinfo("gain", TensorProto.FLOAT, [1, 1, 1, 1]), vinfo("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    model = build(tmp_path / "m.onnx", nodes, inputs, [numpy_helper.from_array(f32(2, 3, 3, 3), "w")])
    assert image_input(model).name == "x"


@pytest.mark.parametrize(
    "value, match",
    [
        (vinfo("audio", TensorProto.FLOAT, [1, 1, 16000]), "rank 3, a 1-D signal"),
        (vinfo("tokens", TensorProto.STRING, [1, 5]), "not a numeric tensor"),
        (helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, None), "not a numeric tensor"),
        (vinfo("x", TensorProto.FLOAT, [1, 4, 32, 32]), "4 channels"),
    ],
)
def test_non_image_inputs_are_refused_in_one_clear_line(tmp_path, value, match):
    nodes = [helper.make_node("Identity", [value.name], ["y"])]
    model = build(tmp_path / "m.onnx", nodes, [value])
    with pytest.raises(OnnxvisError, match=match) as info:
        image_input(model)
    message = str(info.value)
    assert "\n" not in message and "'onnxvis kernels' works" in message


def test_kernels_still_work_on_an_audio_model(tmp_path):
    from onnxvis.model.weights import kernel_weights

    w = f32(8, 1, 9)
    model = build(
        tmp_path / "m.onnx", [helper.make_node("Conv", ["audio", "w"], ["y"], name="conv1d")],
        [vinfo("audio", TensorProto.FLOAT, [1, 1, 16000])], [numpy_helper.from_array(w, "w")],
    )
    (layer,) = find_conv_layers(model)
    np.testing.assert_array_equal(kernel_weights(layer), w)
    with pytest.raises(OnnxvisError, match="not an image"):
        feature_maps(model, photo(), [layer])


# ------------------------------------------------------------------------ channels and dtype


def test_grey_photo_into_an_rgb_model_and_colour_photo_into_a_grey_model(tmp_path):
    rgb_model = conv_nchw(tmp_path / "rgb.onnx", shape=(1, 3, 12, 12))
    grey = photo(mode="L")
    _, chosen, x = prepare_input(rgb_model, grey, pp.preset("unit"))
    assert x.shape == (1, 3, 12, 12) and chosen.color == "RGB"
    np.testing.assert_array_equal(x[0, 0], x[0, 1])
    np.testing.assert_array_equal(x[0, 1], x[0, 2])

    grey_model = conv_nchw(tmp_path / "grey.onnx", shape=(1, 1, 12, 12))
    colour = photo()
    _, chosen, x = prepare_input(grey_model, colour, pp.preset("imagenet"))
    assert x.shape == (1, 1, 12, 12) and chosen.color == "L"
    # a colour mean/std becomes one grey value (their average), and the grey is the photo's luma
    assert chosen.mean == (pytest.approx(np.mean((0.485, 0.456, 0.406))),)
    luma = np.asarray(colour.convert("L").resize((12, 12), Image.Resampling.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(x[0, 0], (luma - chosen.mean[0]) / chosen.std[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("elem, dtype", [(TensorProto.FLOAT16, np.float16), (TensorProto.DOUBLE, np.float64),
    (TensorProto.UINT8, np.uint8)])
def test_input_dtypes_are_fed_as_the_model_declares(tmp_path, elem, dtype):
    model = conv_nchw(tmp_path / "m.onnx", elem=elem)
    spec = image_input(model)
    assert spec.dtype == dtype
    (layer,) = find_conv_layers(model)
    result = feature_maps(model, photo(), [layer])
    assert result.input.dtype == dtype and result.input.shape == (1, 3, 16, 16)
    assert result.maps[layer].shape == (4, 14, 14) and result.maps[layer].std() > 0
    if dtype == np.uint8:
        assert result.preprocess.scale == 255 and result.preprocess.mean == (0.0, 0.0, 0.0)
        assert result.input.max() > 1, "a uint8 model gets 0..255 pixels"


# -------------------------------------------------------------------------------- preprocessing


def test_metadata_wins_over_any_guess(tmp_path):
    stored = pp.Preprocess(resize=(20, 20), mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    model = conv_nchw(tmp_path / "m.onnx", shape=(1, 3, 20, 20), producer="onnx-caffe2", metadata={pp.METADATA_KEY: stored.to_json()})
    choice = explain_preprocess(model, image_input(model))
    assert not choice.guessed and "metadata" in choice.origin
    assert choice.preprocess.mean == (0.1, 0.2, 0.3)
    assert GUESS_HINT not in choice.describe()


@pytest.mark.parametrize(
    "producer, shape, elem, preset, text",
    [
        ("onnx-caffe2", (1, 3, 224, 224), TensorProto.FLOAT, "caffe", "Caffe"),
        ("keras2onnx", (1, 3, 32, 32), TensorProto.FLOAT, "tf", "Keras"),
        ("tf2onnx", (1, 3, 32, 32), TensorProto.FLOAT, "tf", "Keras"),
        ("pytorch", (1, 3, 32, 32), TensorProto.FLOAT, "imagenet", "ImageNet"),
        ("CNTK", (1, 1, 28, 28), TensorProto.FLOAT, "raw", "grey"),
        ("", (1, 3, 32, 32), TensorProto.UINT8, "raw", "uint8"),
    ],
)
def test_guesses_are_labelled_and_say_how_to_change_them(tmp_path, producer, shape, elem, preset, text):
    model = conv_nchw(tmp_path / "m.onnx", shape=shape, elem=elem, producer=producer)
    choice = explain_preprocess(model, image_input(model))
    assert choice.guessed and text in choice.origin
    assert choice.preprocess.name == f"{preset} (guessed)"
    base = pp.preset(preset)
    assert choice.preprocess.scale == base.scale
    assert choice.describe().endswith(GUESS_HINT) and "a preset" in GUESS_HINT and "mean" in GUESS_HINT
    # the model's fixed size is always used
    assert pp.resized_size(640, 480, choice.preprocess.resize) == (shape[3], shape[2]) or choice.preprocess.crop == shape[2:]


def test_a_named_preset_is_not_a_guess(tmp_path):
    model = conv_nchw(tmp_path / "m.onnx", shape=(1, 3, 32, 32))
    choice = explain_preprocess(model, image_input(model), preset="cifar10")
    assert not choice.guessed and choice.preprocess.mean == pp.PRESETS["cifar10"].mean
    assert choice.preprocess.resize == (32, 32)


# ---------------------------------------------------------------------------- dynamic sizes


def test_dynamic_size_comes_from_the_preset_else_from_the_image(tmp_path):
    model = conv_nchw(tmp_path / "m.onnx", shape=("batch", 3, "height", "width"))
    (layer,) = find_conv_layers(model)
    img = photo(45, 30)
    assert feature_maps(model, img, [layer], pp.preset("imagenet")).input.shape == (1, 3, 224, 224)
    assert feature_maps(model, img, [layer], pp.preset("tf")).input.shape == (1, 3, 30, 45)


def test_one_fixed_dimension_keeps_the_aspect_ratio(tmp_path):
    model = conv_nchw(tmp_path / "m.onnx", shape=(1, 3, 48, -1))
    spec = image_input(model)
    assert spec.size == (48, None)
    chosen = fit_size(spec, pp.preset("tf"), (300, 100))
    assert chosen.resize == (48, 144)


def _unet(path, levels=2):
    """Downsample by 2 per level, upsample back, and add the input: odd sizes break the Add."""
    nodes, x = [], "x"
    inits = []
    for i in range(levels):
        inits.append(numpy_helper.from_array(f32(3, 3, 3, 3), f"wd{i}"))
        nodes.append(helper.make_node("Conv", [x, f"wd{i}"], [f"d{i}"], strides=[2, 2], pads=[1, 1, 1, 1], name=f"down{i}"))
        x = f"d{i}"
    inits.append(numpy_helper.from_array(np.array([1, 1, 2 ** levels, 2 ** levels], np.float32), "scales"))
    nodes.append(helper.make_node("Resize", [x, "", "scales"], ["up"], mode="nearest"))
    nodes.append(helper.make_node("Add", ["up", "x"], ["y"]))
    return build(path, nodes, [vinfo("x", TensorProto.FLOAT, [1, 3, "H", "W"])], inits)


def test_size_is_rounded_to_the_multiple_a_downsample_upsample_model_needs(tmp_path):
    model = _unet(tmp_path / "u.onnx", levels=2)
    multiple, why = size_multiple(model)
    assert multiple == 4 and "Resize" in why
    layers = find_conv_layers(model)
    img = photo(45, 30)  # 30x45 is not a multiple of 4
    out = predict(model, img, pp.preset("unit"))
    (y,) = out.values()
    assert y.shape == (1, 3, 32, 44)
    assert feature_maps(model, img, layers, pp.preset("unit")).input.shape == (1, 3, 32, 44)
    # without rounding the model really fails: the proof that the multiple is needed
    with pytest.raises(OnnxvisError, match="onnxruntime cannot run"):
        predict(model, img, pp.preset("unit"), changes={"resize": (30, 45)})
    # a size the user gives is kept as it is, and one given in the Preprocess itself is rounded
    _, chosen, _ = prepare_input(model, img, pp.preset("unit"), changes={"resize": (66, 66)})
    assert chosen.resize == (66, 66)
    _, chosen, _ = prepare_input(model, img, pp.preset("unit").replace(resize=(66, 66)))
    assert chosen.resize == (64, 64)  # 66 rounded to the multiple of 4 (half to even)


def test_models_that_only_downsample_take_any_size(tmp_path):
    assert size_multiple(conv_nchw(tmp_path / "m.onnx", shape=(1, 3, "H", "W")))[0] == 1
    assert size_multiple(Model.open(asset("models/mtcnn_pnet_keras2onnx.onnx")))[0] == 1


def test_a_fixed_batch_larger_than_one_gets_the_image_repeated(tmp_path):
    model = conv_nchw(tmp_path / "m.onnx", shape=(2, 3, 8, 8))
    _, _, x = prepare_input(model, photo(), pp.preset("unit"))
    assert x.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(x[0], x[1])


# ------------------------------------------------------------------------------- other inputs


def _two_input_model(path):
    nodes = [helper.make_node("Mul", ["x", "gain"], ["xg"]), helper.make_node("Conv", ["xg", "w"], ["y"], name="conv")]
    inputs = [vinfo("x", TensorProto.FLOAT, [1, 3, 8, 8]), vinfo("gain", TensorProto.FLOAT, [1, "C", 1, 1])]
    return build(path, nodes, inputs, [numpy_helper.from_array(f32(2, 3, 3, 3), "w")])


def test_a_missing_other_input_is_named_with_its_setting(tmp_path):
    model = _two_input_model(tmp_path / "m.onnx")
    (layer,) = find_conv_layers(model)
    with pytest.raises(OnnxvisError, match=r"needs input 'gain' \[1x\?x1x1\] float32 besides the image; give it a value") as caught:
        feature_maps(model, photo(), [layer], pp.preset("unit"))
    assert caught.value.setting == "inputs"  # the CLI adds --input NAME=VALUE


def test_other_inputs_by_number_or_array(tmp_path):
    model = _two_input_model(tmp_path / "m.onnx")
    (layer,) = find_conv_layers(model)
    img = photo()
    one = feature_maps(model, img, [layer], pp.preset("unit"), inputs={"gain": 1.0}).maps[layer]
    two = feature_maps(model, img, [layer], pp.preset("unit"), inputs={"gain": 2.0}).maps[layer]
    np.testing.assert_allclose(two, 2 * one, rtol=1e-5, atol=1e-6)
    per_channel = np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)
    three = feature_maps(model, img, [layer], pp.preset("unit"), inputs={"gain": per_channel}).maps[layer]
    assert not np.allclose(three, one)


def test_fill_inputs_validation(tmp_path):
    model = _two_input_model(tmp_path / "m.onnx")
    with pytest.raises(OnnxvisError, match="no run-time input of that name; its inputs are 'x', 'gain'"):
        fill_inputs(model, ["gain"], {"gian": 1.0})
    with pytest.raises(OnnxvisError, match=r"the model input 'gain' has shape \[2, 3, 1, 1\]"):
        fill_inputs(model, ["gain"], {"gain": np.ones((2, 3, 1, 1))})
    feeds = fill_inputs(model, ["x", "gain"], {"gain": 3}, image_name="x")
    assert list(feeds) == ["gain"] and feeds["gain"].shape == (1, 1, 1, 1) and feeds["gain"].dtype == np.float32


def test_parse_input_values(tmp_path):
    array = np.arange(6, dtype=np.int64).reshape(2, 3)
    np.save(tmp_path / "a.npy", array)
    values = parse_input_values(["gain=2.5", f"ids={tmp_path / 'a.npy'}"])
    assert values["gain"] == 2.5
    np.testing.assert_array_equal(values["ids"], array)
    for bad, match in [("gain", "NAME=VALUE"), ("=3", "NAME=VALUE"), ("gain=nope", "neither a number nor an existing .npy")]:
        with pytest.raises(OnnxvisError, match=match):
            parse_input_values([bad])
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(OnnxvisError, match="cannot be read as a .npy file"):
        parse_input_values([f"x={tmp_path / 'bad.npy'}"])


def test_predict_returns_every_output_or_the_named_ones(tmp_path):
    model = conv_nchw(tmp_path / "m.onnx", shape=(1, 3, 8, 8))
    out = predict(model, photo(), pp.preset("unit"))
    assert list(out) == ["y"] and out["y"].shape == (1, 4, 6, 6)
    with pytest.raises(OnnxvisError, match="no output 'z'"):
        predict(model, photo(), outputs=["z"])


def test_nhwc_model_gets_nhwc_arrays_that_onnxruntime_accepts(tmp_path):
    model = keras_nhwc(tmp_path / "m.onnx")
    (layer,) = find_conv_layers(model)
    img = photo(20, 10)
    result = feature_maps(model, img, [layer], pp.preset("unit"))
    assert result.input.shape == (1, 10, 20, 3)
    # the same maps as feeding onnxruntime the photo by hand
    proto = onnx.load(str(tmp_path / "m.onnx"))
    proto.graph.output.append(helper.make_empty_tensor_value_info("y"))
    by_hand = np.asarray(img, np.float32)[None] / 255
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": by_hand})[0]
    np.testing.assert_allclose(result.maps[layer], expected[0], rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------- CLI


def test_cli_fmaps_input_flag_and_missing_input(cli, tmp_path):
    _two_input_model(tmp_path / "m.onnx")
    image = tmp_path / "p.png"
    photo().save(image)
    failed = cli("fmaps", tmp_path / "m.onnx", image, "-o", tmp_path / "out")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("onnxvis: error: the model needs input 'gain'")
    assert "'gain'" in failed.stderr and failed.stderr.rstrip().endswith("(set with --input NAME=VALUE)")
    done = cli("fmaps", tmp_path / "m.onnx", image, "--input", "gain=0.5", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    (png,) = [line for line in done.stdout.splitlines() if line.endswith(".png")]
    assert np.asarray(Image.open(png)).std() > 0


def test_cli_fmaps_prints_the_guess_and_how_to_change_it(cli, tmp_path):
    conv_nchw(tmp_path / "m.onnx", shape=(1, 3, 16, 16), producer="onnx-caffe2")
    image = tmp_path / "p.png"
    photo().save(image)
    guessed = cli("fmaps", tmp_path / "m.onnx", image, "-o", tmp_path / "a")
    assert guessed.returncode == 0, guessed.stderr
    assert "note: the preprocessing is guessed from the producer onnx-caffe2" in guessed.stderr
    assert CLI_GUESS_HINT in guessed.stderr and "--preset" in CLI_GUESS_HINT and "--mean" in CLI_GUESS_HINT
    assert "preprocessing: caffe (guessed): resize 16x16, BGR" in guessed.stderr
    chosen = cli("fmaps", tmp_path / "m.onnx", image, "--preset", "imagenet", "-o", tmp_path / "b")
    assert chosen.returncode == 0 and "note:" not in chosen.stderr


def test_cli_fmaps_refuses_a_non_image_model_in_one_line_but_kernels_work(cli, tmp_path):
    build(
        tmp_path / "audio.onnx", [helper.make_node("Conv", ["audio", "w"], ["y"], name="conv1d")],
        [vinfo("audio", TensorProto.FLOAT, [1, 1, 16000])], [numpy_helper.from_array(f32(8, 1, 9), "w")],
    )
    image = tmp_path / "p.png"
    photo().save(image)
    refused = cli("fmaps", tmp_path / "audio.onnx", image)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "not an image" in lines[0]
    kernels = cli("kernels", tmp_path / "audio.onnx", "-o", tmp_path / "k")
    assert kernels.returncode == 0, kernels.stderr
    (png,) = kernels.stdout.split()
    assert np.asarray(Image.open(png)).std() > 0


def test_cli_layout_flag_overrides_detection(cli, tmp_path):
    keras_nhwc(tmp_path / "m.onnx", shape=(1, 8, 8, 3))
    image = tmp_path / "p.png"
    photo().save(image)
    assert cli("fmaps", tmp_path / "m.onnx", image, "-o", tmp_path / "a").returncode == 0
    wrong = cli("fmaps", tmp_path / "m.onnx", image, "--layout", "NCHW", "-o", tmp_path / "b")
    assert wrong.returncode == 2
    assert "onnxvis: error:" in wrong.stderr and "8 channels in NCHW layout" in wrong.stderr
