"""Pictures of two models side by side: A's kernels, B's and their difference; A's feature maps, B's and the error.

Arrays in, uint8 RGB pixels out. Each picture is three panels from left to right (A, B, A - B) with
the same rows in the same order, worst first as the caller orders them:

- kernels: one row per output channel, its input-channel slices side by side (a 1x1 or dense layer
  is a heat map, one pixel per weight). A and B are on the diverging colour map of
  :mod:`onnxvis.draw.colormaps`, each slice scaled by the largest magnitude of A's and B's values
  there, so that one weight has one colour in both; the difference is scaled by its own largest
  magnitude over the picture (:attr:`Picture.peak`), so that small errors show.
- feature maps: one tile per channel, ``nrow`` a row. A and B in grey, each channel scaled by the
  range of A's and B's values there; the error on the diverging map, scaled by its largest magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxvis.draw import grids
from onnxvis.draw.colormaps import diverging_rgb

__all__ = ["Picture", "kernel_comparison", "fmap_comparison", "MAX_INPUTS", "MAX_HEAT_COLUMNS"]

MAX_INPUTS = 32  # input-channel slices a kernel row shows
MAX_HEAT_COLUMNS = 512  # weights a heat-map row (1x1 conv, dense layer) shows
_GAP = 6  # white pixels between the panels
_HEAT_MIN_HEIGHT = 64  # pixels a heat map is blown up to, at most 8 per weight
_WHITE = 1.0


@dataclass(frozen=True)
class Picture:
    """A picture of three panels, and what it shows.

    Attributes:
        pixels: uint8 (H, W, 3).
        rows: the channels shown, in order (output channels for kernels, channels for maps).
        inputs: input channels (or heat-map columns) shown per row, of ``total_inputs``.
        peak: the largest |A - B| shown, which the difference panel's full colour stands for.
        layout: "slices", "heatmap" or "maps".
    """

    pixels: np.ndarray
    rows: list[int]
    inputs: int
    total_inputs: int
    peak: float
    layout: str


def _side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    height = max(p.shape[0] for p in panels)
    parts = []
    for i, panel in enumerate(panels):
        if panel.shape[0] < height:
            panel = np.concatenate([panel, np.full((height - panel.shape[0], *panel.shape[1:]), 255, np.uint8)])
        if i:
            parts.append(np.full((height, _GAP, 3), 255, np.uint8))
        parts.append(panel)
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def _scaled(values: np.ndarray, peak: np.ndarray | float) -> np.ndarray:
    peak_array = np.asarray(peak, dtype=np.float32)
    return np.divide(values, peak_array, out=np.zeros_like(values), where=peak_array > 0)


def _as_slices(weight: np.ndarray) -> np.ndarray:
    """(O, I, kh, kw) from conv weights of 1 to 3 spatial dimensions."""
    if weight.ndim == 3:
        return weight[:, :, None, :]
    if weight.ndim == 5:
        o, i, d, kh, kw = weight.shape
        return weight.reshape(o, i * d, kh, kw)
    return weight


def kernel_comparison(a: np.ndarray, b: np.ndarray, order: list[int] | np.ndarray, max_rows: int = 16, padding: int = 1) -> Picture:
    """A's kernels, B's, and A - B, for the output channels ``order[:max_rows]``.

    Args:
        a, b: the two weights, equal shapes: (O, I, *k) for a conv, (N, K) for a dense layer.
        order: output channels, worst first.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    rows = [int(r) for r in list(order)[: max(1, max_rows)]]
    heat = a.ndim == 2 or (a.ndim == 4 and a.shape[2:] == (1, 1))
    if heat:
        wa, wb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        total = wa.shape[1]
        cols = min(total, MAX_HEAT_COLUMNS)
        wa, wb = wa[rows, :cols], wb[rows, :cols]
        peak = np.maximum(np.abs(wa).max(axis=1, keepdims=True), np.abs(wb).max(axis=1, keepdims=True))
        diff = wa - wb
        d_peak = float(np.abs(diff).max()) if diff.size else 0.0
        # One weight a cell, blown up to whole pixels so that a few rows of many weights are still seen.
        tall = int(np.clip(_HEAT_MIN_HEIGHT // max(1, len(rows)), 1, 8))
        wide = int(np.clip(MAX_HEAT_COLUMNS // max(1, cols), 1, tall))
        panels = [np.repeat(np.repeat(diverging_rgb(_scaled(values, scale)), tall, axis=0), wide, axis=1)
                  for values, scale in ((wa, peak), (wb, peak), (diff, d_peak))]
        return Picture(_side_by_side(panels), rows, cols, total, d_peak, "heatmap")
    sa, sb = _as_slices(a), _as_slices(b)
    total = sa.shape[1]
    cols = min(total, MAX_INPUTS)
    sa, sb = sa[rows, :cols], sb[rows, :cols]
    peak = np.maximum(np.abs(sa).max(axis=(2, 3), keepdims=True), np.abs(sb).max(axis=(2, 3), keepdims=True))
    diff = sa - sb
    d_peak = float(np.abs(diff).max()) if diff.size else 0.0
    panels = []
    for values in (_scaled(sa, peak), _scaled(sb, peak), _scaled(diff, d_peak)):
        tiles = values.reshape(len(rows) * cols, 1, *values.shape[2:])
        grid = grids.make_grid(tiles, nrow=cols, padding=padding, pad_value=float("nan"))[:1]
        panels.append(diverging_rgb(grid, _WHITE))
    return Picture(_side_by_side(panels), rows, cols, total, d_peak, "slices")


def _as_maps(values: np.ndarray) -> np.ndarray:
    if values.ndim == 2:
        return values[:, None, :]
    if values.ndim == 4:
        return values[:, values.shape[1] // 2]
    return values


def fmap_comparison(
    a: np.ndarray, b: np.ndarray, order: list[int] | np.ndarray, max_rows: int = 16, nrow: int = 4, padding: int = 2
) -> Picture:
    """A's feature maps, B's, and A - B for the channels ``order[:max_rows]`` of one image.

    Args:
        a, b: (C, H, W) maps (or (C, L), or (C, D, H, W): the middle depth slice), equal shapes.
        order: channels, worst first.
    """
    ma = _as_maps(np.asarray(a, dtype=np.float32))
    mb = _as_maps(np.asarray(b, dtype=np.float32))
    rows = [int(r) for r in list(order)[: max(1, max_rows)]]
    ma, mb = ma[rows], mb[rows]
    low = np.minimum(ma.min(axis=(1, 2), keepdims=True), mb.min(axis=(1, 2), keepdims=True))
    high = np.maximum(ma.max(axis=(1, 2), keepdims=True), mb.max(axis=(1, 2), keepdims=True))
    span = high - low
    panels = []
    for maps in (ma, mb):
        unit = np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)
        grid = grids.make_grid(unit[:, None], nrow=nrow, padding=padding, pad_value=_WHITE)
        panels.append(grids.to_uint8(grid))
    diff = ma - mb
    d_peak = float(np.abs(diff).max()) if diff.size else 0.0
    grid = grids.make_grid(_scaled(diff, d_peak)[:, None], nrow=nrow, padding=padding, pad_value=float("nan"))[:1]
    panels.append(diverging_rgb(grid, _WHITE))
    return Picture(_side_by_side(panels), rows, 1, 1, d_peak, "maps")
