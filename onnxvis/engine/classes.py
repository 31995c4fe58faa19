"""Class scores: which output holds them, and the top-k classes with their names; reading a file of names.

Pure functions over arrays and the model's declared outputs; the Inspector runs the model. Class
names come, in this order of precedence, from a file the user gives (:func:`load_labels`), from the
model's metadata (``onnxvis export --labels``), or from a guess (:func:`guess_class_names`): a model
with 1000 class scores, or 1001 after a background class, gets ImageNet-1k's names, shipped as
``imagenet_classes.txt`` beside this module (made from torchvision's list by exporters/imagenet_labels.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.image.inputs import input_shape

if TYPE_CHECKING:
    from onnxvis.model.file import Model

TOP_K = 5
MAX_LABELS_BYTES = 64 << 20  # a labels file is text; anything larger is not one
IMAGENET_CLASSES = "imagenet_classes.txt"
"""ImageNet-1k's 1000 names, one per line in class-index order: package data of :mod:`onnxvis.engine`."""
IMAGENET = "ImageNet-1k"
BACKGROUND = "background"
"""The name of class 0 of a model with 1001 scores: TF-slim's classifiers put a background class first."""


@dataclass(frozen=True)
class ClassNames:
    """The class names a model's scores are shown with, and where they came from.

    Attributes:
        names: one name per class, in class-index order; None when the classes have no names.
        origin: where the names came from, in words, e.g. "file pets.txt", "ImageNet-1k".
        source: "file" (given by the user), "metadata" (stored in the model), "guess" or "none".
        reason: why a guess was made, e.g. "guessed from 1000 outputs"; empty otherwise.
    """

    names: tuple[str, ...] | None
    origin: str
    source: Literal["file", "metadata", "guess", "none"]
    reason: str = ""

    @property
    def guessed(self) -> bool:
        return self.source == "guess"

    def describe(self) -> str:
        """``origin (reason)``, e.g. "ImageNet-1k (guessed from 1000 outputs)"."""
        return f"{self.origin} ({self.reason})" if self.reason else self.origin


NO_NAMES = ClassNames(None, "none", "none")


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """ImageNet-1k's 1000 class names (torchvision's), read once from the shipped file."""
    text = resources.files("onnxvis.engine").joinpath(IMAGENET_CLASSES).read_text(encoding="utf-8")
    names = tuple(text.splitlines())
    if len(names) != 1000 or not all(names):  # a broken install, not a user mistake
        raise RuntimeError(f"onnxvis's {IMAGENET_CLASSES} holds {len(names)} names, not ImageNet-1k's 1000")
    return names


def guess_class_names(count: int | None) -> ClassNames | None:
    """The names a model with ``count`` class scores and no names of its own most likely has, said as a guess.

    1000 scores: ImageNet-1k's classes, as most ImageNet classifiers of any framework have them.
    1001 scores: the same after a background class (class 0), as TF-slim's classifiers have them.
    Any other count: None (no guess).
    """
    if count == 1000:
        return ClassNames(imagenet_classes(), IMAGENET, "guess", "guessed from 1000 outputs")
    if count == 1001:
        return ClassNames(
            (BACKGROUND, *imagenet_classes()), f"{IMAGENET} after a {BACKGROUND} class", "guess",
            "guessed from 1001 outputs, as TF-slim models have",
        )
    return None


def are_probabilities(scores: np.ndarray) -> bool:
    """Whether ``scores`` already are probabilities: in [0, 1] and summing to 1 (a model that ends in a softmax)."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    return bool(values.size and values.min() >= 0 and values.max() <= 1 and abs(values.sum() - 1) < 1e-3)


def probabilities(scores: np.ndarray) -> np.ndarray:
    """``scores`` as probabilities: kept when they already are (see :func:`are_probabilities`), else a softmax."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if are_probabilities(values):
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


CLASS_SHAPES = "(N, K) or (N, K, 1, 1)"
"""The shapes of class scores, in words: a batch of K scores, or of K scores on a 1x1 map (a conv classifier)."""


def is_class_shape(shape: Sequence[int | None]) -> bool:
    """Whether a declared output shape (batch first; None where dynamic) is class scores: (N, K) or (N, K, 1, 1), K > 1.

    A detector's (N, anchors, 1), a probability map (N, 1, H, W) or a (N, T, D) sequence is not: their values
    are not one score per class, and a softmax over them means nothing.
    """
    shape = tuple(shape)
    if len(shape) == 2:
        count = shape[1]
    elif len(shape) == 4 and shape[2:] == (1, 1):
        count = shape[1]
    else:
        return False
    return count is None or count > 1


def class_count_of(shape: Sequence[int | None]) -> int | None:
    """K of a class-score shape (see :func:`is_class_shape`); None when it is dynamic or the shape is not one."""
    return shape[1] if is_class_shape(shape) else None


def check_class_scores(scores: np.ndarray, output: str) -> None:
    """Refuse one image's values of ``output`` (batch removed) that are not one score per class: (K,) or (K, 1, 1).

    Raises:
        OnnxvisError: another shape, with the shape and how to choose another output.
    """
    shape = tuple(np.shape(scores))
    if len(shape) == 1 or (len(shape) == 3 and shape[1:] == (1, 1)):
        return
    dims = "x".join(str(d) for d in ("N", *shape))
    raise OnnxvisError(
        f"output {output!r} gives values of shape [{dims}], not class scores, which are {CLASS_SHAPES}; "
        "name the output that holds the class scores",
        setting="target_output",
    )


def class_outputs(model: "Model", classes: int | None = None) -> list[str]:
    """The graph outputs whose declared shape is class scores: (N, K) or (N, K, 1, 1), K > 1 (see :func:`is_class_shape`).

    With ``classes`` (the number of labels), only outputs of exactly that many scores.
    """
    found = []
    for output in model.graph.output:
        shape = input_shape(output)
        if not shape or not is_class_shape(shape):
            continue
        size = shape[1]
        if classes is not None and size != classes:
            continue
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


def load_labels(path: str | Path, classes: int | None, *, setting: str = "labels") -> list[str]:
    """Class names from a file (see :func:`read_labels`), one for each of the model's ``classes`` scores.

    Args:
        path: a text file with one name per line, or a JSON list of names.
        classes: how many class scores the model gives; None when its graph does not say (the
            count is then checked against the scores when they are computed).
        setting: the parameter the file was given as, for the error (see :class:`OnnxvisError`).

    Raises:
        OnnxvisError: a file :func:`read_labels` refuses, or a count other than ``classes``.
    """
    try:
        labels = read_labels(path)
    except OnnxvisError as exc:
        raise OnnxvisError(str(exc), setting=setting) from None
    check_label_count(labels, classes, f"labels file {Path(path)}", setting=setting)
    return labels


def check_label_count(labels: Sequence[str], classes: int | None, what: str = "the class names", *, setting: str = "labels") -> None:
    """Refuse names whose count is not the model's class count (a shifted or cut list names every class wrongly).

    Raises:
        OnnxvisError: ``len(labels) != classes`` (``classes`` None: nothing to check).
    """
    if classes is not None and len(labels) != classes:
        raise OnnxvisError(
            f"{what} names {len(labels)} classes but the model scores {classes}; give one name per class, "
            "in the order of the model's outputs",
            setting=setting,
        )
