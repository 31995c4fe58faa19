"""Write class activation maps: the map over the photo as PNG (grad-cam's show_cam_on_image), the
map itself as .npy, and TensorBoard images."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam.maths import overlay
from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.analysis.cam.runs import CamResult
    from onnxvis.outdir import OutputDir

__all__ = ["CAM_FORMATS", "cam_stem", "npy_bytes", "parse_cam_formats", "write_cams"]

CAM_FORMATS = ("png", "npy", "tensorboard")


def parse_cam_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,npy"`` -> ``("png", "npy")``, checked."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
    if "model-explorer" in chosen:
        raise OnnxvisError(
            "a class activation map has no per-node numbers for Model Explorer: it belongs to an image, not to a node of "
            "the graph; onnxvis stats writes the per-node numbers (weights, activations) in Model Explorer's format",
            setting="formats",
        )
    unknown = [i for i in chosen if i not in CAM_FORMATS]
    if unknown or not chosen:
        raise OnnxvisError(
            f"unknown output format {unknown[0] if unknown else ''!r}; choose from {', '.join(CAM_FORMATS)}, e.g. png,npy",
            setting="formats",
        )
    return chosen


def cam_stem(result: CamResult) -> str:
    """``cam_<method>_<image stem>_<idx>_<layer>`` (the output folder sanitises it)."""
    return f"cam_{result.method}_{result.image.stem or 'image'}_{result.place.label}"


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_cams(
    results: Iterable[CamResult],
    out: OutputDir,
    formats: str | Sequence[str] = ("png",),
    each: Callable[[CamResult], None] | None = None,
    written: list[Path] | None = None,
) -> list[Path]:
    """Write each map as it comes: ``<stem>.png`` (the map over the photo), ``<stem>.npy`` (float32
    H x W in [0, 1]) and/or the TensorBoard tag ``cam_<method>/<place>`` with one step per image.

    Args:
        each: called with every result once it is written (metrics, progress).
        written: the list the paths are appended to, as each file is written: the caller keeps
            them when a later map fails (returned too).
    """
    from onnxvis.write.layers import Sinks

    chosen = parse_cam_formats(formats)
    pictures = [f for f in chosen if f != "npy"]
    sinks = Sinks(out, pictures, "cam") if pictures else None
    written = [] if written is None else written
    steps: dict[str, int] = {}
    for result in results:
        stem = cam_stem(result)
        if sinks is not None:
            tag = f"cam_{result.method}/{result.place.label}"
            sinks.add(overlay(result.rgb, result.cam), stem, tag, steps.get(tag, 0))
            steps[tag] = steps.get(tag, 0) + 1
            written.extend(sinks.written)
            sinks.written = []
        if "npy" in chosen:
            written.append(out.write_bytes(out.path_for(stem, ".npy"), npy_bytes(result.cam.astype(np.float32))))
        if each is not None:
            each(result)
    if sinks is not None:
        written.extend(sinks.close())
    return written
