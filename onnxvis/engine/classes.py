"""Class scores: which output holds them, and the top-k classes with their names; reading a file of names.

Pure functions over arrays and the model's declared outputs; the Inspector runs the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.image.inputs import input_shape

if TYPE_CHECKING:
    from onnxvis.model.file import Model

TOP_K = 5
MAX_LABELS_BYTES = 64 << 20  # a labels file is text; anything larger is not one


def probabilities(scores: np.ndarray) -> np.ndarray:
    """``scores`` as probabilities: kept when they already are (in [0, 1], summing to 1), else a softmax."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.size and values.min() >= 0 and values.max() <= 1 and abs(values.sum() - 1) < 1e-3:
        return values
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def top_k(scores: np.ndarray, labels: Sequence[str] | None, k: int = TOP_K) -> list[tuple[int, str | None, float]]:
    """The k best classes of one image's scores as (index, name or None, probability), best first.

    Scores that are already probabilities are kept; others (logits) go through a softmax. Ties keep
    the lower index first.
    """
    probs = probabilities(scores)
    order = np.argsort(-probs, kind="stable")[: max(0, k)]
    names = list(labels or ())
    return [(int(i), names[i] if i < len(names) else None, float(probs[i])) for i in order]


def class_outputs(model: "Model", classes: int | None = None) -> list[str]:
    """The graph outputs that look like one score per class: (N, C) or (N, C, 1, 1), C > 1.

    With ``classes`` (the number of labels), only outputs of exactly that many scores.
    """
    found = []
    for output in model.graph.output:
        shape = input_shape(output)
        if not shape:
            continue
        known = [d for d in shape[1:] if d != 1]
        if len(known) != 1:
            continue
        size = known[0]
        if classes is not None and size != classes:
            continue
        if size is None or size > 1:
            found.append(output.name)
    return found


def read_labels(path: str | Path) -> list[str]:
    """Class names from a file: a JSON list of names, or plain text with one name per line.

    Surrounding spaces are stripped and a final empty line is allowed; an empty name in the middle
    is refused, as it would shift every later name to the wrong class.

    Raises:
        OnnxvisError: the file is missing, not text, or holds no names or an empty one.
    """
    path = Path(path)
    if not path.is_file():
        raise OnnxvisError(f"labels file not found: {path}; give a text file with one class name per line, or a JSON list")
    if path.stat().st_size > MAX_LABELS_BYTES:
        raise OnnxvisError(f"labels file {path} is larger than {MAX_LABELS_BYTES >> 20} MiB; give a text file with one class name per line")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise OnnxvisError(f"labels file {path} is not UTF-8 text; give a text file with one class name per line, or a JSON list") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except ValueError as exc:
            raise OnnxvisError(f"labels file {path} starts like a JSON list but is not valid JSON ({exc})") from None
        if not isinstance(names, list) or not all(isinstance(n, (str, int, float)) and not isinstance(n, bool) for n in names):
            raise OnnxvisError(f"labels file {path} must hold a JSON list of names (strings)")
        labels = [str(n).strip() for n in names]
    else:
        labels = [line.strip() for line in text.splitlines()]
        while labels and not labels[-1]:
            labels.pop()
    if not labels:
        raise OnnxvisError(f"labels file {path} holds no class names; give one name per line")
    if "" in labels:
        raise OnnxvisError(
            f"labels file {path} has an empty name at position {labels.index('') + 1}; "
            "every class needs a name, in the order of the model's outputs"
        )
    return labels
