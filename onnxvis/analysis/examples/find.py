"""The one entry point of dataset examples: :func:`find_examples`, for the command, the tests and both engines.

It opens the Inspector, plans the run (:mod:`onnxvis.analysis.examples.run`), chooses the engine
(this process, or Ray Data: :mod:`onnxvis.analysis.examples.ray_engine`, which builds on ``run``
too) and collects the state in the output folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from onnxvis.analysis.examples.run import DEFAULT_KEEP, Engine, ExamplesState, collect_examples, find_images, local_engine, make_plan
from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError
from onnxvis.outdir import OutputDir, default_root

if TYPE_CHECKING:
    from onnxvis.model.file import Model
    from onnxvis.model.layers import ConvLayer
@dataclass(frozen=True)
class Examples:
    """What :func:`find_examples` did: the run's state, and the Inspector, layers, images and folder it used."""

    state: ExamplesState
    inspector: Inspector
    layers: list["ConvLayer"]
    images: list[Path]
    out: OutputDir


def reader_layer(inspector: Inspector) -> "ConvLayer":
    """The conv layer a reader looks at first: the last one of the main graph whose output is spatial (wider
    than 1x1, by onnx's shape inference; unknown counts as spatial) and that is not the classifier, a conv
    with one channel per class between the last spatial layers and the scores (SqueezeNet's conv10, 1000
    channels: its layer before, fire9's expand3x3, 256, is taken). The last conv layer when none is left.

    Raises:
        OnnxvisError: the model has no conv layer.
    """
    from onnxvis.engine.classes import class_count_of, class_outputs
    from onnxvis.image.inputs import input_shape
    from onnxvis.model.layers import no_conv_layer
    from onnxvis.model.shapes import infer_shapes

    layers = [layer for layer in inspector.layers if layer.in_main_graph]
    if not layers:
        raise no_conv_layer()
    outputs = class_outputs(inspector.model)
    value = next((o for o in inspector.model.graph.output if o.name in outputs[:1]), None) if len(outputs) == 1 else None
    shape = input_shape(value) if value is not None else None
    classes = class_count_of(shape) if shape else None
    shapes = infer_shapes(inspector.model)  # a layer whose shape is unknown counts as spatial
    tail = True  # still among the layers after the last spatial one, where the classifier lies
    for layer in reversed(layers):
        dims = shapes.get(layer.output_name)
        spatial = (dims[1:-1] if layer.channels_last else dims[2:]) if dims else None
        if spatial and all(d is not None and d <= 1 for d in spatial):
            continue  # a 1x1 map: a classifier or a squeeze, nothing to crop
        if tail and classes is not None and layer.out_channels == classes:
            tail = False
            continue  # one channel per class: the classifier
        return layer
    return layers[-1]


def find_examples(
    model: "str | os.PathLike | Model",
    sources: Sequence[str | os.PathLike],
    config: InspectorConfig | None = None,
    *,
    layers: str | int | None = None,
    keep: int = DEFAULT_KEEP,
    out: "OutputDir | str | os.PathLike | None" = None,
    engine: "str | Engine" = "local",
    fresh: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    on_start: "Callable[[Inspector], None] | None" = None,
) -> Examples:
    """For each channel of ``layers``, the ``keep`` images of ``sources`` that excite it most.

    The one way to run dataset examples: the command, the tests and both engines go through it. The
    state is saved in the output folder as it goes; a rerun continues it (unless ``fresh``) and
    scores only the images it has not seen. Draw the result with :func:`onnxvis.write.examples.draw_examples`.

    Args:
        model: the .onnx path, or an opened model.
        sources: folders of images (walked recursively) and image files.
        config: how to open the Inspector (preprocessing, layout, other inputs, batch size); the Ray
            engine's workers open theirs from the same config.
        layers: conv layers, as :meth:`Inspector.select <onnxvis.engine.inspector.Inspector.select>`
            takes them; default: :func:`reader_layer`, the last spatial conv layer before the classifier.
        keep: entries kept per channel (a later redraw can show up to that many).
        out: the output folder (default ``onnxvis-out/<model name>``); the model is never overwritten.
        engine: "local" (this process), "ray" (Ray Data on this machine, see
            :func:`onnxvis.analysis.examples.ray_engine.ray_engine` for a cluster), or an :data:`Engine`.
        fresh: ignore a saved state instead of continuing it.
        progress: a progress bar on stderr when it is a terminal.
        log: where notes go (files skipped, a run continued).
        on_start: called with the Inspector once the model ran on the first image, before the long
            scoring starts (the command prints its notes there).

    Raises:
        OnnxvisError: no image, a bad model, layer or setting, or a saved state of another run.
    """
    if isinstance(engine, str):
        if engine == "ray":
            from onnxvis.analysis.examples.ray_engine import ray_engine

            engine = ray_engine()
        elif engine != "local":
            raise OnnxvisError(f"the engine must be 'local' or 'ray', got {engine!r}", setting="engine")
    images = find_images(sources)
    inspector = Inspector(model, config)
    chosen = inspector.select(layers) if layers is not None else [reader_layer(inspector)]
    if not isinstance(out, OutputDir):
        out = OutputDir(default_root(inspector.model.name) if out is None else Path(out), protect=[inspector.model.path])
    plan, meta = make_plan(inspector, chosen, images, keep)
    if on_start is not None:
        on_start(inspector)
    run = local_engine(inspector) if isinstance(engine, str) else engine
    state = collect_examples(plan, meta, images, out, run, fresh=fresh, progress=progress, log=log)
    return Examples(state, inspector, chosen, images, out)
