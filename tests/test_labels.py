"""Class names: ``--labels FILE`` on predict, cam, report and serve; the names a model carries; ImageNet-1k's
names guessed for 1000 or 1001 scores, said as a guess; ``info`` saying where the names came from.

Precedence: --labels > the model's onnxvis.labels metadata > the guess. Small models are built with
onnx.helper (the class that wins is chosen by the weights); the real SqueezeNet is the issue's case.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, asset, call_onnxvis, run_onnxvis
from onnxvis.engine.classes import ClassNames, guess_class_names, imagenet_classes, load_labels
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"
COFFEE = "images/skimage_coffee.png"
GUESS_LINE = "labels: ImageNet-1k (guessed from 1000 outputs; give --labels FILE if these are not ImageNet's classes)"
SMALL = ("--preset", "unit", "--resize", "16,16")  # the small models' input


def scores_model(path: Path, classes: int, top: int, metadata: dict[str, str] | None = None, dynamic: bool = False) -> Path:
    """x (1,3,16,16) -> Conv 3x3 (4, positive) -> Relu -> GlobalAveragePool -> Flatten -> MatMul: ``classes`` scores.

    The weights and a photo in [0, 1] make every pooled value positive, and the matrix is small and
    positive but for column ``top`` and the first row of column ``top + 1``: class ``top`` wins, class
    ``top + 1`` is second, and no score is 0 (AblationCAM divides by it).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    fc = rng.uniform(0.01, 0.1, (4, classes)).astype(np.float32)
    fc[:, top] = [4, 1, 1, 1]
    fc[0, (top + 1) % classes] = 1
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(np.abs(rng.standard_normal((4, 3, 3, 3))).astype(np.float32) + 0.1, "w"),
        numpy_helper.from_array(fc, "fc"),
    ]
    out_shape = ["N", "C"] if dynamic else [1, classes]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, dict(metadata or {}))
    onnx.save(model, str(path))
    return path


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(path)
    return path


def names_file(path: Path, names: list[str], as_json: bool = False) -> Path:
    path.write_text(json.dumps(names) if as_json else "\n".join(names) + "\n", encoding="utf-8")
    return path


def top_of(done) -> list[tuple[int, str | None]]:
    (line,) = [json.loads(x) for x in done.stdout.splitlines()]
    return [(t["class"], t["label"]) for t in line["top"]]


FIVE = ["cat", "dog", "bird of prey", "espresso", "kite"]

# ------------------------------------------------------------------------------------------------ the library


def test_the_shipped_imagenet_names():
    names = imagenet_classes()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[281], names[967], names[999]) == ("tench", "tabby", "espresso", "toilet tissue")
    assert imagenet_classes() is names  # read once


def test_the_shipped_names_are_in_imagenets_class_order():
    """The 100 sample photos' labels.csv (sorted-wnid order, written independently) names the same classes."""
    with open(asset("images/imagenet-sample/labels.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 100
    assert [imagenet_classes()[int(r["class_index"])] for r in rows] == [r["class_name"] for r in rows]


def test_the_names_are_package_data():
    table = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"onnxvis.engine" = ["imagenet_classes.txt"]' in table  # (tomllib would need Python 3.11)
    assert (ROOT / "onnxvis" / "engine" / "imagenet_classes.txt").is_file()


@pytest.mark.full
def test_the_shipped_names_are_torchvisions():
    """The generator (exporters/imagenet_labels.py) finds the shipped file the same as torchvision's list."""
    pytest.importorskip("torchvision")
    from exporters.imagenet_labels import SHIPPED, file_text, torchvision_categories

    assert SHIPPED.read_text(encoding="utf-8") == file_text(torchvision_categories())


@pytest.mark.full
def test_the_generator_writes_what_it_checks(tmp_path):
    pytest.importorskip("torchvision")
    from exporters.imagenet_labels import main

    out = tmp_path / "names.txt"
    assert main(["--output", str(out), "--check"]) == 1  # absent: different
    assert main(["--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == list(imagenet_classes())
    assert main(["--output", str(out), "--check"]) == 0


def test_the_guess():
    guess = guess_class_names(1000)
    assert guess is not None and guess.guessed and guess.names == imagenet_classes()
    assert guess.describe() == "ImageNet-1k (guessed from 1000 outputs)"
    slim = guess_class_names(1001)
    assert slim is not None and slim.names is not None and slim.guessed
    assert slim.names[0] == "background" and slim.names[1:] == imagenet_classes()
    assert slim.describe() == "ImageNet-1k after a background class (guessed from 1001 outputs, as TF-slim models have)"
    assert [guess_class_names(n) for n in (None, 10, 999, 1002)] == [None] * 4
    assert "--" not in guess.describe() + slim.describe()  # the library names no flag


def test_load_labels_checks_the_count(tmp_path):
    path = names_file(tmp_path / "five.txt", FIVE)
    assert load_labels(path, 5) == FIVE
    assert load_labels(path, None) == FIVE  # a count the graph does not declare: checked at the run
    with pytest.raises(OnnxvisError) as caught:
        load_labels(path, 1000)
    assert str(caught.value) == (
        f"labels file {path} names 5 classes but the model scores 1000; give one name per class, in the order of the model's outputs"
    )
    assert caught.value.setting == "labels"
    with pytest.raises(OnnxvisError) as caught:
        load_labels(tmp_path / "missing.txt", 5, setting="labels_b")
    assert caught.value.setting == "labels_b" and "labels file not found" in str(caught.value)


def test_the_inspectors_names_and_their_precedence(tmp_path):
    guessed = Inspector(scores_model(tmp_path / "g.onnx", 1000, 3))
    assert guessed.class_count() == 1000 and guessed.class_names.guessed and guessed.labels == imagenet_classes()
    assert dict(guessed.summary())["classes"] == "1000, named: ImageNet-1k (guessed from 1000 outputs)"

    stored = [f"thing {i}" for i in range(1000)]
    named = Inspector(scores_model(tmp_path / "m.onnx", 1000, 3, {"onnxvis.labels": json.dumps(stored)}))
    assert named.class_names.source == "metadata" and list(named.labels or []) == stored  # metadata over the guess

    chosen = named.use_labels([f"mine {i}" for i in range(1000)], "file mine.txt")
    assert chosen == ClassNames(tuple(f"mine {i}" for i in range(1000)), "file mine.txt", "file")
    assert named.labels is chosen.names  # the user's over the metadata
    assert dict(named.summary())["classes"] == "1000, named; labels from file mine.txt"
    with pytest.raises(OnnxvisError, match="the file few.txt names 2 classes but the model scores 1000"):
        named.use_labels(["a", "b"], "file few.txt")
    with pytest.raises(OnnxvisError, match="empty"):
        named.use_labels([], "file none.txt")

    unnamed = Inspector(scores_model(tmp_path / "u.onnx", 10, 3))
    assert unnamed.labels is None and unnamed.class_names.source == "none"
    assert Inspector(scores_model(tmp_path / "d.onnx", 1000, 3, dynamic=True)).class_count() is None  # no guess without a count


def test_names_given_for_an_undeclared_count_are_checked_against_the_scores(tmp_path, photo):
    inspector = Inspector(scores_model(tmp_path / "d.onnx", 5, 3, dynamic=True), preset="unit")
    inspector.use_labels(["a", "b", "c"], "file three.txt")  # the graph does not say: accepted for now
    with pytest.raises(OnnxvisError, match="the file three.txt names 3 classes but the model scores 5"):
        inspector.predict(photo)


# ------------------------------------------------------------------------------------------------ predict


def test_predict_names_espresso_and_says_the_names_are_a_guess(cli):
    """The issue's case: the Caffe SqueezeNet carries no names; its 1000 scores are ImageNet's."""
    done = cli("predict", asset(SQUEEZENET), asset(COFFEE))
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[1].split()
    assert first[:2] == ["1.", "967"] and first[3:] == ["espresso"]
    assert GUESS_LINE in done.stderr.splitlines()


def test_predict_with_1001_scores_puts_a_background_class_first(cli, tmp_path, photo):
    model = scores_model(tmp_path / "slim.onnx", 1001, 968)
    done = cli("predict", model, photo, "--format", "jsonl", "--top", "2", *SMALL)
    assert done.returncode == 0, done.stderr
    assert top_of(done) == [(968, "espresso"), (969, "cup")]  # ImageNet's 967 and 968, one further on
    assert (
        "labels: ImageNet-1k after a background class (guessed from 1001 outputs, as TF-slim models have; "
        "give --labels FILE if these are not ImageNet's classes)"
    ) in done.stderr.splitlines()


@pytest.mark.parametrize("as_json", [False, True], ids=["lines", "json"])
def test_predict_with_a_labels_file(cli, tmp_path, photo, as_json):
    model = scores_model(tmp_path / "five.onnx", 5, 3)
    labels = names_file(tmp_path / ("five.json" if as_json else "five.txt"), FIVE, as_json)
    done = cli("predict", model, photo, "--labels", labels, "--format", "jsonl", "--top", "2", *SMALL)
    assert done.returncode == 0, done.stderr
    assert top_of(done) == [(3, "espresso"), (4, "kite")]
    assert "labels:" not in done.stderr  # the user's names: no guess to speak of
    without = cli("predict", model, photo, "--format", "jsonl", "--top", "2", *SMALL)
    assert top_of(without) == [(3, None), (4, None)]  # 5 scores: no guess


def test_labels_beat_the_metadata_and_the_metadata_beats_the_guess(cli, tmp_path, photo):
    stored = [f"stored {i}" for i in range(1000)]
    model = scores_model(tmp_path / "named.onnx", 1000, 967, {"onnxvis.labels": json.dumps(stored)})
    done = cli("predict", model, photo, "--format", "jsonl", "--top", "1", *SMALL)
    assert done.returncode == 0, done.stderr
    assert top_of(done) == [(967, "stored 967")] and "labels:" not in done.stderr
    mine = names_file(tmp_path / "mine.txt", [f"mine {i}" for i in range(1000)])
    done = cli("predict", model, photo, "--labels", mine, "--format", "jsonl", "--top", "1", *SMALL)
    assert done.returncode == 0, done.stderr
    assert top_of(done) == [(967, "mine 967")]


def test_a_count_the_graph_does_not_declare_is_checked_at_the_run(cli, tmp_path, photo):
    model = scores_model(tmp_path / "dynamic.onnx", 5, 3, dynamic=True)
    done = cli("predict", model, photo, "--labels", names_file(tmp_path / "three.txt", FIVE[:3]), *SMALL)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "onnxvis: error: the file three.txt names 3 classes but the model scores 5; give one name per class, "
        "in the order of the model's outputs (set with --labels FILE)"
    ]
    good = cli("predict", model, photo, "--labels", names_file(tmp_path / "five.txt", FIVE), "--format", "jsonl", *SMALL)
    assert good.returncode == 0 and top_of(good)[0] == (3, "espresso"), good.stderr


# ------------------------------------------------------------------------------------------------ bad files, on every command


def _bad(tmp_path: Path, kind: str) -> tuple[Path, str]:
    path = tmp_path / f"{kind}.txt"
    if kind == "count":
        names_file(path, FIVE[:3])
        return path, f"labels file {path} names 3 classes but the model scores 5; give one name per class"
    if kind == "binary":
        path.write_bytes(b"\xff\xfe\x00cat\n")
        return path, f"labels file {path} is not UTF-8 text"
    if kind == "empty":
        path.write_text("\n\n", encoding="utf-8")
        return path, f"labels file {path} holds no class names"
    return path, f"labels file not found: {path}"


# Every kind of bad file on predict; on the other commands (the same loading, apply_labels) a wrong count,
# which needs the command's own class count, and a file that is not UTF-8.
_BAD_CASES = [("predict", kind) for kind in ("count", "binary", "empty", "missing")] + [
    (command, kind) for command in ("cam", "saliency", "report", "serve", "compare") for kind in ("count", "binary")
]


@pytest.mark.parametrize("command,kind", _BAD_CASES)
def test_a_bad_labels_file_is_one_clear_line(tmp_path, photo, command, kind):
    model = scores_model(tmp_path / "five.onnx", 5, 3)
    path, message = _bad(tmp_path, kind)
    out = tmp_path / "out"
    where = {"predict": [photo], "cam": [photo, "-o", out], "saliency": [photo, "-o", out], "report": [photo, "-o", out],
             "serve": ["--port", "0"], "compare": [model, photo, "-o", out]}
    run = run_onnxvis if command == "serve" else call_onnxvis  # a serve that took the file would not return
    done = run(command, model, *where[command], "--labels", path, *SMALL)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"onnxvis: error: {message}"), lines
    assert lines[0].endswith("(set with --labels FILE)")
    assert done.stdout == "" and not (tmp_path / "out").exists()  # refused before anything is written (or served)


# ------------------------------------------------------------------------------------------------ cam, report, info


def _cam(tmp_path: Path, model: Path, photo: Path, name: str, *args: str) -> tuple[np.ndarray, str]:
    out = tmp_path / name
    done = call_onnxvis("cam", model, photo, "--format", "npy", *SMALL, "-o", out, *args)
    assert done.returncode == 0, done.stderr
    (written,) = done.stdout.split()
    return np.load(written), done.stderr


def test_cam_target_by_a_name_from_the_labels_file(tmp_path, photo):
    model = scores_model(tmp_path / "five.onnx", 5, 3)
    labels = names_file(tmp_path / "five.txt", FIVE)
    by_name, stderr = _cam(tmp_path, model, photo, "name", "--labels", labels, "--target", "Bird of Prey")
    by_index, _ = _cam(tmp_path, model, photo, "index", "--target", "2")
    other, _ = _cam(tmp_path, model, photo, "other", "--target", "3")
    np.testing.assert_array_equal(by_name, by_index)
    assert not np.array_equal(by_name, other)  # the name chose its class, not the predicted one
    assert "labels:" not in stderr
    unknown = call_onnxvis("cam", model, photo, "--labels", labels, "--target", "espresso machine", *SMALL, "-o", tmp_path / "x")
    assert unknown.returncode == 2 and "no class is labelled 'espresso machine'" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1 and not (tmp_path / "x").exists()  # refused before the folder is made


def test_saliency_target_by_a_name_from_the_labels_file(tmp_path, photo):
    model = scores_model(tmp_path / "five.onnx", 5, 3)
    labels = names_file(tmp_path / "five.txt", FIVE)

    def attribution(name: str, *args: str) -> np.ndarray:
        done = call_onnxvis("saliency", model, photo, "--format", "npy", *SMALL, "-o", tmp_path / name, *args)
        assert done.returncode == 0, done.stderr
        assert "labels:" not in done.stderr
        (written,) = done.stdout.split()
        return np.load(written)

    by_name = attribution("name", "--labels", labels, "--target", "Bird of Prey")
    np.testing.assert_array_equal(by_name, attribution("index", "--target", "2"))
    assert not np.array_equal(by_name, attribution("other", "--target", "3"))
    unknown = call_onnxvis("saliency", model, photo, "--labels", labels, "--target", "espresso machine", *SMALL, "-o", tmp_path / "x")
    assert unknown.returncode == 2 and "no class is labelled 'espresso machine'" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1 and not (tmp_path / "x").exists()


def test_compare_names_a_with_labels_and_b_with_labels_b(cli, tmp_path, photo):
    a = scores_model(tmp_path / "a.onnx", 5, 3)
    b = scores_model(tmp_path / "b.onnx", 5, 1)
    five = names_file(tmp_path / "five.txt", FIVE)
    other = names_file(tmp_path / "other.txt", [f"other {i}" for i in range(5)])

    def tops(*args) -> tuple:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        done = cli("compare", a, b, photo, "--format", "jsonl", *SMALL, "-o", out, *args)
        assert done.returncode == 0, done.stderr
        (line,) = [json.loads(x) for x in (out / "compare_images.jsonl").read_text().splitlines()]
        return line["top_a"]["class"], line["top_a"]["label"], line["top_b"]["class"], line["top_b"]["label"]

    assert tops("--labels", five) == (3, FIVE[3], 1, FIVE[1])  # --labels names both
    assert tops("--labels", five, "--labels-b", other) == (3, FIVE[3], 1, "other 1")
    assert tops()[1::2] == (None, None)  # five unnamed scores: no names, no guess


def test_cam_target_by_a_guessed_imagenet_name_says_it_is_a_guess(tmp_path, photo):
    model = scores_model(tmp_path / "thousand.onnx", 1000, 3)
    by_name, stderr = _cam(tmp_path, model, photo, "name", "--target", "espresso")
    by_index, plain = _cam(tmp_path, model, photo, "index", "--target", "967")
    np.testing.assert_array_equal(by_name, by_index)
    assert GUESS_LINE in stderr.splitlines()
    assert "labels:" not in plain  # a class by index uses no name


def test_report_with_a_labels_file_and_with_guessed_names(cli, tmp_path, photo):
    from test_cli_report import parse

    five = scores_model(tmp_path / "five.onnx", 5, 3)
    done = cli("report", five, photo, "--labels", names_file(tmp_path / "five.txt", FIVE), "--cam", "none", *SMALL, "-o", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    text, page = parse(Path(done.stdout.split()[0]))
    assert "Top-5 predictions (logits)" in text
    assert [r[1:3] for r in page.rows if len(r) == 5][:2] == [["espresso", "3"], ["kite", "4"]]
    assert "labels:" not in done.stderr

    thousand = scores_model(tmp_path / "thousand.onnx", 1000, 967)
    done = cli("report", thousand, photo, "--cam", "none", *SMALL, "-o", tmp_path / "g")
    assert done.returncode == 0, done.stderr
    text, page = parse(Path(done.stdout.split()[0]))
    assert "Top-5 predictions (logits; names: ImageNet-1k (guessed from 1000 outputs))" in text
    assert [r[1:3] for r in page.rows if len(r) == 5][0] == ["espresso", "967"]
    assert "1000, named: ImageNet-1k (guessed from 1000 outputs)" in text  # the summary's classes row
    assert GUESS_LINE in done.stderr.splitlines()


def test_info_says_where_the_names_come_from(tmp_path):
    done = call_onnxvis("info", scores_model(tmp_path / "thousand.onnx", 1000, 3))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = lines.index("classes   1000, named: ImageNet-1k (guessed from 1000 outputs)")
    assert lines[at + 1] == "          give --labels FILE if these are not ImageNet's classes"
    done = call_onnxvis("info", scores_model(tmp_path / "slim.onnx", 1001, 3))
    assert "classes   1001, named: ImageNet-1k after a background class (guessed from 1001 outputs, as TF-slim models have)" in done.stdout
    stored = scores_model(tmp_path / "named.onnx", 1000, 3, {"onnxvis.labels": json.dumps([str(i) for i in range(1000)])})
    done = call_onnxvis("info", stored)
    assert "classes   1000, named in the model's onnxvis.labels metadata" in done.stdout
    assert "ImageNet-1k" not in done.stdout and "--labels" not in done.stdout  # the model's names: no guess


# ------------------------------------------------------------------------------------------------ serve


def _serve_modules():
    for module in ("starlette", "uvicorn", "python_multipart"):
        pytest.importorskip(module, reason="the serve extra is not installed (pip install '.[serve]')")
    return pytest.importorskip("httpx2", reason="httpx2 (dev extra) is needed by Starlette's TestClient")


def test_serve_shows_the_guessed_names_on_the_page(tmp_path):
    """The issue's case through the serve API's JSON: espresso on top, and the page says the names are a guess."""
    _serve_modules()
    from starlette.testclient import TestClient

    from onnxvis.serve.app import create_app
    from onnxvis.serve.explorer import Explorer

    explorer = Explorer(Inspector(asset(SQUEEZENET)), cam=None)
    with explorer, TestClient(create_app(explorer), base_url="http://127.0.0.1:8000") as c:
        summary = c.get("/api/summary").json()
        assert summary["labels"] == 1000 and summary["labels_guessed"] is True
        assert summary["labels_origin"] == "ImageNet-1k (guessed from 1000 outputs)"
        assert summary["labels_note"] == (
            "class names: ImageNet-1k (guessed from 1000 outputs); "
            "start onnxvis serve with --labels FILE if these are not ImageNet's classes"
        )
        assert ["classes", "1000, named: ImageNet-1k (guessed from 1000 outputs)"] in summary["rows"]
        ident = c.post("/api/photos", files={"image": ("coffee.png", asset(COFFEE).read_bytes(), "image/png")}).json()["id"]
        top = c.get(f"/api/predictions/{ident}").json()["top"]
        assert (top[0]["index"], top[0]["label"]) == (967, "espresso")
    page = (ROOT / "onnxvis" / "serve" / "static")
    assert 'id="labels-note"' in (page / "index.html").read_text() and "labels_note" in (page / "app.js").read_text()


def test_serve_with_a_labels_file(tmp_path):
    """The command itself, as a user starts it: the page's summary and top-5 use the file's names."""
    httpx = _serve_modules()
    from test_serve import ServerProcess

    model = scores_model(tmp_path / "five.onnx", 5, 3)
    server = ServerProcess(model, tmp_path, "--labels", str(names_file(tmp_path / "five.txt", FIVE)), *SMALL)
    try:
        with httpx.Client(base_url=server.url, timeout=600) as c:
            summary = c.get("/api/summary").json()
            assert summary["labels"] == 5 and summary["labels_guessed"] is False and summary["labels_note"] is None
            assert summary["labels_origin"] == "file five.txt"
            assert ["classes", "5, named; labels from file five.txt"] in summary["rows"]
            photo = tmp_path / "p.png"
            Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(photo)
            ident = c.post("/api/photos", files={"image": ("p.png", photo.read_bytes(), "image/png")}).json()["id"]
            top = c.get(f"/api/predictions/{ident}").json()["top"]
            assert [(t["index"], t["label"]) for t in top[:2]] == [(3, "espresso"), (4, "kite")]
    finally:
        code = server.stop()
    assert code == 130, server.stderr()  # Ctrl-C, as a user stops it


def test_features_class_objective_takes_a_name_from_the_labels_file(cli, tmp_path):
    model = scores_model(tmp_path / "five.onnx", 5, 3)
    labels = names_file(tmp_path / "five.txt", FIVE)

    def optimised(name: str, *args: str) -> list[np.ndarray]:
        done = cli("features", model, "--objective", "class", "--steps", "2", "--size", "16", "--format", "npy",
                   *SMALL, "-o", tmp_path / name, *args)
        assert done.returncode == 0, done.stderr
        return [np.load(p) for p in sorted(done.stdout.split())]

    by_name = optimised("name", "--labels", labels, "--target", "Bird of Prey")
    assert by_name and all(np.array_equal(a, b) for a, b in zip(by_name, optimised("index", "--target", "2"), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(by_name, optimised("other", "--target", "3"), strict=True))
    unknown = cli("features", model, "--objective", "class", "--labels", labels, "--target", "espresso machine", "--steps", "2",
                  *SMALL, "-o", tmp_path / "x")
    assert unknown.returncode == 2 and "no class is labelled 'espresso machine'" in unknown.stderr
