"""`onnxvis cam` gives pytorch-grad-cam's maps: same weights, layer, target and input, within 1e-2 at
most and 1e-3 on average, for every method, at a conv node (layer4.1.conv2) and at a block's output
(layer4[-1], after the residual add and ReLU, through --tensor).

The oracle is grad-cam 1.5.x on torchvision's ResNet-18 with seeded weights (BatchNorm statistics
perturbed too, so that its place after the ablated conv matters); onnxvis runs the file that
`onnxvis export resnet18 --weights PATH` writes from the same state dict.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import asset, call_onnxvis

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("sklearn")

pytestmark = pytest.mark.slow  # grad-cam on ResNet-18, five methods: minutes

METHODS = ("score", "ablation", "eigen", "fem", "kpca")
CONV = "layer4.1.conv2"


def _block_output_name(path) -> str:
    """The ONNX name of layer4[-1]'s output: the last Relu before the global pooling."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    relus = [node.output[0] for node in graph.node if node.op_type == "Relu"]
    return relus[-1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, seeded_resnet18):
    from pytorch_grad_cam import FEM, KPCA_CAM, AblationCAM, EigenCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from onnxvis.engine.inspector import Inspector

    folder = tmp_path_factory.mktemp("cam_parity")
    shared_model, onnx_path = seeded_resnet18  # exported once per run (tests/conftest.py)
    model = copy.deepcopy(shared_model)
    image = asset("images/skimage_chelsea.png")
    with Inspector(onnx_path) as insp:
        array = insp.prepare(image).array  # the same input for both: onnxvis's preprocessing is torchvision's
    x = torch.from_numpy(array)
    with torch.no_grad():
        target = int(model(x)[0].argmax())
    classes = {"score": ScoreCAM, "ablation": AblationCAM, "eigen": EigenCAM, "fem": FEM, "kpca": KPCA_CAM}
    places = {"conv": model.layer4[1].conv2, "block": model.layer4[-1]}
    torch.set_num_threads(2)
    maps: dict = {}

    def oracle(method: str, place: str) -> np.ndarray:
        """grad-cam's map, computed when first asked (ScoreCAM and AblationCAM take a while)."""
        if (method, place) not in maps:
            maps[(method, place)] = classes[method](model, [places[place]])(x, [ClassifierOutputTarget(target)])[0]
        return maps[(method, place)]

    return onnx_path, image, target, _block_output_name(onnx_path), oracle, folder


@pytest.mark.parametrize("method", METHODS)
def test_cam_equals_grad_cam(setup, method):
    onnx_path, image, target, block, oracle, folder = setup
    out = folder / f"out_{method}"
    done = call_onnxvis(
        "cam", onnx_path, image, "--method", method, "--layers", CONV, "--tensor", block,
        "--target", str(target), "--format", "png,npy", "-o", out,
    )
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    npys = sorted(p for p in written if p.endswith(".npy"))
    assert len(npys) == 2 and len([p for p in written if p.endswith(".png")]) == 2
    by_place = {"conv": next(p for p in npys if CONV in p), "block": next(p for p in npys if p.endswith(f"_{block}.npy"))}
    for place, path in by_place.items():
        mine = np.load(path)
        ref = oracle(method, place)
        assert mine.dtype == np.float32 and mine.shape == ref.shape == (224, 224)
        diff = np.abs(mine - ref)
        print(f"{method} at {place}: max {diff.max():.3g}, mean {diff.mean():.3g}")
        assert diff.max() < 1e-2 and diff.mean() < 1e-3, (method, place, diff.max(), diff.mean())
        assert ref.max() > 0.99  # a real map, not a blank one that would match anything blank


def test_default_target_is_the_predicted_class_and_overlay_is_grad_cams(setup):
    from PIL import Image
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from onnxvis.engine.inspector import Inspector

    onnx_path, image, _, block, oracle, folder = setup
    out = folder / "out_default"
    done = call_onnxvis("cam", onnx_path, image, "--method", "eigen", "--tensor", block, "-o", out)
    assert done.returncode == 0, done.stderr
    (png,) = done.stdout.split()
    assert png.endswith(f"cam_eigen_skimage_chelsea_{block}.png")
    with Inspector(onnx_path) as insp:
        rgb = insp.prepare(image).rgb
    expected = show_cam_on_image(np.float32(rgb) / 255, oracle("eigen", "block"), use_rgb=True)
    drawn = np.asarray(Image.open(png))
    # the maps agree to ~1e-7, so at most a rounding step of the colour table apart
    assert drawn.shape == expected.shape and np.abs(drawn.astype(int) - expected).max() <= 4
    assert np.mean(drawn == expected) > 0.99


def test_road_imputation_equals_grad_cams():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from onnxvis.analysis.cam.metrics import noisy_linear_impute

    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 20, 24)).astype(np.float32)
    keep = np.float32(rng.uniform(size=(20, 24)) > 0.4)
    imputer = NoisyLinearImputer(noise=0.0)
    ref = imputer(torch.from_numpy(img), torch.from_numpy(keep)).numpy()
    mine = noisy_linear_impute(img, keep, noise=0.0)
    np.testing.assert_allclose(mine, ref, atol=1e-5)
    assert np.array_equal(mine[:, keep > 0], img[:, keep > 0])
