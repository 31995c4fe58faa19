"""Export a torchvision classification model to an ONNX file that onnxvis can open on its own.

The file carries in its ``metadata_props`` what later commands need: where the model came from
(``onnxvis.source``), which weights it holds (``onnxvis.weights``), how to turn an image into its
input (``onnxvis.preprocess``, with where that came from) and, when they mean something, the class
names (``onnxvis.labels``) with where they came from (``onnxvis.labels_origin``).

``weights`` may be a state dict, a training checkpoint holding one under a usual key, with the key
prefixes of DataParallel or torch.compile, and with another class count than torchvision's (the
count is read from the shape of the classifier's weight). Files are always read with
``torch.load(weights_only=True)``: a pickled whole model is refused, never loaded.

Before the file is put in place it is checked with ``onnx.checker`` and run in onnxruntime
against torch on a seeded random input; the file is written to a temporary folder beside the
destination and moved into place only after both checks pass.

Convolutions stay ``Conv`` nodes whose kernels are initializers named like the torch state dict
(``features.0.weight``). BatchNormalization is deliberately *not* folded into the convolutions, so
the kernels in the file are the kernels the model learned, not rescaled copies.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from onnxvis.engine.classes import read_labels
from onnxvis.errors import OnnxvisError
from onnxvis.image.preprocess import Preprocess, preset
from onnxvis.model.metadata import LABELS_KEY, LABELS_ORIGIN_KEY, PREPROCESS_KEY, SOURCE_KEY, WEIGHTS_KEY

if TYPE_CHECKING:
    import onnx_ir
    import torch

# Where training scripts usually keep the model's state dict inside a checkpoint dict, in the order
# tried when several of them hold one.
CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")
# Key prefixes added by wrappers: DataParallel / DistributedDataParallel, and torch.compile.
WRAPPER_PREFIXES = {"module.": "DataParallel or DistributedDataParallel", "_orig_mod.": "torch.compile"}

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
SEED = 0  # seeds random weights and the random input of the onnxruntime check
EXPORT_BATCH = 2  # the batch the exporter traces with; the file's batch dimension is free
CHECK_BATCHES = (1, 4)  # the batches onnxruntime is checked against torch at
BATCH_DIM = "batch"  # the name of the free batch dimension in the file
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation while downloading pretrained weights
MIN_OPSET = 7
MIN_DYNAMO_OPSET = 18  # the dynamo exporter writes opset 18 or newer; older opsets use TorchScript
# One .onnx file is a protobuf, limited to 2 GiB; keep a margin for the graph itself.
SINGLE_FILE_LIMIT_BYTES = 2**31 - (64 << 20)

_EXAMPLE_MODELS = "alexnet, resnet18, vgg16, squeezenet1_1, mobilenet_v3_small"

__all__ = [
    "CHECKPOINT_KEYS", "LABELS_KEY", "LABELS_ORIGIN_KEY", "PREPROCESS_KEY", "SOURCE_KEY", "WEIGHTS_KEY", "ExportResult", "export_model"
]


def _stderr_log(message: str) -> None:
    print(f"onnxvis: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the .onnx written
    weights: str  # "IMAGENET1K_V1" / "random" / "file:<path>"
    max_abs_diff: float  # onnxruntime vs torch on a seeded random input
    files: tuple[Path, ...]  # every file written (the .onnx, plus .onnx.data with external data)


def export_model(
    name: str,
    weights: str = "imagenet",
    output_dir: str | Path = "models",
    external_data: bool = False,
    opset: int | None = None,
    log: Callable[[str], None] = _stderr_log,
    labels: str | Path | None = None,
    preprocess: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export torchvision's classification model ``name`` to ``output_dir/<name>.onnx``.

    Args:
        name: a torchvision classification model, e.g. ``alexnet`` or ``resnet18``.
        weights: ``"imagenet"`` for torchvision's default pretrained weights (from the torch hub
            cache, else downloaded), ``"random"`` for a seeded random initialisation, or the path
            of a local file: a state dict (``torch.save(model.state_dict(), PATH)``) or a training
            checkpoint dict holding one under a usual key (see :data:`CHECKPOINT_KEYS`). Another
            class count than torchvision's is read from the classifier's weight.
        output_dir: folder for the file, created when missing; a path ending in ``.onnx`` is the
            file itself.
        external_data: write the weights to ``<name>.onnx.data`` beside the ``.onnx``.
        opset: the ONNX opset to write; ``None`` for the exporter's default.
        log: receives one progress line at a time.
        labels: a file of class names (one per line, or a JSON list), one per model output,
            stored in the metadata.
        preprocess: the preprocessing to record instead of the weights' own: any of ``preset``
            (a name of :data:`onnxvis.image.preprocess.PRESETS`), ``resize``, ``crop``, ``mean``,
            ``std``, applied in that order as ``fmaps`` applies its options. The model's input
            size follows the crop, else an exact ``(H, W)`` resize.

    Raises:
        OnnxvisError: for anything the user can fix (unknown model, unusable weights, no network
            and no cached weights, a destination that is not an earlier onnxvis export, ...).
        RuntimeError: when the exported model does not compute what the torch model computes.
    """
    import torch
    import torchvision

    key = name.strip().lower()
    builder = _model_builder(key, name)
    _check_opset(opset)
    output = Path(output_dir)
    if output.suffix.lower() == ".onnx":
        output_dir, dest = output.parent, output
    else:
        output_dir, dest = output, output / f"{key}.onnx"
    data_dest = dest.with_name(dest.name + ".data")
    _check_destination(dest, external_data)  # refuse early, before the slow part
    given_labels = read_labels(labels) if labels is not None else None

    default_weights = _default_weights(key)
    chosen, preprocess_origin = _chosen_preprocess(_preprocess(default_weights), default_weights, preprocess)
    height, width = _input_size(chosen)
    log(f"building {key} (torchvision {torchvision.__version__}, torch {torch.__version__})")
    model, weights_id, weights_meta, labels_found = _build(key, builder, weights, default_weights, log)
    model.eval()

    state_dict = model.state_dict()
    nbytes = sum(t.numel() * t.element_size() for t in state_dict.values())
    if not external_data and nbytes > SINGLE_FILE_LIMIT_BYTES:
        raise OnnxvisError(
            f"{key} has {nbytes / 2**30:.1f} GiB of weights, more than one .onnx file can hold (2 GiB); "
            f"add --external-data to write them to {data_dest.name} beside it"
        )

    # Traced at batch 2: torch.export specialises a dimension of size 1, and the batch must stay free.
    example = torch.randn(EXPORT_BATCH, 3, height, width, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        logits = model(example[:1])
    if not isinstance(logits, torch.Tensor):
        raise RuntimeError(f"torchvision's {key} returned {type(logits).__name__} in eval mode, not one logits tensor")
    classes = int(logits.shape[-1])
    labels_origin = None
    if given_labels is not None:
        if len(given_labels) != classes:
            raise OnnxvisError(
                f"the labels file {labels} names {len(given_labels)} classes but the model has {classes}; "
                "give one name per class, in the order of the model's outputs"
            )
        labels_found, labels_origin = given_labels, f"file {Path(labels).name}, given at export"  # type: ignore[arg-type]
        log(f"labels: {classes} class names from {labels}")
    elif labels_found is not None:
        if classes != len(labels_found):
            log(f"labels: not stored, the model has {classes} outputs but {default_weights.name} names {len(labels_found)} classes")
            labels_found = None
        else:
            labels_origin = f"torchvision's {type(default_weights).__name__}.{default_weights.name} categories"
            if weights_id.startswith("file:"):
                log(f"labels: storing the {classes} class names of {default_weights.name}, taking the file to keep their order")
    if labels_found is None and given_labels is None and weights_id != "random":
        log(f"labels: none stored; to name the {classes} classes give a file with one name per line")

    metadata = {
        SOURCE_KEY: f"torchvision.models.{key}",
        WEIGHTS_KEY: weights_meta,
        PREPROCESS_KEY: json.dumps(_preprocess_metadata(chosen, preprocess_origin)),
    }
    if labels_found is not None:
        metadata[LABELS_KEY] = json.dumps(labels_found)
        if labels_origin is not None:
            metadata[LABELS_ORIGIN_KEY] = labels_origin

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OnnxvisError(f"output folder {output_dir} is a file; give a folder with -o") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=output_dir))
    try:
        started = time.perf_counter()
        model_ir, exporter = _export(key, model, example, opset, set(state_dict), staging, log)
        model_ir.metadata_props.update(metadata)
        staged = staging / dest.name
        _save(model_ir, staged, data_dest.name if external_data else None)
        del model_ir
        log(f"exported with the {exporter} exporter in {time.perf_counter() - started:.1f} s")
        _describe_convs(staged, log)

        max_abs_diff = _verify(staged, model, height, width, opset, log)

        old_has_data = _check_destination(dest, external_data)
        written = [dest]
        if (staging / data_dest.name).exists():
            os.replace(staging / data_dest.name, data_dest)  # data first: the .onnx that names it comes next
            written.append(data_dest)
        os.replace(staged, dest)
        if old_has_data and data_dest not in written and data_dest.is_file():
            data_dest.unlink()  # the earlier onnxvis export's weights; the new file holds its own
            log(f"removed {data_dest}, the weights file of the export this one replaces")
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    size = sum(p.stat().st_size for p in written)
    log(f"wrote {', '.join(str(p) for p in written)} ({size / 2**20:.1f} MiB)")
    return ExportResult(path=dest, weights=weights_id, max_abs_diff=max_abs_diff, files=tuple(written))


# --- model and weights -----------------------------------------------------------------------


def _model_builder(key: str, given: str) -> Callable[..., Any]:
    import torchvision
    from torchvision.models import get_model_builder, list_models

    names = list_models(module=torchvision.models)
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise OnnxvisError(
            f"unknown torchvision model {given!r}{hint}; give one of torchvision's {len(names)} classification "
            f"models, e.g. {_EXAMPLE_MODELS}"
        )
    return get_model_builder(key)


def _default_weights(key: str) -> Any:
    """torchvision's default pretrained weights for the model (a WeightsEnum member).

    Every torchvision classification model has them; they also describe the preprocessing and,
    for a local copy of the pretrained file, how torchvision builds the model for it.
    """
    from torchvision.models import get_model_weights

    default = getattr(get_model_weights(key), "DEFAULT", None)
    if default is None:
        raise RuntimeError(f"torchvision's {key} has no default weights; exporters/torchvision_export.py relies on them")
    return default


def _check_opset(opset: int | None) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not (MIN_OPSET <= opset <= newest):
        raise OnnxvisError(
            f"opset {opset} is out of range; give an opset from {MIN_OPSET} to {newest}, or leave --opset out for the exporter's default"
        )


def _preprocess(weights: Any) -> dict[str, Any]:
    """resize/crop/mean/std from the weights' transforms() (torchvision's ImageClassification)."""
    transforms = weights.transforms()
    crop = [int(v) for v in transforms.crop_size]
    return {
        "resize": [int(v) for v in transforms.resize_size],  # [N]: shorter side to N; [H, W]: exact size
        "crop": crop * 2 if len(crop) == 1 else crop,
        "mean": [float(v) for v in transforms.mean],
        "std": [float(v) for v in transforms.std],
    }


_PREPROCESS_FIELDS = ("preset", "resize", "crop", "mean", "std")


def _chosen_preprocess(
    default: Mapping[str, Any], weights: Any, overrides: Mapping[str, Any] | None
) -> tuple[Preprocess, str]:
    """The preprocessing to record, and where it came from.

    Without overrides: the weights' own transforms. Otherwise, as ``fmaps`` applies its options: a
    preset replaces the whole (keeping the weights' size when the preset has none), a resize
    replaces the size (and drops the crop unless one is given), then crop, mean and std.
    """
    base = Preprocess.from_dict(dict(default), name="torchvision")
    origin = f"torchvision's {type(weights).__name__}.{weights.name} transforms"
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(_PREPROCESS_FIELDS))
    if unknown:
        raise OnnxvisError(f"unknown preprocessing setting(s) {', '.join(unknown)}; give any of {', '.join(_PREPROCESS_FIELDS)}")
    if not given:
        return base, origin
    chosen = base
    if "preset" in given:
        chosen = preset(given["preset"])
        if chosen.resize is None and chosen.crop is None:  # tf, unit, raw: no size of their own
            chosen = chosen.replace(resize=base.resize, crop=base.crop)
    if "resize" in given:
        chosen = chosen.replace(resize=given["resize"], crop=given.get("crop"))
    elif "crop" in given:
        chosen = chosen.replace(crop=given["crop"])
    for field in ("mean", "std"):
        if field in given:
            chosen = chosen.replace(**{field: given[field]})
    chosen = chosen.replace(name="export")
    parts = [f"preset {given['preset']}"] if "preset" in given else []
    for field in ("resize", "crop", "mean", "std"):
        if field in given:
            value = given[field]
            values = [value] if isinstance(value, (int, float)) else list(value)
            parts.append(f"{field} {','.join(str(v) for v in values)}")
    return chosen, "the user's settings: " + ", ".join(parts)


def _input_size(chosen: Preprocess) -> tuple[int, int]:
    """The model's input height and width: the crop, else an exact resize."""
    if chosen.crop is not None:
        return chosen.crop
    if chosen.resize is not None and len(chosen.resize) == 2:
        return chosen.resize[0], chosen.resize[1]
    raise OnnxvisError(
        "the preprocessing resizes the shorter side but crops nothing, so the model's input size is unknown; "
        "give a crop size, or an exact height and width to resize to"
    )


def _preprocess_metadata(chosen: Preprocess, origin: str) -> dict[str, Any]:
    """The ``onnxvis.preprocess`` JSON object: the settings, the layout, and where they came from."""
    fields = chosen.to_dict()
    del fields["name"]
    return {**fields, "layout": "NCHW", "origin": origin}


def _build(
    key: str, builder: Callable[..., Any], weights: str, default: Any, log: Callable[[str], None]
) -> tuple[torch.nn.Module, str, str, list[str] | None]:
    """The model with its weights; returns (model, weights id, weights metadata, labels or None)."""
    import torch

    choice = weights.strip().lower()
    if choice == "random":
        log(f"weights: random (torch.manual_seed({SEED}))")
        torch.manual_seed(SEED)
        return builder(weights=None), "random", "random", None

    if choice == "imagenet":
        state_dict = _pretrained_state_dict(key, default, log)
        model = _build_with_state_dict(key, builder, default, state_dict, f"the cached file {_cache_path(default)}", log)
        return model, default.name, default.name, list(default.meta.get("categories") or []) or None

    path = Path(weights).expanduser()
    state_dict = _read_state_dict(path, log)
    model = _build_with_state_dict(key, builder, default, state_dict, str(path), log)
    labels = list(default.meta.get("categories") or []) or None
    return model, f"file:{weights}", f"file:{path.name}", labels


def _cache_path(weights: Any) -> Path:
    """Where torch.hub keeps (or would download) the file of ``weights``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _pretrained_state_dict(key: str, weights: Any, log: Callable[[str], None]) -> Mapping[str, Any]:
    cached = _cache_path(weights)
    if cached.is_file():
        log(f"weights: {weights.name} from the torch hub cache, {cached}")
        try:
            return weights.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # torch.load raises many types for a damaged file
            raise OnnxvisError(
                f"cannot read the cached weights {cached} ({_reason(exc)}); delete it to download it again, "
                "or use --weights random, or --weights PATH with a local state-dict .pth file"
            ) from None
    log(f"weights: {weights.name} is not in the torch hub cache; downloading {weights.url} to {cached}")
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S), contextlib.redirect_stdout(sys.stderr):
            return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # URLError, timeouts, HTTP errors, a hash mismatch: all mean "no usable download"
        raise OnnxvisError(
            f"cannot download the pretrained {key} weights ({_reason(exc)}); to work offline put "
            f"{cached.name} at {cached}, or use --weights random, or --weights PATH with a local state-dict .pth file"
        ) from None


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _read_state_dict(path: Path, log: Callable[[str], None] = _stderr_log) -> dict[str, Any]:
    """The state dict in ``path``: a bare one, or one inside a training checkpoint; wrapper prefixes removed.

    Read with ``weights_only=True`` only: a file that needs more (a pickled whole model, any
    object) is refused without being loaded, because unpickling runs code chosen by the file.
    """
    import pickle

    import torch

    if not path.exists():
        raise OnnxvisError(f"weights file not found: {path}; give imagenet, random, or the path of a state-dict .pth file")
    if not path.is_file():
        raise OnnxvisError(f"weights path {path} is not a file; give the path of a state-dict .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:
            raise OnnxvisError(
                f"cannot read {path} as a torch state dict ({_reason(exc)}); give a file written with torch.save(model.state_dict(), PATH)"
            ) from None
        raise OnnxvisError(
            f"{path} holds a pickled Python object ({found.group(1)}), not just tensors, so it was not loaded: "
            "loading a pickle runs code from the file; save the weights alone with torch.save(model.state_dict(), PATH)"
        ) from None
    except Exception as exc:  # a damaged or foreign file: torch raises many types
        raise OnnxvisError(
            f"cannot read {path} as a torch state dict ({_reason(exc)}); give a file written with torch.save(model.state_dict(), PATH)"
        ) from None
    if not isinstance(obj, Mapping) or not obj:
        raise OnnxvisError(
            f"{path} holds {type(obj).__name__ if obj else 'nothing'}, not a state dict; "
            "give a file written with torch.save(model.state_dict(), PATH)"
        )
    if not _is_state_dict(obj):
        obj = _state_dict_of_checkpoint(path, obj, log)
    state_dict = _strip_wrapper_prefixes(dict(obj), log)
    log(f"weights: state dict {path} ({len(state_dict)} tensors)")
    return state_dict


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _state_dict_of_checkpoint(path: Path, checkpoint: Mapping[Any, Any], log: Callable[[str], None]) -> Mapping[str, Any]:
    """The state dict a training checkpoint holds under one of :data:`CHECKPOINT_KEYS`."""
    found = [k for k in CHECKPOINT_KEYS if _is_state_dict(checkpoint.get(k))]
    others = [k for k, v in checkpoint.items() if k not in found and _is_state_dict(v)]
    if not found:
        entries = ", ".join(f"{k!r} ({type(v).__name__})" for k, v in list(checkpoint.items())[:8])
        hint = (
            f"; its entry {others[0]!r} holds tensors: save it alone with torch.save(checkpoint[{others[0]!r}], PATH)"
            if others
            else "; give a file written with torch.save(model.state_dict(), PATH)"
        )
        raise OnnxvisError(
            f"{path} is neither a state dict nor a checkpoint with one under {', '.join(CHECKPOINT_KEYS)}: "
            f"it holds {entries}{hint}"
        )
    taken = found[0]
    rest = [k for k in checkpoint if k != taken]
    also = f"; {', '.join(repr(k) for k in found[1:])} also holds a state dict, not taken" if len(found) > 1 else ""
    log(f"weights: a training checkpoint; taking its state dict {taken!r} (other entries: {', '.join(map(str, rest)) or 'none'}){also}")
    return checkpoint[taken]


def _strip_wrapper_prefixes(state_dict: Mapping[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Remove the ``module.`` / ``_orig_mod.`` prefix that every key carries, as often as it repeats.

    The state dict's ``_metadata`` (module versions, which some modules' loading reads) follows.
    """
    changed = True
    while changed:
        changed = False
        for prefix, wrapper in WRAPPER_PREFIXES.items():
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = _with_metadata(((k[len(prefix):], v) for k, v in state_dict.items()), state_dict, prefix)
                log(f"weights: removed the key prefix {prefix!r} that {wrapper} adds")
                changed = True
    return _with_metadata(state_dict.items(), state_dict)


def _with_metadata(items: Iterable[tuple[str, Any]], source: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """An OrderedDict of ``items`` that keeps the ``_metadata`` of ``source``, its keys without ``prefix``.

    torch keeps each module's version in the state dict's ``_metadata``; mnasnet refuses to load
    without it, and a copy made with dict() loses it.
    """
    out: collections.OrderedDict[str, Any] = collections.OrderedDict(items)
    metadata = getattr(source, "_metadata", None)
    if metadata is not None:
        kept: collections.OrderedDict[str, Any] = collections.OrderedDict()
        for name, value in metadata.items():
            if not prefix:
                kept[name] = value
            elif name == prefix[:-1]:
                kept[""] = value  # the wrapped module becomes the root
            elif name.startswith(prefix):
                kept[name[len(prefix):]] = value
        out._metadata = kept  # type: ignore[attr-defined]
    return out


def _reference_model(builder: Callable[..., Any]) -> torch.nn.Module:
    """The architecture with torchvision's class count, without weights (on the meta device when it builds there)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet and inception_v3 warn about their init scheme
        try:
            with torch.device("meta"):
                return builder(weights=None)
        except Exception:  # some builders compute sizes from tensor values, which the meta device has not
            return builder(weights=None)


def _new_heads(
    key: str, reference: torch.nn.Module, weights: Any, state_dict: Mapping[str, Any], origin: str, log: Callable[[str], None]
) -> dict[str, tuple[int, ...]]:
    """The classifier parameters whose class count in ``state_dict`` differs from torchvision's: name -> ref shape.

    A head is a Linear or Conv2d layer with one output per class of torchvision's weights. Any
    other parameter of another shape is refused here, with the names and shapes.
    """
    default_classes = len(weights.meta["categories"])
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    heads = {
        f"{name}.{param}"
        for name, module in reference.named_modules()
        if getattr(module, "out_features", getattr(module, "out_channels", None)) == default_classes
        for param in ("weight", "bias")
        if getattr(module, param, None) is not None
    }
    changed: dict[str, tuple[int, ...]] = {}
    counts: set[int] = set()
    other: list[str] = []
    for name, tensor in state_dict.items():
        shape, ref = tuple(tensor.shape), ref_shapes.get(name)
        if ref is None or shape == ref:
            continue  # a key the model has not: torchvision's builder judges it (densenet renames old keys)
        if name in heads and len(shape) == len(ref) and shape[1:] == ref[1:]:
            changed[name] = ref
            counts.add(shape[0])
        else:
            other.append(f"{name} {list(shape)} in the file, {list(ref)} in the model")
    if other:
        more = f" and {len(other) - 3} more" if len(other) > 3 else ""
        raise OnnxvisError(
            f"{origin} does not fit torchvision's {key}: {'; '.join(other[:3])}{more}; give the state dict of a {key}"
        )
    if len(counts) > 1:
        raise OnnxvisError(
            f"{origin} has classifiers with different class counts "
            f"({', '.join(f'{n} {list(state_dict[n].shape)}' for n in sorted(changed))}); "
            f"give the state dict of a {key} with one class count"
        )
    if changed:
        head = min(changed, key=lambda n: (not n.endswith(".weight"), n))
        classes = counts.pop()
        log(
            f"classes: {classes}, from the shape of {head} {list(state_dict[head].shape)} in the file "
            f"(torchvision's {key} has {default_classes}); building it with {classes}"
        )
    return changed


def _build_with_state_dict(
    key: str,
    builder: Callable[..., Any],
    weights: Any,
    state_dict: Mapping[str, Any],
    origin: str,
    log: Callable[[str], None] = _stderr_log,
) -> torch.nn.Module:
    """Build the model exactly as torchvision builds it for ``weights``, but load ``state_dict``.

    torchvision's builders adapt the architecture to their pretrained weights (inception_v3 and
    googlenet switch on transform_input, densenet renames old-style keys), so a local copy of the
    pretrained file must go through the same builder. The builder fetches the state dict through
    ``torchvision.models._api.load_state_dict_from_url``; it is swapped for the given dict while the
    builder runs.

    A fine-tuned model has another class count: its classifier's tensors are swapped for
    placeholders of torchvision's shape while the builder loads, then put in as new parameters.
    """
    import torch
    from torchvision.models import _api

    if not hasattr(_api, "load_state_dict_from_url"):
        raise RuntimeError(
            "torchvision.models._api.load_state_dict_from_url is gone in this torchvision; "
            "update _build_with_state_dict in exporters/torchvision_export.py"
        )
    reference = _reference_model(builder)
    heads = _new_heads(key, reference, weights, state_dict, origin, log)
    ref_state = reference.state_dict()
    # Tensors the file lacks get placeholders, NaN where they can: the builder may drop their
    # modules after loading (googlenet's aux1/aux2 for a model fine-tuned without them); one that
    # is still NaN in the model afterwards was really missing.
    absent = [k for k in ref_state if k not in state_dict]
    original = _api.load_state_dict_from_url
    calls: list[str] = []

    def placeholder(name: str) -> torch.Tensor:
        ref = ref_state[name]
        fill = float("nan") if ref.dtype.is_floating_point else 0
        return torch.full(tuple(ref.shape), fill, dtype=ref.dtype, device="cpu")

    def give_state_dict(url: str, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        calls.append(url)
        # A copy: densenet's builder renames keys in place. Without module versions, the current ones.
        given = _with_metadata(state_dict.items(), state_dict if hasattr(state_dict, "_metadata") else ref_state)
        for name, shape in heads.items():
            given[name] = torch.zeros(shape, dtype=torch.float32)
        for name in absent:
            given[name] = placeholder(name)
        return given

    _api.load_state_dict_from_url = give_state_dict
    try:
        model = builder(weights=weights, progress=False)
    except RuntimeError as exc:
        if "state_dict" not in str(exc):
            raise
        raise OnnxvisError(
            f"{origin} does not fit torchvision's {key} ({_reason(exc)}); give the state dict of this model, "
            "written with torch.save(model.state_dict(), PATH)"
        ) from None
    finally:
        _api.load_state_dict_from_url = original
    if calls != [weights.url]:
        raise RuntimeError(f"torchvision's {key} builder did not load its weights through torchvision.models._api as expected")
    for name in heads:
        module_name, _, param = name.rpartition(".")
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            continue  # a head the builder drops after loading (inception_v3's AuxLogits)
        old = getattr(module, param)
        setattr(module, param, torch.nn.Parameter(state_dict[name].detach().to(old.dtype).clone(), requires_grad=False))
        size = state_dict[name].shape[0]
        for attribute in ("out_features", "out_channels"):
            if hasattr(module, attribute):
                setattr(module, attribute, size)
    loaded = model.state_dict()
    missing = [k for k in absent if k in loaded and loaded[k].is_floating_point() and bool(torch.isnan(loaded[k]).all())]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise OnnxvisError(
            f"{origin} does not fit torchvision's {key}: it lacks {', '.join(missing[:3])}{more}; give the state dict of a {key}"
        )
    return model


def _reason(exc: BaseException) -> str:
    """A short one-line account of an exception, for an error message."""
    reason = getattr(exc, "reason", None)  # URLError keeps the useful part here
    text = " ".join(str(reason if reason is not None else exc).split())
    if len(text) > 240:
        text = text[:237] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- export, check, write --------------------------------------------------------------------


def _export(
    key: str,
    model: torch.nn.Module,
    example: torch.Tensor,
    opset: int | None,
    state_dict_keys: set[str],
    staging: Path,
    log: Callable[[str], None],
) -> tuple[onnx_ir.Model, str]:
    """The exported model as an onnx_ir.Model, and which exporter made it."""
    import torch

    shape = [BATCH_DIM, *example.shape[1:]]
    if opset is not None and opset < MIN_DYNAMO_OPSET:
        log(f"exporting {key} at opset {opset} with torch's TorchScript exporter "
            f"(the dynamo one writes opset {MIN_DYNAMO_OPSET}+), input {shape}")
        return _export_torchscript(model, example, opset, staging), "TorchScript"

    log(f"exporting {key} with torch.onnx.export (dynamo), input '{INPUT_NAME}' {shape}, output '{OUTPUT_NAME}'")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            program = torch.onnx.export(
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
                optimize=False,  # torch's optimizer folds BatchNormalization into Conv kernels
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types
        if opset is not None:
            raise OnnxvisError(
                f"torch's exporter cannot write {key} at opset {opset} ({_reason(exc)}); leave --opset out or try another opset"
            ) from None
        log(f"the dynamo exporter failed ({_reason(exc)}); retrying with the TorchScript exporter")
        return _export_torchscript(model, example, None, staging), "TorchScript"
    if program is None:  # only without dynamo=True; kept for the type checker
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no ONNXProgram")
    model_ir = program.model
    _tidy(model_ir, state_dict_keys)
    return model_ir, "dynamo"


def _tidy(model_ir: onnx_ir.Model, keep: set[str]) -> None:
    """The cleanups of torch's optimizer that keep every kernel as the model learned it.

    Constant folding, then drop the all-zero bias the exporter invents for Conv layers without
    one, then drop what is unused and turn remaining Constant nodes into initializers.
    """
    import onnx_ir as ir
    import onnxscript.optimizer

    onnxscript.optimizer.fold_constants(model_ir)
    for node in model_ir.graph:
        if node.op_type == "Conv" and node.domain == "" and len(node.inputs) == 3:
            bias = node.inputs[2]
            if bias is None or bias.name in keep:
                continue
            tensor = ir.convenience.get_const_tensor(bias)
            if tensor is not None and not tensor.numpy().any():
                node.resize_inputs(2)
    onnxscript.optimizer.remove_unused_nodes(model_ir)
    ir.passes.common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model_ir)
    _name_convs_after_modules(model_ir)


def _name_convs_after_modules(model_ir: onnx_ir.Model) -> None:
    """Name each Conv node after the torch module that owns its kernel (``features.0``).

    The exporters call them ``node_conv2d_3`` or ``/features/features.0/Conv``; the module path is
    what a torch user knows, and it makes ``--layers features.0`` and the output file names readable.
    """
    taken = {node.name for node in model_ir.graph}
    for node in model_ir.graph:
        if node.op_type != "Conv" or len(node.inputs) < 2 or node.inputs[1] is None:
            continue
        weight = node.inputs[1].name or ""
        if weight.endswith(".weight"):
            module = weight[: -len(".weight")]
            if module and module not in taken:
                taken.add(module)
                node.name = module


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, opset: int | None, staging: Path) -> onnx_ir.Model:
    import onnx_ir as ir
    import onnxscript.optimizer
    import torch

    raw = staging / "torchscript" / "model.onnx"
    raw.parent.mkdir()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": we chose it knowingly
        # Meant for a model in training mode; ours is in eval mode, so folding changes no parameter.
        warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
        torch.onnx.export(
            model,
            (example,),
            str(raw),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}},
            # EVAL would fold BatchNormalization into the Conv kernels and rename them; the model is
            # in eval mode already, so PRESERVE exports inference-mode BatchNormalization nodes.
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    model_ir = ir.load(raw)
    ir.passes.common.IdentityEliminationPass()(model_ir)
    onnxscript.optimizer.remove_unused_nodes(model_ir)
    _name_convs_after_modules(model_ir)
    return model_ir


def _save(model_ir: onnx_ir.Model, path: Path, data_name: str | None) -> None:
    import onnx_ir as ir

    if data_name is None:
        ir.save(model_ir, path)
    else:
        ir.save(model_ir, path, external_data=data_name)


def _describe_convs(path: Path, log: Callable[[str], None]) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    stored = sum(1 for n in convs if len(n.input) > 1 and n.input[1] in inits)
    bn = sum(1 for n in proto.graph.node if n.op_type == "BatchNormalization")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    log(f"graph: opset {opset}, {len(proto.graph.node)} nodes, "
        f"{len(convs)} Conv ({stored} with kernels as initializers), {bn} BatchNormalization")


def _verify(path: Path, model: torch.nn.Module, height: int, width: int, opset: int | None, log: Callable[[str], None]) -> float:
    """onnx.checker, then onnxruntime against torch at batches 1 and 4; returns the largest absolute difference."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    log(f"checking {path.name} with onnx.checker")
    onnx.checker.check_model(str(path))  # by path: works for files over 2 GiB and with external data
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        if opset is not None:
            raise OnnxvisError(
                f"onnxruntime {ort.__version__} cannot run the model at opset {opset} ({_reason(exc)}); "
                "leave --opset out or try another opset"
            ) from None
        raise
    worst = 0.0
    for batch in CHECK_BATCHES:
        example = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(SEED + batch))
        with torch.no_grad():
            expected = model(example).numpy()
        try:
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: example.numpy()})
        except Exception as exc:
            raise RuntimeError(f"onnxruntime cannot run the exported model at batch {batch} ({_reason(exc)})") from None
        if got.shape != expected.shape:
            raise RuntimeError(f"onnxruntime gives {OUTPUT_NAME} of shape {list(got.shape)}, torch {list(expected.shape)}")
        diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
        tolerance = 1e-3 * max(1.0, float(np.max(np.abs(expected))))
        log(f"onnxruntime vs torch on a seeded random input at batch {batch}: max abs diff {diff:.3g} (tolerance {tolerance:.3g})")
        if not diff <= tolerance:  # also catches NaN
            raise RuntimeError(
                f"the exported model disagrees with torch at batch {batch}: max abs diff {diff:.3g} > {tolerance:.3g}; "
                "this is a bug in the exporter"
            )
        worst = max(worst, diff)
    del session
    return worst


def _check_destination(dest: Path, external_data: bool) -> bool:
    """Refuse unless every file the export would replace belongs to an earlier onnxvis export.

    Returns whether the earlier export at ``dest`` keeps its weights in ``<dest>.data``.
    """
    import onnx
    from onnx import external_data_helper

    data = dest.with_name(dest.name + ".data")
    old_has_data = False
    if dest.exists() or dest.is_symlink():
        if not dest.is_file():
            raise OnnxvisError(f"{dest} exists and is not a file; move it away or choose another output folder with -o")
        try:
            proto = onnx.load(str(dest), load_external_data=False)
            keys = {p.key for p in proto.metadata_props}
        except Exception:  # not ONNX at all: protobuf raises several types
            proto, keys = None, set()
        if proto is None or SOURCE_KEY not in keys:
            raise OnnxvisError(
                f"{dest} exists and is not an onnxvis export, so it is left alone; move it away or choose another output folder with -o"
            )
        for tensor in proto.graph.initializer:
            if external_data_helper.uses_external_data(tensor):
                location = {e.key: e.value for e in tensor.external_data}.get("location")
                old_has_data = old_has_data or location == data.name
    if external_data and (data.exists() or data.is_symlink()) and not old_has_data:
        raise OnnxvisError(
            f"{data} exists and is not the weights file of an onnxvis export, so it is left alone; "
            "move it away or choose another output folder with -o"
        )
    return old_has_data
