"""Write gradient attributions: the heat map over the photo as PNG, the raw attribution as .npy, and TensorBoard images."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.cam.maths import overlay
from onnxvis.analysis.saliency import heat_map
from onnxvis.write.cam import npy_bytes, parse_cam_formats

if TYPE_CHECKING:
    from onnxvis.analysis.saliency import SaliencyResult
    from onnxvis.outdir import OutputDir

__all__ = ["saliency_picture", "saliency_stem", "write_saliency"]


def saliency_stem(result: SaliencyResult) -> str:
    """``saliency_<method>_<image stem>`` (the output folder sanitises it)."""
    return f"saliency_{result.method}_{result.image.stem or 'image'}"


def saliency_picture(result: SaliencyResult) -> np.ndarray:
    """The heat map (Captum's absolute-value scaling, :func:`onnxvis.analysis.saliency.heat_map`) in
    grad-cam's JET colours, blended half and half with the photo: uint8 (H, W, 3)."""
    return overlay(result.rgb, heat_map(result.attribution, result.layout))


def write_saliency(
    results: Iterable[SaliencyResult],
    out: OutputDir,
    formats: str | Sequence[str] = ("png",),
    each: Callable[[SaliencyResult], None] | None = None,
) -> list[Path]:
    """Write each attribution as it comes: ``<stem>.png`` (the heat map over the photo), ``<stem>.npy``
    (the raw attribution: float32, the model input's shape without the batch axis, in its layout)
    and/or the TensorBoard tag ``saliency_<method>`` with one step per image.

    Args:
        each: called with every result once it is written (progress, notes).
    """
    from onnxvis.write.layers import Sinks

    chosen = parse_cam_formats(formats)
    pictures = [f for f in chosen if f != "npy"]
    sinks = Sinks(out, pictures, "saliency") if pictures else None
    written: list[Path] = []
    steps: dict[str, int] = {}
    for result in results:
        stem = saliency_stem(result)
        if sinks is not None:
            tag = f"saliency_{result.method}"
            sinks.add(saliency_picture(result), stem, tag, steps.get(tag, 0))
            steps[tag] = steps.get(tag, 0) + 1
            written.extend(sinks.written)
            sinks.written = []
        if "npy" in chosen:
            written.append(out.write_bytes(out.path_for(stem, ".npy"), npy_bytes(result.attribution.astype(np.float32))))
        if each is not None:
            each(result)
    if sinks is not None:
        written.extend(sinks.close())
    return written
