"""Pictures for people: a diverging colour map that keeps the sign of weights, notebook display,
and matplotlib figures with titles and colour bars.

In a notebook::

    from onnxvis import figures
    figures.kernels("models/alexnet.onnx")                 # every layer's grid, shown inline
    figures.kernels("models/alexnet.onnx", colormap="diverging")[0]   # one grid: blue < 0 < red
    figures.fmaps("models/alexnet.onnx", "cat.jpg", layers="0,1")
    figures.kernel_figure("models/alexnet.onnx", layer=0)   # matplotlib Figure, colour bar in weight units
    figures.fmap_figure("models/alexnet.onnx", "cat.jpg", layer=0)

:class:`Picture` shows itself through ``_repr_png_`` and :class:`Pictures` (a list of them) through
``_repr_html_``. The colouring here is numpy only; matplotlib is imported by the two ``*_figure``
functions alone, so the CLI's ``--colormap diverging`` costs no matplotlib import.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from onnxvis.grids import KernelPicture
    from onnxvis.layers import ConvLayer
    from onnxvis.model import Model
    from onnxvis.render import GridOptions

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
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = True,
    scale_each: bool = True,
    max_tiles: int | None = None,
) -> "KernelPicture":
    """A kernel grid of signed values in [-1, 1] with NaN padding, for a diverging colour map.

    The layouts are :func:`onnxvis.grids.kernel_grid`'s, except that a layer with 3 input channels
    is drawn with each kernel's 3 slices side by side, ``nrow`` kernels a row (layout "slices side by
    side"): a diverging map colours one channel at a time.

    Args:
        normalize: divide by the largest magnitude (see :func:`signed_kernels`); otherwise the raw
            weights, clipped to [-1, 1] when coloured.
    """
    from onnxvis import grids

    values = signed_kernels(weight, scale_each) if normalize else np.asarray(weight, dtype=np.float32)
    if values.ndim == 4 and values.shape[1] == 3 and values.shape[2:] != (1, 1):
        # A colour map shows one channel at a time: each kernel's 3 slices side by side, nrow kernels a row.
        out_ch = values.shape[0]
        keep = out_ch if max_tiles is None else max(1, min(out_ch, max_tiles // 3))
        tiles = values[:keep].reshape(keep * 3, 1, *values.shape[2:])
        grid = grids.make_grid(tiles, nrow=3 * nrow, padding=padding, pad_value=float("nan"))[:1]
        return grids.KernelPicture(grid, "slices side by side", keep, out_ch)
    return grids.kernel_grid(values, nrow, padding, normalize=False, scale_each=False, pad_value=float("nan"), max_tiles=max_tiles)


# ------------------------------------------------------------------------------------------------
# Notebook display
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Picture:
    """Finished pixels with a title; a notebook shows it as an image.

    Attributes:
        pixels: uint8 (H, W) grey or (H, W, 3) RGB.
        title: what it shows, e.g. "0 conv1 - kernels 64x3x11x11".
    """

    pixels: np.ndarray
    title: str = ""

    def png(self) -> bytes:
        from onnxvis.output import encode_png

        return encode_png(self.pixels)

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: str | Path) -> Path:
        """Write the picture as a PNG file, atomically; its folder must exist."""
        from onnxvis.output import save_png

        return save_png(self.pixels, path)

    def html(self) -> str:
        """A ``<figure>``: the picture embedded as a data URL (:func:`img_tag`), its title as caption."""
        title = html.escape(self.title)
        return f'<figure style="margin:0 0 1em 0">{img_tag(self.pixels, self.title)}<figcaption>{title}</figcaption></figure>'


class Pictures(list):
    """A list of :class:`Picture` that a notebook shows one under the other, with titles."""

    def _repr_html_(self) -> str:
        return "\n".join(p.html() for p in self)


def display_scale(width: int, height: int, target: int = 384, most: int = 8) -> int:
    """A whole-number zoom that shows a small grid at about ``target`` pixels, sharp and undistorted."""
    return int(max(1, min(most, target // max(1, width, height))))


def img_tag(pixels: np.ndarray, alt: str) -> str:
    """An ``<img>`` holding ``pixels`` as a PNG data URL, zoomed by :func:`display_scale`, drawn sharp."""
    from onnxvis.output import encode_png

    height, width = pixels.shape[:2]
    scale = display_scale(width, height)
    data = base64.b64encode(encode_png(pixels)).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" width="{width * scale}" height="{height * scale}" '
        f'style="image-rendering:pixelated" alt="{html.escape(alt)}">'
    )


def _open(model: "str | Path | Model") -> "Model":
    from onnxvis.model import Model

    return model if isinstance(model, Model) else Model.open(model)


def _layers(model: "Model", spec: "str | int | None", default: str) -> list["ConvLayer"]:
    from onnxvis.layers import find_conv_layers, select_layers

    return select_layers(find_conv_layers(model), None if spec is None else str(spec), default=default)


def _grid(options: "GridOptions | None") -> "GridOptions":
    from onnxvis.render import GridOptions

    return options if options is not None else GridOptions()


def kernels(
    model: "str | Path | Model",
    layers: "str | int | None" = None,
    colormap: str = "grey",
    grid: "GridOptions | None" = None,
    max_tiles: int | None = None,
) -> Pictures:
    """The kernel grid of each chosen layer (all by default), as the CLI's ``kernels`` draws it."""
    from onnxvis.render import kernel_pixels, layer_title
    from onnxvis.weights import kernel_weights

    opened = _open(model)
    options = _grid(grid)
    pictures = Pictures()
    for layer in _layers(opened, layers, "all"):
        pixels, _ = kernel_pixels(kernel_weights(layer), options, max_tiles, colormap)
        pictures.append(Picture(pixels, layer_title(layer, "kernels")))
    return pictures


def fmaps(
    model: "str | Path | Model",
    image: str | Path,
    layers: "str | int | None" = None,
    grid: "GridOptions | None" = None,
    preprocess=None,
) -> Pictures:
    """The feature-map grid of each chosen layer (the first by default) for ``image``."""
    from onnxvis import grids
    from onnxvis.fmaps import feature_maps
    from onnxvis.render import layer_title

    opened = _open(model)
    options = _grid(grid)
    result = feature_maps(opened, image, _layers(opened, layers, "first"), preprocess)
    return Pictures(
        Picture(grids.to_uint8(grids.fmap_grid(maps, options.nrow, options.padding, options.normalize, options.scale_each, options.pad_value)),
                layer_title(layer, "feature maps"))
        for layer, maps in result.maps.items()
    )


# ------------------------------------------------------------------------------------------------
# matplotlib figures
# ------------------------------------------------------------------------------------------------


def _new_figure(width_px: int, height_px: int, colorbar: bool) -> "Figure":
    from matplotlib.figure import Figure

    width = min(10.0, max(3.0, width_px / 50))
    height = min(12.0, max(1.5, width * height_px / max(width_px, 1)))
    return Figure(figsize=(width + (1.2 if colorbar else 0.0), height + 0.6), layout="constrained")


def kernel_figure(
    source: "np.ndarray | str | Path | Model",
    layer: "int | str" = 0,
    title: str | None = None,
    colorbar: bool = True,
    nrow: int = 8,
    padding: int = 1,
    max_tiles: int | None = 4096,
) -> "Figure":
    """A matplotlib figure of one layer's kernels in the diverging map, centred on zero.

    All kernels share one scale, ``-max|w|`` to ``+max|w|``, so that the colour bar reads in weight
    units and white is exactly zero: the sign of every weight shows.

    Args:
        source: a weight array (O, I, ...) or a model (path or opened).
        layer: index or node name of the layer, when ``source`` is a model.
        title: the figure's title; by default the layer and its shape.
        colorbar: add a colour bar labelled "weight".
        max_tiles: draw at most this many tiles (the first output channels); None for all.
    """
    weight, default_title = _weight_and_title(source, layer)
    peak = float(np.abs(weight).max()) if weight.size else 0.0
    picture = signed_kernel_grid(weight, nrow, padding, normalize=True, scale_each=False, max_tiles=max_tiles)
    values = picture.grid[0] * (peak if peak > 0 else 1.0)
    if picture.truncated:
        default_title += f" (first {picture.shown_out_channels} of {picture.total_out_channels} filters)"
    fig = _new_figure(values.shape[1], values.shape[0], colorbar)
    ax = fig.add_subplot()
    limit = peak if peak > 0 else 1.0
    cmap = _cmap_with_padding(DIVERGING_CMAP)
    image = ax.imshow(values, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title if title is not None else default_title)
    if colorbar:
        fig.colorbar(image, ax=ax, label="weight", shrink=0.8)
    return fig


def fmap_figure(
    source: "np.ndarray | str | Path | Model",
    image: str | Path | None = None,
    layer: "int | str" = 0,
    title: str | None = None,
    colorbar: bool = True,
    cmap: str = "viridis",
    nrow: int = 8,
    padding: int = 1,
    preprocess=None,
) -> "Figure":
    """A matplotlib figure of one layer's feature maps on a common scale, with a colour bar.

    Args:
        source: feature maps (C, H, W), or a model (path or opened) to run on ``image``.
        image: the photo, when ``source`` is a model.
        layer: index or node name of the layer, when ``source`` is a model.
        cmap: any matplotlib colour map; :data:`DIVERGING_CMAP` centres it on zero.
    """
    from onnxvis import grids

    if isinstance(source, np.ndarray):
        maps, default_title = np.asarray(source, dtype=np.float32), "feature maps"
    else:
        from onnxvis.fmaps import feature_maps
        from onnxvis.render import layer_title

        if image is None:
            raise OnnxvisError("fmap_figure needs an image to run the model on; pass image=PATH")
        opened = _open(source)
        (chosen,) = _layers(opened, str(layer), "first")
        result = feature_maps(opened, image, [chosen], preprocess)
        maps, default_title = result.maps[chosen], layer_title(chosen, "feature maps")
    values = grids.fmap_grid(maps, nrow, padding, normalize=False, scale_each=False, pad_value=float("nan"))[0]
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if cmap == DIVERGING_CMAP:
        high = max(abs(low), abs(high)) or 1.0
        low = -high
    fig = _new_figure(values.shape[1], values.shape[0], colorbar)
    ax = fig.add_subplot()
    shown = ax.imshow(values, cmap=_cmap_with_padding(cmap), vmin=low, vmax=high, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title if title is not None else default_title)
    if colorbar:
        fig.colorbar(shown, ax=ax, label="activation", shrink=0.8)
    return fig


def _cmap_with_padding(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="black")


def _weight_and_title(source, layer) -> tuple[np.ndarray, str]:
    if isinstance(source, np.ndarray):
        weight = np.asarray(source, dtype=np.float32)
        return weight, "kernels " + "x".join(map(str, weight.shape))
    from onnxvis.render import layer_title
    from onnxvis.weights import kernel_weights

    opened = _open(source)
    (chosen,) = _layers(opened, str(layer), "first")
    return kernel_weights(chosen), layer_title(chosen, "kernels")
