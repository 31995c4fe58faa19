"""`onnxvis saliency` gives Captum's attributions: same weights, target and input, within 1e-3 of the
largest |attribution|, for the gradient (Saliency, abs=False), input x gradient and integrated
gradients (Gauss-Legendre, 50 steps, zero baseline).

The oracle is Captum on torchvision's ResNet-18 with seeded weights; onnxvis runs the file that
`onnxvis export resnet18 --weights PATH` writes from the same state dict, with onnx-ad's backward
pass in onnxruntime.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import asset, call_onnxvis

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("captum")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, seeded_resnet18):
    from onnxvis.engine.inspector import Inspector

    folder = tmp_path_factory.mktemp("saliency_parity")
    shared_model, onnx_path = seeded_resnet18  # exported once per run (tests/conftest.py)
    model = copy.deepcopy(shared_model)
    image = asset("images/skimage_chelsea.png")
    with Inspector(onnx_path) as insp:
        array = insp.prepare(image).array  # the same input for both: onnxvis's preprocessing is torchvision's
    x = torch.from_numpy(array)
    with torch.no_grad():
        target = int(model(x)[0].argmax())
    torch.set_num_threads(2)
    return model, onnx_path, image, x, target, folder


def _captum(model, method: str, x, target: int) -> np.ndarray:
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    if method == "gradient":
        ref = Saliency(model).attribute(x, target=target, abs=False)
    elif method == "input-x-gradient":
        ref = InputXGradient(model).attribute(x, target=target)
    else:
        ref = IntegratedGradients(model).attribute(x, target=target, n_steps=50, method="gausslegendre")
    return ref.detach().numpy()[0]


@pytest.mark.parametrize(
    "method", ["gradient", "input-x-gradient", pytest.param("integrated-gradients", marks=pytest.mark.slow)]
)
def test_saliency_equals_captum(setup, method):
    model, onnx_path, image, x, target, folder = setup
    out = folder / f"out_{method}"
    args = ["saliency", onnx_path, image, "--method", method, "--format", "png,npy", "-o", out]
    if method != "gradient":  # the default target (the predicted class) is the gradient's
        args += ["--target", str(target)]
    done = call_onnxvis(*args)
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    (npy,) = [p for p in written if p.endswith(".npy")]
    assert [p for p in written if p.endswith(".png")] == [npy[:-4] + ".png"]
    mine = np.load(npy)
    ref = _captum(model, method, x.clone(), target)
    assert mine.dtype == np.float32 and mine.shape == ref.shape == (3, 224, 224)
    scale = np.abs(ref).max()
    diff = np.abs(mine - ref)
    print(f"{method}: max |diff| / max |attribution| = {diff.max() / scale:.2g} (max {diff.max():.3g}, mean {diff.mean():.3g})")
    assert scale > 0 and diff.max() <= 1e-3 * scale
    # the sign and layout are right, not only the magnitudes: the attribution correlates with Captum's
    assert np.corrcoef(mine.reshape(-1), ref.reshape(-1))[0, 1] > 0.999


def test_heat_map_scales_as_captums_visualisation(setup):
    from captum.attr._utils.visualization import _normalize_attr

    from onnxvis.analysis.saliency import heat_map

    rng = np.random.default_rng(0)
    attribution = rng.normal(size=(3, 40, 50)).astype(np.float32) ** 3
    expected = _normalize_attr(np.sum(np.transpose(attribution, (1, 2, 0)), axis=2), "absolute_value", 2)
    np.testing.assert_allclose(heat_map(attribution, "NCHW"), expected, atol=1e-6)
    np.testing.assert_allclose(heat_map(np.transpose(attribution, (1, 2, 0)), "NHWC"), expected, atol=1e-6)
