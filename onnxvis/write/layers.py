"""Turn layers into pictures and hand them to the output writers.

The commands ``kernels`` and ``fmaps`` are these two functions plus argument parsing. Pictures are
made by :mod:`onnxvis.draw.grids` (and coloured by :mod:`onnxvis.draw.colormaps` for ``--colormap diverging``),
encoded once as PNG, and handed to the sinks chosen with ``--format``: PNG files written by
:mod:`onnxvis.outdir`, and a TensorBoard event file written by :mod:`onnxvis.write.tensorboard`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.draw import grids
from onnxvis.draw.grids import GridOptions
from onnxvis.draw.layers import check_max_tiles, in_rgb_order, kernel_pixels, split_pixels
from onnxvis.engine.inspector import FeatureMaps
from onnxvis.errors import OnnxvisError
from onnxvis.model.layers import layer_stem
from onnxvis.model.weights import kernel_weights
from onnxvis.outdir import sanitize
from onnxvis.progress import Progress
from onnxvis.write.png import encode_png
from onnxvis.write.tensorboard import EventFile

if TYPE_CHECKING:
    from onnxvis.engine.inspector import FeatureMaps
    from onnxvis.model.layers import ConvLayer
    from onnxvis.outdir import OutputDir

Log = Callable[[str], None]

FORMATS = ("png", "tensorboard")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,tensorboard"`` (or a sequence of names) -> ``("png", "tensorboard")``, checked."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen: list[str] = []
    for item in (str(i).strip().lower() for i in items):
        if not item:
            continue
        if item not in FORMATS:
            raise OnnxvisError(f"unknown output format {item!r}; choose from {', '.join(FORMATS)}, e.g. png,tensorboard", setting="formats")
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise OnnxvisError(f"no output format given; choose from {', '.join(FORMATS)}", setting="formats")
    return tuple(chosen)


class Sinks:
    """Where finished pictures go: PNG files and/or one TensorBoard event file.

    Each picture is encoded as PNG once; the PNG file and the TensorBoard image hold the same bytes.

    Args:
        out: the output folder.
        formats: "png", "tensorboard" or both.
        name: names the event file (``events.out.tfevents.<name>.onnxvis``), e.g. "kernels".
    """

    def __init__(self, out: "OutputDir", formats: str | Sequence[str] = ("png",), name: str = "onnxvis"):
        formats = parse_formats(formats)
        self.out = out
        self.name = name
        self.png = "png" in formats
        self.events = None
        if "tensorboard" in formats:
            self.events = EventFile()
        self.written: list[Path] = []

    def add(
        self, pixels: np.ndarray, stem: str, tag: str, step: int = 0, subdir: str | None = None, made_from: str | None = None
    ) -> None:
        """One picture: ``stem`` (and ``subdir``) name its PNG, ``tag`` and ``step`` place it in TensorBoard;
        ``made_from`` (an image's path) keeps a PNG of another image from being replaced by it (see :class:`OutputDir`)."""
        data = encode_png(pixels)
        if self.png:
            self.written.append(self.out.write_bytes(self.out.path_for(stem, ".png", subdir), data, made_from))
        if self.events is not None:
            channels = 1 if pixels.ndim == 2 else pixels.shape[2]
            self.events.add_png(tag, data, pixels.shape[0], pixels.shape[1], channels, step)

    def close(self) -> list[Path]:
        """Write the event file, if any, and return every path written, in order."""
        if self.events is not None and self.events.images:
            self.written.append(self.events.save(self.out, self.name))
        self.events = None
        return self.written


def layer_tag(layer: "ConvLayer", kind: str) -> str:
    """The TensorBoard tag of a layer's picture: ``kind/`` and the PNG's name without ``kind_``."""
    return f"{kind}/{sanitize(layer_stem(layer))}"


def draw_kernels(
    layers: list["ConvLayer"],
    out: "OutputDir",
    grid: GridOptions = GridOptions(),
    split: bool = False,
    max_tiles: int | None = None,
    log: Log = _stderr,
    formats: str | Sequence[str] = ("png",),
    colormap: str = "grey",
    progress: bool = False,
    rgb_from_bgr: Sequence["ConvLayer"] = (),
) -> list[Path]:
    """Write a kernel grid per layer, and with ``split`` the per-output-channel grids.

    PNG files are named ``kernels_<idx>_<layer>.png`` (split: ``kernels_<idx>_<layer>_split/outNNNN.png``).
    In TensorBoard the grid is the tag ``kernels/<idx>_<layer>`` and the split view the tag
    ``kernels_split/<idx>_<layer>``, one step per output channel.
    A layer whose weight cannot be read is reported on ``log`` and skipped, unless it is the only one.

    Args:
        formats: "png", "tensorboard" or both.
        colormap: "grey" or "diverging" (see :func:`kernel_pixels`).
        progress: show a progress bar on stderr when it is a terminal.
        rgb_from_bgr: layers whose 3 input channels are B, G, R (they read a BGR image): drawn in R, G, B
            order, so that an RGB tile shows the colours the kernel responds to (see :func:`in_rgb_order`).
    """
    check_max_tiles(max_tiles)
    sinks = Sinks(out, formats, "kernels")
    failures: list[OnnxvisError] = []
    # "skipped" notes wait until a layer is drawn: when none is, the error alone is shown, on one line.
    pending: list[str] | None = []
    with Progress(len(layers), "kernels", enabled=None if progress else False) as bar:
        say = bar.write if bar.enabled else log
        for layer in layers:
            try:
                weight = kernel_weights(layer)
            except OnnxvisError as exc:
                if len(layers) == 1:
                    raise
                failures.append(exc)
                if pending is None:
                    say(f"skipped: {exc}")
                else:
                    pending.append(f"skipped: {exc}")
                bar.advance(layer.name)
                continue
            for note in pending or ():
                say(note)
            pending = None
            if layer in rgb_from_bgr:
                weight = in_rgb_order(weight)
            pixels, picture = kernel_pixels(weight, grid, max_tiles, colormap)
            if picture.truncated:
                say(
                    f"layer {layer.index} ({layer.name}): drew the first {picture.shown_out_channels} of "
                    f"{picture.total_out_channels} output channels; a tile cap (max_tiles) of 0 draws all"
                )
            sinks.add(pixels, f"kernels_{layer_stem(layer)}", layer_tag(layer, "kernels"))
            if split:
                subdir = f"kernels_{layer_stem(layer)}_split"
                # the same output channels as the grid: --max-tiles bounds the files written too
                for o, tiles in split_pixels(weight[: picture.shown_out_channels], grid, colormap):
                    sinks.add(tiles, f"out{o:04d}", layer_tag(layer, "kernels_split"), step=o, subdir=subdir)
            bar.advance(layer.name)
    written = sinks.close()
    if not written and failures:
        raise failures[0]
    return written


def made_from(image: Path) -> str | None:
    """What a picture of ``image`` records as made from: the file's resolved path (None for an in-memory image)."""
    if str(image).startswith("<"):
        return None
    try:
        return str(Path(image).resolve())
    except (OSError, RuntimeError):
        return str(image)


def image_folders(images: Sequence[Path]) -> list[str]:
    """A distinct folder name per image, from its file name without suffix (``cat``, ``cat_2``, ...)."""
    used: set[str] = set()
    names = []
    for image in images:
        base = sanitize(image.stem or "image", "image")
        name, n = base, 2
        while name.lower() in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name.lower())
        names.append(name)
    return names


def draw_fmaps(
    results: "FeatureMaps | Iterable[FeatureMaps]",
    out: "OutputDir",
    grid: GridOptions = GridOptions(),
    prefix: str = "fmaps",
    formats: str | Sequence[str] = ("png",),
    progress: bool = False,
    folders: Sequence[str] | None = None,
) -> list[Path]:
    """Write a feature-map grid per layer of each result.

    One result: ``<prefix>_<idx>_<layer>.png`` and/or the TensorBoard tag ``<prefix>/<idx>_<layer>``.
    Several (an iterable, consumed as it comes): each image's pictures in its own folder,
    ``<folder>/<prefix>_<idx>_<layer>.png`` (``folders``, one per image, default from the file names),
    and in TensorBoard one step per image under the same tags.

    Each PNG records the image it was drawn from, so that a later run with another image (a second
    photo drawn into the same folder, or another ``cat.jpg`` whose folder is also ``cat/``) is refused
    instead of silently replacing the first image's pictures; the same image's pictures are replaced.
    """
    single = isinstance(results, FeatureMaps)
    items: Iterable[FeatureMaps] = [results] if isinstance(results, FeatureMaps) else results
    sinks = Sinks(out, formats, prefix)
    total = 1 if single else (len(folders) if folders is not None else None)
    with Progress(total or 0, prefix, enabled=None if progress and total else False) as bar:
        for step, result in enumerate(items):
            subdir = None if single else (folders[step] if folders is not None else image_folders([result.image])[0])
            source = made_from(result.image)
            for layer, maps in result.maps.items():
                pixels = grids.fmap_pixels(maps, grid)
                sinks.add(pixels, f"{prefix}_{layer_stem(layer)}", layer_tag(layer, prefix), step, subdir, source)
            bar.advance(result.image.name)
    return sinks.close()
