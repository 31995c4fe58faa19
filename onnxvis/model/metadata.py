"""The model metadata that onnxvis writes and reads: one home for the keys.

``onnxvis export`` stores where a model came from, its preprocessing and its class names in the
ONNX file's ``metadata_props``; every command reads them from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

SOURCE_KEY = "onnxvis.source"
"""Where the model came from, e.g. ``torchvision.models.alexnet``."""
WEIGHTS_KEY = "onnxvis.weights"
"""Which weights it carries: ``imagenet``, ``random`` or a file name."""
PREPROCESS_KEY = "onnxvis.preprocess"
"""The preprocessing, as the JSON of :meth:`onnxvis.image.preprocess.Preprocess.to_json`."""
LABELS_KEY = "onnxvis.labels"
"""The class names, a JSON list of strings in class-index order."""
LABELS_ORIGIN_KEY = "onnxvis.labels_origin"
"""Where the class names came from, e.g. ``file pets.txt, given at export``."""

DESCRIBED_KEYS = (SOURCE_KEY, WEIGHTS_KEY)
"""The keys that summaries show as they are."""


def labels_from_metadata(metadata: Mapping[str, str]) -> list[str] | None:
    """The class names stored under :data:`LABELS_KEY`, or None when absent or malformed."""
    text = metadata.get(LABELS_KEY)
    if text is None:
        return None
    try:
        labels = json.loads(text)
    except ValueError:
        return None
    if not isinstance(labels, list) or not labels:
        return None
    return [str(label) for label in labels]


def labels_origin(metadata: Mapping[str, str]) -> str | None:
    """Where the stored class names came from (:data:`LABELS_ORIGIN_KEY`), or None when not recorded."""
    origin = metadata.get(LABELS_ORIGIN_KEY)
    return " ".join(origin.split()) if isinstance(origin, str) and origin.strip() else None


def preprocess_origin(metadata: Mapping[str, str]) -> str | None:
    """Where the stored preprocessing came from, as the exporter recorded it in the ``origin`` field of
    :data:`PREPROCESS_KEY` (e.g. "torchvision's AlexNet_Weights.IMAGENET1K_V1 transforms"); None when not recorded."""
    try:
        data = json.loads(metadata.get(PREPROCESS_KEY) or "null")
    except ValueError:
        return None
    origin = data.get("origin") if isinstance(data, dict) else None
    return " ".join(origin.split()) if isinstance(origin, str) and origin.strip() else None
