"""``onnxvis examples --engine ray``: Ray Data runs for real (not mocked) and equals the local engine."""

from __future__ import annotations

import pytest

from conftest import asset

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
    assert remote.state.top.equal(local.state.top)


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


def test_cli_engine_ray_writes_what_the_local_engine_writes(tmp_path, cli):
    """The command line, with Ray started by onnxvis itself in the child process."""
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(asset("images/imagenet-sample").glob("*.JPEG"))[:24]:
        shutil.copy(p, photos / p.name)
    model = asset("models/squeezenet1.0_caffe2_fp16.onnx")
    local = cli("examples", model, photos, "--layers", "5", "--top", "4", "-o", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    remote = cli("examples", model, photos, "--layers", "5", "--top", "4", "-o", tmp_path / "ray", "--engine", "ray", "--workers", "2")
    assert remote.returncode == 0, remote.stderr
    name = "examples_05_Conv_5.jsonl"
    assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert [line.rsplit("/", 1)[1] for line in remote.stdout.split()] == [line.rsplit("/", 1)[1] for line in local.stdout.split()]
