"""exporters.torchvision_export: torchvision model -> checked ONNX file with onnxvis metadata.

Needs torch and torchvision; skipped in an environment without them. No test touches the network:
pretrained weights come from a fake torch hub cache, and downloads are made to fail at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from exporters.torchvision_export import (  # noqa: E402
    LABELS_KEY,
    PREPROCESS_KEY,
    SOURCE_KEY,
    WEIGHTS_KEY,
    ExportResult,
    export_model,
)
from onnxvis.errors import OnnxvisError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # the name torchvision's weights URL ends in
# Any real download attempt goes to a closed port on this machine and fails at once.
DEAD_PROXY = {k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


def metadata(path: Path) -> dict[str, str]:
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def conv_kernels(path: Path) -> dict[str, np.ndarray]:
    """Kernel initializer name -> array, for every Conv node of the model at ``path``."""
    proto = onnx.load(str(path))  # loads external data too
    inits = {t.name: t for t in proto.graph.initializer}
    return {n.input[1]: numpy_helper.to_array(inits[n.input[1]]) for n in proto.graph.node if n.op_type == "Conv"}


def seeded_state_dict(name: str, seed: int) -> dict:
    torch.manual_seed(seed)
    return torchvision.models.get_model_builder(name)(weights=None).state_dict()


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def alexnet_random(tmp_path_factory) -> ExportResult:
    """One alexnet export with random weights, shared by the tests that only read it."""
    lines: list[str] = []
    result = export_model("alexnet", weights="random", output_dir=tmp_path_factory.mktemp("random"), log=lines.append)
    # onnxruntime was checked against torch at batch 1 and at batch 4: the batch dimension is free
    assert [b for b in (1, 4) if any(f"seeded random input at batch {b}: max abs diff" in line for line in lines)] == [1, 4]
    return result


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> SimpleNamespace:
    """An empty torch hub cache in TORCH_HOME; downloads fail at once and are recorded.

    Returns .checkpoints (the cache folder torchvision reads) and .attempts (URLs it tried).
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    for key, value in DEAD_PROXY.items():
        monkeypatch.setenv(key, value)
    attempts: list[str] = []

    def no_download(url, dst, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    assert checkpoints == tmp_path / "torch-home" / "hub" / "checkpoints"
    return SimpleNamespace(checkpoints=checkpoints, attempts=attempts)


def test_exporters_package_does_not_import_torch():
    code = "import sys, exporters; assert 'torch' not in sys.modules, 'exporters imported torch'; print(exporters.__all__)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "export_model" in run.stdout


def test_random_weights_file_and_metadata(alexnet_random):
    result = alexnet_random
    assert result.path.name == "alexnet.onnx"
    assert result.files == (result.path,)
    assert not result.path.with_name("alexnet.onnx.data").exists()
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["alexnet.onnx"]  # no temporary files left
    assert result.weights == "random"
    assert 0 <= result.max_abs_diff < 1e-3
    onnx.checker.check_model(str(result.path))

    meta = metadata(result.path)
    assert meta[SOURCE_KEY] == "torchvision.models.alexnet"
    assert meta[WEIGHTS_KEY] == "random"
    assert LABELS_KEY not in meta  # random weights have no meaningful class names
    assert json.loads(meta[PREPROCESS_KEY]) == {
        "resize": [256],
        "crop": [224, 224],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "color": "RGB",
        "scale": 1,
        "layout": "NCHW",
        "origin": "torchvision's AlexNet_Weights.IMAGENET1K_V1 transforms",
    }


def test_random_weights_graph_io_and_conv_kernels(alexnet_random):
    proto = onnx.load(str(alexnet_random.path))
    graph = proto.graph
    assert [i.name for i in graph.input] == ["input"]
    # The batch dimension is free (named "batch"), the rest fixed: the check ran at batches 1 and 4.
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 224, 224]
    assert [o.name for o in graph.output] == ["logits"]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [1000]
    assert not graph.output[0].type.tensor_type.shape.dim[0].dim_value
    import onnxruntime as ort

    session = ort.InferenceSession(str(alexnet_random.path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((4, 3, 224, 224), dtype=np.float32)
    (four,) = session.run(["logits"], {"input": batch})
    (one,) = session.run(["logits"], {"input": batch[2:3]})
    assert four.shape == (4, 1000)
    np.testing.assert_allclose(four[2:3], one, rtol=1e-4, atol=1e-5)

    # The kernels are initializers named like the state dict and equal to it: the same seed rebuilds it.
    state = seeded_state_dict("alexnet", 0)
    kernels = conv_kernels(alexnet_random.path)
    assert list(kernels) == ["features.0.weight", "features.3.weight", "features.6.weight", "features.8.weight", "features.10.weight"]
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(kernel, state[name].numpy())
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    np.testing.assert_array_equal(inits["features.0.bias"], state["features.0.bias"].numpy())


def test_onnxruntime_matches_torch_on_another_input(alexnet_random):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None).eval()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = model(x).numpy()
    (got,) = ort.InferenceSession(str(alexnet_random.path)).run(["logits"], {"input": x.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_state_dict_file(tmp_path):
    state = seeded_state_dict("alexnet", 123)
    weights = tmp_path / "my-alexnet.pth"
    torch.save(state, weights)
    result = export_model("alexnet", weights=str(weights), output_dir=tmp_path / "out", log=quiet)

    assert result.weights == f"file:{weights}"
    meta = metadata(result.path)
    assert meta[WEIGHTS_KEY] == "file:my-alexnet.pth"
    assert len(json.loads(meta[LABELS_KEY])) == 1000  # the file fits the 1000-class head of the default weights
    saved = torch.load(weights, weights_only=True)
    np.testing.assert_array_equal(conv_kernels(result.path)["features.0.weight"], saved["features.0.weight"].numpy())


def test_imagenet_from_the_hub_cache_without_network(tmp_path, fake_hub):
    url = torchvision.models.AlexNet_Weights.DEFAULT.url
    assert url.endswith("/" + ALEXNET_FILE)
    fake_hub.checkpoints.mkdir(parents=True)
    cached = fake_hub.checkpoints / ALEXNET_FILE
    state = seeded_state_dict("alexnet", 5)
    torch.save(state, cached)

    lines: list[str] = []
    result = export_model("alexnet", output_dir=tmp_path / "out", log=lines.append)

    assert fake_hub.attempts == []
    assert any(str(cached) in line for line in lines)
    assert result.weights == "IMAGENET1K_V1"
    meta = metadata(result.path)
    assert meta[WEIGHTS_KEY] == "IMAGENET1K_V1"
    labels = json.loads(meta[LABELS_KEY])
    assert len(labels) == 1000
    assert labels[0] == "tench"
    np.testing.assert_array_equal(conv_kernels(result.path)["features.0.weight"], state["features.0.weight"].numpy())


def test_imagenet_offline_and_not_cached(tmp_path, fake_hub):
    out = tmp_path / "out"
    with pytest.raises(OnnxvisError) as caught:
        export_model("alexnet", weights="imagenet", output_dir=out, log=quiet)
    message = str(caught.value)
    assert "\n" not in message
    assert str(fake_hub.checkpoints / ALEXNET_FILE) in message
    assert "--weights random" in message
    assert "--weights PATH" in message
    assert fake_hub.attempts == [torchvision.models.AlexNet_Weights.DEFAULT.url]
    assert not (out / "alexnet.onnx").exists()


def test_imagenet_offline_real_download_path_fails_fast(tmp_path):
    """torch's own download code, pointed at a closed local port, ends in the same OnnxvisError."""
    code = (
        "from exporters.torchvision_export import export_model\n"
        "from onnxvis.errors import OnnxvisError\n"
        "try:\n"
        "    export_model('alexnet', output_dir='out', log=lambda m: None)\n"
        "except OnnxvisError as e:\n"
        "    print('OnnxvisError:', e)\n"
    )
    env = {**os.environ, **DEAD_PROXY, "TORCH_HOME": str(tmp_path / "torch-home"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / ALEXNET_FILE
    assert run.stdout.startswith("OnnxvisError: cannot download"), run.stdout + run.stderr
    assert str(cached) in run.stdout
    assert not cached.exists()
    assert run.stdout.count("\n") == 1  # one line
    assert "Downloading" not in run.stdout  # torch's progress goes to stderr, not stdout


def test_unknown_model_name(tmp_path):
    with pytest.raises(OnnxvisError) as caught:
        export_model("resnet19", weights="random", output_dir=tmp_path, log=quiet)
    message = str(caught.value)
    assert "'resnet19'" in message
    assert "alexnet" in message  # lists valid names
    assert "did you mean resnet18?" in message
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "weights file not found"),
        (b"this is not a torch file", "cannot read"),
        ({"epoch": 3}, "is neither a state dict nor a checkpoint with one under state_dict, model"),
        ("resnet18", "does not fit torchvision's alexnet"),
    ],
    ids=["missing", "garbage", "checkpoint", "other-model"],
)
def test_bad_weights_file(tmp_path, content, expected):
    weights = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        weights.write_bytes(content)
    elif isinstance(content, dict):
        torch.save(content, weights)
    elif isinstance(content, str):
        torch.save(seeded_state_dict(content, 0), weights)
    out = tmp_path / "out"
    with pytest.raises(OnnxvisError) as caught:
        export_model("alexnet", weights=str(weights), output_dir=out, log=quiet)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (out / "alexnet.onnx").exists()


def test_existing_files_that_are_not_onnxvis_exports_are_left_alone(tmp_path, alexnet_random):
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    precious = out / "alexnet.onnx"
    precious.write_bytes(b"the user's own file")
    with pytest.raises(OnnxvisError, match="not an onnxvis export"):
        export_model("alexnet", weights="random", output_dir=out, log=quiet)
    assert precious.read_bytes() == b"the user's own file"

    # A real ONNX model without onnxvis metadata is just as much the user's.
    proto = onnx.load(str(alexnet_random.path))
    del proto.metadata_props[:]
    onnx.save(proto, str(precious))
    before = precious.read_bytes()
    with pytest.raises(OnnxvisError, match="not an onnxvis export"):
        export_model("alexnet", weights="random", output_dir=out, log=quiet)
    assert precious.read_bytes() == before

    # A stray .onnx.data beside an earlier onnxvis export is not ours either.
    shutil.copy(alexnet_random.path, precious)
    stray = out / "alexnet.onnx.data"
    stray.write_bytes(b"not ours")
    with pytest.raises(OnnxvisError, match="alexnet.onnx.data exists"):
        export_model("alexnet", weights="random", output_dir=out, external_data=True, log=quiet)
    assert stray.read_bytes() == b"not ours"
    assert sorted(p.name for p in out.iterdir()) == ["alexnet.onnx", "alexnet.onnx.data"]


def test_external_data_replaces_an_earlier_export_and_back(tmp_path, alexnet_random):
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(alexnet_random.path, out / "alexnet.onnx")  # an earlier onnxvis export may be replaced

    result = export_model("alexnet", weights="random", output_dir=out, external_data=True, log=quiet)
    onnx_file, data_file = out / "alexnet.onnx", out / "alexnet.onnx.data"
    assert result.files == (onnx_file, data_file)
    assert sorted(p.name for p in out.iterdir()) == ["alexnet.onnx", "alexnet.onnx.data"]
    assert onnx_file.stat().st_size < 1 << 20  # the weights are in the data file
    assert data_file.stat().st_size > 200 << 20
    onnx.checker.check_model(str(onnx_file))
    assert metadata(onnx_file)[WEIGHTS_KEY] == "random"
    same = conv_kernels(alexnet_random.path)
    for name, kernel in conv_kernels(onnx_file).items():
        np.testing.assert_array_equal(kernel, same[name])

    # Going back to one file removes the earlier export's data file: nothing refers to it any more.
    result = export_model("alexnet", weights="random", output_dir=out, log=quiet)
    assert result.files == (onnx_file,)
    assert sorted(p.name for p in out.iterdir()) == ["alexnet.onnx"]


def test_resnet18_keeps_batchnorm_out_of_the_kernels(tmp_path):
    lines: list[str] = []
    result = export_model("resnet18", weights="random", output_dir=tmp_path, log=lines.append)
    onnx.checker.check_model(str(result.path))
    assert metadata(result.path)[SOURCE_KEY] == "torchvision.models.resnet18"
    proto = onnx.load(str(result.path))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 20
    assert ops.count("BatchNormalization") == 20
    state = seeded_state_dict("resnet18", 0)
    kernels = conv_kernels(result.path)
    assert len(kernels) == 20
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(kernel, state[name].numpy())
    # resnet's convolutions have no bias; the exporter's all-zero stand-in is dropped.
    assert all(len(n.input) == 2 for n in proto.graph.node if n.op_type == "Conv")
    assert any("dynamo" in line for line in lines)


def test_old_opset_goes_through_the_torchscript_exporter(tmp_path):
    lines: list[str] = []
    result = export_model("squeezenet1_1", weights="random", output_dir=tmp_path, opset=13, log=lines.append)
    proto = onnx.load(str(result.path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 13
    assert any("TorchScript" in line for line in lines)
    state = seeded_state_dict("squeezenet1_1", 0)
    kernels = conv_kernels(result.path)
    assert len(kernels) == 26
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(kernel, state[name].numpy())
    assert metadata(result.path)[WEIGHTS_KEY] == "random"


def test_opset_out_of_range(tmp_path):
    with pytest.raises(OnnxvisError, match="opset 3 is out of range"):
        export_model("alexnet", weights="random", output_dir=tmp_path, opset=3, log=quiet)


def test_scorecam_runs_the_masked_images_in_batches_on_an_export(alexnet_random, monkeypatch):
    """The free batch of an export is what ScoreCAM uses: conv1's 64 masked images go 16 at a time, and
    `info` says the batch is free."""
    from conftest import asset
    from onnxvis.analysis.cam import runs
    from onnxvis.engine import runner
    from onnxvis.engine.inspector import Inspector

    seen: list[int] = []
    run = runner.Session.run

    def spy(self, feeds):
        seen.append(max(np.asarray(v).shape[0] for v in feeds.values() if np.ndim(v)))
        return run(self, feeds)

    photo = asset("images/skimage_chelsea.png")
    with Inspector(alexnet_random.path) as insp:
        assert ("batch", f"free: up to {insp.config.batch_size} images a run") in insp.summary()
        monkeypatch.setattr(runner.Session, "run", spy)
        (result,) = runs.Cam(insp, runs.places_for(insp, [insp.layers[0]]), method="score", batch_size=16)([photo])
    assert seen == [1, 16, 16, 16, 16]  # the pass, then 64 masked images 16 at a time
    assert result.cam.shape == (224, 224) and result.cam.max() == pytest.approx(1, abs=1e-6)
