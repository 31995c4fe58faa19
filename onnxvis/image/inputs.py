"""What a model wants as its image input, and which preprocessing to use for it.

From the graph alone: which input is the image (the one that feeds the first conv layer), its
layout (NCHW or NHWC, from the Transpose or conv that reads it), channels, dtype and size, and
whether its height and width must be a multiple of some stride. From the model's metadata (our
exporter's) or a guess: the preprocessing. A guess is always printed with how to change it.

Other inputs (a model may take several) are filled from the user's values, ``NAME=VALUE`` items on the
command line (:func:`parse_input_values`, :func:`fill_inputs`); a missing one is named in the error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp
from onnxvis.model.graph import CONV_OPS, consumers, needed_inputs

if TYPE_CHECKING:
    import onnx

    from onnxvis.image.preprocess import Preprocess
    from onnxvis.model.file import Model

__all__ = [
    "InputSpec",
    "SettledPreprocess",
    "GUESS_HINT",
    "runtime_inputs",
    "input_shape",
    "input_dtype",
    "image_input",
    "other_inputs",
    "tensors_fed_by",
    "size_multiple",
    "choose_preprocess",
    "explain_preprocess",
    "settle_preprocess",
    "match_channels",
    "describe_value",
    "fit_size",
    "fit_array",
    "parse_input_values",
    "fill_inputs",
]

DEFAULT_MAX_SIDE = 640
"""The longer side, in pixels, that a whole image is scaled down to for a model whose height and width are free."""

GUESS_HINT = (
    "change it with a preset (imagenet, caffe, tf, unit, raw, cifar10), or with the settings resize, crop, mean, std, color, scale"
)
"""How a user changes a guessed preprocessing (printed with every guess)."""

# Ops between an input and its first conv that do not change its layout.
_ELEMENTWISE = {
    "Cast", "Identity", "Mul", "Add", "Sub", "Div", "Neg", "Clip", "Sqrt", "Pow", "QuantizeLinear",
    "DequantizeLinear", "DynamicQuantizeLinear", "CastLike",
}
_DOWNSAMPLING = CONV_OPS | {"MaxPool", "AveragePool", "LpPool", "QLinearAveragePool"}


@dataclass(frozen=True)
class InputSpec:
    """The image input of a model.

    Attributes:
        name: the graph input's name.
        shape: its declared shape; None for a dynamic (symbolic or -1) dimension.
        dtype: numpy dtype of the input.
        layout: "NCHW" or "NHWC".
        layout_reason: how the layout was decided (shown to the user).
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    layout: str
    layout_reason: str

    @property
    def channels(self) -> int | None:
        return self.shape[1] if self.layout == "NCHW" else self.shape[3]

    @property
    def size(self) -> tuple[int | None, int | None]:
        """(H, W) as declared; None where dynamic."""
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else (self.shape[1], self.shape[2])

    @property
    def batch(self) -> int | None:
        return self.shape[0]

    @property
    def dynamic(self) -> bool:
        """True when height or width is not fixed by the model."""
        return None in self.size

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"input {self.name!r} [{dims}] {self.dtype.name} {self.layout} ({self.layout_reason})"


PreprocessSource = Literal["argument", "preset", "flags", "metadata", "guess"]


@dataclass(frozen=True)
class SettledPreprocess:
    """The preprocessing settled for a model's image input, and where it came from.

    Attributes:
        preprocess: the settings, sized for the model's declared input where it is fixed.
        origin: in words, e.g. "the model's onnxvis.preprocess metadata" or "guessed from the producer
            onnx-caffe2 ...".
        source: "argument" (given as a Preprocess), "preset", "flags" (a preset or the model's
            choice with some fields changed), "metadata" or "guess".
    """

    preprocess: "Preprocess"
    origin: str
    source: PreprocessSource

    @property
    def guessed(self) -> bool:
        """Neither the user nor the model said it; then print :data:`GUESS_HINT`."""
        return self.source == "guess"

    def describe(self) -> str:
        text = f"{self.preprocess.describe()} [{self.origin}]"
        return f"{text}; {GUESS_HINT}" if self.guessed else text


# ------------------------------------------------------------------------------------ inputs


def input_shape(value: "onnx.ValueInfoProto") -> tuple[int | None, ...] | None:
    """The declared shape of a graph input, None per dynamic dimension; None without a shape."""
    t = value.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.tensor_type.shape.dim)


def input_dtype(value: "onnx.ValueInfoProto") -> np.dtype | None:
    """The numpy dtype of a tensor input, or None (sequences, maps, strings, unknown types)."""
    from onnxvis.model.proto import np_dtype_of

    if not value.type.HasField("tensor_type"):
        return None
    try:
        dtype = np_dtype_of(value.type.tensor_type.elem_type)
    except Exception:
        return None
    return dtype if dtype.kind in "fiub" else None


# Kept for callers of the first version.
_dims = input_shape


def _dtype(value: "onnx.ValueInfoProto") -> np.dtype:
    return input_dtype(value) or np.dtype(np.float32)


def runtime_inputs(model: "Model") -> list["onnx.ValueInfoProto"]:
    """Graph inputs that are fed at run time (before IR 4, initializers are listed as inputs too)."""
    return [i for i in model.graph.input if not model.has_initializer(i.name)]


def describe_value(value: "onnx.ValueInfoProto") -> str:
    """A graph input or output in a few words, e.g. ``'data_0' [1x3x224x224] float16``."""
    shape = input_shape(value)
    dtype = input_dtype(value)
    if not value.type.HasField("tensor_type"):
        kind = value.type.WhichOneof("value") or "unknown"
        return f"{value.name!r} ({kind.replace('_type', '')})"
    from onnxvis.model.proto import DATA_TYPE_NAMES

    elem_type = value.type.tensor_type.elem_type
    if dtype is not None:
        type_name = dtype.name
    elif elem_type in DATA_TYPE_NAMES:
        type_name = DATA_TYPE_NAMES[elem_type].lower()
    else:  # a damaged file
        type_name = f"unknown type {elem_type}"
    dims = "?" if shape is None else "x".join("?" if d is None else str(d) for d in shape)
    return f"{value.name!r} [{dims}] {type_name}"


def _first_conv(model: "Model") -> "onnx.NodeProto | None":
    for node in model.graph.node:
        if node.op_type in CONV_OPS and len(node.input) > 1:
            return node
    return None


def _guess_layout(model: "Model", value: "onnx.ValueInfoProto", shape: tuple[int | None, ...]) -> tuple[str, str]:
    """NCHW or NHWC, from the first Transpose or conv on the input's path, else from the shape."""
    from onnxvis.model.proto import attribute_value

    readers = consumers(model.graph)
    frontier = [value.name]
    seen: set[int] = set()  # ids of the nodes visited
    for _ in range(32):
        following = []
        for name in frontier:
            for node in readers.get(name, []):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if node.op_type == "Transpose":
                    perm = next((list(attribute_value(a)) for a in node.attribute if a.name == "perm"), None)
                    if perm == [0, 3, 1, 2]:
                        return "NHWC", f"a Transpose to NCHW ({node.name or 'unnamed'}) follows the input"
                    if perm == [0, 1, 2, 3]:
                        following.extend(node.output)
                elif node.op_type == "NhwcConv":
                    return "NHWC", "it feeds an NhwcConv"
                elif node.op_type in CONV_OPS:
                    return "NCHW", f"it feeds {node.op_type} {node.name or ''}".rstrip() + " directly"
                elif node.op_type in _ELEMENTWISE:
                    following.extend(node.output)
        if not following:
            break
        frontier = following
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW", "channels in dimension 1"
    if shape[3] in (1, 3) and shape[1] not in (1, 3):
        return "NHWC", "channels in the last dimension"
    return "NCHW", "the ONNX default"


def _not_an_image(value: "onnx.ValueInfoProto", why: str) -> OnnxvisError:
    return OnnxvisError(
        f"model input {describe_value(value)} is not an image ({why}); feature maps need an image input "
        "of rank 4 with 1 or 3 channels, but 'onnxvis kernels' works on this model"
    )


def image_input(model: "Model", layout: str | None = None) -> InputSpec:
    """Find the image input: the runtime input that feeds the first conv layer.

    Without a conv in the main graph, the first numeric runtime input of rank 4.

    Args:
        model: the opened model.
        layout: "NCHW" or "NHWC" to override the guess.

    Raises:
        OnnxvisError: no input looks like an image (rank 4, numeric, 1 or 3 channels), with the reason.
    """
    inputs = runtime_inputs(model)
    by_name = {i.name: i for i in inputs}
    if not inputs:
        raise OnnxvisError("the model has no run-time input, so there is no image to feed; 'onnxvis kernels' still works")
    conv = _first_conv(model)
    feeding = [i.name for i in needed_inputs(model, [conv.input[0]])] if conv is not None else []
    candidates = [by_name[n] for n in feeding] or inputs

    def score(value) -> int:
        """0: not an image; higher: more image-like (spatial extent, 1 or 3 channels)."""
        shape = input_shape(value)
        if shape is None or len(shape) != 4 or input_dtype(value) is None:
            return 0
        spatial = all(d is None or d > 1 for d in shape[2:]) or all(d is None or d > 1 for d in shape[1:3])
        channels = shape[1] in (1, 3, None) or shape[3] in (1, 3, None)
        return 1 + 2 * spatial + channels

    scores = [score(v) for v in candidates]
    value = candidates[scores.index(max(scores))] if max(scores) > 0 else None
    if value is None:
        first = candidates[0]
        shape = input_shape(first)
        if input_dtype(first) is None:
            raise _not_an_image(first, "it is not a numeric tensor")
        if shape is None:
            raise _not_an_image(first, "its shape is not declared")
        kinds = {1: "a vector", 2: "a matrix or a batch of vectors", 3: "a 1-D signal such as audio or text", 5: "a volume or video"}
        raise _not_an_image(first, f"rank {len(shape)}, {kinds.get(len(shape), 'not an image')}")
    shape = input_shape(value)
    dtype = input_dtype(value)
    assert shape is not None and dtype is not None  # score() > 0 checked both
    if layout is not None:
        key = layout.upper()
        if key not in ("NCHW", "NHWC"):
            raise OnnxvisError(f"the layout must be NCHW or NHWC, got {layout!r}", setting="layout")
        layout, reason = key, "set by the user"
    else:
        layout, reason = _guess_layout(model, value, shape)
    spec = InputSpec(value.name, shape, dtype, layout, reason)
    if spec.channels not in (None, 1, 3):
        raise _not_an_image(
            value, f"{spec.channels} channels in {layout} layout; onnxvis feeds 1 (grey) or 3 (colour) channels"
            + ("" if layout == "NHWC" or reason == "set by the user" else ", or try the NHWC layout")
        )
    return spec


# Ops that keep the image's channels where they are (a Transpose to NCHW moves the axis, not the order).
_KEEP_CHANNELS = _ELEMENTWISE | {"Transpose", "Pad", "Reshape", "Resize", "Upsample", "Unsqueeze", "Squeeze"}


def tensors_fed_by(model: "Model", name: str) -> set[str]:
    """The tensors computed from ``name`` by ops that keep its channels in order (elementwise ops, Transpose,
    Pad, ...), ``name`` included: the inputs of a conv that reads the image itself."""
    readers = consumers(model.graph)
    reached, frontier = {name}, [name]
    while frontier:
        following: list[str] = []
        for tensor in frontier:
            for node in readers.get(tensor, []):
                if node.op_type in _KEEP_CHANNELS and node.input and node.input[0] == tensor:
                    following.extend(out for out in node.output[:1] if out and out not in reached)
        reached.update(following)
        frontier = following
    return reached


def other_inputs(model: "Model", spec: InputSpec | None) -> list["onnx.ValueInfoProto"]:
    """Runtime inputs besides the image input."""
    return [i for i in runtime_inputs(model) if spec is None or i.name != spec.name]


# ---------------------------------------------------------------------------------- geometry


def _static_values(model: "Model", name: str) -> np.ndarray | None:
    """The values of ``name`` when the file stores them (an initializer or a Constant node), else None."""
    if not name:
        return None
    try:
        if model.has_initializer(name):
            return np.asarray(model.tensor(name))
        for node in model.graph.node:
            if node.op_type == "Constant" and name in node.output:
                value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
                return None if value is None else np.asarray(model.decode(value))
    except (OnnxvisError, ValueError, TypeError):  # damaged or odd data: nothing known
        return None
    return None


def _upsampling(model: "Model", node: "onnx.NodeProto") -> int | None:
    """How much a Resize, Upsample, ConvTranspose or DepthToSpace enlarges its input: an integer factor
    when the file fixes it (scales, strides, blocksize); 0 when its output size is taken from another
    tensor (Resize with ``sizes``), which fits any input size; None when it is not an upsampling."""
    from onnxvis.model.proto import attribute_value

    def attribute(name: str):
        return next((attribute_value(a) for a in node.attribute if a.name == name), None)

    if node.op_type in ("Resize", "Upsample"):
        given = attribute("scales")  # Upsample before opset 9
        if given is None:
            names = list(node.input)
            where = 2 if node.op_type == "Resize" and len(names) > 2 else 1
            given = _static_values(model, names[where]) if len(names) > where else None
            if (given is None or np.size(given) == 0) and node.op_type == "Resize":
                return 0  # sizes: the output follows another tensor's size (or is unknown)
        scales = np.asarray(given if given is not None else [], dtype=np.float64).reshape(-1)
        if scales.size == 0 or not np.all(np.isfinite(scales)):
            return 0
        return max(1, int(round(float(scales.max()))))
    if node.op_type == "ConvTranspose":
        strides = attribute("strides")
        ok = isinstance(strides, list) and strides and all(isinstance(v, int) for v in strides)
        return max(1, max(strides)) if ok else 1
    if node.op_type == "DepthToSpace":
        blocksize = attribute("blocksize")
        return max(1, blocksize) if isinstance(blocksize, int) else 1
    return None


def size_multiple(model: "Model") -> tuple[int, str]:
    """The multiple that the input's height and width must be, and why.

    A model that downsamples, upsamples by a factor fixed in the file (Resize or Upsample with scales,
    ConvTranspose, DepthToSpace) and joins the paths (an FPN, a U-Net) needs the map it upsamples to
    have been divided exactly: the size must be a multiple of how much that map was downsampled. That
    is the multiple: the largest downsampling of any map that is upsampled by a fixed factor (an
    upsampling divides the downsampling it carries; more downsampling after the last upsampling, as a
    detector's extra levels, needs nothing). A model that only downsamples, or resizes to sizes taken
    from other tensors, takes any size: the multiple is 1.
    """
    from onnxvis.model.proto import attribute_value

    factor: dict[str, int] = {i.name: 1 for i in runtime_inputs(model)}
    needed, where = 1, ""
    for node in model.graph.node:
        f = max((factor.get(n, 0) for n in node.input if n), default=0)
        if f == 0:
            continue
        enlarges = _upsampling(model, node)
        if enlarges is not None:
            if enlarges > 1 and f > needed:
                needed, where = f, f"{node.op_type} {node.name}".rstrip()
            f = max(1, f // enlarges) if enlarges else 1
        elif node.op_type in _DOWNSAMPLING:
            strides = next((attribute_value(a) for a in node.attribute if a.name == "strides"), None)
            if isinstance(strides, list) and strides and all(isinstance(s, int) for s in strides):  # a damaged file can hold anything
                f *= max(1, max(strides))
        elif node.op_type == "SpaceToDepth":
            blocksize = next((attribute_value(a) for a in node.attribute if a.name == "blocksize"), 1)
            f *= max(1, blocksize) if isinstance(blocksize, int) else 1
        for out in node.output:
            if out:
                factor[out] = f
    if needed == 1:
        return 1, "the model does not upsample a downsampled map by a fixed factor, so any size works"
    return needed, f"it upsamples ({where}) a map downsampled by {needed} and joins it with others"


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


# ------------------------------------------------------------------------------ preprocessing


def _producer_guess(model: "Model") -> tuple[str, str] | None:
    producer = (model.proto.producer_name or "").lower()
    if "caffe" in producer:
        return "caffe", f"guessed from the producer {model.proto.producer_name}: Caffe models take BGR 0..255 minus the mean"
    if any(key in producer for key in ("keras", "tf2onnx", "tensorflow", "tflite")):
        return "tf", f"guessed from the producer {model.proto.producer_name}: Keras and TensorFlow models usually take [-1, 1]"
    return None


def explain_preprocess(model: "Model", spec: InputSpec, preset: str | None = None) -> SettledPreprocess:
    """The preprocessing for ``model``, with where it came from.

    Order: a named ``preset``; else the exporter's metadata (``onnxvis.preprocess``); else a guess:
    integer inputs get raw 0..255, one-channel inputs grey 0..255 (MNIST-style), Caffe-made models
    the caffe preset, Keras/TensorFlow-made models the tf preset ([-1, 1]), all others ImageNet's
    mean and std. The channels follow the model (a grey model gets a grey preprocessing), and a
    size the model fixes is used exactly.
    """
    source: PreprocessSource = "metadata"
    chosen: Preprocess | None
    if preset is not None:
        source = "preset"
        chosen = pp.preset(preset)
        origin = f"preset {chosen.name}"
    else:
        chosen = pp.from_metadata(model.metadata)
        origin = f"the model's {pp.METADATA_KEY} metadata"
        if chosen is None:
            source = "guess"
            by_producer = _producer_guess(model)
            if spec.dtype.kind in "iu":
                chosen, origin = pp.preset("raw"), f"guessed: the input is {spec.dtype.name}, so raw 0..255"
            elif spec.channels == 1:
                chosen = pp.preset("raw").replace(color="L", mean=(0.0,), std=(1.0,))
                origin = "guessed: one grey channel, 0..255 as MNIST models take it"
            elif by_producer is not None:
                chosen, origin = pp.preset(by_producer[0]), by_producer[1]
            else:
                chosen, origin = pp.preset("imagenet"), "guessed: ImageNet mean and std, the most common"
            chosen = chosen.replace(name=f"{chosen.name} (guessed)")
    chosen = match_channels(chosen, spec)
    height, width = spec.size
    if height and width and _final_size(chosen) != (height, width):
        chosen = chosen.replace(resize=(height, width), crop=None)
    elif height is None and width is None:
        chosen = free_size(model, chosen, whole=source == "guess")
    return SettledPreprocess(chosen, origin, source)


def free_size(model: "Model", chosen: "Preprocess", whole: bool = False) -> "Preprocess":
    """The size settled for an input whose height and width are both free.

    ``whole`` (a guessed preprocessing), or no size in ``chosen`` (a preset or metadata without one):
    keep the whole image, its longer side at most :data:`DEFAULT_MAX_SIDE` pixels, rather than
    centre-crop away the sides of a page or a wide photo. A size the preset or the metadata gives is
    kept. Either way height and width are rounded to the multiple the graph needs
    (:func:`size_multiple`), so that every command feeds, and prints, the same preprocessing.
    """
    multiple = size_multiple(model)[0]
    if whole or (chosen.resize is None and chosen.crop is None and chosen.max_side is None):
        return chosen.replace(resize=None, crop=None, max_side=chosen.max_side or DEFAULT_MAX_SIDE, multiple=multiple)
    return chosen.replace(multiple=multiple) if multiple > 1 else chosen


def settle_preprocess(
    model: "Model",
    spec: InputSpec,
    preprocess: "Preprocess | None" = None,
    preset: str | None = None,
    changes: Mapping[str, object] | None = None,
    origin: str | None = None,
) -> SettledPreprocess:
    """The preprocessing for ``spec``, the model's image input, as the user's settings make it.

    A ``preprocess`` given whole is the caller's: used as it is, with ``changes`` applied, under its
    own name, and ``origin`` says where it came from (default "given by the caller"). Otherwise
    :func:`explain_preprocess` chooses one (from ``preset``, the model's metadata or a guess), and ``changes``
    replace some of its fields, as a user's flags do. Either way the
    channels follow the model's.

    Raises:
        OnnxvisError: an unknown preset, malformed metadata, or a change that makes no valid preprocessing.
    """
    if preprocess is not None:
        given = preprocess.replace(**changes) if changes else preprocess
        return SettledPreprocess(match_channels(given, spec), origin or "given by the caller", "argument")
    choice = explain_preprocess(model, spec, preset)
    if not changes:
        return choice
    sized = {"max_side": None, "multiple": 1} if "resize" in changes or "crop" in changes else {}  # the user's size, exactly
    chosen = choice.preprocess.replace(**{**sized, **changes}, name=f"{choice.preprocess.name} + flags")
    origin = f"{choice.origin}, with some settings changed by the user"
    return SettledPreprocess(match_channels(chosen, spec), origin, "flags")


def choose_preprocess(model: "Model", spec: InputSpec, preset: str | None = None) -> "Preprocess":
    """The preprocessing for ``model``: see :func:`explain_preprocess`."""
    return explain_preprocess(model, spec, preset).preprocess


def match_channels(chosen: "Preprocess", spec: InputSpec) -> "Preprocess":
    """A grey preprocessing for a grey model, a colour one for a colour model."""
    if spec.channels == 1 and chosen.color != "L":
        if len(set(chosen.mean)) > 1 or len(set(chosen.std)) > 1:
            # A colour mean for a grey model: use the channels' average, the best single value.
            mean: tuple[float, ...] = (float(np.mean(chosen.mean)),)
            std: tuple[float, ...] = (float(np.mean(chosen.std)),)
        else:
            mean, std = chosen.mean[:1], chosen.std[:1]
        return chosen.replace(color="L", mean=mean, std=std)
    if spec.channels in (3, None) and chosen.color == "L":
        return chosen.replace(color="RGB", mean=chosen.mean[:1] * 3, std=chosen.std[:1] * 3)
    return chosen


def _final_size(p: "Preprocess") -> tuple[int, int] | None:
    if p.crop is not None:
        return tuple(p.crop)  # type: ignore[return-value]
    if p.resize is not None and len(p.resize) == 2:
        return tuple(p.resize)  # type: ignore[return-value]
    return None


def fit_size(
    spec: InputSpec,
    chosen: "Preprocess",
    image_size: tuple[int, int],
    multiple: int = 1,
    explicit: bool = False,
) -> "Preprocess":
    """Settle the input size for an image of ``image_size`` (width, height).

    - A size the model fixes is used exactly, unless the user set another (``explicit``), which
      is kept so that the caller can say what is wrong.
    - Dynamic height and width: the preprocessing's own size (e.g. imagenet's crop 224), else the
      image's size; one fixed dimension keeps the image's aspect ratio for the other.
    - Unless the user set the size (``explicit``), height and width are rounded to ``multiple``.

    Returns:
        ``chosen``, or a copy with an exact ``resize`` (and no crop) or a rounded crop.
    """
    fixed_h, fixed_w = spec.size
    if fixed_h and fixed_w:
        if explicit or _final_size(chosen) == (fixed_h, fixed_w):
            return chosen
        return chosen.replace(resize=(fixed_h, fixed_w), crop=None)
    if not fixed_h and not fixed_w and (chosen.max_side is not None or chosen.multiple > 1):
        return chosen  # settled for a free size: the preprocessing itself keeps the whole image and rounds it
    final = _final_size(chosen)
    if final is None:
        width, height = image_size if chosen.resize is None else pp.resized_size(*image_size, chosen.resize)
        final = (height, width)
    height, width = final
    if fixed_h and not fixed_w:
        width, height = max(1, int(round(width * fixed_h / height))), fixed_h
    elif fixed_w and not fixed_h:
        height, width = max(1, int(round(height * fixed_w / width))), fixed_w
    if not explicit and multiple > 1:
        height = height if fixed_h else _round_to(height, multiple)
        width = width if fixed_w else _round_to(width, multiple)
    if (height, width) == _final_size(chosen):
        return chosen
    return chosen.replace(resize=(height, width), crop=None)


def fit_array(spec: InputSpec, array: np.ndarray, multiple: int = 1, what: str = "the array") -> np.ndarray:
    """An array given for the image input, checked and made ready to feed as it is: no preprocessing.

    It must be in the model's layout, with or without the batch axis (a batch of 1 is added); its fixed
    dimensions must be the input's, and a free height or width must be a multiple of ``multiple`` (the
    size the graph needs). The values are cast to the input's dtype.

    Raises:
        OnnxvisError: a rank, a size or values that do not fit the input, with the shape it wants.
    """
    array = np.asarray(array)
    rank = len(spec.shape)
    if array.dtype.kind not in "fiub":
        raise OnnxvisError(f"{what} holds {array.dtype} values; the image input takes numbers")
    wanted = "x".join("?" if d is None else str(d) for d in spec.shape)
    if array.ndim == rank - 1:
        array = array[None]
    if array.ndim != rank or array.shape[0] != 1:
        raise OnnxvisError(
            f"{what} has shape {list(np.shape(array))}, but input {spec.name!r} is [{wanted}] ({spec.layout}); "
            "give one example in the model's layout, with or without a batch of 1"
        )
    for axis, (want, have) in enumerate(zip(spec.shape[1:], array.shape[1:], strict=True), 1):
        if want is not None and want != have:
            raise OnnxvisError(
                f"{what} has shape {list(array.shape)}, but input {spec.name!r} is [{wanted}] ({spec.layout}): "
                f"dimension {axis} must be {want}"
            )
    height, width = spec.size
    spatial = (1, 2) if spec.layout == "NHWC" else (2, 3)
    if multiple > 1:
        for axis, fixed in zip(spatial, (height, width), strict=True):
            if fixed is None and array.shape[axis] % multiple:
                raise OnnxvisError(
                    f"{what} has shape {list(array.shape)}; input {spec.name!r} needs a height and width that are "
                    f"multiples of {multiple}, as the graph downsamples and upsamples again"
                )
    return np.ascontiguousarray(array.astype(spec.dtype, copy=False))


# ------------------------------------------------------------------------------- other inputs


def parse_input_values(items: Iterable[str] | None) -> dict[str, "float | np.ndarray"]:
    """Parse ``NAME=VALUE`` items: VALUE is a number (fill the input with it) or a .npy file.

    Raises:
        OnnxvisError: an item without ``=``, or a value that is neither a number nor a readable .npy file.
    """
    values: dict[str, float | np.ndarray] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise OnnxvisError(f"a value for a model input is NAME=VALUE (a number, or a .npy file), got {item!r}", setting="inputs")
        try:
            values[name] = float(text)
            continue
        except ValueError:
            pass
        path = Path(text).expanduser()
        if not path.is_file():
            raise OnnxvisError(
                f"the value {text!r} for the model input {name!r} is neither a number nor an existing .npy file", setting="inputs"
            )
        try:
            values[name] = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise OnnxvisError(
                f"the value {text!r} for the model input {name!r} cannot be read as a .npy file ({type(exc).__name__}: {exc})",
                setting="inputs",
            ) from None
    return values


def fill_inputs(
    model: "Model", names: Iterable[str], values: Mapping[str, "float | np.ndarray"], image_name: str | None = None
) -> dict[str, np.ndarray]:
    """Arrays for the runtime inputs ``names`` from the user's values.

    A number fills the input's declared shape (dynamic dimensions become 1); an array is cast to
    the input's type and must fit its fixed dimensions.

    Raises:
        OnnxvisError: a needed input has no value (the message names it and its shape),
            a value names no input, or an array does not fit.
    """
    inputs = {i.name: i for i in runtime_inputs(model)}
    unknown = [n for n in values if n not in inputs]
    if unknown:
        known = ", ".join(repr(n) for n in inputs) or "none"
        raise OnnxvisError(
            f"a value is given for {unknown[0]!r}, but the model has no run-time input of that name; its inputs are {known}",
            setting="inputs",
        )
    if image_name is not None and image_name in values:
        raise OnnxvisError(
            f"a value is given for {image_name!r}, the image input; give the array as the image instead "
            "(a .npy file where the images go is fed as it is)",
            setting="inputs",
        )
    feeds: dict[str, np.ndarray] = {}
    missing = []
    for name in names:
        if name == image_name:
            continue
        value_info = inputs[name]
        if name not in values:
            missing.append(value_info)
            continue
        shape = input_shape(value_info)
        dtype = input_dtype(value_info)
        if dtype is None:
            raise OnnxvisError(f"input {describe_value(value_info)} is not a numeric tensor; onnxvis cannot feed it")
        value = values[name]
        if isinstance(value, np.ndarray):
            array = value
            if shape is not None and (
                array.ndim != len(shape) or any(d is not None and d != a for d, a in zip(shape, array.shape, strict=True))
            ):
                raise OnnxvisError(
                    f"the value for the model input {name!r} has shape {list(array.shape)}, but the input is "
                    f"{describe_value(value_info)}",
                    setting="inputs",
                )
            array = array.astype(dtype)
        else:
            if shape is None:
                raise OnnxvisError(
                    f"the model input {name!r} declares no shape for the number {value:g} to fill; give a .npy file instead",
                    setting="inputs",
                )
            array = np.full(tuple(d or 1 for d in shape), value, dtype=dtype)
        feeds[name] = np.ascontiguousarray(array)
    if missing:
        described = ", ".join(describe_value(v) for v in missing)
        raise OnnxvisError(
            f"the model needs {'input' if len(missing) == 1 else 'inputs'} {described} besides the image; "
            f"give {'it' if len(missing) == 1 else 'each'} a value: a number fills it, or a .npy file",
            setting="inputs",
        )
    return feeds

