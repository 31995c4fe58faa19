"""`onnxvis compare`: two versions of a model, layer by layer.

- The metrics are onnxruntime's ``qdq_loss_debug`` (its functions are the oracle, on random arrays and,
  in the torch environment, on a ResNet-18 quantized in the test with ``quantize_static``).
- Where that tool cannot go: the shared QOperator (QLinearConv) MNIST against its float model, over
  the 1,797 UCI digits; the shared float16 SqueezeNet against its float32 conversion made here.
- A fine-tuned ResNet-18 (layer4 perturbed, another head) against its base.
- The mistakes: unrelated models, no conv layer, an image neither model takes, models fed differently.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import asset
from onnxvis.analysis.compare.matching import find_compare_layers, match_layers, strip_quantizer_suffixes
from onnxvis.analysis.compare.metrics import ActivationSums, kl_divergence, sqnr_db, weight_errors
from onnxvis.draw.compare import fmap_comparison, kernel_comparison
from onnxvis.model.file import Model
from onnxvis.model.nodeids import explorer_ids

MNIST = "models/mnist_cntk.onnx"
MNIST_QLINEAR = "models/mnist_cntk_int8_qlinearconv.onnx"
MNIST_QDQ = "models/mnist_cntk_int8_qdq.onnx"
SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"


def _ort_sqnr():
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

    return compute_signal_to_quantization_noice_ratio


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------ metrics


def test_weight_sqnr_is_onnxruntimes_per_tensor_and_per_channel():
    ort = _ort_sqnr()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 8, 3, 3)).astype(np.float32)
    b = (a + rng.normal(scale=0.01, size=a.shape) * rng.uniform(0.1, 3, size=(16, 1, 1, 1))).astype(np.float32)
    errors = weight_errors(a, b)
    assert abs(errors.sqnr_db - ort(a, b)) < 1e-4
    for o in range(16):
        assert abs(errors.channel_sqnr_db[o] - ort(a[o], b[o])) < 1e-4
        assert errors.channel_max_abs_error[o] == pytest.approx(np.abs(a[o] - b[o]).max())
        na, nb = np.linalg.norm(a[o].astype(np.float64)), np.linalg.norm(b[o].astype(np.float64))
        assert errors.channel_norm_change[o] == pytest.approx((nb - na) / na, rel=1e-9)
    order = errors.worst_channels()
    assert errors.channel_sqnr_db[order[0]] == errors.channel_sqnr_db.min()
    assert list(errors.channel_sqnr_db[order]) == sorted(errors.channel_sqnr_db)


def test_equal_weights_have_an_infinite_sqnr_where_onnxruntime_gives_a_large_number():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    errors = weight_errors(a, a.copy())
    assert errors.sqnr_db == math.inf and errors.equal
    assert np.all(np.isinf(errors.channel_sqnr_db)) and errors.max_abs_error == 0
    assert _ort_sqnr()(a, a) > 300  # eps in place of the zero noise
    b = a.copy()
    b[1, 0, 0, 0] += 1
    errors = weight_errors(a, b)
    assert errors.channel_sqnr_db[0] == math.inf and math.isfinite(errors.channel_sqnr_db[1])
    assert sqnr_db(4.0, 1.0) == pytest.approx(20 * math.log10(2))


def test_activation_sqnr_pools_images_as_compute_activation_error():
    """Running sums over images give the SQNR of the concatenated values, as onnxruntime's xmodel_err."""
    from onnxruntime.quantization.qdq_loss_debug import compute_activation_error

    rng = np.random.default_rng(1)
    floats = [rng.normal(size=(4, 5, 5)).astype(np.float32) * s for s in (1, 10, 0.1)]
    quant = [(f + rng.normal(scale=0.05, size=f.shape)).astype(np.float32) for f in floats]
    sums = ActivationSums()
    for f, q in zip(floats, quant, strict=True):
        sums.add(f, q)
    oracle = compute_activation_error({"t": {"pre_qdq": quant, "post_qdq": quant, "float": floats}})["t"]["xmodel_err"]
    assert abs(sums.sqnr_db - oracle) < 1e-4
    a, b = np.concatenate([f.ravel() for f in floats]), np.concatenate([q.ravel() for q in quant])
    assert sums.cosine == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-6)
    assert sums.max_abs_error == pytest.approx(np.abs(a - b).max())
    assert sums.images == 3 and sums.channel_sqnr_db().shape == (4,)
    assert kl_divergence(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == pytest.approx(0)
    assert kl_divergence(np.array([0.9, 0.1]), np.array([0.5, 0.5])) == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2))


# ------------------------------------------------------------------------------------ matching


def test_quantizer_suffixes_are_removed():
    assert strip_quantizer_suffixes("Convolution28_quant") == "Convolution28"
    assert strip_quantizer_suffixes("Parameter5_quantized") == "Parameter5"
    assert strip_quantizer_suffixes("W_DequantizeLinear_Output") == "W"
    assert strip_quantizer_suffixes("conv1.weight") == "conv1.weight"
    assert strip_quantizer_suffixes("_quant") == "_quant"


def test_qlinearconv_pairs_with_the_conv_it_replaced():
    a, b = Model.open(asset(MNIST)), Model.open(asset(MNIST_QLINEAR))
    matching = match_layers(find_compare_layers(a), find_compare_layers(b))
    got = [(p.a.label, p.b.label, p.b.op_type, p.how) for p in matching.pairs]
    assert got == [
        ("Convolution28", "Convolution28_quant", "QLinearConv", "node and weight names without quantizer suffixes"),
        ("Convolution110", "Convolution110_quant", "QLinearConv", "node and weight names without quantizer suffixes"),
        ("Times212", "Times212_quant", "QLinearMatMul", "node and weight names without quantizer suffixes"),
    ]
    assert not matching.unmatched_a and not matching.unmatched_b
    qdq = match_layers(find_compare_layers(a), find_compare_layers(Model.open(asset(MNIST_QDQ))))
    assert [p.how for p in qdq.pairs] == ["node name"] * 3


def _chain(path: Path, widths: list[int], names: list[str], classes: int | None = None, size: int = 16) -> Path:
    """Convs of 3x3 with ``widths`` output channels (seeded weights), optionally a Gemm head of ``classes``."""
    rng = np.random.default_rng(7)
    nodes, inits, prev, channels = [], [], "x", 3
    for i, (width, name) in enumerate(zip(widths, names, strict=True)):
        w = rng.normal(size=(width, channels, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=name, pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev, channels = f"r{i}", width
    outputs = [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)]
    if classes:
        nodes.append(helper.make_node("GlobalAveragePool", [prev], ["pool"]))
        nodes.append(helper.make_node("Flatten", ["pool"], ["flat"]))
        inits.append(numpy_helper.from_array(rng.normal(size=(classes, channels)).astype(np.float32), "fc"))
        nodes.append(helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="head", transB=1))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_unnamed_layers_pair_by_order_and_shape_and_a_new_head_stays_unmatched(tmp_path):
    a = Model.open(_chain(tmp_path / "a.onnx", [4, 8, 8], ["", "", ""], classes=10))
    b = Model.open(_chain(tmp_path / "b.onnx", [4, 8, 8], ["", "", ""], classes=5))
    matching = match_layers(find_compare_layers(a), find_compare_layers(b))
    assert [(p.a.index, p.b.index) for p in matching.pairs] == [(0, 0), (1, 1), (2, 2)]
    assert {p.how for p in matching.pairs} == {"weight name"}  # the initializers are named alike
    assert [layer.label for layer, _ in matching.unmatched_a] == ["head"]
    assert "10x8" in matching.unmatched_a[0][1] and "5x8" in matching.unmatched_a[0][1]
    assert [layer.label for layer, _ in matching.unmatched_b] == ["head"]


# ------------------------------------------------------------------------------------ pictures


def test_kernel_picture_puts_the_worst_channel_first_and_shows_equal_kernels_white():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    b = a.copy()
    b[2] += 0.5  # channel 2 is damaged, the others are equal
    errors = weight_errors(a, b)
    picture = kernel_comparison(a, b, errors.worst_channels(), max_rows=4)
    assert picture.rows[0] == 2 and picture.peak == pytest.approx(0.5)
    assert picture.pixels.dtype == np.uint8 and picture.pixels.ndim == 3
    width = picture.pixels.shape[1]
    diff_panel = picture.pixels[:, width - (width - 12) // 3:]
    row_height = 3 + 1  # 3x3 tiles, padding 1
    first, last = diff_panel[1:1 + 3], diff_panel[1 + 3 * row_height:1 + 3 * row_height + 3]
    assert (first != 247).any()  # the damaged channel's difference is coloured
    assert set(np.unique(last)) == {247, 255}  # an equal channel's difference is white (247), in white padding


def test_fmap_picture_error_panel_is_white_for_equal_maps():
    maps = np.random.default_rng(4).normal(size=(6, 8, 8)).astype(np.float32)
    picture = fmap_comparison(maps, maps.copy(), list(range(6)), max_rows=6, nrow=3)
    third = picture.pixels[:, -(picture.pixels.shape[1] - 12) // 3:]
    assert picture.peak == 0 and set(np.unique(third)) <= {247, 255}


# ------------------------------------------------------------------------------------ the command


def test_every_format_and_the_lines_per_layer(cli, tmp_path):
    a, b = asset(MNIST), asset(MNIST_QLINEAR)
    out = tmp_path / "out"
    done = cli("compare", a, b, asset("images/skimage_camera.png"), "--format", "html,jsonl,csv,png,tensorboard", "-o", out)
    assert done.returncode == 0, done.stderr
    written = [Path(p) for p in done.stdout.split()]
    names = {p.name for p in written}
    assert {"compare.html", "compare.jsonl", "compare.csv", "compare_images.jsonl", "compare_summary.json"} <= names
    assert any(n.startswith("kernels_00_Convolution28") for n in names) and any(n.startswith("fmaps_") for n in names)
    assert any("tfevents" in n for n in names)
    lines = _lines(out / "compare.jsonl")
    assert [line["layer"] for line in lines] == ["Convolution28", "Convolution110", "Times212"]
    for line in lines:
        for key in ("weight", "output", "weight_sqnr_db", "activation_sqnr_db"):
            assert key in line
        assert math.isfinite(line["weight_sqnr_db"]) and math.isfinite(line["activation_sqnr_db"])
        assert 25 < line["weight_sqnr_db"] < 60 and line["activation_sqnr_db"] > 15
    assert lines[0]["weight"] == "Parameter5" and lines[0]["weight_b"] == "Parameter5_quantized"
    assert lines[0]["output"] == "Convolution28_Output_0" and lines[0]["output_b"] == "Convolution28_Output_0_quantized"
    assert len(lines[1]["channel_weight_sqnr_db"]) == 16
    rows = list(csv.DictReader(io.StringIO((out / "compare.csv").read_text())))
    assert [r["layer"] for r in rows] == ["Convolution28", "Convolution110", "Times212"]
    assert float(rows[0]["weight_sqnr_db"]) == pytest.approx(lines[0]["weight_sqnr_db"])
    page = (out / "compare.html").read_text()
    for part in ("Where it goes wrong", "Convolution110", "top-1 agreement", "<svg", "data:image/png;base64"):
        assert part in page
    # one line per layer in graph order on stderr, then the class scores
    table = [line for line in done.stderr.splitlines() if line[:3].strip().isdigit()]
    assert [line.split()[1] for line in table] == ["Convolution28", "Convolution110", "Times212"]
    assert "top-1 agreement 100.00% over 1 images" in done.stderr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out), size_guidance={"scalars": 0, "images": 0}).Reload()
    assert [e.step for e in events.Scalars("compare/weight_sqnr_db")] == [0, 1, 2]
    assert any(tag.startswith("compare_kernels/") for tag in events.Tags()["images"])


def test_unrelated_models_are_refused_in_one_line_and_nothing_is_written(cli, tmp_path):
    out = tmp_path / "out"
    done = cli("compare", asset(MNIST), asset(SQUEEZENET), "-o", out)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("onnxvis: error: no layer of mnist_cntk.onnx matches")
    assert not out.exists()


def test_a_model_without_conv_layers_is_refused(cli, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.ones((2, 4), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "dense.onnx"))
    done = cli("compare", asset(MNIST), tmp_path / "dense.onnx", "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "model B (dense.onnx) has no convolution layer" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_image_neither_model_can_take_writes_nothing(cli, tmp_path):
    bad = tmp_path / "digit.png"
    bad.write_text("not a picture")
    out = tmp_path / "out"
    done = cli("compare", asset(MNIST), asset(MNIST_QDQ), asset("images/skimage_camera.png"), bad, "--format", "html,jsonl,png", "-o", out)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "digit.png" in done.stderr
    assert not out.exists()


def test_models_fed_differently_are_refused_unless_preset_b(cli, tmp_path):
    a = _chain(tmp_path / "a.onnx", [4, 4], ["c1", "c2"], size=16)
    b = _chain(tmp_path / "b.onnx", [4, 4], ["c1", "c2"], size=24)
    photo = asset("images/skimage_chelsea.png")
    done = cli("compare", a, b, photo, "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "A takes 16x16 pixels, B 24x24" in done.stderr and "--preset-b NAME" in done.stderr
    assert not (tmp_path / "out").exists()
    done = cli("compare", a, b, photo, "--preset-b", "imagenet", "--format", "jsonl", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = _lines(tmp_path / "out" / "compare.jsonl")
    assert [line["weight_sqnr_db"] for line in lines] == [math.inf, math.inf]  # same weights
    assert all(line["activation_sqnr_db"] is None and "different shapes" in line["activation_problem"] for line in lines)
    summary = json.loads((tmp_path / "out" / "compare_summary.json").read_text())
    assert summary["preprocess_b"]["origin"] == "preset imagenet"


# ------------------------------------------------------------------------------------ real models


def _digit_pngs(folder: Path) -> dict[str, int]:
    """The 1,797 UCI digits as 28x28 PNGs as MANIFEST.md says: 8x8 (0..16) -> 20x20 bilinear, centred, 0..255."""
    from PIL import Image

    with gzip.open(asset("data/sklearn_digits.csv.gz"), "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
    folder.mkdir()
    labels = {}
    for i, row in enumerate(rows):
        small = Image.fromarray((row[:64].reshape(8, 8) * (255 / 16)).astype(np.float32), "F")
        canvas = np.zeros((28, 28), np.float32)
        canvas[4:24, 4:24] = np.asarray(small.resize((20, 20), Image.Resampling.BILINEAR))
        name = f"d{i:04d}.png"
        Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "L").save(folder / name)
        labels[name] = int(row[64])
    return labels


@pytest.mark.slow
def test_qlinearconv_mnist_against_float_over_the_uci_digits(cli, tmp_path):
    """Where qdq_loss_debug cannot go (QOperator format): both convs match, finite SQNRs, the accuracies."""
    labels = _digit_pngs(tmp_path / "digits")
    assert len(labels) == 1797
    out = tmp_path / "out"
    done = cli("compare", asset(MNIST), asset(MNIST_QLINEAR), tmp_path / "digits", "--format", "jsonl", "-o", out)
    assert done.returncode == 0, done.stderr
    lines = _lines(out / "compare.jsonl")
    convs = [line for line in lines if line["op_b"] == "QLinearConv"]
    assert [line["layer"] for line in convs] == ["Convolution28", "Convolution110"]
    for line in lines:
        assert math.isfinite(line["weight_sqnr_db"]) and math.isfinite(line["activation_sqnr_db"]), line
        assert line["images"] == 1797
    images = _lines(out / "compare_images.jsonl")
    assert len(images) == 1797
    acc_a = np.mean([d["top_a"]["class"] == labels[d["image"]] for d in images])
    acc_b = np.mean([d["top_b"]["class"] == labels[d["image"]] for d in images])
    summary = json.loads((out / "compare_summary.json").read_text())
    agreement = summary["top1_agreement"]
    print(f"mnist float {acc_a:.4f}, int8 QLinearConv {acc_b:.4f}, top-1 agreement {agreement:.4f}, "
          f"mean KL {summary['mean_kl']:.3g}, flips {len(summary['flips'])}; "
          + ", ".join(f"{line['layer']} weight {line['weight_sqnr_db']:.2f} dB output {line['activation_sqnr_db']:.2f} dB"
                      for line in lines))
    assert acc_a > 0.85 and abs(acc_a - acc_b) <= 0.02  # 88.9% over all 1,797 (94% over the first 300)
    assert agreement == pytest.approx(np.mean([d["top_a"]["class"] == d["top_b"]["class"] for d in images]))
    assert f"top-1 agreement {agreement:.2%} over 1797 images" in done.stderr


def _float32_squeezenet(path: Path) -> Path:
    """The shared float16 SqueezeNet with its initializers and its input (and every declared type) cast to float32."""
    model = onnx.load(str(asset(SQUEEZENET)))
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type == TensorProto.FLOAT16:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_float16_squeezenet_against_its_float32_conversion(cli, tmp_path):
    b = _float32_squeezenet(tmp_path / "squeezenet32.onnx")
    out = tmp_path / "out"
    done = cli("compare", asset(SQUEEZENET), b, asset("images/imagenet-sample"), "--format", "html,jsonl", "-o", out)
    assert done.returncode == 0, done.stderr
    lines = _lines(out / "compare.jsonl")
    summary = json.loads((out / "compare_summary.json").read_text())
    assert len(lines) == 26 and not summary["unmatched_a"] and not summary["unmatched_b"]
    assert all(line["weight_sqnr_db"] == math.inf for line in lines)  # the cast is exact
    assert all(line["channel_weight_sqnr_db"] == [math.inf] * len(line["channel_weight_sqnr_db"]) for line in lines)
    worst = min(line["activation_sqnr_db"] for line in lines)
    print(f"fp16 vs fp32 SqueezeNet: output SQNR {worst:.2f} dB at worst, top-1 agreement {summary['top1_agreement']:.2f}, "
          f"mean KL {summary['mean_kl']:.3g}")
    assert worst > 40
    assert summary["images"] == 100 and summary["top1_agreement"] >= 0.99
    page = (out / "compare.html").read_text()
    assert "<td>inf</td>" in page


# ------------------------------------------------------------------------------------ torch environment


@pytest.fixture(scope="module")
def resnets(tmp_path_factory, seeded_resnet18):
    """A seeded ResNet-18 (base: the one exported once per run, tests/conftest.py), the same fine-tuned
    (layer4 perturbed, a 10-class head), both exported."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from exporters.torchvision_export import export_model

    work = tmp_path_factory.mktemp("resnets")
    model, base_onnx = seeded_resnet18
    base = model.state_dict()
    tuned = {k: v.clone() for k, v in base.items()}
    generator = torch.Generator().manual_seed(1)
    for key, value in tuned.items():
        if key.startswith("layer4.") and key.endswith(("conv1.weight", "conv2.weight", "downsample.0.weight")):
            tuned[key] = value + 0.05 * value.std() * torch.randn(value.shape, generator=generator)
    tuned["fc.weight"] = torch.randn((10, 512), generator=generator) * 0.01
    tuned["fc.bias"] = torch.zeros(10)
    torch.save(tuned, work / "tuned.pth")
    tuned_onnx = export_model("resnet18", str(work / "tuned.pth"), work / "tuned.onnx", log=lambda message: None).path
    return work, Path(base_onnx), Path(tuned_onnx)


@pytest.mark.slow
@pytest.mark.full
def test_finetuned_resnet_head_unmatched_and_layer4_ranks_first(resnets, cli):
    work, base, tuned = resnets
    photos = sorted(asset("images/imagenet-sample").glob("*.JPEG"))[:4]
    out = work / "tuned_out"
    done = cli("compare", base, tuned, *photos, "--format", "html,jsonl", "-o", out)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "compare_summary.json").read_text())
    assert [u["weight_shape"] for u in summary["unmatched_a"]] == [[1000, 512]]
    assert [u["weight_shape"] for u in summary["unmatched_b"]] == [[10, 512]]
    ranked = summary["ranked"]
    assert len(ranked) == 20
    assert all(name.startswith("layer4.") for name in ranked[:5]), ranked[:6]
    lines = {line["layer"]: line for line in _lines(out / "compare.jsonl")}
    assert all(math.isfinite(lines[name]["weight_sqnr_db"]) for name in ranked[:5])
    assert all(lines[name]["weight_sqnr_db"] == math.inf for name in ranked[5:])
    assert "classes are not the same" in (summary["classes_problem"] or "")
    print("fine-tuned: ranked first " + ", ".join(f"{n} ({lines[n]['activation_sqnr_db']:.1f} dB)" for n in ranked[:5]))


def _quantized(base: Path, work: Path, photos: list[Path], per_channel: bool) -> tuple[Path, Path]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from onnxvis.engine.inspector import Inspector

    float_path = work / "resnet18_pre.onnx"
    if not float_path.exists():
        quant_pre_process(str(base), str(float_path))  # BN folded into the convs: onnxruntime's own recipe
    with Inspector(float_path) as insp:
        arrays = [insp.prepare(p).array for p in photos]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(arrays)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"input": item}

    qdq = work / f"resnet18_qdq_{'channel' if per_channel else 'tensor'}.onnx"
    quantize_static(str(float_path), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return float_path, qdq


@pytest.mark.slow
@pytest.mark.full
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_qdq_resnet_sqnrs_equal_onnxruntimes_qdq_loss_debug(resnets, tmp_path, per_channel):
    pytest.importorskip("torch")
    from onnxruntime.quantization import CalibrationDataReader, qdq_loss_debug

    from onnxvis.analysis.compare.run import compare, open_pair

    work, base, _ = resnets
    photos = sorted(asset("images/imagenet-sample").glob("*.JPEG"))
    float_path, qdq = _quantized(base, work, photos[:8], per_channel)
    chosen = photos[10:16]
    insp_a, insp_b, matching = open_pair(float_path, qdq)
    result = compare(insp_a, insp_b, matching, chosen)
    assert len(result.layers) == 21 and not matching.unmatched_a

    weights = qdq_loss_debug.compute_weight_error(qdq_loss_debug.create_weight_matching(str(float_path), str(qdq)))
    arrays = [insp_a.prepare(p).array for p in chosen]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(arrays)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"input": item}

    saved = {}
    for name, path in (("float", float_path), ("qdq", qdq)):
        augmented = tmp_path / f"{name}_augmented.onnx"
        qdq_loss_debug.modify_model_output_intermediate_tensors(str(path), str(augmented))
        saved[name] = qdq_loss_debug.collect_activations(str(augmented), Reader())
    activations = qdq_loss_debug.compute_activation_error(qdq_loss_debug.create_activation_matching(saved["qdq"], saved["float"]))

    weight_diffs, activation_diffs = [], []
    for layer in result.layers:
        ours_w, theirs_w = layer.weight_sqnr_db, weights[layer.pair.a.stored_name]
        key = strip_quantizer_suffixes(layer.pair.b.output_name)  # the tensor's name before its QDQ pair
        ours_a, theirs_a = layer.activation_sqnr_db, activations[key]["xmodel_err"]
        weight_diffs.append(abs(ours_w - theirs_w))
        activation_diffs.append(abs(ours_a - theirs_a))
        assert abs(ours_w - theirs_w) < 0.01, (layer.pair.a.label, ours_w, theirs_w)
        assert abs(ours_a - theirs_a) < 0.1, (layer.pair.a.label, ours_a, theirs_a)
    w_range = [layer.weight_sqnr_db for layer in result.layers]
    a_range = [layer.activation_sqnr_db for layer in result.layers]
    print(f"{'per-channel' if per_channel else 'per-tensor'} QDQ ResNet-18, {len(result.layers)} layers: weight SQNR "
          f"max |diff| {max(weight_diffs):.2e} dB, output SQNR max |diff| {max(activation_diffs):.2e} dB "
          f"(weights {min(w_range):.2f}..{max(w_range):.2f} dB, outputs {min(a_range):.2f}..{max(a_range):.2f} dB)")


# ------------------------------------------------------------------------------------ Model Explorer node data


@pytest.mark.parametrize("quantized", [MNIST_QLINEAR, MNIST_QDQ])
def test_node_data_sits_on_each_models_graph_as_model_explorer_names_it(cli, tmp_path, quantized):
    """Every key is a node id of model-explorer-onnx's graph of its own model; every matched layer has
    its SQNRs there, equal to compare.jsonl's; Model Explorer's classes read each file."""
    from explorer import adapter_graphs, load_node_data

    a, b = asset(MNIST), asset(quantized)
    out = tmp_path / "out"
    done = cli("compare", a, b, asset("images/skimage_camera.png"), "--format", "jsonl,model-explorer", "-o", out)
    assert done.returncode == 0, done.stderr
    files = {p.name: p for p in map(Path, done.stdout.split()) if p.name.startswith("nodedata_")}
    assert set(files) == {f"nodedata_{k}_sqnr_db_{s}.json" for k in ("weight", "output") for s in "ab"}
    graphs = adapter_graphs(a, b)
    lines = _lines(out / "compare.jsonl")
    for side, model in (("a", a), ("b", b)):
        ids = explorer_ids(onnx.load(str(model), load_external_data=False))
        adapter = {g: set(nodes) for g, nodes in graphs[str(model)].items()}
        for key, column in (("weight", "weight_sqnr_db"), ("output", "activation_sqnr_db")):
            data = json.loads(files[f"nodedata_{key}_sqnr_db_{side}.json"].read_text())
            [(graph_id, graph)] = data.items()
            assert graph_id in adapter and set(graph["results"]) <= adapter[graph_id]
            assert graph["name"].startswith("onnxvis: ") and graph["thresholds"][-1] == {"value": 1e308, "bgColor": "#053061"}
            for line in lines:  # each matched layer's node carries its number
                name = line["layer"] if side == "a" else line["layer_b"]
                node = next(n for n in (ids.producer(o) for o in _outputs_of(model, name)) if n is not None)
                assert graph["results"][node.node]["value"] == pytest.approx(line[column], rel=1e-5), (side, key, name)
            assert len(graph["results"]) == len(lines)
    loaded = load_node_data(*files.values())
    for path in files.values():
        ours = json.loads(path.read_text())
        assert {g: {k: loaded[str(path)][g][k] for k in d} for g, d in ours.items()} == ours


def _outputs_of(model: Path, node_name: str) -> list[str]:
    return next(list(n.output) for n in onnx.load(str(model), load_external_data=False).graph.node if n.name == node_name)


def test_an_exact_layer_is_written_as_the_largest_number_not_left_out(tmp_path):
    """Equal weights (infinite SQNR) take the scale's faithful end; JSON has no infinity."""
    from onnxvis.write.compare import _sqnr_value

    assert _sqnr_value(math.inf) == 1e308 and _sqnr_value(12.5) == 12.5 and _sqnr_value(None) is None
