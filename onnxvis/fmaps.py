"""Feature maps and predictions for an image: preprocessing, the model's inputs, and the run.

:func:`prepare_input` turns a photo into the array the model's image input wants (layout, channels,
dtype, size); :func:`feature_maps` runs the smallest graph that yields the chosen conv outputs;
:func:`predict` runs the whole model and returns its outputs (for checking that the preprocessing
is right: a cat photo should give a cat class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from onnxvis.errors import OnnxvisError

# A model with a fixed batch gets the image repeated to fill it, up to this many bytes.
_MAX_BATCH_BYTES = 1 << 30

if TYPE_CHECKING:
    from PIL import Image

    from onnxvis.inputs import InputSpec
    from onnxvis.layers import ConvLayer
    from onnxvis.model import Model
    from onnxvis.preprocess import Preprocess

__all__ = ["FeatureMaps", "prepare_input", "feature_maps", "predict", "model_feeds"]


@dataclass(frozen=True)
class FeatureMaps:
    """The feature maps of one image.

    Attributes:
        image: the image file (``Path("<image>")`` for an in-memory image).
        input_spec: the model input the image was fed to.
        preprocess: the preprocessing used, with its final size.
        input: the array fed to the model.
        maps: one array per layer, (C, H, W) for the first (only) image of the batch, channels first
            whatever the model's layout.
    """

    image: Path
    input_spec: "InputSpec"
    preprocess: "Preprocess"
    input: np.ndarray
    maps: dict["ConvLayer", np.ndarray]


def _load(image: "str | Path | Image.Image") -> "Image.Image":
    from PIL import Image

    from onnxvis import preprocess as pp

    if isinstance(image, Image.Image):
        return image
    return pp.load_image(image)


def prepare_input(
    model: "Model",
    image: "str | Path | Image.Image",
    preprocess: "Preprocess | None" = None,
    layout: str | None = None,
    *,
    explicit_size: bool = False,
) -> tuple["InputSpec", "Preprocess", np.ndarray]:
    """Turn ``image`` into the array the model's image input wants.

    Args:
        model: the opened model.
        image: a photo's path, or a PIL image.
        preprocess: the settings; by default the model's metadata or a guess
            (:func:`onnxvis.inputs.explain_preprocess`). Its channels are matched to the model's:
            a grey photo goes into an RGB model as three equal channels, a colour photo into a
            grey model as its luma.
        layout: "NCHW" or "NHWC" to override the layout detected from the graph.
        explicit_size: the preprocessing's size was set by the user: do not round it to the
            multiple a dynamic-size model may need.

    Returns:
        (the image input, the preprocessing with its final size, the array: batch 1, or the
        image repeated when the model fixes a larger batch).

    Raises:
        OnnxvisError: a bad image, no image-like input, or a size the model cannot take.
    """
    from onnxvis import preprocess as pp
    from onnxvis.inputs import _match_channels, choose_preprocess, fit_size, image_input, size_multiple

    spec = image_input(model, layout)
    chosen = preprocess if preprocess is not None else choose_preprocess(model, spec)
    chosen = _match_channels(chosen, spec)
    img = _load(image)
    multiple = size_multiple(model)[0] if spec.dynamic else 1
    chosen = fit_size(spec, chosen, img.size, multiple, explicit_size)
    chw = pp.preprocess(img, chosen)
    height, width = spec.size
    if (height and chw.shape[1] != height) or (width and chw.shape[2] != width):
        raise OnnxvisError(
            f"the preprocessed image is {chw.shape[1]}x{chw.shape[2]} but input {spec.name!r} wants "
            f"{height or 'any'}x{width or 'any'}; pass --resize {height or chw.shape[1]},{width or chw.shape[2]}"
        )
    array = pp.to_layout(chw, spec.layout, spec.dtype)
    if spec.batch is not None and spec.batch > 1:
        if array.nbytes * spec.batch > _MAX_BATCH_BYTES:  # the declared batch size is the file's word
            raise OnnxvisError(
                f"input {spec.name!r} has a fixed batch of {spec.batch}: the image repeated that many times would "
                f"take {array.nbytes * spec.batch / 2**30:.1f} GiB; use a model exported with batch 1 or a dynamic batch"
            )
        array = np.ascontiguousarray(np.repeat(array, spec.batch, axis=0))
    return spec, chosen, array


def model_feeds(
    model: "Model",
    spec: "InputSpec",
    array: np.ndarray,
    targets: list[str],
    inputs: Mapping[str, "float | np.ndarray"] | None = None,
) -> dict[str, np.ndarray]:
    """All arrays the model needs to compute ``targets``: the image, and the user's other inputs.

    Raises:
        OnnxvisError: another input is needed and not given; the message names it and ``--input``.
    """
    from onnxvis.inputs import fill_inputs
    from onnxvis.runner import needed_inputs

    names = [i.name for i in needed_inputs(model, targets)]
    feeds = fill_inputs(model, names, dict(inputs or {}), image_name=spec.name)
    feeds[spec.name] = array
    return feeds


def feature_maps(
    model: "Model",
    image: "str | Path | Image.Image",
    layers: list["ConvLayer"],
    preprocess: "Preprocess | None" = None,
    layout: str | None = None,
    inputs: Mapping[str, "float | np.ndarray"] | None = None,
    *,
    explicit_size: bool = False,
) -> FeatureMaps:
    """Run the model on ``image`` and return the outputs of ``layers``' nodes.

    A map is the conv node's own output, before any activation that follows it (a com.microsoft
    FusedConv applies its activation inside the node, so its maps are after it; QLinearConv and
    ConvInteger give quantized maps, which differ from real ones by a scale and shift).

    Args:
        model: the opened model.
        image: path of the photo, or a PIL image.
        layers: conv layers of the main graph.
        preprocess: overrides the model's metadata or the guess.
        layout: "NCHW" or "NHWC" to override the detected layout.
        inputs: values for the model's other run-time inputs: a number fills the input, an array is
            used as it is (see :func:`onnxvis.inputs.fill_inputs`).
        explicit_size: see :func:`prepare_input`.

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
    spec, chosen, array = prepare_input(model, image, preprocess, layout, explicit_size=explicit_size)
    targets = [layer.output_name for layer in layers]
    values = run_tensors(model, model_feeds(model, spec, array, targets, inputs), targets)
    maps = {}
    for layer in layers:
        value = np.asarray(values[layer.output_name])
        if value.ndim < 3 or value.size == 0:
            raise OnnxvisError(f"layer {layer.index} ({layer.name}) gave an output of shape {value.shape}, not feature maps; check the model")
        first = value[0]
        if layer.op_type == "NhwcConv":
            first = np.moveaxis(first, -1, 0)
        maps[layer] = first.astype(np.float32, copy=False)
    name = Path(image) if isinstance(image, (str, Path)) else Path("<image>")
    return FeatureMaps(name, spec, chosen, array, maps)


def predict(
    model: "Model",
    image: "str | Path | Image.Image",
    preprocess: "Preprocess | None" = None,
    layout: str | None = None,
    inputs: Mapping[str, "float | np.ndarray"] | None = None,
    outputs: list[str] | None = None,
    *,
    explicit_size: bool = False,
) -> dict[str, np.ndarray]:
    """Run the whole model on ``image`` and return its outputs.

    Args:
        model, image, preprocess, layout, inputs, explicit_size: as for :func:`feature_maps`.
        outputs: which graph outputs (by name); all by default.

    Returns:
        output name -> array, in the order of the graph's outputs (or of ``outputs``).
    """
    from onnxvis.runner import run_tensors

    names = list(outputs) if outputs is not None else [o.name for o in model.graph.output]
    known = {o.name for o in model.graph.output}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise OnnxvisError(f"the model has no output {unknown[0]!r}; its outputs are {', '.join(sorted(known))}")
    spec, _, array = prepare_input(model, image, preprocess, layout, explicit_size=explicit_size)
    return run_tensors(model, model_feeds(model, spec, array, names, inputs), names)
