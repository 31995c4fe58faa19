"""Dataset examples: for each channel of some conv layers, the images of a folder that excite it most.

The work is split so that it streams, resumes and scales out:

- :class:`Plan` is everything a worker needs to score images (the model, the Inspector's
  :class:`~onnxvis.engine.config.InspectorConfig`, the layers), small and picklable, so that a Ray
  actor builds the same :class:`~onnxvis.engine.inspector.Inspector` and gets the same numbers as this process.
- :func:`score_images` runs an Inspector over (image id, path) pairs and yields :class:`Partial`
  results (a :class:`~onnxvis.analysis.examples.topk.TopK` and the ids it covers), chunk by chunk: the local engine
  and each Ray actor call it. Each image's maps are reduced to per-channel maxima as soon as it is
  run; the maps themselves are never kept.
- :class:`ExamplesState` holds the merged top-K, the list of images and which were seen. It is saved
  atomically as ``examples-state.npz`` in the output folder, during the run and at its end: an
  interrupted run continues from it, and a finished one is redrawn from it without the model.
- :func:`onnxvis.analysis.examples.find.find_examples` ties them together for any engine: it is the
  one way in, which the command, the tests and both engines go through.

Memory is bounded by layers x channels x K (the list of image paths aside, a few bytes per image).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.examples.receptive import Field, receptive_fields
from onnxvis.analysis.examples.topk import TopK, channel_maxima
from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp
from onnxvis.image.preprocess import Preprocess
from onnxvis.model.layers import channels_first, require_main_graph
from onnxvis.outdir import OutputDir
from onnxvis.progress import Progress

if TYPE_CHECKING:
    from PIL import Image

    from onnxvis.model.layers import ConvLayer

__all__ = [
    "STATE_FILE",
    "Engine",
    "ExamplesState",
    "LayerInfo",
    "Partial",
    "Plan",
    "check_counts",
    "find_images",
    "load_state",
    "local_engine",
    "score_images",
]

STATE_FILE = "examples-state.npz"
STATE_VERSION = 1
# Entries kept per channel beyond --top, so that a finished run can be redrawn with a larger K.
DEFAULT_KEEP = 16
# A layer without a receptive field keeps, per entry, its channel's map at most this big (float16):
# the mask of the whole-image fallback.
MASK_SIDE = 16
# Candidates are merged into the top-K every this many images (fewer lexsorts, same result).
_CHUNK = 64
_CHECKPOINT_SECONDS = 30.0
_MAX_NOTES = 5  # unreadable files listed one by one; the rest are counted


def find_images(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files in ``sources`` (folders walked recursively, files taken as they are), once
    each and sorted by path, so that every engine and every resumed run numbers them alike.

    Raises:
        OnnxvisError: a source is missing, or a folder holds no image file.
    """
    return sorted(set(pp.image_files([Path(s) for s in sources])), key=str)


@dataclass(frozen=True)
class LayerInfo:
    """One layer as the examples need it (picklable, unlike the graph it comes from)."""

    index: int
    name: str
    output: str
    channels_last: bool  # com.microsoft NhwcConv
    mask_shape: tuple[int, int] | None  # set when the layer has no receptive field: the stored map's size

    @property
    def stem(self) -> str:
        return f"{self.index:02d}_{self.name}"


@dataclass(frozen=True)
class Plan:
    """What a worker needs to score images: the model, the Inspector's settings, the layers, K."""

    model: str
    config: InspectorConfig
    layers: tuple[LayerInfo, ...] = ()
    keep: int = DEFAULT_KEEP

    def inspector(self, threads: int | None = None) -> "Inspector":
        """An Inspector opened as the planning one was (``threads`` aside): it settles the same
        preprocessing from the same settings, so it gets the same numbers."""
        return Inspector(self.model, self.config if threads is None else self.config.replace(threads=threads))


def _mask(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> (N, C, h, w): the maps sampled down to ``shape`` (nearest), for the fallback mask."""
    rows = np.minimum((np.arange(shape[0]) + 0.5) * maps.shape[2] / shape[0], maps.shape[2] - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * maps.shape[3] / shape[1], maps.shape[3] - 1).astype(int)
    return maps[:, :, rows][:, :, :, cols]


def image_candidates(values: dict[str, np.ndarray], layers: Sequence[LayerInfo]) -> list[tuple[np.ndarray, ...]]:
    """One image's candidates per layer: (scores (C,), y (C,), x (C,)[, mask (C, h, w)]).

    Reduced as soon as the image is run, so that only these small arrays wait to be merged, never
    the maps themselves.
    """
    found: list[tuple[np.ndarray, ...]] = []
    for layer in layers:
        value = channels_first(layer, values[layer.output], dtype=None, rank=3)  # the model's dtype: its own maxima
        scores, ys, xs = channel_maxima(value[None])
        if layer.mask_shape is None:
            found.append((scores[0], ys[0], xs[0]))
        else:
            found.append((scores[0], ys[0], xs[0], _mask(value[None], layer.mask_shape)[0]))
    return found


def add_candidates(top: TopK, layers: Sequence[LayerInfo], ids: Sequence[int], candidates: Sequence[list[tuple[np.ndarray, ...]]]) -> None:
    """Offer the candidates of some images (``candidates[i]`` for image id ``ids[i]``, from
    :func:`image_candidates`) to ``top``."""
    ids_array = np.asarray(ids, np.int64)
    for n, layer in enumerate(layers):
        parts = [c[n] for c in candidates]
        payload = np.stack([p[3] for p in parts]) if layer.mask_shape is not None else None
        scores, ys, xs = (np.stack([p[i] for p in parts]) for i in range(3))
        top.add(layer.output, ids_array, scores, ys, xs, payload)


@dataclass
class Partial:
    """What scoring some images gave: their top-K, their ids, and the ones that could not be read."""

    top: TopK
    ids: list[int]
    unreadable: list[str] = field(default_factory=list)  # one message per image skipped


def score_images(inspector: "Inspector", plan: Plan, todo: Iterable[tuple[int, str]], chunk: int = _CHUNK) -> Iterator[Partial]:
    """Run ``inspector`` over (image id, path) pairs; yield a :class:`Partial` every ``chunk`` images.

    Decoding runs in the Inspector's background thread (it consumes the image generator there), batches
    in onnxruntime. A file that cannot be read as an image is skipped and reported, not fatal: one
    broken file should not stop a run over a whole dataset.
    """
    from collections import deque

    targets = [layer.output for layer in plan.layers]
    fed: deque[int] = deque()
    bad: list[tuple[int, str]] = []

    def photos() -> Iterator["Image.Image | np.ndarray"]:
        for image_id, path in todo:
            try:
                image = pp.load_source(path)  # a .npy array is fed as it is
            except OnnxvisError as exc:
                bad.append((image_id, str(exc)))
                continue
            fed.append(image_id)
            yield image

    ids: list[int] = []
    values: list[list[tuple[np.ndarray, ...]]] = []

    def flush() -> Partial:
        top = TopK(plan.keep)
        if ids:
            add_candidates(top, plan.layers, ids, values)
        skipped = list(bad)
        bad.clear()
        partial = Partial(top, ids + [i for i, _ in skipped], [m for _, m in skipped])
        ids.clear()
        values.clear()
        return partial

    for result in inspector.run(photos(), targets):
        ids.append(fed.popleft())  # the Inspector keeps the order of its input
        values.append(image_candidates(result.values, plan.layers))
        if len(ids) >= chunk:
            yield flush()
    if ids or bad:
        yield flush()


# --------------------------------------------------------------------------------------- the state


def _model_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ExamplesState:
    """The merged top-K of a run, the images it knows and which of them were scored.

    Image ids are positions in ``catalog``, which stays sorted by path: ties between equal scores
    break by path, in one run as in a resumed one.
    """

    meta: dict
    catalog: list[str]
    seen: np.ndarray
    top: TopK

    @property
    def layers(self) -> list[LayerInfo]:
        return [
            LayerInfo(d["index"], d["name"], d["output"], d["channels_last"], None if d["mask_shape"] is None else tuple(d["mask_shape"]))
            for d in self.meta["layers"]
        ]

    @property
    def fields(self) -> dict[str, "Field | None"]:
        return {
            name: None if f is None else Field(tuple(f["jump"]), tuple(f["start"]), tuple(f["size"]))
            for name, f in self.meta["fields"].items()
        }

    @property
    def preprocess(self) -> "Preprocess":
        return Preprocess.from_json(self.meta["preprocess"])

    @property
    def layout(self) -> str:
        """The image input's layout (a state saved before it was recorded: NCHW)."""
        return str(self.meta.get("layout", "NCHW"))

    def extend(self, images: Sequence[str]) -> None:
        """Add images not yet known; ids are renumbered so that the catalog stays sorted by path."""
        new = sorted(set(images) - set(self.catalog))
        if not new:
            return
        merged = sorted(self.catalog + new)
        position = {path: i for i, path in enumerate(merged)}
        mapping = np.array([position[p] for p in self.catalog], np.int64)
        seen = np.zeros(len(merged), bool)
        seen[mapping] = self.seen
        if mapping.size:
            self.top.remap_images(mapping)
        self.catalog, self.seen = merged, seen

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {f"top.{k}": v for k, v in self.top.to_arrays().items()}
        arrays.update(meta=np.array(json.dumps(self.meta)), catalog=np.array(self.catalog, dtype=str), seen=self.seen)
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly
        return buffer.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> "ExamplesState":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("version") != STATE_VERSION:
                    raise OnnxvisError(
                        f"{path} was written by another version of onnxvis; remove it or choose another output folder", setting="output"
                    )
                top = TopK.from_arrays({k[4:]: data[k] for k in data.files if k.startswith("top.")})
                catalog = [str(p) for p in data["catalog"].tolist()]
                seen = np.asarray(data["seen"], bool)
        except OnnxvisError:
            raise
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise OnnxvisError(f"cannot read {path} ({exc}); remove it to start afresh") from None
        if seen.shape != (len(catalog),):
            raise OnnxvisError(f"{path} is damaged; remove it to start afresh")
        return cls(meta, catalog, seen, top)


def check_counts(top: int, keep: int) -> None:
    """Refuse, before a run, ``top`` images per channel that a run keeping ``keep`` entries per channel
    could not draw (the pictures are drawn after the run, which may take hours).

    Raises:
        OnnxvisError: ``top`` is below 1, or ``keep`` below ``top``.
    """
    if top < 1:
        raise OnnxvisError(f"the images drawn per channel (K) must be 1 or more, got {top}", setting="top")
    if keep < top:
        raise OnnxvisError(
            f"the entries kept per channel ({keep}) must be at least the images drawn per channel ({top})", setting="keep"
        )


def load_state(folder: str | os.PathLike) -> ExamplesState:
    """The state saved in an output folder by a previous run.

    Raises:
        OnnxvisError: there is none, or it cannot be read.
    """
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise OnnxvisError(
            f"no {STATE_FILE} in {folder}: collect the examples into this output folder first, then draw them again",
            setting="output",
        )
    return ExamplesState.from_file(path)


def _field_json(f: "Field | None") -> dict | None:
    return None if f is None else {"jump": list(f.jump), "start": list(f.start), "size": list(f.size)}


def make_plan(inspector: "Inspector", layers: Sequence["ConvLayer"], images: Sequence[str | os.PathLike], keep: int) -> tuple[Plan, dict]:
    """The plan of a run, and the metadata saved with its state (fields, map sizes, preprocessing).

    Runs the model once on the first readable image: this finds the map sizes and the input size that the
    receptive fields need, and reports a bad model or preprocessing before any long work starts.
    """
    require_main_graph(layers, "its feature maps cannot be exposed; choose other layers", setting="layers")
    first = None
    for path in images:
        try:
            first = pp.load_source(Path(path))
            break
        except OnnxvisError:
            continue
    if first is None:
        raise OnnxvisError("none of the files could be read as an image; give folders of photos")
    probe = inspector.run(first, [layer.output_name for layer in layers])
    spec = inspector.image_input
    size = probe.prepared.rgb.shape[:2]
    model = inspector.model
    fields = receptive_fields(
        model.graph, spec.name, layers, (int(size[0]), int(size[1])), spec.layout,
        initializer=lambda name: model.tensor(name) if model.has_initializer(name) else None,
    )
    infos = []
    map_sizes = {}
    for layer in layers:
        _, h, w = channels_first(layer, probe.values[layer.output_name], dtype=None, rank=3).shape
        map_sizes[layer.output_name] = [int(h), int(w)]
        mask = None if fields[layer.output_name] is not None else (min(h, MASK_SIDE), min(w, MASK_SIDE))
        infos.append(LayerInfo(layer.index, layer.name, layer.output_name, layer.channels_last, mask))
    # The Inspector's settings, not the first image's fitted preprocessing: each worker settles the
    # same preprocessing and fits every image as the local engine does (a dynamic-size model rounds
    # each image's own size).
    plan = Plan(str(inspector.model.path), inspector.config, tuple(infos), keep)
    meta = {
        "version": STATE_VERSION,
        "model": str(inspector.model.path),
        "model_sha256": _model_digest(inspector.model.path),
        "preprocess": inspector.preprocessing.preprocess.to_json(),
        "input_size": [int(size[0]), int(size[1])],
        "layout": spec.layout,  # how a .npy array among the images is shown as a picture
        "keep": keep,
        "layers": [
            {"index": i.index, "name": i.name, "output": i.output, "channels_last": i.channels_last,
             "mask_shape": None if i.mask_shape is None else list(i.mask_shape)}
            for i in infos
        ],
        "fields": {name: _field_json(f) for name, f in fields.items()},
        "map_sizes": map_sizes,
    }
    return plan, meta


# The engine: given the plan and the (id, path) pairs still to do, yield partial results as they finish.
Engine = Callable[[Plan, list[tuple[int, str]]], Iterator[Partial]]


def local_engine(inspector: "Inspector") -> Engine:
    """Score images in this process, with ``inspector`` (already opened)."""

    def run(plan: Plan, todo: list[tuple[int, str]]) -> Iterator[Partial]:
        return score_images(inspector, plan, todo)

    return run


def _same_run(old: dict, new: dict) -> str | None:
    """What differs between a saved run and this one, in words; None when it can continue."""
    if old.get("model_sha256") != new["model_sha256"]:
        return "another model"
    if old.get("preprocess") != new["preprocess"]:
        return "other preprocessing"
    if [d["output"] for d in old.get("layers", [])] != [d["output"] for d in new["layers"]]:
        return "other layers"
    if old.get("keep") != new["keep"]:
        return f"another number of kept entries ({old.get('keep')} vs {new['keep']})"
    return None


def collect_examples(
    plan: Plan,
    meta: dict,
    images: Sequence[str | os.PathLike],
    out: "OutputDir",
    engine: Engine,
    *,
    fresh: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> ExamplesState:
    """Score every image not yet seen and merge the results into the output folder's state.

    The state is saved atomically every 30 seconds and at the end (also when interrupted), so a
    rerun of the same command continues where this one stopped.

    Args:
        plan, meta: from :func:`make_plan`.
        images: all image paths of the run (those already seen are skipped).
        out: the output folder, where ``examples-state.npz`` lives.
        engine: :func:`local_engine` or the Ray engine (:mod:`onnxvis.analysis.examples.ray_engine`).
        fresh: ignore a saved state instead of continuing it.

    Raises:
        OnnxvisError: the saved state belongs to another model, preprocessing or layer choice.
    """
    path = out.root / STATE_FILE
    state = None
    if path.exists() and not fresh:
        state = ExamplesState.from_file(path)
        why = _same_run(state.meta, meta)
        if why is not None:
            raise OnnxvisError(
                f"{path} holds a run with {why}; continue it with the same settings, or start afresh", setting="fresh"
            )
    if state is None:
        state = ExamplesState(meta, [], np.zeros(0, bool), TopK(plan.keep))
    state.extend([str(p) for p in images])
    wanted = {str(p) for p in images}
    todo = [(i, p) for i, p in enumerate(state.catalog) if not state.seen[i] and p in wanted]
    target = out.path_for(Path(STATE_FILE).stem, ".npz")
    last_save = time.monotonic()
    if log is not None and len(todo) < len(wanted):
        log(f"continuing {path}: {len(wanted) - len(todo)} of {len(wanted)} images already scored")
    unreadable = 0
    with Progress(len(todo), "examples", enabled=None if progress else False, unit="image") as bar:  # tqdm shows images/s
        say = bar.write if bar.enabled else (log or (lambda message: None))
        try:
            for partial in engine(plan, todo):
                state.top.merge(partial.top)
                state.seen[np.asarray(partial.ids, np.int64)] = True
                for message in partial.unreadable:
                    unreadable += 1
                    if unreadable <= _MAX_NOTES:
                        say(f"skipped: {message}")
                bar.advance(steps=len(partial.ids))
                if time.monotonic() - last_save > _CHECKPOINT_SECONDS:
                    out.write_bytes(target, state.to_bytes())
                    last_save = time.monotonic()
        finally:  # an interrupted run keeps what it scored
            if todo:
                out.write_bytes(target, state.to_bytes())
    if not todo and not path.exists():
        out.write_bytes(target, state.to_bytes())
    if unreadable > _MAX_NOTES and log is not None:
        log(f"skipped {unreadable} files that are not images PIL can read ({unreadable - _MAX_NOTES} not listed above)")
    if int(state.seen.sum()) and not state.top.names:
        raise OnnxvisError("none of the files could be read as an image; give folders of photos")
    return state

