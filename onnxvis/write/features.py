"""Write optimised images (feature visualisation): PNG (a grid per place and one file per channel),
npy, and TensorBoard images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.draw.grids import make_grid, to_uint8
from onnxvis.write.cam import npy_bytes
from onnxvis.write.formats import parse_format_list

if TYPE_CHECKING:
    from onnxvis.analysis.features.run import FeatureImage
    from onnxvis.outdir import OutputDir

__all__ = ["FEATURE_FORMATS", "feature_stem", "parse_feature_formats", "write_features"]

FEATURE_FORMATS = ("png", "npy", "tensorboard")


def parse_feature_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,npy"`` -> ``("png", "npy")``, checked."""
    return parse_format_list(formats, FEATURE_FORMATS, "png,npy")


def feature_stem(image: "FeatureImage", diversity: bool = False) -> str:
    """``features_<place>_c<channel>`` (``_d<k>`` with diversity), e.g. ``features_15_Conv_15_c007``."""
    stem = f"features_{image.place.label}_c{image.channel:03d}"
    return f"{stem}_d{image.copy}" if diversity else stem


def write_features(
    images: Sequence["FeatureImage"], out: "OutputDir", formats: str | Sequence[str] = ("png",), nrow: int = 8
) -> list[Path]:
    """Write one place's images (or several places'): per place a grid ``features_<place>.png`` (channel
    by channel, copies side by side), per image ``features_<place>_c<channel>[_d<k>].png``, with npy
    ``features_<place>.npy`` (float32 (N, size, size, 3) in [0, 1], in the grid's order, and
    ``features_<place>_channels.npy`` the channel of each) and TensorBoard tags ``features/<place>``
    (the grid) and ``features/<place>_c<channel>`` (one step per copy).
    """
    from onnxvis.write.layers import Sinks

    chosen = parse_feature_formats(formats)
    pictures = [f for f in chosen if f != "npy"]
    sinks = Sinks(out, pictures, "features") if pictures else None
    written: list[Path] = []
    places: dict[str, list[FeatureImage]] = {}
    for image in images:
        places.setdefault(image.place.label, []).append(image)
    for label, group in places.items():
        diversity = any(i.copy for i in group)
        stack = np.stack([i.image for i in group]).astype(np.float32)
        copies = max(i.copy for i in group) + 1
        if sinks is not None:
            grid = to_uint8(make_grid(stack.transpose(0, 3, 1, 2), nrow=copies if diversity else nrow, padding=2))
            sinks.add(grid, f"features_{label}", f"features/{label}")
            for i in group:
                sinks.add(i.pixels(), feature_stem(i, diversity), f"features/{label}_c{i.channel:03d}", i.copy)
            written.extend(sinks.written)
            sinks.written = []
        if "npy" in chosen:
            written.append(out.write_bytes(out.path_for(f"features_{label}", ".npy"), npy_bytes(stack)))
            channels = np.asarray([i.channel for i in group], np.int64)
            written.append(out.write_bytes(out.path_for(f"features_{label}_channels", ".npy"), npy_bytes(channels)))
    if sinks is not None:
        written.extend(sinks.close())
    return written
