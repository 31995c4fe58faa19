"""Feature maps and predictions of one image, in one call: shortcuts over the :class:`~onnxvis.engine.inspector.Inspector`.

For many images, or many calls on one model, open an Inspector once and keep it: it keeps its
onnxruntime sessions and batches the images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.inspector import FeatureMaps, ImageLike, Inspector

if TYPE_CHECKING:
    from onnxvis.image.preprocess import Preprocess
    from onnxvis.model.file import Model
    from onnxvis.model.layers import ConvLayer

__all__ = ["FeatureMaps", "feature_maps", "predict"]


def feature_maps(
    model: "Model",
    image: ImageLike,
    layers: list["ConvLayer"],
    preprocess: "Preprocess | None" = None,
    layout: str | None = None,
    inputs: Mapping[str, "float | np.ndarray"] | None = None,
    *,
    changes: Mapping[str, Any] | None = None,
) -> FeatureMaps:
    """Run the model on ``image`` and return the outputs of ``layers``' conv nodes (see
    :meth:`Inspector.feature_maps <onnxvis.engine.inspector.Inspector.feature_maps>`).

    Args:
        model: the opened model.
        image: path of the photo, or a PIL image.
        layers: conv layers of the main graph.
        preprocess: overrides the model's metadata or the guess.
        layout: "NCHW" or "NHWC" to override the detected layout.
        inputs: values for the model's other run-time inputs.
        changes: fields to change in the preprocessing; a size set here is kept exactly (see
            :class:`~onnxvis.engine.config.InspectorConfig`).

    Raises:
        OnnxvisError: a bad image, a layer inside a subgraph, or an input that cannot be fed.
    """
    return _inspector(model, preprocess, layout, inputs, changes).feature_maps(image, layers)


def predict(
    model: "Model",
    image: ImageLike,
    preprocess: "Preprocess | None" = None,
    layout: str | None = None,
    inputs: Mapping[str, "float | np.ndarray"] | None = None,
    outputs: list[str] | None = None,
    *,
    changes: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Run the whole model on ``image`` and return its outputs (all, or ``outputs``), each with batch 1.

    Args:
        model, image, preprocess, layout, inputs, changes: as for :func:`feature_maps`.
        outputs: which graph outputs (by name); all by default.
    """
    values = _inspector(model, preprocess, layout, inputs, changes).outputs(image, outputs)
    return {name: value[None] for name, value in values.items()}


def _inspector(
    model: "Model",
    preprocess: "Preprocess | None",
    layout: str | None,
    inputs: Mapping[str, "float | np.ndarray"] | None,
    changes: Mapping[str, Any] | None,
) -> Inspector:
    return Inspector(model, InspectorConfig(preprocess=preprocess, changes=changes or {}, layout=layout, inputs=inputs or {}))
