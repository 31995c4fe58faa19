"""The engine: a model opened once, its image input and preprocessing settled once, its sessions kept.

Every command, the report, the notebook figures and the server go through an :class:`Inspector`::

    with Inspector("models/alexnet.onnx") as insp:
        maps = insp.feature_maps("cat.jpg", insp.select("0,1")).maps          # one image
        for prediction in insp.predict(["a.jpg", "b.jpg"], top=5):           # many: streamed, batched
            print(prediction.image, prediction.top[0])

Images given as an iterable are decoded and preprocessed in a background thread while onnxruntime
runs, and fed in batches when the model's batch dimension allows it. One onnxruntime session is kept
for each set of requested tensors (and for each place where a run starts in the middle of the graph,
which class activation maps need).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

from onnxvis.engine.classes import (
    CLASS_SHAPES,
    NO_NAMES,
    ClassNames,
    are_probabilities,
    check_class_scores,
    check_label_count,
    class_count_of,
    class_outputs,
    guess_class_names,
    is_class_shape,
    top_k,
)
from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.runner import Session
from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp
from onnxvis.image.inputs import (
    InputSpec,
    SettledPreprocess,
    describe_value,
    fill_inputs,
    fit_array,
    fit_size,
    image_input,
    input_shape,
    runtime_inputs,
    settle_preprocess,
    size_multiple,
    tensors_fed_by,
)
from onnxvis.model.file import Model
from onnxvis.model.graph import downstream, required_nodes
from onnxvis.model.layers import ConvLayer, channels_first, find_conv_layers, no_conv_layer, require_main_graph, select_layers
from onnxvis.model.metadata import DESCRIBED_KEYS, LABELS_KEY, labels_from_metadata, labels_origin, preprocess_origin
from onnxvis.model.weights import kernel_weights

if TYPE_CHECKING:
    from PIL import Image

    from onnxvis.engine.gradients import GradientGraph

    ImageLike = str | os.PathLike | Image.Image | np.ndarray
else:
    ImageLike = Any

__all__ = ["Inspector", "Prepared", "ImageResult", "FeatureMaps", "Prediction", "ImageLike", "NEEDS_A_VALUE"]

# The summary's note on a run-time input that is not the image (the command line adds the flag that gives it).
NEEDS_A_VALUE = "a run needs a value for it"

# A model with a fixed batch gets the image repeated to fill it, up to this many bytes.
_MAX_BATCH_BYTES = 1 << 30
# Preprocessed images waiting for onnxruntime, per batch: enough to hide decoding, bounded in memory.
_PREFETCH_BATCHES = 2

T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """One image, ready to feed.

    Attributes:
        image: the file (``Path("<image>")`` for an in-memory image, ``Path("<array>")`` for an array).
        array: what is fed to the image input: batch 1 (or the model's fixed batch), model layout and dtype.
        preprocess: the preprocessing used, with its final size (for an array fed as it is, the settled
            one, which was not applied: see ``as_is``).
        rgb: the photo after resizing and cropping, before normalising: uint8 (H, W, 3); for an array,
            the array shown as a picture (:func:`~onnxvis.image.preprocess.array_picture`).
        as_is: the image was an array (a ``.npy`` file), fed as it is, without any preprocessing.
    """

    image: Path
    array: np.ndarray
    preprocess: pp.Preprocess
    rgb: np.ndarray
    as_is: bool = False

    def describe_preprocessing(self) -> str:
        """The preprocessing this image went through, in one line."""
        if self.as_is:
            return as_is_text(self.array)
        return self.preprocess.describe()


def as_is_text(array: np.ndarray) -> str:
    """How an array fed as it is is described where a preprocessing would be."""
    return f"none: the array is fed as it is ({'x'.join(map(str, np.shape(array)))} {np.asarray(array).dtype})"


@dataclass(frozen=True)
class ImageResult:
    """The requested tensors for one image; each value has the batch dimension removed."""

    image: Path
    prepared: Prepared
    values: dict[str, np.ndarray]


@dataclass(frozen=True)
class FeatureMaps:
    """The feature maps of one image.

    Attributes:
        image: the image file (``Path("<image>")`` for an in-memory image).
        input_spec: the model input the image was fed to.
        preprocess: the preprocessing used, with its final size.
        input: the array fed to the model.
        maps: one array per layer, (C, H, W), channels first whatever the model's layout.
        as_is: the image was an array fed as it is (see :attr:`Prepared.as_is`).
    """

    image: Path
    input_spec: InputSpec
    preprocess: pp.Preprocess
    input: np.ndarray
    maps: dict[ConvLayer, np.ndarray]
    as_is: bool = False

    def describe_preprocessing(self) -> str:
        """The preprocessing this image went through, in one line."""
        return as_is_text(self.input) if self.as_is else self.preprocess.describe()


@dataclass(frozen=True)
class Prediction:
    """The best classes for one image: (class index, label or None, probability), best first.

    ``softmax`` says whether the probabilities are a softmax of the output's values (False when the
    values already were probabilities, as a model that ends in a softmax gives them).
    """

    image: Path
    output: str
    top: list[tuple[int, str | None, float]] = field(default_factory=list)
    softmax: bool = True


def _is_one_image(images: object) -> bool:
    from PIL import Image

    return isinstance(images, (str, os.PathLike, Image.Image, np.ndarray))


def _image_name(image: ImageLike) -> Path:
    if isinstance(image, np.ndarray):
        return Path("<array>")
    return Path(image) if isinstance(image, (str, os.PathLike)) else Path("<image>")


def _prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """``items``, computed in a background thread up to ``depth`` ahead of the consumer.

    An exception in the thread is raised in the consumer at the item where it happened; a consumer
    that stops early stops the thread.
    """
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put((done, exc))

    worker = threading.Thread(target=produce, name="onnxvis-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(0.05)


class Inspector:
    """One model, opened once, for many passes.

    Args:
        model: the .onnx path, or an opened :class:`~onnxvis.model.file.Model`.
        config: the settings (preprocessing, layout, other inputs, batch size, threads); see
            :class:`~onnxvis.engine.config.InspectorConfig`. Default: the model's own choices.
        **settings: shortcuts for fields of the config, e.g. ``Inspector(path, preset="caffe",
            batch_size=16)``; they change ``config`` (or the default one).

    Raises:
        OnnxvisError: the model cannot be opened, or a setting is malformed.
    """

    def __init__(self, model: str | os.PathLike | Model, config: InspectorConfig | None = None, **settings: Any) -> None:
        config = config if config is not None else InspectorConfig()
        self.config: InspectorConfig = config.replace(**settings) if settings else config
        self.model = model if isinstance(model, Model) else Model.open(model)
        self.layers: list[ConvLayer] = find_conv_layers(self.model)
        self._class_names: ClassNames | None = None  # settled on first use, or given by use_labels
        self._spec: InputSpec | None = None
        self._settled: SettledPreprocess | None = None
        self._multiple: int | None = None
        self._sessions: dict[tuple, Session] = {}
        self._gradients: dict[tuple, GradientGraph] = {}
        self._unbatchable: set[tuple] = set()
        self._downstream: dict[tuple[str, ...], set[str]] = {}
        self._kernels: dict[ConvLayer, np.ndarray] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ settled once

    def __enter__(self) -> "Inspector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the onnxruntime sessions and cached weights."""
        self._sessions.clear()
        self._gradients.clear()
        self._kernels.clear()

    @property
    def batch_size(self) -> int:
        """Images per onnxruntime run when the model's batch dimension is free (from the config)."""
        return self.config.batch_size

    @property
    def threads(self) -> int:
        """onnxruntime's intra-op threads: the config's, else the machine's cores."""
        return int(self.config.threads) if self.config.threads else (os.cpu_count() or 1)

    @property
    def image_input(self) -> InputSpec:
        """The model input that takes the image (found once). Raises OnnxvisError when there is none."""
        if self._spec is None:
            self._spec = image_input(self.model, self.config.layout)
        return self._spec

    @property
    def preprocessing(self) -> SettledPreprocess:
        """The preprocessing, settled once, with where it came from."""
        if self._settled is None:
            config = self.config
            self._settled = settle_preprocess(
                self.model, self.image_input, config.preprocess, config.preset, config.changes, config.origin
            )
        return self._settled

    @property
    def class_names(self) -> ClassNames:
        """The class names and where they came from: given by :meth:`use_labels`, else the model's
        metadata, else a guess from the number of class scores (see :func:`~onnxvis.engine.classes.guess_class_names`)."""
        if self._class_names is None:
            self._class_names = self._settle_class_names()
        return self._class_names

    @property
    def labels(self) -> Sequence[str] | None:
        """The class names in class-index order (see :attr:`class_names`), or None when the classes have none."""
        return self.class_names.names

    def _settle_class_names(self) -> ClassNames:
        stored = labels_from_metadata(self.model.metadata)
        if stored:
            recorded = labels_origin(self.model.metadata)
            origin = f"the model's {LABELS_KEY} metadata" + (f" ({recorded})" if recorded else "")
            return ClassNames(tuple(stored), origin, "metadata")
        return guess_class_names(self.class_count()) or NO_NAMES

    def class_count(self, output: str | None = None) -> int | None:
        """How many class scores the model gives, as its graph declares them: the size of ``output``, or of
        the outputs that look like class scores when they all agree; None when the graph does not say."""
        output = output if output is not None else self.config.target_output
        if output is not None:
            names = [output]
        else:
            names = class_outputs(self.model)
            if not names and len(self.model.graph.output) == 1:
                names = [self.model.graph.output[0].name]
        sizes = {class_count_of(_output_shape(self.model, name) or ()) for name in names}
        return sizes.pop() if len(sizes) == 1 else None

    def use_labels(self, names: Sequence[str], origin: str, output: str | None = None, *, setting: str = "labels") -> ClassNames:
        """Name the classes with ``names`` (e.g. read by :func:`~onnxvis.engine.classes.load_labels`), over
        the model's own names and any guess.

        Args:
            names: one name per class score of ``output`` (default: the class output found from the graph).
            origin: where they came from, in words, e.g. "file pets.txt".
            setting: the parameter they were given as, for the error.

        Raises:
            OnnxvisError: no names, or not as many as the model's class scores.
        """
        names = tuple(str(n) for n in names)
        if not names:
            raise OnnxvisError("the list of class names is empty; give one name per class", setting=setting)
        check_label_count(names, self.class_count(output), f"the {origin}" if origin.startswith("file ") else origin, setting=setting)
        self._class_names = ClassNames(names, origin, "file")
        return self._class_names

    def check_labels(self, scores: np.ndarray) -> None:
        """Refuse names the user gave that do not fit one image's ``scores``: where the graph does not
        declare the class count, :meth:`use_labels` could not check it.

        Raises:
            OnnxvisError: not as many names as scores.
        """
        names = self.class_names
        if names.source == "file" and names.names is not None:
            check_label_count(names.names, int(np.asarray(scores).size), f"the {names.origin}")

    def select(self, spec: str | int | None, default: str = "first") -> list[ConvLayer]:
        """Conv layers by ``spec`` ("all", "0,2", node names), or ``default`` ("all", "first", "last") when None."""
        if default == "last":
            if spec is None:
                if not self.layers:
                    raise no_conv_layer()
                return self.layers[-1:]
            default = "first"
        return select_layers(self.layers, None if spec is None else str(spec), default=default)

    def bgr_layers(self) -> list[ConvLayer]:
        """The conv layers that read the image itself (through elementwise ops, Transpose, Pad, ...) in BGR
        order: those with 3 input channels when the settled preprocessing feeds BGR (a Caffe model). Their
        weight's input channel 0 is blue. Empty when the model has no image input or its preprocessing
        cannot be settled: then nothing is known of the order.
        """
        try:
            spec, settled = self.image_input, self.preprocessing
        except OnnxvisError:
            return []
        if settled.preprocess.color != "BGR":
            return []
        fed = tensors_fed_by(self.model, spec.name)
        return [layer for layer in self.layers if layer.input_name in fed and (layer.weight_shape or (0, 0))[1:2] == (3,)]

    def kernels(self, layer: ConvLayer) -> np.ndarray:
        """The layer's kernels as float32 (O, I, ...), read once."""
        weight = self._kernels.get(layer)
        if weight is None:
            weight = self._kernels[layer] = kernel_weights(layer)
        return weight

    # ------------------------------------------------------------------------------ one image

    def prepare(self, image: ImageLike) -> Prepared:
        """Decode ``image`` (a path or a PIL image) and turn it into the array the model wants.

        An array (a numpy array, or a ``.npy`` file) is fed as it is: no preprocessing, in the model's
        layout, its shape checked against the input's (:func:`~onnxvis.image.inputs.fit_array`).

        Raises:
            OnnxvisError: a bad image, or a size the model cannot take.
        """
        from PIL import Image

        spec = self.image_input
        if isinstance(image, np.ndarray) or (isinstance(image, (str, os.PathLike)) and pp.is_array_file(image)):
            return self._prepare_array(image)
        chosen = self.preprocessing.preprocess
        img = image if isinstance(image, Image.Image) else pp.load_image(image)
        chosen = fit_size(spec, chosen, img.size, self.multiple, self.config.explicit_size)
        shaped = pp.resize_and_crop(img, chosen)
        pixels = np.asarray(shaped, dtype=np.uint8)
        chw = pp.normalize(pixels, chosen)
        height, width = spec.size
        if (height and chw.shape[1] != height) or (width and chw.shape[2] != width):
            raise OnnxvisError(
                f"the preprocessed image is {chw.shape[1]}x{chw.shape[2]} but input {spec.name!r} wants "
                f"{height or 'any'}x{width or 'any'}; resize to {height or chw.shape[1]},{width or chw.shape[2]}",
                setting="resize",
            )
        array = self._fill_batch(pp.to_layout(chw, spec.layout, spec.dtype))
        rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
        return Prepared(_image_name(image), array, chosen, np.ascontiguousarray(rgb))

    @property
    def multiple(self) -> int:
        """The multiple that the image's height and width must be: what the graph needs when its size is free, else 1."""
        if self._multiple is None:
            self._multiple = size_multiple(self.model)[0] if self.image_input.dynamic else 1
        return self._multiple

    def _fill_batch(self, array: np.ndarray) -> np.ndarray:
        """One example repeated to the model's fixed batch."""
        spec = self.image_input
        if spec.batch is None or spec.batch <= 1:
            return array
        if array.nbytes * spec.batch > _MAX_BATCH_BYTES:  # the declared batch size is the file's word
            raise OnnxvisError(
                f"input {spec.name!r} has a fixed batch of {spec.batch}: the image repeated that many times would "
                f"take {array.nbytes * spec.batch / 2**30:.1f} GiB; use a model exported with batch 1 or a dynamic batch"
            )
        return np.ascontiguousarray(np.repeat(array, spec.batch, axis=0))

    def _prepare_array(self, image: "np.ndarray | str | os.PathLike") -> Prepared:
        spec = self.image_input
        given = image if isinstance(image, np.ndarray) else pp.load_array(image)
        what = "the array" if isinstance(image, np.ndarray) else f"the array in {Path(image).name}"
        array = self._fill_batch(fit_array(spec, given, self.multiple, what))
        return Prepared(_image_name(image), array, self.preprocessing.preprocess, pp.array_picture(array, spec.layout), as_is=True)

    # ------------------------------------------------------------------------------ running

    def session(self, targets: Sequence[str], given: Mapping[str, np.ndarray] | None = None, many_runs: bool = True) -> Session:
        """The kept onnxruntime session that computes ``targets`` (from ``given`` tensors, if any).

        ``many_runs=False`` tunes a new session for a single run (no arena, basic optimisations), which
        is what a one-picture command wants; a kept session serves later runs either way.
        """
        key = (tuple(dict.fromkeys(targets)), tuple(sorted(given or {})))
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = Session(self.model, list(key[0]), given, threads=self.threads, many_runs=many_runs)
                self._sessions[key] = session
        return session

    def gradients(
        self,
        places: Sequence[str],
        output: str | None = None,
        shape: Sequence[int] | None = None,
        rows: int | None = None,
        *,
        tensor: str | None = None,
    ) -> GradientGraph:
        """The kept gradient graph (forward and backward in one session) for ``places``, the class
        scores of ``output`` and inputs of ``shape`` (one input's, without the batch axis; default
        the model's fixed size). Built once per (places, output, shape, rows).

        Args:
            places: tensors to differentiate at; the image input's name differentiates at the input.
            output: the scores output (default: the class output).
            shape: one input's shape, e.g. ``prepared.array.shape[1:]``.
            rows: rows per run (default the Inspector's batch size; the model's fixed batch where it
                has one, 1 where the graph fixes it inside or other inputs are fed).
            tensor: differentiate this tensor of the graph instead of a class output (feature
                visualisation: a layer's channels); ``rows`` is then tried even where the model's input
                declares a batch of 1, the graph up to the tensor often not fixing it (else 1).

        Raises:
            OnnxvisError: the model cannot be differentiated (see :class:`onnxvis.engine.gradients.GradientGraph`).
        """
        from onnxvis.engine.gradients import GradientGraph

        spec = self.image_input
        if tensor is not None:
            known = {out for node in self.model.graph.node for out in node.output if out}
            if tensor not in known:
                raise OnnxvisError(f"the model computes no tensor named {tensor!r}")
        name = tensor if tensor is not None else self.class_output(output)
        if shape is None:
            if None in spec.shape[1:]:
                raise OnnxvisError(f"input {spec.name!r} has a dynamic size: the gradient graph needs the input's shape")
            shape = tuple(int(d) for d in spec.shape[1:] if d is not None)
        others = self._other_feeds([name])
        free = max(1, rows or self.batch_size)
        if tensor is not None and spec.batch == 1 and not others:
            count = free
        else:
            count = spec.batch or (1 if others else free)
        key = (tuple(dict.fromkeys(places)), name, tuple(int(d) for d in shape), count)
        with self._lock:
            graph = self._gradients.get(key)
            if graph is None:
                graph = GradientGraph(self.model, spec.name, spec.layout, name, list(key[0]), key[2], count, others, self.threads)
                self._gradients[key] = graph
        return graph

    def gradient_notes(self) -> list[str]:
        """What changes the meaning of the gradients' numbers (the score taken before a final Softmax,
        a quantized or float16 graph), for every gradient graph built so far, each once."""
        notes: list[str] = []
        for graph in list(self._gradients.values()):
            notes.extend(n for n in graph.notes if n not in notes)
        return notes

    def _other_feeds(self, targets: Sequence[str], given: Iterable[str] = ()) -> dict[str, np.ndarray]:
        spec_name = self.image_input.name if self._has_image_input() else None
        _, read = required_nodes(self.model.graph, targets, given)
        names = [i.name for i in runtime_inputs(self.model) if i.name in read and i.name not in set(given)]
        return fill_inputs(self.model, names, self.config.inputs, image_name=spec_name)

    def _has_image_input(self) -> bool:
        try:
            return self.image_input is not None
        except OnnxvisError:
            return False

    def run_arrays(
        self, feeds: Mapping[str, np.ndarray], targets: Sequence[str], batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """Compute ``targets`` from arrays that carry a batch dimension.

        Args:
            feeds: tensor name -> array (N, ...). A name may be a graph input or any tensor in the
                middle of the graph: the graph is cut there, and only the nodes between the fed
                tensors and the targets run.
            targets: tensor names to compute.
            batch_size: rows per onnxruntime run (default: the Inspector's); a model with a fixed
                batch gets exactly that many (the last run padded).

        Returns:
            target -> array with N rows.
        """
        if not feeds:
            raise OnnxvisError("run_arrays needs at least one fed tensor")
        targets = list(dict.fromkeys(targets))
        rows = {len(np.asarray(a)) for a in feeds.values()}
        if len(rows) != 1:
            raise OnnxvisError(f"the fed arrays have different batch sizes: {sorted(rows)}")
        count = rows.pop()
        graph_inputs = {i.name: i for i in runtime_inputs(self.model)}
        given = {name: np.asarray(a)[:1] for name, a in feeds.items() if name not in graph_inputs}
        session = self.session(targets, given)
        others = self._other_feeds(targets, given)
        fixed = self._fixed_batch(feeds, graph_inputs)
        batched = self._computed_from(list(feeds))
        step = fixed or max(1, batch_size or self.batch_size)
        key = (tuple(targets), tuple(sorted(given)))
        if key in self._unbatchable or others:
            step = fixed or 1
        parts: dict[str, list[np.ndarray]] = {t: [] for t in targets}
        start = 0
        while start < count:
            chunk = {name: np.asarray(a)[start : start + step] for name, a in feeds.items()}
            real = len(next(iter(chunk.values())))
            if fixed and real < fixed:  # pad a fixed batch with copies of the last row
                chunk = {n: np.concatenate([a, np.repeat(a[-1:], fixed - real, axis=0)]) for n, a in chunk.items()}
            sent = len(next(iter(chunk.values())))
            values = self._run_rows(session, key, chunk, others, 1 if fixed else real, batched)  # a fixed batch is one run
            for t in targets:
                value = np.asarray(values[t])
                parts[t].append(value[:real] if t in batched and _has_rows(value, sent) else value)
            start += real
        return {t: _join_rows(parts[t]) if t in batched else parts[t][0] for t in targets}

    def _computed_from(self, fed: Sequence[str]) -> set[str]:
        """The tensors that carry the fed rows (and so a batch axis): those computed from them."""
        key = tuple(sorted(fed))
        if key not in self._downstream:
            self._downstream[key] = downstream(self.model.graph, fed)
        return self._downstream[key]

    def _run_rows(
        self, session: Session, key: tuple, rows: Mapping[str, np.ndarray], others: Mapping[str, np.ndarray], count: int,
        batched: set[str],
    ) -> dict[str, np.ndarray]:
        """One onnxruntime run of ``count`` rows stacked in ``rows``, beside the unbatched ``others``.

        A graph may take one row at a time whatever its input declares (a Reshape that fixes the batch
        to 1 inside it): then the batch fails, its rows run one by one, and so does every later run of
        the same tensors (``key``). With ``count=1`` the run is what it is, and its error is raised.
        Only the tensors in ``batched`` (computed from the rows) are stacked row by row; the others are
        the same in every run.
        """
        if count > 1 and key not in self._unbatchable:
            try:
                return session.run({**others, **rows})
            except OnnxvisError:
                self._unbatchable.add(key)
        if count == 1:
            return session.run({**others, **rows})
        runs = [session.run({**others, **{n: a[i : i + 1] for n, a in rows.items()}}) for i in range(count)]
        return {t: np.concatenate([r[t] for r in runs]) if t in batched else runs[0][t] for t in runs[0]}

    def _fixed_batch(self, feeds: Mapping[str, np.ndarray], graph_inputs: Mapping[str, Any]) -> int | None:
        for name in feeds:
            if name in graph_inputs:
                shape = input_shape(graph_inputs[name])
                if shape and shape[0] is not None:
                    return int(shape[0])
        return None

    # A str is one image, though it is also an Iterable[str]: the single-image overloads come first, and
    # mypy's overload-overlap warning about exactly that is silenced on each.
    @overload
    def run(self, images: ImageLike, tensors: Sequence[str]) -> ImageResult: ...  # type: ignore[overload-overlap]
    @overload
    def run(self, images: Iterable[ImageLike], tensors: Sequence[str]) -> Iterator[ImageResult]: ...

    def run(self, images, tensors):
        """Compute the named tensors for one image, or for each of an iterable of images (streamed).

        Raises:
            OnnxvisError: a bad image, an unknown tensor, or an input that cannot be fed.
        """
        targets = list(dict.fromkeys(tensors))
        if not targets:
            raise OnnxvisError("no tensor was asked for")
        if _is_one_image(images):
            return next(self._run_many([images], targets, many_runs=False))
        return self._run_many(images, targets)

    def _batch_limit(self, others: Mapping[str, np.ndarray]) -> int:
        return self.batch_size if self.image_input.batch is None and not others else 1

    def _run_many(self, images: Iterable[ImageLike], targets: list[str], many_runs: bool = True) -> Iterator[ImageResult]:
        _ = self.image_input  # a model without an image input says so before asking for its other inputs
        limit = self._batch_limit(self._other_feeds(targets))  # raises for a missing other input, naming it
        prepared = _prefetch((self.prepare(image) for image in images), limit * _PREFETCH_BATCHES)
        return self.run_prepared(prepared, targets, many_runs)

    def run_prepared(self, prepared: Iterable[Prepared], tensors: Sequence[str], many_runs: bool = True) -> Iterator[ImageResult]:
        """Compute the named tensors for images already prepared by :meth:`prepare` (streamed, batched).

        For callers that prepare images themselves, e.g. one decoded photo for two models.
        """
        targets = list(dict.fromkeys(tensors))
        if not targets:
            raise OnnxvisError("no tensor was asked for")
        spec = self.image_input
        others = self._other_feeds(targets)  # raises for a missing other input, naming it
        session = self.session(targets, many_runs=many_runs)
        limit = self._batch_limit(others)
        key = (tuple(targets), ())
        batched = self._computed_from([spec.name])
        batch: list[Prepared] = []

        def flush() -> Iterator[ImageResult]:
            if not batch:
                return
            array = batch[0].array if len(batch) == 1 else np.concatenate([item.array for item in batch])
            values = self._run_rows(session, key, {spec.name: array}, others, len(batch), batched)
            arrays = {t: np.asarray(v) for t, v in values.items()}
            rows = {t: t in batched and _has_rows(v, len(batch)) for t, v in arrays.items()}
            for i, item in enumerate(batch):
                yield ImageResult(item.image, item, {t: v[i] if rows[t] else v for t, v in arrays.items()})
            batch.clear()

        for item in prepared:
            if batch and (item.array.shape != batch[0].array.shape):
                yield from flush()
            batch.append(item)
            if len(batch) >= limit:
                yield from flush()
        yield from flush()

    # ------------------------------------------------------------------------------ what users ask for

    @overload
    def feature_maps(self, images: ImageLike, layers: Sequence[ConvLayer]) -> FeatureMaps: ...  # type: ignore[overload-overlap]
    @overload
    def feature_maps(self, images: Iterable[ImageLike], layers: Sequence[ConvLayer]) -> Iterator[FeatureMaps]: ...

    def feature_maps(self, images, layers):
        """The outputs of ``layers``' conv nodes, channels first, for one image or each of many.

        A map is the conv node's own output, before any activation that follows it (a com.microsoft
        FusedConv applies its activation inside the node; QLinearConv and ConvInteger give quantized
        maps, which differ from real ones by a scale and shift).

        Raises:
            OnnxvisError: a layer inside a subgraph, a bad image, or an input that cannot be fed.
        """
        layers = list(layers)
        require_main_graph(layers)
        targets = [layer.output_name for layer in layers]

        def maps(result: ImageResult) -> FeatureMaps:
            found = {layer: channels_first(layer, result.values[layer.output_name]) for layer in layers}
            prepared = result.prepared
            return FeatureMaps(result.image, self.image_input, prepared.preprocess, prepared.array, found, prepared.as_is)

        if _is_one_image(images):
            return maps(self.run(images, targets))
        return (maps(result) for result in self.run(images, targets))

    def _check_outputs(self, names: Sequence[str] | None) -> list[str]:
        known = [o.name for o in self.model.graph.output]
        chosen = list(names) if names is not None else known
        unknown = [n for n in chosen if n not in known]
        if unknown:
            raise OnnxvisError(f"the model has no output {unknown[0]!r}; its outputs are {', '.join(sorted(known))}")
        return chosen

    @overload
    def outputs(self, images: ImageLike, names: Sequence[str] | None = None) -> dict[str, np.ndarray]: ...  # type: ignore[overload-overlap]
    @overload
    def outputs(self, images: Iterable[ImageLike], names: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]: ...

    def outputs(self, images, names=None):
        """The model's outputs (all, or ``names``) for one image, or for each of many; batch dimension removed."""
        chosen = self._check_outputs(names)
        if _is_one_image(images):
            return self.run(images, chosen).values
        return (result.values for result in self.run(images, chosen))

    def class_output(self, name: str | None = None) -> str:
        """The output that holds one score per class: ``name`` if given, else the config's ``target_output``,
        else the only such output.

        Raises:
            OnnxvisError: no output, or several, look like class scores and none was named.
        """
        name = name if name is not None else self.config.target_output
        if name is not None:
            try:
                return self._check_outputs([name])[0]
            except OnnxvisError as exc:
                raise OnnxvisError(str(exc), setting="target_output") from None
        labels = self.labels
        found = class_outputs(self.model, len(labels) if labels else None) or class_outputs(self.model)
        if len(found) == 1:
            return found[0]
        outputs = [o.name for o in self.model.graph.output]
        if len(outputs) == 1:
            return outputs[0]
        if not found:
            raise OnnxvisError(
                f"no output of the model holds one score per class ({CLASS_SHAPES}); its outputs are "
                f"{self._outputs_text()}; name the one to use",
                setting="target_output",
            )
        raise OnnxvisError(
            f"several outputs could hold the class scores ({', '.join(found)}); name the one to use", setting="target_output"
        )

    def _outputs_text(self) -> str:
        return ", ".join(describe_value(o) for o in self.model.graph.output)

    def score_output(self, name: str | None = None) -> str:
        """The output whose values are class scores, to show as classes: :meth:`class_output`, refused
        when its declared shape is not (N, K) or (N, K, 1, 1) (a detector's anchors, a probability map, an
        embedding's sequence). Class activation maps keep :meth:`class_output`, which takes spatial outputs too.

        Raises:
            OnnxvisError: no such output, or its declared shape is not one score per class.
        """
        chosen = self.class_output(name)
        shape = _output_shape(self.model, chosen)
        if shape is not None and not is_class_shape(shape):
            value = next(o for o in self.model.graph.output if o.name == chosen)
            others = len(self.model.graph.output) > 1
            raise OnnxvisError(
                f"output {describe_value(value)} is not class scores, which are {CLASS_SHAPES}"
                + (f"; name the output that holds them (the outputs are {self._outputs_text()})" if others
                   else "; this model's only output holds something else, so there are no classes to show"),
                setting="target_output",
            )
        return chosen

    @overload
    def predict(self, images: ImageLike, top: int = 5, output: str | None = None) -> Prediction: ...  # type: ignore[overload-overlap]
    @overload
    def predict(self, images: Iterable[ImageLike], top: int = 5, output: str | None = None) -> Iterator[Prediction]: ...

    def predict(self, images, top=5, output=None):
        """The ``top`` best classes of one image, or of each of many, with their labels when the model has them."""
        if top < 1:
            raise OnnxvisError(f"the number of classes to show must be 1 or more, got {top}", setting="top")
        name = self.score_output(output)

        def best(result: ImageResult) -> Prediction:
            scores = result.values[name]
            check_class_scores(scores, name)  # a shape the graph did not declare is checked on the values
            self.check_labels(scores)
            return Prediction(result.image, name, top_k(scores, self.labels, top), not are_probabilities(scores))

        if _is_one_image(images):
            return best(self.run(images, [name]))
        return (best(result) for result in self.run(images, [name]))

    # ------------------------------------------------------------------------------ describing

    def summary(self, full_paths: bool = False) -> list[tuple[str, str]]:
        """The model in rows of (what, value): file, producer, opsets, inputs (which one is the image,
        its layout and size), outputs, the preprocessing and where it came from, the classes, the conv layers.

        Args:
            full_paths: show the model's full path; by default only its file name (a summary is made to be shared).
        """
        from collections import Counter

        model, proto = self.model, self.model.proto
        size = model.path.stat().st_size / 1e6 if model.path.exists() else 0.0
        rows = [
            ("model", f"{model.path if full_paths else model.path.name} ({size:.1f} MB)"),
            ("producer", f"{proto.producer_name or '?'} {proto.producer_version}".rstrip()),
            ("ir", str(proto.ir_version)),
            ("opsets", ", ".join(f"{d} {v}" for d, v in model.opsets.items())),
        ]
        if proto.doc_string.strip():
            rows.append(("doc", " ".join(proto.doc_string.split())[:200]))
        for key in DESCRIBED_KEYS:
            if key in model.metadata:
                rows.append((key.split(".", 1)[1], model.metadata[key]))
        try:
            spec: InputSpec | None = self.image_input
            problem = None
        except OnnxvisError as exc:
            spec, problem = None, str(exc)
        for value in runtime_inputs(model):
            if spec is not None and value.name == spec.name:
                rows.append(("input", f"{describe_value(value)}: the image, {spec.layout} ({spec.layout_reason})"))
            else:
                rows.append(("input", f"{describe_value(value)}: not the image; {NEEDS_A_VALUE}"))
        for value in model.graph.output:
            rows.append(("output", describe_value(value)))
        if spec is None:
            rows.append(("image", f"none: {problem}"))
        else:
            height, width = spec.size
            if height and width:
                rows.append(("size", f"fixed {height}x{width}"))
            else:
                multiple, why = size_multiple(model)
                rounding = f"height and width rounded to a multiple of {multiple}: {why}" if multiple > 1 else why
                rows.append(("size", f"dynamic ({height or '?'}x{width or '?'}): as the preprocessing below says; {rounding}"))
            batch = spec.batch
            rows.append(("batch", f"fixed {batch}" if batch else f"free: up to {self.config.batch_size} images a run"))
            if spec.channels == 1:
                rows.append(("channels", "1: colour photos are converted to grey (luma)"))
            elif spec.channels == 3:
                rows.append(("channels", "3: grey photos are repeated into 3 channels"))
            try:
                settled = self.preprocessing
            except OnnxvisError as exc:  # e.g. malformed metadata: the rest of the summary still holds
                rows.append(("preproc", f"none: {exc}"))
            else:
                rows.append(("preproc", settled.preprocess.describe()))
                rows.append(("", f"({settled.origin})"))
                recorded = preprocess_origin(model.metadata) if settled.source == "metadata" else None
                if recorded:
                    rows.append(("", f"set at export from {recorded}"))
        rows.append(("classes", self._classes_text()))
        kinds = Counter(layer.source.describe() for layer in self.layers if layer.source is not None)
        text = "; ".join(f"{n} {kind}" for kind, n in kinds.most_common(4))
        if len(kinds) > 4:
            text += f"; {len(kinds) - 4} other kinds"
        rows.append(("conv layers", f"{len(self.layers)}" + (f" (weights: {text})" if self.layers else "")))
        return rows

    def _classes_text(self) -> str:
        names = self.class_names
        if names.names:
            count = len(names.names)
            if names.source == "metadata":
                origin = labels_origin(self.model.metadata)
                if origin:
                    return f"{count}, named; labels from {origin}"
                return f"{count}, named in the model's {LABELS_KEY} metadata"
            if names.source == "file":
                return f"{count}, named; labels from {names.origin}"
            return f"{count}, named: {names.describe()}"
        found = class_outputs(self.model)
        if len(found) == 1:
            value = next(o for o in self.model.graph.output if o.name == found[0])
            size = class_count_of(_output_shape(self.model, found[0]) or ())
            if size:
                return f"{size} (guessed from the output's shape), without names; output {describe_value(value)}"
            return f"unknown count: output {describe_value(value)} has a dynamic class dimension, without names"
        if not found and len(self.model.graph.output) == 1:
            value = self.model.graph.output[0]
            if input_shape(value) is not None:
                return f"none: output {describe_value(value)} is not class scores, which are {CLASS_SHAPES}"
        if len(found) > 1:
            return f"unknown: several outputs could hold the class scores ({', '.join(found)})"
        return "unknown: no labels in the model"


def _output_shape(model: Model, name: str) -> tuple[int | None, ...] | None:
    for output in model.graph.output:
        if output.name == name:
            return input_shape(output)
    return None


def _has_rows(value: np.ndarray, count: int) -> bool:
    """Whether a tensor computed from the fed rows has one row per fed row: a Shape of them, say, has
    not. A tensor that does not depend on the rows at all (a weight computed in the graph) is never
    cut by rows (see :meth:`Inspector._computed_from`)."""
    return value.ndim >= 1 and value.shape[0] == count


def _join_rows(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items``, computed in a background thread up to ``depth`` ahead (for callers that prepare their own
    feeds, e.g. one photo for two models). An exception is raised at the item where it happened."""
    return _prefetch(items, depth)


def map_images(function: Callable[[Prepared], T], images: Iterable[ImageLike], inspector: Inspector) -> Iterator[T]:
    """``function`` over the prepared images, prepared in the background (for callers that run their own passes)."""
    for prepared in _prefetch((inspector.prepare(image) for image in images), 2):
        yield function(prepared)
