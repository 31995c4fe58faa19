"""Pictures of a layer's weights, as uint8 pixels: the grid the CLI, the report, the page and the notebook draw.

Arrays in, arrays out: the layouts come from :mod:`onnxvis.draw.grids` and the signed colours from
:mod:`onnxvis.draw.colormaps`; nothing here reads a model or writes a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.draw import colormaps, grids
from onnxvis.draw.grids import GridOptions
from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.draw.grids import KernelPicture



def check_max_tiles(max_tiles: int | None) -> None:
    """Refuse a negative cap on kernel tiles (None: the default cap; 0: no cap)."""
    if max_tiles is not None and max_tiles < 0:
        raise OnnxvisError(f"the cap on kernel tiles must be 0 (no cap) or more, got {max_tiles}", setting="max_tiles")


def kernel_pixels(
    weight: np.ndarray, grid: GridOptions = GridOptions(), max_tiles: int | None = None, colormap: str = "grey"
) -> tuple[np.ndarray, "KernelPicture"]:
    """A layer's kernel grid as uint8 pixels, and how it was laid out.

    Args:
        weight: the layer's kernels (O, I, ...).
        max_tiles: the cap on tiles; None for the default, 0 for no cap.
        colormap: "grey" (torchvision's picture: RGB for 3 input channels, else grey) or
            "diverging" (blue negative, white zero, red positive; see :mod:`onnxvis.figures`).
    """
    colormaps.check_colormap(colormap)
    check_max_tiles(max_tiles)
    cap = grids.DEFAULT_MAX_TILES if max_tiles is None else (None if max_tiles == 0 else max_tiles)
    if colormap == "diverging":
        picture = colormaps.signed_kernel_grid(weight, grid.nrow, grid.padding, grid.normalize, grid.scale_each, cap)
        return grids.zoom(colormaps.diverging_rgb(picture.grid, grid.pad_value), grid.zoom), picture
    picture = grids.kernel_grid(weight, grid.nrow, grid.padding, grid.normalize, grid.scale_each, grid.pad_value, cap)
    return grids.zoom(grids.to_uint8(picture.grid), grid.zoom), picture


def split_pixels(weight: np.ndarray, grid: GridOptions = GridOptions(), colormap: str = "grey") -> Iterator[tuple[int, np.ndarray]]:
    """The per-output-channel view (the tutorial's) as (output channel, uint8 pixels) pairs."""
    if colormaps.check_colormap(colormap) == "diverging":
        values = colormaps.signed_kernels(weight, grid.scale_each) if grid.normalize else weight
        for o, tiles in grids.split_grids(values, None, grid.nrow, grid.padding, False, False, float("nan")):
            yield o, grids.zoom(colormaps.diverging_rgb(tiles, grid.pad_value), grid.zoom)
        return
    for o, tiles in grids.split_grids(weight, None, grid.nrow, grid.padding, grid.normalize, grid.scale_each, grid.pad_value):
        yield o, grids.zoom(grids.to_uint8(tiles), grid.zoom)


def in_rgb_order(weight: np.ndarray) -> np.ndarray:
    """The kernels of a layer that reads a BGR image, with their input channels reversed to R, G, B.

    A Caffe model's first conv sees blue in its weight's input channel 0; drawn as stored, an RGB
    tile would show blue as red. Weights of another input-channel count are returned as they are.
    """
    return np.ascontiguousarray(weight[:, ::-1]) if weight.ndim >= 2 and weight.shape[1] == 3 else weight
