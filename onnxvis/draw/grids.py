"""Grids of images, with torchvision's ``make_grid`` semantics, in pure numpy.

Nothing here knows about ONNX, image files or disk: arrays in, arrays out. ``make_grid`` and
``to_uint8`` reproduce ``torchvision.utils.make_grid`` and the conversion in ``save_image``, so that
the same weights give the same pixels. The layouts (``kernel_grid``, ``split_grids``,
``fmap_grid``) arrange convolution weights and feature maps into tiles for those two functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onnxvis.errors import OnnxvisError

__all__ = [
    "make_grid",
    "to_uint8",
    "normalize_tiles",
    "KernelPicture",
    "kernel_grid",
    "split_grids",
    "fmap_grid",
    "fmap_pixels",
    "GridOptions",
    "DEFAULT_MAX_TILES",
]

# A VGG16 3x3 layer has 512x512 slices: 262144 tiles, a 2562x2562 picture, drawn in full. Past this
# many tiles the kernels are cut to the first output channels (the CLI's --max-tiles lifts it).
DEFAULT_MAX_TILES = 262144
_HEATMAP_PIXELS_PER_TILE = 64


@dataclass(frozen=True)
class GridOptions:
    """make_grid's options, passed as a whole to every picture of a run."""

    nrow: int | str = 8  # or AUTO: the near-square grid (see auto_columns)
    padding: int = 2
    pad_value: float = 0.0
    normalize: bool = True
    scale_each: bool = True
    zoom: int = 1  # each pixel drawn as zoom x zoom pixels (nearest neighbour), after the grid is made

    def __post_init__(self) -> None:
        if self.nrow != AUTO and (isinstance(self.nrow, str) or self.nrow < 1):
            raise OnnxvisError(f"nrow must be 1 or more, or {AUTO!r}, got {self.nrow}", setting="nrow")
        if self.padding < 0:
            raise OnnxvisError(f"padding must be 0 or more, got {self.padding}", setting="padding")
        if not 1 <= self.zoom <= MAX_ZOOM:
            raise OnnxvisError(f"the zoom must be a whole number from 1 to {MAX_ZOOM}, got {self.zoom}", setting="zoom")


AUTO = "auto"
"""``nrow`` for a near-square grid: as many columns as make the picture about as wide as it is tall."""

MAX_ZOOM = 32
"""The largest zoom: SqueezeNet's 42x42 conv1 grid becomes 1344x1344 pixels."""


def auto_columns(count: int, height: int = 1, width: int = 1) -> int:
    """The columns of a near-square grid of ``count`` tiles of ``height`` x ``width`` pixels (padding
    included): ceil(sqrt(count * height / width)), between 1 and ``count``."""
    if count <= 1:
        return 1
    return max(1, min(count, int(math.ceil(math.sqrt(count * height / max(1, width)) - 1e-9))))


def columns_for(nrow: int | str, count: int, height: int = 1, width: int = 1) -> int:
    """make_grid's columns: ``nrow`` (at most ``count``), or the near-square number for :data:`AUTO`."""
    if nrow == AUTO:
        return auto_columns(count, height, width)
    return min(int(nrow), max(1, count))


def zoom(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel of an (H, W) or (H, W, C) picture as a ``factor`` x ``factor`` block (nearest neighbour)."""
    if factor == 1:
        return pixels
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)


def _check_nrow(nrow: int | str) -> None:
    if nrow == AUTO:
        return
    if not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise ValueError(f"nrow must be a positive integer or {AUTO!r}, got {nrow!r}")


def _check_tiles(tensor: np.ndarray) -> np.ndarray:
    if not isinstance(tensor, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(tensor).__name__}")
    if tensor.size == 0:
        raise ValueError(f"cannot make a grid of an empty array of shape {tensor.shape}")
    if not (np.issubdtype(tensor.dtype, np.floating) or np.issubdtype(tensor.dtype, np.integer)):
        raise TypeError(f"expected a real-valued array, got dtype {tensor.dtype}")
    return tensor


def normalize_tiles(
    tiles: np.ndarray,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
) -> np.ndarray:
    """Shift and scale tiles into [0, 1], as ``make_grid(normalize=True)`` does.

    Args:
        tiles: float array (B, C, H, W).
        value_range: (low, high) to clamp to; by default each tile's (or the whole batch's) min and max.
        scale_each: normalise every tile on its own instead of the batch as a whole.

    Returns:
        A new float32 array of the same shape. A constant tile becomes 0 (black), as in torchvision,
        which divides by ``max(high - low, 1e-5)``.
    """
    if tiles.ndim != 4:
        raise ValueError(f"expected tiles of shape (B, C, H, W), got {tiles.shape}")
    out = np.array(tiles, dtype=np.float32, copy=True)
    if value_range is not None:
        if not isinstance(value_range, tuple) or len(value_range) != 2:
            raise TypeError("value_range has to be a tuple (min, max) if specified")
        low = np.full((out.shape[0] if scale_each else 1, 1, 1, 1), value_range[0], dtype=np.float64)
        high = np.full_like(low, value_range[1])
    elif scale_each:
        flat = out.reshape(out.shape[0], -1)
        low = flat.min(axis=1).astype(np.float64).reshape(-1, 1, 1, 1)
        high = flat.max(axis=1).astype(np.float64).reshape(-1, 1, 1, 1)
    else:
        low = np.array(out.min(), dtype=np.float64).reshape(1, 1, 1, 1)
        high = np.array(out.max(), dtype=np.float64).reshape(1, 1, 1, 1)
    _shift_and_scale(out, low, high, clamp=value_range is not None)
    return out


def _shift_and_scale(out: np.ndarray, low: np.ndarray, high: np.ndarray, clamp: bool) -> None:
    """torchvision's ``img.clamp_(low, high).sub_(low).div_(max(high - low, 1e-5))``, in place.

    The bounds are doubles (Python floats in torchvision) and the arithmetic runs in float32. When
    the bounds are the data's own min and max the clamp changes nothing (with a NaN the bounds are
    NaN and everything becomes NaN either way), so it is skipped: one pass less over big maps.
    """
    divisor = np.maximum(high - low, 1e-5).astype(np.float32)
    if clamp:
        np.clip(out, low.astype(np.float32), high.astype(np.float32), out=out)
    out -= low.astype(np.float32)
    out /= divisor


def _tile(tiles: np.ndarray, nrow: int | str, padding: int, pad_value: float) -> np.ndarray:
    """Place (B, C, h, w) tiles row by row into one (C, H, W) grid; make_grid's geometry."""
    if tiles.shape[0] == 1:
        return tiles[0]
    return _tile_groups(tiles[None], nrow, padding, pad_value)[0]


def _tile_groups(groups: np.ndarray, nrow: int | str, padding: int, pad_value: float) -> np.ndarray:
    """Tile G batches of B tiles at once, (G, B, C, h, w) -> (G, C, H, W), with B > 1.

    The grids are filled with ``pad_value`` and every tile is written once into its cell through
    a view, without intermediate copies.
    """
    count, nmaps, channels, h, w = groups.shape
    xmaps = columns_for(nrow, nmaps, h + padding, w + padding)
    ymaps = int(math.ceil(float(nmaps) / xmaps))
    height, width = h + padding, w + padding
    grids = np.full((count, channels, height * ymaps + padding, width * xmaps + padding), pad_value, dtype=np.float32)
    # cell (y, x) of grid g starts at row y * height + padding, column x * width + padding
    cells = grids[:, :, padding : padding + ymaps * height, padding : padding + xmaps * width].reshape(
        count, channels, ymaps, height, xmaps, width
    )[:, :, :, :h, :, :w]
    full = nmaps // xmaps
    if full:
        cells[:, :, :full] = (
            groups[:, : full * xmaps].reshape(count, full, xmaps, channels, h, w).transpose(0, 3, 1, 4, 2, 5)
        )
    rest = nmaps - full * xmaps
    if rest:
        cells[:, :, full, :, :rest] = groups[:, full * xmaps :].transpose(0, 2, 3, 1, 4)
    return grids


def _as_batch(tensor: np.ndarray) -> np.ndarray:
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4:
        raise ValueError(f"expected an array of 2, 3 or 4 dimensions, got shape {tensor.shape}")
    return tensor


def _grid(
    tiles: np.ndarray,
    nrow: int | str = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> np.ndarray:
    """make_grid without the copy of grey tiles into three channels: (B, C, h, w) -> (C, H, W)."""
    _check_nrow(nrow)
    if not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    tiles = _as_batch(_check_tiles(tiles))
    if normalize:
        tiles = normalize_tiles(tiles, value_range, scale_each)
    else:
        tiles = tiles.astype(np.float32, copy=False)
    return _tile(tiles, nrow if nrow == AUTO else int(nrow), int(padding), float(pad_value))


def make_grid(
    tensor: np.ndarray,
    nrow: int | str = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> np.ndarray:
    """Make a grid of images, exactly as ``torchvision.utils.make_grid`` does.

    Args:
        tensor: (B, C, H, W) batch, or a single (C, H, W) or (H, W) image.
        nrow: images per row of the grid.
        padding: pixels of padding around and between images.
        normalize: shift every image (or the batch) into [0, 1] by its min and max.
        value_range: (min, max) used by ``normalize`` instead of the data's min and max.
        scale_each: with ``normalize``, scale each image on its own.
        pad_value: value of the padding.

    Returns:
        float32 array (C, H, W). One-channel input is copied to three channels, and a batch of one
        image is returned without padding, as in torchvision.
    """
    tensor = _check_tiles(tensor)
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3:
        if tensor.shape[0] == 1:
            tensor = np.concatenate([tensor] * 3, axis=0)
        tensor = tensor[None]
    if tensor.ndim == 4 and tensor.shape[1] == 1:
        tensor = np.concatenate([tensor] * 3, axis=1)
    return _grid(tensor, nrow, padding, normalize, value_range, scale_each, pad_value)


def to_uint8(grid: np.ndarray) -> np.ndarray:
    """Convert a [0, 1] grid to 8-bit pixels as ``torchvision.utils.save_image`` does.

    Args:
        grid: float array (C, H, W) with C = 1 or 3, or (H, W).

    Returns:
        uint8 array (H, W) for one channel or (H, W, 3), from ``x * 255 + 0.5`` clamped to [0, 255].
    """
    grid = np.asarray(grid)
    if grid.ndim == 2:
        grid = grid[None]
    if grid.ndim != 3 or grid.shape[0] not in (1, 3):
        raise ValueError(f"expected a grid of shape (1 or 3, H, W), got {grid.shape}")
    pixels = np.multiply(grid, np.float32(255), dtype=np.float32)
    pixels += np.float32(0.5)
    # clamp to [0, 255]; fmax/fmin turn NaN (a weight that is NaN), undefined in the cast, into 0: black
    np.fmax(pixels, np.float32(0), out=pixels)
    np.fmin(pixels, np.float32(255), out=pixels)
    pixels = pixels.astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)


@dataclass(frozen=True)
class KernelPicture:
    """A kernel grid and how it was laid out.

    Attributes:
        grid: float32 (C, H, W), C = 3 for an RGB grid and 1 for grey; values in [0, 1] when normalised.
        layout: "rgb", "grey", "mosaic", "heatmap", "strips" or "slices".
        shown_out_channels: how many output channels the picture holds (fewer than the layer's when capped).
        total_out_channels: the layer's output channels.
    """

    grid: np.ndarray
    layout: str
    shown_out_channels: int
    total_out_channels: int

    @property
    def truncated(self) -> bool:
        return self.shown_out_channels < self.total_out_channels


def _as_4d_kernels(weight: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Bring 1-D (O, I, k) and 3-D (O, I, D, kh, kw) kernels to (O, I', kh, kw)."""
    if weight.ndim == 3:
        return weight[:, :, None, :], "strips"
    if weight.ndim == 5:
        o, i, d, kh, kw = weight.shape
        return weight.reshape(o, i * d, kh, kw), "slices"
    if weight.ndim == 4:
        return weight, None
    raise ValueError(f"expected conv weights of 3, 4 or 5 dimensions (O, I, ...), got shape {weight.shape}")


def kernel_grid(
    weight: np.ndarray,
    nrow: int | str = 8,
    padding: int = 2,
    normalize: bool = True,
    scale_each: bool = True,
    pad_value: float = 0.0,
    max_tiles: int | None = DEFAULT_MAX_TILES,
) -> KernelPicture:
    """Lay out a conv layer's kernels as one picture.

    - 3 input channels: an RGB grid of all kernels (the tutorial's conv1 view).
    - 1 input channel: a grey grid of all kernels.
    - 1x1 kernels: an O x I heat map, one pixel per weight, normalised as one.
    - any other layer: a grey mosaic, one row per output channel, one column per input channel
      (``nrow`` does not apply). 1-D kernels are drawn as strips, 3-D kernels as their depth slices
      side by side.

    Args:
        weight: float array (O, I, k), (O, I, kh, kw) or (O, I, D, kh, kw).
        nrow, padding, normalize, scale_each, pad_value: as in :func:`make_grid`.
        max_tiles: keep only the first output channels so that at most this many tiles are drawn;
            None for no cap.

    Returns:
        A :class:`KernelPicture`.
    """
    weight = _check_tiles(weight)
    kernels, shape_layout = _as_4d_kernels(weight)
    out_ch, in_ch, kh, kw = kernels.shape
    is_heatmap = kh == 1 and kw == 1 and shape_layout is None
    per_out = in_ch if in_ch not in (1, 3) or shape_layout else 1
    # A heat map spends one pixel, not a padded tile, per weight: let it hold _HEATMAP_PIXELS_PER_TILE times more.
    budget = None if max_tiles is None else max_tiles * (_HEATMAP_PIXELS_PER_TILE if is_heatmap else 1)
    keep = out_ch
    if budget is not None and out_ch * per_out > budget:
        keep = max(1, budget // per_out)
        kernels = kernels[:keep]
    if is_heatmap:
        heat = kernels[:, :, 0, 0][None, None]
        grid = _grid(heat, nrow=1, padding=0, normalize=normalize, scale_each=False, pad_value=pad_value)
        return KernelPicture(grid, "heatmap", keep, out_ch)
    if shape_layout is None and in_ch in (1, 3):
        grid = _grid(kernels, nrow, padding, normalize, None, scale_each, pad_value)
        return KernelPicture(grid, "rgb" if in_ch == 3 else "grey", keep, out_ch)
    tiles = kernels.reshape(keep * in_ch, 1, kh, kw)
    grid = _grid(tiles, in_ch, padding, normalize, None, scale_each, pad_value)
    return KernelPicture(grid, shape_layout or "mosaic", keep, out_ch)


def split_grids(
    weight: np.ndarray,
    out_channels: list[int] | None = None,
    nrow: int | str = 8,
    padding: int = 2,
    normalize: bool = True,
    scale_each: bool = True,
    pad_value: float = 0.0,
) -> list[tuple[int, np.ndarray]]:
    """The tutorial's per-output-channel view: for each output channel, a grey grid of its slices.

    This is ``make_grid(weight[o].unsqueeze(1), normalize=True, scale_each=True, nrow=8)``: every
    input-channel slice of kernel ``o`` is a tile, normalised on its own.

    Args:
        weight: float array (O, I, ...) as for :func:`kernel_grid`.
        out_channels: which output channels; all by default.

    Returns:
        (output channel, grey grid (1, H, W)) pairs.
    """
    kernels, _ = _as_4d_kernels(_check_tiles(weight))
    chosen = list(range(kernels.shape[0])) if out_channels is None else list(out_channels)
    for o in chosen:
        if not 0 <= o < kernels.shape[0]:
            raise ValueError(f"output channel {o} is out of range for {kernels.shape[0]} channels")
    _check_nrow(nrow)
    if not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if not chosen:
        return []
    # All the chosen channels at once: every grid has the same geometry, so one normalisation and
    # one tiling of a (G, I, 1, kh, kw) batch give the same pixels as one make_grid call per channel.
    groups = np.array(kernels[chosen][:, :, None], dtype=np.float32, copy=True)
    if normalize:
        count, per = groups.shape[:2]
        flat = groups.reshape(count * per, -1) if scale_each else groups.reshape(count, -1)
        shape = (count, per, 1, 1, 1) if scale_each else (count, 1, 1, 1, 1)
        low = flat.min(axis=1).astype(np.float64).reshape(shape)
        high = flat.max(axis=1).astype(np.float64).reshape(shape)
        _shift_and_scale(groups, low, high, clamp=False)
    if groups.shape[1] == 1:
        tiled = groups[:, 0]  # one tile: no padding, as make_grid does for a batch of one
    else:
        tiled = _tile_groups(groups, nrow if nrow == AUTO else int(nrow), int(padding), float(pad_value))
    return [(o, tiled[i]) for i, o in enumerate(chosen)]


def fmap_grid(
    maps: np.ndarray,
    nrow: int | str = 8,
    padding: int = 2,
    normalize: bool = True,
    scale_each: bool = True,
    pad_value: float = 0.0,
) -> np.ndarray:
    """A grey grid of feature maps: ``make_grid(maps.unsqueeze(1), normalize=True, scale_each=True)``.

    Args:
        maps: (C, H, W) one image's maps, (C, L) for a 1-D conv, or (C, D, H, W) for 3-D (the
            middle depth slice is drawn).

    Returns:
        grey grid (1, H, W). Maps of a single pixel (after a global pooling, as in squeeze-and-
        excitation blocks) are normalised together even with ``scale_each``: scaled on its own, a
        one-pixel tile is always 0, and the grid would say nothing.
    """
    maps = _check_tiles(maps)
    if maps.ndim == 2:
        maps = maps[:, None, :]
    elif maps.ndim == 4:
        maps = maps[:, maps.shape[1] // 2]
    if maps.ndim != 3:
        raise ValueError(f"expected feature maps (C, H, W), got shape {maps.shape}")
    if maps.shape[1] * maps.shape[2] == 1:
        scale_each = False
    return _grid(maps[:, None], nrow, padding, normalize, None, scale_each, pad_value)


def fmap_pixels(maps: np.ndarray, grid: GridOptions = GridOptions()) -> np.ndarray:
    """One layer's feature maps (C, H, W) as the uint8 grid that ``fmaps`` writes."""
    return zoom(to_uint8(fmap_grid(maps, grid.nrow, grid.padding, grid.normalize, grid.scale_each, grid.pad_value)), grid.zoom)
