"""Real proof on models made by other frameworks (../shared/assets): every one gets its kernels and
feature maps on real photos, and onnxvis's own preprocessing and runner give the right answers."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from conftest import asset, real_models
from onnxvis.engine.shortcuts import feature_maps, predict
from onnxvis.image import preprocess as pp
from onnxvis.image.inputs import explain_preprocess, image_input
from onnxvis.model.file import Model
from onnxvis.model.layers import find_conv_layers
from onnxvis.model.weights import GraphIndex, kernel_weights

# A real photo for each model, chosen to exercise conversions: grey photos into grey models and
# colour photos into colour models here; the crossed cases are tested below.
PHOTO = {
    "mnist_cntk.onnx": "skimage_camera.png",
    "mnist_cntk_int8_qdq.onnx": "skimage_camera.png",
    "mnist_cntk_int8_qlinearconv.onnx": "skimage_camera.png",
    "squeezenet1.0_caffe2_fp16.onnx": "skimage_chelsea.png",
    "ppocr_mobile_v2.0_cls_paddle.onnx": "skimage_coffee.png",
    "mtcnn_pnet_keras2onnx.onnx": "matplotlib_grace_hopper.jpg",
    "cifar10_tutorial_pytorch.onnx": "skimage_chelsea.png",
    "ultraface_rfb320_pytorch.onnx": "matplotlib_grace_hopper.jpg",
    "light_squeezenet_constantofshape.onnx": "skimage_coffee.png",
}


def _pngs(done) -> list:
    return [line for line in done.stdout.splitlines() if line.endswith(".png")]


def test_every_real_model_has_a_photo_here():
    assert set(real_models()) <= set(PHOTO), "a new real model needs a photo in PHOTO"


@pytest.mark.parametrize("name", real_models())
def test_kernels_of_every_layer_through_the_cli(cli, tmp_path, name):
    model_path = asset(f"models/{name}")
    layers = find_conv_layers(Model.open(model_path))
    constant = name == "light_squeezenet_constantofshape.onnx"
    # Every weight of that model is ConstantOfShape(0.02): min-max scaling makes a constant tile
    # black, as torchvision does; raw values show the kernels at 0.02 (pixel 5).
    extra = ["--no-normalize"] if constant else []
    done = cli("kernels", model_path, *extra, "-o", tmp_path / "k")
    assert done.returncode == 0, done.stderr
    files = _pngs(done)
    assert len(files) == len(layers)
    for layer, png in zip(layers, files, strict=True):
        pixels = np.asarray(Image.open(png))
        if constant:
            assert pixels.max() == int(0.02 * 255 + 0.5), png
            if layer.kernel_size != (1, 1):  # 1x1 layers are heat maps without padding: all 0.02
                assert pixels.std() > 0, png
        else:
            assert pixels.std() > 0, png


@pytest.mark.parametrize("name", real_models())
def test_feature_maps_of_every_layer_on_a_real_photo_through_the_cli(cli, tmp_path, name):
    model_path = asset(f"models/{name}")
    layers = find_conv_layers(Model.open(model_path))
    done = cli("fmaps", model_path, asset(f"images/{PHOTO[name]}"), "--layers", "all", "-o", tmp_path / "f")
    assert done.returncode == 0, done.stderr
    assert "preprocessing: " in done.stderr
    files = _pngs(done)
    assert len(files) == len(layers)
    for png in files:
        assert np.asarray(Image.open(png)).std() > 0, png


# ----------------------------------------------------------------------------- input handling


def test_layouts_and_dtypes_detected_on_the_real_models():
    expect = {
        "mtcnn_pnet_keras2onnx.onnx": ("input_1", "NHWC", np.float32, (None, None)),
        "squeezenet1.0_caffe2_fp16.onnx": ("data_0", "NCHW", np.float16, (224, 224)),
        "ppocr_mobile_v2.0_cls_paddle.onnx": ("x", "NCHW", np.float32, (None, None)),
        "mnist_cntk.onnx": ("Input3", "NCHW", np.float32, (28, 28)),
        "ultraface_rfb320_pytorch.onnx": ("input", "NCHW", np.float32, (240, 320)),
    }
    for name, (input_name, layout, dtype, size) in expect.items():
        spec = image_input(Model.open(asset(f"models/{name}")))
        assert (spec.name, spec.layout, spec.dtype, spec.size) == (input_name, layout, dtype, size), name


def test_keras_model_runs_nhwc_at_the_photos_own_size():
    model = Model.open(asset("models/mtcnn_pnet_keras2onnx.onnx"))
    layers = find_conv_layers(model)
    photo = asset("images/matplotlib_grace_hopper.jpg")
    width, height = Image.open(photo).size
    result = feature_maps(model, photo, layers[:1])
    assert result.input.shape == (1, height, width, 3)
    assert result.preprocess.name == "tf (guessed)"
    assert result.maps[layers[0]].shape == (10, height - 2, width - 2)


def test_crossed_channels_on_real_models():
    mnist = Model.open(asset("models/mnist_cntk.onnx"))
    colour = feature_maps(mnist, asset("images/skimage_chelsea.png"), find_conv_layers(mnist)[:1])
    assert colour.input.shape == (1, 1, 28, 28) and colour.preprocess.color == "L"
    squeeze = Model.open(asset("models/squeezenet1.0_caffe2_fp16.onnx"))
    grey = feature_maps(squeeze, asset("images/skimage_camera.png"), find_conv_layers(squeeze)[:1])
    assert grey.input.shape == (1, 3, 224, 224) and grey.input.dtype == np.float16
    # the caffe mean differs per channel, the grey photo does not
    x = grey.input[0].astype(np.float32) + np.array([104, 117, 123], np.float32).reshape(3, 1, 1)
    np.testing.assert_allclose(x[0], x[1], atol=0.1)
    np.testing.assert_allclose(x[1], x[2], atol=0.1)


def test_dynamic_paddle_model_at_its_own_size():
    model = Model.open(asset("models/ppocr_mobile_v2.0_cls_paddle.onnx"))
    (probs,) = predict(model, asset("images/skimage_coffee.png"), pp.preset("tf"), changes={"resize": (48, 192)}).values()
    assert probs.shape == (1, 2)
    assert probs.sum() == pytest.approx(1, abs=1e-5)


# ----------------------------------------------------------------------------- semantic checks


def _top(model: Model, photo: str, preprocess=None) -> tuple[int, float]:
    (probs,) = predict(model, asset(f"images/{photo}"), preprocess).values()
    probs = probs.astype(np.float32).ravel()
    assert probs.shape == (1000,) and probs.sum() == pytest.approx(1, abs=0.01)
    return int(probs.argmax()), float(probs.max())


@pytest.mark.parametrize("preset", ["caffe", None])
def test_squeezenet_fp16_sees_the_cat_and_the_espresso(preset):
    """With the caffe preset, and with the default guess (the producer onnx-caffe2 picks caffe)."""
    model = Model.open(asset("models/squeezenet1.0_caffe2_fp16.onnx"))
    if preset is None:
        assert explain_preprocess(model, image_input(model)).preprocess.name == "caffe (guessed)"
    chosen = pp.preset(preset) if preset else None
    cat, cat_p = _top(model, "skimage_chelsea.png", chosen)
    assert 281 <= cat <= 285, f"top-1 {cat} ({cat_p:.3f}) is not a cat"
    espresso, espresso_p = _top(model, "skimage_coffee.png", chosen)
    assert espresso == 967, f"top-1 {espresso} ({espresso_p:.3f}) is not espresso"
    assert espresso_p > 0.5


def test_squeezenet_with_the_wrong_preprocessing_misses_the_cat():
    """The check above can fail: ImageNet's torchvision normalisation gives this Caffe model no cat."""
    model = Model.open(asset("models/squeezenet1.0_caffe2_fp16.onnx"))
    cat, _ = _top(model, "skimage_chelsea.png", pp.preset("imagenet"))
    assert not 281 <= cat <= 285


def _digits(count: int):
    """The first ``count`` UCI digits, rendered as MNIST wants them (see MANIFEST)."""
    with gzip.open(asset("data/sklearn_digits.csv.gz"), "rt") as f:
        rows = np.loadtxt(f, delimiter=",", max_rows=count)
    for row in rows:
        small = Image.fromarray((row[:64].reshape(8, 8) * (255 / 16)).astype(np.float32), "F")
        digit = np.asarray(small.resize((20, 20), Image.Resampling.BILINEAR))
        canvas = np.zeros((28, 28), np.float32)
        canvas[4:24, 4:24] = digit
        yield Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "L"), int(row[64])


@pytest.mark.parametrize("name", ["mnist_cntk.onnx", "mnist_cntk_int8_qdq.onnx", "mnist_cntk_int8_qlinearconv.onnx"])
def test_mnist_reads_real_handwritten_digits(name):
    """Through onnxvis's guessed preprocessing (grey, 0..255, 28x28) and its runner."""
    model = Model.open(asset(f"models/{name}"))
    assert explain_preprocess(model, image_input(model)).preprocess.scale == 255
    digits = list(_digits(300))
    assert len(digits) == 300
    correct = sum(int(np.argmax(next(iter(predict(model, image).values())))) == label for image, label in digits)
    assert correct / 300 >= 0.90, f"{name}: {correct}/300"


def test_ultraface_finds_the_face_and_not_the_coffee():
    model = Model.open(asset("models/ultraface_rfb320_pytorch.onnx"))
    chosen = pp.Preprocess(resize=(240, 320), mean=(127, 127, 127), std=(128, 128, 128), scale=255)
    face = predict(model, asset("images/matplotlib_grace_hopper.jpg"), chosen, outputs=["scores"])["scores"]
    coffee = predict(model, asset("images/skimage_coffee.png"), chosen, outputs=["scores"])["scores"]
    assert face[0, :, 1].max() > 0.99
    # MANIFEST says under 0.1 (likely measured with OpenCV's resize); PIL's antialiased bilinear gives 0.12
    assert coffee[0, :, 1].max() < 0.15


def _step(model: Model, layer) -> np.ndarray:
    """The quantization step (scale) of each output channel, broadcastable against the kernels."""
    index = GraphIndex(model.graph)
    if layer.op_type == "QLinearConv":
        node = next(n for n in model.graph.node if n.output[0] == layer.output_name)
        scale_name = node.input[4]
    else:
        scale_name = index.producers[layer.weight_name].input[1]
    scale = model.tensor(scale_name).astype(np.float32)
    return scale.reshape(-1, 1, 1, 1) if scale.size > 1 else scale


@pytest.mark.parametrize("name", ["mnist_cntk_int8_qdq.onnx", "mnist_cntk_int8_qlinearconv.onnx"])
def test_quantized_mnist_kernels_equal_the_float_ones_within_one_step(name):
    float_layers = find_conv_layers(Model.open(asset("models/mnist_cntk.onnx")))
    model = Model.open(asset(f"models/{name}"))
    layers = find_conv_layers(model)
    assert len(layers) == len(float_layers) == 2
    for layer, float_layer in zip(layers, float_layers, strict=True):
        assert layer.source.kind == "quantized" and "int8" in layer.source.describe()
        got, ref = kernel_weights(layer), kernel_weights(float_layer)
        assert got.shape == ref.shape
        steps = np.abs(got - ref) / _step(model, layer)
        assert steps.max() <= 1.0, f"{layer.name}: {steps.max():.3f} steps"
        # and in fact within half a step: the quantizer rounds to the nearest step
        assert steps.max() <= 0.5 + 1e-3, f"{layer.name}: {steps.max():.4f} steps"
        assert np.any(got != ref), "dequantized kernels are not the float ones bit for bit"
