"""The tutorial, end to end, with torch as the oracle: same weights, same pixels.

The tutorial loads AlexNet's weights from a local .pth file, draws conv1's kernels in RGB and the
per-output-channel grids of conv1 and conv2 with make_grid(normalize=True, scale_each=True, nrow=8),
and draws conv1's 64 feature maps of a photo prepared with Resize((224, 224)), ToTensor and the
CIFAR-10 mean and std. Here the same weights go through `onnxvis export`, and the PNGs that
`onnxvis kernels` and `onnxvis fmaps` write are compared with torchvision's save_image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import asset, call_onnxvis

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402

CIFAR_MEAN = [0.49139968, 0.48215827, 0.44653124]
CIFAR_STD = [0.24703233, 0.24348505, 0.26158768]


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    """A seeded AlexNet saved as a state dict (the tutorial's .pth), exported with onnxvis."""
    root = tmp_path_factory.mktemp("tutorial")
    torch.manual_seed(1234)
    model = torchvision.models.alexnet().eval()
    weights = root / "alexnet-owt-test.pth"
    torch.save(model.state_dict(), weights)
    done = call_onnxvis("export", "alexnet", "--weights", weights, "-o", root / "models", cwd=root)
    assert done.returncode == 0, done.stderr
    onnx_path = root / "models" / "alexnet.onnx"
    assert onnx_path.is_file()
    return root, model, onnx_path


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _reference_png(tensor, path: Path, **kwargs) -> np.ndarray:
    save_image(make_grid(tensor, **kwargs), path)
    return _png(path)


def _compare(ours: np.ndarray, theirs: np.ndarray) -> tuple[int, float]:
    assert ours.shape == theirs.shape
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    share = float((diff > 0).mean())
    print(f"max pixel difference {diff.max()}, share of differing values {share:.5%}", file=sys.stderr)
    assert diff.max() <= 1, f"max difference {diff.max()} grey levels"
    assert share < 0.001
    return int(diff.max()), share


def test_conv1_rgb_kernel_grid_is_pixel_identical(tutorial):
    root, model, onnx_path = tutorial
    out = root / "kernels"
    done = call_onnxvis("kernels", onnx_path, "--layers", "0,1", "--split", "-o", out, cwd=root)
    assert done.returncode == 0, done.stderr
    (conv1_png,) = sorted(out.glob("kernels_00_*.png"))
    reference = _reference_png(model.features[0].weight.detach(), root / "ref_conv1.png", normalize=True, scale_each=True, nrow=8)
    _compare(_png(conv1_png), reference)


def test_split_views_of_conv1_and_conv2_are_pixel_identical(tutorial):
    root, model, onnx_path = tutorial
    out = root / "split"
    done = call_onnxvis("kernels", onnx_path, "--layers", "0,1", "--split", "-o", out, cwd=root)
    assert done.returncode == 0, done.stderr
    for index, conv in ((0, model.features[0]), (1, model.features[3])):
        (folder,) = sorted(p for p in out.glob(f"kernels_{index:02d}_*_split") if p.is_dir())
        assert len(list(folder.glob("*.png"))) == conv.out_channels
        for o in (0, 5, conv.out_channels // 2, conv.out_channels - 1):
            kernel = conv.weight.detach()[o].unsqueeze(1)
            reference = _reference_png(kernel, root / f"ref_{index}_{o}.png", normalize=True, scale_each=True, nrow=8)
            _compare(_png(folder / f"out{o:04d}.png"), reference)


def test_conv1_feature_maps_of_a_real_photo_are_pixel_identical(tutorial):
    root, model, onnx_path = tutorial
    photo = asset("images/skimage_chelsea.png")
    out = root / "fmaps"
    done = call_onnxvis(
        "fmaps", onnx_path, photo, "--resize", "224,224",
        "--mean", ",".join(map(str, CIFAR_MEAN)), "--std", ",".join(map(str, CIFAR_STD)),
        "-o", out, cwd=root,
    )
    assert done.returncode == 0, done.stderr
    assert "resize 224x224" in done.stderr
    prep = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    x = prep(Image.open(photo).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        maps = model.features[0](x)[0]  # the Conv output, before ReLU
    assert maps.shape == (64, 55, 55)
    reference = _reference_png(maps.unsqueeze(1), root / "ref_fmaps.png", normalize=True, scale_each=True, nrow=8)
    (ours,) = sorted(out.glob("fmaps_00_*.png"))
    _compare(_png(ours), reference)
