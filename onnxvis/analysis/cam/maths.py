"""Class activation maps from forward passes only: the arithmetic, with no model in it.

Every function here follows pytorch-grad-cam 1.5.x (``pytorch_grad_cam``) step for step, so that
the maps equal its maps on the same activations and scores; the reference's own rules are kept even
where they look odd (they are marked "as grad-cam"). Activations are one image's (C, h, w), channels
first. The forward passes are the caller's: ScoreCAM and AblationCAM take a function that scores a
batch (see :mod:`onnxvis.analysis.cam.runs`, which runs them with onnxruntime and lists the methods).

A method gives a raw (h, w) map; :func:`finish` turns it into grad-cam's output: ReLU, min-max,
OpenCV's bilinear resize to the input size, ReLU and min-max again (its ``aggregate_multi_layers``
over one layer).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxvis.errors import OnnxvisError

__all__ = [
    "JET",
    "ScoreFn",
    "ablation_cam_weights",
    "ablation_values",
    "eigen_projection",
    "fem_map",
    "finish",
    "kpca_projection",
    "overlay",
    "resize_bilinear",
    "scale_cam_image",
    "score_cam_weights",
    "score_masks",
    "upsample_align_corners",
    "weighted_sum",
]

# A batch of arrays in -> the target's score for each, shape (N,).
ScoreFn = Callable[[np.ndarray], np.ndarray]

# OpenCV's COLORMAP_JET (cv2.applyColorMap on 0..255), as RGB: grad-cam's default colour map.
_JET_HEX = (
    "00008000008400008800008c00009000009400009800009c0000a00000a40000a80000ac0000b00000b40000b80000bc"
    "0000c00000c40000c80000cc0000d00000d40000d80000dc0000e00000e40000e80000ec0000f00000f40000f80000fc"
    "0000ff0004ff0008ff000cff0010ff0014ff0018ff001cff0020ff0024ff0028ff002cff0030ff0034ff0038ff003cff"
    "0040ff0044ff0048ff004cff0050ff0054ff0058ff005cff0060ff0064ff0068ff006cff0070ff0074ff0078ff007cff"
    "0080ff0084ff0088ff008cff0090ff0094ff0098ff009cff00a0ff00a4ff00a8ff00acff00b0ff00b4ff00b8ff00bcff"
    "00c0ff00c4ff00c8ff00ccff00d0ff00d4ff00d8ff00dcff00e0ff00e4ff00e8ff00ecff00f0ff00f4ff00f8ff00fcff"
    "02fffe06fffa0afff60efff212ffee16ffea1affe61effe222ffde26ffda2affd62effd232ffce36ffca3affc63effc2"
    "42ffbe46ffba4affb64effb252ffae56ffaa5affa65effa262ff9e66ff9a6aff966eff9272ff8e76ff8a7aff867eff82"
    "82ff7e86ff7a8aff768eff7292ff6e96ff6a9aff669eff62a2ff5ea6ff5aaaff56aeff52b2ff4eb6ff4abaff46beff42"
    "c2ff3ec6ff3acaff36ceff32d2ff2ed6ff2adaff26deff22e2ff1ee6ff1aeaff16eeff12f2ff0ef6ff0afaff06feff01"
    "fffc00fff800fff400fff000ffec00ffe800ffe400ffe000ffdc00ffd800ffd400ffd000ffcc00ffc800ffc400ffc000"
    "ffbc00ffb800ffb400ffb000ffac00ffa800ffa400ffa000ff9c00ff9800ff9400ff9000ff8c00ff8800ff8400ff8000"
    "ff7c00ff7800ff7400ff7000ff6c00ff6800ff6400ff6000ff5c00ff5800ff5400ff5000ff4c00ff4800ff4400ff4000"
    "ff3c00ff3800ff3400ff3000ff2c00ff2800ff2400ff2000ff1c00ff1800ff1400ff1000ff0c00ff0800ff0400ff0000"
    "fc0000f80000f40000f00000ec0000e80000e40000e00000dc0000d80000d40000d00000cc0000c80000c40000c00000"
    "bc0000b80000b40000b00000ac0000a80000a40000a000009c00009800009400009000008c0000880000840000800000"
)
JET = np.frombuffer(bytes.fromhex(_JET_HEX), dtype=np.uint8).reshape(256, 3)


def _check_acts(acts: np.ndarray) -> np.ndarray:
    acts = np.asarray(acts)
    if acts.ndim != 3 or 0 in acts.shape:
        raise OnnxvisError(f"class activation maps need activations of shape (channels, height, width), got {acts.shape}")
    return acts.astype(np.float32, copy=False)


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise OnnxvisError(f"a map size must be positive, got {height}x{width}")
    return height, width


def cv2_axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps along one axis: half-pixel centres, clamped at the borders."""
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s).astype(np.float32)
    low, high = s < 0, s >= src - 1
    f[low | high] = 0
    s[low] = 0
    s[high] = src - 1
    return s, np.minimum(s + 1, src - 1), (np.float32(1) - f).astype(np.float32), f


def resize_bilinear(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(np.float32(img), (width, height))`` (INTER_LINEAR) in numpy: (h, w) -> (H, W) float32."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 2 or 0 in img.shape:
        raise OnnxvisError(f"resize_bilinear takes a 2-D array, got shape {img.shape}")
    height, width = check_size(size)
    x0, x1, a0, a1 = cv2_axis(img.shape[1], width)
    y0, y1, b0, b1 = cv2_axis(img.shape[0], height)
    rows = img[:, x0] * a0 + img[:, x1] * a1  # OpenCV: horizontal pass first, then vertical
    return (rows[y0] * b0[:, None] + rows[y1] * b1[:, None]).astype(np.float32)


def _align_corners_axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    scale = np.float32((src - 1) / (dst - 1)) if dst > 1 else np.float32(0)
    pos = (scale * np.arange(dst, dtype=np.float32)).astype(np.float32)
    i0 = np.minimum(pos.astype(np.int64), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    w1 = (pos - i0).astype(np.float32)
    return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


def upsample_align_corners(acts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torch's ``UpsamplingBilinear2d(size)`` (bilinear, corners aligned): (C, h, w) -> (C, H, W) float32."""
    acts = _check_acts(acts)
    height, width = check_size(size)
    y0, y1, b0, b1 = _align_corners_axis(acts.shape[1], height)
    x0, x1, a0, a1 = _align_corners_axis(acts.shape[2], width)
    top = acts[:, y0][:, :, x0] * a0 + acts[:, y0][:, :, x1] * a1
    bottom = acts[:, y1][:, :, x0] * a0 + acts[:, y1][:, :, x1] * a1
    return (b0[:, None] * top + b1[:, None] * bottom).astype(np.float32)


def scale_cam_image(cams: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """grad-cam's ``scale_cam_image``: each map min-max scaled (eps 1e-7), then resized to ``size`` (H, W)."""
    out = []
    for img in np.asarray(cams):
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if size is not None:
            img = resize_bilinear(img, size)
        out.append(img)
    return np.asarray(out, dtype=np.float32)


def finish(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A method's raw (h, w) map -> grad-cam's final (H, W) map in [0, 1], float32.

    As grad-cam: ReLU, min-max, resize, then (aggregating one layer) ReLU and min-max again. The
    second min-max matters: the resize samples between the source pixels, so it rarely keeps 0 and 1.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise OnnxvisError(f"a raw class activation map must be 2-D, got shape {raw.shape}")
    if not np.all(np.isfinite(raw)):
        raise OnnxvisError("the class activation map has NaN or infinite values; the model's activations or scores overflow")
    scaled = scale_cam_image(np.maximum(raw, 0)[None], check_size(size))
    return scale_cam_image(np.maximum(scaled, 0))[0]


def score_masks(acts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """ScoreCAM's masks: each channel upsampled with aligned corners to ``size`` and min-max scaled
    (eps 1e-8), (C, H, W) float32."""
    up = upsample_align_corners(acts, size)
    flat = up.reshape(up.shape[0], -1)
    lo = flat.min(axis=1)[:, None, None]
    hi = flat.max(axis=1)[:, None, None]
    return ((up - lo) / (hi - lo + np.float32(1e-8))).astype(np.float32)


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = np.asarray(scores, dtype=np.float64)
    z = np.exp(z - z.max())
    return (z / z.sum()).astype(np.float32)


def score_cam_weights(acts: np.ndarray, size: tuple[int, int], score_masked: ScoreFn, batch_size: int = 16) -> np.ndarray:
    """ScoreCAM's channel weights: softmax over channels of the target scores of the image times each mask.

    Args:
        acts: (C, h, w) activations.
        size: the model input's (H, W).
        score_masked: masks (n, H, W) -> the target score of the input multiplied by each mask (n,).
        batch_size: masks per call.
    """
    masks = score_masks(acts, size)
    scores = [np.asarray(score_masked(masks[i : i + batch_size]), dtype=np.float32).reshape(-1) for i in range(0, len(masks), batch_size)]
    flat = np.concatenate(scores)
    if flat.shape != (len(masks),):
        raise OnnxvisError(f"ScoreCAM expected {len(masks)} scores, got {flat.shape[0]}")
    return _softmax(flat)


def ablation_values(acts: np.ndarray, rows: int) -> np.ndarray:
    """The value each row of a batch of ``rows`` ablated copies gives its ablated channel, as grad-cam.

    0 when the activations' minimum is 0; otherwise the minimum minus 1e7 -- and, as grad-cam's
    AblationLayer takes the minimum of the whole batch after the rows before it were ablated, row i
    gets ``min - (i + 1) * 1e7`` (computed step by step in float32).
    """
    low = np.float32(np.min(_check_acts(acts)))
    values = np.zeros(rows, dtype=np.float32)
    if low == 0:
        return values
    current = low
    for i in range(rows):
        current = np.float32(current - np.float32(1e7))
        values[i] = current
    return values


def ablation_cam_weights(
    acts: np.ndarray, original: float, score_ablated: ScoreFn, batch_size: int = 32, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """AblationCAM's channel weights ``(original - ablated) / original``, float32.

    Args:
        acts: (C, h, w) activations.
        original: the target's score on the image.
        score_ablated: copies (n, C, h, w), each with one channel ablated -> the target scores (n,).
        batch_size: copies per call; it also sets the ablation values (see :func:`ablation_values`),
            so keep grad-cam's 32 to get its numbers.
        dtype: of the copies (the tensor's own); the values are clipped into its range, so grad-cam's
            huge ablation values stay finite in float16.
    """
    acts = _check_acts(acts)
    channels = acts.shape[0]
    dtype = np.dtype(dtype)
    info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
    values = np.clip(ablation_values(acts, batch_size), info.min, info.max).astype(dtype)
    base = acts.astype(dtype)[None]
    scores = []
    for start in range(0, channels, batch_size):
        stop = min(start + batch_size, channels)
        batch = np.repeat(base, stop - start, axis=0)
        for row, channel in enumerate(range(start, stop)):
            batch[row, channel] = values[row]
        scores.append(np.asarray(score_ablated(batch), dtype=np.float32).reshape(-1))
    ablated = np.concatenate(scores)
    if ablated.shape != (channels,):
        raise OnnxvisError(f"AblationCAM expected {channels} scores, got {ablated.shape[0]}")
    original32 = np.float32(original)
    if original32 == 0:
        raise OnnxvisError("the target's score is exactly 0, so AblationCAM's relative drop is undefined; choose another target")
    return ((original32 - ablated) / original32).astype(np.float32)


def weighted_sum(weights: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """sum over channels of weight * activation: (C,), (C, h, w) -> (h, w)."""
    acts = _check_acts(acts)
    weights = np.asarray(weights)
    if weights.shape != (acts.shape[0],):
        raise OnnxvisError(f"expected {acts.shape[0]} channel weights, got shape {weights.shape}")
    return (weights[:, None, None] * acts).sum(axis=0)


def _centred(acts: np.ndarray) -> np.ndarray:
    acts = _check_acts(acts).copy()
    acts[np.isnan(acts)] = 0
    flat = acts.reshape(acts.shape[0], -1).transpose()
    return flat - flat.mean(axis=0)


def eigen_projection(acts: np.ndarray) -> np.ndarray:
    """EigenCAM: the centred activations projected on their first right singular vector, (h, w) float32."""
    flat = _centred(acts)
    _, _, vt = np.linalg.svd(flat, full_matrices=True)
    return (flat @ vt[0, :]).reshape(acts.shape[1:]).astype(np.float32)


def kpca_projection(acts: np.ndarray, kernel: str = "sigmoid", gamma: float | None = None) -> np.ndarray:
    """KPCA-CAM: the first kernel principal component (scikit-learn's KernelPCA, as grad-cam), (h, w) float32."""
    try:
        from sklearn.decomposition import KernelPCA
    except ImportError:
        raise OnnxvisError("the kpca method needs scikit-learn: pip install 'onnxvis[cam]'") from None
    flat = _centred(acts)
    projection = KernelPCA(n_components=1, kernel=kernel, gamma=gamma).fit_transform(flat)
    return np.asarray(projection, dtype=np.float32).reshape(acts.shape[1:])


def fem_map(acts: np.ndarray, k: float = 2.0) -> np.ndarray:
    """FEM: each channel weighted by the share of its positions above its mean + k std, summed, (h, w)."""
    acts = _check_acts(acts)
    means = acts.mean(axis=(1, 2))
    stds = acts.std(axis=(1, 2))
    threshold = (means + k * stds)[:, None, None]
    weights = (acts > threshold).mean(axis=(1, 2))
    return (weights[:, None, None] * acts).sum(axis=0)


def overlay(rgb: np.ndarray, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """grad-cam's ``show_cam_on_image(rgb / 255, cam, use_rgb=True)``: the JET colours of the map
    blended with the photo, rescaled so the brightest value is white, as uint8 (H, W, 3)."""
    rgb = np.asarray(rgb)
    cam = np.asarray(cam, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != cam.shape:
        raise OnnxvisError(f"overlay needs an RGB photo (H, W, 3) and a map (H, W) of the same size, got {rgb.shape} and {cam.shape}")
    if not 0 <= image_weight <= 1:
        raise OnnxvisError(f"image_weight must be in [0, 1], got {image_weight}")
    img = rgb.astype(np.float32) / np.float32(255) if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    heat = JET[np.clip(255 * cam, 0, 255).astype(np.uint8)].astype(np.float32) / np.float32(255)
    mixed = (np.float32(1 - image_weight) * heat + np.float32(image_weight) * img).astype(np.float32)
    mixed = mixed / np.max(mixed)
    return (255 * mixed).astype(np.uint8)
