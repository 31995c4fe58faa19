"""What an :class:`~onnxvis.engine.inspector.Inspector` is opened with, in one frozen, picklable value.

A command builds it from its flags, a notebook from keywords; ``examples`` pickles it to each Ray
actor, which opens its own Inspector from it and so settles the same image input and preprocessing,
and gets the same numbers, as the process that planned the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    import numpy as np

    from onnxvis.image.preprocess import Preprocess

__all__ = ["InspectorConfig"]


@dataclass(frozen=True)
class InspectorConfig:
    """The settings of an Inspector.

    Attributes:
        preprocess: the preprocessing to use, overriding the model's metadata and any guess.
        origin: where ``preprocess`` came from, in words (default "given by the caller").
        preset: a named preset (see :data:`onnxvis.image.preprocess.PRESETS`) instead of the model's choice.
        changes: fields to change in the chosen preprocessing (``resize``, ``crop``, ``mean``, ``std``,
            ``color``, ``scale``), as a user's flags do. A size set here (``resize`` or ``crop``) is
            kept exactly: see :attr:`explicit_size`.
        layout: "NCHW" or "NHWC", overriding the layout found in the graph.
        inputs: values for the model's other run-time inputs: a number fills the input, an array is
            used as it is (see :func:`onnxvis.image.inputs.fill_inputs`).
        batch_size: images per onnxruntime run when the model's batch dimension is free.
        threads: onnxruntime's intra-op threads (None: the machine's cores).
        target_output: the model output that holds the class scores (None: the one found from the
            outputs' shapes); every analysis that scores classes (predictions, class activation maps) uses it.

    Raises:
        OnnxvisError: the batch size is below 1.
    """

    preprocess: "Preprocess | None" = None
    origin: str | None = None
    preset: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    layout: str | None = None
    inputs: Mapping[str, "float | np.ndarray"] = field(default_factory=dict)
    batch_size: int = 8
    threads: int | None = None
    target_output: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise OnnxvisError(f"the batch size must be 1 or more, got {self.batch_size}", setting="batch_size")
        # Copies of the caller's mappings: a dict changed later does not change a settled Inspector.
        object.__setattr__(self, "changes", dict(self.changes or {}))
        object.__setattr__(self, "inputs", dict(self.inputs or {}))
        object.__setattr__(self, "batch_size", int(self.batch_size))

    @property
    def explicit_size(self) -> bool:
        """The user set the size (``resize`` or ``crop`` among the changes): it is kept exactly, even
        where a dynamic-size model would round it to the multiple it needs, and a size that a fixed-size
        model cannot take is an error rather than silently replaced."""
        return "resize" in self.changes or "crop" in self.changes

    def replace(self, **settings: Any) -> "InspectorConfig":
        """A copy with some settings changed, like :func:`dataclasses.replace`."""
        return dataclasses.replace(self, **settings)
