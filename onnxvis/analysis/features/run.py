"""Feature visualisation by optimisation, from the ONNX file: the image a channel asks for, found by
gradient ascent, with Lucent's recipe (Lucent 0.1.8's ``render_vis`` defaults).

Each step, for every image of the batch: the parameters become an image (:mod:`.maths`: Fourier
spectrum, colour decorrelation, sigmoid), the image is transformed (pad, jitter, scale, rotate,
jitter, resize to the model's size) and preprocessed as the model's photos are, the model's gradient
of the objective with respect to its input comes from onnxruntime (:meth:`Inspector.gradients
<onnxvis.engine.inspector.Inspector.gradients>`: one session for the whole run, the batch in one
run where the graph allows), and the adjoints carry it back to the parameters for Adam.

The images of one place (its channels, and ``diversity`` copies of each) are one batch. Each image
has its own random numbers, from (seed, channel, copy): its start and its transforms do not depend
on which other channels share the batch, and the same seed gives the same images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam.runs import Place, class_scores, target_index
from onnxvis.analysis.features import maths as fm
from onnxvis.engine.gradients import score_seeds
from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from PIL import Image

    from onnxvis.engine.gradients import GradientGraph
    from onnxvis.engine.inspector import Inspector
    from onnxvis.image.inputs import InputSpec
    from onnxvis.image.preprocess import Preprocess

__all__ = ["OBJECTIVES", "FeatureImage", "Recipe", "class_index", "model_size", "optimise", "parse_channels", "place_channels", "visualise"]

OBJECTIVES = ("channel", "neuron", "class")
# Lucent's diversity tutorial: objectives.channel(layer, n) - 1e2 * objectives.diversity(layer).
DIVERSITY_WEIGHT = 100.0
# Lucent upsamples images smaller than this (render_vis) when the model's size is not fixed.
_LUCENT_SIZE = 224


@dataclass(frozen=True)
class Recipe:
    """How the image is made and optimised: Lucent's defaults.

    Attributes:
        size: the image's side (Lucent's ``param.image(128)``).
        steps: Adam steps (Lucent's ``thresholds=(512,)``).
        lr: Adam's learning rate (Lucent's 5e-2).
        fourier: Lucent's Fourier parameterisation (``fft=True``), else the pixels themselves.
        decay_power: the spectrum's 1 / f ** decay_power scale.
        decorrelate: Lucent's colour decorrelation.
        transforms: Lucent's ``standard_transforms``; without them the image is only resized to the
            model's size.
        diversity_weight: the weight of Lucid's diversity penalty.
    """

    size: int = 128
    steps: int = 512
    lr: float = 0.05
    fourier: bool = True
    decay_power: float = 1.0
    decorrelate: bool = True
    transforms: bool = True
    diversity_weight: float = DIVERSITY_WEIGHT

    def check(self) -> None:
        if self.size < 8:
            raise OnnxvisError(f"the image size must be 8 pixels or more, got {self.size}", setting="size")
        if self.steps < 1:
            raise OnnxvisError(f"the optimisation needs 1 step or more, got {self.steps}", setting="steps")

    @staticmethod
    def unconstrained(size: int = 128, steps: int = 512) -> "Recipe":
        """Pixels, no colour decorrelation, no transforms (the sigmoid kept for the range): the naive
        optimisation that gives high-frequency noise, to compare the recipe with."""
        return Recipe(size=size, steps=steps, fourier=False, decorrelate=False, transforms=False)


@dataclass(frozen=True)
class FeatureImage:
    """One optimised image.

    Attributes:
        place: where the objective is taken (the class output for the class objective).
        channel: the channel (or class) optimised.
        copy: its index among the ``diversity`` images of the channel (0 without diversity).
        image: float32 (size, size, 3) in [0, 1], RGB.
        value: the objective at the last step (the channel's mean, the neuron, the logit), on the
            transformed image the model saw.
        history: the objective at every step.
    """

    place: Place
    channel: int
    copy: int
    image: np.ndarray
    value: float
    history: np.ndarray = field(repr=False)
    label: str | None = None

    def pixels(self) -> np.ndarray:
        """uint8 (size, size, 3)."""
        return np.clip(np.floor(self.image * np.float32(255) + np.float32(0.5)), 0, 255).astype(np.uint8)  # as save_image


def parse_channels(spec: str | Sequence[int] | None, count: int | None, default: int = 16) -> list[int]:
    """Channels from "0-15", "3,5,9-11", "all", a list, or None (the first ``default``).

    Raises:
        OnnxvisError: a malformed spec or a channel out of range.
    """
    if spec is None:
        return list(range(min(default, count) if count else default))
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            if count is None:
                raise OnnxvisError("the number of channels is unknown here; give the channels to optimise", setting="channels")
            return list(range(count))
        chosen: list[int] = []
        try:
            for part in text.split(","):
                if "-" in part.strip()[1:]:
                    lo, hi = part.split("-", 1)
                    chosen.extend(range(int(lo), int(hi) + 1))
                else:
                    chosen.append(int(part))
        except ValueError:
            raise OnnxvisError(f"channels must be like 0-15, 3,5,9-11 or all, got {spec!r}", setting="channels") from None
    else:
        chosen = [int(c) for c in spec]
    if not chosen:
        raise OnnxvisError(f"no channel in {spec!r}", setting="channels")
    bad = [c for c in chosen if c < 0 or (count is not None and c >= count)]
    if bad:
        top = f" (0..{count - 1})" if count else ""
        raise OnnxvisError(f"channel {bad[0]} is out of range: the tensor has {count} channels{top}", setting="channels")
    return list(dict.fromkeys(chosen))


def model_size(insp: "Inspector") -> tuple[int, int]:
    """The size the model sees: its fixed input size, else the preprocessing's crop or exact resize,
    else Lucent's 224."""
    spec = insp.image_input
    h, w = spec.size
    if h is not None and w is not None:
        return int(h), int(w)
    pp = insp.preprocessing.preprocess
    if pp.crop is not None:
        return int(pp.crop[0]), int(pp.crop[1])
    if pp.resize is not None and len(pp.resize) == 2:
        return int(pp.resize[0]), int(pp.resize[1])
    return _LUCENT_SIZE, _LUCENT_SIZE


class _Preprocessing:
    """The model's value preprocessing of an RGB image in [0, 1] (N, 3, H, W) -> its input, and the adjoint."""

    def __init__(self, pp: "Preprocess", layout: str) -> None:
        self.grey = pp.channels == 1
        self.bgr = pp.color == "BGR"
        channels = 1 if self.grey else 3
        mean = np.asarray(pp.mean[:1] if self.grey else pp.mean, np.float32)
        std = np.asarray(pp.std[:1] if self.grey else pp.std, np.float32)
        self.gain = (np.float32(pp.scale) / np.broadcast_to(std, (channels,))).reshape(1, -1, 1, 1)
        self.offset = (np.broadcast_to(mean, (channels,)) / np.broadcast_to(std, (channels,))).reshape(1, -1, 1, 1).astype(np.float32)
        self.layout = layout

    def forward(self, rgb: np.ndarray) -> np.ndarray:
        x = rgb.mean(axis=1, keepdims=True) if self.grey else (rgb[:, ::-1] if self.bgr else rgb)
        x = x * self.gain - self.offset
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def adjoint(self, grad: np.ndarray) -> np.ndarray:
        g = grad.transpose(0, 3, 1, 2) if self.layout == "NHWC" else grad
        g = g * self.gain
        if self.grey:
            return np.repeat(g / 3, 3, axis=1)
        return np.ascontiguousarray(g[:, ::-1] if self.bgr else g)


class _Images:
    """The parameterisation of a batch: parameters -> RGB in [0, 1] (N, 3, s, s), and the adjoint."""

    def __init__(self, recipe: Recipe) -> None:
        s = recipe.size
        self.recipe = recipe
        self.param: fm.FourierImage | fm.PixelImage = fm.FourierImage(s, s, recipe.decay_power) if recipe.fourier else fm.PixelImage(s, s)
        self._rgb: np.ndarray | None = None

    def forward(self, params: np.ndarray) -> np.ndarray:
        x = self.param.forward(params)
        if self.recipe.decorrelate:
            x = fm.decorrelate(x)
        self._rgb = fm.sigmoid(x)
        return self._rgb

    def adjoint(self, grad: np.ndarray) -> np.ndarray:
        assert self._rgb is not None
        g = fm.sigmoid_adjoint(self._rgb, grad)
        if self.recipe.decorrelate:
            g = fm.decorrelate_adjoint(g)
        return self.param.adjoint(g)


def _class_seeds(shape: Sequence[int], classes: Sequence[int], layout: str, axis: int | None) -> np.ndarray:
    return score_seeds(shape, np.asarray(classes)[:, None], layout, axis)[..., 0]


def optimise(
    insp: "Inspector",
    place: Place,
    channels: Sequence[int],
    *,
    objective: str = "channel",
    diversity: int = 1,
    seed: int = 0,
    recipe: Recipe | None = None,
    on_step: Callable[[int, np.ndarray], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_preview: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    preview_every: int = 16,
) -> list[FeatureImage]:
    """Optimise one image per channel of ``place`` (``diversity`` images each), as one batch.

    Args:
        insp: the model's Inspector (its preprocessing is the model's).
        place: the tensor whose channels are optimised; for ``objective="class"``, the class output.
        channels: the channels (the class indices for ``"class"``).
        objective: "channel" (the channel's mean, Lucent's default), "neuron" (the channel at the
            centre of the tensor) or "class" (the class logit: the score before a final Softmax).
        diversity: images per channel, pushed apart by Lucid's Gram-matrix penalty when more than 1.
        seed: the random numbers' seed: the same seed, the same images.
        recipe: Lucent's defaults unless given.
        on_step: called after each step with (step, the objective per image).
        cancelled: asked before each step; the run stops (with the images so far) when it says True.
        on_preview: called every ``preview_every`` steps and after the last with (steps done, the
            images so far (N, size, size, 3) in [0, 1], the objective per image): the page's live view.

    Returns:
        The images, channel by channel, copy by copy.

    Raises:
        OnnxvisError: a bad objective, channel or setting; a model that cannot be differentiated.
    """
    recipe = recipe or Recipe()
    rows = [(int(c), k) for c in channels for k in range(diversity)]
    problem = make_problem(insp, place, channels, objective=objective, diversity=diversity, recipe=recipe)
    rngs = [np.random.default_rng([int(seed), c, k]) for c, k in rows]
    params = np.concatenate([problem.images.param.init(rng, 1) for rng in rngs])
    adam = fm.Adam(params, lr=recipe.lr)
    history = np.zeros((recipe.steps, len(rows)), np.float32)
    done = 0
    for step in range(recipe.steps):
        if cancelled is not None and cancelled():
            break
        draws = [fm.Step.draw(rng) if recipe.transforms else None for rng in rngs]
        values, _, grad = problem.gradient(adam.params, draws)
        history[step] = values
        adam.step(-grad)  # Adam minimises: the loss is minus the objective
        done = step + 1
        if on_step is not None:
            on_step(step, values)
        if on_preview is not None and (done % max(1, preview_every) == 0 or done == recipe.steps):
            on_preview(done, problem.images.forward(adam.params).transpose(0, 2, 3, 1), values)
    final = problem.images.forward(adam.params)
    labels = insp.labels if objective == "class" else None
    out = []
    for i, (c, k) in enumerate(rows):
        label = labels[c] if labels and c < len(labels) else None
        last = float(history[done - 1, i]) if done else float("nan")
        out.append(FeatureImage(place, c, k, final[i].transpose(1, 2, 0).astype(np.float32), last, history[:done, i].copy(), label))
    return out


def make_problem(
    insp: "Inspector", place: Place, channels: Sequence[int], *, objective: str = "channel", diversity: int = 1,
    recipe: Recipe | None = None,
) -> "Problem":
    """The :class:`Problem` of one batch (``channels`` of ``place``, ``diversity`` images each), with its
    gradient graph (kept by the Inspector). See :func:`optimise`."""
    recipe = recipe or Recipe()
    recipe.check()
    if objective not in OBJECTIVES:
        raise OnnxvisError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}", setting="objective")
    if diversity < 1:
        raise OnnxvisError(f"diversity needs 1 image per channel or more, got {diversity}", setting="diversity")
    if not channels:
        raise OnnxvisError("no channel to optimise", setting="channels")
    spec = insp.image_input
    if (spec.channels or 3) not in (1, 3):
        raise OnnxvisError(f"input {spec.name!r} has {spec.channels} channels; feature visualisation needs an RGB or grey image input")
    size = model_size(insp)
    pre = _Preprocessing(insp.preprocessing.preprocess, spec.layout)
    shape = (pre.gain.shape[1], *size) if spec.layout == "NCHW" else (*size, pre.gain.shape[1])
    rows = [(int(c), k) for c in channels for k in range(diversity)]
    n = len(rows)
    if objective == "class":
        graph = insp.gradients([spec.name], place.tensor, shape, rows=n)
    else:
        graph = insp.gradients([spec.name], shape=shape, rows=n, tensor=place.tensor)
    score_shape = (n, *graph.shapes[graph.score.tensor][1:])
    if objective != "class":
        dims = score_shape
        if len(dims) != 4:
            raise OnnxvisError(
                f"tensor {place.tensor!r} has shape {tuple(dims[1:])} per image; a channel objective needs (channels, height, width)"
            )
        count = int(dims[-1] if place.channels_last else dims[1])
        bad = [c for c, _ in rows if c >= count]
        if bad:
            raise OnnxvisError(f"channel {bad[0]} is out of range: tensor {place.tensor!r} has {count} channels (0..{count - 1})",
                               setting="channels")
    chans = [c for c, _ in rows]
    nchw = (n, score_shape[3], score_shape[1], score_shape[2]) if place.channels_last else score_shape

    def to_place(a: np.ndarray) -> np.ndarray:
        return a.transpose(0, 2, 3, 1) if place.channels_last else a

    if objective == "class":
        seed_base = _class_seeds(score_shape, chans, spec.layout, graph.score.axis)
    elif objective == "neuron":
        seed_base = to_place(fm.neuron_seed(nchw, chans))
    else:
        seed_base = to_place(fm.channel_seed(nchw, chans))
    return Problem(graph, pre, _Images(recipe), recipe, size, objective, chans, seed_base, diversity, place.channels_last, spec)


class Problem:
    """The objective of a batch as a function of its parameters, with its gradient: the image, the
    transforms, the model's preprocessing, the model (forward and backward in one onnxruntime
    session), and back through the adjoints."""

    def __init__(self, graph: "GradientGraph", pre: _Preprocessing, images: _Images, recipe: Recipe, size: tuple[int, int],
                 objective: str, chans: Sequence[int], seed_base: np.ndarray, diversity: int, channels_last: bool,
                 spec: "InputSpec") -> None:
        self.graph, self.pre, self.images, self.recipe, self.size = graph, pre, images, recipe, size
        self.objective, self.chans, self.seed_base, self.diversity = objective, list(chans), seed_base, diversity
        self.channels_last, self.spec = channels_last, spec

    def _place(self, a: np.ndarray) -> np.ndarray:
        return a.transpose(0, 2, 3, 1) if self.channels_last else a

    def _nchw(self, a: np.ndarray) -> np.ndarray:
        return a.transpose(0, 3, 1, 2) if self.channels_last else a

    def model_input(self, params: np.ndarray, draws: Sequence[fm.Step | None]) -> tuple[np.ndarray, list[fm.Transforms]]:
        rgb = self.images.forward(params)
        side = (self.recipe.size, self.recipe.size)
        transforms = [fm.Transforms(side, self.size, draw) for draw in draws]
        seen = np.stack([t.forward(rgb[i]) for i, t in enumerate(transforms)])
        return self.pre.forward(seen), transforms

    def value(self, params: np.ndarray, draws: Sequence[fm.Step | None]) -> float:
        """The total objective (the sum of the images' objectives, minus the weighted diversity penalty)."""
        x, _ = self.model_input(params, draws)
        scores = self.graph.forward(x)
        total = float(self._values(scores).astype(np.float64).sum())
        if self.diversity > 1:
            total -= self.recipe.diversity_weight * fm.diversity(self._nchw(scores), self.chans)[0]
        return total

    def gradient(self, params: np.ndarray, draws: Sequence[fm.Step | None]) -> tuple[np.ndarray, float, np.ndarray]:
        """(each image's objective, the total objective, its gradient with respect to ``params``)."""
        x, transforms = self.model_input(params, draws)
        seeds = self.seed_base
        penalty = 0.0
        if self.diversity > 1:  # the seed depends on the activations: a forward pass first
            penalty, d_div = fm.diversity(self._nchw(self.graph.forward(x)), self.chans)
            seeds = seeds - self.recipe.diversity_weight * self._place(d_div)
        run = self.graph.run(x, seeds[..., None])
        grad_x = run.gradients[self.spec.name][..., 0]
        values = self._values(run.scores)
        grad_rgb = np.stack([t.adjoint(g) for t, g in zip(transforms, self.pre.adjoint(grad_x), strict=True)])
        total = float(values.astype(np.float64).sum()) - self.recipe.diversity_weight * penalty
        return values, total, self.images.adjoint(grad_rgb)

    def _values(self, scores: np.ndarray) -> np.ndarray:
        return _values(scores, self.objective, self.chans, self.spec.layout, self.graph.score.axis, self.channels_last)


def _values(scores: np.ndarray, objective: str, chans: Sequence[int], layout: str, axis: int | None, channels_last: bool) -> np.ndarray:
    """The objective per image from the place's values."""
    if objective == "class":
        logits = class_scores(scores, layout, axis)
        return logits[np.arange(len(chans)), list(chans)]
    acts = scores.transpose(0, 3, 1, 2) if channels_last else scores
    picked = acts[np.arange(len(chans)), list(chans)]
    if objective == "neuron":
        h, w = picked.shape[-2:]
        return picked[:, h // 2, w // 2]
    return picked.reshape(len(chans), -1).mean(axis=1)


def class_index(insp: "Inspector", target: int | str, output: str | None = None) -> int:
    """A class index from an index or a label (the model's names), checked against the output's size."""
    name = insp.class_output(output)
    value = insp.outputs(_probe(insp), [name])[name]
    scores = class_scores(value[None], insp.image_input.layout)[0]
    return target_index(target, scores, insp.labels)


def place_channels(insp: "Inspector", place: Place) -> int | None:
    """The number of channels of a place's tensor, from one run on a grey image (None if not 4-D)."""
    value = insp.run(_probe(insp), [place.tensor]).values[place.tensor]
    if value.ndim != 3:
        return None
    return int(value.shape[-1] if place.channels_last else value.shape[0])


def visualise(
    insp: "Inspector",
    places: Sequence[Place],
    channels: str | Sequence[int] | None = None,
    *,
    objective: str = "channel",
    targets: str | Sequence[int | str] | None = None,
    output: str | None = None,
    diversity: int = 1,
    seed: int = 0,
    recipe: Recipe | None = None,
    on_step: Callable[[Place, int, np.ndarray], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[list[FeatureImage]]:
    """The optimised images of each place (one batch per place), place by place.

    ``channels``: "0-15", "all", a list, or None (the first 16). With ``objective="class"`` the place
    is the class output (``output``, else the model's) and ``targets`` are the classes (indices or
    labels, comma-separated in a string); ``places`` and ``channels`` are not used.

    Raises:
        OnnxvisError: as :func:`optimise`; a class objective without a target.
    """
    recipe = recipe or Recipe()
    recipe.check()  # before the first place's work
    if objective not in OBJECTIVES:
        raise OnnxvisError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}", setting="objective")
    if objective == "class":
        if targets is None or (isinstance(targets, str) and not targets.strip()):
            raise OnnxvisError("the class objective needs the class to optimise: a class index or label", setting="target")
        items = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
        name = insp.class_output(output)
        classes = [class_index(insp, t, name) for t in items]
        place = Place(name, f"class_{sanitize_label(name)}")
        jobs = [(place, classes)]
    else:
        if not places:
            raise OnnxvisError("no place to optimise: give a conv layer or a tensor", setting="layers")
        jobs = []
        for place in places:
            count = place_channels(insp, place)
            if count is None:
                raise OnnxvisError(f"tensor {place.tensor!r} is not (channels, height, width) per image; choose a conv layer's output")
            jobs.append((place, parse_channels(channels, count)))
    for place, chosen in jobs:
        step_hook = None if on_step is None else (lambda step, values, place=place: on_step(place, step, values))
        yield optimise(insp, place, chosen, objective=objective, diversity=diversity, seed=seed, recipe=recipe,
                       on_step=step_hook, cancelled=cancelled)


def sanitize_label(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:60] or "output"


def _probe(insp: "Inspector") -> "Image.Image":
    """A grey photo at the model's size, to learn the number of classes."""
    from PIL import Image

    h, w = model_size(insp)
    return Image.new("RGB", (w, h), (128, 128, 128))
