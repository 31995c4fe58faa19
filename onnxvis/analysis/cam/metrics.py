"""Is a class activation map right? grad-cam's forward-only metrics, run with onnxruntime.

- :func:`confidence_change`: grad-cam's ``CamMultImageConfidenceChange``: the target's score on the
  input multiplied by the map, minus its score on the input.
- :func:`road`: ROAD (Rong et al. 2022, grad-cam's ``ROADMostRelevantFirst`` and
  ``ROADLeastRelevantFirst``): the pixels above (or below) a percentile of the map are removed and
  filled by noisy linear imputation, then the score change is measured.
- :func:`deletion`: the plain check: set the hottest share of pixels to the image's mean and compare
  with deleting a random share.

The imputation solves a sparse linear system, as the ROAD authors' code that grad-cam ships does; it
needs scipy (``pip install 'onnxvis[cam]'``), imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam.runs import CamResult, class_scores
from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.engine.inspector import Inspector

__all__ = [
    "NEIGHBOURS", "ROAD_PERCENTILES", "check_road_available", "confidence_change", "deletion", "metrics_line",
    "noisy_linear_impute", "road",
]

ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)

# ROAD's weights of the 8 neighbours of a pixel (offset in rows, columns).
NEIGHBOURS = (
    ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
    ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
)  # fmt: skip


def check_road_available() -> None:
    """Raise the install hint now, before a long run, when scipy (ROAD's solver) is missing."""
    import importlib.util

    if importlib.util.find_spec("scipy") is None:
        raise OnnxvisError("ROAD's imputation needs scipy: pip install 'onnxvis[cam]'")


def noisy_linear_impute(img: np.ndarray, keep: np.ndarray, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """ROAD's noisy linear imputation: each removed pixel becomes the weighted mean of its neighbours
    (a sparse linear system over all removed pixels), plus Gaussian noise of std ``noise``.

    Args:
        img: (C, H, W) the model's input values.
        keep: (H, W), 1 where the pixel stays, 0 where it is removed.
        seed: seeds the noise (grad-cam draws it from torch's global generator).
    """
    try:
        from scipy.sparse import csc_matrix, lil_matrix  # type: ignore[import-untyped]
        from scipy.sparse.linalg import spsolve  # type: ignore[import-untyped]
    except ImportError:
        raise OnnxvisError("ROAD's imputation needs scipy: pip install 'onnxvis[cam]'") from None
    img = np.asarray(img, dtype=np.float32)
    keep = np.asarray(keep)
    if img.ndim != 3 or keep.shape != img.shape[1:]:
        raise OnnxvisError(f"ROAD needs an image (C, H, W) and a mask (H, W) of its size, got {img.shape} and {keep.shape}")
    flat_keep = keep.reshape(-1)
    flat_img = img.reshape(img.shape[0], -1)
    removed = np.argwhere(flat_keep == 0).flatten()
    if removed.size == 0:
        return img.copy()
    if removed.size == flat_keep.size:
        raise OnnxvisError("ROAD removes every pixel at this percentile; choose a percentile that keeps some")
    height, width = keep.shape
    variable = np.zeros(flat_keep.size, dtype=int)
    variable[removed] = np.arange(removed.size)
    system = lil_matrix((removed.size, removed.size))
    rhs = np.zeros((removed.size, img.shape[0]))
    weight_sum = np.ones(removed.size)
    for (dy, dx), weight in NEIGHBOURS:
        row, col = removed // width + dy, removed % width + dx
        valid = ~((row < 0) | (col < 0) | (row >= height) | (col >= width))
        target = (removed + dy * width + dx)[valid]
        ids = np.argwhere(valid).flatten()
        known = flat_keep[target] > 0.5
        rhs[ids[known], :] -= weight * flat_img[:, target[known]].T
        system[ids[~known], variable[target[~known]]] = weight
        weight_sum[~valid] -= weight
    system[np.arange(removed.size), np.arange(removed.size)] = -weight_sum
    solution = np.asarray(spsolve(csc_matrix(system), rhs), dtype=np.float32).reshape(removed.size, -1)
    out = flat_img.copy()
    rng = np.random.default_rng(seed)
    out[:, removed] = solution.T + np.float32(noise) * rng.standard_normal(solution.T.shape).astype(np.float32)
    return out.reshape(img.shape)


def _chw(array: np.ndarray, layout: str) -> np.ndarray:
    first = np.asarray(array[0], dtype=np.float32)
    return first if layout == "NCHW" else np.moveaxis(first, -1, 0)


def _batch(chws: Sequence[np.ndarray], layout: str, dtype: np.dtype) -> np.ndarray:
    stacked = np.stack(chws)
    if layout == "NHWC":
        stacked = np.moveaxis(stacked, 1, -1)
    return np.ascontiguousarray(stacked).astype(dtype)


def _scores(insp: Inspector, output: str, target: int, batch: np.ndarray) -> np.ndarray:
    value = insp.run_arrays({insp.image_input.name: batch}, [output])[output]
    return class_scores(value, insp.image_input.layout)[:, target]


def confidence_change(insp: Inspector, result: CamResult, output: str | None = None) -> float:
    """grad-cam's CamMultImageConfidenceChange: score(input x map) - score(input)."""
    output = insp.class_output(output)
    layout = insp.image_input.layout
    img = _chw(result.input, layout)
    scores = _scores(insp, output, result.target, _batch([img, img * result.cam[None]], layout, result.input.dtype))
    return float(scores[1] - scores[0])


def road(
    insp: Inspector,
    result: CamResult,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    output: str | None = None,
    seed: int = 0,
) -> dict[str, dict[float, float]]:
    """ROAD's score changes, as grad-cam defines them, for each percentile p.

    ``"morf"`` (most relevant first, grad-cam's ROADMostRelevantFirst(p)) removes the pixels whose map
    value is at or above its p-th percentile (the top (100 - p)%); ``"lerf"`` (ROADLeastRelevantFirst(p))
    does the same on 1 - map: it keeps the p% most relevant pixels and removes the rest. A good map:
    the score drops under morf and stays under lerf.
    """
    output = insp.class_output(output)
    layout = insp.image_input.layout
    img = _chw(result.input, layout)
    out: dict[str, dict[float, float]] = {"morf": {}, "lerf": {}}
    for kind, values in (("morf", result.cam), ("lerf", 1 - result.cam)):
        batch = [img]
        for p in percentiles:
            if not 0 < float(p) < 100:
                raise OnnxvisError(f"ROAD percentiles must be between 0 and 100, got {p}")
            keep = (values < np.percentile(values, p)).astype(np.float32)
            batch.append(noisy_linear_impute(img, keep, seed=seed))
        scores = _scores(insp, output, result.target, _batch(batch, layout, result.input.dtype))
        out[kind] = {float(p): float(s - scores[0]) for p, s in zip(percentiles, scores[1:], strict=True)}
    return out


def _hottest(values: np.ndarray, count: int) -> np.ndarray:
    mask = np.zeros(values.size, bool)
    mask[np.argsort(values.reshape(-1), kind="stable")[::-1][:count]] = True
    return mask.reshape(values.shape)


def deletion(
    insp: Inspector,
    result: CamResult,
    share: float = 0.2,
    output: str | None = None,
    seed: int = 0,
    baseline: str = "blobs",
) -> tuple[float, float]:
    """The target's score drop when the hottest ``share`` of the pixels are set to the image's
    per-channel mean, and when a random ``share`` are: (hottest drop, random drop).

    ``baseline`` picks the random pixels: "pixels", scattered one by one (a harsh baseline: scattered
    holes hurt a CNN more than one hole of the same area), or "blobs", the hottest share of a random
    map at the activations' resolution, resized as a CAM is (holes of the CAM's own coarseness).
    """
    from onnxvis.analysis.cam.maths import finish

    if not 0 < share < 1:
        raise OnnxvisError(f"the share of pixels to delete must be between 0 and 1, got {share}")
    if baseline not in ("pixels", "blobs"):
        raise OnnxvisError(f"the deletion baseline is 'pixels' or 'blobs', got {baseline!r}")
    output = insp.class_output(output)
    layout = insp.image_input.layout
    img = _chw(result.input, layout)
    mean = img.mean(axis=(1, 2), keepdims=True)
    count = round(share * result.cam.size)
    rng = np.random.default_rng(seed)
    if baseline == "pixels":
        noise = rng.permutation(result.cam.size).reshape(result.cam.shape).astype(np.float32)
    else:
        noise = finish(rng.uniform(size=result.activations.shape[1:]).astype(np.float32), result.cam.shape)
    deleted = [np.where(mask[None], mean, img) for mask in (_hottest(result.cam, count), _hottest(noise, count))]
    scores = _scores(insp, output, result.target, _batch([img, *deleted], layout, result.input.dtype))
    return float(scores[0] - scores[1]), float(scores[0] - scores[2])


def metrics_line(insp: Inspector, result: CamResult, percentiles: Sequence[float] = ROAD_PERCENTILES, output: str | None = None) -> str:
    """One line for ``onnxvis cam --metrics``: the confidence change, ROAD's score changes at each
    percentile, and ROAD combined ((mean least-relevant-first - mean most-relevant-first) / 2, as
    grad-cam's ROADCombined)."""
    scores = road(insp, result, percentiles, output)
    morf, lerf = scores["morf"], scores["lerf"]
    combined = (np.mean(list(lerf.values())) - np.mean(list(morf.values()))) / 2
    return (
        f"{result.image.name} {result.place.label} class {result.target}: confidence change "
        f"{confidence_change(insp, result, output):+.4g}; ROAD most-relevant-first "
        + " ".join(f"{p:g}:{v:+.4g}" for p, v in morf.items())
        + "; least-relevant-first " + " ".join(f"{p:g}:{v:+.4g}" for p, v in lerf.items())
        + f"; combined {combined:+.4g}"
    )
