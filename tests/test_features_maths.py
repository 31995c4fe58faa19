"""Feature visualisation's numpy steps: each adjoint against finite differences (and <Ax, y> = <x, A^T y>)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxvis.analysis.features import maths as fm


def _check_adjoint(forward, adjoint, x: np.ndarray, rng: np.random.Generator, eps: float = 1e-6, probes: int = 6) -> None:
    """The adjoint's dot test, and central finite differences of <forward(x), g> along random directions."""
    y = forward(x)
    g = rng.standard_normal(y.shape)
    back = adjoint(g)
    assert back.shape == x.shape
    for _ in range(probes):
        d = rng.standard_normal(x.shape)
        numeric = ((forward(x + eps * d) * g).sum() - (forward(x - eps * d) * g).sum()) / (2 * eps)
        assert numeric == pytest.approx((back * d).sum(), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("h,w", [(8, 8), (7, 9), (6, 5), (16, 12)])
def test_fourier_image_adjoint(h: int, w: int) -> None:
    rng = np.random.default_rng(h * w)
    image = fm.FourierImage(h, w)
    x = image.init(rng, 2).astype(np.float64) * 100
    _check_adjoint(image.forward, image.adjoint, x, rng)


def test_fourier_image_matches_lucent_scale() -> None:
    # Lucent's scale: 1 / max(f, 1 / max(h, w)); the DC term gets max(h, w)
    image = fm.FourierImage(128, 128)
    assert image.param_shape == (128, 65, 2)
    assert image.scale[0, 0] == pytest.approx(128)
    assert image.scale[0, 1] == pytest.approx(128)  # f = 1/128
    assert image.scale[0, 64] == pytest.approx(2)  # f = 0.5


def test_colour_and_sigmoid_adjoints() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4))
    _check_adjoint(fm.decorrelate, fm.decorrelate_adjoint, x, rng)
    _check_adjoint(fm.sigmoid, lambda g: fm.sigmoid_adjoint(fm.sigmoid(x), g), x, rng)
    # Lucent's matrix, normalised by its largest column norm
    assert np.linalg.norm(fm.COLOR_CORRELATION, axis=0).max() == pytest.approx(1)
    assert fm.COLOR_CORRELATION[0, 0] == pytest.approx(0.26 / np.linalg.norm([0.26, 0.27, 0.27]), rel=1e-6)


@pytest.mark.parametrize(
    "step",
    [
        None,
        fm.Step(),
        fm.Step((3, 5), 0.9, 7.0, (1, 2)),
        fm.Step((7, 0), 1.1, -10.0, (3, 3)),
        fm.Step((0, 6), 0.94, 3.0, (0, 1)),
    ],
)
def test_transforms_adjoint(step: fm.Step | None) -> None:
    rng = np.random.default_rng(1)
    t = fm.Transforms((20, 20), (33, 33), step)
    x = rng.uniform(size=(3, 20, 20))
    # the transforms are affine (the pad's 0.5): their derivative is the linear part
    linear = lambda v: t.forward(v) - t.forward(np.zeros_like(v))  # noqa: E731
    _check_adjoint(linear, t.adjoint, x, rng)
    assert t.forward(x).shape == (3, 33, 33)


def test_rotation_sampler_adjoint_and_direction() -> None:
    rng = np.random.default_rng(2)
    ys, xs = fm._rotation_points(9, 11, 7.0)
    sampler = fm._Sampler((9, 11), ys, xs)
    _check_adjoint(sampler.forward, sampler.adjoint, rng.standard_normal((2, 9, 11)), rng)
    # 90 degrees, OpenCV's sense (counter-clockwise on the screen): the top row goes to the left column
    ys, xs = fm._rotation_points(5, 5, 90.0)
    image = np.zeros((1, 5, 5))
    image[0, 0, :] = 1
    turned = fm._Sampler((5, 5), ys, xs).forward(image)
    assert np.allclose(turned[0, :, 0], 1) and np.allclose(turned[0, :, 1:], 0)


def test_resize_matrix_is_torch_align_corners() -> None:
    m = fm.resize_matrix(3, 5)
    assert np.allclose(m @ np.array([0.0, 1.0, 2.0]), [0, 0.5, 1, 1.5, 2])
    assert np.allclose(m.sum(axis=1), 1)


def test_translate_is_kornia_direction() -> None:
    image = np.arange(16.0).reshape(1, 4, 4)
    moved = fm._translate(image, 1, 2)  # dy=1, dx=2: content moves down and right
    assert moved[0, 1, 2] == image[0, 0, 0] and moved[0, 0].sum() == 0 and moved[0, :, :2].sum() == 0


def test_diversity_gradient() -> None:
    rng = np.random.default_rng(3)
    acts = rng.standard_normal((4, 3, 5, 5))
    groups = [0, 0, 1, 1]

    def value(a: np.ndarray) -> np.ndarray:
        return np.asarray(fm.diversity(a, groups)[0])

    _, grad = fm.diversity(acts, groups)
    for _ in range(5):
        d = rng.standard_normal(acts.shape)
        eps = 1e-6
        numeric = (value(acts + eps * d) - value(acts - eps * d)) / (2 * eps)
        assert numeric == pytest.approx((grad.astype(np.float64) * d).sum(), rel=1e-4, abs=1e-6)
    # identical rows are as similar as can be: 2 per pair of a group (each pair counted twice)
    same = np.repeat(acts[:1], 2, axis=0)
    assert fm.diversity(same, [0, 0])[0] == pytest.approx(2)


def test_seeds() -> None:
    seed = fm.channel_seed((2, 4, 3, 5), [1, 3])
    assert seed[0, 1].sum() == pytest.approx(1) and seed[1, 3].sum() == pytest.approx(1) and seed.sum() == pytest.approx(2)
    seed = fm.neuron_seed((1, 4, 6, 7), [2])
    assert seed[0, 2, 3, 3] == 1 and seed.sum() == 1


def test_adam_matches_torch_formula() -> None:
    # torch.optim.Adam's first steps by hand: the first step moves every parameter by lr (sign of the gradient)
    p = np.zeros(3, np.float64)
    adam = fm.Adam(p, lr=0.05)
    out = adam.step(np.array([2.0, -0.5, 1e-3]))
    assert np.allclose(out, [-0.05, 0.05, -0.05], rtol=1e-4)


@pytest.mark.full
def test_adam_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    start = rng.standard_normal(10)
    t = torch.tensor(start, requires_grad=True)
    opt = torch.optim.Adam([t], lr=0.05)
    adam = fm.Adam(start.copy(), lr=0.05)
    for _ in range(20):
        grad = rng.standard_normal(10)
        opt.zero_grad()
        t.grad = torch.tensor(grad)
        opt.step()
        adam.step(grad)
    assert np.allclose(adam.params, t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_high_frequency_share() -> None:
    y, x = np.mgrid[0:64, 0:64]
    smooth = np.sin(2 * np.pi * x / 32.0)
    checker = ((x + y) % 2).astype(float)
    assert fm.high_frequency_share(smooth) < 1e-6
    assert fm.high_frequency_share(checker) == pytest.approx(1)
