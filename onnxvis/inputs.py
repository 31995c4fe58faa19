"""What a model wants as its image input, and which preprocessing to use for it.

From the graph alone: which input is the image, its layout (NCHW or NHWC), channels, dtype and
fixed size. From the model's metadata (our exporter's) or a guess: the preprocessing. The result
is printed, so a user always sees what was assumed and how to change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    import onnx

    from onnxvis.model import Model
    from onnxvis.preprocess import Preprocess


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

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"input {self.name!r} [{dims}] {self.dtype.name} {self.layout} ({self.layout_reason})"


def _dims(value: "onnx.ValueInfoProto") -> tuple[int | None, ...] | None:
    t = value.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.tensor_type.shape.dim)


def _dtype(value: "onnx.ValueInfoProto") -> np.dtype:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
    except Exception:
        return np.dtype(np.float32)


def runtime_inputs(model: "Model") -> list["onnx.ValueInfoProto"]:
    """Graph inputs that are fed at run time (before IR 4, initializers are listed as inputs too)."""
    return [i for i in model.graph.input if not model.has_initializer(i.name)]


def _first_consumer(model: "Model", name: str) -> "onnx.NodeProto | None":
    for node in model.graph.node:
        if name in node.input:
            return node
    return None


def _guess_layout(model: "Model", value: "onnx.ValueInfoProto", shape: tuple[int | None, ...]) -> tuple[str, str]:
    from onnx import helper

    consumer = _first_consumer(model, value.name)
    if consumer is not None and consumer.op_type == "Transpose":
        perm = next((list(helper.get_attribute_value(a)) for a in consumer.attribute if a.name == "perm"), None)
        if perm == [0, 3, 1, 2]:
            return "NHWC", "a Transpose to NCHW follows the input"
    if shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4):
        return "NCHW", "channels in dimension 1"
    if shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        return "NHWC", "channels in the last dimension"
    return "NCHW", "the ONNX default"


def image_input(model: "Model", layout: str | None = None) -> InputSpec:
    """Find the image-like input: the first runtime input of rank 4 with float data.

    Args:
        model: the opened model.
        layout: "NCHW" or "NHWC" to override the guess.

    Raises:
        OnnxvisError: no input looks like an image.
    """
    candidates = []
    for value in runtime_inputs(model):
        shape = _dims(value)
        if shape is not None and len(shape) == 4 and np.issubdtype(_dtype(value), np.floating):
            candidates.append((value, shape))
    if not candidates:
        described = ", ".join(f"{i.name} {_dims(i)}" for i in runtime_inputs(model)) or "none"
        raise OnnxvisError(
            f"no model input looks like an image (a float tensor of rank 4); inputs: {described}. "
            "'onnxvis kernels' still works on this model"
        )
    value, shape = candidates[0]
    if layout is not None:
        layout = layout.upper()
        if layout not in ("NCHW", "NHWC"):
            raise OnnxvisError(f"--layout must be NCHW or NHWC, got {layout!r}")
        reason = "set by --layout"
    else:
        layout, reason = _guess_layout(model, value, shape)
    return InputSpec(value.name, shape, _dtype(value), layout, reason)


def choose_preprocess(model: "Model", spec: InputSpec, preset: str | None = None) -> "Preprocess":
    """The preprocessing for ``model``: a named preset, else the exporter's metadata, else a guess.

    The guess fits the model's declared size (exact resize) and channels: grey models get 0..255 grey
    (as MNIST models want), colour models get ImageNet's mean and std.
    """
    from onnxvis import preprocess as pp

    if preset is not None:
        chosen = pp.preset(preset)
    else:
        chosen = pp.from_metadata(model.metadata)
        if chosen is None:
            chosen = pp.preset("raw").replace(color="L", mean=(0.0,), std=(1.0,), name="guess: grey 0..255") if spec.channels == 1 else pp.preset("imagenet").replace(name="guess: imagenet")
    if spec.channels == 1 and chosen.color != "L":
        chosen = chosen.replace(color="L", mean=chosen.mean[:1], std=chosen.std[:1])
    height, width = spec.size
    if height and width and (chosen.resize is None or _final_size(chosen) != (height, width)):
        chosen = chosen.replace(resize=(height, width), crop=None)
    return chosen


def _final_size(p: "Preprocess") -> tuple[int, int] | None:
    if p.crop is not None:
        return tuple(p.crop)  # type: ignore[return-value]
    if p.resize is not None and len(p.resize) == 2:
        return tuple(p.resize)  # type: ignore[return-value]
    return None
