"""`onnxvis cam`'s gradient methods give pytorch-grad-cam's maps: same weights, layer, target and input,
within 1e-2 at most and 1e-3 on average, at a conv node (layer4.1.conv2) and at a block's output
(layer4[-1], through --tensor); FullGrad once, on the whole model (it has no place).

The oracle is grad-cam 1.5.x on torchvision's ResNet-18 with seeded weights; onnxvis runs the file
that `onnxvis export resnet18 --weights PATH` writes, with onnx-ad's backward pass in onnxruntime.
The arithmetic alone (onnxvis.analysis.cam.gradmaths) is compared with grad-cam's on random arrays.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import asset, call_onnxvis

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("pytorch_grad_cam")

PLACE_METHODS = ("grad", "gradpp", "xgrad", "layer", "hires", "elementwise", "eigengrad")
CONV = "layer4.1.conv2"


def _classes():
    from pytorch_grad_cam import (
        EigenGradCAM,
        FullGrad,
        GradCAM,
        GradCAMElementWise,
        GradCAMPlusPlus,
        HiResCAM,
        LayerCAM,
        XGradCAM,
    )

    return {"grad": GradCAM, "gradpp": GradCAMPlusPlus, "xgrad": XGradCAM, "layer": LayerCAM, "hires": HiResCAM,
            "elementwise": GradCAMElementWise, "eigengrad": EigenGradCAM, "fullgrad": FullGrad}


def _block_output_name(path) -> str:
    """The ONNX name of layer4[-1]'s output: the last Relu before the global pooling."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.output[0] for node in graph.node if node.op_type == "Relu"][-1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, seeded_resnet18):
    from onnxvis.engine.inspector import Inspector

    folder = tmp_path_factory.mktemp("gradcam_parity")
    shared_model, onnx_path = seeded_resnet18  # exported once per run (tests/conftest.py)
    model = copy.deepcopy(shared_model)
    image = asset("images/skimage_chelsea.png")
    with Inspector(onnx_path) as insp:
        array = insp.prepare(image).array
    x = torch.from_numpy(array)
    with torch.no_grad():
        target = int(model(x)[0].argmax())
    torch.set_num_threads(2)
    return model, onnx_path, image, x, target, _block_output_name(onnx_path), folder


def _oracle(model, method: str, layers, x, target: int) -> np.ndarray:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with _classes()[method](model, layers) as cam:
        return cam(x.clone(), [ClassifierOutputTarget(target)])[0]


def _compare(mine: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert mine.dtype == np.float32 and mine.shape == ref.shape == (224, 224)
    diff = np.abs(mine - ref)
    print(f"{what}: max {diff.max():.2g}, mean {diff.mean():.2g}")
    assert diff.max() <= 1e-2 and diff.mean() <= 1e-3, (what, diff.max(), diff.mean())
    assert ref.max() > 0.99 and ref.std() > 0.05  # a real map, not a blank one that anything blank would match


@pytest.mark.parametrize("method", PLACE_METHODS)
def test_gradient_cam_equals_grad_cam(setup, method):
    model, onnx_path, image, x, target, block, folder = setup
    out = folder / f"out_{method}"
    done = call_onnxvis(
        "cam", onnx_path, image, "--method", method, "--layers", CONV, "--tensor", block,
        "--target", str(target), "--format", "png,npy", "-o", out,
    )
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    npys = sorted(p for p in written if p.endswith(".npy"))
    assert len(npys) == 2 and len([p for p in written if p.endswith(".png")]) == 2
    conv = next(p for p in npys if CONV in p)
    at_block = next(p for p in npys if p.endswith(f"_{block}.npy"))
    _compare(np.load(conv), _oracle(model, method, [model.layer4[1].conv2], x, target), f"{method} at {CONV}")
    _compare(np.load(at_block), _oracle(model, method, [model.layer4[-1]], x, target), f"{method} at layer4[-1]")


def test_fullgrad_equals_grad_cam(setup):
    model, onnx_path, image, x, target, block, folder = setup
    done = call_onnxvis("cam", onnx_path, image, "--method", "fullgrad", "--format", "npy", "-o", folder / "out_fullgrad")
    assert done.returncode == 0, done.stderr
    (npy,) = done.stdout.split()
    assert npy.endswith("cam_fullgrad_skimage_chelsea_bias_layers.npy")
    _compare(np.load(npy), _oracle(model, "fullgrad", [], x, target), "fullgrad")  # the default target: the predicted class


def test_default_target_is_the_predicted_class(setup):
    model, onnx_path, image, x, target, block, folder = setup
    done = call_onnxvis("cam", onnx_path, image, "--method", "grad", "--tensor", block, "--format", "npy", "-o", folder / "out_default")
    assert done.returncode == 0, done.stderr
    _compare(np.load(done.stdout.split()[0]), _oracle(model, "grad", [model.layer4[-1]], x, target), "grad, default target")


@pytest.mark.parametrize("method", PLACE_METHODS)
def test_the_arithmetic_equals_grad_cams_on_arrays(method):
    """Random activations and gradients (a batch of one), through grad-cam's own get_cam_image, ReLU
    and scale_cam_image, against gradmaths and maths.finish."""
    from onnxvis.analysis.cam import maths
    from onnxvis.analysis.cam.gradmaths import gradient_raw_map

    rng = np.random.default_rng(7)
    acts = np.maximum(rng.normal(size=(1, 16, 7, 9)), 0).astype(np.float32)
    grads = (rng.normal(size=(1, 16, 7, 9)) * 1e-3).astype(np.float32)
    grads[0, 3] = 0  # GradCAM++'s "0 where the gradient is 0"
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1))
    oracle = _classes()[method](net, [net[0]])
    ref_raw = oracle.get_cam_image(None, net[0], None, acts, grads, False)[0]
    raw = gradient_raw_map(method, acts[0], grads[0])
    np.testing.assert_allclose(raw, ref_raw, rtol=1e-5, atol=1e-6 * float(np.abs(ref_raw).max()))
    ref = oracle.aggregate_multi_layers([oracle_scaled(ref_raw, (40, 36))])[0]
    np.testing.assert_allclose(maths.finish(raw, (36, 40)), ref, atol=1e-5)


def oracle_scaled(raw: np.ndarray, width_height: tuple[int, int]) -> np.ndarray:
    """grad-cam's compute_cam_per_layer after get_cam_image: ReLU, scale_cam_image to (width, height), a layer axis."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    return scale_cam_image(np.maximum(raw[None], 0), width_height)[:, None, :]


def test_fullgrad_arithmetic_equals_grad_cams_on_arrays():
    from pytorch_grad_cam.utils.image import scale_accross_batch_and_channels, scale_cam_image

    from onnxvis.analysis.cam.gradmaths import fullgrad_map

    rng = np.random.default_rng(3)
    image = rng.normal(size=(3, 24, 20)).astype(np.float32)
    input_grad = rng.normal(size=(3, 24, 20)).astype(np.float32)
    layers = [(rng.normal(size=(c,)).astype(np.float32), rng.normal(size=(c, h, w)).astype(np.float32))
              for c, h, w in ((8, 12, 10), (16, 6, 5), (4, 24, 20))]
    size_wh = (20, 24)
    parts = [scale_accross_batch_and_channels(np.abs(input_grad * image)[None], size_wh)]
    for bias, grads in layers:
        parts.append(np.sum(scale_accross_batch_and_channels(np.abs(bias[None, :, None, None] * grads[None]), size_wh), axis=1)[:, None])
    ref = scale_cam_image(np.sum(np.sum(np.concatenate(parts, axis=1), axis=1)[:, None], axis=1))[0]
    np.testing.assert_allclose(fullgrad_map(image, input_grad, layers, (24, 20)), ref, atol=1e-5)
