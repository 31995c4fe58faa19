"""Class activation maps of an ONNX model: the forward passes of :mod:`onnxvis.analysis.cam.maths`, run by the Inspector.

ScoreCAM feeds the image times each mask to the whole model, in batches, through one cached
session. AblationCAM changes only the chosen tensor, so it runs only the graph after it (the tail):
the ablated copies are fed at that tensor, with the other tensors the tail reads (a residual
branch, say) computed once from the image and repeated. EigenCAM, FEM and KPCA-CAM need only the
activations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam import maths as cam
from onnxvis.engine.inspector import map_images
from onnxvis.errors import OnnxvisError
from onnxvis.model.graph import outer_names, required_nodes

if TYPE_CHECKING:
    import onnx

    from onnxvis.engine.inspector import Inspector, Prepared
    from onnxvis.model.layers import ConvLayer

__all__ = [
    "CamResult", "Place", "cam_tensors", "cams_of", "class_scores", "compute_cams", "default_layer", "places_for", "tail_inputs",
    "target_index",
]


@dataclass(frozen=True)
class Place:
    """Where a map is taken: a tensor of the graph.

    Attributes:
        tensor: the tensor's name.
        label: names the files: ``<idx>_<layer>`` for a conv layer, the tensor's name otherwise.
        channels_last: the tensor is (N, h, w, C) (a com.microsoft NhwcConv's output).
    """

    tensor: str
    label: str
    channels_last: bool = False


@dataclass(frozen=True)
class CamResult:
    """One map: an image, a place, a method and a target class.

    Attributes:
        cam: (H, W) float32 in [0, 1], the model input's size (grad-cam's output).
        rgb: the photo after resize/crop, uint8 (H, W, 3), to draw the map on.
        score: the target's score on the image (the raw output, as grad-cam's ClassifierOutputTarget).
        input: the array fed to the model (batch 1, the model's layout and dtype), for the metrics.
        activations: the (C, h, w) activations at the place.
    """

    image: Path
    method: str
    place: Place
    target: int
    target_label: str | None
    score: float
    cam: np.ndarray
    rgb: np.ndarray
    input: np.ndarray
    activations: np.ndarray


def places_for(insp: Inspector, layers: Sequence[ConvLayer] = (), tensors: Sequence[str] = ()) -> list[Place]:
    """Places for conv layers and named tensors (checked to exist in the main graph)."""
    from onnxvis.model.layers import layer_stem

    places = []
    for layer in layers:
        if not layer.in_main_graph:
            raise OnnxvisError(
                f"layer {layer.index} ({layer.name}) is inside a subgraph; a class activation map needs a tensor of the main graph"
            )
        places.append(Place(layer.output_name, layer_stem(layer), layer.op_type == "NhwcConv"))
    graph = insp.model.graph
    known = {out for node in graph.node for out in node.output if out}
    for name in tensors:
        if name not in known:
            raise OnnxvisError(
                f"the model computes no tensor named {name!r}; 'onnxvis info' lists the layers, Netron shows every tensor name"
            )
        places.append(Place(name, name))
    return places


def default_layer(insp: Inspector, output: str | None = None) -> ConvLayer:
    """The last conv layer of the main graph whose output is spatial (wider than 1x1), by the shapes
    onnx infers; a layer whose shape is unknown counts as spatial (the run checks it). With ``output``,
    only the layers that lead to it (a detector's box head does not lead to its scores)."""
    import onnx

    main = [layer for layer in insp.layers if layer.in_main_graph]
    if output is not None:
        _, read = required_nodes(insp.model.graph, [output])
        main = [layer for layer in main if layer.output_name in read]
    if not main:
        raise OnnxvisError("the model has no conv layer in its main graph; a class activation map needs a conv layer or a spatial tensor")
    try:
        inferred = onnx.shape_inference.infer_shapes(insp.model.proto).graph
        shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                  for v in list(inferred.value_info) + list(inferred.output)}
    except Exception:  # noqa: BLE001  (onnx raises several types; shape inference is a convenience: without it the last conv layer is taken)
        shapes = {}
    for layer in reversed(main):
        dims = shapes.get(layer.output_name)
        spatial = dims[2:] if dims and layer.op_type != "NhwcConv" else (dims[1:-1] if dims else None)
        if not spatial or len(spatial) != 2 or any(d is None or d > 1 for d in spatial):
            return layer
    raise OnnxvisError("no conv layer of the model has a spatial output (all are 1x1); a class activation map needs one")


def tail_inputs(graph: onnx.GraphProto, fed: str, targets: Iterable[str]) -> list[str]:
    """What the tail -- the nodes after ``fed`` that lead to ``targets`` -- reads from before ``fed``.

    A residual branch, for instance: AblationCAM computes these once from the image and feeds them
    beside the ablated copies, so that nothing before ``fed`` runs again. Initializers, and tensors
    computed from constants alone (onnxruntime computes them in the tail), are not listed.
    """
    needed, _ = required_nodes(graph, list(targets))
    constant = {init.name for init in graph.initializer}
    after = {fed}
    for node in graph.node:  # graph order is topological
        reads = [n for n in node.input if n] + sorted(outer_names(node))
        if any(n in after for n in reads):
            after.update(o for o in node.output if o)
        elif all(n in constant for n in reads):
            constant.update(o for o in node.output if o)
    tail = [node for node in needed if any(n in after for n in [*node.input, *outer_names(node)])]
    if not tail:
        raise OnnxvisError(f"tensor {fed!r} does not lead to the scores output; choose a tensor before the classifier")
    outside = {
        n for node in tail for n in [*node.input, *outer_names(node)] if n and n not in after and n not in constant
    }
    return sorted(outside)


def target_index(target: int | str | None, scores: np.ndarray, labels: Sequence[str] | None) -> int:
    """A class index from an index, a label or nothing (the highest score)."""
    count = scores.shape[0]
    if target is None:
        return int(np.argmax(scores))
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        if not labels:
            raise OnnxvisError(f"the model has no class labels, so target {target!r} must be a class index 0..{count - 1}")
        wanted = target.strip().lower()
        matches = [i for i, label in enumerate(labels) if label.lower() == wanted]
        if not matches:
            raise OnnxvisError(f"no class is labelled {target!r}; give a class index 0..{count - 1} or one of the model's labels")
        return matches[0]
    index = int(target)
    if not 0 <= index < count:
        raise OnnxvisError(f"target class {index} is out of range: the model scores {count} classes (0..{count - 1})")
    return index


def class_scores(value: np.ndarray, layout: str = "NCHW", axis: int | None = None) -> np.ndarray:
    """An output (N, classes) -> (N, classes) float32; singleton trailing dims are dropped.

    A spatial output -- one score per class at each position, (N, classes, h, w), or (N, h, w,
    classes) for an NHWC model -- gives each class the sum over the positions (grad-cam's
    SemanticSegmentationTarget with the whole image as the mask). ``axis``, when known (the axis of
    the Softmax that ends the model, e.g. a detector's (N, anchors, classes) scores), is the class
    axis, whatever the layout.
    """
    value = np.asarray(value)
    if axis is not None and value.ndim >= 2 and axis % value.ndim != 0:
        moved = np.moveaxis(value, axis % value.ndim, 1)
        return moved.reshape(moved.shape[0], moved.shape[1], -1).sum(axis=2, dtype=np.float64).astype(np.float32)
    if value.ndim < 2:
        return value.reshape(1, -1).astype(np.float32)
    squeezed = value.reshape(value.shape[:2] + tuple(d for d in value.shape[2:] if d != 1)) if layout == "NCHW" else value
    if squeezed.ndim == 2:
        return squeezed.astype(np.float32)
    if layout == "NHWC":
        squeezed = value.reshape((value.shape[0], -1, value.shape[-1]))
        return squeezed.sum(axis=1, dtype=np.float64).astype(np.float32)
    return squeezed.reshape(squeezed.shape[:2] + (-1,)).sum(axis=2, dtype=np.float64).astype(np.float32)


def _batched(values: np.ndarray, n: int) -> np.ndarray:
    """A batch-1 tensor the tail reads, repeated for ``n`` ablated copies."""
    if values.ndim < 1 or values.shape[0] != 1:
        raise OnnxvisError(
            f"the graph after the chosen tensor also reads a tensor of shape {values.shape} without a batch dimension "
            "(a shape computed upstream); AblationCAM cannot batch it: choose another tensor or method"
        )
    return np.repeat(values, n, axis=0)


class _Scorer:
    """feeds -> the target's scores. The Inspector batches the rows, or runs them one by one when the
    graph fixes its batch (e.g. a Reshape to [1, 512] after the chosen tensor)."""

    def __init__(self, insp: Inspector, output: str, target: int, batch_size: int):
        self.insp, self.output, self.target, self.batch_size = insp, output, target, batch_size

    def __call__(self, varying: dict[str, np.ndarray], fixed: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(varying.values())))
        feeds = {**{k: _batched(v, n) for k, v in fixed.items()}, **varying}
        value = self.insp.run_arrays(feeds, [self.output], batch_size=self.batch_size)[self.output]
        return class_scores(value, self.insp.image_input.layout)[:, self.target]


def _to_layout(masks: np.ndarray, image: np.ndarray, layout: str) -> np.ndarray:
    """The batch-1 image times each mask (n, H, W), in the image's layout and dtype."""
    img = image[:1].astype(np.float32)
    product = img * (masks[:, None] if layout == "NCHW" else masks[..., None])
    return product.astype(image.dtype)


def compute_cams(
    insp: Inspector,
    images: Iterable,
    places: Sequence[Place],
    method: str,
    target: int | str | None = None,
    output: str | None = None,
    batch_size: int = 16,
) -> Iterator[CamResult]:
    """The class activation map of each image at each place, as pytorch-grad-cam computes it.

    Args:
        insp: the Inspector of the model.
        images: photos (paths or PIL images).
        places: where to take the maps (:func:`places_for`).
        method: one of :data:`onnxvis.analysis.cam.maths.METHODS`.
        target: a class index or label; by default each image's highest-scoring class.
        output: the scores output; by default the Inspector's class output.
        batch_size: masked images per run for ScoreCAM (AblationCAM keeps grad-cam's 32).

    Raises:
        OnnxvisError: an unknown method, a place whose tensor is not (C, h, w), a target out of range.
    """
    if not places:
        raise OnnxvisError("no place to take a class activation map from; give a conv layer or a tensor")
    if method == "kpca":
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:  # say it before the first pass, not after
            raise OnnxvisError("the kpca method needs scikit-learn: pip install 'onnxvis[cam]'")
    output = insp.class_output(output)
    wanted = cam_tensors(insp, places, method, output)
    sides = _tail_sides(insp, places, method, output)  # once, not per image
    for prepared in map_images(lambda p: p, images, insp):  # the next photo is decoded while this one runs
        values = insp.run_arrays({insp.image_input.name: prepared.array[:1]}, wanted)
        yield from cams_of(insp, prepared, values, places, method, target, output, batch_size, sides)


def _tail_sides(insp: Inspector, places: Sequence[Place], method: str, output: str) -> dict[str, list[str]]:
    """For AblationCAM, per place: the tensors the graph's tail reads from before the place."""
    if method != "ablation":
        return {}
    return {p.tensor: tail_inputs(insp.model.graph, p.tensor, [output]) for p in places}


def cam_tensors(insp: Inspector, places: Sequence[Place], method: str, output: str) -> list[str]:
    """The tensors one pass over an image must give for its maps at ``places``: the scores, the
    places' activations, and (for AblationCAM) what the graph's tail reads from before the place."""
    if method not in cam.METHODS:
        raise OnnxvisError(f"unknown CAM method {method!r}; choose from {', '.join(cam.METHODS)}")
    sides = [n for names in _tail_sides(insp, places, method, output).values() for n in names]
    spec_name = insp.image_input.name
    return [n for n in dict.fromkeys([output, *(p.tensor for p in places), *sides]) if n != spec_name]


def cams_of(
    insp: Inspector,
    prepared: Prepared,
    values: Mapping[str, np.ndarray],
    places: Sequence[Place],
    method: str,
    target: int | str | None = None,
    output: str | None = None,
    batch_size: int = 16,
    sides: Mapping[str, list[str]] | None = None,
) -> Iterator[CamResult]:
    """The maps of one prepared image, from the values of one pass over it (:func:`cam_tensors`, each
    with its batch dimension); only the passes the method itself needs run here. ``sides``: what
    :func:`_tail_sides` gives, when the caller has it already."""
    output = insp.class_output(output)
    spec = insp.image_input
    if sides is None:
        sides = _tail_sides(insp, places, method, output)
    array = prepared.array[:1]
    values = dict(values)
    values[spec.name] = array
    scores = class_scores(values[output], spec.layout)[0]
    index = target_index(target, scores, insp.labels)
    label = insp.labels[index] if insp.labels and index < len(insp.labels) else None
    size = (array.shape[2], array.shape[3]) if spec.layout == "NCHW" else (array.shape[1], array.shape[2])
    scorer = _Scorer(insp, output, index, batch_size if method == "score" else 32)
    for place in places:
        raw_value = np.asarray(values[place.tensor])
        acts = raw_value[0]
        if acts.ndim != 3 or min(acts.shape) < 1:
            raise OnnxvisError(
                f"tensor {place.tensor!r} has shape {raw_value.shape}, not (batch, channels, height, width): a class "
                "activation map needs a spatial tensor; choose a conv layer or a tensor before the global pooling"
            )
        if place.channels_last:
            acts = np.moveaxis(acts, -1, 0)
        acts = acts.astype(np.float32)
        raw = _raw_map(method, acts, scorer, array, spec.layout, size, batch_size, float(scores[index]), place, raw_value.dtype,
                       {n: values[n] for n in sides.get(place.tensor, [])}, spec.name)
        yield CamResult(
            image=prepared.image, method=method, place=place, target=index, target_label=label, score=float(scores[index]),
            cam=cam.finish(raw, size), rgb=prepared.rgb, input=array, activations=acts,
        )


def _raw_map(
    method: str,
    acts: np.ndarray,
    scorer: _Scorer,
    array: np.ndarray,
    layout: str,
    size: tuple[int, int],
    batch_size: int,
    original: float,
    place: Place,
    dtype: np.dtype,
    side_values: dict[str, np.ndarray],
    input_name: str,
) -> np.ndarray:
    if method == "eigen":
        return cam.eigen_projection(acts)
    if method == "fem":
        return cam.fem_map(acts)
    if method == "kpca":
        return cam.kpca_projection(acts)
    if method == "score":
        weights = cam.score_cam_weights(acts, size, lambda masks: scorer({input_name: _to_layout(masks, array, layout)}, {}), batch_size)
        return cam.weighted_sum(weights, acts)

    def ablated(copies: np.ndarray) -> np.ndarray:
        if place.channels_last:
            copies = np.ascontiguousarray(np.moveaxis(copies, 1, -1))
        return scorer({place.tensor: copies}, side_values)

    return cam.weighted_sum(cam.ablation_cam_weights(acts, original, ablated, dtype=dtype), acts)
