"""``onnxvis examples --engine ray``: Ray Data runs for real (not mocked) and equals the local engine."""

from __future__ import annotations

import json

import pytest

from conftest import asset, run_onnxvis
from onnxvis.analysis.examples.topk import RTOL

ray = pytest.importorskip("ray")

from onnxvis.analysis.examples.find import find_examples  # noqa: E402
from onnxvis.analysis.examples.ray_engine import ray_engine  # noqa: E402

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session, with 2 CPUs as on the CI machines."""
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _collect(engine, out):
    photos = [asset("images/imagenet-sample")]
    return find_examples(asset(SQUEEZENET), photos, layers="3,12,25", keep=9, out=out, engine=engine, fresh=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_equals_local_channel_for_channel(ray_session, tmp_path, workers):
    local = _collect("local", tmp_path / "local")
    remote = _collect(ray_engine(workers=workers), tmp_path / "ray")
    assert remote.state.seen.all() and remote.state.catalog == local.state.catalog
    assert remote.state.top.names == [layer.output_name for layer in local.layers]
    # the contract (onnxvis.analysis.examples.topk): same images in the same order, scores within 0.1%
    assert remote.state.top.agrees(local.state.top) is None


def test_ray_reports_unreadable_files_and_model_errors_like_the_local_engine(ray_session, tmp_path):
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(asset("images/imagenet-sample").glob("*.JPEG"))[:6]:
        shutil.copy(p, photos / p.name)
    (photos / "zz.jpg").write_bytes(b"junk")
    notes: list[str] = []
    found = find_examples(
        asset(SQUEEZENET), [photos], layers="0", keep=4, out=tmp_path / "out", engine=ray_engine(workers=1), fresh=True, log=notes.append
    )
    assert found.state.seen.all() and any("zz.jpg" in n for n in notes)
    assert found.state.top.entries(found.layers[0].output_name)[1].shape == (64, 4)


def test_cli_engine_ray_writes_what_the_local_engine_writes(tmp_path):
    """The command line in a process of its own, where onnxvis starts Ray itself (not the session's)."""
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(asset("images/imagenet-sample").glob("*.JPEG"))[:24]:
        shutil.copy(p, photos / p.name)
    model = asset("models/squeezenet1.0_caffe2_fp16.onnx")
    local = run_onnxvis("examples", model, photos, "--layers", "5", "--top", "4", "-o", tmp_path / "local", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    remote = run_onnxvis("examples", model, photos, "--layers", "5", "--top", "4", "-o", tmp_path / "ray",
                         "--engine", "ray", "--workers", "2", cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr
    name = "examples_05_Conv_5.jsonl"
    ray_lines = [json.loads(line) for line in (tmp_path / "ray" / name).read_text().splitlines()]
    local_lines = [json.loads(line) for line in (tmp_path / "local" / name).read_text().splitlines()]
    # the top-K contract: the same images, in the same order, and scores within its relative tolerance
    assert [[e["image"] for e in line["top"]] for line in ray_lines] == [[e["image"] for e in line["top"]] for line in local_lines]
    for a, b in zip(ray_lines, local_lines, strict=True):
        for u, v in zip(a["top"], b["top"], strict=True):
            assert u["score"] == pytest.approx(v["score"], rel=RTOL)
    assert [line.rsplit("/", 1)[1] for line in remote.stdout.split()] == [line.rsplit("/", 1)[1] for line in local.stdout.split()]
