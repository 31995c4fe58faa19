"""Parity with torch-lucent 0.1.8 (the reference, full environment): the image parameterisation and its gradient,
the transforms with the same random draws, and Lucid's diversity objective."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
lucent_param = pytest.importorskip("lucent.optvis.param", reason="torch-lucent 0.1.8 is not installed")
from lucent.optvis import objectives as lucent_objectives  # noqa: E402
from lucent.optvis import transform as lucent_transform  # noqa: E402

from onnxvis.analysis.features import maths as fm  # noqa: E402

pytestmark = pytest.mark.full


@pytest.mark.parametrize("size", [128, 31])
def test_image_and_its_gradient_match_lucent(size: int) -> None:
    params, image_f = lucent_param.image(size, batch=2)
    rng = np.random.default_rng(0)
    spectrum = params[0].detach().numpy() * 0 + rng.standard_normal(params[0].shape).astype(np.float32) * 0.3
    with torch.no_grad():
        params[0].copy_(torch.from_numpy(spectrum))
    theirs = image_f()
    fourier = fm.FourierImage(size, size)
    mine = fm.sigmoid(fm.decorrelate(fourier.forward(spectrum)))
    assert np.allclose(mine, theirs.detach().numpy(), atol=1e-5)
    weights = rng.standard_normal(mine.shape).astype(np.float32)
    (theirs * torch.from_numpy(weights)).sum().backward()
    grad = fourier.adjoint(fm.decorrelate_adjoint(fm.sigmoid_adjoint(mine, weights)))
    ref = params[0].grad.numpy()
    assert np.abs(grad - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("seed", range(6))
def test_transforms_match_lucent_with_the_same_draws(seed: int, monkeypatch) -> None:
    rng = np.random.default_rng(seed)
    image = rng.uniform(size=(1, 3, 64, 64)).astype(np.float32)
    step = fm.Step.draw(np.random.default_rng(seed))
    # Lucent draws with np.random.choice in its order: jitter dx, dy; scale; angle; jitter dx, dy
    draws = iter([step.jitter_first[1], step.jitter_first[0], step.scale, step.angle, step.jitter_last[1], step.jitter_last[0]])
    monkeypatch.setattr(lucent_transform.np.random, "choice", lambda options: next(draws))
    # The one deviation: kornia 0.4.1's translate (under Lucent's jitter) moves by d * (n - 1) / n pixels, bilinear
    # (its align_corners mismatch), onnxvis by exactly d; compared here with Lucent's jitter made exact.
    def exact(image_t, shift):
        dx, dy = (int(v) for v in shift[0].tolist())
        return torch.from_numpy(fm._translate(image_t.numpy(), dy, dx))

    monkeypatch.setattr(lucent_transform, "translate", exact)
    compose = lucent_transform.compose(lucent_transform.standard_transforms)
    upsample = torch.nn.Upsample(size=96, mode="bilinear", align_corners=True)
    theirs = upsample(compose(torch.from_numpy(image))).numpy()[0]
    mine = fm.Transforms((64, 64), (96, 96), step).forward(image[0])
    assert mine.shape == theirs.shape
    assert np.abs(mine - theirs).max() < 1e-4, (step, np.abs(mine - theirs).max())


def test_diversity_matches_lucent() -> None:
    rng = np.random.default_rng(5)
    acts = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    loss = lucent_objectives.diversity("layer")(lambda name: torch.from_numpy(acts))
    value, _ = fm.diversity(acts, [0, 0, 0])
    # Lucent's objective is minus the sum of the pairwise similarities over the batch
    assert float(loss) == pytest.approx(-value / 3, rel=1e-5)
