"""Turn layers into pictures and hand them to the output writers.

The commands ``kernels`` and ``fmaps`` are these two functions plus argument parsing. Pictures are
made by :mod:`onnxvis.grids` and written by :mod:`onnxvis.output`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.fmaps import FeatureMaps
    from onnxvis.layers import ConvLayer
    from onnxvis.output import OutputDir

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class GridOptions:
    """make_grid's options, as the CLI exposes them."""

    nrow: int = 8
    padding: int = 2
    pad_value: float = 0.0
    normalize: bool = True
    scale_each: bool = True

    def __post_init__(self) -> None:
        if self.nrow < 1:
            raise OnnxvisError(f"--nrow must be 1 or more, got {self.nrow}")
        if self.padding < 0:
            raise OnnxvisError(f"--padding must be 0 or more, got {self.padding}")


def layer_stem(layer: "ConvLayer") -> str:
    return f"{layer.index:02d}_{layer.name}"


def draw_kernels(
    layers: list["ConvLayer"],
    out: "OutputDir",
    grid: GridOptions = GridOptions(),
    split: bool = False,
    max_tiles: int | None = None,
    log: Log = _stderr,
) -> list[Path]:
    """Write a kernel grid PNG per layer, and with ``split`` the per-output-channel grids.

    A layer whose weight cannot be read is reported on ``log`` and skipped, unless it is the only one.
    """
    from onnxvis import grids
    from onnxvis.weights import kernel_weights

    cap = grids.DEFAULT_MAX_TILES if max_tiles is None else (None if max_tiles == 0 else max_tiles)
    written: list[Path] = []
    failures: list[OnnxvisError] = []
    for layer in layers:
        try:
            weight = kernel_weights(layer)
        except OnnxvisError as exc:
            if len(layers) == 1:
                raise
            failures.append(exc)
            log(f"skipped: {exc}")
            continue
        picture = grids.kernel_grid(weight, grid.nrow, grid.padding, grid.normalize, grid.scale_each, grid.pad_value, cap)
        if picture.truncated:
            log(
                f"layer {layer.index} ({layer.name}): drew the first {picture.shown_out_channels} of "
                f"{picture.total_out_channels} output channels; --max-tiles 0 draws all"
            )
        written.append(out.save_png(grids.to_uint8(picture.grid), f"kernels_{layer_stem(layer)}"))
        if split:
            subdir = f"kernels_{layer_stem(layer)}_split"
            for o, tile_grid in grids.split_grids(weight, None, grid.nrow, grid.padding, grid.normalize, grid.scale_each, grid.pad_value):
                written.append(out.save_png(grids.to_uint8(tile_grid), f"out{o:04d}", subdir))
    if not written and failures:
        raise failures[0]
    return written


def draw_fmaps(result: "FeatureMaps", out: "OutputDir", grid: GridOptions = GridOptions(), prefix: str = "fmaps") -> list[Path]:
    """Write a feature-map grid PNG per layer of ``result``."""
    from onnxvis import grids

    written = []
    for layer, maps in result.maps.items():
        picture = grids.fmap_grid(maps, grid.nrow, grid.padding, grid.normalize, grid.scale_each, grid.pad_value)
        written.append(out.save_png(grids.to_uint8(picture), f"{prefix}_{layer_stem(layer)}"))
    return written
