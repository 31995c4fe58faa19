"""What `onnxvis cam` tells (issue 25, items 6, 7 and 8): each image's class, its label and its score;
a map that is all zeros, in one line with what to try; and the paths of the files written before a
failure."""

from __future__ import annotations

import numpy as np
import pytest
from cam_standins import classifier, photo, scores

from conftest import call_onnxvis

UNIT = ("--preset", "unit", "--resize", "16,16")


@pytest.fixture
def picture(tmp_path):
    return photo(tmp_path / "photo.png")


def _logits(model, image) -> np.ndarray:
    from onnxvis.engine.inspector import Inspector

    with Inspector(model, preset="unit", changes={"resize": (16, 16)}) as insp:
        r1 = insp.run_arrays({"x": insp.prepare(image).array}, ["r1"])["r1"]
    return scores(r1)[0]


def test_cam_says_the_class_its_label_and_its_score(tmp_path, picture):
    model = classifier(tmp_path / "m.onnx")
    logits = _logits(model, picture)
    best = int(np.argmax(logits))
    done = call_onnxvis("cam", model, picture, picture, *UNIT, "--method", "fem", "-o", tmp_path / "a")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"photo.png: class {best}, score {logits[best]:.4g} (the predicted class)"] * 2
    labels = tmp_path / "labels.txt"
    labels.write_text("ant\nbee\ncat\ndog\neel\n")
    done = call_onnxvis("cam", model, picture, *UNIT, "--method", "fem", "--labels", labels, "--target", "eel",
                       "--layers", "0", "--tensor", "r1", "-o", tmp_path / "b")
    assert done.returncode == 0, done.stderr
    assert f"photo.png: class 4 (eel), score {logits[4]:.4g}" in done.stderr.splitlines()  # once for the two places
    assert len(done.stdout.split()) == 2 and "predicted" not in done.stderr


def test_a_map_of_zeros_is_said_with_what_to_try(tmp_path, picture):
    model = classifier(tmp_path / "dead.onnx", "dead")
    done = call_onnxvis("cam", model, picture, *UNIT, "--method", "fem", "--format", "npy", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    (npy,) = done.stdout.split()
    assert not np.load(npy).any()
    assert ("photo.png 00_conv1: the map is all zeros (the fem method finds nothing at this place for class 0); try another "
            "layer or tensor (--layers, --tensor) or another target (--target)") in done.stderr.splitlines()
    done = call_onnxvis("cam", classifier(tmp_path / "m.onnx"), picture, *UNIT, "--method", "fem", "-o", tmp_path / "live")
    assert done.returncode == 0 and "all zeros" not in done.stderr


def test_the_report_says_it_too(tmp_path, picture):
    from onnxvis.engine.inspector import Inspector
    from onnxvis.report import build_report

    with Inspector(classifier(tmp_path / "dead.onnx", "dead"), preset="unit", changes={"resize": (16, 16)}) as insp:
        text = build_report(insp, [picture], cam_method="fem")
    assert "<p class=warn>the map is all zeros: the fem method finds nothing at 00_conv1 for class 0;" in text


def test_a_failure_after_files_are_written_names_them(tmp_path, picture):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    done = call_onnxvis("cam", classifier(tmp_path / "m.onnx"), picture, broken, *UNIT, "--format", "png,npy", "-o", tmp_path / "out")
    assert done.returncode == 2
    written = done.stdout.split()
    assert [p.rsplit("/", 1)[-1] for p in written] == ["cam_ablation_photo_00_conv1.png", "cam_ablation_photo_00_conv1.npy"]
    assert all((tmp_path / "out" / p.rsplit("/", 1)[-1]).exists() for p in written)
    error = done.stderr.splitlines()[-1]
    assert error.startswith("onnxvis: error: ") and "broken.png" in error
    assert error.endswith("(the 2 files written before it: listed on stdout)")
