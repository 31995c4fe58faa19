"""Gradient attributions of a model's class score to its input pixels, as Captum computes them, from the ONNX file.

- ``gradient``: the gradient of the class score with respect to the input (Captum's ``Saliency`` with
  ``abs=False``);
- ``input-x-gradient``: the input times that gradient (``InputXGradient``);
- ``integrated-gradients``: ``(x - baseline)`` times the gradient averaged along the straight path from
  the baseline to ``x``, with Captum's Gauss-Legendre quadrature of ``steps`` points
  (``IntegratedGradients``, its default ``gausslegendre`` method);
- ``smoothgrad``: the gradient averaged over ``samples`` copies of the input with Gaussian noise of
  standard deviation ``noise`` (Captum's ``NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"``,
  ``abs=False``).

Everything is in the model input's own units and layout: the attribution has the shape of the model
input without its batch axis. The gradients come from :meth:`onnxvis.engine.inspector.Inspector.gradients`
(one onnxruntime session, forward and backward); the steps and samples of one image run together, in
batches. The score is the class score before a final Softmax (the logits).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam.runs import class_scores, target_index
from onnxvis.engine.gradients import score_seeds
from onnxvis.engine.inspector import map_images
from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.engine.gradients import GradientGraph
    from onnxvis.engine.inspector import Inspector, Prepared

__all__ = [
    "BASELINES", "METHODS", "SaliencyResult", "attribute", "baseline_for", "gauss_legendre", "heat_map", "integrated_gradients",
]

METHODS = ("gradient", "input-x-gradient", "integrated-gradients", "smoothgrad")
BASELINES = ("zero", "black", "blur")
# Captum's defaults: IntegratedGradients' n_steps, NoiseTunnel's nt_samples and stdevs.
STEPS = 50
SAMPLES = 5
NOISE = 1.0


@dataclass(frozen=True)
class SaliencyResult:
    """One image's attribution.

    Attributes:
        attribution: float32, the model input's shape without the batch axis, in its layout.
        score: the target's score on the image (before a final Softmax).
        rgb: the photo after resize/crop, uint8 (H, W, 3), to draw the heat map on.
        input: the array fed to the model (batch 1, float32, its layout).
        layout: "NCHW" or "NHWC".
        notes: what the gradient engine changed to differentiate the model (said once to the user).
    """

    image: Path
    method: str
    target: int
    target_label: str | None
    score: float
    attribution: np.ndarray
    rgb: np.ndarray
    input: np.ndarray
    layout: str
    notes: tuple[str, ...] = field(default=())


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Captum's Gauss-Legendre rule on [0, 1]: (step sizes, alphas), float64, ``steps`` of each."""
    if steps < 1:
        raise OnnxvisError(f"integrated gradients need 1 step or more, got {steps}", setting="steps")
    points, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * weights, 0.5 * (1 + points)


def integrated_gradients(x: np.ndarray, baseline: np.ndarray, gradients: np.ndarray, step_sizes: np.ndarray) -> np.ndarray:
    """``(x - baseline) * sum_i step_i * grad_i``, as Captum: the steps' gradients (steps, ...) weighted in float32."""
    weighted = gradients.reshape(len(step_sizes), -1) * step_sizes.astype(np.float32)[:, None]
    total = weighted.sum(axis=0).reshape(x.shape)
    return (total * (x - baseline)).astype(np.float32)


def baseline_for(prepared: Prepared, kind: str, layout: str) -> np.ndarray:
    """The integrated gradients' starting point, batch 1 in the model's layout, float32.

    ``zero``: zeros in the model input's space (Captum's default); ``black``: a black photo through the
    same preprocessing; ``blur``: the photo blurred (Gaussian, radius a tenth of its shorter side), then
    preprocessed.
    """
    from onnxvis.image import preprocess as pp

    array = np.asarray(prepared.array[:1], dtype=np.float32)
    if kind == "zero":
        return np.zeros_like(array)
    if kind not in BASELINES:
        raise OnnxvisError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}", setting="baseline")
    rgb = prepared.rgb
    if kind == "black":
        pixels = np.zeros_like(rgb)
    else:
        from PIL import Image, ImageFilter

        radius = max(1.0, min(rgb.shape[:2]) / 10)
        pixels = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)), dtype=np.uint8)
    chosen = prepared.preprocess
    if chosen.channels == 1:
        pixels = pixels[..., 0]
    return pp.to_layout(pp.normalize(pixels, chosen), layout, np.float32)


def _cumulative_sum_threshold(values: np.ndarray, percentile: float) -> float:
    """Captum's visualisation threshold: the value where the sorted values' running sum reaches ``percentile`` % of their sum."""
    ordered = np.sort(values.reshape(-1))
    sums = np.cumsum(ordered)
    return float(ordered[np.where(sums >= sums[-1] * 0.01 * percentile)[0][0]])


def heat_map(attribution: np.ndarray, layout: str = "NCHW", outlier_perc: float = 2) -> np.ndarray:
    """The attribution as a (H, W) map in [0, 1], as Captum's ``visualize_image_attr`` scales it for
    ``sign="absolute_value"``: summed over the channels, absolute value, divided by the value below
    which the sorted values hold ``100 - outlier_perc`` % of the total, clipped (0 everywhere when the
    attribution is 0)."""
    attribution = np.asarray(attribution, dtype=np.float64)
    if attribution.ndim != 3:
        raise OnnxvisError(f"a heat map needs an attribution of shape (C, H, W) or (H, W, C), got {attribution.shape}")
    summed = np.abs(attribution.sum(axis=0 if layout == "NCHW" else 2))
    if not np.any(summed):
        return np.zeros(summed.shape, np.float32)
    threshold = _cumulative_sum_threshold(summed, 100.0 - outlier_perc)
    if threshold == 0:
        threshold = float(summed.max())
    return np.clip(summed / threshold, 0, 1).astype(np.float32)


def _check(method: str, steps: int, samples: int, noise: float) -> None:
    if method not in METHODS:
        raise OnnxvisError(f"unknown saliency method {method!r}; choose from {', '.join(METHODS)}", setting="method")
    if steps < 1:
        raise OnnxvisError(f"integrated gradients need 1 step or more, got {steps}", setting="steps")
    if samples < 1:
        raise OnnxvisError(f"SmoothGrad needs 1 sample or more, got {samples}", setting="samples")
    if not (math.isfinite(noise) and noise >= 0):
        raise OnnxvisError(f"the noise must be a standard deviation of 0 or more, got {noise}", setting="noise")


def _rows(count: int, batch_size: int) -> int:
    """Rows per run that split ``count`` evenly into as few runs as ``batch_size`` allows (50 steps
    at 16: 4 runs of 13, not 16, 16, 16 and 2 padded to 16)."""
    runs = math.ceil(count / max(1, batch_size))
    return max(1, math.ceil(count / runs))


def attribute(
    insp: Inspector,
    images: Iterable,
    method: str = "gradient",
    target: int | str | None = None,
    output: str | None = None,
    steps: int = STEPS,
    baseline: str = "zero",
    samples: int = SAMPLES,
    noise: float = NOISE,
    seed: int = 0,
    batch_size: int = 16,
) -> Iterator[SaliencyResult]:
    """Each image's attribution to the target class (default: the predicted class).

    Args:
        insp: the model's Inspector.
        images: photos (paths or PIL images), streamed.
        method: one of :data:`METHODS`.
        target: a class index or label.
        output: the scores output (default the class output).
        steps: integrated gradients' quadrature points.
        baseline: integrated gradients' starting point (:func:`baseline_for`).
        samples: SmoothGrad's noisy copies.
        noise: SmoothGrad's standard deviation, in the model input's units.
        seed: SmoothGrad's random seed (numpy's default generator, one per image, in order).
        batch_size: inputs per onnxruntime run (steps and samples of one image run together).

    Raises:
        OnnxvisError: a bad setting, a target out of range, or a model that cannot be differentiated.
    """
    _check(method, steps, samples, noise)
    if baseline not in BASELINES:
        raise OnnxvisError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}", setting="baseline")
    output = insp.class_output(output)
    spec = insp.image_input
    rng = np.random.default_rng(seed)
    count = {"integrated-gradients": steps, "smoothgrad": samples}.get(method, 1)
    rows = _rows(count, batch_size)

    def one(prepared: Prepared) -> SaliencyResult:
        x = np.asarray(prepared.array[:1], dtype=np.float32)
        graph = insp.gradients([spec.name], output, x.shape[1:], rows=rows)
        if graph.rows == 1:  # the gradient graph's own forward pass, with no seed
            scores_value = graph.forward(x)
        else:  # not the graph's rows padded with copies: one forward pass of the image
            scores_value = insp.run_arrays({spec.name: prepared.array[:1]}, [graph.score.tensor])[graph.score.tensor]
        scores = class_scores(scores_value, spec.layout, graph.score.axis)[0]
        index = target_index(target, scores, insp.labels)
        label = insp.labels[index] if insp.labels and index < len(insp.labels) else None
        attribution = _attribution(graph, method, x, index, prepared, baseline, steps, samples, noise, rng, spec.layout)
        return SaliencyResult(
            image=prepared.image, method=method, target=index, target_label=label, score=float(scores[index]),
            attribution=attribution[0], rgb=prepared.rgb, input=x, layout=spec.layout, notes=tuple(graph.notes),
        )

    return map_images(one, images, insp)


def _gradients(graph: GradientGraph, inputs: np.ndarray, index: int, layout: str) -> np.ndarray:
    shape = graph.shapes[graph.score.tensor]
    seeds = score_seeds((len(inputs), *shape[1:]), np.full((len(inputs), 1), index), layout, graph.score.axis)
    return graph.run(inputs, seeds).gradients[graph.input_name][..., 0]


def _attribution(
    graph: GradientGraph,
    method: str,
    x: np.ndarray,
    index: int,
    prepared: Prepared,
    baseline: str,
    steps: int,
    samples: int,
    noise: float,
    rng: np.random.Generator,
    layout: str,
) -> np.ndarray:
    if method == "gradient":
        return _gradients(graph, x, index, layout)
    if method == "input-x-gradient":
        return (x * _gradients(graph, x, index, layout)).astype(np.float32)
    if method == "integrated-gradients":
        start = baseline_for(prepared, baseline, layout)
        step_sizes, alphas = gauss_legendre(steps)
        path = np.concatenate([start + np.float32(a) * (x - start) for a in alphas]).astype(np.float32)
        return integrated_gradients(x, start, _gradients(graph, path, index, layout), step_sizes)
    noisy = (x + rng.normal(0.0, noise, size=(samples, *x.shape[1:]))).astype(np.float32)
    return _gradients(graph, noisy, index, layout).mean(axis=0, keepdims=True).astype(np.float32)
