"""Write what ``onnxvis examples`` found: JSON lines, crop grids and one HTML page to browse them.

Everything here reads an :class:`~onnxvis.analysis.examples.run.ExamplesState` and the photos; the model never
runs, so a finished run is redrawn with another K or tile size in the time it takes to decode the
photos that appear in the top-K sets (each decoded once, whatever the number of layers).

Each tile is the part of the preprocessed photo (after resize and crop, as the model saw it) that
the channel's maximum position sees: its receptive field (:mod:`onnxvis.analysis.examples.receptive`), padded with
black where it reaches past the border. A layer without a receptive field (past a Resize, a
Reshape...) shows the whole photo with the parts where the channel's map is below half its
maximum dimmed, NetDissect's way.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp
from onnxvis.progress import Progress
from onnxvis.write.html import CSP

if TYPE_CHECKING:
    from PIL import Image

    from onnxvis.analysis.examples.receptive import Field
    from onnxvis.analysis.examples.run import ExamplesState, LayerInfo
    from onnxvis.image.preprocess import Preprocess
    from onnxvis.outdir import OutputDir

__all__ = [
    "CHANNELS_PER_FILE", "Layout", "draw_examples", "encode_jpeg", "example_lines", "label_blocks", "layout", "layouts_of",
    "part_name", "shrink_photo", "tile_crop", "tile_masked", "tile_slice",
]

DEFAULT_TILE = 64
_PAD = 2  # pixels between tiles
_GAP = 8  # extra pixels between two channels' rows of tiles
_DIM = 0.3  # brightness outside the mask, for layers without a receptive field
# Tiles of at most this many bytes are drawn in one pass over the photos; more layers take more passes.
_PASS_BYTES = 256 * 1024 * 1024
# The grids are photos: JPEG, at a quality where crops look like their photos.
JPEG_QUALITY = 90


def example_lines(state: "ExamplesState", layer: "LayerInfo", k: int) -> Iterator[str]:
    """The JSON lines of one layer: ``{"channel": C, "top": [{"image", "score", "y", "x"}, ...]}``, best first."""
    scores, images, ys, xs = state.top.entries(layer.output, k)
    for c in range(scores.shape[0]):
        top = [
            {"image": state.catalog[int(i)], "score": float(s), "y": int(y), "x": int(x)}
            for s, i, y, x in zip(scores[c], images[c], ys[c], xs[c], strict=True)
            if i >= 0
        ]
        yield json.dumps({"channel": c, "top": top})


CHANNELS_PER_FILE = 128
"""A wider layer's picture is split over several files of this many channels (SqueezeNet's conv10, 1000
channels at K = 9 over 100 photos, was one 6616x6008 JPEG of 16 MB)."""

_LABEL = 12  # pixels of the band above each row of channel blocks, where each block's channel is written
_ROW_GAP = 6  # extra pixels between two rows of channel blocks


@dataclass(frozen=True)
class Layout:
    """Where each (channel, rank) tile goes in a picture: channels in blocks of K tiles, each block under
    a band that names its channel, several blocks per row so that the picture stays roughly square,
    with gaps between blocks and between rows. ``first``: the picture's first channel (a wide layer
    is split over several pictures, :data:`CHANNELS_PER_FILE` channels each)."""

    channels: int
    k: int
    tile: int
    per_row: int
    first: int = 0

    @property
    def size(self) -> tuple[int, int]:
        rows = math.ceil(self.channels / self.per_row)
        width = self.per_row * (self.k * (self.tile + _PAD) + _GAP) - _GAP + _PAD
        return rows * self._row_height - _ROW_GAP + _PAD, width

    @property
    def _row_height(self) -> int:
        return _LABEL + self.tile + _PAD + _ROW_GAP

    def label_origin(self, channel: int) -> tuple[int, int]:
        """(top, left) of the band that names ``channel``."""
        row, block = divmod(channel - self.first, self.per_row)
        return _PAD + row * self._row_height, _PAD + block * (self.k * (self.tile + _PAD) + _GAP)

    def origin(self, channel: int, rank: int) -> tuple[int, int]:
        """(top, left) of a tile."""
        top, left = self.label_origin(channel)
        return top + _LABEL, left + rank * (self.tile + _PAD)

    @property
    def channel_range(self) -> range:
        return range(self.first, self.first + self.channels)


def layout(channels: int, k: int, tile: int, first: int = 0) -> Layout:
    return Layout(channels, k, tile, max(1, math.ceil(math.sqrt(channels / max(k, 1)))), first)


def layouts_of(channels: int, k: int, tile: int, per_file: int = CHANNELS_PER_FILE) -> list[Layout]:
    """The pictures of a layer: one, or one per ``per_file`` channels."""
    return [layout(min(per_file, channels - first), k, tile, first) for first in range(0, channels, per_file)]


def part_name(stem: str, grid: Layout, parts: int) -> str:
    """``examples_<stem>`` for a layer in one picture, ``examples_<stem>_ch0128-0255`` for a part of a wide one."""
    if parts == 1:
        return f"examples_{stem}"
    return f"examples_{stem}_ch{grid.first:04d}-{grid.first + grid.channels - 1:04d}"


def label_blocks(pixels: np.ndarray, grid: Layout) -> np.ndarray:
    """Write each block's channel number in its band (light grey on the black background)."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for c in grid.channel_range:
        top, left = grid.label_origin(c)
        draw.text((left, top), f"ch {c}", fill=(200, 200, 200), font=font)
    return np.asarray(picture)


def _photo(path: str, preprocess: "Preprocess", layout: str = "NCHW") -> "Image.Image":
    """The image as the model saw it: the photo resized and cropped, or a .npy array shown as a picture."""
    from PIL import Image

    if pp.is_array_file(path):
        return Image.fromarray(pp.array_picture(pp.load_array(path), layout), "RGB")
    return pp.resize_and_crop(pp.load_image(path), preprocess).convert("RGB")


def tile_crop(photo: "Image.Image", box: tuple[int, int, int, int], tile: int) -> np.ndarray:
    """The part of ``photo`` inside ``box`` (top, left, bottom, right; black past the border), as a
    tile x tile uint8 RGB array (the box's longer side fills the tile)."""
    from PIL import Image

    top, left, bottom, right = box
    crop = photo.crop((left, top, right, bottom))  # PIL pads outside the photo with black
    scale = tile / max(bottom - top, right - left)
    w, h = max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))
    resized = crop.resize((w, h), Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX)
    out = np.zeros((tile, tile, 3), np.uint8)
    y0, x0 = (tile - h) // 2, (tile - w) // 2
    out[y0 : y0 + h, x0 : x0 + w] = np.asarray(resized)
    return out


def shrink_photo(photo: "Image.Image", scale: float) -> np.ndarray:
    """The photo scaled by ``scale`` < 1, once per photo and layer: every tile of the layer is then a
    slice of it, instead of one resize per tile."""
    from PIL import Image

    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    return np.asarray(photo.resize(size, Image.Resampling.BOX))


def tile_slice(shrunk: np.ndarray, scale: float, box: tuple[int, int, int, int], tile: int) -> np.ndarray:
    """What :func:`tile_crop` draws, cut from the photo that :func:`shrink_photo` scaled by ``scale`` (black past the border)."""
    top, left, bottom, right = box
    h, w = max(1, round((bottom - top) * scale)), max(1, round((right - left) * scale))
    y0, x0 = (tile - h) // 2, (tile - w) // 2
    top_s, left_s = round(top * scale), round(left * scale)
    out = np.zeros((tile, tile, 3), np.uint8)
    sy0, sx0 = max(top_s, 0), max(left_s, 0)
    sy1, sx1 = min(top_s + h, shrunk.shape[0]), min(left_s + w, shrunk.shape[1])
    if sy1 > sy0 and sx1 > sx0:
        out[y0 + sy0 - top_s : y0 + sy1 - top_s, x0 + sx0 - left_s : x0 + sx1 - left_s] = shrunk[sy0:sy1, sx0:sx1]
    return out


def tile_masked(photo: "Image.Image", mask: np.ndarray, tile: int) -> np.ndarray:
    """The whole photo as a tile, dimmed where the upsampled ``mask`` is below half its maximum."""
    from PIL import Image

    pixels = np.asarray(photo.resize((tile, tile), Image.Resampling.BOX), np.float32)
    values = np.asarray(Image.fromarray(np.asarray(mask, np.float32), "F").resize((tile, tile), Image.Resampling.BILINEAR))
    finite = values[np.isfinite(values)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        keep = values >= lo + 0.5 * (hi - lo) if hi > lo else np.ones(values.shape, bool)
        pixels = pixels * np.where(keep, 1.0, _DIM)[:, :, None]
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def _prefetched(
    paths: list[tuple[int, str]], preprocess: "Preprocess", threads: int, layout: str = "NCHW"
) -> Iterator[tuple[int, "Image.Image"]]:
    """Decode photos in a few threads (PIL releases the GIL), in order, a bounded window ahead."""
    window = 4 * threads
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = []
        for item in paths:
            pending.append((item[0], pool.submit(_photo, item[1], preprocess, layout)))
            if len(pending) >= window:
                image_id, future = pending.pop(0)
                yield image_id, future.result()
        for image_id, future in pending:
            yield image_id, future.result()


def _passes(parts: list[tuple["LayerInfo", Layout]]) -> list[list[tuple["LayerInfo", Layout]]]:
    groups: list[list[tuple[LayerInfo, Layout]]] = []
    size = 0
    for part in parts:
        h, w = part[1].size
        if groups and size + h * w * 3 <= _PASS_BYTES:
            groups[-1].append(part)
            size += h * w * 3
        else:
            groups.append([part])
            size = h * w * 3
    return groups


def draw_grids(
    state: "ExamplesState", k: int, tile: int, progress: bool = False, per_file: int = CHANNELS_PER_FILE
) -> Iterator[tuple["LayerInfo", np.ndarray, Layout]]:
    """Each picture's grid of tiles (uint8 RGB, its blocks labelled) and its layout: per layer, one, or
    one per ``per_file`` channels."""
    fields: dict[str, Field | None] = state.fields
    preprocess = state.preprocess
    parts = [(layer, grid) for layer in state.layers for grid in layouts_of(state.top.channels(layer.output), k, tile, per_file)]
    for group in _passes(parts):
        pictures = {(layer.output, grid.first): np.zeros((*grid.size, 3), np.uint8) for layer, grid in group}
        wanted: dict[int, list[tuple[LayerInfo, Layout, int, int, int, int]]] = {}
        for layer, grid in group:
            _, images, ys, xs = state.top.entries(layer.output, k)
            for c, r in zip(*np.nonzero(images >= 0), strict=True):
                if int(c) in grid.channel_range:
                    wanted.setdefault(int(images[c, r]), []).append((layer, grid, int(c), int(r), int(ys[c, r]), int(xs[c, r])))
        order = [(i, state.catalog[i]) for i in sorted(wanted)]
        with Progress(len(order), "pictures", enabled=None if progress else False) as bar:
            for image_id, photo in _prefetched(order, preprocess, min(4, os.cpu_count() or 1), state.layout):
                shrunk: dict[str, np.ndarray] = {}
                for layer, grid, c, r, y, x in wanted[image_id]:
                    field = fields.get(layer.output)
                    if field is not None:
                        scale = tile / max(field.size)
                        if scale < 1:
                            if layer.output not in shrunk:
                                shrunk[layer.output] = shrink_photo(photo, scale)
                            pixels = tile_slice(shrunk[layer.output], scale, field.box(y, x), tile)
                        else:  # a small field: crop first, then enlarge the few pixels
                            pixels = tile_crop(photo, field.box(y, x), tile)
                    else:
                        payload = state.top.payload(layer.output)
                        if payload is None:
                            raise OnnxvisError(f"layer {layer.name} has neither a receptive field nor stored maps")
                        pixels = tile_masked(photo, payload[c, r], tile)
                    top, left = grid.origin(c, r)
                    pictures[(layer.output, grid.first)][top : top + tile, left : left + tile] = pixels
                bar.advance()
        for layer, grid in group:
            yield layer, label_blocks(pictures.pop((layer.output, grid.first)), grid), grid


def optimised_images(folder: Path, layers: Sequence["LayerInfo"]) -> dict[tuple[str, int], bytes]:
    """The optimised images ``onnxvis features`` wrote into ``folder`` for these layers, by (layer output,
    channel): ``features_<idx>_<layer>_c<channel>.png`` (the first image of a channel with diversity,
    ``_d0``). Shown beside the channel's photos, as Microscope does."""
    import re

    from onnxvis.outdir import sanitize

    found: dict[tuple[str, int], bytes] = {}
    for layer in layers:
        pattern = re.compile(rf"features_{re.escape(sanitize(layer.stem))}_c(\d+)(_d0)?\.png")
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return found
        for name in names:
            match = pattern.fullmatch(name)
            if match is None or (layer.output, int(match.group(1))) in found:
                continue
            try:
                found[(layer.output, int(match.group(1)))] = (folder / name).read_bytes()
            except OSError:
                continue  # unreadable: the page shows the photos alone
    return found


def _html_page(
    state: "ExamplesState", k: int, sections: list[tuple["LayerInfo", bytes, Layout]], optimised: dict[tuple[str, int], bytes] | None = None
) -> str:
    def e(text: object) -> str:
        return html.escape(str(text), quote=True)

    fields = state.fields
    styles = [
        "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f}h2{margin-top:2em}",
        "nav a{margin-right:1em}.ch{display:flex;align-items:center;gap:2px;margin:2px 0}",
        ".ch b{display:inline-block;width:4.5em;text-align:right;margin-right:.6em;font-weight:normal;color:#6e6e73}",
        ".t{flex:none;background-repeat:no-repeat}.note{color:#6e6e73}.f{flex:none;margin-right:8px;outline:2px solid #0071e3}",
    ]
    optimised = optimised or {}
    body = []
    seen = int(state.seen.sum())
    body.append(f"<h1>What excites each channel: {e(Path(state.meta['model']).name)}</h1>")
    body.append(
        f"<p class=note>The {k} images (of {seen} scored) with the highest spatial maximum of each channel, best first, "
        f"each cropped to the receptive field around that maximum. Preprocessing: {e(state.preprocess.describe())}. "
        "Hover a tile for its file and score.</p>"
    )
    if optimised:
        body.append(
            "<p class=note>Framed in blue, first: the image optimised for the channel (onnxvis features, written into this "
            "folder), beside the photos that excite it most.</p>"
        )
    shown = list({layer.output: layer for layer, _, _ in sections}.values())  # a wide layer's parts: one link
    body.append("<nav>" + "".join(f'<a href="#L{layer.index}">{layer.index} {e(layer.name)}</a>' for layer in shown) + "</nav>")
    headed: set[str] = set()
    for layer, png, grid in sections:
        css = f"L{layer.index}" if grid.first == 0 else f"L{layer.index}p{grid.first}"
        styles.append(f".{css}{{width:{grid.tile}px;height:{grid.tile}px;background-image:url(data:image/jpeg;base64,{base64.b64encode(png).decode()})}}")
        if layer.output in headed:
            body.extend(_channel_rows(state, k, layer, grid, css, e, optimised or {}))
            continue
        headed.add(layer.output)
        field = fields.get(layer.output)
        what = (
            f"receptive field {field.size[0]}x{field.size[1]} pixels, stride {field.jump[0]}x{field.jump[1]}"
            if field is not None
            else "no receptive field from the graph: whole photos, dimmed where the map is below half its maximum"
        )
        body.append(f'<h2 id="L{layer.index}">{layer.index} {e(layer.name)}</h2><p class=note>{e(what)}</p>')
        body.extend(_channel_rows(state, k, layer, grid, css, e, optimised or {}))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>examples - {e(Path(state.meta['model']).name)}</title><style>{''.join(styles)}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _channel_rows(
    state: "ExamplesState", k: int, layer: "LayerInfo", grid: Layout, css: str, e, optimised: dict[tuple[str, int], bytes]
) -> list[str]:
    """The page's rows of one picture's channels: each channel's tiles, cut from the picture by CSS, after
    the channel's optimised image where ``onnxvis features`` wrote one."""
    scores, images, _, _ = state.top.entries(layer.output, k)
    rows = []
    for c in grid.channel_range:
        tiles = []
        for r in range(scores.shape[1]):
            if images[c, r] < 0:
                continue
            top, left = grid.origin(c, r)
            title = f"{state.catalog[int(images[c, r])]}\nscore {float(scores[c, r]):.5g}"
            tiles.append(f'<div class="t {css}" style="background-position:-{left}px -{top}px" title="{e(title)}"></div>')
        image = optimised.get((layer.output, c))
        if image is not None:
            tiles.insert(0, f'<img class=f width={grid.tile} height={grid.tile} alt="optimised image of channel {c}" '
                         f'title="optimised image (onnxvis features)" src="data:image/png;base64,{base64.b64encode(image).decode()}">')
        rows.append(f'<div class=ch id="L{layer.index}c{c}"><b>ch {c}</b>{"".join(tiles)}</div>')
    return rows


def encode_jpeg(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of uint8 RGB pixels: photo crops compress to a fraction of a PNG, several times faster."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def draw_examples(
    state: "ExamplesState", out: "OutputDir", k: int, tile: int = DEFAULT_TILE, progress: bool = False,
    per_file: int = CHANNELS_PER_FILE,
) -> list[Path]:
    """Write, per layer, ``examples_<idx>_<layer>.jsonl`` and ``examples_<idx>_<layer>.jpg`` (a layer wider
    than ``per_file`` channels: ``examples_<idx>_<layer>_ch0000-0127.jpg`` and so on), then ``examples.html``;
    returns the paths written.

    Args:
        k: tiles per channel; at most the number of entries the run kept.
        tile: the side of a tile in pixels.
        per_file: channels per picture.

    Raises:
        OnnxvisError: ``k`` or ``tile`` out of range.
    """
    keep = int(state.meta["keep"])
    if not 1 <= k <= keep:
        raise OnnxvisError(f"K must be between 1 and {keep} (the entries this run kept per channel), got {k}", setting="top")
    if not 8 <= tile <= 1024:
        raise OnnxvisError(f"the tile size must be between 8 and 1024 pixels, got {tile}")
    written = []
    for layer in state.layers:
        text = "".join(line + "\n" for line in example_lines(state, layer, k))
        written.append(out.write_bytes(out.path_for(f"examples_{layer.stem}", ".jsonl"), text.encode()))
    sections = []
    counts = {layer.output: len(layouts_of(state.top.channels(layer.output), k, tile, per_file)) for layer in state.layers}
    for layer, grid, grid_layout in draw_grids(state, k, tile, progress, per_file):
        jpeg = encode_jpeg(grid)
        name = part_name(layer.stem, grid_layout, counts[layer.output])
        written.append(out.write_bytes(out.path_for(name, ".jpg"), jpeg))
        sections.append((layer, jpeg, grid_layout))
    sections.sort(key=lambda s: (state.layers.index(s[0]), s[2].first))
    page = _html_page(state, k, sections, optimised_images(out.root, state.layers))
    written.append(out.write_bytes(out.path_for("examples", ".html"), page.encode("utf-8")))
    return written
