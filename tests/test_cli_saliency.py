"""`onnxvis saliency` end to end (no torch): the outputs and their shapes, each method's own check
(integrated gradients' completeness, SmoothGrad without noise is the gradient), the baselines, an
NHWC model, the notes, and the one-line errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import asset, call_onnxvis
from onnxvis.analysis import saliency
from onnxvis.engine.inspector import Inspector


def _smooth_classifier(path, softmax: bool = True):
    """x (N, 3, 16, 16) -> Conv 3x3 -> Tanh -> GlobalAveragePool -> Flatten -> Gemm (5 classes) [-> Softmax]:
    smooth, so that integrated gradients' completeness holds to the quadrature's precision."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (6, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(5, 6)).astype(np.float32), "fc"),
        numpy_helper.from_array(rng.normal(size=(5,)).astype(np.float32), "fcb"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), helper.make_node("Tanh", ["c1"], ["t1"]),
        helper.make_node("GlobalAveragePool", ["t1"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits" if softmax else "probs"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(path)
    return path


PRE = ("--preset", "unit", "--resize", "16,16")


def _npy(done) -> np.ndarray:
    (path,) = [p for p in done.stdout.split() if p.endswith(".npy")]
    return np.load(path)


@pytest.mark.parametrize("method", saliency.METHODS)
def test_every_method_writes_png_npy_and_tensorboard(tmp_path, photo, method):
    pytest.importorskip("tensorboard")
    model = _smooth_classifier(tmp_path / "small.onnx")
    done = call_onnxvis("saliency", model, photo, "--method", method, "--format", "png,npy,tensorboard", *PRE, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    assert sorted(p.rsplit("/", 1)[1] for p in written) == sorted(
        [f"saliency_{method}_photo.png", f"saliency_{method}_photo.npy", "events.out.tfevents.saliency.onnxvis"]
    )
    attribution = _npy(done)
    assert attribution.dtype == np.float32 and attribution.shape == (3, 16, 16)  # the model input's, without the batch
    assert np.abs(attribution).max() > 0
    picture = np.asarray(Image.open(next(p for p in written if p.endswith(".png"))))
    assert picture.shape == (16, 16, 3) and picture.std() > 0
    # the model ends in a Softmax: the user is told the score is the logits
    assert "ends in a Softmax (node 'softmax')" in done.stderr and "'logits'" in done.stderr


def _attribution(model, photo, method, **options):
    with Inspector(model, preset="unit", changes={"resize": (16, 16)}) as insp:
        return next(saliency.attribute(insp, [photo], method, **options))


def test_integrated_gradients_are_complete(tmp_path, photo):
    """The attributions sum to score(x) - score(baseline) (Sundararajan et al.'s completeness), for each baseline."""
    model = _smooth_classifier(tmp_path / "small.onnx")
    with Inspector(model, preset="unit", changes={"resize": (16, 16)}) as insp:
        prepared = insp.prepare(photo)
        sums = {}
        for baseline in saliency.BASELINES:
            result = next(saliency.attribute(insp, [photo], "integrated-gradients", target=3, baseline=baseline, steps=20))
            start = saliency.baseline_for(prepared, baseline, "NCHW")
            logits = insp.run_arrays({"x": np.concatenate([prepared.array, start])}, ["logits"])["logits"][:, 3]
            assert float(result.attribution.sum()) == pytest.approx(float(logits[0] - logits[1]), rel=1e-4, abs=1e-5)
            sums[baseline] = float(result.attribution.sum())
        # the unit preset (0..1, no mean): black is 0 in the model's space too; the blurred photo is not
        np.testing.assert_allclose(saliency.baseline_for(prepared, "black", "NCHW"), 0)
        assert sums["black"] == pytest.approx(sums["zero"]) and abs(sums["blur"] - sums["zero"]) > 1e-3
    with Inspector(model, preset="imagenet", changes={"resize": (16, 16), "crop": None}) as insp:
        black = saliency.baseline_for(insp.prepare(photo), "black", "NCHW")
        np.testing.assert_allclose(black[0, :, 0, 0], -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225]), rtol=1e-5)


def test_gauss_legendre_is_captums_rule():
    steps, alphas = saliency.gauss_legendre(50)
    assert len(steps) == len(alphas) == 50 and steps.sum() == pytest.approx(1.0)
    assert 0 < alphas.min() < 0.001 and 0.999 < alphas.max() < 1
    # exact for polynomials of degree up to 2n - 1: the integral of t^7 on [0, 1] is 1/8
    assert float((steps * alphas**7).sum()) == pytest.approx(1 / 8, rel=1e-12)


def test_smoothgrad_without_noise_is_the_gradient_and_its_seed_repeats(tmp_path, photo):
    model = _smooth_classifier(tmp_path / "small.onnx")
    gradient = _attribution(model, photo, "gradient", target=1).attribution
    quiet = _attribution(model, photo, "smoothgrad", target=1, noise=0.0, samples=3).attribution
    np.testing.assert_allclose(quiet, gradient, rtol=1e-5, atol=1e-8)
    first = _attribution(model, photo, "smoothgrad", target=1, noise=0.5, seed=4).attribution
    again = _attribution(model, photo, "smoothgrad", target=1, noise=0.5, seed=4).attribution
    other = _attribution(model, photo, "smoothgrad", target=1, noise=0.5, seed=5).attribution
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    x = _attribution(model, photo, "input-x-gradient", target=1)
    np.testing.assert_allclose(x.attribution, x.input[0] * gradient, rtol=1e-5, atol=1e-8)


def test_default_target_is_the_predicted_class(tmp_path, photo):
    model = _smooth_classifier(tmp_path / "small.onnx")
    result = _attribution(model, photo, "gradient")
    with Inspector(model, preset="unit", changes={"resize": (16, 16)}) as insp:
        assert result.target == insp.predict(photo, top=1).top[0][0]


def test_an_nhwc_model_keeps_its_layout(tmp_path):
    """MTCNN's P-Net (Keras, NHWC input, two outputs, a Softmax over the last axis)."""
    model = asset("models/mtcnn_pnet_keras2onnx.onnx")
    image = asset("images/matplotlib_grace_hopper.jpg")
    done = call_onnxvis("saliency", model, image, "--target-output", "softmax", "--target", "1", "--resize", "48,48",
                       "--format", "npy", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    attribution = _npy(done)
    assert attribution.shape == (48, 48, 3) and np.abs(attribution).max() > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "9"], "target class 9 is out of range: the model scores 5 classes (0..4)"),
        (["--method", "integrated-gradients", "--steps", "0"], "integrated gradients need 1 step or more, got 0 (set with --steps N)"),
        (["--method", "smoothgrad", "--samples", "0"], "SmoothGrad needs 1 sample or more, got 0 (set with --samples N)"),
        (["--method", "smoothgrad", "--noise", "-1"], "the noise must be a standard deviation of 0 or more, got -1.0 (set with --noise"),
        (["--format", "jpg"], "unknown output format 'jpg'"),
    ],
)
def test_mistakes_are_one_line_and_write_nothing(tmp_path, photo, args, message):
    model = _smooth_classifier(tmp_path / "small.onnx")
    out = tmp_path / "out"
    done = call_onnxvis("saliency", model, photo, *args, *PRE, "-o", out)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not out.exists() or not any(p.suffix in (".png", ".npy") for p in out.rglob("*"))


def test_control_flow_is_refused_naming_the_node(tmp_path, photo):
    rng = np.random.default_rng(0)

    def branch(op, out):
        outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)]
        return helper.make_graph([helper.make_node(op, ["c1"], [out])], op, [], outputs)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("ReduceSum", ["c1"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch"], name="choose", then_branch=branch("Relu", "y1"), else_branch=branch("Neg", "y2")),
        helper.make_node("GlobalAveragePool", ["branch"], ["gap"]), helper.make_node("Flatten", ["gap"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(rng.normal(size=(5, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.array(0, np.float32), "zero")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "if.onnx"
    onnx.save(model, str(path))
    done = call_onnxvis("saliency", path, photo, *PRE, "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "cannot differentiate through the If node 'choose'" in done.stderr
    # the forward methods still work on it
    assert call_onnxvis("cam", path, photo, "--method", "eigen", *PRE, "-o", tmp_path / "cam").returncode == 0
