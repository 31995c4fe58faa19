"""`cam --metrics` on maps with more than half zeros (issue 25, item 6): ROAD gives grad-cam's value
where grad-cam has one (a percentile that removes every pixel included), says "undefined" with why
where it has none, and never fails the run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cam_standins import classifier, photo, weights

from conftest import asset, call_onnxvis
from onnxvis.analysis.cam import metrics, runs

pytest.importorskip("scipy")

SETTINGS = {"preset": "unit", "changes": {"resize": (16, 16)}}


def _mostly_zeros() -> np.ndarray:
    """A (16, 16) map in [0, 1], 60% of it exactly 0."""
    values = np.random.default_rng(3).uniform(size=(16, 16)).astype(np.float32)
    values[values < np.quantile(values, 0.6)] = 0
    return values / values.max()


def _result(insp, image, cam_map: np.ndarray) -> runs.CamResult:
    (result,) = runs.Cam(insp, runs.places_for(insp, [], ["r1"]), method="eigen")([image])
    return dataclasses.replace(result, cam=cam_map)


def _removes_every_pixel(cam_map: np.ndarray) -> list[float]:
    """The most-relevant-first percentiles that keep no pixel."""
    return [float(p) for p in metrics.ROAD_PERCENTILES if not np.any(cam_map < np.percentile(cam_map, p))]


@pytest.fixture
def picture(tmp_path):
    return photo(tmp_path / "photo.png")


@pytest.mark.full
def test_road_on_a_map_of_zeros_equals_grad_cams(tmp_path, picture):
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from onnxvis.engine.inspector import Inspector

    w = weights()
    conv = torch.nn.Conv2d(3, 6, 3, padding=1, bias=False)
    linear = torch.nn.Linear(6, 5, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w["w1"]))
        linear.weight.copy_(torch.from_numpy(w["fc"].T.copy()))
    twin = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), linear).eval()
    cam_map = _mostly_zeros()
    assert _removes_every_pixel(cam_map) == [10, 20, 30, 40, 50]  # the case of the issue
    with Inspector(classifier(tmp_path / "flat.onnx"), **SETTINGS) as insp:
        result = _result(insp, picture, cam_map)
        mine = metrics.road(insp, result, noise=0.0)
    x = torch.from_numpy(result.input)
    targets = [ClassifierOutputTarget(result.target)]
    for kind, removal in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
        for p in metrics.ROAD_PERCENTILES:
            ref = PerturbationConfidenceMetric(removal(p, NoisyLinearImputer(noise=0)))(x, cam_map[None], targets, twin)
            assert getattr(mine, kind)[p] == pytest.approx(float(ref[0]), abs=1e-4), (kind, p)
    assert not mine.undefined and mine.combined is not None


@pytest.mark.full
def test_imputing_every_pixel_is_grad_cams_zero():
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    img = np.random.default_rng(0).normal(size=(3, 12, 14)).astype(np.float32)
    none_kept = np.zeros((12, 14), np.float32)
    ref = NoisyLinearImputer(noise=0.0)(torch.from_numpy(img), torch.from_numpy(none_kept)).numpy()
    assert np.array_equal(metrics.noisy_linear_impute(img, none_kept, noise=0.0), ref) and not ref.any()
    noisy = metrics.noisy_linear_impute(img, none_kept)  # the default noise, std 0.01, around 0
    assert 0.005 < noisy.std() < 0.02 and abs(noisy.mean()) < 0.005


def test_a_percentile_without_a_value_is_undefined_with_why(tmp_path, picture):
    """On the image of noise alone (every pixel removed) one stand-in's score is NaN and another's
    run is refused: those percentiles are undefined, the others keep the plain model's values."""
    from onnxvis.engine.inspector import Inspector

    cam_map = _mostly_zeros()
    removed_all = _removes_every_pixel(cam_map)
    assert removed_all == [10, 20, 30, 40, 50]
    found = {}
    for head in ("flatten", "nan", "refuse"):
        with Inspector(classifier(tmp_path / f"{head}.onnx", head), **SETTINGS) as insp:
            result = _result(insp, picture, cam_map)
            found[head] = metrics.road(insp, result), metrics.metrics_line(insp, result)
    plain, _ = found["flatten"]
    assert not plain.undefined
    for head, reason in (("nan", "the model's score on the imputed image is not a finite number"),
                         ("refuse", "the model does not run on the imputed image: onnxruntime's Gather node 'pick' stops: "
                                    "indices element out of data bounds, idx=1000 must be within the inclusive range [-5,4]")):
        scores, line = found[head]
        assert scores.undefined == {("morf", p): reason for p in removed_all}, head
        for p in metrics.ROAD_PERCENTILES:
            assert scores.morf[p] == (None if p in removed_all else pytest.approx(plain.morf[p], abs=1e-5))
            assert scores.lerf[p] == pytest.approx(plain.lerf[p], abs=1e-5)
        assert scores.combined is None
        assert "ROAD most-relevant-first 10:undefined 20:undefined 30:undefined 40:undefined 50:undefined 60:" in line
        assert line.endswith(f"; combined undefined; ROAD is undefined at most-relevant-first 10, 20, 30, 40, 50: {reason}")
        assert line.count("\n") == 0


def test_percentiles_are_checked_before_the_run(tmp_path, picture):
    done = call_onnxvis("cam", classifier(tmp_path / "m.onnx"), picture, "--preset", "unit", "--resize", "16,16", "--metrics",
                       "--percentiles", "10,100", "-o", tmp_path / "out")
    assert done.returncode == 2 and not (tmp_path / "out").exists()
    assert done.stderr == "onnxvis: error: ROAD percentiles must be between 0 and 100, got 100 (set with --percentiles P,...)\n"


def test_metrics_that_fail_do_not_fail_the_run(tmp_path, picture, monkeypatch, capsys):
    from onnxvis.cli import main
    from onnxvis.errors import OnnxvisError

    def broken(*args, **kwargs):
        raise OnnxvisError("the metric broke")

    monkeypatch.setattr(metrics, "metrics_line", broken)
    code = main(["cam", str(classifier(tmp_path / "m.onnx")), str(picture), "--preset", "unit", "--resize", "16,16",
                 "--metrics", "-o", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip().endswith("cam_ablation_photo_00_conv1.png")
    assert "photo.png 00_conv1: no metrics: the metric broke" in err.splitlines()


@pytest.mark.slow
def test_the_readme_example_on_the_shared_photos(tmp_path):
    """`onnxvis cam squeezenet.onnx photos/ --preset caffe --method eigen --format png,npy --metrics`:
    three of the four maps are more than half zeros; every map gets its metrics, every file its path."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("matplotlib_grace_hopper.jpg", "skimage_camera.png", "skimage_chelsea.png", "skimage_coffee.png"):
        (photos / name).symlink_to(asset(f"images/{name}"))
    done = call_onnxvis("cam", asset("models/squeezenet1.0_caffe2_fp16.onnx"), photos, "--preset", "caffe", "--method", "eigen",
                       "--format", "png,npy", "--metrics", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split()
    npys = [p for p in paths if p.endswith(".npy")]
    assert len(paths) == 8 and len(npys) == 4
    assert sum(float(np.mean(np.load(p) == 0)) > 0.5 for p in npys) >= 3
    lines = [line for line in done.stderr.splitlines() if "ROAD most-relevant-first" in line]
    assert len(lines) == 4 and all("undefined" not in line and "; combined " in line for line in lines), done.stderr
