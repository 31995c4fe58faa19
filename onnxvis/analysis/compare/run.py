"""Compare model B with model A: the layers paired, their weights, their outputs over images, the class scores.

:func:`open_pair` opens both models and settles what each is fed; :func:`compare` does the work::

    insp_a, insp_b, matching = open_pair("resnet18.onnx", "resnet18_int8.onnx")
    result = compare(insp_a, insp_b, matching, ["cat.jpg", "photos/"])
    for layer in result.ranked():
        print(layer.pair.a.label, layer.weight_sqnr_db, layer.activation_sqnr_db)

Each photo is decoded once and each model runs once over it, in batches, one session per model
asking for every compared tensor at once. What is kept across images is a handful of sums per output
channel (:class:`~onnxvis.analysis.compare.metrics.ActivationSums`), the top-1 of each model, and the
feature maps of one image: the one where the models differ most so far.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxvis.analysis.compare.matching import (
    Matching,
    Pair,
    Probe,
    find_compare_layers,
    layer_weights,
    match_layers,
    probes,
)
from onnxvis.analysis.compare.metrics import ActivationSums, WeightErrors, kl_divergence, weight_errors
from onnxvis.engine.classes import probabilities
from onnxvis.engine.inspector import Inspector, Prepared, prefetch
from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp
from onnxvis.image.inputs import SettledPreprocess, explain_preprocess, runtime_inputs
from onnxvis.model.dequantize import dequantize
from onnxvis.model.file import Model
from onnxvis.model.layers import find_conv_layers

__all__ = ["LayerResult", "ImageDiff", "Classes", "Comparison", "open_pair", "compare", "DEFAULT_WORST"]

DEFAULT_WORST = 4


@dataclass
class LayerResult:
    """One pair of layers compared.

    Attributes:
        pair: the layers and how they were paired.
        probe_a, probe_b: the tensors compared for their outputs.
        weights: the weight errors; None when a weight cannot be read (``weight_problem`` says why).
        activation: the running sums over the images; None without images.
    """

    pair: Pair
    probe_a: Probe
    probe_b: Probe
    weights: WeightErrors | None = None
    weight_problem: str | None = None
    activation: ActivationSums | None = None

    @property
    def index(self) -> int:
        return self.pair.a.index

    @property
    def weight_sqnr_db(self) -> float | None:
        return self.weights.sqnr_db if self.weights is not None else None

    @property
    def activation_sqnr_db(self) -> float | None:
        act = self.activation
        return act.sqnr_db if act is not None and act.comparable else None

    @property
    def activation_problem(self) -> str | None:
        act = self.activation
        if act is None:
            return "no image was run"
        return act.mismatch


@dataclass(frozen=True)
class ImageDiff:
    """How much the two models differ on one image.

    Attributes:
        image: the photo.
        top_a, top_b: each model's best class (index, label or None, probability), when both give class scores.
        kl: KL(A || B) of the class probabilities, in nats.
        noise: the mean over the compared layers of ||a - b||^2 / ||a||^2: how far apart the feature maps are.
    """

    image: Path
    top_a: tuple[int, str | None, float] | None
    top_b: tuple[int, str | None, float] | None
    kl: float | None
    noise: float

    @property
    def flipped(self) -> bool:
        return self.top_a is not None and self.top_b is not None and self.top_a[0] != self.top_b[0]


@dataclass
class Classes:
    """The class scores compared: which outputs, or why they could not be."""

    output_a: str | None = None
    output_b: str | None = None
    problem: str | None = None
    agreement: float | None = None
    mean_kl: float | None = None


@dataclass
class Comparison:
    """Everything :func:`compare` found; the writers (:mod:`onnxvis.write.compare`) draw and write it.

    Attributes:
        model_a, model_b: the models.
        preprocess_a, preprocess_b: what each was fed, and where that came from.
        layers: one per pair, in A's graph order.
        matching: the pairs and the layers left without a partner.
        images: one per photo, in order.
        classes: the class scores compared.
        worst_image: the photo where the feature maps differ most (largest ``noise``).
        worst_maps: for that photo, A's and B's compared tensors (channels first) by layer index.
        worst_photo: that photo as A saw it (uint8 RGB), for the page.
    """

    model_a: Model
    model_b: Model
    preprocess_a: SettledPreprocess
    preprocess_b: SettledPreprocess
    layers: list[LayerResult]
    matching: Matching
    images: list[ImageDiff] = field(default_factory=list)
    classes: Classes = field(default_factory=Classes)
    worst_image: ImageDiff | None = None
    worst_maps: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    worst_photo: np.ndarray | None = None

    def ranked(self) -> list[LayerResult]:
        """The layers from the most damaged: lowest activation SQNR, then lowest weight SQNR, then graph order."""
        def key(layer: LayerResult) -> tuple[float, float, int]:
            act = layer.activation_sqnr_db
            weight = layer.weight_sqnr_db
            return (math.inf if act is None else act, math.inf if weight is None else weight, layer.index)

        return sorted(self.layers, key=key)

    def worst_by_weights(self) -> list[LayerResult]:
        """The layers whose weights differ, from the lowest weight SQNR."""
        differing = [layer for layer in self.layers if layer.weights is not None and not layer.weights.equal]
        return sorted(differing, key=lambda layer: (layer.weights.sqnr_db if layer.weights else math.inf, layer.index))


# ------------------------------------------------------------------------------------ opening


def _no_conv(model: Model, which: str) -> OnnxvisError:
    return OnnxvisError(
        f"model {which} ({model.path.name}) has no convolution layer (Conv, ConvTranspose, QLinearConv, ConvInteger); "
        "compare needs two CNNs, e.g. a float model and its int8 version"
    )


def _size(settled: SettledPreprocess, insp: Inspector) -> tuple[int | None, int | None]:
    """The (H, W) the model is fed: its fixed size, else the preprocessing's crop or exact resize."""
    height, width = insp.image_input.size
    if height and width:
        return height, width
    chosen = settled.preprocess
    if chosen.crop is not None:
        return chosen.crop
    if chosen.resize is not None and len(chosen.resize) == 2:
        return chosen.resize[0], chosen.resize[1]
    return None, None


def _same_values(a: pp.Preprocess, b: pp.Preprocess) -> bool:
    return (a.resize, a.crop, a.mean, a.std, a.color, a.scale) == (b.resize, b.crop, b.mean, b.std, b.color, b.scale)


def open_pair(
    model_a: str | os.PathLike | Model,
    model_b: str | os.PathLike | Model,
    *,
    preset_b: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    threads: int | None = None,
    inspector_a: Inspector | None = None,
    **options_a: Any,
) -> tuple[Inspector, Inspector, Matching]:
    """Open both models, pair their layers and settle what each is fed.

    A gets its preprocessing as any command does (``options_a``: ``preset``, ``changes``, ``layout``,
    its metadata; a guess), or ``inspector_a`` is already open. B gets ``preset_b``
    when it is given, else its own metadata when it has some, else A's preprocessing: then the two
    must take the same input, or the comparison is refused.

    Raises:
        OnnxvisError: a model has no conv layer, no layer matches, or the models take different inputs.
    """
    values = dict(inputs or {})
    insp_a = inspector_a or Inspector(model_a, inputs=values, batch_size=batch_size, threads=threads, **options_a)
    model_b = model_b if isinstance(model_b, Model) else Model.open(model_b)
    if not any(layer.in_main_graph for layer in find_conv_layers(insp_a.model)):
        raise _no_conv(insp_a.model, "A")
    if not any(layer.in_main_graph for layer in find_conv_layers(model_b)):
        raise _no_conv(model_b, "B")
    matching = match_layers(find_compare_layers(insp_a.model), find_compare_layers(model_b))
    if not matching.pairs:
        raise OnnxvisError(
            f"no layer of {insp_a.model.path.name} matches a layer of {model_b.path.name}: their node names, weight names "
            "and weight shapes all differ; compare two versions of one network (float and int8, fine-tuned and base)"
        )
    names_b = {value.name for value in runtime_inputs(model_b)}
    inputs_b = {name: value for name, value in values.items() if name in names_b}
    layout = options_a.get("layout")
    common: dict[str, Any] = {"inputs": inputs_b, "layout": layout, "batch_size": batch_size, "threads": threads}
    if preset_b is not None:
        return insp_a, Inspector(model_b, preset=preset_b, **common), matching
    if pp.from_metadata(model_b.metadata) is not None:
        return insp_a, Inspector(model_b, **common), matching
    # B says nothing of its own: it is fed what A is fed, if it takes the same input.
    settled_a = insp_a.preprocessing
    own_b = Inspector(model_b, **common)
    spec_a, spec_b = insp_a.image_input, own_b.image_input
    problems = []
    if spec_a.channels and spec_b.channels and spec_a.channels != spec_b.channels:
        problems.append(f"A takes {spec_a.channels} channels, B {spec_b.channels}")
    size_a, size_b = _size(settled_a, insp_a), spec_b.size
    if all(size_b) and all(size_a) and tuple(size_a) != tuple(size_b):
        problems.append(f"A takes {size_a[0]}x{size_a[1]} pixels, B {size_b[0]}x{size_b[1]}")
    if not problems and settled_a.guessed:
        guess_b = explain_preprocess(model_b, spec_b)
        if not _same_values(settled_a.preprocess, guess_b.preprocess):
            problems.append(f"A's guessed preprocessing is {settled_a.preprocess.describe()}, B's {guess_b.preprocess.describe()}")
    if problems:
        raise OnnxvisError(
            f"the models take different inputs ({'; '.join(problems)}) and B's metadata gives no preprocessing of its own; "
            "name B's preprocessing",
            setting="preset_b",
        )
    shared = settled_a.preprocess
    # A size the user set for A is kept exactly for B too (a size in the changes is explicit).
    sizes = {k: v for k, v in insp_a.config.changes.items() if k in ("resize", "crop")}
    insp_b = Inspector(model_b, preprocess=shared, changes=sizes, origin=f"A's ({settled_a.origin}): B's metadata gives none", **common)
    return insp_a, insp_b, matching


# ------------------------------------------------------------------------------------ running


def _constant(model: Model, name: str | None) -> np.ndarray | None:
    if not name:
        return None
    if not model.has_initializer(name):
        raise OnnxvisError(f"the quantization parameter {name!r} is not stored in {model.path.name}; its output cannot be dequantized")
    return model.tensor(name)


class _Reader:
    """Turns a model's raw value for a probe into float32, channels first (dequantized where integer)."""

    def __init__(self, model: Model, probe: Probe):
        self.probe = probe
        self.scale = self.zero = None
        if probe.dequantize is not None:
            self.scale = _constant(model, probe.dequantize[0])
            self.zero = _constant(model, probe.dequantize[1])

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value)
        if self.scale is not None:
            value = dequantize(value, self.scale, self.zero, axis=0)
        elif value.dtype != np.float32:
            value = value.astype(np.float32)
        if self.probe.channels_last and value.ndim >= 2:
            value = np.moveaxis(value, -1, 0)
        return value


def _class_outputs(insp_a: Inspector, insp_b: Inspector, labels_a, labels_b) -> Classes:
    try:
        out_a = insp_a.class_output()
        out_b = insp_b.class_output()
    except OnnxvisError as exc:
        return Classes(problem=f"the class scores cannot be compared: {exc}")
    shape_a = _output_classes(insp_a.model, out_a)
    shape_b = _output_classes(insp_b.model, out_b)
    if shape_a and shape_b and shape_a != shape_b:
        return Classes(out_a, out_b, f"A gives {shape_a} class scores and B {shape_b}: the classes are not the same")
    return Classes(out_a, out_b)


def _output_classes(model: Model, name: str) -> int | None:
    from onnxvis.image.inputs import input_shape

    for output in model.graph.output:
        if output.name == name:
            shape = input_shape(output) or ()
            known = [d for d in shape[1:] if d != 1]
            return known[0] if len(known) == 1 and known[0] else None
    return None


def _top1(scores: np.ndarray, labels: Sequence[str] | None) -> tuple[tuple[int, str | None, float], np.ndarray]:
    probs = probabilities(scores)
    best = int(np.argmax(probs))
    names = list(labels or ())
    return (best, names[best] if best < len(names) else None, float(probs[best])), probs


def _batches(stream: Iterator[tuple[Path, Prepared, Prepared]], size: int) -> Iterator[list[tuple[Path, Prepared, Prepared]]]:
    """Consecutive items whose arrays have the same shapes, at most ``size`` at a time."""
    batch: list[tuple[Path, Prepared, Prepared]] = []
    for item in stream:
        if batch and (item[1].array.shape != batch[0][1].array.shape or item[2].array.shape != batch[0][2].array.shape):
            yield batch
            batch = []
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _own(values: np.ndarray) -> np.ndarray:
    """``values``, copied when it is a view into a bigger array (a batch), so that keeping it keeps no more."""
    base = values.base
    return np.array(values) if isinstance(base, np.ndarray) and base.size > values.size else values


def compare(
    insp_a: Inspector,
    insp_b: Inspector,
    matching: Matching,
    images: Sequence[str | os.PathLike],
    *,
    labels_a: Sequence[str] | None = None,
    labels_b: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Compare the paired layers' weights, then run both models over ``images`` (none: weights only).

    Args:
        labels_a, labels_b: class names (default: each model's own, when it has them).
        progress: called with each image's name once it is done.

    Raises:
        OnnxvisError: an image neither model can take, a tensor that cannot be computed.
    """
    model_a, model_b = insp_a.model, insp_b.model
    pairs = matching.pairs
    layers = [LayerResult(pair, pa, pb) for pair, (pa, pb) in zip(pairs, probes(model_a, model_b, pairs), strict=True)]
    for layer in layers:
        try:
            layer.weights = weight_errors(layer_weights(layer.pair.a), layer_weights(layer.pair.b))
        except (OnnxvisError, ValueError) as exc:
            layer.weight_problem = str(exc)
    result = Comparison(model_a, model_b, insp_a.preprocessing, insp_b.preprocessing, layers, matching)
    if not images:
        result.classes = Classes(problem="no image was run")
        return result

    labels_a = labels_a if labels_a is not None else insp_a.labels
    labels_b = labels_b if labels_b is not None else insp_b.labels
    classes = _class_outputs(insp_a, insp_b, labels_a, labels_b)
    readers = [(_Reader(model_a, layer.probe_a), _Reader(model_b, layer.probe_b)) for layer in layers]
    targets_a = list(dict.fromkeys([layer.probe_a.tensor for layer in layers] + ([classes.output_a] if classes.output_a else [])))
    targets_b = list(dict.fromkeys([layer.probe_b.tensor for layer in layers] + ([classes.output_b] if classes.output_b else [])))
    compare_classes = classes.problem is None and classes.output_a is not None and classes.output_b is not None
    for layer in layers:
        layer.activation = ActivationSums()
    shared = _same_values(insp_a.preprocessing.preprocess, insp_b.preprocessing.preprocess) and (
        insp_a.image_input.layout, insp_a.image_input.dtype) == (insp_b.image_input.layout, insp_b.image_input.dtype)

    def prepared() -> Iterator[tuple[Path, Prepared, Prepared]]:
        for image in images:
            photo = pp.load_image(image)  # decoded once, for both models
            first = insp_a.prepare(photo)
            yield Path(image), first, (first if shared else insp_b.prepare(photo))

    agree = 0
    kl_total = 0.0
    worst_noise = -1.0
    batch_size = min(insp_a.batch_size, insp_b.batch_size)
    for batch in _batches(prefetch(prepared(), 2 * batch_size), batch_size):
        results_a = list(insp_a.run_prepared([item[1] for item in batch], targets_a))
        results_b = list(insp_b.run_prepared([item[2] for item in batch], targets_b))
        for (path, prep_a, _), result_a, result_b in zip(batch, results_a, results_b, strict=True):
            values_a, values_b = result_a.values, result_b.values
            noises = []
            maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for layer, (read_a, read_b) in zip(layers, readers, strict=True):
                a = read_a(values_a[layer.probe_a.tensor])
                b = read_b(values_b[layer.probe_b.tensor])
                assert layer.activation is not None
                noise = layer.activation.add(a, b)
                if noise is not None:
                    noises.append(min(noise, 1e6))
                    if a.ndim >= 3:
                        maps[layer.index] = (a, b)
            top_a = top_b = None
            kl = None
            if compare_classes:
                assert classes.output_a is not None and classes.output_b is not None
                top_a, probs_a = _top1(values_a[classes.output_a], labels_a)
                top_b, probs_b = _top1(values_b[classes.output_b], labels_b)
                if probs_a.shape == probs_b.shape:
                    kl = kl_divergence(probs_a, probs_b)
                    kl_total += kl
                agree += int(top_a[0] == top_b[0])
            diff = ImageDiff(path, top_a, top_b, kl, float(np.mean(noises)) if noises else 0.0)
            result.images.append(diff)
            if diff.noise > worst_noise:  # keep this photo's maps: copies, so that the batch can go
                worst_noise = diff.noise
                result.worst_image = diff
                result.worst_maps = {i: (_own(a), _own(b)) for i, (a, b) in maps.items()}
                result.worst_photo = prep_a.rgb
            if progress is not None:
                progress(path.name)
    count = len(result.images)
    if compare_classes and count:
        classes.agreement = agree / count
        classes.mean_kl = kl_total / count if all(d.kl is not None for d in result.images) else None
    result.classes = classes
    return result
