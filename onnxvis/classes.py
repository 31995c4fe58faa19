"""Class scores: which output holds them, and the top-k classes with their names.

Pure functions over arrays and the model's declared outputs; the Inspector runs the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from onnxvis.inputs import input_shape

if TYPE_CHECKING:
    from onnxvis.model import Model

TOP_K = 5


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
