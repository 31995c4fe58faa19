"""Feature maps of an image: preprocessing, the model's input, and the run, glued together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.inputs import InputSpec
    from onnxvis.layers import ConvLayer
    from onnxvis.model import Model
    from onnxvis.preprocess import Preprocess


@dataclass(frozen=True)
class FeatureMaps:
    """The feature maps of one image.

    Attributes:
        image: the image file.
        input_spec: the model input the image was fed to.
        preprocess: the preprocessing used.
        input: the array fed to the model.
        maps: one array per layer, (C, H, W) for the first (only) image of the batch, channels first
            whatever the model's layout.
    """

    image: Path
    input_spec: "InputSpec"
    preprocess: "Preprocess"
    input: np.ndarray
    maps: dict["ConvLayer", np.ndarray]


def prepare_input(model: "Model", image: str | Path, preprocess: "Preprocess | None" = None, layout: str | None = None) -> tuple["InputSpec", "Preprocess", np.ndarray]:
    """Load ``image`` and turn it into the array the model's image input wants."""
    from onnxvis import preprocess as pp
    from onnxvis.inputs import choose_preprocess, image_input

    spec = image_input(model, layout)
    chosen = preprocess if preprocess is not None else choose_preprocess(model, spec)
    if spec.channels == 1 and chosen.color != "L":
        chosen = chosen.replace(color="L", mean=chosen.mean[:1], std=chosen.std[:1])
    elif spec.channels == 3 and chosen.color == "L":
        chosen = chosen.replace(color="RGB", mean=chosen.mean[:1] * 3, std=chosen.std[:1] * 3)
    chw = pp.preprocess(pp.load_image(image), chosen)
    height, width = spec.size
    if (height and chw.shape[1] != height) or (width and chw.shape[2] != width):
        raise OnnxvisError(
            f"the preprocessed image is {chw.shape[1]}x{chw.shape[2]} but input {spec.name!r} wants "
            f"{height or '?'}x{width or '?'}; pass --resize H,W"
        )
    return spec, chosen, pp.to_layout(chw, spec.layout, spec.dtype)


def feature_maps(
    model: "Model",
    image: str | Path,
    layers: list["ConvLayer"],
    preprocess: "Preprocess | None" = None,
    layout: str | None = None,
) -> FeatureMaps:
    """Run the model on ``image`` and return the conv outputs (before any activation) of ``layers``.

    Args:
        model: the opened model.
        image: path of the photo.
        layers: conv layers of the main graph.
        preprocess: overrides the model's metadata or the guess.
        layout: "NCHW" or "NHWC" to override the detected layout.

    Raises:
        OnnxvisError: a bad image, a layer inside a subgraph, or an input that cannot be fed.
    """
    from onnxvis.runner import run_tensors

    for layer in layers:
        if not layer.in_main_graph:
            raise OnnxvisError(
                f"layer {layer.index} ({layer.name}) is inside a subgraph ({layer.graph_path}); "
                "its feature maps cannot be exposed, but 'onnxvis kernels' draws its kernels"
            )
    spec, chosen, array = prepare_input(model, image, preprocess, layout)
    values = run_tensors(model, {spec.name: array}, [layer.output_name for layer in layers])
    maps = {}
    for layer in layers:
        value = np.asarray(values[layer.output_name])
        if value.ndim < 3:
            raise OnnxvisError(f"layer {layer.index} ({layer.name}) gave an output of shape {value.shape}, not feature maps")
        first = value[0]
        if layer.op_type == "NhwcConv":
            first = np.moveaxis(first, -1, 0)
        maps[layer] = first.astype(np.float32, copy=False)
    return FeatureMaps(Path(image), spec, chosen, array, maps)
