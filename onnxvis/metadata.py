"""The model metadata that onnxvis writes and reads: one home for the keys.

``onnxvis export`` stores where a model came from, its preprocessing and its class names in the
ONNX file's ``metadata_props``; every command reads them from here.
"""

from __future__ import annotations

import json
from typing import Mapping

SOURCE_KEY = "onnxvis.source"
"""Where the model came from, e.g. ``torchvision.models.alexnet``."""
WEIGHTS_KEY = "onnxvis.weights"
"""Which weights it carries: ``imagenet``, ``random`` or a file name."""
PREPROCESS_KEY = "onnxvis.preprocess"
"""The preprocessing, as the JSON of :meth:`onnxvis.preprocess.Preprocess.to_json`."""
LABELS_KEY = "onnxvis.labels"
"""The class names, a JSON list of strings in class-index order."""

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
