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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam.runs import CamResult, class_scores, is_runtime_failure, runtime_reason
from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.engine.inspector import Inspector

__all__ = [
    "NEIGHBOURS", "ROAD_PERCENTILES", "Road", "check_percentiles", "check_road_available", "confidence_change", "deletion",
    "metrics_line", "noisy_linear_impute", "road",
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
    rng = np.random.default_rng(seed)
    if removed.size == 0:
        return img.copy()
    if removed.size == flat_keep.size:
        # Nothing is kept (a map whose zeros pass the percentile): no pixel is known, the system's
        # right-hand side is 0, and grad-cam's solver gives 0 everywhere; the image is the noise alone.
        return (np.float32(noise) * rng.standard_normal(img.shape).astype(np.float32)).astype(np.float32)
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


def check_percentiles(percentiles: Sequence[float]) -> None:
    """Refuse ROAD percentiles outside (0, 100), before a run (:func:`road` checks them too)."""
    if not percentiles:
        raise OnnxvisError("ROAD needs at least one percentile", setting="percentiles")
    for p in percentiles:
        if not 0 < float(p) < 100:
            raise OnnxvisError(f"ROAD percentiles must be between 0 and 100, got {p:g}", setting="percentiles")


@dataclass(frozen=True)
class Road:
    """ROAD's score changes at each percentile: ``morf`` (most relevant first) and ``lerf`` (least
    relevant first), percentile -> the imputed image's score minus the image's; None where ROAD is
    undefined, and ``undefined`` says why: (kind, percentile) -> the reason."""

    morf: dict[float, float | None]
    lerf: dict[float, float | None]
    undefined: dict[tuple[str, float], str] = field(default_factory=dict)

    @property
    def combined(self) -> float | None:
        """grad-cam's ROADCombined: (mean lerf - mean morf) / 2; None when a percentile is undefined
        (grad-cam's is NaN then)."""
        values = [*self.morf.values(), *self.lerf.values()]
        if any(v is None for v in values):
            return None
        return float((np.mean(list(self.lerf.values())) - np.mean(list(self.morf.values()))) / 2)


def road(
    insp: Inspector,
    result: CamResult,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    output: str | None = None,
    seed: int = 0,
    noise: float = 0.01,
) -> Road:
    """ROAD's score changes, as grad-cam defines them, for each percentile p.

    ``"morf"`` (most relevant first, grad-cam's ROADMostRelevantFirst(p)) removes the pixels whose map
    value is at or above its p-th percentile (the top (100 - p)%); ``"lerf"`` (ROADLeastRelevantFirst(p))
    does the same on 1 - map: it keeps the p% most relevant pixels and removes the rest. A good map:
    the score drops under morf and stays under lerf.

    A map that is mostly zeros removes every pixel at a low percentile of morf (its threshold is 0
    and no value is below it): the imputed image is then the noise alone, as in grad-cam. A
    percentile is undefined when the model's score on its imputed image is not a finite number, or
    the model does not run on it; the other percentiles are still given.
    """
    check_percentiles(percentiles)
    output = insp.class_output(output)
    layout = insp.image_input.layout
    img = _chw(result.input, layout)
    changes: dict[str, dict[float, float | None]] = {"morf": {}, "lerf": {}}
    undefined: dict[tuple[str, float], str] = {}
    for kind, values in (("morf", result.cam), ("lerf", 1 - result.cam)):
        imputed = [
            noisy_linear_impute(img, (values < np.percentile(values, p)).astype(np.float32), noise=noise, seed=seed) for p in percentiles
        ]
        scores, failed = _scores_each(insp, output, result.target, [img, *imputed], layout, result.input.dtype)
        if 0 in failed:  # the image itself (not imputed): nothing to compare with
            raise OnnxvisError(failed[0].replace("the imputed image", "the image"))
        for i, p in enumerate(percentiles, start=1):
            if not np.all(np.isfinite(imputed[i - 1])):  # the sparse solver found no solution
                reason = "the imputation has no finite solution"
            elif i in failed:
                reason = failed[i]
            elif not (np.isfinite(scores[i]) and np.isfinite(scores[0])):
                reason = "the model's score on the imputed image is not a finite number"
            else:
                reason = ""
            changes[kind][float(p)] = None if reason else float(scores[i] - scores[0])
            if reason:
                undefined[(kind, float(p))] = reason
    return Road(changes["morf"], changes["lerf"], undefined)


def _scores_each(
    insp: Inspector, output: str, target: int, images: Sequence[np.ndarray], layout: str, dtype: np.dtype
) -> tuple[np.ndarray, dict[int, str]]:
    """The target's score on each (C, H, W) image, in one batch; when onnxruntime refuses it, image
    by image: then (scores, index -> why that image has none, its score NaN)."""
    try:
        return _scores(insp, output, target, _batch(images, layout, dtype)), {}
    except OnnxvisError as exc:
        if not is_runtime_failure(exc):
            raise
    scores = np.full(len(images), np.nan, dtype=np.float32)
    failed: dict[int, str] = {}
    for i, image in enumerate(images):
        try:
            scores[i] = _scores(insp, output, target, _batch([image], layout, dtype))[0]
        except OnnxvisError as exc:
            if not is_runtime_failure(exc):
                raise
            failed[i] = f"the model does not run on the imputed image: {runtime_reason(exc)}"
    return scores, failed


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


_KINDS = {"morf": "most-relevant-first", "lerf": "least-relevant-first"}


def metrics_line(insp: Inspector, result: CamResult, percentiles: Sequence[float] = ROAD_PERCENTILES, output: str | None = None) -> str:
    """One line for ``onnxvis cam --metrics``: the confidence change, ROAD's score changes at each
    percentile, and ROAD combined ((mean least-relevant-first - mean most-relevant-first) / 2, as
    grad-cam's ROADCombined); a percentile where ROAD is undefined is said so, with why."""
    scores = road(insp, result, percentiles, output)

    def changes(values: dict[float, float | None]) -> str:
        return " ".join(f"{p:g}:" + ("undefined" if v is None else f"{v:+.4g}") for p, v in values.items())

    combined = scores.combined
    line = (
        f"{result.image.name} {result.place.label} class {result.target}: confidence change "
        f"{confidence_change(insp, result, output):+.4g}; ROAD most-relevant-first {changes(scores.morf)}"
        f"; least-relevant-first {changes(scores.lerf)}"
        f"; combined {'undefined' if combined is None else f'{combined:+.4g}'}"
    )
    by_reason: dict[str, dict[str, list[str]]] = {}
    for (kind, p), reason in scores.undefined.items():
        by_reason.setdefault(reason, {}).setdefault(kind, []).append(f"{p:g}")
    for reason, kinds in by_reason.items():
        where = " and ".join(f"{_KINDS[kind]} {', '.join(ps)}" for kind, ps in kinds.items())
        line += f"; ROAD is undefined at {where}: {reason}"
    return line
