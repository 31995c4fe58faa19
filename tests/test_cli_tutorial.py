"""`onnxvis tutorial`: the tutorial's TensorBoard run, without torch (the torch comparison is test_tutorial_parity.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, asset, run_onnxvis

pytest.importorskip("tensorboard")

from onnxvis.draw import grids  # noqa: E402
from onnxvis.write.tutorial import (  # noqa: E402
    add_image_pixels,
    all_image,
    fmap_image,
    groups_of_three,
    split_images,
)


def two_conv_model(path: Path, w1: np.ndarray, w2: np.ndarray, size: int = 224) -> Path:
    """x (1, C, size, size) -> Conv(w1) -> Relu -> Conv(w2) -> y."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", strides=[4, 4]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w1.shape[1], size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w1.astype(np.float32), "w1"), numpy_helper.from_array(w2.astype(np.float32), "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def read_run(log_dir: Path) -> dict[str, dict[int, np.ndarray]]:
    """tag -> step -> decoded pixels, read with TensorBoard's own reader, every image kept."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={IMAGES: 0})
    acc.Reload()
    run: dict[str, dict[int, np.ndarray]] = {}
    for tag in acc.Tags()["images"]:
        for event in acc.Images(tag):
            assert event.step not in run.setdefault(tag, {}), f"{tag} step {event.step} twice"
            run[tag][event.step] = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
    return run


@pytest.fixture
def weights():
    rng = np.random.default_rng(14)
    return rng.normal(size=(8, 3, 11, 11)), rng.normal(size=(5, 8, 5, 5))  # conv2: 5 x 8 = 40, not a multiple of 3


# ----------------------------------------------------------------------------------- pure functions


def test_add_image_truncates_where_save_image_rounds():
    grid = np.array([[[0.0, 0.999, 0.5, 1.0, 1.5, -0.2, np.nan]]], dtype=np.float32).repeat(3, axis=0)
    pixels = add_image_pixels(grid)
    assert pixels.shape == (1, 7, 3) and pixels.dtype == np.uint8
    assert pixels[0, :, 0].tolist() == [0, 254, 127, 255, 255, 0, 0]
    assert grids.to_uint8(grid)[0, :6, 0].tolist() == [0, 255, 128, 255, 255, 0]


def test_truncation_changes_a_third_of_a_kernel_grid():
    """The figure the issue gives for AlexNet's conv1 (34%): rounding would not give the tutorial's bytes."""
    weight = np.random.default_rng(0).normal(size=(64, 3, 11, 11)).astype(np.float32)
    grid = grids.make_grid(weight, normalize=True, scale_each=True)
    share = float((grids.to_uint8(grid) != add_image_pixels(grid)).mean())
    assert 0.2 < share < 0.6


def test_all_view_takes_three_consecutive_input_channels_as_rgb():
    weight = np.random.default_rng(1).normal(size=(192, 64, 5, 5)).astype(np.float32)
    image = all_image(weight, 1)
    assert (image.tag, image.step) == ("1_all", 620)
    assert image.pixels.shape == (3586, 58, 3)  # 4096 tiles, 8 per row
    # tile 1 is input channels 3, 4, 5 of kernel 0, each tile normalised on its own
    tile = weight.reshape(-1, 3, 5, 5)[1]
    expected = add_image_pixels((tile - tile.min()) / (tile.max() - tile.min()))
    np.testing.assert_array_equal(image.pixels[2:7, 9:14], expected)


def test_all_view_of_a_layer_that_has_no_groups_of_three():
    assert groups_of_three((64, 3, 11, 11)) and groups_of_three((192, 64, 5, 5))
    assert not groups_of_three((5, 8, 5, 5))
    with pytest.raises(ValueError, match="groups of 3"):
        all_image(np.ones((5, 8, 5, 5), np.float32), 1)


def test_split_view_puts_a_kernels_slices_8_per_row():
    weight = np.random.default_rng(2).normal(size=(4, 64, 5, 5)).astype(np.float32)
    images = split_images(weight, 1)
    assert [(i.tag, i.step) for i in images] == [("1_Convlayer_split_in_channel", o) for o in range(4)]
    assert images[0].pixels.shape == (2 + 8 * 7, 2 + 8 * 7, 3)  # nrow=8, as the tutorial's text: 8 rows of 8
    # slice 9 of kernel 2 is the tile of row 1, column 1, normalised on its own
    tile = weight[2, 9]
    expected = add_image_pixels(((tile - tile.min()) / (tile.max() - tile.min()))[None])[..., 0]
    np.testing.assert_array_equal(images[2].pixels[9:14, 9:14, 0], expected)
    # 12 slices: a row of 8, then a row of 4 (make_grid pads the rest of the row)
    assert split_images(weight[:, :12], 1)[0].pixels.shape == (2 + 2 * 7, 2 + 8 * 7, 3)
    assert (images[2].pixels[..., 0] == images[2].pixels[..., 2]).all()  # grey, stored as RGB like make_grid's
    # a single input channel: make_grid returns the tile without padding
    assert split_images(weight[:, :1], 0)[0].pixels.shape == (5, 5, 3)


def test_feature_map_grid():
    maps = np.random.default_rng(3).normal(size=(64, 55, 55)).astype(np.float32)
    image = fmap_image(maps)
    assert (image.tag, image.step) == ("feature map in conv1", 620)
    assert image.pixels.shape == (458, 458, 3)
    with pytest.raises(ValueError):
        fmap_image(maps[0])


# ----------------------------------------------------------------------------------- the command


def test_skips_the_all_view_that_does_not_exist_in_one_line(cli, tmp_path, weights):
    model = two_conv_model(tmp_path / "small.onnx", *weights)
    done = cli("tutorial", model, asset("images/skimage_chelsea.png"), "-o", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    (written,) = done.stdout.split()
    assert Path(written).parent == tmp_path / "run"
    skipped = [line for line in done.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and skipped[0].startswith("1_all: skipped:") and "40 is not a multiple of 3" in skipped[0]
    run = read_run(tmp_path / "run")
    assert sorted(run) == ["0_Convlayer_split_in_channel", "0_all", "1_Convlayer_split_in_channel", "feature map in conv1"]
    assert sorted(run["1_Convlayer_split_in_channel"]) == list(range(5))
    np.testing.assert_array_equal(run["0_all"][620], all_image(weights[0].astype(np.float32), 0).pixels)
    np.testing.assert_array_equal(run["1_Convlayer_split_in_channel"][3], split_images(weights[1].astype(np.float32), 1)[3].pixels)
    assert run["feature map in conv1"][620].shape == (2 + 56, 2 + 8 * 56, 3)  # 8 maps of 54x54 on one row


def test_feature_maps_use_the_tutorials_preprocessing(cli, tmp_path, weights):
    """224x224 and CIFAR-10's mean and std, whatever the photo's size: the same maps as fmaps with those flags."""
    from onnxvis.engine.shortcuts import feature_maps
    from onnxvis.image.preprocess import Preprocess
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    photo = asset("images/skimage_coffee.png")  # 600x400
    model_path = two_conv_model(tmp_path / "small.onnx", *weights)
    done = cli("tutorial", model_path, photo, "-o", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    model = Model.open(model_path)
    cifar = Preprocess(resize=(224, 224), mean=(0.49139968, 0.48215827, 0.44653124), std=(0.24703233, 0.24348505, 0.26158768))
    maps = feature_maps(model, photo, find_conv_layers(model)[:1], cifar, changes={"resize": (224, 224)}).maps
    expected = fmap_image(next(iter(maps.values()))).pixels
    np.testing.assert_array_equal(read_run(tmp_path / "run")["feature map in conv1"][620], expected)


def test_default_photo_and_default_folder(cli, tmp_path, weights):
    model = two_conv_model(tmp_path / "small.onnx", *weights)
    done = cli("tutorial", model)
    assert done.returncode == 0, done.stderr
    assert "grace_hopper" in done.stderr
    (written,) = done.stdout.split()
    assert Path(written).parent == Path("onnxvis-out/small/tutorial")
    assert done.stderr.strip().splitlines()[-1] == "open it with: tensorboard --logdir onnxvis-out/small/tutorial"
    # a second run replaces the event file instead of adding a second copy of every image
    again = cli("tutorial", model)
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "onnxvis-out/small/tutorial").glob("*tfevents*"))) == 1
    assert sorted(read_run(tmp_path / "onnxvis-out/small/tutorial")["0_Convlayer_split_in_channel"]) == list(range(8))


@pytest.mark.full  # torch importable, so that its absence from the run means something
def test_needs_neither_torch_nor_tensorflow(tmp_path, weights):
    model = two_conv_model(tmp_path / "small.onnx", *weights)
    code = (
        "import sys; from onnxvis.cli import main; "
        f"rc = main(['tutorial', {str(model)!r}, '-o', {str(tmp_path / 'run')!r}]); "
        "heavy = sorted(m for m in ('torch', 'torchvision', 'tensorflow') if m in sys.modules); "
        "print('imported:', heavy, file=sys.stderr); sys.exit(rc or bool(heavy))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stderr


def test_without_the_tensorboard_package_one_line_with_the_install_command(tmp_path, weights):
    blocker = tmp_path / "blocker" / "tensorboard"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('tensorboard is not installed here')\n")
    model = two_conv_model(tmp_path / "small.onnx", *weights)
    done = run_onnxvis("tutorial", model, "-o", tmp_path / "run", env={"PYTHONPATH": f"{blocker.parent}{os.pathsep}{ROOT}"}, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("onnxvis: error: onnxvis tutorial writes a TensorBoard run")
    assert "pip install 'onnxvis[tensorboard]'" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_model_that_does_not_take_224_pixels_gets_its_kernels_and_skips_the_feature_map(cli, tmp_path, weights):
    """Issue 25, item 18: the kernel parts do not depend on the input size; the feature map is skipped in one line."""
    model = two_conv_model(tmp_path / "small.onnx", *weights, size=32)
    done = cli("tutorial", model, "-o", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    skipped = [line for line in done.stderr.splitlines() if line.startswith("feature map in conv1:")]
    assert skipped == ["feature map in conv1: skipped: the tutorial feeds 224x224 images, and input 'x' of this model takes "
                       "32x32; draw its feature maps with 'onnxvis fmaps'"]
    assert "image:" not in done.stderr
    run = read_run(tmp_path / "run")
    assert "feature map in conv1" not in run
    assert sorted(run["0_Convlayer_split_in_channel"]) == list(range(8)) and sorted(run["1_Convlayer_split_in_channel"]) == list(range(5))
    assert run["0_all"][620].shape[2] == 3  # conv1's kernels, as at 224x224
    at_224 = cli("tutorial", two_conv_model(tmp_path / "big.onnx", *weights), "-o", tmp_path / "run224")
    assert at_224.returncode == 0, at_224.stderr
    big = read_run(tmp_path / "run224")
    assert np.array_equal(big["0_all"][620], run["0_all"][620])


def test_a_model_without_2d_convolutions(cli, tmp_path):
    from conftest import conv_model

    path = tmp_path / "conv1d.onnx"
    conv_model(np.ones((4, 3, 5), np.float32), path=path, input_shape=(1, 3, 224))
    done = cli("tutorial", path, "-o", tmp_path / "run")
    assert done.returncode == 2
    assert "no 2-D convolution layer" in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "convs"),
    [
        ("squeezenet1.0_caffe2_fp16.onnx", (64, 16)),  # float16 weights
        ("mtcnn_pnet_keras2onnx.onnx", (10, 16)),  # NHWC input from Keras, dynamic size
        ("ppocr_mobile_v2.0_cls_paddle.onnx", (8, 8)),  # weights in Constant nodes
    ],
)
def test_real_models_from_other_frameworks(cli, tmp_path, name, convs):
    done = cli("tutorial", asset(f"models/{name}"), asset("images/skimage_chelsea.png"), "-o", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    run = read_run(tmp_path / "run")
    assert "1_all" not in run  # their conv2 has C_out x C_in = 1024, 160, 64: no groups of 3
    assert "1_all: skipped" in done.stderr
    assert sorted(run["0_Convlayer_split_in_channel"]) == list(range(convs[0]))
    assert sorted(run["1_Convlayer_split_in_channel"]) == list(range(convs[1]))
    fmap = run["feature map in conv1"][620]
    assert fmap.std() > 10  # the photo shows through, not a blank grid


def test_another_input_is_given_with_input(cli, tmp_path):
    """A model whose conv1 needs another run-time input (its bias): --input gives it, as for fmaps."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.ones((6, 3, 11, 11), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv1", strides=[4, 4])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [6]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "bias_input.onnx"))
    done = cli("tutorial", tmp_path / "bias_input.onnx", "-o", tmp_path / "run")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "'b'" in done.stderr and "(set with --input NAME=VALUE)" in done.stderr
    done = cli("tutorial", tmp_path / "bias_input.onnx", "--input", "b=0.5", "-o", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert sorted(read_run(tmp_path / "run")["0_Convlayer_split_in_channel"]) == list(range(6))


def test_an_error_names_no_flag_the_command_does_not_have(cli, tmp_path):
    """An image input of 4 channels: the library's word ('the NHWC layout'), not fmaps' --layout."""
    from conftest import conv_model

    conv_model(np.ones((2, 4, 3, 3), np.float32), path=tmp_path / "four.onnx", input_shape=(1, 4, 224, 224))
    done = cli("tutorial", tmp_path / "four.onnx", "-o", tmp_path / "run")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "--layout" not in done.stderr and "--" not in done.stderr.split("error:", 1)[1]
