"""The Python API: the documented path of the data, and that it stays framework-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import onnxvis
from conftest import ROOT, asset


def test_public_api_path_of_the_data(tmp_path):
    model = onnxvis.open_model(asset("models/mnist_cntk.onnx"))
    layers = onnxvis.find_conv_layers(model)
    assert [layer.index for layer in layers] == [0, 1]
    weight = onnxvis.kernel_weights(layers[0])
    assert weight.shape == (8, 1, 5, 5) and weight.dtype == np.float32
    grid = onnxvis.make_grid(weight, normalize=True, scale_each=True)
    assert grid.shape == (3, 9, 2 + 8 * 7)
    path = onnxvis.save_png(grid, tmp_path / "k.png")
    assert np.array_equal(np.asarray(Image.open(path)), onnxvis.to_uint8(grid))
    result = onnxvis.feature_maps(model, asset("images/skimage_camera.png"), layers[:1])
    assert result.maps[layers[0]].shape == (8, 28, 28)
    (scores,) = onnxvis.predict(model, asset("images/skimage_camera.png")).values()
    assert scores.shape == (1, 10) and np.isfinite(scores).all()


def test_unknown_attribute_is_an_attribute_error():
    try:
        onnxvis.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return set(out.stdout.split())


@pytest.mark.full  # torch importable, so that its absence from the run means something
def test_import_onnxvis_is_light():
    loaded = _modules_after("import onnxvis, onnxvis.cli")
    for heavy in ("torch", "torchvision", "onnx", "onnxruntime", "matplotlib", "numpy", "PIL"):
        assert heavy not in loaded, f"import onnxvis loads {heavy}"


@pytest.mark.full  # torch importable, so that its absence from the run means something
def test_kernels_and_fmaps_runs_never_import_torch(tmp_path):
    model = asset("models/cifar10_tutorial_pytorch.onnx")
    code = (
        "import onnxvis.cli as c\n"
        f"assert c.main(['kernels', {str(model)!r}, '-o', {str(tmp_path / 'k')!r}]) == 0\n"
        f"assert c.main(['fmaps', {str(model)!r}, '-o', {str(tmp_path / 'f')!r}]) == 0\n"
    )
    loaded = _modules_after(code)
    assert "onnxruntime" in loaded  # the run really happened
    assert not {"torch", "torchvision", "tensorflow"} & loaded
    assert list((tmp_path / "k").glob("*.png")) and list((tmp_path / "f").glob("*.png"))
