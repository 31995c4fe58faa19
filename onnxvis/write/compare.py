"""What ``onnxvis compare`` writes: one HTML page, JSON lines, CSV, PNG pictures and a TensorBoard run.

Everything is made in memory from a finished :class:`~onnxvis.analysis.compare.run.Comparison`, then
written through :class:`~onnxvis.outdir.OutputDir` (atomic files, inside the output folder), so a
run that fails writes nothing.

Files, by ``--format``:

- ``html``: ``compare.html``, self-contained (pictures as data URLs, inline SVG, no script).
- ``jsonl``: ``compare.jsonl``, one line per matched layer in A's graph order; ``compare_images.jsonl``,
  one line per image; ``compare_summary.json``: the outputs compared and the unmatched layers. An
  infinite SQNR (equal tensors) is written ``Infinity``, as Python's json module writes and reads it.
- ``csv``: ``compare.csv``, the layer lines' numbers, one row per matched layer.
- ``png``: ``kernels_<idx>_<layer>.png`` and ``fmaps_<idx>_<layer>.png`` for the worst layers.
- ``tensorboard``: the same pictures, and the SQNRs as scalars whose step is the layer's index.
- ``model-explorer``: node data for Google's Model Explorer (see :mod:`onnxvis.write.nodedata`): the
  weight and the output SQNR of each matched layer, once on A's graph and once on B's
  (``nodedata_weight_sqnr_db_a.json``, ``..._b.json``, ``nodedata_output_sqnr_db_a.json``, ``..._b.json``),
  each keyed by the node ids model-explorer-onnx gives that model. Open a file with its own model. An
  exact layer (infinite SQNR) is written 1e308, the largest number JSON holds: it takes the
  faithful end of the colour scale.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxvis.draw.compare import Picture, fmap_comparison, kernel_comparison
from onnxvis.errors import OnnxvisError
from onnxvis.outdir import sanitize
from onnxvis.write.html import CSP, img_tag
from onnxvis.write.nodedata import SQNR_DB, NodeMetric, node_data_bytes, node_data_name
from onnxvis.write.png import encode_png

if TYPE_CHECKING:
    from onnxvis.analysis.compare.run import Comparison, LayerResult
    from onnxvis.outdir import OutputDir

__all__ = ["FORMATS", "parse_formats", "layer_record", "layer_lines", "build_outputs", "write_comparison"]

FORMATS = ("html", "jsonl", "csv", "png", "tensorboard", "model-explorer")
DEFAULT_CHANNELS = 16
_MAX_FLIPS_SHOWN = 200
_CSV_FIELDS = [
    "index", "layer", "layer_b", "op", "op_b", "matched_by", "weight", "weight_b", "output", "output_b",
    "weight_sqnr_db", "weight_max_abs_error", "weight_norm_change",
    "activation_sqnr_db", "activation_cosine", "activation_max_abs_error", "images",
]


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"html,jsonl"`` -> ``("html", "jsonl")``, checked."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen: list[str] = []
    for item in (str(i).strip().lower() for i in items):
        if not item:
            continue
        if item not in FORMATS:
            raise OnnxvisError(f"unknown output format {item!r}; choose from {', '.join(FORMATS)}, e.g. html,jsonl")
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise OnnxvisError(f"no output format given; choose from {', '.join(FORMATS)}")
    return tuple(chosen)


# ------------------------------------------------------------------------------------ numbers


def _float(x: float | None) -> float | None:
    return None if x is None else float(x)


def layer_record(layer: "LayerResult") -> dict[str, Any]:
    """The JSON line of one matched layer."""
    a, b, w, act = layer.pair.a, layer.pair.b, layer.weights, layer.activation
    record: dict[str, Any] = {
        "index": a.index,
        "layer": a.label,
        "layer_b": b.label,
        "op": a.op_type,
        "op_b": b.op_type,
        "matched_by": layer.pair.how,
        "weight": a.stored_name,
        "weight_b": b.stored_name,
        "weight_shape": list(a.shape) if a.shape else None,
        "output": layer.probe_a.tensor,
        "output_b": layer.probe_b.tensor,
        "compared_at": {"a": layer.probe_a.where, "b": layer.probe_b.where},
        "weight_sqnr_db": _float(w.sqnr_db) if w else None,
        "weight_max_abs_error": _float(w.max_abs_error) if w else None,
        "weight_norm_change": _float(w.norm_change) if w else None,
        "weight_problem": layer.weight_problem,
        "channel_weight_sqnr_db": w.channel_sqnr_db.tolist() if w else None,
        "channel_weight_max_abs_error": w.channel_max_abs_error.tolist() if w else None,
        "channel_weight_norm_change": w.channel_norm_change.tolist() if w else None,
        "activation_sqnr_db": _float(layer.activation_sqnr_db),
        "activation_cosine": act.cosine if act is not None and act.comparable else None,
        "activation_max_abs_error": act.max_abs_error if act is not None and act.comparable else None,
        "activation_problem": layer.activation_problem if layer.activation_sqnr_db is None else None,
        "images": act.images if act is not None else 0,
    }
    return record


def _image_record(diff, full_paths: bool) -> dict[str, Any]:
    def top(t):
        return None if t is None else {"class": t[0], "label": t[1], "score": t[2]}

    return {"image": str(diff.image if full_paths else diff.image.name), "path": str(diff.image), "top_a": top(diff.top_a),
            "top_b": top(diff.top_b), "flipped": diff.flipped, "kl": diff.kl, "noise": diff.noise}


def _unmatched(entries) -> list[dict[str, Any]]:
    return [{"layer": layer.label, "op": layer.op_type, "weight": layer.stored_name,
             "weight_shape": list(layer.shape) if layer.shape else None, "reason": reason} for layer, reason in entries]


def summary_record(result: "Comparison", full_paths: bool = False) -> dict[str, Any]:
    classes = result.classes
    flips = [d for d in result.images if d.flipped]
    return {
        "model_a": str(result.model_a.path if full_paths else result.model_a.path.name),
        "model_b": str(result.model_b.path if full_paths else result.model_b.path.name),
        "preprocess_a": {"settings": result.preprocess_a.preprocess.describe(), "origin": result.preprocess_a.origin},
        "preprocess_b": {"settings": result.preprocess_b.preprocess.describe(), "origin": result.preprocess_b.origin},
        "layers_matched": len(result.layers),
        "images": len(result.images),
        "class_output_a": classes.output_a,
        "class_output_b": classes.output_b,
        "classes_problem": classes.problem,
        "top1_agreement": classes.agreement,
        "mean_kl": classes.mean_kl,
        "flips": [_image_record(d, full_paths) for d in flips],
        "unmatched_a": _unmatched(result.matching.unmatched_a),
        "unmatched_b": _unmatched(result.matching.unmatched_b),
        "worst_image": str(result.worst_image.image if full_paths else result.worst_image.image.name) if result.worst_image else None,
        "ranked": [layer.pair.a.label for layer in result.ranked()],
    }


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "inf" if value == math.inf else ("-inf" if value == -math.inf else repr(value))
    return str(value)


def csv_text(result: "Comparison") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    for layer in result.layers:
        record = layer_record(layer)
        writer.writerow([_csv_value(record[f]) for f in _CSV_FIELDS])
    return buffer.getvalue()


def _db(x: float | None) -> str:
    if x is None:
        return "-"
    return "inf" if x == math.inf else f"{x:.2f}"


def _g(x: float | None) -> str:
    if x is None:
        return "-"
    return "0" if x == 0 else f"{x:.4g}"


def layer_lines(result: "Comparison") -> list[str]:
    """The text table, one line per layer in A's graph order (the unmatched ones too), for the terminal."""
    by_index = {layer.index: layer for layer in result.layers}
    unmatched = {layer.index: reason for layer, reason in result.matching.unmatched_a}
    width = max([5, *(len(layer.pair.a.label) for layer in result.layers), *(len(layer.label) for layer, _ in result.matching.unmatched_a)])
    lines = [f"{'idx':>3}  {'layer':<{width}}  {'weight SQNR':>11}  {'output SQNR':>11}  {'cosine':>9}  {'max error':>10}  B layer"]
    everything = sorted([(layer.index, layer.pair.a.label) for layer in result.layers]
                        + [(layer.index, layer.label) for layer, _ in result.matching.unmatched_a])
    for index, label in everything:
        layer = by_index.get(index)
        if layer is None:
            lines.append(f"{index:>3}  {label:<{width}}  unmatched: {unmatched[index]}")
            continue
        act = layer.activation
        cosine = f"{act.cosine:.6f}" if act is not None and act.comparable else "-"
        max_err = _g(act.max_abs_error) if act is not None and act.comparable else "-"
        lines.append(f"{index:>3}  {label:<{width}}  {_db(layer.weight_sqnr_db):>8} dB  {_db(layer.activation_sqnr_db):>8} dB  "
                     f"{cosine:>9}  {max_err:>10}  {layer.pair.b.label}")
    for only_b, reason in result.matching.unmatched_b:
        lines.append(f"  -  {'':<{width}}  B's {only_b.label} unmatched: {reason}")
    return lines


# ------------------------------------------------------------------------------------ pictures


@dataclass(frozen=True)
class _Drawn:
    kind: str  # "kernels" or "fmaps"
    layer: "LayerResult"
    picture: Picture
    caption: str

    @property
    def stem(self) -> str:
        return f"{self.kind}_{self.layer.index:02d}_{self.layer.pair.a.label}"


def _channel_list(rows: list[int], values: np.ndarray | None, unit: str = "dB") -> str:
    if values is None:
        return ", ".join(map(str, rows))
    return ", ".join(f"{r} ({_db(float(values[r]))}{' ' + unit if values[r] != math.inf else ''})" for r in rows[:6]) + (
        ", ..." if len(rows) > 6 else "")


def _pictures(result: "Comparison", worst: int, channels: int) -> list[_Drawn]:
    from onnxvis.analysis.compare.matching import layer_weights

    drawn: list[_Drawn] = []
    for layer in result.worst_by_weights()[:worst]:
        assert layer.weights is not None
        order = layer.weights.worst_channels()
        picture = kernel_comparison(layer_weights(layer.pair.a), layer_weights(layer.pair.b), order, channels)
        cut = f"; the first {picture.inputs} of {picture.total_inputs} inputs" if picture.inputs < picture.total_inputs else ""
        caption = (f"weight SQNR {_db(layer.weights.sqnr_db)} dB. Rows: output channels, worst first: "
                   f"{_channel_list(picture.rows, layer.weights.channel_sqnr_db)}{cut}. A and B share a scale per "
                   f"kernel slice; the difference's full colour is ±{_g(picture.peak)}.")
        drawn.append(_Drawn("kernels", layer, picture, caption))
    mapped = [layer for layer in result.ranked() if layer.index in result.worst_maps and layer.activation_sqnr_db is not None
              and layer.activation_sqnr_db != math.inf]
    for layer in mapped[:worst]:
        a, b = result.worst_maps[layer.index]
        assert layer.activation is not None
        per_channel = layer.activation.channel_sqnr_db()
        order = np.argsort(per_channel, kind="stable")
        picture = fmap_comparison(a, b, order, channels)
        caption = (f"output SQNR {_db(layer.activation_sqnr_db)} dB over all images. Channels, worst first: "
                   f"{_channel_list(picture.rows, per_channel)}. A and B share a grey scale per channel; the error's "
                   f"full colour is ±{_g(picture.peak)}.")
        drawn.append(_Drawn("fmaps", layer, picture, caption))
    return drawn


# ------------------------------------------------------------------------------------ the page


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
.l{text-align:left}.w{white-space:normal;display:inline-block;min-width:11em;max-width:16em}.scroll{overflow-x:auto}.note{color:#555}.warn{color:#b3261e}.bad{background:#fde7e4}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:600}dd{margin:0}
figure{margin:1em 0}figcaption{margin-bottom:4px}nav a{margin-right:1em}.big{font-size:1.3em;font-weight:600}
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,), classes: Sequence[str] = ()) -> str:
    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(f'<{tag}{" class=l" if i in left else ""}>{c}</{tag}>' for i, c in enumerate(row))

    body = "".join(f'<tr{f" class={classes[i]}" if i < len(classes) and classes[i] else ""}>{cells("td", r)}</tr>'
                   for i, r in enumerate(rows))
    return f"<div class=scroll><table><thead><tr>{cells('th', [_e(h) for h in head])}</tr></thead><tbody>{body}</tbody></table></div>"


def _chart(result: "Comparison", width: int = 900, height: int = 180) -> str:
    """SQNR per layer in graph order: the output's (solid) and the weight's (dashed); infinite values at the top."""
    layers = result.layers
    if not layers:
        return ""
    values = [v for layer in layers for v in (layer.activation_sqnr_db, layer.weight_sqnr_db) if v is not None and v != math.inf]
    high, low = (max(values), min(values)) if values else (60.0, 0.0)
    top = high + 0.1 * (high - low) + 2
    bottom = max(0.0, low - 0.1 * (high - low) - 2) if low >= 0 else low - 2
    step = width / max(1, len(layers))

    def y(v: float) -> float:
        v = top if v == math.inf else v
        return 8 + (height - 24) * (top - v) / ((top - bottom) or 1)

    parts = []
    styles = (("activation_sqnr_db", 'stroke="#b3261e" stroke-width="2"'), ("weight_sqnr_db", 'stroke="#0066cc" stroke-dasharray="4 3"'))
    for key, style in styles:
        points = [(i, getattr(layer, key)) for i, layer in enumerate(layers) if getattr(layer, key) is not None]
        if points:
            path = " ".join(f"{(i + 0.5) * step:.1f},{y(v):.1f}" for i, v in points)
            parts.append(f'<polyline points="{path}" fill="none" {style}/>')
    ticks = "".join(f'<text x="{(i + 0.5) * step:.1f}" y="{height - 4}" font-size="9" text-anchor="middle">{layer.index}</text>'
                    for i, layer in enumerate(layers) if len(layers) <= 60 or i % 5 == 0)
    label = (f'<text x="4" y="{y(top) + 10:.0f}" font-size="10">{top:.0f} dB (inf drawn here)</text>'
             f'<text x="4" y="{y(bottom) - 2:.0f}" font-size="10">{bottom:.0f} dB</text>')
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="SQNR per layer">'
            f'<rect width="{width}" height="{height}" fill="#fafafa"/>{"".join(parts)}{ticks}{label}</svg>'
            '<p class=note>Red: the output SQNR of each matched layer, in graph order (layer indexes below); blue dashed: '
            "the weight SQNR. Where the red line falls, the models part.</p>")


def _where_table(result: "Comparison") -> str:
    by_index = {layer.index: layer for layer in result.layers}
    rows, classes = [], []
    unmatched = {layer.index: (layer, reason) for layer, reason in result.matching.unmatched_a}
    worst = {layer.index for layer in result.ranked()[:1] if layer.activation_sqnr_db not in (None, math.inf)}
    for index in sorted([*by_index, *unmatched]):
        if index in unmatched:
            layer, reason = unmatched[index]
            rows.append([str(index), _e(layer.label), _e(layer.op_type), "x".join(map(str, layer.shape or ())),
                         f'<span class="warn w">unmatched: {_e(reason)}</span>', *["-"] * 8])
            classes.append("")
            continue
        item = by_index[index]
        w, act = item.weights, item.activation
        channel = "-"
        if w is not None and w.channel_sqnr_db.size:
            channel = f"{_db(float(w.channel_sqnr_db.min()))} (ch {int(w.worst_channels()[0])})"
        rows.append([
            str(index), _e(item.pair.a.label), _e(item.pair.a.op_type), "x".join(map(str, item.pair.a.shape or ())),
            _e(f"{item.pair.b.label} ({item.pair.b.op_type})"), f"<span class=w>{_e(item.pair.how)}</span>",
            _db(item.weight_sqnr_db) if w else f'<span class=warn title="{_e(item.weight_problem)}">?</span>',
            channel, _g(w.norm_change) if w else "-",
            _db(item.activation_sqnr_db), f"{act.cosine:.6f}" if act is not None and act.comparable else "-",
            _g(act.max_abs_error) if act is not None and act.comparable else "-",
            _e(item.probe_a.where if item.probe_a.where != "output" else item.probe_b.where),
        ])
        classes.append("bad" if index in worst else "")
    head = ["#", "layer (A)", "op", "weight", "B's layer", "matched by", "weight SQNR dB", "worst channel dB", "norm change",
            "output SQNR dB", "cosine", "max error", "compared"]
    return _table(head, rows, left=(1, 2, 4, 5, 12), classes=classes)


def _unmatched_html(result: "Comparison") -> str:
    parts = []
    for which, entries in (("A", result.matching.unmatched_a), ("B", result.matching.unmatched_b)):
        if entries:
            items = "".join(f"<li><b>{_e(layer.label)}</b> ({_e(layer.op_type)}, weight {_e('x'.join(map(str, layer.shape or ())))}): "
                            f"{_e(reason)}</li>" for layer, reason in entries)
            parts.append(f"<p>Layers of {which} without a partner:</p><ul>{items}</ul>")
    return "".join(parts) or "<p>Every layer of A and of B has a partner.</p>"


def _top(t) -> str:
    if t is None:
        return "-"
    name = f" {t[1]}" if t[1] else ""
    return _e(f"{t[0]}{name} ({t[2]:.3f})")


def _outputs_html(result: "Comparison", full_paths: bool) -> str:
    classes = result.classes
    if classes.problem is not None or classes.agreement is None:
        return f"<p class=note>{_e(classes.problem or 'no class scores were compared')}</p>"
    flips = [d for d in result.images if d.flipped]
    kl = f"{classes.mean_kl:.4g} nats" if classes.mean_kl is not None else "-"
    text = (f"<p class=big>top-1 agreement {classes.agreement:.2%} ({len(result.images) - len(flips)} of {len(result.images)} images); "
            f"mean KL(A||B) {kl}</p><p class=note>Class scores of {_e(classes.output_a)} (A) and {_e(classes.output_b)} (B), as "
            "probabilities (a softmax, unless they already are).</p>")
    if flips:
        rows = [[_e(d.image if full_paths else d.image.name), _top(d.top_a), _top(d.top_b), _g(d.kl)] for d in flips[:_MAX_FLIPS_SHOWN]]
        more = ""
        if len(flips) > _MAX_FLIPS_SHOWN:
            more = f"<p class=note>and {len(flips) - _MAX_FLIPS_SHOWN} more (compare_summary.json lists them all)</p>"
        text += "<p>Images where the top-1 flips:</p>" + _table(["image", "A's top-1", "B's top-1", "KL"], rows, left=(0, 1, 2)) + more
    else:
        text += "<p>The top-1 class is the same on every image.</p>"
    return text


def _photo(rgb: np.ndarray, name: str) -> str:
    import base64

    from PIL import Image

    img = Image.fromarray(rgb)
    img.thumbnail((224, 224))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return (f'<img src="data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode("ascii")}" '
            f'width="{img.width}" height="{img.height}" alt="{_e(name)}">')


def html_page(result: "Comparison", drawn: list[_Drawn], full_paths: bool = False) -> str:
    name_a = result.model_a.path if full_paths else result.model_a.path.name
    name_b = result.model_b.path if full_paths else result.model_b.path.name
    title = f"onnxvis compare: {name_a} vs {name_b}"
    ranked = result.ranked()
    worst = ranked[0] if ranked else None
    summary = [
        ("A", f"{name_a} ({result.model_a.producer or '?'})"),
        ("B", f"{name_b} ({result.model_b.producer or '?'})"),
        ("A is fed", f"{result.preprocess_a.preprocess.describe()} ({result.preprocess_a.origin})"),
        ("B is fed", f"{result.preprocess_b.preprocess.describe()} ({result.preprocess_b.origin})"),
        ("layers", f"{len(result.layers)} matched; {len(result.matching.unmatched_a)} of A and "
                   f"{len(result.matching.unmatched_b)} of B without a partner"),
        ("images", str(len(result.images))),
    ]
    if worst is not None:
        summary.append(("worst layer", f"{worst.pair.a.label}: output SQNR {_db(worst.activation_sqnr_db)} dB, "
                                       f"weight SQNR {_db(worst.weight_sqnr_db)} dB"))
    if result.classes.agreement is not None:
        summary.append(("top-1 agreement", f"{result.classes.agreement:.2%}"))
    dl = "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in summary) + "</dl>"
    kernels = [d for d in drawn if d.kind == "kernels"]
    fmaps = [d for d in drawn if d.kind == "fmaps"]

    def figure(d: _Drawn) -> str:
        what = "kernels" if d.kind == "kernels" else "feature maps"
        head = f"{d.layer.index} {d.layer.pair.a.label} - {what}: A | B | A - B"
        return (f'<figure id="{_e(d.stem)}"><figcaption><b>{_e(head)}</b>. {_e(d.caption)}</figcaption>'
                f"{img_tag(d.picture.pixels, head)}</figure>")

    kernel_html = "".join(map(figure, kernels)) or "<p>The weights of every matched layer are equal.</p>"
    if result.worst_image is not None and fmaps:
        photo = _photo(result.worst_photo, result.worst_image.image.name) if result.worst_photo is not None else ""
        where = result.worst_image.image if full_paths else result.worst_image.image.name
        fmap_html = (f"<p>The image where the feature maps differ most: <b>{_e(where)}</b> (mean noise-to-signal "
                     f"{result.worst_image.noise:.3g}; A's top-1 {_top(result.worst_image.top_a)}, "
                     f"B's {_top(result.worst_image.top_b)}).</p>"
                     f"{photo}{''.join(map(figure, fmaps))}")
    elif not result.images:
        fmap_html = "<p class=note>No image was run.</p>"
    else:
        fmap_html = "<p>The outputs of every matched layer are equal on every image.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="onnxvis">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<nav><a href="#summary">summary</a><a href="#outputs">outputs</a><a href="#where">where it goes wrong</a>
<a href="#kernels">kernels</a><a href="#fmaps">feature maps</a></nav>
<h2 id="summary">Summary</h2>
{dl}
<h2 id="outputs">Outputs</h2>
{_outputs_html(result, full_paths)}
<h2 id="where">Where it goes wrong</h2>
<p class=note>SQNR = 20 log10(||a|| / ||a - b||), as onnxruntime's qdq_loss_debug computes it; an output's over all images end to
end. inf: equal. Norm change: (||b|| - ||a||) / ||a|| of the whole weight. The worst layer is shaded.</p>
{_chart(result)}
{_where_table(result)}
{_unmatched_html(result)}
<h2 id="kernels">Kernels of the layers whose weights differ most</h2>
<p class=note>Diverging colour map: blue negative, white zero, red positive.</p>
{kernel_html}
<h2 id="fmaps">Feature maps of the layers whose outputs differ most</h2>
{fmap_html}
</body></html>
"""


# ------------------------------------------------------------------------------------ writing


def build_outputs(
    result: "Comparison", formats: Sequence[str], worst: int = 4, channels: int = DEFAULT_CHANNELS, full_paths: bool = False
) -> list[tuple[str, str, bytes]]:
    """Every file to write, as (stem, suffix, bytes), made in memory; the event file comes last."""
    formats = parse_formats(formats)
    files: list[tuple[str, str, bytes]] = []
    drawn = _pictures(result, worst, channels) if {"html", "png", "tensorboard"} & set(formats) else []
    if "html" in formats:
        files.append(("compare", ".html", html_page(result, drawn, full_paths).encode("utf-8")))
    if "jsonl" in formats:
        files.append(("compare", ".jsonl", "".join(json.dumps(layer_record(layer)) + "\n" for layer in result.layers).encode()))
        files.append(("compare_images", ".jsonl", "".join(json.dumps(_image_record(d, full_paths)) + "\n" for d in result.images).encode()))
        files.append(("compare_summary", ".json", (json.dumps(summary_record(result, full_paths), indent=1) + "\n").encode()))
    if "csv" in formats:
        files.append(("compare", ".csv", csv_text(result).encode()))
    pngs = [(d, encode_png(d.picture.pixels)) for d in drawn]
    if "png" in formats:
        files.extend((d.stem, ".png", data) for d, data in pngs)
    if "model-explorer" in formats:
        files.extend(node_data_files(result))
    if "tensorboard" in formats:
        from onnxvis.write.tensorboard import EventFile

        events = EventFile()
        for d, data in pngs:
            height, width = d.picture.pixels.shape[:2]
            events.add_png(f"compare_{d.kind}/{sanitize(d.stem)}", data, height, width, 3)
        for layer in result.layers:
            for tag, value in (("weight_sqnr_db", layer.weight_sqnr_db), ("activation_sqnr_db", layer.activation_sqnr_db)):
                if value is not None and value != math.inf:
                    events.add_scalar(f"compare/{tag}", value, layer.index)
        files.append(("events.out.tfevents.compare", ".onnxvis", events.to_bytes()))
    return files


def _sqnr_value(db: float | None) -> float | None:
    return 1e308 if db == math.inf else db  # exact: JSON has no infinity, and the scale's faithful end is above 40 dB


def node_data_files(result: "Comparison") -> list[tuple[str, str, bytes]]:
    """The weight and output SQNR of each matched layer as Model Explorer node data, on each model's graph."""
    from onnxvis.model.nodeids import explorer_ids

    files: list[tuple[str, str, bytes]] = []
    for side, model in (("a", result.model_a), ("b", result.model_b)):
        ids = explorer_ids(model.proto)
        for key, title, of in (
            ("weight_sqnr_db", "weight SQNR", lambda layer: layer.weight_sqnr_db),
            ("output_sqnr_db", "output SQNR", lambda layer: layer.activation_sqnr_db),
        ):
            values = {}
            for layer in result.layers:
                node = ids.node("", (layer.pair.a if side == "a" else layer.pair.b).position)
                value = _sqnr_value(of(layer))
                if node is not None and value is not None:
                    values[node] = value
            versus = f"B ({_name(result.model_b)}) against this model" if side == "a" else f"this model against A ({_name(result.model_a)})"
            metric = NodeMetric(f"{key}_{side}", f"onnxvis: {title} of {versus}, dB", SQNR_DB)
            data = node_data_bytes(metric, values)
            if data is not None:
                files.append((node_data_name(metric), ".json", data))
    return files


def _name(model: Any) -> str:
    return Path(model.path).name


def write_comparison(out: "OutputDir", files: list[tuple[str, str, bytes]]) -> list[Path]:
    """Write what :func:`build_outputs` made, each file atomically; returns the paths."""
    return [out.write_bytes(out.path_for(stem, suffix), data) for stem, suffix, data in files]
