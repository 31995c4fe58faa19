"""The gradient CAM methods without torch: gradients checked where they are known exactly (a linear
tail), each method through `onnxvis cam`, FullGrad's bias layers, the one-line refusals, and the
coverage on every image model of ../shared/assets (Grad-CAM at the default layer and the input
gradient, both maps not constant)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import asset, call_onnxvis
from onnxvis.analysis.cam import maths
from onnxvis.analysis.cam.gradcams import bias_layers, gradient_cams
from onnxvis.analysis.cam.gradmaths import GRADIENT_METHODS, gradient_raw_map
from onnxvis.analysis.cam.runs import Place
from onnxvis.engine.gradients import score_seeds
from onnxvis.engine.inspector import Inspector


def _classifier(path, batch_norm: bool = False):
    """x (N, 3, 16, 16) -> Conv 3x3 + bias (6) [-> BatchNormalization] -> Relu -> + 1x1 conv of x -> Relu
    ('block') -> GlobalAveragePool -> Flatten -> Gemm (5 classes): after 'block' the score is linear."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(6, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(6,)).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(size=(6, 3, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.normal(size=(5, 6)).astype(np.float32), "fc"),
        numpy_helper.from_array(rng.normal(size=(5,)).astype(np.float32), "fcb"),
    ]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1])]
    last = "c1"
    if batch_norm:
        for name, values in (("gamma", rng.uniform(0.5, 1.5, 6)), ("beta", rng.normal(size=6)), ("mean", rng.normal(size=6)),
                             ("var", rng.uniform(0.5, 1.5, 6))):
            inits.append(numpy_helper.from_array(values.astype(np.float32), name))
        nodes.append(helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"], name="bn", epsilon=1e-3))
        last = "bn"
    nodes += [
        helper.make_node("Relu", [last], ["r1"]), helper.make_node("Conv", ["x", "w2"], ["c2"], name="skip"),
        helper.make_node("Add", ["r1", "c2"], ["sum"]), helper.make_node("Relu", ["sum"], ["block"]),
        helper.make_node("GlobalAveragePool", ["block"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path, inits


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(path)
    return path


PRE = ("--preset", "unit", "--resize", "16,16")


def test_grad_cam_with_a_linear_tail_is_known_exactly(tmp_path, photo):
    """After 'block' the class score is mean(block) . fc[c] + fcb[c]: its gradient is fc[c, k] / (16 * 16)
    at every position, so GradCAM's weights are fc[c] / 256 and HiResCAM's map is the weighted sum itself."""
    path, inits = _classifier(tmp_path / "net.onnx")
    fc = numpy_helper.to_array(inits[3])
    with Inspector(path, preset="unit", changes={"resize": (16, 16)}) as insp:
        (result,) = gradient_cams(insp, [photo], [Place("block", "block")], "grad", target=2)
        graph = insp.gradients(["block"], shape=(3, 16, 16), rows=1)
        x = insp.prepare(photo).array
        run = graph.run(x, score_seeds((1, 5), np.array([[2]])))
    grads = run.gradients["block"][0, ..., 0]
    np.testing.assert_allclose(grads, np.broadcast_to((fc[2] / 256)[:, None, None], grads.shape), rtol=1e-5)
    acts = run.values["block"][0]
    np.testing.assert_allclose(result.activations, acts, rtol=1e-6)
    weights = (fc[2] / 256).astype(np.float32)
    expected = maths.finish((weights[:, None, None] * acts).sum(axis=0), (16, 16))
    np.testing.assert_allclose(result.cam, expected, atol=1e-5)
    assert result.target == 2 and result.cam.std() > 0
    np.testing.assert_allclose(gradient_raw_map("hires", acts, grads), gradient_raw_map("grad", acts, grads), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", list(GRADIENT_METHODS))
def test_every_gradient_method_writes_its_maps(tmp_path, photo, method):
    path, _ = _classifier(tmp_path / "net.onnx", batch_norm=True)
    done = call_onnxvis("cam", path, photo, "--method", method, "--tensor", "block", "--layers", "0", "--format", "png,npy",
                       *PRE, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    places = ["bias_layers"] if method == "fullgrad" else ["00_conv1", "block"]
    assert sorted(p.rsplit("/", 1)[1] for p in written) == sorted(
        f"cam_{method}_photo_{place}.{ext}" for place in places for ext in ("png", "npy")
    )
    for npy in (p for p in written if p.endswith(".npy")):
        cam = np.load(npy)
        assert cam.dtype == np.float32 and cam.shape == (16, 16) and 0 <= cam.min() and cam.max() <= 1 and cam.std() > 0
    if method == "fullgrad":
        assert "--layers and --tensor are ignored" in done.stderr


def test_fullgrad_takes_every_conv_bias_and_batch_norm(tmp_path):
    path, inits = _classifier(tmp_path / "net.onnx", batch_norm=True)
    gamma, beta, mean, var = (numpy_helper.to_array(t) for t in inits[5:9])
    with Inspector(path) as insp:
        layers = dict(bias_layers(insp))
    assert list(layers) == ["c1", "bn"]  # the 1x1 'skip' conv has no bias: not a FullGrad layer, as in grad-cam
    np.testing.assert_allclose(layers["c1"], numpy_helper.to_array(inits[1]))
    np.testing.assert_allclose(layers["bn"], beta - mean * gamma / np.sqrt(var + 1e-3), rtol=1e-6)


def test_a_place_after_the_scores_or_beside_them_is_refused(tmp_path, photo):
    path, _ = _classifier(tmp_path / "net.onnx")
    done = call_onnxvis("cam", path, photo, "--method", "grad", "--tensor", "logits", *PRE, "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "tensor 'logits'" in done.stderr


# ------------------------------------------------------------------------------ coverage

# Every image model of the shared assets, with what it needs to run (as its MANIFEST says).
COVERAGE = {
    "mnist_cntk.onnx": [],
    "mnist_cntk_int8_qdq.onnx": [],
    "mnist_cntk_int8_qlinearconv.onnx": [],
    "squeezenet1.0_caffe2_fp16.onnx": ["--preset", "caffe"],
    "ppocr_mobile_v2.0_cls_paddle.onnx": ["--resize", "48,192"],
    "mtcnn_pnet_keras2onnx.onnx": ["--target-output", "softmax", "--resize", "48,48"],
    "cifar10_tutorial_pytorch.onnx": [],
    "ultraface_rfb320_pytorch.onnx": ["--target-output", "scores", "--target", "1"],
    "light_squeezenet_constantofshape.onnx": [],
}
SLOW = {"squeezenet1.0_caffe2_fp16.onnx", "ultraface_rfb320_pytorch.onnx", "light_squeezenet_constantofshape.onnx",
        "ppocr_mobile_v2.0_cls_paddle.onnx"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in COVERAGE]
)
def test_grad_cam_and_input_gradient_on_every_real_model(tmp_path, name):
    """Grad-CAM at the default layer and the input gradient work on every model, from every framework
    (CNTK with auto_pad, Caffe2 float16 at opset 7, Paddle with weights in Constant nodes, PyTorch at
    opset 9, Keras NHWC, both int8 MNISTs), with a map that is not constant."""
    model = asset(f"models/{name}")
    image = asset("images/skimage_chelsea.png")
    extra = COVERAGE[name]
    for command in (["cam", "--method", "grad"], ["saliency"]):
        done = call_onnxvis(*command, model, image, *extra, "--format", "npy", "-o", tmp_path / command[0])
        assert done.returncode == 0, (name, command, done.stderr)
        (npy,) = done.stdout.split()
        values = np.load(npy)
        assert np.all(np.isfinite(values)) and values.std() > 0, (name, command)


def _grad_deletion_share(method: str, limit: int) -> float:
    """As the forward methods' check (tests/test_cam_models.py): the share of the ImageNet sample photos
    where deleting the map's hottest 20% hurts SqueezeNet's predicted class more than 20% in random blobs."""
    import csv

    from conftest import ASSETS
    from onnxvis.analysis.cam import runs as cammodel
    from onnxvis.analysis.cam.metrics import deletion

    folder = ASSETS / "images" / "imagenet-sample"
    if not (folder / "labels.csv").exists():
        pytest.skip(f"{folder} is missing")
    with open(folder / "labels.csv", newline="") as f:
        photos = [folder / row["file"] for row in csv.DictReader(f)][:limit]
    with Inspector(asset("models/squeezenet1.0_caffe2_fp16.onnx"), preset="caffe") as insp:
        places = cammodel.places_for(insp, [cammodel.default_layer(insp, insp.class_output())])
        wins = [np.subtract(*deletion(insp, r, 0.2)) > 0 for r in gradient_cams(insp, photos, places, method)]
    print(f"{method}: {sum(wins)}/{len(wins)}")
    return float(np.mean(wins))


def test_grad_cam_deleting_the_hottest_pixels_hurts_more_than_random():
    """On 30 photos; every method on all 100 (the README's table) is benchmarks/cam_deletion.py."""
    assert _grad_deletion_share("grad", 30) > 0.5


def _with_control_flow(path):
    """The classifier's conv, then an If on the way to the scores: no gradient, but forward methods work."""
    rng = np.random.default_rng(0)

    def branch(op, out):
        outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)]
        return helper.make_graph([helper.make_node(op, ["r1"], [out])], op, [], outputs)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("ReduceSum", ["r1"], ["total"], keepdims=0), helper.make_node("Greater", ["total", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch"], name="choose", then_branch=branch("Identity", "y1"), else_branch=branch("Neg", "y2")),
        helper.make_node("GlobalAveragePool", ["branch"], ["gap"]), helper.make_node("Flatten", ["gap"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(rng.normal(size=(5, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.array(0, np.float32), "zero")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_the_pages_show_grad_cam_and_ablation_cam_where_there_is_no_gradient(tmp_path, photo):
    from onnxvis.analysis.cam import runs as cammodel
    from onnxvis.analysis.cam.maths import overlay
    from onnxvis.report import build_report
    from onnxvis.serve.explorer import page_cam

    path, _ = _classifier(tmp_path / "net.onnx")
    with Inspector(path, preset="unit", changes={"resize": (16, 16)}) as insp:
        drawn, target = page_cam(insp, Image.open(photo), 3)
        places = cammodel.places_for(insp, [cammodel.default_layer(insp, "logits")])
        (expected,) = gradient_cams(insp, [photo], places, "grad", target=3)
        assert target == 3 and np.array_equal(drawn, overlay(expected.rgb, expected.cam))
        text = build_report(insp, [photo], cam_method="grad")
    assert "Where the model looks: grad CAM of class" in text and "one backward pass" in text
    refused = _with_control_flow(tmp_path / "if.onnx")
    with Inspector(refused, preset="unit", changes={"resize": (16, 16)}) as insp:
        drawn, _ = page_cam(insp, Image.open(photo), None)
        assert drawn.shape == (16, 16, 3)
        text = build_report(insp, [photo], cam_method="grad")
    assert "no grad CAM: cannot differentiate through the If node" in text and "AblationCAM instead" in text
    assert "Where the model looks: ablation CAM of class" in text
