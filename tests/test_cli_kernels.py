"""`onnxvis kernels` end to end through the console entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import asset
from onnxvis.draw import grids


def _written(done) -> list[Path]:
    return [Path(line) for line in done.stdout.splitlines() if line.strip()]


def test_kernels_writes_one_png_per_layer_by_default(cli, make_conv_model, tmp_path):
    weight = np.random.default_rng(0).standard_normal((8, 3, 5, 5)).astype(np.float32)
    model = make_conv_model(weight)
    done = cli("kernels", model, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    (png,) = _written(done)
    assert png.parent == tmp_path / "out" and png.suffix == ".png"
    expected = grids.to_uint8(grids.kernel_grid(weight).grid)
    assert np.array_equal(np.asarray(Image.open(png)), expected)


def test_default_output_folder_is_named_after_the_model(cli, make_conv_model, tmp_path):
    model = make_conv_model(np.ones((2, 1, 3, 3), np.float32))
    done = cli("kernels", model, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (png,) = _written(done)
    assert (tmp_path / png).resolve().parent == (tmp_path / "onnxvis-out" / model.stem).resolve()


def test_split_writes_one_grid_per_output_channel(cli, make_conv_model, tmp_path):
    weight = np.random.default_rng(1).standard_normal((4, 6, 3, 3)).astype(np.float32)
    done = cli("kernels", make_conv_model(weight), "--split", "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    files = _written(done)
    assert len(files) == 1 + 4
    split = [f for f in files if f.parent.name.endswith("_split")]
    assert [f.name for f in split] == [f"out{o:04d}.png" for o in range(4)]
    (_, expected), = grids.split_grids(weight, [2])
    assert np.array_equal(np.asarray(Image.open(split[2])), grids.to_uint8(expected))


def test_grid_options_reach_the_picture(cli, make_conv_model, tmp_path):
    weight = np.random.default_rng(2).standard_normal((6, 3, 4, 4)).astype(np.float32)
    done = cli("kernels", make_conv_model(weight), "--nrow", "3", "--padding", "1", "--pad-value", "1",
               "--no-scale-each", "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    (png,) = _written(done)
    pixels = np.asarray(Image.open(png))
    assert pixels.shape == (1 + 2 * 5, 1 + 3 * 5, 3)
    assert pixels[0].min() == 255  # white padding
    expected = grids.to_uint8(grids.make_grid(weight, nrow=3, padding=1, pad_value=1, normalize=True, scale_each=False))
    assert np.array_equal(pixels, expected)


def test_layers_spec_by_index_and_name(cli, tmp_path):
    model = asset("models/mnist_cntk.onnx")
    done = cli("kernels", model, "--layers", "1", "-o", tmp_path / "a")
    assert done.returncode == 0, done.stderr
    assert len(_written(done)) == 1 and "_01_" in _written(done)[0].name
    done = cli("kernels", model, "--layers", "Convolution28,1", "-o", tmp_path / "b")
    assert done.returncode == 0, done.stderr
    assert len(_written(done)) == 2


@pytest.mark.parametrize("name", ["mnist_cntk.onnx", "cifar10_tutorial_pytorch.onnx"])
def test_real_models_give_correct_grids(cli, tmp_path, name):
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers
    from onnxvis.model.weights import kernel_weights

    path = asset(f"models/{name}")
    done = cli("kernels", path, "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    layers = find_conv_layers(Model.open(path))
    files = _written(done)
    assert len(files) == len(layers)
    for layer, png in zip(layers, files, strict=True):
        expected = grids.to_uint8(grids.kernel_grid(kernel_weights(layer)).grid)
        pixels = np.asarray(Image.open(png))
        assert np.array_equal(pixels, expected)
        assert pixels.std() > 0
