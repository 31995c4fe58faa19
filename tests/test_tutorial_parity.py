"""`onnxvis tutorial` against the tutorial's own TensorBoard run, read back with TensorBoard's reader.

The tutorial's two scripts (an AlexNet visualisation with ``torch.utils.tensorboard.SummaryWriter``)
run here as written, with only their paths as arguments, on a seeded AlexNet state dict. The same
state dict goes through ``onnxvis export alexnet --weights PATH``, and ``onnxvis tutorial`` writes its
run from the ONNX file. Both runs are read with ``EventAccumulator``: the tags and steps must be the
same, every kernel image identical, and the feature-map image within one grey level on under 0.1%
of its values (onnxruntime's convolution and torch's round differently in the last float bits).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import asset, run_onnxvis

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("tensorboard")

from PIL import Image  # noqa: E402

CIFAR_MEAN = [0.49139968, 0.48215827, 0.44653124]
CIFAR_STD = [0.24703233, 0.24348505, 0.26158768]


def tutorial_scripts(path_state_dict: Path, path_img: Path, log_dir: Path, kernels: bool = True) -> None:
    """The tutorial's kernel and feature-map code, as written (its paths are the arguments).

    One difference: the first writer is closed before the second opens, which the script leaves to
    the end of the process; it changes no event. ``kernels=False`` runs the feature-map part alone.
    """
    import torch.nn as nn
    import torchvision.models as models
    import torchvision.transforms as transforms
    import torchvision.utils as vutils
    from torch.utils.tensorboard import SummaryWriter

    # ----------------------------------- kernel visualization -----------------------------------
    writer = SummaryWriter(log_dir=str(log_dir), filename_suffix="_kernel")
    alexnet = models.alexnet()
    pretrained_state_dict = torch.load(path_state_dict)
    alexnet.load_state_dict(pretrained_state_dict)

    kernel_num = -1
    vis_max = 1 if kernels else -1
    for sub_module in alexnet.modules():
        if not isinstance(sub_module, nn.Conv2d):
            continue
        kernel_num += 1
        if kernel_num > vis_max:
            break

        kernels = sub_module.weight
        c_out, c_int, k_h, k_w = tuple(kernels.shape)

        for o_idx in range(c_out):
            kernel_idx = kernels[o_idx, :, :, :].unsqueeze(1)
            kernel_grid = vutils.make_grid(kernel_idx, normalize=True, scale_each=True, nrow=c_int)
            writer.add_image("{}_Convlayer_split_in_channel".format(kernel_num), kernel_grid, global_step=o_idx)

        kernel_all = kernels.view(-1, 3, k_h, k_w)
        kernel_grid = vutils.make_grid(kernel_all, normalize=True, scale_each=True, nrow=8)
        writer.add_image("{}_all".format(kernel_num), kernel_grid, global_step=620)

        print("{}_convlayer shape:{}".format(kernel_num, tuple(kernels.shape)))
    writer.close()

    # ----------------------------------- feature map visualization -----------------------------------
    writer = SummaryWriter(log_dir=str(log_dir), filename_suffix="_feature map")
    norm_transform = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
    img_transforms = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(), norm_transform])

    img_pil = Image.open(path_img).convert("RGB")
    img_tensor = img_transforms(img_pil)
    img_tensor.unsqueeze_(0)

    convlayer1 = alexnet.features[0]
    fmap_1 = convlayer1(img_tensor)
    fmap_1.transpose_(0, 1)  # (1, 64, 55, 55) --> (64, 1, 55, 55)
    fmap_1_grid = vutils.make_grid(fmap_1, normalize=True, scale_each=True, nrow=8)

    writer.add_image("feature map in conv1", fmap_1_grid, global_step=620)
    writer.close()


def read_run(log_dir: Path) -> dict[str, dict[int, np.ndarray]]:
    """tag -> step -> decoded pixels, every image of the run (no sampling)."""
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={IMAGES: 0})
    acc.Reload()
    run: dict[str, dict[int, np.ndarray]] = {}
    for tag in acc.Tags()["images"]:
        steps = run.setdefault(tag, {})
        for event in acc.Images(tag):
            assert event.step not in steps, f"{tag} has step {event.step} twice"
            pixels = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
            assert pixels.shape[:2] == (event.height, event.width)
            steps[event.step] = pixels
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from onnxvis.preprocess import default_image_path

    root = tmp_path_factory.mktemp("tutorial_run")
    torch.manual_seed(620)
    weights = root / "alexnet-owt-seeded.pth"
    torch.save(torchvision.models.alexnet().state_dict(), weights)
    done = run_onnxvis("export", "alexnet", "--weights", weights, "-o", root / "models", cwd=root)
    assert done.returncode == 0, done.stderr
    photo = default_image_path()  # the photo `onnxvis tutorial` uses without IMAGE
    tutorial_scripts(weights, photo, root / "theirs")
    done = run_onnxvis("tutorial", root / "models" / "alexnet.onnx", "-o", root / "ours", cwd=root)
    assert done.returncode == 0, done.stderr
    return read_run(root / "theirs"), read_run(root / "ours"), done, root


def test_same_tags_and_steps(runs):
    theirs, ours, *_ = runs
    assert sorted(ours) == sorted(theirs) == sorted(
        ["0_Convlayer_split_in_channel", "0_all", "1_Convlayer_split_in_channel", "1_all", "feature map in conv1"]
    )
    for tag in theirs:
        assert sorted(ours[tag]) == sorted(theirs[tag]), tag
    assert sorted(theirs["0_Convlayer_split_in_channel"]) == list(range(64))
    assert sorted(theirs["1_Convlayer_split_in_channel"]) == list(range(192))
    assert list(theirs["1_all"]) == [620] and list(theirs["feature map in conv1"]) == [620]


def test_every_kernel_image_is_identical(runs):
    theirs, ours, *_ = runs
    compared = 0
    for tag in (t for t in theirs if t != "feature map in conv1"):
        for step, pixels in theirs[tag].items():
            mine = ours[tag][step]
            assert mine.shape == pixels.shape, (tag, step)
            np.testing.assert_array_equal(mine, pixels, err_msg=f"{tag} step {step}")
            compared += pixels.size
    # the conv2 "all" view: 4096 tiles of 3x5x5, 8 per row
    assert theirs["1_all"][620].shape == (3586, 58, 3)
    print(f"kernel images: {compared} values compared, all identical", file=sys.stderr)


def test_feature_map_within_one_grey_level(runs):
    theirs, ours, *_ = runs
    pixels = theirs["feature map in conv1"][620]
    mine = ours["feature map in conv1"][620]
    assert mine.shape == pixels.shape == (2 + 8 * 57, 2 + 8 * 57, 3)
    assert pixels.std() > 10  # a picture, not a blank
    diff = np.abs(mine.astype(int) - pixels.astype(int))
    share = float((diff > 0).mean())
    print(f"feature map: max difference {diff.max()} grey level(s) on {share:.4%} of {diff.size} values", file=sys.stderr)
    assert diff.max() <= 1
    assert share < 0.001


@pytest.mark.parametrize("photo", ["skimage_chelsea.png", "skimage_camera.png", "skimage_coffee.png"])
def test_feature_map_of_other_photos(runs, tmp_path, photo):
    """A cat, a grey photo (the tutorial's convert('RGB')), a photo of another aspect ratio."""
    path = asset(f"images/{photo}")
    root = runs[3]
    tutorial_scripts(root / "alexnet-owt-seeded.pth", path, tmp_path / "theirs", kernels=False)
    done = run_onnxvis("tutorial", root / "models" / "alexnet.onnx", path, "-o", tmp_path / "ours", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pixels = read_run(tmp_path / "theirs")["feature map in conv1"][620]
    mine = read_run(tmp_path / "ours")["feature map in conv1"][620]
    diff = np.abs(mine.astype(int) - pixels.astype(int))
    share = float((diff > 0).mean())
    print(f"{photo}: max difference {diff.max()} grey level(s) on {share:.4%} of {diff.size} values", file=sys.stderr)
    assert diff.max() <= 1 and share < 0.001


def test_cli_prints_the_run_then_how_to_open_it(runs):
    _, _, done, _ = runs
    (path,) = done.stdout.split()
    assert Path(path).name.startswith("events.out.tfevents.")
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"open it with: tensorboard --logdir {Path(path).parent}"
