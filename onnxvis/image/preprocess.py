"""Turn an image file into the float32 array a model wants.

The steps and their order copy torchvision's usual evaluation pipeline on a PIL image, so that a
model trained with ``Compose([Resize(...), CenterCrop(...), ToTensor(), Normalize(...)])`` sees the
same numbers here, bit for bit, without torch:

1. :func:`load_image`: decode the file, apply its EXIF orientation, take the first frame, and
   reduce exotic modes (CMYK, 16-bit, alpha, palette, ...) to ``"RGB"`` or ``"L"``.
2. :func:`preprocess`: convert to the model's colour (``"RGB"``, ``"BGR"`` or grey ``"L"``),
   resize (PIL bilinear, which is antialiased, exactly as torchvision does for PIL images),
   centre-crop (padding with 0 when the crop is larger, like torchvision), scale to 0..1 (or keep
   0..255) and normalise per channel in float32.
3. :func:`to_layout`: add the batch axis in the model's layout and dtype.

A :class:`Preprocess` describes steps 2 and 3; :data:`PRESETS` holds the common ones and
:func:`from_metadata` reads the one our exporter stores in the ONNX file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.model.metadata import PREPROCESS_KEY

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "COLORS",
    "DEFAULT_MAX_PIXELS",
    "LAYOUTS",
    "METADATA_KEY",
    "PRESETS",
    "Preprocess",
    "default_image_path",
    "from_metadata",
    "array_picture",
    "is_array_file",
    "load_array",
    "load_image",
    "load_source",
    "preprocess",
    "preset",
    "to_layout",
]

METADATA_KEY = PREPROCESS_KEY
"""The ONNX ``metadata_props`` key under which our exporter stores the preprocessing as JSON."""

COLORS = ("RGB", "BGR", "L")
"""Channel orders a model can want: ``"BGR"`` is caffe's order, ``"L"`` is one grey channel."""

LAYOUTS = ("NCHW", "NHWC")

DEFAULT_MAX_PIXELS = 100_000_000
"""Images claiming more pixels than this are refused before decoding (decompression bombs)."""

# PIL is imported where a photo is decoded or resized, not with this module: the commands that draw
# only weights never load it.


# --------------------------------------------------------------------------------------------
# The description of the preprocessing
# --------------------------------------------------------------------------------------------


def _positive_int(value: Any, what: str) -> int:
    """``value`` as an int >= 1, or an OnnxvisError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise OnnxvisError(f"{what} must be whole numbers of pixels, got {value!r}; give e.g. 224")
    if value < 1:
        raise OnnxvisError(f"{what} must be at least 1 pixel, got {value}; give e.g. 224")
    return int(value)


def _int_tuple(value: Any, what: str, lengths: tuple[int, ...]) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ints) as a tuple of positive ints of an allowed length."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or len(value) not in lengths:
        shapes = " or ".join({1: "[N]", 2: "[H, W]"}[n] for n in lengths)
        raise OnnxvisError(f"{what} must be {shapes}, got {value!r}; give e.g. [224, 224]")
    return tuple(_positive_int(v, what) for v in value)


def _float_tuple(value: Any, what: str) -> tuple[float, ...]:
    """``value`` (a number or a sequence of numbers) as a non-empty tuple of finite floats."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value:
        raise OnnxvisError(f"{what} must be a list of numbers, one per channel, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise OnnxvisError(f"{what} must be a list of numbers, one per channel, got {value!r}")
        if not math.isfinite(float(v)):
            raise OnnxvisError(f"{what} must hold finite numbers, got {value!r}")
        out.append(float(v))
    return tuple(out)


def _fmt(x: float) -> str:
    """A float in its shortest readable form: 1 -> '1', 0.485 -> '0.485'."""
    return f"{x:g}" if abs(x) >= 1e-4 or x == 0 else repr(x)


@dataclass(frozen=True)
class Preprocess:
    """How to turn a decoded image into a model's input.

    Fields are validated and normalised on construction (lists become tuples, an int ``resize``
    becomes ``(N,)``); a bad value raises :class:`OnnxvisError`.

    Attributes:
        resize: ``None`` for no resizing; ``(N,)`` to make the shorter side N pixels keeping the
            aspect ratio (torchvision ``Resize(N)``); ``(H, W)`` for exactly that size.
        crop: ``None`` or a centre crop ``(H, W)`` after resizing, torchvision ``CenterCrop``
            semantics (a crop larger than the image pads with 0).
        mean: per-channel mean, subtracted in the value scale after ``scale`` and in the model's
            channel order (so B, G, R for ``"BGR"``). One value applies to every channel.
        std: per-channel divisor, like ``mean``; must not be 0.
        color: ``"RGB"``, ``"BGR"`` (caffe) or ``"L"`` (one grey channel).
        scale: the value of white before normalising: 1 gives 0..1 like ``ToTensor``, 255 keeps
            0..255; other positive values give 0..scale.
        name: a preset name or where the settings came from, e.g. ``"metadata"``.
        max_side: ``None``, or keep the whole image, scaled down (never up) so that its longer side is
            at most this many pixels, keeping the aspect ratio: the default for a model whose input
            height and width are free. Only without ``resize`` and ``crop``.
        multiple: round the final height and width to a multiple of this (the size the graph needs;
            see :func:`onnxvis.image.inputs.size_multiple`), resizing once more; 1: no rounding.
    """

    resize: tuple[int, ...] | None = None
    crop: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    color: str = "RGB"
    scale: float = 1.0
    name: str = "custom"
    max_side: int | None = None
    multiple: int = 1

    def __post_init__(self) -> None:
        resize = None if self.resize is None else _int_tuple(self.resize, "resize", (1, 2))
        crop = None if self.crop is None else _int_tuple(self.crop, "crop", (1, 2))
        if crop is not None and len(crop) == 1:
            crop = (crop[0], crop[0])
        if not isinstance(self.color, str) or self.color.upper() not in COLORS:
            raise OnnxvisError(f"color must be one of {', '.join(COLORS)}, got {self.color!r}")
        color = self.color.upper()
        mean = _float_tuple(self.mean, "mean")
        std = _float_tuple(self.std, "std")
        if any(s == 0 for s in std):
            raise OnnxvisError(f"std must not contain 0, got {list(std)}; use 1 for 'no division'")
        channels = 1 if color == "L" else 3
        for what, values in (("mean", mean), ("std", std)):
            if len(values) not in (1, channels) and not (channels == 1 and len(set(values)) == 1):
                raise OnnxvisError(
                    f"{what} has {len(values)} values but color {color} has {channels} channel(s); "
                    f"give 1 or {channels} values"
                )
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float, np.integer, np.floating)):
            raise OnnxvisError(f"scale must be a number (1 for 0..1, 255 for 0..255), got {self.scale!r}")
        scale = float(self.scale)
        if not (math.isfinite(scale) and scale > 0):
            raise OnnxvisError(f"scale must be a positive number (1 for 0..1, 255 for 0..255), got {self.scale!r}")
        if not isinstance(self.name, str):
            raise OnnxvisError(f"name must be a string, got {self.name!r}")
        max_side = None if self.max_side is None else _positive_int(self.max_side, "max_side")
        if max_side is not None and (resize is not None or crop is not None):
            raise OnnxvisError("max_side (keep the whole image, longer side at most N) goes without resize and crop; give one or the other")
        multiple = _positive_int(self.multiple, "multiple")
        for field, value in (("resize", resize), ("crop", crop), ("color", color), ("mean", mean),
                             ("std", std), ("scale", scale), ("max_side", max_side), ("multiple", multiple)):
            object.__setattr__(self, field, value)

    @property
    def channels(self) -> int:
        """Number of channels of the output: 1 for ``"L"``, else 3."""
        return 1 if self.color == "L" else 3

    def describe(self) -> str:
        """One human-readable line, e.g. ``imagenet: resize 256, crop 224x224, RGB, 0..1, mean [...], std [...]``."""
        parts = []
        if self.max_side is not None:
            parts.append(f"the whole image, longer side at most {self.max_side}")
        elif self.resize is None:
            parts.append("no resize")
        elif len(self.resize) == 1:
            parts.append(f"resize {self.resize[0]}")
        else:
            parts.append(f"resize {self.resize[0]}x{self.resize[1]}")
        if self.crop is not None:
            parts.append(f"crop {self.crop[0]}x{self.crop[1]}")
        if self.multiple > 1:
            parts.append(f"height and width rounded to a multiple of {self.multiple}")
        parts.append(self.color)
        parts.append(f"0..{_fmt(self.scale)}")
        parts.append("mean [" + ", ".join(_fmt(m) for m in self.mean) + "]")
        parts.append("std [" + ", ".join(_fmt(s) for s in self.std) + "]")
        return f"{self.name}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of the ``onnxvis.preprocess`` schema, plus ``name``."""
        scale: float | int = int(self.scale) if self.scale.is_integer() else self.scale
        data: dict[str, Any] = {
            "resize": None if self.resize is None else list(self.resize),
            "crop": None if self.crop is None else list(self.crop),
            "mean": list(self.mean),
            "std": list(self.std),
            "color": self.color,
            "scale": scale,
            "name": self.name,
        }
        if self.max_side is not None:  # only when set: the schema that onnxvis export writes stays as it was
            data["max_side"] = self.max_side
        if self.multiple > 1:
            data["multiple"] = self.multiple
        return data

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`; :meth:`from_json` reads it back to an equal object."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, name: str | None = None) -> "Preprocess":
        """Build from a dict of the JSON schema; missing keys keep their defaults, unknown keys are ignored.

        Args:
            data: the decoded JSON object.
            name: overrides ``data["name"]``; when both are absent the name is ``"custom"``.

        Raises:
            OnnxvisError: ``data`` is not a dict or a value is malformed.
        """
        if not isinstance(data, dict):
            raise OnnxvisError(f"preprocessing settings must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if name is not None:
            kwargs["name"] = name
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str, name: str | None = None) -> "Preprocess":
        """Parse JSON text of the ``onnxvis.preprocess`` schema (see :meth:`from_dict`).

        Raises:
            OnnxvisError: the text is not JSON or its values are malformed.
        """
        if not isinstance(text, (str, bytes, bytearray)):
            raise OnnxvisError(f"preprocessing settings must be JSON text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise OnnxvisError(f"preprocessing settings are not valid JSON ({exc}); fix or remove them") from None
        return cls.from_dict(data, name=name)

    def replace(self, **changes: Any) -> "Preprocess":
        """A copy with some fields changed (validated again), like :func:`dataclasses.replace`."""
        return dataclasses.replace(self, **changes)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS: dict[str, Preprocess] = {
    # torchvision's ImageNet evaluation transform.
    "imagenet": Preprocess(resize=(256,), crop=(224, 224), mean=_IMAGENET_MEAN, std=_IMAGENET_STD, name="imagenet"),
    # Caffe's ImageNet models: 256x256 warped images, centre 224 crop, BGR 0..255 minus the BGR mean.
    "caffe": Preprocess(resize=(256, 256), crop=(224, 224), mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0),
                        color="BGR", scale=255.0, name="caffe"),
    # TensorFlow/Keras style [-1, 1]: (x/255 - 0.5) / 0.5. No size: the caller fits the model's input.
    "tf": Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), name="tf"),
    # Plain 0..1 and plain 0..255, no size.
    "unit": Preprocess(name="unit"),
    "raw": Preprocess(scale=255.0, name="raw"),
    # The CIFAR-10 transfer-learning tutorial: upscale to exactly 224x224, CIFAR-10 statistics.
    "cifar10": Preprocess(resize=(224, 224), mean=(0.49139968, 0.48215827, 0.44653124),
                          std=(0.24703233, 0.24348505, 0.26158768), name="cifar10"),
}
"""Named preprocessings. ``tf``, ``unit`` and ``raw`` have no size: fill it in with ``replace(resize=(H, W))``."""


def preset(name: str) -> Preprocess:
    """The preset called ``name`` (case-insensitive).

    Raises:
        OnnxvisError: no preset has that name; the message lists the valid ones.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in PRESETS:
        raise OnnxvisError(f"unknown preprocessing preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}", setting="preset")
    return PRESETS[key]


def from_metadata(metadata: dict[str, str]) -> Preprocess | None:
    """The preprocessing stored by our exporter in ONNX metadata under ``onnxvis.preprocess``.

    Args:
        metadata: the model's ``metadata_props`` as a dict.

    Returns:
        The settings, named ``"metadata"``, or ``None`` when the key is absent.

    Raises:
        OnnxvisError: the stored value is not valid JSON of the expected schema.
    """
    text = metadata.get(METADATA_KEY)
    if text is None:
        return None
    try:
        return Preprocess.from_json(text, name="metadata")
    except OnnxvisError as exc:
        raise OnnxvisError(
            f"the model's {METADATA_KEY} metadata is malformed: {exc}; choose a preset instead", setting="preset"
        ) from None


# --------------------------------------------------------------------------------------------
# Loading images
# --------------------------------------------------------------------------------------------


def default_image_path() -> Path:
    """matplotlib's sample photo ``grace_hopper.jpg``, found without importing matplotlib.

    Raises:
        OnnxvisError: matplotlib or its sample data is not installed.
    """
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise OnnxvisError("no default image: matplotlib is not installed; pass an image file")
    for location in spec.submodule_search_locations:
        path = Path(location) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if path.is_file():
            return path
    raise OnnxvisError("no default image: matplotlib's sample photo grace_hopper.jpg is missing; pass an image file")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rescale_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``lo..hi`` linearly to 0..255 with rounding, clipping what lies outside."""
    values = np.nan_to_num(values.astype(np.float64), nan=lo, posinf=hi, neginf=lo)
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip(np.rint((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _to_rgb_or_l(img: Image.Image) -> Image.Image:
    """Reduce any PIL mode to ``"RGB"`` or ``"L"`` (grey stays grey); may return ``img`` itself.

    Alpha is dropped, not composited, like torchvision's ``.convert("RGB")``. 16-bit grey maps
    0..65535 onto 0..255; 32-bit integer grey does the same when its values fit 0..65535 and is
    otherwise stretched min..max; float grey is read as 0..1 if it fits, else 0..255 if it fits,
    else stretched min..max.
    """
    from PIL import Image

    mode = img.mode
    lo: float
    hi: float
    vmin: float
    vmax: float
    if mode in ("RGB", "L"):
        return img
    if mode in ("1", "LA", "La"):
        return img.convert("L")
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(img)
        if mode.startswith("I;16"):
            lo, hi = 0, 65535
        else:
            vmin, vmax = (int(values.min()), int(values.max())) if values.size else (0, 0)
            lo, hi = (0, 65535) if vmin >= 0 and vmax <= 65535 else (vmin, vmax)
        if (lo, hi) == (0, 65535):  # exact rounding of v * 255 / 65535 == v / 257
            out = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        else:
            out = _rescale_to_uint8(values, lo, hi)
        return Image.fromarray(out, "L")
    if mode == "F":
        values = np.asarray(img, dtype=np.float32)
        finite = values[np.isfinite(values)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if vmin >= 0 and vmax <= 1:
            lo, hi = 0.0, 1.0
        elif vmin >= 0 and vmax <= 255:
            lo, hi = 0.0, 255.0
        else:
            lo, hi = vmin, vmax
        return Image.fromarray(_rescale_to_uint8(values, lo, hi), "L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return img.convert("RGBA").convert("RGB") if has_alpha else img.convert("RGB")
    return img.convert("RGB")  # RGBA, RGBa, RGBX, CMYK, YCbCr, HSV, LAB, ...


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})
"""File suffixes taken as images when a folder is walked (any case)."""

ARRAY_SUFFIX = ".npy"
"""A numpy array saved with ``np.save``: fed to the image input as it is (spectrograms, audio features, ...)."""

MAX_ARRAY_BYTES = 1 << 30
"""An array file larger than this is refused before it is read."""


def is_array_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a ``.npy`` array (any case), which is fed as it is instead of being decoded as a photo."""
    return Path(path).suffix.lower() == ARRAY_SUFFIX


def load_array(path: str | os.PathLike) -> np.ndarray:
    """A numeric array from a ``.npy`` file (no pickles: loading one runs code from the file).

    Raises:
        OnnxvisError: the file is missing, too large, not a .npy array, or not numeric.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise OnnxvisError(f"array file not found: {path}; check the path")
    if path.stat().st_size > MAX_ARRAY_BYTES:
        raise OnnxvisError(f"{path} is larger than {MAX_ARRAY_BYTES >> 30} GiB; give a smaller array")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise OnnxvisError(f"{path} cannot be read as a .npy array ({_one_line(exc)}); save it with numpy.save") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise OnnxvisError(f"{path} holds {getattr(array, 'dtype', type(array).__name__)} values; give an array of numbers")
    return array


def load_source(path: str | os.PathLike) -> "Image.Image | np.ndarray":
    """What a file gives the model: a ``.npy`` array as it is (:func:`load_array`), else the decoded photo (:func:`load_image`)."""
    return load_array(path) if is_array_file(path) else load_image(path)


def array_picture(array: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """An array fed as it is, shown as a picture: uint8 (H, W, 3).

    The first row of the batch; its first three channels as R, G, B when it has three or more, else its
    first channel in grey; min-max scaled over the channels shown (a constant array is black).
    """
    x = np.asarray(array, dtype=np.float64)
    while x.ndim > 3:
        x = x[0]
    if x.ndim == 2:
        x = x[None] if layout.upper() == "NCHW" else x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"expected an array of rank 3 or 4, got shape {np.shape(array)}")
    hwc = x.transpose(1, 2, 0) if layout.upper() == "NCHW" else x
    shown = hwc[:, :, :3] if hwc.shape[2] >= 3 else np.repeat(hwc[:, :, :1], 3, axis=2)
    finite = shown[np.isfinite(shown)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return np.ascontiguousarray(_rescale_to_uint8(shown, lo, hi))


def image_files(paths: "list[str | Path] | tuple[str | Path, ...]") -> list[Path]:
    """The images named by ``paths``: a file as it is, a folder walked for image files (and ``.npy`` arrays,
    fed as they are) in sorted order.

    Hidden files and folders (a leading dot) are skipped in a walk; symbolic links to folders are not followed.

    Raises:
        OnnxvisError: a path does not exist, or a folder holds no image file.
    """
    import os

    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            before = len(found)
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(
                    Path(folder) / name for name in sorted(files)
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES | {ARRAY_SUFFIX}
                )
            if len(found) == before:
                raise OnnxvisError(
                    f"folder {path} holds no image file ({', '.join(sorted(IMAGE_SUFFIXES))}) and no {ARRAY_SUFFIX} array; "
                    "give another folder or image files"
                )
        elif path.exists():
            found.append(path)
        else:
            raise OnnxvisError(f"image file not found: {path}; check the path")
    return found


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image file fully into an ``"RGB"`` or ``"L"`` PIL image.

    The EXIF orientation is applied (a broken EXIF block is ignored), multi-frame files give their
    first frame, and other modes are reduced as described in :func:`_to_rgb_or_l`. Grey files stay
    ``"L"``; :func:`preprocess` converts to what the model wants.

    Args:
        path: the image file.
        max_pixels: refuse images claiming more pixels than this, before decoding them. PIL's own
            limit (``Image.MAX_IMAGE_PIXELS``, ~179 megapixels for an outright refusal) still applies.

    Returns:
        A fully loaded image, independent of the file.

    Raises:
        OnnxvisError: the path is missing or a directory, the file is not a readable image, it is
            truncated or corrupt, or it is too large.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.exists():
        raise OnnxvisError(f"image file not found: {path}; check the path")
    if path.is_dir():
        raise OnnxvisError(f"{path} is a directory; give the path of an image file")
    limit = f"{max_pixels / 1e6:g} megapixels"
    with warnings.catch_warnings():
        # We check the size ourselves against max_pixels; PIL's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except UnidentifiedImageError:
            raise OnnxvisError(f"{path} is not an image file PIL can read; give a PNG, JPEG, ... photo") from None
        except Image.DecompressionBombError:
            raise OnnxvisError(
                f"{path} claims too many pixels to decode safely (over PIL's limit); give a smaller image"
            ) from None
        except OSError as exc:
            raise OnnxvisError(f"cannot open image {path} ({_one_line(exc)}); check the file") from None
        except Exception as exc:  # a damaged header: PIL plugins raise ValueError, SyntaxError, struct.error, ...
            raise OnnxvisError(f"{path} is not an image file PIL can read ({_one_line(exc)}); give a PNG, JPEG, ... photo") from None
    with img:
        width, height = img.size
        if width < 1 or height < 1:
            raise OnnxvisError(f"{path} is an empty image ({width}x{height}); give a real image")
        if width * height > max_pixels:
            raise OnnxvisError(
                f"{path} claims {width}x{height} pixels, more than the limit of {limit}; "
                "give a smaller image"
            )
        try:
            img.load()  # first frame; forces a full decode so a truncated file fails here
        except Image.DecompressionBombError:
            raise OnnxvisError(f"{path} claims too many pixels to decode safely; give a smaller image") from None
        except Exception as exc:  # PIL decoders raise OSError, SyntaxError, ValueError, EOFError, ...
            raise OnnxvisError(f"{path} is truncated or corrupt ({_one_line(exc)}); give an intact image") from None
        try:
            frame = ImageOps.exif_transpose(img)
        except Exception:  # a malformed EXIF block: keep the pixels as stored
            frame = img.copy()
        try:
            out = _to_rgb_or_l(frame)
        except Exception as exc:
            raise OnnxvisError(
                f"cannot convert {path} (mode {frame.mode}) to RGB ({_one_line(exc)}); save it as an RGB PNG or JPEG"
            ) from None
    return out if out is not img else img.copy()


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def resized_size(width: int, height: int, resize: tuple[int, ...]) -> tuple[int, int]:
    """The ``(width, height)`` that torchvision's ``Resize(resize)`` gives an image of this size.

    ``(N,)``: the shorter side becomes N and the longer ``int(N * long / short)``
    (torchvision's ``_compute_resized_output_size``); ``(H, W)``: exactly that.
    """
    if len(resize) == 2:
        return resize[1], resize[0]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize[0], int(resize[0] * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop(img: Image.Image, crop: tuple[int, int]) -> Image.Image:
    """torchvision's ``CenterCrop((H, W))`` on a PIL image, padding with 0 where the crop is larger."""
    from PIL import ImageOps

    crop_h, crop_w = crop
    width, height = img.size
    if crop_w > width or crop_h > height:
        pad_left = (crop_w - width) // 2 if crop_w > width else 0
        pad_top = (crop_h - height) // 2 if crop_h > height else 0
        pad_right = (crop_w - width + 1) // 2 if crop_w > width else 0
        pad_bottom = (crop_h - height + 1) // 2 if crop_h > height else 0
        img = ImageOps.expand(img, border=(pad_left, pad_top, pad_right, pad_bottom), fill=0)
        width, height = img.size
        if (width, height) == (crop_w, crop_h):
            return img
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return img.crop((left, top, left + crop_w, top + crop_h))


def _check_size(size: tuple[int, int], what: str) -> None:
    """Refuse a target size over DEFAULT_MAX_PIXELS (a model can declare any input size)."""
    width, height = size
    if width * height > DEFAULT_MAX_PIXELS:
        raise OnnxvisError(
            f"{what} would make a {height}x{width} image, more than the limit of {DEFAULT_MAX_PIXELS / 1e6:g} "
            "megapixels; the model's declared input size or the resize or crop setting is too large, give a smaller size",
            setting="resize",
        )


def preprocess(image: Image.Image, pp: Preprocess) -> np.ndarray:
    """Apply ``pp`` to an image: colour, resize, centre crop, scale, normalise.

    Args:
        image: any PIL image; modes other than ``"RGB"``/``"L"`` are reduced as in :func:`load_image`.
            A grey image into an RGB/BGR model is replicated to 3 channels; a colour image into a
            grey model goes through PIL's ``convert("L")`` (ITU-R 601-2 luma).
        pp: the settings.

    Returns:
        A C-contiguous float32 array ``(C, H, W)``, C = 1 for ``"L"`` and 3 otherwise.
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
    if not isinstance(pp, Preprocess):
        raise TypeError(f"pp must be a Preprocess, got {type(pp).__name__}")
    return normalize(np.asarray(resize_and_crop(image, pp), dtype=np.uint8), pp)


def resize_and_crop(image: Image.Image, pp: Preprocess) -> Image.Image:
    """The geometric half of :func:`preprocess`: colour mode, resize, centre crop (an RGB or L image)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, got {type(image).__name__}")
    img = _to_rgb_or_l(image)
    want = "L" if pp.color == "L" else "RGB"
    if img.mode != want:
        img = img.convert(want)
    if pp.resize is not None:
        size = resized_size(img.width, img.height, pp.resize)
        _check_size(size, "resizing")
        if size != img.size:  # torchvision returns the image untouched in that case
            img = img.resize(size, Image.Resampling.BILINEAR)
    if pp.crop is not None:
        _check_size((pp.crop[1], pp.crop[0]), "cropping")
        img = center_crop(img, pp.crop)
    if pp.max_side is not None or pp.multiple > 1:
        size = whole_image_size(img.width, img.height, pp.max_side, pp.multiple)
        _check_size(size, "resizing")
        if size != img.size:
            img = img.resize(size, Image.Resampling.BILINEAR)
    return img


def whole_image_size(width: int, height: int, max_side: int | None, multiple: int = 1) -> tuple[int, int]:
    """The ``(width, height)`` that keeps a whole image: scaled down (never up) so that its longer side is at
    most ``max_side`` (None: as it is), then each side rounded to the nearest multiple of ``multiple`` (at least one)."""
    if max_side is not None and max(width, height) > max_side:
        ratio = max_side / max(width, height)
        width, height = max(1, int(round(width * ratio))), max(1, int(round(height * ratio)))
    if multiple > 1:
        width = max(multiple, int(round(width / multiple)) * multiple)
        height = max(multiple, int(round(height / multiple)) * multiple)
    return width, height


def normalize(pixels: np.ndarray, pp: Preprocess) -> np.ndarray:
    """The value half of :func:`preprocess`: uint8 (H, W[, C]) pixels -> float32 (C, H, W), scaled and normalised."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    x = pixels.transpose(2, 0, 1).astype(np.float32)  # a fresh C-contiguous (C, H, W) copy
    if pp.scale == 1.0:
        x /= np.float32(255)  # exactly ToTensor's float32 division
    elif pp.scale != 255.0:
        x /= np.float32(255)
        x *= np.float32(pp.scale)
    if pp.color == "BGR":
        x = np.ascontiguousarray(x[::-1])
    # For "L", 3 equal values (allowed by Preprocess) collapse to one.
    mean = np.asarray(pp.mean[:1] if pp.channels == 1 else pp.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pp.std[:1] if pp.channels == 1 else pp.std, dtype=np.float32).reshape(-1, 1, 1)
    x -= mean  # Normalize: tensor.sub_(mean).div_(std) in float32
    x /= std
    return x


def to_layout(chw: np.ndarray, layout: str = "NCHW", dtype: Any = np.float32) -> np.ndarray:
    """Add the batch axis in the model's layout and cast to its input dtype.

    Args:
        chw: a ``(C, H, W)`` array from :func:`preprocess`.
        layout: ``"NCHW"`` (channels first) or ``"NHWC"`` (channels last), case-insensitive.
        dtype: the model's input element type, e.g. ``np.float32``, ``np.float16``, ``np.float64``.
            Integer types get rounded, clipped values (for models fed 0..255 bytes).

    Returns:
        A C-contiguous ``(1, C, H, W)`` or ``(1, H, W, C)`` array of ``dtype``.

    Raises:
        OnnxvisError: the layout is unknown, or ``dtype`` is neither a float nor an integer type.
    """
    chw = np.asarray(chw)
    if chw.ndim != 3:
        raise ValueError(f"expected a (C, H, W) array, got shape {chw.shape}")
    key = layout.upper() if isinstance(layout, str) else layout
    if key not in LAYOUTS:
        raise OnnxvisError(f"unknown input layout {layout!r}; use NCHW or NHWC")
    dtype = np.dtype(dtype)
    x = chw if key == "NCHW" else chw.transpose(1, 2, 0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = np.clip(np.rint(x), info.min, info.max)
    elif not np.issubdtype(dtype, np.floating):
        raise OnnxvisError(
            f"the model's input is of type {dtype}, which an image cannot be turned into; "
            "give a model whose input is a float or integer image"
        )
    return np.ascontiguousarray(x[None].astype(dtype, copy=False))
