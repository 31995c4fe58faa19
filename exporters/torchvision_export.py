"""Export a torchvision classification model to an ONNX file that onnxvis can open on its own.

The file carries in its ``metadata_props`` what later commands need: where the model came from
(``onnxvis.source``), which weights it holds (``onnxvis.weights``), how to turn an image into its
input (``onnxvis.preprocess``) and, when they mean something, the class names (``onnxvis.labels``).

Before the file is put in place it is checked with ``onnx.checker`` and run in onnxruntime
against torch on a seeded random input; the file is written to a temporary folder beside the
destination and moved into place only after both checks pass.

Convolutions stay ``Conv`` nodes whose kernels are initializers named like the torch state dict
(``features.0.weight``). BatchNormalization is deliberately *not* folded into the convolutions, so
the kernels in the file are the kernels the model learned, not rescaled copies.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    import onnx_ir
    import torch

SOURCE_KEY = "onnxvis.source"
WEIGHTS_KEY = "onnxvis.weights"
PREPROCESS_KEY = "onnxvis.preprocess"
LABELS_KEY = "onnxvis.labels"

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
SEED = 0  # seeds random weights and the random input of the onnxruntime check
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation while downloading pretrained weights
MIN_OPSET = 7
MIN_DYNAMO_OPSET = 18  # the dynamo exporter writes opset 18 or newer; older opsets use TorchScript
# One .onnx file is a protobuf, limited to 2 GiB; keep a margin for the graph itself.
SINGLE_FILE_LIMIT_BYTES = 2**31 - (64 << 20)

_EXAMPLE_MODELS = "alexnet, resnet18, vgg16, squeezenet1_1, mobilenet_v3_small"


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
) -> ExportResult:
    """Export torchvision's classification model ``name`` to ``output_dir/<name>.onnx``.

    Args:
        name: a torchvision classification model, e.g. ``alexnet`` or ``resnet18``.
        weights: ``"imagenet"`` for torchvision's default pretrained weights (from the torch hub
            cache, else downloaded), ``"random"`` for a seeded random initialisation, or the path
            of a local state-dict file (``torch.save(model.state_dict(), PATH)``).
        output_dir: folder for the file; created when missing.
        external_data: write the weights to ``<name>.onnx.data`` beside the ``.onnx``.
        opset: the ONNX opset to write; ``None`` for the exporter's default.
        log: receives one progress line at a time.

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
    output_dir = Path(output_dir)
    dest = output_dir / f"{key}.onnx"
    data_dest = dest.with_name(dest.name + ".data")
    _check_destination(dest, external_data)  # refuse early, before the slow part

    default_weights = _default_weights(key)
    preprocess = _preprocess(default_weights)
    log(f"building {key} (torchvision {torchvision.__version__}, torch {torch.__version__})")
    model, weights_id, weights_meta, labels = _build(key, builder, weights, default_weights, log)
    model.eval()

    state_dict = model.state_dict()
    nbytes = sum(t.numel() * t.element_size() for t in state_dict.values())
    if not external_data and nbytes > SINGLE_FILE_LIMIT_BYTES:
        raise OnnxvisError(
            f"{key} has {nbytes / 2**30:.1f} GiB of weights, more than one .onnx file can hold (2 GiB); "
            f"add --external-data to write them to {data_dest.name} beside it"
        )

    height, width = preprocess["crop"]
    example = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        expected = model(example)
    if not isinstance(expected, torch.Tensor):
        raise RuntimeError(f"torchvision's {key} returned {type(expected).__name__} in eval mode, not one logits tensor")
    expected = expected.numpy()
    if labels is not None and expected.shape[-1] != len(labels):
        log(f"labels: not stored, the model has {expected.shape[-1]} outputs but the weights name {len(labels)} classes")
        labels = None

    metadata = {
        SOURCE_KEY: f"torchvision.models.{key}",
        WEIGHTS_KEY: weights_meta,
        PREPROCESS_KEY: json.dumps({**preprocess, "color": "RGB", "scale": 1, "layout": "NCHW"}),
    }
    if labels is not None:
        metadata[LABELS_KEY] = json.dumps(labels)

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

        max_abs_diff = _verify(staged, example.numpy(), expected, opset, log)

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
        model = _build_with_state_dict(key, builder, default, state_dict, f"the cached file {_cache_path(default)}")
        return model, default.name, default.name, list(default.meta.get("categories") or []) or None

    path = Path(weights).expanduser()
    state_dict = _read_state_dict(path)
    log(f"weights: state dict {path} ({len(state_dict)} tensors)")
    model = _build_with_state_dict(key, builder, default, state_dict, str(path))
    labels = list(default.meta.get("categories") or []) or None
    if labels:
        log(f"labels: storing the {len(labels)} class names of {default.name}, taking {path.name} to keep their order")
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


def _read_state_dict(path: Path) -> Mapping[str, Any]:
    import torch

    if not path.exists():
        raise OnnxvisError(f"weights file not found: {path}; give imagenet, random, or the path of a state-dict .pth file")
    if not path.is_file():
        raise OnnxvisError(f"weights path {path} is not a file; give the path of a state-dict .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise OnnxvisError(
            f"cannot read {path} as a torch state dict ({_reason(exc)}); give a file written with torch.save(model.state_dict(), PATH)"
        ) from None
    if not isinstance(obj, Mapping) or not obj:
        raise OnnxvisError(
            f"{path} holds {type(obj).__name__ if obj else 'nothing'}, not a state dict; give a file written with torch.save(model.state_dict(), PATH)"
        )
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise OnnxvisError(
                f"{path} is not a state dict: its entry {name!r} holds {type(value).__name__}, not a tensor; "
                "for a training checkpoint save the model's part, e.g. torch.save(checkpoint['state_dict'], PATH)"
            )
    return obj


def _build_with_state_dict(
    key: str, builder: Callable[..., Any], weights: Any, state_dict: Mapping[str, Any], origin: str
) -> torch.nn.Module:
    """Build the model exactly as torchvision builds it for ``weights``, but load ``state_dict``.

    torchvision's builders adapt the architecture to their pretrained weights (inception_v3 and
    googlenet switch on transform_input, densenet renames old-style keys), so a local copy of the
    pretrained file must go through the same builder. The builder fetches the state dict through
    ``torchvision.models._api.load_state_dict_from_url``; it is swapped for the given dict while the
    builder runs.
    """
    from torchvision.models import _api

    if not hasattr(_api, "load_state_dict_from_url"):
        raise RuntimeError(
            "torchvision.models._api.load_state_dict_from_url is gone in this torchvision; "
            "update _build_with_state_dict in exporters/torchvision_export.py"
        )
    original = _api.load_state_dict_from_url
    calls: list[str] = []

    def give_state_dict(url: str, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        calls.append(url)
        return dict(state_dict)  # densenet's builder renames keys in place

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

    shape = list(example.shape)
    if opset is not None and opset < MIN_DYNAMO_OPSET:
        log(f"exporting {key} at opset {opset} with torch's TorchScript exporter (the dynamo one writes opset {MIN_DYNAMO_OPSET}+), input {shape}")
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
    log(f"graph: opset {opset}, {len(proto.graph.node)} nodes, {len(convs)} Conv ({stored} with kernels as initializers), {bn} BatchNormalization")


def _verify(path: Path, example: Any, expected: Any, opset: int | None, log: Callable[[str], None]) -> float:
    """onnx.checker, then onnxruntime against torch; returns the largest absolute difference."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    log(f"checking {path.name} with onnx.checker")
    onnx.checker.check_model(str(path))  # by path: works for files over 2 GiB and with external data
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        if opset is not None:
            raise OnnxvisError(
                f"onnxruntime {ort.__version__} cannot run the model at opset {opset} ({_reason(exc)}); leave --opset out or try another opset"
            ) from None
        raise
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: example})
    del session
    if got.shape != expected.shape:
        raise RuntimeError(f"onnxruntime gives {OUTPUT_NAME} of shape {list(got.shape)}, torch {list(expected.shape)}")
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    tolerance = 1e-3 * max(1.0, float(np.max(np.abs(expected))))
    log(f"onnxruntime vs torch on a seeded random input: max abs diff {diff:.3g} (tolerance {tolerance:.3g})")
    if not diff <= tolerance:  # also catches NaN
        raise RuntimeError(
            f"the exported model disagrees with torch: max abs diff {diff:.3g} > {tolerance:.3g}; this is a bug in the exporter"
        )
    return diff


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
