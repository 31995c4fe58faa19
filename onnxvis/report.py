"""One self-contained HTML report of a model: summary, weight statistics, kernels, feature maps, predictions.

Everything is inside the one file: pictures are PNG (and the photos JPEG) data URLs, charts are
inline SVG, the style sheet is inline, and there is no script. A Content-Security-Policy in the page
forbids fetching anything, so the report opens the same offline, from e-mail or from a CI artefact.

The pictures are the ones the ``kernels`` and ``fmaps`` commands write, made by the same functions
(:func:`onnxvis.write.layers.kernel_pixels`, :func:`onnxvis.draw.grids.fmap_grid`). To keep the file a sensible
size on big models, kernel grids are capped at :data:`REPORT_MAX_TILES` tiles per layer (the first
output channels; ``--max-tiles`` changes it) and each picture says when it is cut.
"""

from __future__ import annotations

import base64
import html
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.analysis.stats import DEAD_FRACTION, WeightStats, weight_stats
from onnxvis.draw.colormaps import check_colormap
from onnxvis.draw.grids import AUTO, GridOptions, columns_for, fmap_pixels
from onnxvis.draw.layers import check_max_tiles, in_rgb_order, kernel_pixels
from onnxvis.engine.classes import TOP_K, check_class_scores, top_k
from onnxvis.errors import OnnxvisError
from onnxvis.model.layers import channels_first, layer_title, no_conv_layer, require_main_graph
from onnxvis.model.metadata import labels_from_metadata  # noqa: F401  (re-exported: the report's readers used it from here)
from onnxvis.progress import Progress
from onnxvis.write.html import CSP, img_tag

if TYPE_CHECKING:
    from onnxvis.analysis.cam.runs import Cam
    from onnxvis.engine.classes import ClassNames
    from onnxvis.engine.inspector import ImageResult, Inspector
    from onnxvis.model.layers import ConvLayer
    from onnxvis.outdir import OutputDir

REPORT_MAX_TILES = 8192
"""Tiles per kernel grid in a report: VGG16's 512x512 layers show their first 16 filters."""
_THUMBNAIL = 256
# Feature-map grids wider than this, or with more pixels, are shown at 1/2, 1/3, ... resolution.
_FMAP_WIDTH = 1024
_FMAP_PIXELS = 1_000_000

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationStats:
    """Per-channel statistics of one layer's feature maps for one image (arrays of length C)."""

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    positive: np.ndarray  # fraction of values > 0

    @property
    def silent(self) -> int:
        """Channels with no positive value: all zero after a ReLU."""
        return int(np.count_nonzero(self.max <= 0))


def activation_stats(maps: np.ndarray) -> ActivationStats:
    flat = np.asarray(maps, dtype=np.float32).reshape(maps.shape[0], -1)
    return ActivationStats(
        flat.min(axis=1), flat.max(axis=1), flat.mean(axis=1, dtype=np.float64), flat.std(axis=1, dtype=np.float64),
        (flat > 0).mean(axis=1),
    )


# ------------------------------------------------------------------------------------------------
# HTML pieces
# ------------------------------------------------------------------------------------------------

_CSS = """
.chan{display:flex;align-items:center;gap:3px;margin:3px 0}.chan b{width:4em;font-weight:normal;color:#6e6e73}
.opt{outline:2px solid #0071e3;margin-right:8px}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;
background:#fff;margin:0 auto;max-width:1280px;padding:1em 2em 4em}
h1{font-size:1.6em;margin:.6em 0 .2em}h2{margin-top:1.8em;border-bottom:2px solid #e5e5e5;padding-bottom:.2em}
h3{margin:1.4em 0 .4em;font-size:1.05em}
table{border-collapse:collapse;font-size:12px;margin:.4em 0}
th,td{padding:2px 7px;border-bottom:1px solid #e5e5e5;text-align:right;vertical-align:middle;white-space:nowrap}
th{background:#f5f5f7;position:sticky;top:0}
.l{text-align:left}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em;margin:.6em 0}dt{color:#6e6e73}dd{margin:0;word-break:break-word}
figure{margin:.6em 0 1.4em;overflow-x:auto}figure img{image-rendering:pixelated;border:1px solid #e5e5e5;background:#fafafa;display:block}
figcaption{color:#6e6e73;font-size:12.5px}
.photo img{image-rendering:auto}
.side{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
.warn{color:#b3261e}.note{color:#6e6e73}
nav a{margin-right:1em}
details{margin:.3em 0 1em}summary{cursor:pointer;color:#0066cc}
.scroll{overflow-x:auto;max-width:100%}
.bar{display:inline-block;height:10px;background:#0066cc;vertical-align:middle}
"""



def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:.4g}"


def _photo(rgb: np.ndarray, name: str) -> str:
    """The photo as the model saw it (after resizing and cropping), as a JPEG data URL."""
    from PIL import Image

    img = Image.fromarray(rgb)
    img.thumbnail((_THUMBNAIL, _THUMBNAIL))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{data}" width="{img.width}" height="{img.height}" alt="{_e(name)}">'


def _bars_svg(values: np.ndarray, width: int = 150, height: int = 18, marked: np.ndarray | None = None) -> str:
    """A tiny bar chart as inline SVG: one bar per value, from zero (signed values around a middle line)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    if values.size == 0:
        return ""
    low, high = min(0.0, float(values.min())), max(0.0, float(values.max()))
    span = (high - low) or 1.0
    zero = height * high / span
    step = width / values.size
    path = []
    for i, v in enumerate(values):
        x = (i + 0.5) * step
        path.append(f"M{x:.1f} {zero:.1f}V{zero - v / span * height:.1f}")
    stroke = max(0.6, min(4.0, step * 0.8))
    parts = [f'<path d="{"".join(path)}" stroke="#0066cc" stroke-width="{stroke:.2f}"/>']
    if marked is not None and marked.any():
        ticks = "".join(f"M{(i + 0.5) * step:.1f} {height}V{height - 4}" for i in np.flatnonzero(marked))
        parts.append(f'<path d="{ticks}" stroke="#b3261e" stroke-width="{max(1.0, stroke):.2f}"/>')
    if low < 0:
        parts.append(f'<path d="M0 {zero:.1f}H{width}" stroke="#999" stroke-width="0.5"/>')
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(parts)}</svg>'
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> str:
    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(f'<{tag}{" class=l" if i in left else ""}>{c}</{tag}>' for i, c in enumerate(row))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<div class=scroll><table><thead><tr>{cells('th', [_e(h) for h in head])}</tr></thead><tbody>{body}</tbody></table></div>"


# ------------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    layer: "ConvLayer"
    stats: WeightStats | None
    picture: str  # HTML of the kernel grid, or the reason there is none


def _summary(rows: Sequence[tuple[str, str]]) -> str:
    """The Inspector's summary rows as a definition list (a row without a key continues the one above)."""
    merged: list[list[str]] = []
    for key, value in rows:
        if key or not merged:
            merged.append([key, value])
        else:
            merged[-1][1] += f" {value}"
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in merged) + "</dl>"


def _layer_table(entries: list[_Layer]) -> str:
    head = ["#", "name", "op", "weight", "stride", "group", "stored as", "min", "max", "mean", "std",
            "filter norms", "norm min / median / max", "near-dead"]
    rows = []
    for entry in entries:
        layer, s = entry.layer, entry.stats
        shape = "x".join(map(str, layer.weight_shape)) if layer.weight_shape else "?"
        row = [str(layer.index), f'<a href="#k{layer.index}">{_e(layer.name)}</a>', _e(layer.op_type), shape,
               "x".join(map(str, layer.strides)), str(layer.group), _e(layer.source.describe() if layer.source else "?")]
        if s is None:
            row += ["-"] * 7
        else:
            median = float(np.median(s.norms))
            row += [_num(s.min), _num(s.max), _num(s.mean), _num(s.std), _bars_svg(s.norms, marked=s.dead),
                    f"{_num(float(s.norms.min()))} / {_num(median)} / {_num(float(s.norms.max()))}",
                    f'<span class="warn">{s.near_dead}</span>' if s.near_dead else "0"]
        rows.append(row)
    return _table(head, rows, left=(1, 2, 6))


def _norms_details(entries: list[_Layer]) -> str:
    parts = []
    for entry in entries:
        if entry.stats is None:
            continue
        values = ", ".join(_num(float(v)) for v in entry.stats.norms)
        parts.append(f"<p><b>{entry.layer.index} {_e(entry.layer.name)}</b>: {values}</p>")
    return "<details><summary>the norm of every filter, in order</summary>" + "".join(parts) + "</details>"


def _kernel_section(layer: "ConvLayer", weight: np.ndarray, grid: GridOptions, max_tiles: int, colormap: str) -> str:
    pixels, picture = kernel_pixels(weight, grid, max_tiles, colormap)
    caption = f"{picture.layout}"
    if picture.truncated:
        # names a flag: the page that `onnxvis report` writes says which of its options lifts the cap (no message)
        caption += f"; the first {picture.shown_out_channels} of {picture.total_out_channels} filters (--max-tiles)"
    title = layer_title(layer, "kernels")
    return f'<figure id="k{layer.index}"><figcaption><b>{_e(title)}</b> - {_e(caption)}</figcaption>{img_tag(pixels, title)}</figure>'


def _shrink(maps: np.ndarray, grid: GridOptions) -> tuple[np.ndarray, int]:
    """Average k x k blocks of each map so that the grid is at most about _FMAP_WIDTH pixels wide
    and _FMAP_PIXELS pixels in all."""
    if maps.ndim != 3:
        return maps, 1
    c, h, w = maps.shape
    columns = columns_for(grid.nrow, c, h + grid.padding, w + grid.padding)
    width = columns * (w + grid.padding)
    pixels = c * (h + grid.padding) * (w + grid.padding)
    k = max(-(-width // _FMAP_WIDTH), int(np.ceil(np.sqrt(pixels / _FMAP_PIXELS))))
    if k <= 1 or min(h, w) < 2 * k:
        return maps, 1
    blocks = maps[:, : h // k * k, : w // k * k].reshape(c, h // k, k, w // k, k)
    return blocks.mean(axis=(2, 4), dtype=np.float32), k


def _activation_table(stats: ActivationStats) -> str:
    rows = [
        [str(c), _num(float(stats.min[c])), _num(float(stats.max[c])), _num(float(stats.mean[c])), _num(float(stats.std[c])),
         f'{stats.positive[c] * 100:.1f}% <span class="bar" style="width:{stats.positive[c] * 60:.0f}px"></span>']
        for c in range(stats.min.shape[0])
    ]
    return _table(["channel", "min", "max", "mean", "std", "> 0"], rows, left=())


def _image_section(
    number: int, inspector: "Inspector", result: "ImageResult", layers: Sequence["ConvLayer"], grid: GridOptions,
    predictions: str, full_paths: bool,
) -> str:
    prepared = result.prepared
    shown_name = str(result.image) if full_paths else result.image.name
    parts = [f'<h2 id="image{number}">Image {number + 1}: {_e(result.image.name)}</h2>',
             f'<div class=side><figure class="photo">{_photo(prepared.rgb, result.image.name)}'
             f"<figcaption>{_e(shown_name)}</figcaption></figure>"
             f"<div>{predictions}</div></div>",
             f"<p class=note>preprocessing: {_e(prepared.describe_preprocessing())}; {_e(inspector.image_input.describe())}</p>"]
    for layer in layers:
        maps = channels_first(layer, result.values[layer.output_name])
        stats = activation_stats(maps)
        shown, k = _shrink(maps, grid)
        pixels = fmap_pixels(shown, grid)
        title = layer_title(layer, "feature maps")
        shape = "x".join(map(str, maps.shape))
        silent = f'; <span class="warn">{stats.silent} silent</span> (no value above 0)' if stats.silent else ""
        scaled = (f"<figcaption>shown at 1/{k} resolution (the mean of {k}x{k} blocks); onnxvis fmaps writes them in full</figcaption>"
                  if k > 1 else "")
        parts.append(
            f"<h3>{_e(title)}</h3><p class=note>maps {shape}; per-channel mean {_bars_svg(stats.mean, 240, 28)}{silent}</p>"
            f"<figure>{img_tag(pixels, title)}{scaled}</figure>"
            f"<details><summary>activation statistics of the {maps.shape[0]} channels</summary>{_activation_table(stats)}</details>"
        )
    return "\n".join(parts)


@dataclass(frozen=True)
class _CamPlan:
    """What the report's one pass over an image adds for its class activation map: the forward method's
    :class:`Cam`, or, for a gradient method (its own forward and backward pass per image), AblationCAM's
    as the fallback where the model cannot be differentiated."""

    method: str
    cams: "Cam"
    places: list
    output: str
    gradient: bool


def _cam_plan(inspector: "Inspector", method: str | None) -> "_CamPlan | str | None":
    """The CAM of each image, whose tensors are taken in the same pass as the feature maps; or why
    there is no CAM (which the page says under each image; nothing is printed, so that an error of
    the run stays one line)."""
    if not method:
        return None
    from onnxvis.analysis.cam.gradmaths import GRADIENT_METHODS
    from onnxvis.analysis.cam.runs import Cam, default_layer, places_for

    try:
        output = inspector.class_output()
        places = places_for(inspector, [default_layer(inspector, output)])
        if method in GRADIENT_METHODS:
            fallback = Cam(inspector, places, output=output, method="ablation")
            return _CamPlan(method, fallback, [] if method == "fullgrad" else places, output, True)
        return _CamPlan(method, Cam(inspector, places, output=output, method=method), places, output, False)
    except OnnxvisError as exc:
        return str(exc)


def _cam_section(inspector: "Inspector", result: "ImageResult", plan: "_CamPlan | str") -> str:
    """One class activation map of the image over the photo (the last spatial conv layer, the predicted class)."""
    from onnxvis.analysis.cam.maths import overlay

    if isinstance(plan, str):
        return f"<h3>Where the model looks</h3><p class=warn>no class activation map: {_e(plan)}</p>"
    why_not = ""
    cam = None
    method = plan.method
    how = "from one forward and one backward pass (onnx-ad's backward graph in onnxruntime)"
    if plan.gradient:
        from onnxvis.analysis.cam.gradcams import gradient_cams_of

        try:
            cam = gradient_cams_of(inspector, result.prepared, plan.places, plan.method, output=plan.output)[0]
        except OnnxvisError as exc:
            why_not = f"<p class=warn>no {_e(plan.method)} CAM: {_e(exc)}; AblationCAM instead</p>"
    if cam is None:
        values = {name: result.values[name][None] for name in plan.cams.tensors}
        try:
            (cam,) = plan.cams.maps(result.prepared, values)
        except OnnxvisError as exc:
            return f"<h3>Where the model looks</h3>{why_not}<p class=warn>no class activation map: {_e(exc)}</p>"
        method, how = plan.cams.method.name, "from forward passes"
    label = f" ({cam.target_label})" if cam.target_label else ""
    title = f"Where the model looks: {method} CAM of class {cam.target}{label} at {cam.place.label}"
    # names a flag: the page tells a reader of the report which command-line choice draws another map
    blank = (f"<p class=warn>the map is all zeros: the {_e(method)} method finds nothing at {_e(cam.place.label)} for class "
             f"{cam.target}; <code>onnxvis cam</code> takes another layer (<code>--layers</code>, <code>--tensor</code>) or "
             f"target (<code>--target</code>)</p>") if cam.blank else ""
    return (f"<h3>{_e(title)}</h3>{why_not}<p class=note>pytorch-grad-cam's {_e(method)} method, {how}; "
            f"red is where the class score depends most; <code>onnxvis cam</code> writes it in full</p>{blank}"
            f"<figure>{img_tag(overlay(cam.rgb, cam.cam), title)}</figure>")


def _features_section(layers: Sequence["ConvLayer"], folder: Path, k: int = 5) -> str:
    """Each channel's optimised image (``onnxvis features``' PNGs in ``folder``) beside its top photos (an ``onnxvis
    examples`` run's state in the same folder), where they exist: Microscope's two views of a channel."""
    from types import SimpleNamespace

    from onnxvis.analysis.examples.run import STATE_FILE, load_state
    from onnxvis.write.examples import optimised_images

    infos = [SimpleNamespace(stem=f"{layer.index:02d}_{layer.name}", output=layer.output_name) for layer in layers]
    found = optimised_images(folder, infos)  # type: ignore[arg-type]
    if not found:
        return ""
    state = None
    if (folder / STATE_FILE).is_file():
        try:
            state = load_state(folder)
        except OnnxvisError:
            state = None
    parts = ['<h2 id="features">What the channels want to see</h2><p class=note>Framed in blue: the image optimised for '
             "the channel (onnxvis features); after it, where an onnxvis examples run in the same folder has them, the photos "
             "that excite the channel most, best first.</p>"]
    for layer in layers:
        chans = sorted(c for (out, c) in found if out == layer.output_name)
        if not chans:
            continue
        parts.append(f"<h3>{_e(layer_title(layer, 'optimised images'))}</h3>")
        entries = state.top.entries(layer.output_name, k) if state is not None and layer.output_name in state.top.names else None
        for c in chans:
            data = base64.b64encode(found[(layer.output_name, c)]).decode("ascii")
            row = [f'<img class=opt src="data:image/png;base64,{data}" width=96 height=96 alt="optimised image of channel {c}">']
            if entries is not None and c < entries[0].shape[0]:
                for image_id in entries[1][c]:
                    if image_id >= 0:
                        row.append(_thumb(state.catalog[int(image_id)]))  # type: ignore[union-attr]
            parts.append(f'<div class=chan><b>ch {c}</b>{"".join(row)}</div>')
    return "\n".join(parts)


def _thumb(path: str, side: int = 96) -> str:
    """A photo, its centre square shrunk to ``side`` pixels, as a JPEG data URL (empty when it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            img = opened.convert("RGB")
    except (OSError, ValueError):
        return ""
    square = min(img.size)
    left, top = (img.width - square) // 2, (img.height - square) // 2
    img = img.crop((left, top, left + square, top + square)).resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{data}" width={side} height={side} alt="{_e(Path(path).name)}" title="{_e(path)}">'


def _predictions(output: str, scores: np.ndarray, labels: Sequence[str], names: "ClassNames | None" = None) -> str:
    """The top-5 table of one image's class scores; a guess of the class names is said in its heading."""
    best = top_k(scores, labels, TOP_K)
    rows = [[str(i + 1), _e(name if name is not None else index), str(index), f"{p * 100:.2f}%",
             f'<span class="bar" style="width:{p * 200:.0f}px"></span>']
            for i, (index, name, p) in enumerate(best)]
    named = f"; names: {names.describe()}" if names is not None and names.guessed else ""
    heading = f"<h3 style=\"margin-top:.6em\">Top-{len(best)} predictions ({_e(output)}{_e(named)})</h3>"
    return heading + _table(["#", "class", "index", "probability", ""], rows, left=(1, 4))


def build_report(
    inspector: "Inspector",
    images: Sequence[str | Path] = (),
    fmap_layers: Sequence["ConvLayer"] | None = None,
    grid: GridOptions | None = None,
    colormap: str = "grey",
    max_tiles: int = REPORT_MAX_TILES,
    full_paths: bool = False,
    progress: bool = False,
    log: Log = _stderr,
    cam_method: str | None = "grad",
    rgb_from_bgr: Sequence["ConvLayer"] = (),
    features_folder: Path | None = None,
) -> str:
    """The report's HTML text.

    Each image runs once: one pass of the model gives the chosen layers' feature maps and, when the
    model carries labels, the class scores for the top-5.

    Args:
        inspector: the opened model, with its preprocessing settled.
        images: photos to run; none gives a report of the weights alone.
        fmap_layers: the layers whose feature maps are shown (default: the first conv layer).
        grid: make_grid options for kernels and feature maps.
        colormap: "grey" or "diverging", for the kernels.
        max_tiles: tiles per kernel grid (0: no cap).
        full_paths: show the full paths of the model and the images, not only their file names.
        progress: show a progress bar on stderr when it is a terminal.
        log: where messages go.
        cam_method: the class activation map drawn for each image (default Grad-CAM, as the command; AblationCAM
            where the model cannot be differentiated; see :mod:`onnxvis.analysis.cam.maths`), None for none.
        rgb_from_bgr: layers whose kernels are drawn with their 3 input channels reversed, B, G, R to R, G, B
            (the convs that read a BGR image: see :meth:`Inspector.bgr_layers`).
        features_folder: where ``onnxvis features`` (and ``onnxvis examples``) wrote: their channels' optimised
            images, beside their top photos, get a section of their own.

    Raises:
        OnnxvisError: the model has no conv layer, or an image cannot be used.
    """
    check_colormap(colormap)
    check_max_tiles(max_tiles)
    grid = grid or GridOptions(nrow=AUTO)
    layers = inspector.layers
    if not layers:
        raise no_conv_layer(str(inspector.model.path), "there is nothing to report; 'onnxvis info MODEL' describes its inputs and outputs")
    chosen = list(fmap_layers) if fmap_layers else layers[:1]
    require_main_graph(chosen)
    labels = inspector.labels
    output = None
    if labels and images:
        try:
            output = inspector.score_output()
        except OnnxvisError as exc:
            log(f"no predictions: {exc}")
    entries: list[_Layer] = []
    image_parts: list[str] = []
    with Progress(len(layers) + len(images), "report", enabled=None if progress else False) as bar:
        say = bar.write if bar.enabled else log
        for layer in layers:
            try:
                weight = inspector.kernels(layer)
            except OnnxvisError as exc:
                say(f"layer {layer.index} ({layer.name}): no kernels: {exc}")
                entries.append(_Layer(layer, None, f'<p id="k{layer.index}" class=warn>{layer.index} {_e(layer.name)}: {_e(exc)}</p>'))
            else:
                drawn = in_rgb_order(weight) if layer in rgb_from_bgr else weight
                entries.append(_Layer(layer, weight_stats(weight), _kernel_section(layer, drawn, grid, max_tiles, colormap)))
            bar.advance(f"kernels {layer.name}")
        if images:
            # One pass per image gives the feature maps, the scores and what the CAM starts from.
            plan = _cam_plan(inspector, cam_method)
            targets = [layer.output_name for layer in chosen] + ([output] if output else [])
            if plan is not None and not isinstance(plan, str):
                targets += plan.cams.tensors
            for number, result in enumerate(inspector.run(images, list(dict.fromkeys(targets)))):
                if output:
                    check_class_scores(result.values[output], output)
                    inspector.check_labels(result.values[output])
                table = _predictions(output, result.values[output], labels or [], inspector.class_names) if output else ""
                image_parts.append(_image_section(number, inspector, result, chosen, grid, table, full_paths))
                if plan is not None:
                    image_parts[-1] += _cam_section(inspector, result, plan)
                bar.advance(f"image {result.image.name}")
    features = _features_section(layers, Path(features_folder)) if features_folder is not None else ""
    return _page(inspector, entries, image_parts, colormap, full_paths, features)


def _page(
    inspector: "Inspector", entries: list[_Layer], image_parts: list[str], colormap: str, full_paths: bool, features: str = ""
) -> str:
    model = inspector.model
    title = f"onnxvis report: {model.path.name}"
    nav = ['<a href="#summary">summary</a>', '<a href="#layers">conv layers</a>', '<a href="#kernels">kernels</a>']
    nav += [f'<a href="#image{i}">image {i + 1}</a>' for i in range(len(image_parts))]
    if features:
        nav.append('<a href="#features">what the channels want to see</a>')
    cmap_note = ("Diverging colour map centred on zero: blue negative, white zero, red positive; each tile scaled by its largest magnitude."
                 if colormap == "diverging"
                 else "Each tile min-max scaled on its own, as torchvision's make_grid(normalize=True, scale_each=True).")
    images = "\n".join(image_parts) if image_parts else (
        '<h2 id="images">Feature maps</h2><p class=note>No image given: run <code>onnxvis report MODEL IMAGE ...</code> '
        "to see feature maps, their statistics and the predictions.</p>")
    try:
        rows = inspector.summary(full_paths=full_paths)
    except OnnxvisError as exc:  # a preprocessing that cannot be settled still leaves the weights to report
        rows = [("model", model.path.name), ("preproc", f"none: {exc}")]
    weights = sum(layer.weight_count or 0 for layer in inspector.layers)
    rows.append(("kernel weights", f"{weights:,}"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="onnxvis">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<nav>{" ".join(nav)}</nav>
<h2 id="summary">Model</h2>
{_summary(rows)}
<h2 id="layers">Conv layers and their weights</h2>
<p class=note>Filter norms: the L2 norm of each output channel's kernel, one bar per filter; a red tick marks a near-dead
filter (norm below {DEAD_FRACTION:g} of the layer's median filter norm).</p>
{_layer_table(entries)}
{_norms_details(entries)}
<h2 id="kernels">Kernels</h2>
<p class=note>{_e(cmap_note)}</p>
{"".join(entry.picture for entry in entries)}
{images}
{features}
</body></html>
"""


def write_report(out: "OutputDir", text: str, name: str = "report") -> Path:
    """Write the report as ``<name>.html`` in the output folder, atomically."""
    return out.write_bytes(out.path_for(name, ".html"), text.encode("utf-8"))
