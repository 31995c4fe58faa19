"""onnxvis: see what a CNN learned, its kernels and feature maps, from the ONNX file alone.

The public API, in the order of the data's path::

    import onnxvis
    model = onnxvis.open_model("models/alexnet.onnx")
    layers = onnxvis.find_conv_layers(model)              # conv layers, in graph order
    weight = onnxvis.kernel_weights(layers[0])             # (O, I, kH, kW) float32
    grid = onnxvis.make_grid(weight, normalize=True, scale_each=True)   # torchvision semantics
    onnxvis.save_png(grid, "conv1.png")
    maps = onnxvis.feature_maps(model, "cat.jpg", layers[:1]).maps[layers[0]]   # (C, H, W)

For many images or many calls, open the engine once::

    with onnxvis.Inspector("models/alexnet.onnx") as insp:
        insp.use_labels(onnxvis.load_labels("pets.txt", insp.class_count()), "file pets.txt")   # optional
        for prediction in insp.predict(["a.jpg", "b.jpg"]):    # batched, decoded in the background
            print(prediction.top[0])                           # (index, name or None, probability)

Names are imported on first use, so ``import onnxvis`` stays cheap (no onnx, onnxruntime or
matplotlib until they are needed, and never torch).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from onnxvis.errors import OnnxvisError

__version__ = "0.1.0"

_EXPORTS = {
    "Inspector": "onnxvis.engine.inspector",
    "InspectorConfig": "onnxvis.engine.config",
    "ClassNames": "onnxvis.engine.classes",
    "load_labels": "onnxvis.engine.classes",
    "Model": "onnxvis.model.file",
    "ConvLayer": "onnxvis.model.layers",
    "find_conv_layers": "onnxvis.model.layers",
    "select_layers": "onnxvis.model.layers",
    "WeightSource": "onnxvis.model.weights",
    "kernel_weights": "onnxvis.model.weights",
    "make_grid": "onnxvis.draw.grids",
    "to_uint8": "onnxvis.draw.grids",
    "kernel_grid": "onnxvis.draw.grids",
    "split_grids": "onnxvis.draw.grids",
    "fmap_grid": "onnxvis.draw.grids",
    "Preprocess": "onnxvis.image.preprocess",
    "PRESETS": "onnxvis.image.preprocess",
    "load_image": "onnxvis.image.preprocess",
    "FeatureMaps": "onnxvis.engine.shortcuts",
    "feature_maps": "onnxvis.engine.shortcuts",
    "predict": "onnxvis.engine.shortcuts",
    "save_png": "onnxvis.write.png",
}

__all__ = ["OnnxvisError", "open_model", *_EXPORTS]


def open_model(path: str) -> "Model":
    """Open an ONNX file; raises OnnxvisError when it is not a readable model."""
    from onnxvis.model.file import Model

    return Model.open(path)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'onnxvis' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from onnxvis.draw.grids import fmap_grid, kernel_grid, make_grid, split_grids, to_uint8
    from onnxvis.engine.classes import ClassNames, load_labels
    from onnxvis.engine.config import InspectorConfig
    from onnxvis.engine.inspector import Inspector
    from onnxvis.engine.shortcuts import FeatureMaps, feature_maps, predict
    from onnxvis.image.preprocess import PRESETS, Preprocess, load_image
    from onnxvis.model.file import Model
    from onnxvis.model.layers import ConvLayer, find_conv_layers, select_layers
    from onnxvis.model.weights import WeightSource, kernel_weights
    from onnxvis.write.png import save_png
