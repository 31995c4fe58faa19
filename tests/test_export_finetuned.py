"""Exporting the user's own trained model: fine-tuned class counts, training checkpoints, labels, preprocessing.

Each case is a seeded random torchvision model saved as people save them, exported once through
the CLI (module-scoped) and then checked against torch, in `info`, and in the report's top-5.
No test touches the network: every model is built from a state dict written here.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from conftest import asset, run_onnxvis
from exporters.torchvision_export import _read_state_dict, export_model  # imports torch only when it runs
from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("onnxscript")

CIFAR_MEAN = "0.49139968,0.48215827,0.44653124"
CIFAR_STD = "0.24703233,0.24348505,0.26158768"


def _bare(state: dict) -> dict:
    return state


def _data_parallel_checkpoint(state: dict) -> dict:
    return {"state_dict": {"module." + k: v for k, v in state.items()}}


def _training_checkpoint(state: dict) -> dict:
    # torch.compile adds _orig_mod. to every key; the optimizer state is not tensors only.
    return {"model": {"_orig_mod." + k: v for k, v in state.items()}, "epoch": 3, "optimizer": {"lr": 0.01, "momentum": 0.9}}


CASES = {
    # The tutorial's case: AlexNet fine-tuned on CIFAR-10, with its preprocessing, written to a named file.
    "alexnet-10-state-dict": SimpleNamespace(
        arch="alexnet", classes=10, seed=10, save=_bare, labels="txt", output="my-alexnet.onnx",
        flags=["--resize", "224,224", "--mean", CIFAR_MEAN, "--std", CIFAR_STD],
    ),
    "resnet18-37-dataparallel": SimpleNamespace(
        arch="resnet18", classes=37, seed=37, save=_data_parallel_checkpoint, labels="json", output="models", flags=[],
    ),
    "resnet18-1000-checkpoint": SimpleNamespace(
        arch="resnet18", classes=1000, seed=3, save=_training_checkpoint, labels="txt", output="models", flags=[],
    ),
}


def _labels(classes: int, seed: int) -> list[str]:
    # Names unlike ImageNet's, with characters HTML must escape, so a match cannot be an accident.
    return [f"kind {seed}-{i} <{chr(0x3b1 + i % 20)}>" for i in range(classes)]


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory) -> SimpleNamespace:
    """One case exported through the CLI: the torch model, the .onnx path, the labels and the CLI's stderr."""
    case = CASES[request.param]
    work = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(case.seed)
    model = torchvision.models.get_model_builder(case.arch)(weights=None, num_classes=case.classes).eval()
    weights = work / "trained.pth"
    torch.save(case.save(model.state_dict()), weights)
    labels = _labels(case.classes, case.seed)
    labels_file = work / f"classes.{case.labels}"
    labels_file.write_text(json.dumps(labels) if case.labels == "json" else "\n".join(labels) + "\n", encoding="utf-8")

    done = run_onnxvis("export", case.arch, "--weights", weights, "--labels", labels_file, "-o", case.output, *case.flags, cwd=work)
    assert done.returncode == 0, done.stderr
    written = [Path(line) for line in done.stdout.splitlines()]
    assert len(written) == 1
    path = work / written[0]
    return SimpleNamespace(
        name=request.param, case=case, work=work, path=path, model=model, labels=labels, labels_file=labels_file, stderr=done.stderr
    )


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _torch_scores(exported: SimpleNamespace, image: Path) -> tuple[np.ndarray, np.ndarray]:
    """(torch logits, onnxruntime logits) on ``image``, preprocessed as the model's metadata says."""
    import onnxruntime as ort

    chosen = pp.from_metadata(_metadata(exported.path))
    x = pp.to_layout(pp.preprocess(pp.load_image(image), chosen), "NCHW", np.float32)
    with torch.no_grad():
        expected = exported.model(torch.from_numpy(x)).numpy()
    (got,) = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})
    return expected, got


def test_the_export_agrees_with_torch(exported):
    found = re.search(r"onnxruntime vs torch on a seeded random input at batch 4: max abs diff (\S+) \(tolerance (\S+)\)", exported.stderr)
    assert found, exported.stderr
    assert float(found.group(1)) <= float(found.group(2))

    expected, got = _torch_scores(exported, asset("images/skimage_coffee.png"))
    assert got.shape == expected.shape == (1, exported.case.classes)
    diff = float(np.max(np.abs(got - expected)))
    print(f"{exported.name}: max abs diff onnxruntime vs torch: random input {found.group(1)}, coffee photo {diff:.3g}")
    assert diff <= 1e-4 * max(1.0, float(np.max(np.abs(expected))))
    assert np.argmax(got) == np.argmax(expected)


def test_the_export_says_what_it_did(exported):
    case = exported.case
    if case.save is _data_parallel_checkpoint:
        assert "taking its state dict 'state_dict'" in exported.stderr
        assert "removed the key prefix 'module.'" in exported.stderr
    if case.save is _training_checkpoint:
        assert "taking its state dict 'model' (other entries: epoch, optimizer)" in exported.stderr
        assert "removed the key prefix '_orig_mod.'" in exported.stderr
    head = "classifier.6.weight" if case.arch == "alexnet" else "fc.weight"
    inferred = f"classes: {case.classes}, from the shape of {head}"
    assert (inferred in exported.stderr) == (case.classes != 1000)


def test_metadata_holds_the_labels_and_the_preprocessing(exported):
    meta = _metadata(exported.path)
    assert json.loads(meta["onnxvis.labels"]) == exported.labels
    assert meta["onnxvis.labels_origin"] == f"file {exported.labels_file.name}, given at export"
    stored = json.loads(meta["onnxvis.preprocess"])
    if exported.case.arch == "alexnet":  # --resize 224,224 with CIFAR-10's mean and std
        assert stored["resize"] == [224, 224] and stored["crop"] is None
        assert stored["mean"] == [float(v) for v in CIFAR_MEAN.split(",")]
        assert stored["std"] == [float(v) for v in CIFAR_STD.split(",")]
        assert stored["origin"] == f"the user's settings: resize 224,224, mean {CIFAR_MEAN}, std {CIFAR_STD}"
    else:
        assert stored["resize"] == [256] and stored["crop"] == [224, 224]
        assert stored["origin"] == "torchvision's ResNet18_Weights.IMAGENET1K_V1 transforms"


def test_o_with_onnx_suffix_writes_that_file(exported):
    if exported.case.output.endswith(".onnx"):
        assert exported.path == exported.work / "my-alexnet.onnx"
        assert exported.path.is_file()
        assert sorted(p.name for p in exported.work.iterdir()) == ["classes.txt", "my-alexnet.onnx", "trained.pth"]
    else:
        assert exported.path == exported.work / "models" / f"{exported.case.arch}.onnx"
        assert exported.path.is_file()


def test_info_shows_the_classes_and_where_things_came_from(exported):
    done = run_onnxvis("info", exported.path)
    assert done.returncode == 0, done.stderr
    assert f"classes   {exported.case.classes}, named; labels from file {exported.labels_file.name}, given at export" in done.stdout
    assert f"output    'logits' [?x{exported.case.classes}] float32" in done.stdout
    assert "batch     free: up to 8 images a run" in done.stdout
    assert "(the model's onnxvis.preprocess metadata)" in done.stdout
    if exported.case.arch == "alexnet":
        assert "preproc   metadata: resize 224x224, RGB, 0..1, mean [0.4914, 0.482158, 0.446531]" in done.stdout
        assert "set at export from the user's settings: resize 224,224" in done.stdout
    else:
        assert "set at export from torchvision's ResNet18_Weights.IMAGENET1K_V1 transforms" in done.stdout


def _top5(report: Path) -> list[tuple[str, int]]:
    """(class name, index) of each row of the report's top-5 table."""
    text = report.read_text(encoding="utf-8")
    section = text[text.index("Top-5 predictions"):]
    body = section[section.index("<tbody>"):section.index("</tbody>")]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        rows.append((cells[1], int(cells[2])))
    return rows


def test_the_report_top5_names_the_users_classes(exported, tmp_path):
    image = asset("images/skimage_chelsea.png")
    done = run_onnxvis("report", exported.path, image, "-o", tmp_path / "report")
    assert done.returncode == 0, done.stderr
    top = _top5(tmp_path / "report" / "report.html")
    expected, _ = _torch_scores(exported, image)
    best = np.argsort(-expected[0], kind="stable")[:5]
    assert top == [(exported.labels[i], int(i)) for i in best]


def test_predict_names_the_users_classes(exported):
    image = asset("images/skimage_chelsea.png")
    done = run_onnxvis("predict", exported.path, image, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    top = json.loads(line)["top"]
    expected, _ = _torch_scores(exported, image)
    best = np.argsort(-expected[0], kind="stable")[:5]
    assert [(t["label"], t["class"]) for t in top] == [(exported.labels[i], int(i)) for i in best]
    assert "preprocessing: metadata" in done.stderr  # no flags needed: the export recorded it


# --- weights files that are refused or read specially ---------------------------------------------


class _CreatesAFile:
    """Unpickling this runs open(path, "w"): it creates the file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_is_refused_without_being_loaded(tmp_path):
    marker = tmp_path / "created-by-unpickling"
    weights = tmp_path / "evil.pth"
    torch.save({"model": _CreatesAFile(marker), "epoch": 1}, weights)

    done = run_onnxvis("export", "alexnet", "--weights", weights, "-o", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 2
    assert not marker.exists()
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("onnxvis: error: ") and lines[-1].count("onnxvis: error") == 1
    assert "holds a pickled Python object" in lines[-1]
    assert "loading a pickle runs code" in lines[-1]
    assert "torch.save(model.state_dict(), PATH)" in lines[-1]
    assert not (tmp_path / "out" / "alexnet.onnx").exists()

    # The same file, loaded the unsafe way, does create the file: the test above could have failed.
    subprocess.run(
        [sys.executable, "-c", f"import torch; torch.load({str(weights)!r}, weights_only=False)"],
        cwd=tmp_path, capture_output=True, check=False,
    )
    assert marker.exists()


def test_a_whole_pickled_model_is_refused_and_named(tmp_path):
    weights = tmp_path / "whole.pth"
    torch.save(torchvision.models.alexnet(num_classes=10), weights)
    with pytest.raises(OnnxvisError) as caught:
        export_model("alexnet", weights=str(weights), output_dir=tmp_path / "out", log=lambda m: None)
    message = str(caught.value)
    assert "torchvision.models.alexnet.AlexNet" in message
    assert "not loaded" in message and "\n" not in message


def _small_state() -> dict:
    return {"conv.weight": torch.ones(2, 3, 1, 1), "fc.weight": torch.zeros(4, 2), "fc.bias": torch.zeros(4)}


SMALL_KEYS = ["conv.weight", "fc.weight", "fc.bias"]


@pytest.mark.parametrize(
    "saved, keys, expected_log",
    [
        (_small_state(), SMALL_KEYS, []),
        ({"module." + k: v for k, v in _small_state().items()}, SMALL_KEYS, ["removed the key prefix 'module.'"]),
        ({"_orig_mod.module." + k: v for k, v in _small_state().items()}, SMALL_KEYS, ["'_orig_mod.'", "'module.'"]),
        ({"net": _small_state(), "epoch": 3}, SMALL_KEYS, ["taking its state dict 'net' (other entries: epoch)"]),
        ({"model_state_dict": _small_state(), "optimizer_state_dict": {"state": {}}}, SMALL_KEYS, ["'model_state_dict'"]),
        ({"weights": _small_state()}, SMALL_KEYS, ["'weights'"]),
        ({"model": _small_state(), "state_dict": {"x": torch.zeros(1)}}, ["x"],
         ["taking its state dict 'state_dict'", "'model' also holds a state dict, not taken"]),
    ],
    ids=["bare", "dataparallel", "compile-of-dataparallel", "net", "model_state_dict", "weights", "two-candidates"],
)
def test_read_state_dict_accepts_what_people_save(tmp_path, saved, keys, expected_log):
    path = tmp_path / "w.pth"
    torch.save(saved, path)
    lines: list[str] = []
    state = _read_state_dict(path, lines.append)
    assert list(state) == keys
    np.testing.assert_array_equal(state[keys[0]].numpy(), (saved.get("state_dict") or _small_state())[keys[0]].numpy())
    for text in expected_log:
        assert any(text in line for line in lines), lines


def test_a_checkpoint_without_a_usual_key_names_its_entries(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"ema_weights": _small_state(), "epoch": 7}, path)
    with pytest.raises(OnnxvisError) as caught:
        _read_state_dict(path, lambda m: None)
    message = str(caught.value)
    assert "'ema_weights' (dict), 'epoch' (int)" in message
    assert "torch.save(checkpoint['ema_weights'], PATH)" in message


def test_another_mismatch_than_the_class_count_is_refused_with_names_and_shapes(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None, num_classes=10).state_dict()
    state["features.0.weight"] = state["features.0.weight"][:32]
    state["features.0.bias"] = state["features.0.bias"][:32]
    weights = tmp_path / "w.pth"
    torch.save(state, weights)
    with pytest.raises(OnnxvisError) as caught:
        export_model("alexnet", weights=str(weights), output_dir=tmp_path / "out", log=lambda m: None)
    message = str(caught.value)
    assert "does not fit torchvision's alexnet" in message
    assert "features.0.weight [32, 3, 11, 11] in the file, [64, 3, 11, 11] in the model" in message
    assert "features.0.bias [32] in the file, [64] in the model" in message


def test_labels_of_the_wrong_length_stop_the_export(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.alexnet(weights=None, num_classes=10).state_dict(), weights)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n", encoding="utf-8")
    done = run_onnxvis("export", "alexnet", "--weights", weights, "--labels", labels, "-o", "out", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"onnxvis: error: the labels file {labels} names 3 classes but the model has 10; "
        "give one name per class, in the order of the model's outputs"
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_resize_n_without_crop_is_refused_before_any_work(tmp_path):
    done = run_onnxvis("export", "alexnet", "--weights", "random", "--resize", "256", "-o", "out", cwd=tmp_path)
    assert done.returncode == 2
    assert "--resize N (shorter side) needs --crop H,W" in done.stderr
    assert not (tmp_path / "out").exists()



@pytest.mark.parametrize(
    "arch, options, head",
    [
        ("squeezenet1_1", {}, "classifier.1.weight [7, 512, 1, 1]"),  # a 1x1 Conv head
        ("mobilenet_v3_small", {}, "classifier.3.weight [7, 1024]"),
        # Fine-tuned from the pretrained googlenet: no aux heads, which the builder drops after loading.
        ("googlenet", {"aux_logits": False, "transform_input": True, "init_weights": False}, "fc.weight [7, 1024]"),
        ("mnasnet0_5", {}, "classifier.1.weight [7, 1280]"),  # needs its module version, lost in a plain dict
    ],
)
def test_other_families_are_built_with_the_class_count_of_the_file(arch, options, head):
    from exporters.torchvision_export import (
        _build_with_state_dict,
        _default_weights,
        _model_builder,
    )

    torch.manual_seed(0)
    trained = torchvision.models.get_model_builder(arch)(weights=None, num_classes=7, **options).eval()
    lines: list[str] = []
    built = _build_with_state_dict(
        arch, _model_builder(arch, arch), _default_weights(arch), dict(trained.state_dict()), "the file", lines.append
    ).eval()
    assert any(f"classes: 7, from the shape of {head}" in line for line in lines), lines
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = trained(x), built(x)
    assert got.shape == (2, 7)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_a_tensor_the_file_lacks_is_named():
    from exporters.torchvision_export import (
        _build_with_state_dict,
        _default_weights,
        _model_builder,
    )

    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer1.0.conv1.weight"]
    with pytest.raises(OnnxvisError, match="does not fit torchvision's resnet18: it lacks layer1.0.conv1.weight;"):
        _build_with_state_dict("resnet18", _model_builder("resnet18", "resnet18"), _default_weights("resnet18"), state, "the file")
