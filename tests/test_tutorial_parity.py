"""`onnxvis tutorial` against the tutorial's own TensorBoard run, read back with TensorBoard's reader.

The tutorial's two scripts (its text, ../shared/seed/tutorial.txt, is the reference; kernels then
feature maps, with ``torch.utils.tensorboard.SummaryWriter``) run here as written, in
benchmarks/tutorial_run.py (tests/test_tutorial_text.py checks that it is the text's code, changed
only in its paths, the second script's imports and the first one's ``writer.close()``), on a seeded
AlexNet state dict. The same state dict goes through ``onnxvis export alexnet --weights PATH``, and
``onnxvis tutorial`` writes its run from the ONNX file. Both runs are read with ``EventAccumulator``:
the tags and steps must be the same (259 images), all 258 kernel images identical, and the
feature-map image within one grey level on at most 0.01% of its values (onnxruntime's convolution
and torch's round differently in the last float bits).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, asset, run_onnxvis

pytestmark = pytest.mark.slow  # an AlexNet export and both runs: about 90 s

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("tensorboard")

from PIL import Image  # noqa: E402


def tutorial_scripts(weights: Path, image: Path, log_dir: Path, kernels: bool = True) -> None:
    """Run the tutorial's code as written (benchmarks/tutorial_run.py), as a whole process."""
    argv = [sys.executable, str(ROOT / "benchmarks" / "tutorial_run.py"), "--weights", str(weights), "--image", str(image)]
    argv += ["--logdir", str(log_dir)] + ([] if kernels else ["--skip-kernels"])
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


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
    from onnxvis.image.preprocess import default_image_path

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
    assert sum(len(steps) for steps in theirs.values()) == sum(len(steps) for steps in ours.values()) == 259


def test_every_kernel_image_is_identical(runs):
    theirs, ours, *_ = runs
    compared = 0
    for tag in (t for t in theirs if t != "feature map in conv1"):
        for step, pixels in theirs[tag].items():
            mine = ours[tag][step]
            assert mine.shape == pixels.shape, (tag, step)
            np.testing.assert_array_equal(mine, pixels, err_msg=f"{tag} step {step}")
            compared += pixels.size
    assert compared == sum(p.size for t, steps in theirs.items() if t != "feature map in conv1" for p in steps.values())
    # the conv2 "all" view: 4096 tiles of 3x5x5, 8 per row; its split view: 64 slices of 5x5, 8 per row
    assert theirs["1_all"][620].shape == (3586, 58, 3)
    assert {p.shape for p in theirs["1_Convlayer_split_in_channel"].values()} == {(58, 58, 3)}
    assert {p.shape for p in theirs["0_Convlayer_split_in_channel"].values()} == {(2 + 13, 2 + 3 * 13, 3)}  # 3 slices of 11x11, one row
    images = sum(len(steps) for t, steps in theirs.items() if t != "feature map in conv1")
    print(f"kernel images: {images}, {compared} values compared, all identical", file=sys.stderr)


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
    assert share <= 0.0001


@pytest.mark.parametrize("photo", ["skimage_camera.png", "skimage_coffee.png"])
def test_feature_map_of_other_photos(runs, tmp_path, photo):
    """A grey photo (the tutorial's convert('RGB')), and one of another aspect ratio (600x400)."""
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
    assert diff.max() <= 1 and share <= 0.0001


def test_cli_prints_the_run_then_how_to_open_it(runs):
    _, _, done, _ = runs
    (path,) = done.stdout.split()
    assert Path(path).name.startswith("events.out.tfevents.")
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"open it with: tensorboard --logdir {Path(path).parent}"
