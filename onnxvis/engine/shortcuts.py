"""Feature maps and predictions of one image, in one call: shortcuts over the :class:`~onnxvis.engine.inspector.Inspector`.

For many images, or many calls on one model, open an Inspector once and keep it: it keeps its
onnxruntime sessions and batches the images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

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
    explicit_size: bool = False,
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
        explicit_size: keep the preprocessing's size exactly (see :class:`~onnxvis.engine.inspector.Inspector`).

    Raises:
        OnnxvisError: a bad image, a layer inside a subgraph, or an input that cannot be fed.
    """
    inspector = Inspector(model, preprocess=preprocess, layout=layout, inputs=inputs, explicit_size=explicit_size)
    return inspector.feature_maps(image, layers)


def predict(
    model: "Model",
    image: ImageLike,
    preprocess: "Preprocess | None" = None,
    layout: str | None = None,
    inputs: Mapping[str, "float | np.ndarray"] | None = None,
    outputs: list[str] | None = None,
    *,
    explicit_size: bool = False,
) -> dict[str, np.ndarray]:
    """Run the whole model on ``image`` and return its outputs (all, or ``outputs``), each with batch 1.

    Args:
        model, image, preprocess, layout, inputs, explicit_size: as for :func:`feature_maps`.
        outputs: which graph outputs (by name); all by default.
    """
    inspector = Inspector(model, preprocess=preprocess, layout=layout, inputs=inputs, explicit_size=explicit_size)
    values = inspector.outputs(image, outputs)
    return {name: value[None] for name, value in values.items()}
