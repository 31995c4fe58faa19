"""Class activation maps of an ONNX model: the forward passes of :mod:`onnxvis.analysis.cam.maths`, run by the Inspector.

Shaped like pytorch-grad-cam's ``BaseCAM``: one :class:`Cam` holds the Inspector, the places, the
target and the scores output, and ``Cam(...)(images)`` gives the maps. The method is a small
:class:`CamMethod` that says what it ``needs`` and how it weights the channels (grad-cam's
``get_cam_weights``) or makes the map (``get_cam_image``):

- ScoreCAM feeds the image times each mask to the whole model, in batches, through one cached session;
- AblationCAM changes only the chosen tensor, so it runs only the graph after it (the tail): the
  ablated copies are fed at that tensor, with the other tensors the tail reads (a residual branch,
  say) computed once from the image and repeated;
- EigenCAM, FEM and KPCA-CAM need only the activations.

Gradient methods plug in the same way: a method that needs ``"gradients"`` reads
:attr:`CamInputs.gradients`, which the :class:`GradientEngine` given to :class:`Cam` computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

import numpy as np

from onnxvis.analysis.cam import maths as cam
from onnxvis.engine.inspector import map_images
from onnxvis.engine.runner import runtime_reason
from onnxvis.errors import OnnxvisError, one_line
from onnxvis.model.graph import outer_names, required_nodes

if TYPE_CHECKING:
    import onnx

    from onnxvis.engine.inspector import ImageLike, Inspector, Prepared
    from onnxvis.model.layers import ConvLayer

__all__ = [
    "CAM_METHODS", "AblationCam", "Cam", "CamInputs", "CamMethod", "CamResult", "EigenCam", "FemCam", "GradientEngine", "KpcaCam",
    "Need", "Place", "ScoreCam", "check_batch_size", "class_scores", "default_layer", "masked_inputs", "method_named", "places_for",
    "is_runtime_failure", "runtime_reason", "score_rule", "tail_inputs", "target_index", "check_target",
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
    score_rule: str | None = None  # how a class's score was read from an output that is not (N, K): see score_rule

    @property
    def blank(self) -> bool:
        """The map is all zeros: the method's raw map has no value above its minimum (or none above
        0), so the picture is plain blue and says nothing."""
        return not np.any(self.cam)

    def target_text(self) -> str:
        """``class 285 (Egyptian cat), score 9.132``: the class mapped, its label and its score."""
        label = f" ({one_line(self.target_label)})" if self.target_label else ""
        return f"class {self.target}{label}, score {self.score:.4g}"


def places_for(insp: Inspector, layers: Sequence[ConvLayer] = (), tensors: Sequence[str] = ()) -> list[Place]:
    """Places for conv layers and named tensors (checked to exist in the main graph)."""
    from onnxvis.model.layers import layer_stem, require_main_graph

    require_main_graph(layers, "a class activation map needs a tensor of the main graph")
    places = [Place(layer.output_name, layer_stem(layer), layer.channels_last) for layer in layers]
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
    from onnxvis.model.shapes import infer_shapes

    main = [layer for layer in insp.layers if layer.in_main_graph]
    if output is not None:
        _, read = required_nodes(insp.model.graph, [output])
        main = [layer for layer in main if layer.output_name in read]
    if not main:
        raise OnnxvisError("the model has no conv layer in its main graph; a class activation map needs a conv layer or a spatial tensor")
    shapes = infer_shapes(insp.model)  # the ops of a CNN, in pure Python: no onnx import for a forward CAM
    for layer in reversed(main):
        dims = shapes.get(layer.output_name)
        spatial = dims[2:] if dims and not layer.channels_last else (dims[1:-1] if dims else None)
        if not spatial or len(spatial) != 2 or any(d is None or d > 1 for d in spatial):
            return layer
    raise OnnxvisError("no conv layer of the model has a spatial output (all are 1x1); a class activation map needs one")


# Ops whose output is metadata of their input (its shape, its size), not its values: a tail that reads
# them -- torch.export's ``sym_size`` before a Reshape, say -- must see the copies' batch, not the image's.
_SHAPE_OPS = frozenset({"Shape", "Size"})


def tail_inputs(graph: onnx.GraphProto, fed: str, targets: Iterable[str]) -> list[str]:
    """What the tail -- the nodes after ``fed`` that lead to ``targets`` -- reads from before ``fed``.

    A residual branch, for instance: AblationCAM computes these once from the image and feeds them,
    repeated to the batch of the ablated copies, beside them, so that nothing before ``fed`` runs
    again. Initializers, and tensors computed from constants alone (onnxruntime computes them in the
    tail), are not listed. Nor is a tensor computed from shapes alone (``Shape``, ``Size`` and
    arithmetic on them and on constants): a batch-1 value of it would fix the tail's batch to 1 (a
    ``Reshape`` to ``[batch, -1]`` with ``batch`` read from the graph input), so the tail computes it
    itself, and what it is the shape of is listed instead -- the graph input, say.
    """
    needed, _ = required_nodes(graph, list(targets))
    constant = {init.name for init in graph.initializer}
    after = {fed}
    shapes: set[str] = set()  # computed from shapes and constants only
    producer: dict[str, onnx.NodeProto] = {}
    for node in graph.node:  # graph order is topological
        reads = [n for n in node.input if n] + sorted(outer_names(node))
        outputs = [o for o in node.output if o]
        producer.update((o, node) for o in outputs)
        if any(n in after for n in reads):
            after.update(outputs)
        elif all(n in constant for n in reads):
            constant.update(outputs)
        elif node.op_type in _SHAPE_OPS or all(n in constant or n in shapes for n in reads):
            shapes.update(outputs)
    tail = [node for node in needed if any(n in after for n in [*node.input, *outer_names(node)])]
    if not tail:
        raise OnnxvisError(f"tensor {fed!r} does not lead to the scores output; choose a tensor before the classifier")
    outside: set[str] = set()
    stack = [n for node in tail for n in [*node.input, *outer_names(node)] if n]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or name in after or name in constant:
            continue
        seen.add(name)
        if name in shapes:  # the tail computes it: walk on to what it is computed from
            node = producer[name]
            stack.extend(n for n in [*node.input, *outer_names(node)] if n)
        else:
            outside.add(name)
    return sorted(outside)


def target_index(target: int | str | None, scores: np.ndarray, labels: Sequence[str] | None) -> int:
    """A class index from an index, a label or nothing (the highest score)."""
    if target is None:
        return int(np.argmax(scores))
    return check_target(target, scores.shape[0], labels)


def check_target(target: int | str, count: int, labels: Sequence[str] | None) -> int:
    """The class index of ``target`` (an index, or a label) among ``count`` classes: known before any run,
    so that a wrong target is refused before anything is written.

    Raises:
        OnnxvisError: an unknown label, a label without labels, an index out of range.
    """
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


def score_rule(shape: Sequence[int], layout: str = "NCHW", axis: int | None = None) -> str | None:
    """How :func:`class_scores` reads one score per class from an output of this shape (batch first),
    in words; None when the output already is (N, K) or (N, K, 1, 1) and there is no rule to say."""
    shape = tuple(int(d) for d in shape)
    dims = "x".join(str(d) for d in shape)
    if axis is not None and len(shape) >= 2 and axis % len(shape) != 0:
        a = axis % len(shape)
        if a == 1 and len(shape) == 2:
            return None
        rest = "x".join(str(d) for i, d in enumerate(shape) if i not in (0, a)) or "1"
        return (f"its axis {a} (the final Softmax's) holds the {shape[a]} classes; each class's score is its sum over "
                f"the other {rest} values")
    if len(shape) < 2:
        return f"the output [{dims}] has no batch axis; its {int(np.prod(shape))} values are taken as the classes"
    kept = tuple(d for d in shape[2:] if d != 1)
    if layout == "NCHW" and not kept:
        if len(shape) == 2 or shape[2:] == (1, 1):
            return None
        return f"the output [{dims}] is not (N, K): its {shape[1]} values along axis 1 are taken as the classes"
    if layout == "NHWC" and len(shape) > 2:
        rest = "x".join(str(d) for d in shape[1:-1])
        return (f"the output [{dims}] is spatial (NHWC): its last axis holds the {shape[-1]} classes, and each class's score "
                f"is its sum over the {rest} positions (grad-cam's SemanticSegmentationTarget with the whole image as the mask)")
    rest = "x".join(str(d) for d in kept)
    return (f"the output [{dims}] is spatial: its axis 1 holds the {shape[1]} classes, and each class's score is its sum "
            f"over the {rest} positions (grad-cam's SemanticSegmentationTarget with the whole image as the mask)")


def _batched(name: str, values: np.ndarray, n: int) -> np.ndarray:
    """A batch-1 tensor the tail reads, repeated for ``n`` copies."""
    if values.ndim < 1 or values.shape[0] != 1:
        raise OnnxvisError(
            f"the graph after the chosen tensor also reads tensor {name!r}, of shape {values.shape}, which has no batch "
            "dimension to repeat for the ablated copies; choose another tensor, or a method that runs no copies (eigen, fem, kpca)"
        )
    return np.repeat(values, n, axis=0)


class _Scorer:
    """feeds -> the target's scores, each fed array with the batch of the copies.

    The Inspector batches the rows, or runs them one by one when the graph refuses a batch (a
    Reshape to [1, 512] after the chosen tensor fails on a batch). A graph that takes the batch but
    merges it (a Reshape to [1, -1, 85] before the scores) gives fewer rows than it was fed: its rows
    run one by one too, on this run and every later one.
    """

    def __init__(self, insp: Inspector, output: str):
        self.insp, self.output = insp, output
        self.single: set[tuple[str, ...]] = set()  # the fed tensors of graphs that merge a batch

    def __call__(self, varying: Mapping[str, np.ndarray], fixed: Mapping[str, np.ndarray], target: int, batch_size: int) -> np.ndarray:
        n = len(next(iter(varying.values())))
        feeds = {**{k: _batched(k, v, n) for k, v in fixed.items()}, **varying}
        key = tuple(sorted(feeds))
        value = self._run(feeds, 1 if key in self.single else batch_size)
        if len(value) != n and key not in self.single:
            self.single.add(key)
            value = self._run(feeds, 1)
        if len(value) != n:
            raise OnnxvisError(
                f"the scores output {self.output!r} has {len(value)} rows for {n} inputs fed one at a time, not one row of scores per input"
            )
        return class_scores(value, self.insp.image_input.layout)[:, target]

    def _run(self, feeds: Mapping[str, np.ndarray], batch_size: int) -> np.ndarray:
        try:
            return np.asarray(self.insp.run_arrays(feeds, [self.output], batch_size=batch_size)[self.output])
        except OnnxvisError as exc:
            if not is_runtime_failure(exc):  # a mistake onnxvis itself found says what to do already
                raise
            # The Inspector has tried the rows one by one: onnxruntime refuses even one.
            raise _RunFailed(runtime_reason(exc)) from None


def is_runtime_failure(exc: OnnxvisError) -> bool:
    """The error wraps onnxruntime's own (the runner raises it while handling onnxruntime's): a run
    that onnxruntime refused, which :func:`runtime_reason` puts in words."""
    return exc.__context__ is not None and not isinstance(exc.__context__, (OnnxvisError, KeyError))


class _RunFailed(OnnxvisError):
    """onnxruntime refused a run of changed inputs; the message is its reason, in words (the caller
    says which inputs)."""


def masked_inputs(masks: np.ndarray, image: np.ndarray, layout: str) -> np.ndarray:
    """The batch-1 image times each mask (n, H, W), in the image's layout and dtype."""
    img = image[:1].astype(np.float32)
    product = img * (masks[:, None] if layout == "NCHW" else masks[..., None])
    return product.astype(image.dtype)


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch of masked images below 1 (:class:`Cam` checks it; a caller may check it first)."""
    if batch_size < 1:
        raise OnnxvisError(f"the batch size must be 1 or more, got {batch_size}", setting="batch_size")


# ------------------------------------------------------------------------------------------------
# The methods: what each needs, and how it makes the map (grad-cam's subclasses of BaseCAM)
# ------------------------------------------------------------------------------------------------

Need = Literal["activations", "model", "tail", "gradients"]
"""What a method reads besides the image's one pass: ``activations`` (the place's tensor), ``model``
(runs of the whole model on changed inputs), ``tail`` (runs of the graph after the place, fed there),
``gradients`` (d score / d activations, from a :class:`GradientEngine`)."""


class GradientEngine(Protocol):
    """Where gradient methods plug in: ``engine(inputs, tensor, output, target)`` is d (the target's
    score in ``output``, summed over the batch, as grad-cam's loss) / d ``tensor``, at the model input
    ``inputs``, with the tensor's own shape and layout (as grad-cam's hook sees it)."""

    def __call__(self, inputs: np.ndarray, tensor: str, output: str, target: int) -> np.ndarray: ...


@dataclass(frozen=True)
class CamInputs:
    """What a method reads to make one image's map at one place (the arguments grad-cam's BaseCAM
    hands to ``get_cam_weights``).

    Attributes:
        activations: (C, h, w) float32, channels first.
        dtype: the tensor's own dtype, for the copies fed back at the place.
        input: the array fed to the model (batch 1, the model's layout and dtype).
        size: the model input's (H, W).
        score: the target's score on the image.
        batch_size: rows per run for methods that run the model on many inputs (ScoreCAM).
        gradients: (C, h, w) float32, d score / d activations, for methods that need them; else None.
    """

    place: Place
    activations: np.ndarray
    dtype: np.dtype
    input: np.ndarray
    layout: str
    size: tuple[int, int]
    target: int
    score: float
    batch_size: int
    scorer: _Scorer
    sides: Mapping[str, np.ndarray]
    gradients: np.ndarray | None = None

    def score_inputs(self, arrays: np.ndarray, batch_size: int) -> np.ndarray:
        """The target's score on each model input (n, ...), the whole model run on them."""
        try:
            return self.scorer({self.scorer.insp.image_input.name: arrays}, {}, self.target, batch_size)
        except _RunFailed as exc:
            raise OnnxvisError(
                f"the model does not run on the changed images (ScoreCAM's masked ones, say): {exc}; its graph may depend "
                "on the input's values; choose a method that runs the image alone (eigen, fem, kpca)"
            ) from None

    def score_at_place(self, copies: np.ndarray, batch_size: int) -> np.ndarray:
        """The target's score with each copy (n, C, h, w) fed at the place: only the graph after it
        runs, with what it reads from before the place (:func:`tail_inputs`) taken from the image's
        pass and repeated to the copies' batch."""
        if self.place.channels_last:
            copies = np.ascontiguousarray(np.moveaxis(copies, 1, -1))
        try:
            return self.scorer({self.place.tensor: copies}, self.sides, self.target, batch_size)
        except _RunFailed as exc:
            raise OnnxvisError(
                f"the graph after tensor {self.place.tensor!r} does not run on its changed copies (AblationCAM's): {exc}; "
                "that graph may depend on the tensor's values, which AblationCAM sets to 0 or to their minimum minus 1e7 "
                "one channel at a time; choose another layer or tensor, or a method that changes nothing (eigen, fem, kpca)"
            ) from None


class CamMethod:
    """One CAM method, as a grad-cam subclass of BaseCAM: ``needs`` says what it reads, ``weights``
    (grad-cam's ``get_cam_weights``) weights the channels, ``raw_map`` (``get_cam_image``) makes the
    (h, w) map before :func:`onnxvis.analysis.cam.maths.finish`; by default the weighted sum."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[Need]]

    def check(self) -> None:
        """Raise now, before the first pass, when the method cannot run in this installation."""

    def weights(self, at: CamInputs) -> np.ndarray:
        """One weight per channel, (C,)."""
        raise NotImplementedError(f"{type(self).__name__} makes its map without channel weights")

    def raw_map(self, at: CamInputs) -> np.ndarray:
        return cam.weighted_sum(self.weights(at), at.activations)


class ScoreCam(CamMethod):
    """ScoreCAM: the softmax of the target's scores on the image times each channel's mask; the whole
    model runs once per channel, ``batch_size`` masked images at a time."""

    name = "score"
    needs = frozenset({"activations", "model"})

    def weights(self, at: CamInputs) -> np.ndarray:
        def score_masked(masks: np.ndarray) -> np.ndarray:
            return at.score_inputs(masked_inputs(masks, at.input, at.layout), at.batch_size)

        return cam.score_cam_weights(at.activations, at.size, score_masked, at.batch_size)


class AblationCam(CamMethod):
    """AblationCAM: the target's relative drop when each channel is ablated; only the graph after the
    place runs, on grad-cam's batches of 32 copies (the batch also sets grad-cam's ablation values)."""

    name = "ablation"
    needs = frozenset({"activations", "tail"})
    batch_size = 32

    def weights(self, at: CamInputs) -> np.ndarray:
        def score_ablated(copies: np.ndarray) -> np.ndarray:
            return at.score_at_place(copies, self.batch_size)

        return cam.ablation_cam_weights(at.activations, at.score, score_ablated, self.batch_size, dtype=at.dtype)


class EigenCam(CamMethod):
    """EigenCAM: the activations' first principal component (not class-specific)."""

    name = "eigen"
    needs = frozenset({"activations"})

    def raw_map(self, at: CamInputs) -> np.ndarray:
        return cam.eigen_projection(at.activations)


class FemCam(CamMethod):
    """FEM: each channel weighted by the share of its positions far above its mean (not class-specific)."""

    name = "fem"
    needs = frozenset({"activations"})

    def raw_map(self, at: CamInputs) -> np.ndarray:
        return cam.fem_map(at.activations)


class KpcaCam(CamMethod):
    """KPCA-CAM: the activations' first kernel principal component, with scikit-learn (not class-specific)."""

    name = "kpca"
    needs = frozenset({"activations"})

    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:
            raise OnnxvisError("the kpca method needs scikit-learn: pip install 'onnxvis[cam]'")

    def raw_map(self, at: CamInputs) -> np.ndarray:
        return cam.kpca_projection(at.activations)


CAM_METHODS: dict[str, CamMethod] = {m.name: m for m in (ScoreCam(), AblationCam(), EigenCam(), FemCam(), KpcaCam())}
"""The methods by name, as the cam command takes them."""


def method_named(name: str) -> CamMethod:
    """The method called ``name`` in :data:`CAM_METHODS`."""
    if name not in CAM_METHODS:
        raise OnnxvisError(f"unknown CAM method {name!r}; choose from {', '.join(CAM_METHODS)}")
    return CAM_METHODS[name]


# ------------------------------------------------------------------------------------------------
# The run: grad-cam's BaseCAM
# ------------------------------------------------------------------------------------------------


class Cam:
    """The class activation maps of a model at some places, as pytorch-grad-cam computes them:
    ``Cam(inspector, places, target, output, method="ablation")(images)`` gives a :class:`CamResult`
    per image and place, like grad-cam's ``AblationCAM(model, target_layers)(input, targets)``.

    One pass over each image gives the scores, the places' activations and what the method needs of
    it (:attr:`tensors`); only the passes the method itself needs run after it. A caller that makes
    its own pass (the report, with the feature maps) asks for :attr:`tensors` and calls :meth:`maps`.

    Args:
        inspector: the Inspector of the model.
        places: where to take the maps (:func:`places_for`).
        target: a class index or label; by default each image's highest-scoring class.
        output: the scores output; by default the Inspector's class output.
        method: a name in :data:`CAM_METHODS`, or a :class:`CamMethod`.
        batch_size: masked images per run for ScoreCAM (AblationCAM keeps grad-cam's 32).
        gradients: the engine that gives d score / d activations, for methods that need them.

    Raises:
        OnnxvisError: no place, an unknown method or one that cannot run here, no scores output, a
            place that does not lead to it (AblationCAM). The first pass raises for a place whose
            tensor is not (C, h, w) and for a target out of range.
    """

    def __init__(
        self,
        inspector: Inspector,
        places: Sequence[Place],
        target: int | str | None = None,
        output: str | None = None,
        *,
        method: str | CamMethod = "ablation",
        batch_size: int = 16,
        gradients: GradientEngine | None = None,
    ):
        if not places:
            raise OnnxvisError("no place to take a class activation map from; give a conv layer or a tensor")
        self.method = method_named(method) if isinstance(method, str) else method
        self.method.check()  # say it before the first pass, not after
        if "gradients" in self.method.needs and gradients is None:
            raise OnnxvisError(f"the {self.method.name} method needs the gradient of the class score, and no gradient engine was given")
        self.inspector = inspector
        self.places = list(places)
        self.target = target
        self.output = inspector.class_output(output)
        check_batch_size(batch_size)
        self.batch_size = batch_size
        self.gradients = gradients
        self.sides = self._tail_sides()  # once, not per image
        self._scorer = _Scorer(inspector, self.output)
        self.tensors = self._pass_tensors()

    def _tail_sides(self) -> dict[str, list[str]]:
        """Per place, for methods that run the tail: the tensors it reads from before the place."""
        if "tail" not in self.method.needs:
            return {}
        return {p.tensor: tail_inputs(self.inspector.model.graph, p.tensor, [self.output]) for p in self.places}

    def _pass_tensors(self) -> list[str]:
        """The tensors one pass over an image must give: the scores, the places' activations, and
        what the tail reads from before each place."""
        sides = [n for names in self.sides.values() for n in names]
        fed = self.inspector.image_input.name
        return [n for n in dict.fromkeys([self.output, *(p.tensor for p in self.places), *sides]) if n != fed]

    def __call__(self, images: Iterable[ImageLike]) -> Iterator[CamResult]:
        """The map of each image (paths or PIL images) at each place, streamed."""
        insp = self.inspector
        for prepared in map_images(lambda p: p, images, insp):  # the next photo is decoded while this one runs
            values = insp.run_arrays({insp.image_input.name: prepared.array[:1]}, self.tensors)
            yield from self.maps(prepared, values)

    def maps(self, prepared: Prepared, values: Mapping[str, np.ndarray]) -> Iterator[CamResult]:
        """The maps of one prepared image, from the values of one pass over it (:attr:`tensors`, each
        with its batch dimension)."""
        insp, spec = self.inspector, self.inspector.image_input
        array = prepared.array[:1]
        values = {**values, spec.name: array}  # the tail may read the image input itself
        scores = class_scores(values[self.output], spec.layout)[0]
        index = target_index(self.target, scores, insp.labels)
        label = insp.labels[index] if insp.labels and index < len(insp.labels) else None
        size = (array.shape[2], array.shape[3]) if spec.layout == "NCHW" else (array.shape[1], array.shape[2])
        for place in self.places:
            raw_value = np.asarray(values[place.tensor])
            at = CamInputs(
                place=place, activations=_channels_first(place, raw_value), dtype=raw_value.dtype, input=array, layout=spec.layout,
                size=size, target=index, score=float(scores[index]), batch_size=self.batch_size, scorer=self._scorer,
                sides={n: values[n] for n in self.sides.get(place.tensor, [])},
                gradients=self._gradients(array, place, index, raw_value.shape),
            )
            yield CamResult(
                image=prepared.image, method=self.method.name, place=place, target=index, target_label=label, score=at.score,
                cam=cam.finish(self.method.raw_map(at), size), rgb=prepared.rgb, input=array, activations=at.activations,
                score_rule=score_rule(np.shape(values[self.output]), spec.layout),
            )

    def _gradients(self, array: np.ndarray, place: Place, target: int, shape: tuple[int, ...]) -> np.ndarray | None:
        """d score / d activations at ``place``, channels first, for methods that need them. ``shape``:
        the tensor's, as the graph gives it."""
        if self.gradients is None or "gradients" not in self.method.needs:
            return None
        value = np.asarray(self.gradients(array, place.tensor, self.output, target))
        if value.shape != shape:
            raise OnnxvisError(f"the gradient at {place.tensor!r} has shape {value.shape}, not the tensor's {shape}")
        return _channels_first(place, value)


def _channels_first(place: Place, value: np.ndarray) -> np.ndarray:
    """A batch-1 value at ``place`` -> its (C, h, w) float32."""
    first = value[0]
    if first.ndim != 3 or min(first.shape) < 1:
        raise OnnxvisError(
            f"tensor {place.tensor!r} has shape {value.shape}, not (batch, channels, height, width): a class "
            "activation map needs a spatial tensor; choose a conv layer or a tensor before the global pooling"
        )
    if place.channels_last:
        first = np.moveaxis(first, -1, 0)
    return first.astype(np.float32)
