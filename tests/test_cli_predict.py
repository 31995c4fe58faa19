"""`onnxvis predict`: the top-k classes of images and folders, as text, CSV or JSON lines."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import asset
from onnxvis.engine.classes import imagenet_classes

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"
IMAGENET = imagenet_classes()


def _labels() -> dict[str, int]:
    with open(asset("images/imagenet-sample/labels.csv"), newline="") as f:
        return {row["file"]: int(row["class_index"]) for row in csv.DictReader(f)}


def test_top1_on_the_imagenet_sample_with_squeezenet(cli):
    """The correct pipeline gets 67% top-1 on these 100 photos (MANIFEST.md); 64% is the floor."""
    done = cli("predict", asset(SQUEEZENET), asset("images/imagenet-sample"), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    truth = _labels()
    assert [line["image"].rsplit("/", 1)[1] for line in lines] == sorted(truth)  # a folder is walked in sorted order
    for line in lines:
        assert len(line["top"]) == 5
        scores = [t["score"] for t in line["top"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert all(t["label"] == IMAGENET[t["class"]] for t in line["top"])  # no names of its own: ImageNet-1k's, guessed
    top1 = np.mean([line["top"][0]["class"] == truth[line["image"].rsplit("/", 1)[1]] for line in lines])
    top5 = np.mean([truth[line["image"].rsplit("/", 1)[1]] in [t["class"] for t in line["top"]] for line in lines])
    assert top1 >= 0.64, top1
    assert top5 >= 0.80, top5
    assert "guessed" in done.stderr  # the caffe preset was guessed from the producer, and it says so
    assert "labels: ImageNet-1k (guessed from 1000 outputs; give --labels FILE if these are not ImageNet's classes)" in done.stderr


def test_csv_and_text_hold_the_same_classes(cli):
    photos = [asset("images/skimage_coffee.png"), asset("images/skimage_chelsea.png")]
    as_csv = cli("predict", asset(SQUEEZENET), *photos, "--format", "csv", "--top", "3")
    as_text = cli("predict", asset(SQUEEZENET), *photos, "--top", "3")
    assert as_csv.returncode == 0 and as_text.returncode == 0, as_csv.stderr + as_text.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] * 2
    assert rows[0]["class"] == "967"  # espresso
    assert rows[3]["class"] in {"281", "282", "285"}  # a cat
    blocks = as_text.stdout.strip().split("\n")
    assert blocks[0] == str(photos[0]) and blocks[1].split()[:2] == ["1.", "967"]
    assert blocks[4] == str(photos[1])


def test_labels_from_the_model_are_printed(cli, tmp_path):
    from test_cli_report import classifier, photo

    model = classifier(tmp_path / "tiny.onnx")  # carries labels in its metadata
    done = cli("predict", model, photo(tmp_path / "a.png", 1), "--format", "jsonl", "--top", "2")
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(x) for x in done.stdout.splitlines()]
    assert all(isinstance(t["label"], str) and t["label"] for t in line["top"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top", "0"], "the number of classes to show must be 1 or more, got 0 (set with --top K)"),
        (["--batch-size", "0"], "the batch size must be 1 or more, got 0 (set with --batch-size N)"),
        (["--format", "xml"], "invalid choice"),
    ],
)
def test_bad_flags_are_one_line(cli, args, message):
    done = cli("predict", asset(SQUEEZENET), asset("images/skimage_coffee.png"), *args)
    assert done.returncode == 2
    assert done.stderr.startswith("onnxvis: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_empty_folder_and_a_missing_file_are_errors(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    for target, message in ((tmp_path / "empty", "holds no image file"), (tmp_path / "missing.jpg", "image file not found")):
        done = cli("predict", asset(SQUEEZENET), target)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_fmaps_of_several_images_go_into_a_folder_each(cli, tmp_path):
    a = tmp_path / "x" / "cat.png"
    b = tmp_path / "y" / "cat.png"  # the same name twice gets two folders
    for i, path in enumerate((a, b)):
        path.parent.mkdir()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    done = cli("fmaps", asset("models/cifar10_tutorial_pytorch.onnx"), a, b, "--layers", "0,1", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    written = [p.replace(str(tmp_path / "out") + "/", "") for p in done.stdout.split()]
    assert written == ["cat/fmaps_00_Conv_0.png", "cat/fmaps_01_Conv_2.png", "cat_2/fmaps_00_Conv_0.png", "cat_2/fmaps_01_Conv_2.png"]
    # each picture is that image's own: the same as fmaps of the image alone
    alone = cli("fmaps", asset("models/cifar10_tutorial_pytorch.onnx"), b, "--layers", "0", "-o", tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    ours = np.asarray(Image.open(tmp_path / "out" / "cat_2" / "fmaps_00_Conv_0.png"))
    theirs = np.asarray(Image.open(alone.stdout.split()[0]))
    np.testing.assert_array_equal(ours, theirs)
    first = np.asarray(Image.open(tmp_path / "out" / "cat" / "fmaps_00_Conv_0.png"))
    assert not np.array_equal(first, ours)


def _peak_mib(*args: str, cwd) -> float:
    """Run the CLI in a fresh interpreter that reports its own peak resident memory (VmHWM) as it exits:
    a forked child's ru_maxrss would count the test process's memory too."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import sys\nfrom onnxvis.cli import main\nrc = main(sys.argv[1:])\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('peak-kib', peak, file=sys.stderr)\nsys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return int(done.stderr.split("peak-kib", 1)[1].split()[0]) / 1024


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_images(tmp_path):
    photos = sorted(asset("images/imagenet-sample").glob("*.JPEG"))
    few, many = tmp_path / "few", tmp_path / "many"
    few.mkdir()
    many.mkdir()
    for photo in photos[:20]:
        (few / photo.name).symlink_to(photo)
    for copy in range(4):
        for photo in photos:
            (many / f"{copy}_{photo.name}").symlink_to(photo)
    small = _peak_mib("predict", str(asset(SQUEEZENET)), str(few), "--format", "csv", cwd=tmp_path)
    large = _peak_mib("predict", str(asset(SQUEEZENET)), str(many), "--format", "csv", cwd=tmp_path)
    assert large < small + 25, f"20 images: {small:.0f} MiB, 400 images: {large:.0f} MiB"
