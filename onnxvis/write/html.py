"""Pieces of HTML shared by the pages onnxvis writes (the report, the examples page) and the notebook display."""

from __future__ import annotations

import base64
import html

import numpy as np

from onnxvis.write.png import encode_png

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""A Content-Security-Policy for a self-contained page: nothing is fetched, pictures are data URLs."""


def display_scale(width: int, height: int, target: int = 384, most: int = 8) -> int:
    """A whole-number zoom that shows a small grid at about ``target`` pixels, sharp and undistorted."""
    return int(max(1, min(most, target // max(1, width, height))))


def img_tag(pixels: np.ndarray, alt: str) -> str:
    """An ``<img>`` holding ``pixels`` as a PNG data URL, zoomed by :func:`display_scale`, drawn sharp."""
    height, width = pixels.shape[:2]
    scale = display_scale(width, height)
    data = base64.b64encode(encode_png(pixels)).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" width="{width * scale}" height="{height * scale}" '
        f'style="image-rendering:pixelated" alt="{html.escape(alt)}">'
    )
