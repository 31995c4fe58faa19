"""What the ``serve`` page shows, for one model: numbers and PNG pictures, cached, safe to call from many threads.

The :class:`Explorer` holds one :class:`~onnxvis.engine.inspector.Inspector` (the model is opened once) and
answers the page's questions: the summary, the layers with weight statistics, a layer's kernel grid,
a photo's feature maps, its top-5 and its class activation map. It knows nothing of HTTP (that is
:mod:`onnxvis.serve.app`), so it is tested without a web server.

Photos are kept as files named by their SHA-256 inside one private temporary folder, removed by
:meth:`Explorer.close`; nothing the user sends names a file. Each upload goes through
:func:`onnxvis.image.preprocess.load_image` (decompression bombs, odd modes, truncated files) before it is
kept. Results are cached per (photo, layer, view) in a bounded LRU; concurrent requests for the same
result wait for one computation instead of repeating it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from onnxvis.analysis.cam.maths import overlay
from onnxvis.analysis.cam.runs import Cam, default_layer, places_for
from onnxvis.analysis.stats import weight_stats
from onnxvis.draw import grids
from onnxvis.draw.grids import AUTO, GridOptions
from onnxvis.draw.layers import kernel_pixels, split_pixels
from onnxvis.engine.classes import check_class_scores, top_k
from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.inspector import Inspector, Prepared
from onnxvis.errors import OnnxvisError
from onnxvis.image.preprocess import PRESETS, Preprocess, default_image_path, load_image
from onnxvis.model.layers import channels_first, require_main_graph
from onnxvis.write.png import encode_png

if TYPE_CHECKING:
    from PIL import Image

    from onnxvis.model.layers import ConvLayer

T = TypeVar("T")

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""The largest photo file the page may send."""
MAX_PHOTOS = 64
"""Photos kept (as files in the temporary folder); the least recently used goes first."""
CACHE_BYTES = 256 * 1024 * 1024
"""Memory for cached pictures and results; the least recently used go first."""
KERNEL_MAX_TILES = 8192
"""Tiles per kernel grid on the page (the report's cap): VGG16's 512x512 layers show their first 16 filters."""
SAMPLE = "sample"
"""The id of the sample photo (matplotlib's portrait of Grace Hopper)."""
COLORMAPS = ("grey", "diverging")
TOP = 5

_PHOTO_ID = re.compile(r"^(?:[0-9a-f]{64}|sample)$")


class NotFound(OnnxvisError):
    """The page asked for a photo, layer or picture that does not exist (any more)."""


class Unavailable(OnnxvisError):
    """A feature this page was built without (an Explorer given no class activation map function)."""


CamFunction = Callable[["Inspector", "Image.Image", "int | None"], "tuple[np.ndarray, int]"]
"""``cam(inspector, photo, target) -> (uint8 (H, W, 3) map drawn over the prepared photo, the class)``;
``target`` None means the predicted class. The plug-in point for onnxvis's class activation maps."""

# names a flag: the page speaks to the person who started `onnxvis serve`, and only that flag can fix it
LABELS_GUESS_HINT = "start onnxvis serve with --labels FILE if these are not ImageNet's classes"
"""What the page says after guessed class names."""

PAGE_CAM_METHOD = "grad"
"""The page's CAM method: Grad-CAM, one forward and one short backward pass; AblationCAM
(:data:`PAGE_CAM_FALLBACK`) where the model cannot be differentiated (control flow, an op without a rule)."""
PAGE_CAM_FALLBACK = "ablation"


class LRU:
    """A thread-safe LRU of computed values bounded by their total size in bytes.

    ``get(key, compute)`` computes a missing value once: other threads asking for the same key wait
    for that computation (its error included) instead of starting their own.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            future = self._pending.get(key)
            owner = future is None
            if owner:
                self.misses += 1
                future = self._pending[key] = Future()
        assert future is not None
        if not owner:
            return future.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            future.set_exception(exc)
            raise
        size = _size_of(value)
        with self._lock:
            del self._pending[key]
            if size <= self.max_bytes:
                self._items[key] = (value, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, old) = self._items.popitem(last=False)
                    self._bytes -= old
        future.set_result(value)
        return value

    def __len__(self) -> int:
        return len(self._items)


def _size_of(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(_size_of(v) for v in value) + 64
    if hasattr(value, "getbands"):  # a decoded PIL image
        return int(value.width * value.height * len(value.getbands()))
    return 1024  # small JSON-like results


def _number(value: float) -> float | None:
    """A float for JSON, which has no NaN or infinity (a broken model's weights or scores can hold them)."""
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Photo:
    id: str
    path: Path
    width: int
    height: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "width": self.width, "height": self.height}


def photo_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def page_cam(inspector: Inspector, image: "Image.Image", target: int | None) -> tuple[np.ndarray, int]:
    """The page's class activation map (:data:`CamFunction`): :data:`PAGE_CAM_METHOD` at the default
    layer (:func:`onnxvis.analysis.cam.runs.default_layer`), else :data:`PAGE_CAM_FALLBACK` where the model
    cannot be differentiated, drawn over the photo as ``onnxvis cam`` draws it."""
    from onnxvis.analysis.cam.gradcams import gradient_cams

    output = inspector.class_output()
    places = places_for(inspector, [default_layer(inspector, output)])
    try:
        result = next(iter(gradient_cams(inspector, [image], places, PAGE_CAM_METHOD, target, output)))
    except OnnxvisError:  # AblationCAM says a mistake of the user's (a target out of range) the same way
        result = next(iter(Cam(inspector, places, target, output, method=PAGE_CAM_FALLBACK)([image])))
    return overlay(result.rgb, result.cam), int(result.target)


class Explorer:
    """The page's questions about one model, answered from one Inspector.

    Args:
        inspector: the opened model; the Explorer closes it in :meth:`close`.
        grid: make_grid's options for every picture.
        cam: the class activation map function (see :data:`CamFunction`), :func:`page_cam` by default;
            None for none (the page says CAM is not available).
        cache_bytes, max_photos, max_upload: the bounds above.
    """

    def __init__(
        self,
        inspector: Inspector,
        grid: GridOptions | None = None,
        cam: CamFunction | None = page_cam,
        cache_bytes: int = CACHE_BYTES,
        max_photos: int = MAX_PHOTOS,
        max_upload: int = MAX_UPLOAD_BYTES,
    ):
        self.inspector = inspector
        self.grid = grid or GridOptions(nrow=AUTO)  # a wide layer's maps near-square, not a strip
        self.cam = cam
        self.max_photos = max_photos
        self.max_upload = max_upload
        # onnxruntime's run is thread-safe, and each run already uses every core: one lock around the
        # Inspector's runs and weight reads keeps them from competing; pictures are drawn and encoded outside it.
        self._engine = threading.Lock()
        self._photos_lock = threading.Lock()
        self._photos: OrderedDict[str, Photo] = OrderedDict()
        self._cache = LRU(cache_bytes)
        self._tmp = tempfile.TemporaryDirectory(prefix="onnxvis-serve-")
        self.folder = Path(self._tmp.name)
        self._preparers: dict[str, Inspector] = {}
        self._sample: Photo | None = None

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove the temporary folder and close the Inspector."""
        self._tmp.cleanup()
        for preparer in self._preparers.values():
            preparer.close()
        self.inspector.close()

    def __enter__(self) -> Explorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the model --------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The model's summary rows, the preprocessing presets the page offers, and what is available."""
        def compute() -> dict[str, Any]:
            with self._engine:
                rows = self.inspector.summary()
                names = self.inspector.class_names
                labels = names.names
                try:
                    preprocessing = self.inspector.preprocessing.preprocess.describe()
                    no_photos = None
                except OnnxvisError as exc:  # e.g. a 1-D conv model: its kernels still show
                    preprocessing, no_photos = "", str(exc)
                try:
                    self.inspector.score_output()
                    no_classes = no_photos
                except OnnxvisError as exc:  # a detector, an embedding: the page shows no top-5
                    no_classes = str(exc)
            return {
                "photos": no_photos is None,
                "no_photos": no_photos,
                "predictions": no_classes is None,
                "no_predictions": no_classes,
                "rows": [[str(k), str(v)] for k, v in rows],
                "preprocessing": preprocessing,
                "presets": sorted(PRESETS),
                "labels": len(labels) if labels else 0,
                "labels_origin": names.describe() if labels else None,
                "labels_guessed": names.guessed,
                "labels_note": f"class names: {names.describe()}; {LABELS_GUESS_HINT}" if names.guessed else None,
                "cam": self.cam is not None,
                "max_upload": self.max_upload,
            }

        return self._cache.get(("summary",), compute)

    def layer(self, index: int) -> ConvLayer:
        layers = self.inspector.layers
        if not 0 <= index < len(layers):
            raise NotFound(f"no layer {index}; the model has {len(layers)} conv layers (0 to {len(layers) - 1})")
        return layers[index]

    # -- feature visualisation ----------------------------------------------------------------

    def features_place(self, index: int, channel: int) -> Any:
        """The place of layer ``index`` for optimising ``channel``, checked before a stream starts."""
        layer = self.layer(index)
        require_main_graph([layer], "feature visualisation needs a layer of the main graph")
        count = layer.out_channels
        if channel < 0 or (count is not None and channel >= count):
            raise OnnxvisError(f"channel {channel} is out of range: layer {index} has {count} channels (0 to {(count or 1) - 1})")
        return places_for(self.inspector, [layer])[0]

    def features(
        self, index: int, channel: int, steps: int, cancelled: Callable[[], bool], emit: Callable[[dict[str, Any]], None],
        every: int = 16,
    ) -> None:
        """Optimise ``channel`` of layer ``index`` (Lucent's recipe), calling ``emit`` with a frame every
        ``every`` steps (``{"step", "steps", "value", "png"}``, the PNG as bytes) until done or ``cancelled()``.

        Not under the engine lock: an optimisation takes minutes, and onnxruntime's run is thread-safe.
        """
        from onnxvis.analysis.features.run import Recipe, optimise

        place = self.features_place(index, channel)

        def preview(done: int, images: np.ndarray, values: np.ndarray) -> None:
            pixels = np.clip(np.floor(images[0] * np.float32(255) + np.float32(0.5)), 0, 255).astype(np.uint8)
            emit({"step": done, "steps": steps, "value": _number(float(values[0])), "png": encode_png(pixels)})

        optimise(self.inspector, place, [channel], recipe=Recipe(steps=steps), cancelled=cancelled, on_preview=preview,
                 preview_every=every)

    def _weight(self, index: int) -> np.ndarray:
        layer = self.layer(index)
        with self._engine:
            return self.inspector.kernels(layer)

    def layers(self) -> list[dict[str, Any]]:
        """One dict per conv layer: index, name, op, weight shape, stride, and weight statistics
        (min, max, mean, std, near-dead filters), or why its weight cannot be read."""
        def compute() -> list[dict[str, Any]]:
            rows = []
            for layer in self.inspector.layers:
                row: dict[str, Any] = {
                    "index": layer.index,
                    "name": layer.name,
                    "op": layer.op_type,
                    "shape": list(layer.weight_shape) if layer.weight_shape else None,
                    "strides": list(layer.strides) if layer.strides else None,
                    "group": layer.group,
                    "maps": layer.in_main_graph,
                }
                try:
                    stats = weight_stats(self._weight(layer.index))
                except OnnxvisError as exc:
                    row["problem"] = str(exc)
                else:
                    row["stats"] = {
                        "min": _number(stats.min), "max": _number(stats.max), "mean": _number(stats.mean), "std": _number(stats.std),
                        "near_dead": stats.near_dead, "filters": int(stats.norms.size),
                    }
                rows.append(row)
            return rows

        return self._cache.get(("layers",), compute)

    def kernels_png(self, index: int, colormap: str = "grey", split: int | None = None) -> bytes:
        """A layer's kernel grid as PNG bytes; with ``split`` the grid of output channel ``split``'s
        input-channel slices (the tutorial's view)."""
        if colormap not in COLORMAPS:
            raise OnnxvisError(f"unknown colour map {colormap!r}; choose {' or '.join(COLORMAPS)}")

        def compute() -> bytes:
            weight = self._weight(index)
            if split is None:
                pixels, _ = kernel_pixels(weight, self.grid, KERNEL_MAX_TILES, colormap)
                return encode_png(pixels)
            if not 0 <= split < weight.shape[0]:
                raise NotFound(f"layer {index} has {weight.shape[0]} output channels (0 to {weight.shape[0] - 1}); no channel {split}")
            [(_, pixels)] = list(split_pixels(weight[split : split + 1], self.grid, colormap))
            return encode_png(pixels)

        return self._cache.get(("kernels", index, colormap, split), compute)

    # -- photos -----------------------------------------------------------------------------------

    def add_photo(self, data: bytes) -> Photo:
        """Keep an uploaded photo once it passed the image guards; returns its id and size.

        Raises:
            OnnxvisError: too large, empty, or not an image PIL can read safely.
        """
        if len(data) > self.max_upload:
            raise OnnxvisError(
                f"the photo is {len(data) / 2**20:.1f} MB, more than the limit of {self.max_upload / 2**20:g} MB; give a smaller one"
            )
        if not data:
            raise OnnxvisError("the upload is empty; choose a photo file")
        ident = photo_id(data)
        with self._photos_lock:
            known = self._photos.get(ident)
            if known is not None:
                self._photos.move_to_end(ident)
                return known
        # A private name while it is checked: clients sending the same photo at once never see each other's half-written file.
        handle, name = tempfile.mkstemp(suffix=".checking", dir=self.folder)
        checking = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            image = load_image(checking)
        except OnnxvisError as exc:
            checking.unlink(missing_ok=True)
            # the message names our temporary file: speak of "the upload" instead
            raise OnnxvisError(str(exc).replace(str(checking), "the upload")) from None
        except BaseException:
            checking.unlink(missing_ok=True)
            raise
        photo = Photo(ident, self.folder / f"{ident}.upload", image.width, image.height)
        with self._photos_lock:
            known = self._photos.get(ident)
            if known is not None:  # another client sent the same photo meanwhile
                checking.unlink(missing_ok=True)
                self._photos.move_to_end(ident)
                return known
            os.replace(checking, photo.path)
            self._photos[ident] = photo
            while len(self._photos) > self.max_photos:
                _, old = self._photos.popitem(last=False)
                old.path.unlink(missing_ok=True)  # always ours: the sample photo is not in this list
        return photo

    def sample_photo(self) -> Photo:
        """The sample photo (matplotlib's portrait), read where matplotlib keeps it, never copied or removed."""
        if self._sample is None:
            path = default_image_path()
            image = load_image(path)
            self._sample = Photo(SAMPLE, path, image.width, image.height)
        return self._sample

    def photo(self, ident: str) -> Photo:
        if not _PHOTO_ID.match(ident):
            raise NotFound("unknown photo id; upload the photo again")
        if ident == SAMPLE:
            return self.sample_photo()
        with self._photos_lock:
            photo = self._photos.get(ident)
            if photo is not None:
                self._photos.move_to_end(ident)
        if photo is None:
            raise NotFound("the photo is no longer kept on the server; upload it again")
        return photo

    def preprocess(self, preset: str | None) -> Preprocess | None:
        """The page's preprocessing choice: None (the model's own) or a preset name."""
        if preset in (None, "", "model"):
            return None
        if preset not in PRESETS:
            raise OnnxvisError(f"unknown preprocessing preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
        return PRESETS[preset]

    def _image(self, photo: Photo) -> Image.Image:
        return self._cache.get(("image", photo.id), lambda: load_image(photo.path))

    def _preparer(self, preset: str | None) -> Inspector:
        """The Inspector whose preprocessing the page chose: the main one, or one per preset that
        shares the opened model, used to prepare photos (and for CAM, which prepares its own)."""
        if preset in (None, "", "model"):
            return self.inspector
        self.preprocess(preset)  # checks the name
        with self._photos_lock:
            found = self._preparers.get(preset)
            if found is None:
                found = self._preparers[preset] = Inspector(
                    self.inspector.model, InspectorConfig(preset=preset, layout=self.inspector.image_input.layout)
                )
                names = self.inspector.class_names
                if names.source == "file" and names.names:  # the user's names, for a CAM target by name
                    found.use_labels(names.names, names.origin)
        return found

    def prepared(self, ident: str, preset: str | None = None) -> Prepared:
        """A photo turned into the model's input with the chosen preprocessing (cached)."""
        photo = self.photo(ident)
        preparer = self._preparer(preset)
        return self._cache.get(("prepared", photo.id, preset or ""), lambda: preparer.prepare(self._image(photo)))

    def _run(self, prepared: Prepared, targets: list[str]) -> dict[str, np.ndarray]:
        """The targets for one prepared photo, first row of the batch, on the one Inspector."""
        feeds = {self.inspector.image_input.name: prepared.array}
        with self._engine:  # one onnxruntime run at a time: each already uses every core
            values = self.inspector.run_arrays(feeds, targets)
        return {name: np.asarray(value)[0] for name, value in values.items()}

    def fmaps_png(self, ident: str, index: int, preset: str | None = None) -> bytes:
        """The feature-map grid of layer ``index`` for a photo, as PNG bytes."""
        photo = self.photo(ident)
        layer = self.layer(index)
        require_main_graph([layer], "its feature maps cannot be shown, its kernels can")

        def compute() -> bytes:
            maps = channels_first(layer, self._run(self.prepared(photo.id, preset), [layer.output_name])[layer.output_name])
            g = self.grid
            picture = grids.fmap_grid(maps, g.nrow, g.padding, g.normalize, g.scale_each, g.pad_value)
            return encode_png(grids.to_uint8(picture))

        return self._cache.get(("fmaps", photo.id, index, preset or ""), compute)

    def predictions(self, ident: str, preset: str | None = None) -> dict[str, Any]:
        """The top-5 classes of a photo: index, label (None without labels) and score."""
        photo = self.photo(ident)

        def compute() -> dict[str, Any]:
            name = self.inspector.score_output()
            scores = self._run(self.prepared(photo.id, preset), [name])[name]
            check_class_scores(scores, name)
            self.inspector.check_labels(scores)
            top = top_k(scores, self.inspector.labels, TOP)
            return {
                "photo": photo.id,
                "output": name,
                "top": [{"index": i, "label": label, "score": _number(score)} for i, label, score in top],
            }

        return self._cache.get(("predictions", photo.id, preset or ""), compute)

    def cam_png(self, ident: str, preset: str | None = None, target: int | None = None) -> tuple[bytes, int]:
        """The class activation map over the photo, as PNG bytes, and the class it is for.

        Raises:
            Unavailable: the Explorer was given no class activation map function.
        """
        cam = self.cam
        if cam is None:
            raise Unavailable("class activation maps are not available on this page")
        photo = self.photo(ident)
        if target is not None and target < 0:
            raise OnnxvisError(f"the class must be 0 or more, got {target}")

        inspector = self._preparer(preset)

        def compute() -> tuple[bytes, int]:
            image = self._image(photo)
            # Not under the engine lock: a map takes many runs, and others' pictures may interleave
            # (the Inspector keeps its sessions under its own lock; onnxruntime's run is thread-safe).
            pixels, klass = cam(inspector, image, target)
            return encode_png(pixels), int(klass)

        return self._cache.get(("cam", photo.id, preset or "", target), compute)

    def stats(self) -> dict[str, int]:
        """Cache counters, for the benchmark."""
        return {"hits": self._cache.hits, "misses": self._cache.misses, "items": len(self._cache)}
