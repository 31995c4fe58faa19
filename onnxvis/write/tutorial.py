"""The tutorial's TensorBoard run, from the ONNX file: same tags, same steps, same pixels.

The tutorial onnxvis started from (an AlexNet visualisation whose two PyTorch scripts write TensorBoard
with ``SummaryWriter``; its text, the reference, is ../shared/seed/tutorial.txt, and
benchmarks/tutorial_run.py runs its code as written) writes, for each of the first two ``nn.Conv2d``
layers ``n``:

* ``n_Convlayer_split_in_channel``, one step per output channel ``o``:
  ``make_grid(w[o].unsqueeze(1), normalize=True, scale_each=True, nrow=8)``: the kernel's input-channel
  slices, 8 per row (conv2's 64 slices make an 8 x 8 grid of 58 x 58 pixels);
* ``n_all`` at step 620: ``make_grid(w.view(-1, 3, k, k), normalize=True, scale_each=True, nrow=8)``,
  which for a layer with other than 3 input channels takes three consecutive input channels as RGB;

and ``feature map in conv1`` at step 620: the first conv layer's maps of a photo resized to
224x224 and normalised with CIFAR-10's mean and std, ``make_grid(maps, normalize=True,
scale_each=True, nrow=8)``. ``add_image`` turns each [0, 1] grid into bytes by truncation,
``(x * 255).clip(0, 255).astype(uint8)``, not by ``save_image``'s rounding.

The functions below compute those pictures from arrays; :func:`tutorial_run` reads the model and
runs the photo through an :class:`~onnxvis.engine.inspector.Inspector`; :func:`write_run` writes one
event file through :mod:`onnxvis.write.tensorboard`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.draw import grids
from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError
from onnxvis.image.preprocess import PRESETS
from onnxvis.write.png import encode_png
from onnxvis.write.tensorboard import EventFile

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from onnxvis.engine.inspector import ImageLike
    from onnxvis.model.file import Model
    from onnxvis.model.layers import ConvLayer
    from onnxvis.outdir import OutputDir

__all__ = [
    "ALL_STEP",
    "FMAP_TAG",
    "TutorialImage",
    "TutorialRun",
    "add_image_pixels",
    "all_image",
    "all_tag",
    "fmap_image",
    "groups_of_three",
    "split_images",
    "split_tag",
    "tutorial_layers",
    "tutorial_run",
    "write_run",
]

ALL_STEP = 620
"""The tutorial's ``global_step`` for ``n_all`` and the feature maps."""

FMAP_TAG = "feature map in conv1"
LAYERS = 2
"""The tutorial draws the first two conv layers (``vis_max = 1``)."""
SIZE = (224, 224)
NROW = 8


def split_tag(n: int) -> str:
    return f"{n}_Convlayer_split_in_channel"


def all_tag(n: int) -> str:
    return f"{n}_all"


@dataclass(frozen=True)
class TutorialImage:
    """One ``add_image`` call: the tag, the step, and the pixels (H, W, 3) uint8."""

    tag: str
    step: int
    pixels: np.ndarray


@dataclass
class TutorialRun:
    """Every image of the run, in the tutorial's order, and one line per group of images.

    Attributes:
        images: what ``add_image`` received, converted to bytes as it converts them.
        lines: what was drawn (tag, steps, from which layer or photo) and what was skipped, and why.
        image: the photo the feature maps come from (None when they are skipped).
    """

    images: list[TutorialImage] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    image: Path | None = None


def add_image_pixels(grid: np.ndarray) -> np.ndarray:
    """A [0, 1] grid as ``SummaryWriter.add_image`` stores it: ``(x * 255).clip(0, 255).astype(uint8)``.

    Args:
        grid: float (C, H, W) with C = 1 or 3, as make_grid returns it.

    Returns:
        uint8 (H, W, C). The conversion truncates (0.999 * 255 gives 254), where ``save_image``
        rounds. NaN, which the cast leaves undefined, becomes 0 (black).
    """
    grid = np.asarray(grid)
    if grid.ndim != 3 or grid.shape[0] not in (1, 3):
        raise ValueError(f"expected a grid of shape (1 or 3, H, W), got {grid.shape}")
    pixels = np.multiply(grid, np.float32(255), dtype=np.float32)
    np.fmax(pixels, np.float32(0), out=pixels)
    np.fmin(pixels, np.float32(255), out=pixels)
    return pixels.astype(np.uint8).transpose(1, 2, 0)


def _rgb(grey: np.ndarray) -> np.ndarray:
    """make_grid copies a one-channel grid into three channels; add_image keeps all three."""
    return np.repeat(grey, 3, axis=0) if grey.shape[0] == 1 else grey


def _check_2d_kernels(weight: np.ndarray) -> np.ndarray:
    weight = np.asarray(weight)
    if weight.ndim != 4 or weight.size == 0:
        raise ValueError(f"expected 2-D conv kernels (C_out, C_in, kh, kw), got shape {weight.shape}")
    return weight


def groups_of_three(shape: tuple[int, ...]) -> bool:
    """Whether ``w.view(-1, 3, kh, kw)`` exists for kernels of ``shape``: C_out x C_in is a multiple of 3."""
    return len(shape) == 4 and (shape[0] * shape[1]) % 3 == 0


def split_images(weight: np.ndarray, n: int) -> list[TutorialImage]:
    """``n_Convlayer_split_in_channel``: per output channel, its input-channel slices, 8 per row.

    Args:
        weight: (C_out, C_in, kh, kw).
        n: the layer's position among the tutorial's layers (0 or 1).
    """
    weight = _check_2d_kernels(weight)
    tag = split_tag(n)
    # nrow=8 as the tutorial's text writes it (a copy of its code with nrow=c_int puts one kernel's slices on one row)
    return [TutorialImage(tag, o, add_image_pixels(_rgb(g))) for o, g in grids.split_grids(weight, nrow=NROW)]


def all_image(weight: np.ndarray, n: int) -> TutorialImage:
    """``n_all``: ``w.view(-1, 3, kh, kw)``, tiles of three consecutive input channels taken as RGB.

    For conv1 (3 input channels) the tiles are the kernels; for any other layer a tile mixes input
    channels of one kernel, or of two consecutive kernels when C_in is not a multiple of 3.

    Raises:
        ValueError: C_out x C_in is not a multiple of 3 (see :func:`groups_of_three`).
    """
    weight = _check_2d_kernels(weight)
    if not groups_of_three(weight.shape):
        raise ValueError(f"kernels of shape {weight.shape} cannot be viewed as groups of 3 channels")
    tiles = weight.reshape(-1, 3, weight.shape[2], weight.shape[3])
    grid = grids.make_grid(tiles, nrow=NROW, normalize=True, scale_each=True)
    return TutorialImage(all_tag(n), ALL_STEP, add_image_pixels(grid))


def fmap_image(maps: np.ndarray) -> TutorialImage:
    """``feature map in conv1``: one grey tile per map, each normalised on its own, 8 per row.

    Args:
        maps: (C, H, W), one image's maps.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.size == 0:
        raise ValueError(f"expected feature maps (C, H, W), got shape {maps.shape}")
    grid = grids.make_grid(maps[:, None], nrow=NROW, normalize=True, scale_each=True)
    return TutorialImage(FMAP_TAG, ALL_STEP, add_image_pixels(grid))


def tutorial_layers(layers: list["ConvLayer"]) -> list["ConvLayer"]:
    """The layers the tutorial draws: the first two with 2-D kernels (its ``nn.Conv2d``), not transposed.

    Raises:
        OnnxvisError: the model has no such layer.
    """
    chosen = [
        layer for layer in layers
        if layer.op_type != "ConvTranspose" and layer.weight_shape is not None and len(layer.weight_shape) == 4
    ][:LAYERS]
    if not chosen:
        raise OnnxvisError(
            "the model has no 2-D convolution layer; the tutorial draws Conv2d layers (kernels of shape C_out x C_in x kh x kw)"
        )
    return chosen


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _kernel_images(run: TutorialRun, n: int, layer: "ConvLayer", weight: np.ndarray) -> None:
    what = f"layer {layer.index} ({layer.name}), kernels {_shape(weight.shape)}"
    images = split_images(weight, n)
    run.images.extend(images)
    run.lines.append(f"{split_tag(n)}: steps 0-{len(images) - 1}, one grid per output channel of {what}")
    if not groups_of_three(weight.shape):
        run.lines.append(
            f"{all_tag(n)}: skipped: {what}: C_out x C_in = {weight.shape[0] * weight.shape[1]} is not a multiple of 3, "
            "so the tutorial's view(-1, 3, k, k) does not exist"
        )
        return
    image = all_image(weight, n)
    run.images.append(image)
    tiles = weight.shape[0] * weight.shape[1] // 3
    mixing = "" if weight.shape[1] == 3 else ", each tile 3 consecutive input channels as RGB"
    run.lines.append(
        f"{all_tag(n)}: step {ALL_STEP}, {tiles} tiles of 3x{_shape(weight.shape[2:])} from {what}{mixing} "
        f"({image.pixels.shape[0]}x{image.pixels.shape[1]} pixels)"
    )


def tutorial_run(
    model: "str | os.PathLike | Model", image: "ImageLike", inputs: "Mapping[str, float | np.ndarray] | None" = None
) -> TutorialRun:
    """Everything the tutorial's two scripts write, computed from ``model`` and the photo ``image``.

    The kernels are read from the file; the feature maps come from onnxruntime, with the
    tutorial's preprocessing (resize to 224x224, ToTensor, CIFAR-10 mean and std), whatever the
    model's metadata says. ``inputs`` gives the model's other run-time inputs, if it has any (see
    :func:`onnxvis.image.inputs.fill_inputs`).

    Raises:
        OnnxvisError: no 2-D conv layer, a weight that cannot be read, or a bad photo. A model whose input
            has a fixed size other than 224x224 gets its kernels, and a line that says its feature map is skipped.
    """
    # The size is set, so it is kept exactly: a model that cannot take 224x224 gets its kernels drawn and its
    # feature map skipped with one line, rather than run at another size than the tutorial's.
    config = InspectorConfig(preprocess=PRESETS["cifar10"], changes={"resize": SIZE}, inputs=inputs or {})
    with Inspector(model, config) as inspector:
        layers = tutorial_layers(inspector.layers)
        spec = inspector.image_input
        height, width = spec.size
        weights = [inspector.kernels(layer) for layer in layers]  # every weight read before the run
        other_size = (height and height != SIZE[0]) or (width and width != SIZE[1])
        result = None if other_size else inspector.feature_maps(image, layers[:1])
    run = TutorialRun(image=result.image if result is not None else None)
    for n, (layer, weight) in enumerate(zip(layers, weights, strict=True)):
        _kernel_images(run, n, layer, weight)
    if result is None:
        run.lines.append(
            f"{FMAP_TAG}: skipped: the tutorial feeds 224x224 images, and input {spec.name!r} of this model takes "
            f"{height or 'any'}x{width or 'any'}; draw its feature maps with 'onnxvis fmaps'"
        )
        return run
    maps = result.maps[layers[0]]
    run.images.append(fmap_image(maps))
    run.lines.append(
        f"{FMAP_TAG}: step {ALL_STEP}, {maps.shape[0]} maps of {_shape(maps.shape[1:])} from layer {layers[0].index} "
        f"({layers[0].name}), before any activation"
    )
    return run


def write_run(run: TutorialRun, out: "OutputDir", name: str = "tutorial") -> Path:
    """Write every image of ``run`` into one TensorBoard event file in ``out``; returns its path.

    Raises:
        OnnxvisError: the tensorboard package is missing, or the file cannot be written.
    """
    events = EventFile()
    for image in run.images:
        height, width, channels = image.pixels.shape
        events.add_png(image.tag, encode_png(image.pixels), height, width, channels, image.step)
    return events.save(out, name)
