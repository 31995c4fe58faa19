"""Colour maps for weights: a diverging map that keeps the sign of every weight.

Pure numpy, below both the writers (:mod:`onnxvis.write.layers`) and the notebook figures
(:mod:`onnxvis.figures`): no matplotlib import for the CLI's diverging pictures.
"""

from __future__ import annotations

import numpy as np

from onnxvis.draw import grids
from onnxvis.errors import OnnxvisError

COLORMAPS = ("grey", "diverging")
DIVERGING_CMAP = "RdBu_r"
"""matplotlib's name for the diverging map used everywhere: blue for negative, white at zero, red for positive."""

# ColorBrewer's RdBu, 11 classes, from blue (most negative) to red (most positive): matplotlib's RdBu_r.
_RDBU_R = np.array(
    [
        (0x05, 0x30, 0x61), (0x21, 0x66, 0xAC), (0x43, 0x93, 0xC3), (0x92, 0xC5, 0xDE), (0xD1, 0xE5, 0xF0),
        (0xF7, 0xF7, 0xF7),
        (0xFD, 0xDB, 0xC7), (0xF4, 0xA5, 0x82), (0xD6, 0x60, 0x4D), (0xB2, 0x18, 0x2B), (0x67, 0x00, 0x1F),
    ],
    dtype=np.float32,
) / 255.0


def check_colormap(name: str) -> str:
    if name not in COLORMAPS:
        raise OnnxvisError(f"unknown colour map {name!r}; choose {' or '.join(COLORMAPS)}")
    return name


def diverging_rgb(signed: np.ndarray, pad_value: float = 0.0) -> np.ndarray:
    """Colour values in [-1, 1] with the diverging map: -1 dark blue, 0 white, +1 dark red.

    Args:
        signed: (H, W) or (1, H, W) array; values outside [-1, 1] are clipped. NaN marks padding.
        pad_value: grey level of the padding, 0 black to 1 white.

    Returns:
        uint8 (H, W, 3).
    """
    values = np.asarray(signed, dtype=np.float32)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2:
        raise ValueError(f"expected a grey grid (H, W) or (1, H, W), got shape {values.shape}")
    pad = np.isnan(values)
    position = (np.clip(np.nan_to_num(values), -1.0, 1.0) + 1.0) * 0.5
    anchors = np.linspace(0.0, 1.0, len(_RDBU_R))
    rgb = np.stack([np.interp(position, anchors, _RDBU_R[:, c]) for c in range(3)], axis=-1)
    rgb[pad] = float(np.clip(pad_value, 0.0, 1.0))
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def signed_kernels(weight: np.ndarray, scale_each: bool = True) -> np.ndarray:
    """Weights divided by their largest magnitude, so that they lie in [-1, 1] and zero stays zero.

    With ``scale_each`` every kernel slice (one output and one input channel) is divided by its own
    largest magnitude, as ``make_grid(scale_each=True)`` scales each tile; 1x1 kernels, which are
    drawn as one heat map, are always scaled together. An all-zero slice stays zero.
    """
    w = np.asarray(weight, dtype=np.float32)
    one_by_one = w.ndim == 4 and w.shape[2:] == (1, 1)
    if scale_each and w.ndim >= 3 and not one_by_one:
        peak = np.abs(w).max(axis=tuple(range(2, w.ndim)), keepdims=True)
    else:
        peak = np.asarray(np.abs(w).max() if w.size else 0.0, dtype=np.float32)
    return np.divide(w, peak, out=np.zeros_like(w), where=peak > 0)


def signed_kernel_grid(
    weight: np.ndarray,
    nrow: int | str = 8,
    padding: int = 2,
    normalize: bool = True,
    scale_each: bool = True,
    max_tiles: int | None = None,
) -> grids.KernelPicture:
    """A kernel grid of signed values in [-1, 1] with NaN padding, for a diverging colour map.

    The layouts are :func:`onnxvis.draw.grids.kernel_grid`'s, except that a layer with 3 input channels
    is drawn with each kernel's 3 slices side by side, ``nrow`` kernels a row (layout "slices side by
    side"): a diverging map colours one channel at a time.

    Args:
        normalize: divide by the largest magnitude (see :func:`signed_kernels`); otherwise the raw
            weights, clipped to [-1, 1] when coloured.
    """
    values = signed_kernels(weight, scale_each) if normalize else np.asarray(weight, dtype=np.float32)
    if values.ndim == 4 and values.shape[1] == 3 and values.shape[2:] != (1, 1):
        # A colour map shows one channel at a time: each kernel's 3 slices side by side, nrow kernels a row.
        out_ch = values.shape[0]
        keep = out_ch if max_tiles is None else max(1, min(out_ch, max_tiles // 3))
        tiles = values[:keep].reshape(keep * 3, 1, *values.shape[2:])
        per_row = grids.auto_columns(keep, values.shape[2] + padding, 3 * (values.shape[3] + padding)) if nrow == grids.AUTO else int(nrow)
        grid = grids.make_grid(tiles, nrow=3 * per_row, padding=padding, pad_value=float("nan"))[:1]
        return grids.KernelPicture(grid, "slices side by side", keep, out_ch)
    return grids.kernel_grid(values, nrow, padding, normalize=False, scale_each=False, pad_value=float("nan"), max_tiles=max_tiles)
