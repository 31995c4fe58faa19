"""`onnxvis fmaps` end to end through the console entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import asset


def _written(done) -> list[Path]:
    return [Path(line) for line in done.stdout.splitlines() if line.strip()]


def test_fmaps_without_image_uses_the_bundled_photo(cli, tmp_path):
    done = cli("fmaps", asset("models/cifar10_tutorial_pytorch.onnx"), "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    assert "grace_hopper" in done.stderr
    assert "preprocessing:" in done.stderr
    (png,) = _written(done)
    pixels = np.asarray(Image.open(png))
    assert pixels.std() > 0
    # 12 maps of 30x30 (conv 5x5, padding 1, on 32x32), 8 per row
    assert pixels.shape[:2] == (2 + 2 * 32, 2 + 8 * 32)


def test_fmaps_equal_the_conv_output_through_the_api(tmp_path):
    from onnxvis.draw import grids
    from onnxvis.engine.shortcuts import feature_maps
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    model = Model.open(asset("models/mnist_cntk.onnx"))
    layers = find_conv_layers(model)
    result = feature_maps(model, asset("images/skimage_camera.png"), layers)
    first, second = (result.maps[layer] for layer in layers)
    assert first.shape == (8, 28, 28) and second.shape == (16, 14, 14)
    # conv1 by hand: the input, padded by 2 (SAME), correlated with the stored kernels, plus the bias
    import onnx
    from onnx import numpy_helper

    plain = onnx.load(str(model.path))
    weights = {t.name: numpy_helper.to_array(t) for t in plain.graph.initializer}
    w = weights[layers[0].weight_name]
    x = np.pad(result.input[0, 0], 2)
    manual = np.zeros((8, 28, 28), np.float64)
    for o in range(8):
        for i in range(5):
            for j in range(5):
                manual[o] += w[o, 0, i, j] * x[i : i + 28, j : j + 28]
    # the CNTK graph adds its bias with a separate Add after the Conv, so compare without it
    np.testing.assert_allclose(first, manual, rtol=1e-4, atol=1e-2)
    assert grids.fmap_grid(first).shape == (1, 2 + 30, 2 + 8 * 30)


def test_all_layers_and_preprocessing_flags(cli, tmp_path):
    model = asset("models/cifar10_tutorial_pytorch.onnx")
    photo = asset("images/skimage_coffee.png")
    done = cli("fmaps", model, photo, "--layers", "all", "--mean", "0.5", "--std", "0.5", "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    assert len(_written(done)) == 4
    assert "mean [0.5" in done.stderr


def test_resize_n_requires_crop(cli, tmp_path):
    done = cli("fmaps", asset("models/cifar10_tutorial_pytorch.onnx"), "--resize", "40", "-o", tmp_path / "o")
    assert done.returncode == 2
    assert done.stderr.startswith("onnxvis: error: ") and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["mnist_cntk.onnx", "cifar10_tutorial_pytorch.onnx"])
def test_real_models_real_photo(cli, tmp_path, name):
    done = cli("fmaps", asset(f"models/{name}"), asset("images/skimage_chelsea.png"), "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    (png,) = _written(done)
    assert np.asarray(Image.open(png)).std() > 0
