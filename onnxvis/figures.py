"""Pictures for people: a diverging colour map that keeps the sign of weights, notebook display,
and matplotlib figures with titles and colour bars.

In a notebook::

    from onnxvis import figures
    figures.kernels("models/alexnet.onnx")                 # every layer's grid, shown inline
    figures.kernels("models/alexnet.onnx", colormap="diverging")[0]   # one grid: blue < 0 < red
    figures.fmaps("models/alexnet.onnx", "cat.jpg", layers="0,1")
    figures.cam("models/resnet18.onnx", "cat.jpg", method="score")   # where the model looks
    figures.kernel_figure("models/alexnet.onnx", layer=0)   # matplotlib Figure, colour bar in weight units
    figures.fmap_figure("models/alexnet.onnx", "cat.jpg", layer=0)

:class:`Picture` shows itself through ``_repr_png_`` and :class:`Pictures` (a list of them) through
``_repr_html_``. The colouring here is numpy only; matplotlib is imported by the two ``*_figure``
functions alone, so the CLI's ``--colormap diverging`` costs no matplotlib import.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam.gradmaths import GRADIENT_METHODS
from onnxvis.analysis.cam.maths import overlay
from onnxvis.analysis.cam.runs import Cam, default_layer, places_for
from onnxvis.draw.colormaps import COLORMAPS, DIVERGING_CMAP, check_colormap, diverging_rgb, signed_kernel_grid, signed_kernels
from onnxvis.draw.grids import GridOptions, fmap_grid, fmap_pixels
from onnxvis.draw.layers import kernel_pixels
from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError
from onnxvis.model.layers import layer_title
from onnxvis.write.html import display_scale, img_tag
from onnxvis.write.png import encode_png, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from onnxvis.image.preprocess import Preprocess
    from onnxvis.model.file import Model

__all__ = [
    "Picture", "Pictures", "kernels", "fmaps", "cam", "kernel_figure", "fmap_figure", "img_tag", "display_scale",
    "COLORMAPS", "DIVERGING_CMAP", "check_colormap", "diverging_rgb", "signed_kernels", "signed_kernel_grid",
]

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
        return encode_png(self.pixels)

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: str | Path) -> Path:
        """Write the picture as a PNG file, atomically; its folder must exist."""
        return save_png(self.pixels, path)

    def html(self) -> str:
        """A ``<figure>``: the picture embedded as a data URL (:func:`img_tag`), its title as caption."""
        title = html.escape(self.title)
        return f'<figure style="margin:0 0 1em 0">{img_tag(self.pixels, self.title)}<figcaption>{title}</figcaption></figure>'


class Pictures(list):
    """A list of :class:`Picture` that a notebook shows one under the other, with titles."""

    def _repr_html_(self) -> str:
        return "\n".join(p.html() for p in self)


def _inspector(model: "str | Path | Model | Inspector", preprocess: "Preprocess | None" = None) -> Inspector:
    if isinstance(model, Inspector):
        return model
    return Inspector(model, InspectorConfig(preprocess=preprocess))


def kernels(
    model: "str | Path | Model | Inspector",
    layers: "str | int | None" = None,
    colormap: str = "grey",
    grid: GridOptions | None = None,
    max_tiles: int | None = None,
) -> Pictures:
    """The kernel grid of each chosen layer (all by default), as the CLI's ``kernels`` draws it."""
    inspector = _inspector(model)
    options = grid if grid is not None else GridOptions()
    pictures = Pictures()
    for layer in inspector.select(layers, "all"):
        pixels, _ = kernel_pixels(inspector.kernels(layer), options, max_tiles, colormap)
        pictures.append(Picture(pixels, layer_title(layer, "kernels")))
    return pictures


def fmaps(
    model: "str | Path | Model | Inspector",
    image: "str | Path",
    layers: "str | int | None" = None,
    grid: GridOptions | None = None,
    preprocess: "Preprocess | None" = None,
) -> Pictures:
    """The feature-map grid of each chosen layer (the first by default) for ``image``."""
    inspector = _inspector(model, preprocess)
    options = grid if grid is not None else GridOptions()
    result = inspector.feature_maps(image, inspector.select(layers, "first"))
    return Pictures(Picture(fmap_pixels(maps, options), layer_title(layer, "feature maps")) for layer, maps in result.maps.items())


def cam(
    model: "str | Path | Model | Inspector",
    image: "str | Path",
    method: str = "ablation",
    layers: "str | int | None" = None,
    tensor: str | None = None,
    target: "int | str | None" = None,
    preprocess: "Preprocess | None" = None,
) -> Pictures:
    """The class activation map of ``image`` over the photo, as the CLI's ``cam`` draws it (grad-cam's
    show_cam_on_image), one picture per place: the chosen conv layers and/or ``tensor`` (by default
    the last conv layer with a spatial output). The titles name the method, the place and the class."""
    inspector = _inspector(model, preprocess)
    default = [] if tensor else [default_layer(inspector, inspector.class_output())]
    chosen = inspector.select(layers, "last") if layers is not None else default
    places = places_for(inspector, chosen, [tensor] if tensor else [])
    pictures = Pictures()
    if method in GRADIENT_METHODS:
        from onnxvis.analysis.cam.gradcams import gradient_cams

        results = gradient_cams(inspector, [image], [] if method == "fullgrad" else places, method, target)
    else:
        results = Cam(inspector, places, target, method=method)([image])
    for result in results:
        label = f" {result.target_label}" if result.target_label else ""
        title = f"{method} CAM - {result.place.label} - class {result.target}{label}"
        pictures.append(Picture(overlay(result.rgb, result.cam), title))
    return pictures


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
    if isinstance(source, np.ndarray):
        maps, default_title = np.asarray(source, dtype=np.float32), "feature maps"
    else:
        if image is None:
            raise OnnxvisError("fmap_figure needs an image to run the model on; pass image=PATH")
        inspector = _inspector(source, preprocess)
        (chosen,) = inspector.select(str(layer), "first")
        result = inspector.feature_maps(image, [chosen])
        maps, default_title = result.maps[chosen], layer_title(chosen, "feature maps")
    values = fmap_grid(maps, nrow, padding, normalize=False, scale_each=False, pad_value=float("nan"))[0]
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
    inspector = _inspector(source)
    (chosen,) = inspector.select(str(layer), "first")
    return inspector.kernels(chosen), layer_title(chosen, "kernels")
