"""`onnxvis cam` on small built models (every method, the tail, the errors) and on the shared real
models: NHWC (MTCNN), float16 (SqueezeNet), quantized (MNIST QDQ and QLinearConv), and the deletion
check on the 100 ImageNet photos."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

from conftest import ASSETS, asset, call_onnxvis
from onnxvis.analysis.cam import runs as cammodel
from onnxvis.errors import OnnxvisError

METHODS = ("score", "ablation", "eigen", "fem")


def _small_classifier(path, residual: bool = False):
    """input (1,3,16,16) -> Conv 3x3 (6) -> Relu [-> + input-conv branch] -> GlobalAveragePool -> Flatten -> Gemm (5 classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(6, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(6, 3, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.normal(size=(5, 6)).astype(np.float32), "fc"),
        numpy_helper.from_array(rng.normal(size=(5,)).astype(np.float32), "fcb"),
    ]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"])]
    last = "r1"
    if residual:
        nodes += [helper.make_node("Conv", ["x", "w2"], ["c2"], name="skip"), helper.make_node("Add", ["r1", "c2"], ["sum"]),
                  helper.make_node("Relu", ["sum"], ["block"])]
        last = "block"
    nodes += [helper.make_node("GlobalAveragePool", [last], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("method", METHODS)
def test_every_method_writes_png_and_npy(tmp_path, photo, method):
    model = _small_classifier(tmp_path / "small.onnx", residual=True)
    done = call_onnxvis("cam", model, photo, "--method", method, "--tensor", "block", "--layers", "0", "--format", "png,npy",
                        "--preset", "unit", "--resize", "16,16", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split()
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        f"cam_{method}_photo_00_conv1.png", f"cam_{method}_photo_00_conv1.npy",
        f"cam_{method}_photo_block.png", f"cam_{method}_photo_block.npy",
    ]
    for npy in paths[1::2]:
        cam = np.load(npy)
        assert cam.dtype == np.float32 and cam.shape == (16, 16) and cam.min() == 0 and cam.max() == pytest.approx(1, abs=1e-6)
    assert np.asarray(Image.open(paths[0])).shape == (16, 16, 3)


def test_ablation_runs_only_the_tail_with_the_residual_fed(tmp_path):
    import onnx

    graph = onnx.load(str(_small_classifier(tmp_path / "res.onnx", residual=True))).graph
    # After conv1's Relu the tail is Add, Relu, pool, Gemm: it reads the skip branch from before.
    assert cammodel.tail_inputs(graph, "r1", ["logits"]) == ["c2"]
    assert cammodel.tail_inputs(graph, "block", ["logits"]) == []
    assert cammodel.tail_inputs(graph, "c1", ["logits"]) == ["c2"]


def test_ablation_tail_equals_whole_model_ablation(tmp_path, photo):
    """Feeding the ablated copies at the tensor (with the residual fed) scores exactly as grad-cam's
    way, ablating inside the whole model: checked by building the ablated model's scores by hand."""
    from onnxvis.analysis.cam import maths as cam
    from onnxvis.engine.inspector import Inspector

    model = _small_classifier(tmp_path / "res.onnx", residual=True)
    with Inspector(model, preset="unit", changes={"resize": (16, 16)}) as insp:
        (result,) = cammodel.Cam(insp, cammodel.places_for(insp, [], ["r1"]), method="ablation")([photo])
        x = insp.prepare(photo).array
        full = insp.run_arrays({"x": x}, ["r1", "c2", "logits"])
        fc = onnx_init(model, "fc"), onnx_init(model, "fcb")
        acts = full["r1"][0]

        def head(r1: np.ndarray) -> np.ndarray:
            pooled = np.maximum(r1 + full["c2"], 0).mean(axis=(2, 3))
            return (pooled @ fc[0].T + fc[1])[:, result.target]

        weights = cam.ablation_cam_weights(acts, float(full["logits"][0, result.target]), head)
        expected = cam.finish(cam.weighted_sum(weights, acts), (16, 16))
    np.testing.assert_allclose(result.cam, expected, atol=1e-5)


def test_each_method_says_what_the_pass_must_give(tmp_path):
    """AblationCAM needs the tail, so the image's one pass also gives what the tail reads from before
    the place (the skip branch c2); the other methods need the activations alone."""
    from onnxvis.engine.inspector import Inspector

    model = _small_classifier(tmp_path / "res.onnx", residual=True)
    with Inspector(model, preset="unit", changes={"resize": (16, 16)}) as insp:
        places = cammodel.places_for(insp, [], ["r1"])
        tensors = {m: cammodel.Cam(insp, places, method=m).tensors for m in cammodel.CAM_METHODS}
        with pytest.raises(OnnxvisError, match="unknown CAM method 'grad'; choose from score, ablation, eigen, fem, kpca"):
            cammodel.Cam(insp, places, method="grad")
        with pytest.raises(OnnxvisError, match="no place"):
            cammodel.Cam(insp, [], method="eigen")
    assert tensors == {"score": ["logits", "r1"], "ablation": ["logits", "r1", "c2"], "eigen": ["logits", "r1"],
                       "fem": ["logits", "r1"], "kpca": ["logits", "r1"]}
    assert cammodel.CAM_METHODS["ablation"].needs == {"activations", "tail"}
    assert cammodel.CAM_METHODS["score"].needs == {"activations", "model"}


class _MeanGradient(cammodel.CamMethod):
    """Grad-CAM's weights (the gradient's mean over the positions): the shape a gradient method takes."""

    name = "grad"
    needs = frozenset({"activations", "gradients"})

    def weights(self, at):
        return at.gradients.mean(axis=(1, 2))


def test_a_gradient_method_plugs_in_with_a_gradient_engine(tmp_path, photo):
    """The seam for gradient methods: the engine is asked for d score / d tensor at each place, and
    the method's weights make the map as any other method's do."""
    from onnxvis.analysis.cam import maths as cam
    from onnxvis.engine.inspector import Inspector

    model = _small_classifier(tmp_path / "res.onnx", residual=True)
    asked = []
    grads = np.linspace(-1, 2, 6 * 16 * 16, dtype=np.float32).reshape(1, 6, 16, 16)

    def engine(inputs, tensor, output, target):
        asked.append((inputs.shape, tensor, output, target))
        return grads

    with Inspector(model, preset="unit", changes={"resize": (16, 16)}) as insp:
        places = cammodel.places_for(insp, [], ["r1", "block"])
        with pytest.raises(OnnxvisError, match="the grad method needs the gradient of the class score, and no gradient engine"):
            cammodel.Cam(insp, places, 2, method=_MeanGradient())
        results = list(cammodel.Cam(insp, places, 2, method=_MeanGradient(), gradients=engine)([photo]))
        acts = insp.run_arrays({"x": insp.prepare(photo).array}, ["r1"])["r1"][0]
    assert asked == [((1, 3, 16, 16), "r1", "logits", 2), ((1, 3, 16, 16), "block", "logits", 2)]
    expected = cam.finish(cam.weighted_sum(grads[0].mean(axis=(1, 2)), acts), (16, 16))
    assert [r.method for r in results] == ["grad", "grad"] and results[0].target == 2
    np.testing.assert_array_equal(results[0].cam, expected)


def onnx_init(path, name):
    import onnx
    from onnx import numpy_helper

    return next(numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer if i.name == name)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--target", "7"), "target class 7 is out of range: the model scores 5 classes (0..4)"),
        (("--target", "cat"), "has no class labels"),
        (("--tensor", "flat"), "not (batch, channels, height, width)"),
        (("--tensor", "nope"), "no tensor named 'nope'"),
        (("--tensor", "logits"), "does not lead to the scores output"),
        (("--tensor", "logits", "--method", "fem"), "not (batch, channels, height, width)"),
        (("--format", "png,gif"), "unknown output format 'gif'"),
        (("--target-output", "nope"), "nope"),
        (("--batch-size", "0"), "the batch size must be 1 or more, got 0 (set with --batch-size N)"),
    ],
)
def test_mistakes_are_one_clear_line(tmp_path, photo, args, message):
    model = _small_classifier(tmp_path / "small.onnx")
    done = call_onnxvis("cam", model, photo, "--preset", "unit", "--resize", "16,16", *args, "-o", tmp_path / "out")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxvis: error: ") and message in lines[0], done.stderr
    assert not (tmp_path / "out").exists() or not any(p.suffix in (".png", ".npy") for p in (tmp_path / "out").iterdir())


def test_model_without_conv_layer_is_one_line(tmp_path, photo):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.ones((48, 2), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "mlp.onnx"))
    done = call_onnxvis("cam", tmp_path / "mlp.onnx", photo, "--preset", "unit", "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no conv layer" in done.stderr, done.stderr


def test_target_by_label_and_index_agree(tmp_path):
    scores = np.array([0.1, 3.0, 0.2], np.float32)
    assert cammodel.target_index(None, scores, ["a", "b", "c"]) == 1
    assert cammodel.target_index("C", scores, ["a", "b", "c"]) == 2 == cammodel.target_index("2", scores, None)
    with pytest.raises(OnnxvisError, match="out of range"):
        cammodel.target_index(-1, scores, None)


def test_spatial_outputs_are_summed_per_class():
    nchw = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    assert np.array_equal(cammodel.class_scores(nchw), nchw.sum(axis=(2, 3)))
    assert np.array_equal(cammodel.class_scores(nchw.transpose(0, 2, 3, 1), "NHWC"), nchw.sum(axis=(2, 3)))
    assert cammodel.class_scores(np.ones((1, 1000, 1, 1), np.float32)).shape == (1, 1000)


# ---------------------------------------------------------------------------------- real models


@pytest.mark.parametrize(
    "model, image, extra",
    [
        (
            "mtcnn_pnet_keras2onnx.onnx",
            "matplotlib_grace_hopper.jpg",
            ("--target-output", "softmax", "--target", "1", "--resize", "120,100"),
        ),
        ("squeezenet1.0_caffe2_fp16.onnx", "skimage_chelsea.png", ("--preset", "caffe")),
        ("mnist_cntk_int8_qdq.onnx", "skimage_camera.png", ()),
        ("mnist_cntk_int8_qlinearconv.onnx", "skimage_camera.png", ()),
    ],
)
@pytest.mark.parametrize("method", ["ablation", "eigen"])
def test_real_models_nhwc_fp16_quantized(tmp_path, model, image, extra, method):
    model_path, image_path = asset(f"models/{model}"), asset(f"images/{image}")
    done = call_onnxvis("cam", model_path, image_path, "--method", method, *extra, "--format", "png,npy", "-o", tmp_path)
    assert done.returncode == 0, done.stderr
    png, npy = done.stdout.split()
    cam = np.load(npy)
    picture = np.asarray(Image.open(png))
    assert cam.dtype == np.float32 and picture.shape == cam.shape + (3,)
    assert cam.min() == 0 and cam.max() == pytest.approx(1, abs=1e-6) and np.isfinite(cam).all()
    assert cam.std() > 0.02  # a map with places, not a flat field


def _imagenet_sample(limit: int) -> list:
    folder = ASSETS / "images" / "imagenet-sample"
    if not (folder / "labels.csv").exists():
        pytest.skip(f"{folder} is missing")
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [folder / row["file"] for row in rows][:limit]


# method -> the deletion outcome of each photo, in the sample's order, computed once per run. Each photo's
# outcome is its own (its map, a deletion seeded alone), so a cached one is the same. Every method on all
# 100 photos (the README's table) is benchmarks/cam_deletion.py: about an hour, too long for the suite.
_WINS: dict[str, list[bool]] = {}


def _deletion_share(method: str, limit: int) -> float:
    """Share of photos where deleting the map's hottest 20% hurts the predicted class more than
    deleting 20% at random (random blobs as coarse as the map; see onnxvis.analysis.cam.metrics.deletion)."""
    from onnxvis.analysis.cam.metrics import deletion
    from onnxvis.engine.inspector import Inspector

    photos = _imagenet_sample(limit)
    known = _WINS.setdefault(method, [])
    if len(known) < len(photos):
        with Inspector(asset("models/squeezenet1.0_caffe2_fp16.onnx"), preset="caffe") as insp:
            places = cammodel.places_for(insp, [cammodel.default_layer(insp)])
            maps = cammodel.Cam(insp, places, method=method)(photos[len(known):])
            known += [bool(np.subtract(*deletion(insp, r, 0.2)) > 0) for r in maps]
    wins = known[: len(photos)]
    assert len(wins) == len(photos) == limit
    print(f"{method}: {sum(wins)}/{len(wins)}")
    return float(np.mean(wins))


@pytest.mark.parametrize("method, limit", [("ablation", 30), ("fem", 100), ("kpca", 30)])
def test_deleting_the_hottest_pixels_hurts_more_than_random(method, limit):
    assert _deletion_share(method, limit) > 0.5


def test_report_and_notebook_show_a_cam_with_the_method_named(tmp_path, photo):
    from onnxvis import figures
    from onnxvis.engine.inspector import Inspector
    from onnxvis.report import build_report

    model = _small_classifier(tmp_path / "small.onnx", residual=True)
    with Inspector(model, preset="unit", changes={"resize": (16, 16)}) as insp:
        text = build_report(insp, [photo], cam_method="score")
        pictures = figures.cam(insp, photo, method="fem", tensor="block")
        none = build_report(insp, [photo], cam_method=None)
    assert "Where the model looks: score CAM of class" in text and text.count("data:image/png") > none.count("data:image/png")
    assert "Where the model looks" not in none
    (picture,) = pictures
    assert picture.title.startswith("fem CAM - block - class ") and picture.pixels.shape == (16, 16, 3)


def test_tensorboard_format(tmp_path, photo):
    pytest.importorskip("tensorboard")
    model = _small_classifier(tmp_path / "small.onnx")
    done = call_onnxvis(
        "cam", model, photo, photo, "--preset", "unit", "--resize", "16,16", "--format", "tensorboard", "-o", tmp_path / "out"
    )
    assert done.returncode == 0, done.stderr
    (events,) = done.stdout.split()
    assert "events.out.tfevents" in events and os.path.getsize(events) > 0


def test_kpca_runs_or_says_what_to_install(tmp_path, photo):
    import importlib.util

    model = _small_classifier(tmp_path / "small.onnx")
    done = call_onnxvis(
        "cam", model, photo, "--method", "kpca", "--preset", "unit", "--resize", "16,16", "--format", "npy", "-o", tmp_path / "out"
    )
    if importlib.util.find_spec("sklearn") is None:  # the message comes before any run
        assert done.returncode == 2 and "pip install 'onnxvis[cam]'" in done.stderr and done.stderr.count("\n") == 1
    else:
        assert done.returncode == 0, done.stderr
        assert np.load(done.stdout.split()[0]).max() == pytest.approx(1, abs=1e-6)
