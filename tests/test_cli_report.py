"""`onnxvis report`: one self-contained HTML file with the summary, statistics, kernels, maps and top-5."""

from __future__ import annotations

import base64
import html
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import LABELS, asset, classifier, photo
from onnxvis.draw import grids


class _Page(HTMLParser):
    """Every <img>, external reference and <table> body row (cells as text) of a page."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.references: list[str] = []
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        for key in ("src", "href", "action", "data", "poster"):
            if key in attrs:
                self.references.append(attrs[key])
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.references.append(f"<{tag}>")
        if tag == "tr":
            self._row = []
        if tag == "th":
            self._row = None  # a header row
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def _decode(src: str) -> np.ndarray:
    kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,(.+)", src).groups()
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def _written(done) -> list[Path]:
    return [Path(line) for line in done.stdout.splitlines() if line.strip()]


def _num(x: float) -> str:
    return "0" if x == 0 else f"{x:.4g}"


def test_report_holds_summary_statistics_kernels_maps_and_top5(cli, tmp_path):
    model = classifier(tmp_path / "tiny.onnx")
    images = [photo(tmp_path / "a.png", 1), photo(tmp_path / "b.png", 2)]
    done = cli("report", model, *images, "--layers", "all", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    (report,) = _written(done)
    assert report == tmp_path / "out" / "report.html"
    text, page = parse(report)

    # self-contained: every reference is a data URL or an anchor in the page; nothing fetched
    assert page.references and all(r.startswith(("data:", "#")) for r in page.references), page.references
    assert "http://" not in text and "https://" not in text
    assert "default-src 'none'" in text  # the page's CSP forbids any fetch

    # summary: producer, opset, inputs, preprocessing
    assert "tiny-maker 3.1" in text
    assert "ai.onnx 17" in text
    assert "&#x27;image&#x27; [1x3x24x24] float32" in text
    assert "metadata: resize 24x24, RGB, 0..1, mean [0.5, 0.5, 0.5], std [0.25, 0.25, 0.25]" in text

    # the conv layer table: weight statistics of each layer, norms, near-dead count
    import onnx
    from onnx import numpy_helper

    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer}
    rows = {r[1]: r for r in page.rows if len(r) == 14}
    assert set(rows) == {"stem/conv", "block/conv"}
    for name, key in (("stem/conv", "w0"), ("block/conv", "w1")):
        w = weights[key].astype(np.float64)
        row = rows[name]
        assert row[7:11] == [_num(w.min()), _num(w.max()), _num(w.mean()), _num(w.std())]
        norms = np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1))
        assert row[12] == f"{_num(norms.min())} / {_num(float(np.median(norms)))} / {_num(norms.max())}"
    assert rows["stem/conv"][13] == "1" and rows["block/conv"][13] == "0"  # filter 2 of stem/conv is all zero
    w0_norms = ", ".join(_num(float(v)) for v in np.sqrt((weights["w0"].astype(np.float64).reshape(4, -1) ** 2).sum(axis=1)))
    assert w0_norms in text  # the norm of each filter

    # kernel grids: exactly what `onnxvis kernels` draws
    kernels = cli("kernels", model, "--nrow", "auto", "-o", tmp_path / "k")  # the report draws its grids near-square
    pngs = _written(kernels)
    kernel_images = [i for i in page.images if "kernels" in i["alt"]]
    assert len(kernel_images) == len(pngs) == 2
    for image, png in zip(kernel_images, pngs, strict=True):
        assert np.array_equal(_decode(image["src"]), np.asarray(Image.open(png)))

    # each image: the photo, the maps of both layers with per-channel statistics, the top-5
    photos = [i for i in page.images if i["src"].startswith("data:image/jpeg")]
    assert len(photos) == 2
    fmap_images = [i for i in page.images if "feature maps" in i["alt"]]
    assert len(fmap_images) == 4
    from onnxvis.engine.shortcuts import feature_maps
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    opened = Model.open(model)
    layers = find_conv_layers(opened)
    result = feature_maps(opened, images[0], layers)
    for image, layer in zip(fmap_images[:2], layers, strict=True):
        assert np.array_equal(_decode(image["src"]), grids.to_uint8(grids.fmap_grid(result.maps[layer], nrow="auto")))  # near-square
    channel_rows = [r for r in page.rows if len(r) == 6 and r[0].isdigit()]
    assert len(channel_rows) == 2 * (4 + 6)  # one row per channel, per layer, per image
    maps0 = result.maps[layers[0]]
    first = channel_rows[0]
    assert first[:5] == ["0", _num(float(maps0[0].min())), _num(float(maps0[0].max())),
                         _num(float(maps0[0].mean(dtype=np.float64))), _num(float(maps0[0].std(dtype=np.float64)))]

    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for number, image in enumerate(images):
        x = feature_maps(opened, image, layers[:1]).input
        scores = session.run(["scores"], {"image": x})[0][0].astype(np.float64)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[:5]
        top = [r for r in page.rows if len(r) == 5 and r[0] in "12345" and r[0]][number * 5:(number + 1) * 5]
        assert [r[1] for r in top] == [LABELS[i] for i in order]  # names, unescaped by the parser
        assert [r[2] for r in top] == [str(i) for i in order]
        assert [r[3] for r in top] == [f"{probs[i] * 100:.2f}%" for i in order]
    assert "dog <&>" not in text  # names are escaped...
    shown = {r[1] for r in page.rows if len(r) == 5}
    assert LABELS[1] not in shown or html.escape(LABELS[1]) in text  # ...and read back as they were


def test_report_without_images_shows_the_weights(cli, tmp_path):
    model = classifier(tmp_path / "tiny.onnx")
    done = cli("report", model, "--colormap", "diverging", "-o", tmp_path / "w")
    assert done.returncode == 0, done.stderr
    text, page = parse(_written(done)[0])
    assert len(page.images) == 2 and all("kernels" in i["alt"] for i in page.images)
    assert _decode(page.images[0]["src"]).shape[-1] == 3  # diverging: colour
    assert "No image given" in text and "Top-5" not in text
    assert "metadata: resize 24x24" in text  # the preprocessing that would be used


def test_report_on_a_real_model_with_a_real_photo(cli, tmp_path):
    model = asset("models/squeezenet1.0_caffe2_fp16.onnx")
    image = asset("images/skimage_chelsea.png")
    done = cli("report", model, image, "--preset", "caffe", "--resize", "224,224", "-o", tmp_path / "s")
    assert done.returncode == 0, done.stderr
    report = _written(done)[0]
    text, page = parse(report)
    layer_rows = [r for r in page.rows if len(r) == 14 and r[0].isdigit()]
    assert len(layer_rows) == 26
    assert all(r[6].startswith("initializer") for r in layer_rows)
    assert len([i for i in page.images if "kernels" in i["alt"]]) == 26
    assert all(_decode(i["src"]).size > 0 for i in page.images)
    # no names in the file, 1000 scores: ImageNet-1k's names, said to be a guess, and a cat on top
    assert "Top-5 predictions (softmaxout_1; names: ImageNet-1k (guessed from 1000 outputs))" in text
    top1 = [r for r in page.rows if len(r) == 5 and r[0] == "1"]
    assert len(top1) == 1 and top1[0][1] in {"tabby", "tiger cat", "Egyptian cat"}, top1
    assert "labels: ImageNet-1k (guessed from 1000 outputs; give --labels FILE" in done.stderr
    assert "caffe" in text and "BGR" in text
    assert report.stat().st_size < 5_000_000


def test_report_draws_a_weight_computed_by_constant_of_shape(cli, tmp_path):
    """Every conv weight of this SqueezeNet is computed (ConstantOfShape and after): all 26 draw."""
    model = asset("models/light_squeezenet_constantofshape.onnx")
    done = cli("report", model, "-o", tmp_path / "c")
    assert done.returncode == 0, done.stderr
    text, page = parse(_written(done)[0])
    layer_rows = [r for r in page.rows if len(r) == 14 and r[0].isdigit()]
    assert len(layer_rows) == 26
    assert len([i for i in page.images if "kernels" in i["alt"]]) == 26
    assert not [r for r in layer_rows if r[7] == "-"]


def _model_with_weights_it_cannot_draw(path: Path) -> Path:
    """Three convs: a stored weight; one fed at run time (not in the file); one computed by a
    ConstantOfShape that claims 64x3x1500x1500 (1.7 GB, refused rather than made)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    stored = np.random.default_rng(3).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w_stored"], ["h"], name="stored", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "w_fed"], ["y"], name="fed"),
        helper.make_node("ConstantOfShape", ["huge_shape"], ["w_huge"], value=numpy_helper.from_array(np.array([0.02], np.float32))),
        helper.make_node("Conv", ["x", "w_huge"], ["z"], name="huge"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
         helper.make_tensor_value_info("w_fed", TensorProto.FLOAT, [2, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None), helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(stored, "w_stored"), numpy_helper.from_array(np.array([64, 3, 1500, 1500], np.int64), "huge_shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_report_of_a_model_with_weights_it_cannot_draw(cli, tmp_path):
    """Each layer is either drawn or says, in the page and on stderr, why not."""
    model = _model_with_weights_it_cannot_draw(tmp_path / "m.onnx")
    done = cli("report", model, "-o", tmp_path / "c")
    assert done.returncode == 0, done.stderr
    text, page = parse(_written(done)[0])
    layer_rows = [r for r in page.rows if len(r) == 14 and r[0].isdigit()]
    assert [r[1] for r in layer_rows] == ["stored", "fed", "huge"]
    drawn = [i["alt"] for i in page.images if "kernels" in i["alt"]]
    assert len(drawn) == 1 and "stored" in drawn[0]
    missing = [r[1] for r in layer_rows if r[7] == "-"]
    assert missing == ["fed", "huge"]
    assert re.search(r"1 fed: .*not in the file", text)
    assert re.search(r"2 huge: .*64x3x1500x1500", text)
    assert "layer 1 (fed): no kernels" in done.stderr and "layer 2 (huge): no kernels" in done.stderr


def test_report_errors_are_user_errors(cli, tmp_path):
    model = classifier(tmp_path / "tiny.onnx")
    done = cli("report", model, tmp_path / "missing.jpg", "-o", tmp_path / "e")
    assert done.returncode == 2 and "missing.jpg" in done.stderr
    done = cli("report", model, "--max-tiles", "-1", "-o", tmp_path / "e")
    assert done.returncode == 2 and "--max-tiles" in done.stderr
    done = cli("report", model, "--layers", "9", "-o", tmp_path / "e")
    assert done.returncode == 2 and "out of range" in done.stderr


def test_report_caps_kernel_tiles_and_says_so(cli, make_conv_model, tmp_path):
    weight = np.random.default_rng(7).standard_normal((64, 64, 3, 3)).astype(np.float32)
    done = cli("report", make_conv_model(weight), "--max-tiles", "1024", "-o", tmp_path / "cap")
    assert done.returncode == 0, done.stderr
    text, page = parse(_written(done)[0])
    assert "the first 16 of 64 filters" in text
    (image,) = page.images
    assert _decode(image["src"]).shape[0] == 2 + 16 * 5  # 16 rows of 3x3 tiles with padding 2


def test_labels_and_top_k_helpers():
    from onnxvis.engine.classes import top_k
    from onnxvis.model.metadata import labels_from_metadata

    assert labels_from_metadata({"onnxvis.labels": '["a", "b"]'}) == ["a", "b"]
    assert labels_from_metadata({"onnxvis.labels": "not json"}) is None
    assert labels_from_metadata({}) is None
    probs = np.array([0.1, 0.6, 0.3])
    assert top_k(probs, ["a", "b", "c"], k=2) == [(1, "b", 0.6), (2, "c", 0.3)]  # already probabilities: kept
    logits = np.array([0.0, 2.0, 1.0])
    (best, name, p), *_ = top_k(logits, ["a", "b", "c"])
    assert (best, name) == (1, "b") and p == pytest.approx(np.exp(2) / (1 + np.exp(1) + np.exp(2)))


@pytest.mark.full
def test_report_of_an_exported_torchvision_model_has_top5(cli, tmp_path, seeded_resnet18):
    pytest.importorskip("torch", reason="exporting needs torch (the full environment)")
    torchvision = pytest.importorskip("torchvision", reason="exporting needs torchvision")
    _, exported = seeded_resnet18  # `onnxvis export resnet18 --weights`, once per run (tests/conftest.py)
    done = cli("report", exported, asset("images/skimage_coffee.png"), "-o", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    text, page = parse(_written(done)[0])
    top = [r for r in page.rows if len(r) == 5 and r[0] in ("1", "2", "3", "4", "5")]
    assert len(top) == 5
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert all(r[1] == categories[int(r[2])] for r in top)
    assert "Top-5 predictions" in text


def test_the_report_shows_file_names_unless_full_paths_are_asked_for(cli, tmp_path):
    model = classifier(tmp_path / "tiny.onnx")
    image = photo(tmp_path / "a.png", 1)
    shared = cli("report", model, image, "-o", tmp_path / "shared")
    full = cli("report", model, image, "--full-paths", "-o", tmp_path / "full")
    assert shared.returncode == 0 and full.returncode == 0, shared.stderr + full.stderr
    shared_text = Path(_written(shared)[0]).read_text()
    full_text = Path(_written(full)[0]).read_text()
    assert str(tmp_path) not in shared_text  # nothing of this machine's folders
    assert "tiny.onnx" in shared_text and "a.png" in shared_text
    assert str(model) in full_text and str(image) in full_text


def test_the_librarys_report_draws_the_cam_the_command_draws():
    """build_report's default CAM is the command's (--cam), so a notebook's report is the CLI's."""
    import inspect

    from onnxvis.cli import build_parser
    from onnxvis.report import build_report

    args = build_parser().parse_args(["report", "model.onnx"])
    assert inspect.signature(build_report).parameters["cam_method"].default == args.cam == "grad"
