"""Gradient class activation maps of an ONNX model: grad-cam's GradCAM family, on the gradient engine.

One pass per image, forward and backward in one onnxruntime session
(:meth:`onnxvis.engine.inspector.Inspector.gradients`), gives the activations at every place and the
gradient of the target's score there (the score before a final Softmax: the logits, as grad-cam
takes them); :mod:`onnxvis.analysis.cam.gradmaths` turns them into maps. FullGrad differentiates at
every layer with a bias (Conv with a bias input, BatchNormalization) and at the input, in the same
pass, and has no place of its own: grad-cam's FullGrad ignores ``target_layers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam import maths as cam
from onnxvis.analysis.cam.gradmaths import GRADIENT_METHODS, fullgrad_map, gradient_raw_map
from onnxvis.analysis.cam.runs import CamResult, Place, class_scores, score_rule, target_index
from onnxvis.engine.gradients import score_seeds
from onnxvis.engine.inspector import map_images
from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.engine.inspector import Inspector, Prepared

__all__ = ["FULLGRAD_PLACE", "bias_layers", "gradient_cams", "gradient_cams_of"]

# FullGrad's one map per image is named after this place (its files: cam_fullgrad_<image>_bias_layers.png).
FULLGRAD_PLACE = "bias_layers"


def _constant(insp: Inspector, name: str) -> np.ndarray | None:
    """A tensor stored in the model (an initializer or a Constant node's value), as float32; None if computed."""
    model = insp.model
    if model.has_initializer(name):
        return np.asarray(model.tensor(name), dtype=np.float32)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return np.asarray(model.decode(attr.t)).astype(np.float32)
    return None


def bias_layers(insp: Inspector) -> list[tuple[str, np.ndarray]]:
    """FullGrad's layers, in graph order: (output tensor, bias) for every Conv with a stored bias and
    every BatchNormalization (bias beta - mean * gamma / sqrt(var + eps), as grad-cam's
    ``get_bias_data``) of the main graph. Where an exporter folded a BatchNormalization into the Conv
    before it, the Conv's bias is the folded one and its output the BatchNormalization's: the same term."""
    found = []
    for node in insp.model.graph.node:
        if node.domain not in ("", "ai.onnx") or not node.output:
            continue
        if node.op_type == "Conv" and len(node.input) > 2 and node.input[2]:
            bias = _constant(insp, node.input[2])
            if bias is not None:
                found.append((node.output[0], bias))
        elif node.op_type == "BatchNormalization" and len(node.input) >= 5:
            values = [_constant(insp, n) for n in node.input[1:5]]
            if any(v is None for v in values):
                continue
            gamma, beta, mean, var = (np.asarray(v, np.float32) for v in values)
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            found.append((node.output[0], (-(mean * gamma / np.sqrt(var + np.float32(eps))) + beta).astype(np.float32)))
    if not found:
        raise OnnxvisError("FullGrad needs layers with a bias (a Conv with a bias, or a BatchNormalization); the model has none")
    return found


def gradient_cams(
    insp: Inspector,
    images: Iterable,
    places: Sequence[Place],
    method: str,
    target: int | str | None = None,
    output: str | None = None,
) -> Iterator[CamResult]:
    """The gradient CAM of each image at each place (FullGrad: one map per image), as grad-cam 1.5 computes it.

    Raises:
        OnnxvisError: an unknown method, a place that is not (C, h, w), a target out of range, or a
            model the gradient engine cannot differentiate (naming the op and node).
    """
    if method not in GRADIENT_METHODS:
        raise OnnxvisError(f"unknown gradient CAM method {method!r}; choose from {', '.join(GRADIENT_METHODS)}")
    if method != "fullgrad" and not places:
        raise OnnxvisError("no place to take a class activation map from; give a conv layer or a tensor")
    output = insp.class_output(output)
    layers = bias_layers(insp) if method == "fullgrad" else []
    for prepared in map_images(lambda p: p, images, insp):
        yield from gradient_cams_of(insp, prepared, places, method, target, output, layers)


def gradient_cams_of(
    insp: Inspector,
    prepared: Prepared,
    places: Sequence[Place],
    method: str,
    target: int | str | None = None,
    output: str | None = None,
    layers: Sequence[tuple[str, np.ndarray]] | None = None,
) -> list[CamResult]:
    """The maps of one prepared image: one forward pass for the target (when it is the predicted class),
    then one forward and backward pass for every place together. ``layers``: :func:`bias_layers`, for FullGrad."""
    spec = insp.image_input
    output = insp.class_output(output)
    x = np.asarray(prepared.array[:1], dtype=np.float32)
    size = (x.shape[2], x.shape[3]) if spec.layout == "NCHW" else (x.shape[1], x.shape[2])
    if method == "fullgrad":
        layers = list(layers) if layers is not None else bias_layers(insp)
        tensors = [spec.name, *(name for name, _ in layers)]
    else:
        tensors = [p.tensor for p in places]
    graph = insp.gradients(tensors, output, x.shape[1:], rows=1)
    scores = class_scores(graph.forward(x), spec.layout, graph.score.axis)[0]
    index = target_index(target, scores, insp.labels)
    label = insp.labels[index] if insp.labels and index < len(insp.labels) else None
    shape = graph.shapes[graph.score.tensor]
    run = graph.run(x, score_seeds(shape, np.array([[index]]), spec.layout, graph.score.axis))
    rule = score_rule(shape, spec.layout, graph.score.axis)

    def result(place: Place, raw_cam: np.ndarray, acts: np.ndarray) -> CamResult:
        return CamResult(
            image=prepared.image, method=method, place=place, target=index, target_label=label, score=float(scores[index]),
            cam=raw_cam, rgb=prepared.rgb, input=prepared.array[:1], activations=acts, score_rule=rule,
        )

    if method == "fullgrad":
        assert layers is not None
        channels_first = (lambda a: a) if spec.layout == "NCHW" else (lambda a: np.moveaxis(a, -1, 0))
        image = channels_first(x[0])
        terms = [(bias, run.gradients[name][0, ..., 0]) for name, bias in layers]
        final = fullgrad_map(image, channels_first(run.gradients[spec.name][0, ..., 0]), terms, size)
        return [result(Place(spec.name, FULLGRAD_PLACE), final, image)]
    results = []
    for place in places:
        value = np.asarray(run.values[place.tensor])
        acts, grads = value[0], run.gradients[place.tensor][0, ..., 0]
        if acts.ndim != 3 or min(acts.shape) < 1:
            raise OnnxvisError(
                f"tensor {place.tensor!r} has shape {value.shape}, not (batch, channels, height, width): a class "
                "activation map needs a spatial tensor; choose a conv layer or a tensor before the global pooling"
            )
        if place.channels_last:
            acts, grads = np.moveaxis(acts, -1, 0), np.moveaxis(grads, -1, 0)
        raw = gradient_raw_map(method, acts.astype(np.float32), grads)
        results.append(result(place, cam.finish(raw, size), acts.astype(np.float32)))
    return results
