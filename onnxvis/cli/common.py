"""What several commands share: argument types, the option groups, and the steps from flags to the library."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from onnxvis.errors import OnnxvisError, printable

if TYPE_CHECKING:
    from onnxvis.outdir import OutputDir


def ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or H,W as whole numbers, got {text!r}") from None
    if not 1 <= len(values) <= 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected N or H,W of positive numbers, got {text!r}")
    return values


def floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def nrow_value(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None


def zoom_value(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def add_grid_options(p: argparse.ArgumentParser, nrow: int | str = 8, zoom: bool = True) -> None:
    g = p.add_argument_group("grid (torchvision make_grid options)")
    g.add_argument("--nrow", type=nrow_value, default=nrow, metavar="N|auto",
                   help=f"images per row, or auto: a near-square grid (default {nrow})")
    if zoom:
        g.add_argument("--zoom", type=zoom_value, default=1, metavar="N",
                       help="draw each pixel as N x N pixels (nearest neighbour), for small kernels and maps (default 1: "
                       "torchvision's picture)")
    g.add_argument("--padding", type=int, default=2, help="pixels between images (default 2)")
    g.add_argument("--pad-value", type=float, default=0.0, help="value of the padding, 0 black to 1 white (default 0)")
    g.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="draw raw values clipped to [0, 1] instead of min-max scaling")
    g.add_argument("--no-scale-each", dest="scale_each", action="store_false", help="scale all tiles together instead of each on its own")


def add_preprocess_options(p: argparse.ArgumentParser) -> None:
    pre = p.add_argument_group("preprocessing (overrides the model's metadata)")
    pre.add_argument("--preset", help="imagenet, caffe, tf, unit, raw or cifar10")
    pre.add_argument("--resize", type=ints, metavar="N|H,W", help="H,W: exact size; N: shorter side to N (use with --crop)")
    pre.add_argument("--crop", type=ints, metavar="H,W", help="centre crop after resizing")
    pre.add_argument("--mean", type=floats, metavar="M[,M,M]", help="per-channel mean, in the value scale of --scale")
    pre.add_argument("--std", type=floats, metavar="S[,S,S]", help="per-channel std")
    pre.add_argument("--bgr", action="store_true", help="feed channels in BGR order (Caffe models)")
    pre.add_argument("--scale", type=float, choices=[1.0, 255.0], help="value of white: 1 (0..1) or 255 (0..255)")
    pre.add_argument("--layout", choices=["NCHW", "NHWC"], help="input layout (default: detected from the graph)")
    pre.add_argument(
        "--input",
        dest="inputs",
        action="append",
        metavar="NAME=VALUE",
        help="a value for another model input: a number fills it, or a .npy file (repeat for several inputs)",
    )


def add_formats(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        dest="formats",
        default="png",
        metavar="png,tensorboard",
        help="what to write: png (default), tensorboard (an event file in the output folder; needs "
        "pip install 'onnxvis[tensorboard]'), or both, comma-separated",
    )


def add_colormap(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--colormap",
        choices=["grey", "diverging"],
        default="grey",
        help="grey: torchvision's picture (RGB for 3 input channels), min-max scaled (default); diverging: "
        "blue negative, white zero, red positive, each tile scaled by its largest magnitude, so the sign "
        "of every weight shows",
    )


def add_channel_order(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--channel-order",
        choices=["rgb", "stored"],
        default="rgb",
        help="rgb (default): the kernels of a conv that reads a BGR image (a Caffe model's first conv) are drawn with "
        "their input channels in R, G, B order, so that the colours are the ones they respond to; stored: as stored",
    )


def rgb_layers(inspector, layers, channel_order: str) -> list:
    """The layers among ``layers`` to draw in RGB order (``--channel-order rgb``), each said on stderr."""
    import sys

    if channel_order != "rgb":
        return []
    flipped = [layer for layer in inspector.bgr_layers() if layer in layers]
    for layer in flipped:
        print(
            f"layer {layer.index} ({printable(layer.name)}) reads the image in BGR order ({inspector.preprocessing.origin}): "
            "its kernels are drawn with their input channels reversed, in RGB order; --channel-order stored draws them as stored",
            file=sys.stderr,
        )
    return flipped


def add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (default onnxvis-out/<model name>/)")


def add_layers(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--layers",
        metavar="SPEC",
        help=f"which conv layers: comma list of indexes (0 is the first conv, -1 the last), ranges of indexes (0-3: the "
        f"first four), node names, or 'all' (default: {default})",
    )


def add_target_output(p: argparse.ArgumentParser) -> None:
    """--target-output NAME: the output with the class scores, the same flag in every command that scores classes."""
    p.add_argument(
        "--target-output",
        metavar="NAME",
        help="the model output that holds the class scores (default: the one whose shape is one score per class)",
    )


def output_root(args: argparse.Namespace, model_name: str) -> Path:
    """-o, or the model's default folder."""
    from onnxvis.outdir import default_root

    return Path(args.output) if args.output else default_root(model_name)


def output_dir(args: argparse.Namespace, model_name: str, protect: list) -> OutputDir:
    from onnxvis.outdir import OutputDir

    return OutputDir(output_root(args, model_name), protect=protect)


def grid_options(args: argparse.Namespace):
    from onnxvis.draw.grids import GridOptions

    return GridOptions(args.nrow, args.padding, args.pad_value, args.normalize, args.scale_each, getattr(args, "zoom", 1))


def checked_formats(args: argparse.Namespace) -> tuple[str, ...]:
    """--format, checked before any work (and whether the tensorboard package is there)."""
    from onnxvis.write.layers import parse_formats

    formats = parse_formats(args.formats)
    if "tensorboard" in formats:
        from onnxvis.write.tensorboard import check_available

        check_available()
    return formats


def print_paths(paths) -> None:
    for path in paths:
        print(path)


def fmt_tuple(values) -> str:
    return "x".join(str(v) for v in values) if values else "-"


def layer_rows(layers) -> list[str]:
    """The layer table, its name column as wide as the longest name: tf2onnx and JAX names are long."""
    names = [printable(layer.name) for layer in layers]
    width = max([4, *map(len, names)])
    rows = [f"{'idx':>3}  {'name':<{width}} {'op':<12} {'weight':<16} {'stride':<7} {'pads':<9} {'group':>5} {'params':>10}  weight source"]
    for layer, name in zip(layers, names, strict=True):
        shape = fmt_tuple(layer.weight_shape) if layer.weight_shape else "?"
        params = f"{layer.param_count:,}" if layer.param_count is not None else "?"
        where = f" [in {layer.graph_path}]" if layer.graph_path else ""
        if layer.op_type == "ConvTranspose" and layer.weight_shape:
            where += " [stored in x out/group; drawn per output channel]"
        if layer.fused_activation:
            where += f" [{layer.fused_activation} fused: maps are after it]"
        rows.append(printable(
            f"{layer.index:>3}  {name:<{width}} {layer.op_type:<12} {shape:<16} {fmt_tuple(layer.strides):<7} "
            f"{','.join(map(str, layer.pads)):<9} {layer.group:>5} {params:>10}  {layer.source.describe()}{where}"
        ))
    return rows


def tensor_table(rows) -> list[str]:
    """The tensor table (``onnxvis tensors``): name, shape, dtype, and the op and node that make it."""
    names = [printable(r.name) for r in rows]
    shapes = [r.shape_text() for r in rows]
    width = max([6, *map(len, names)])
    swidth = max([5, *map(len, shapes)])
    lines = [f"{'tensor':<{width}}  {'shape':<{swidth}}  {'dtype':<8} from"]
    for row, name, shape in zip(rows, names, shapes, strict=True):
        made = "graph input" if row.op == "input" else f"{row.op} {printable(row.node)}".rstrip()
        lines.append(f"{name:<{width}}  {shape:<{swidth}}  {row.dtype:<8} {made}")
    return lines


GUESS_HINT = "change it with --preset imagenet|caffe|tf|unit|raw|cifar10, or with --resize, --crop, --mean, --std, --bgr, --scale"


def preprocess_changes(args: argparse.Namespace) -> dict:
    """The preprocessing fields the flags change."""
    changes: dict = {}
    if args.resize is not None:
        if len(args.resize) == 1 and args.crop is None:
            raise OnnxvisError("--resize N (shorter side) needs --crop H,W; for an exact size give --resize H,W")
        changes["resize"] = args.resize
        changes["crop"] = args.crop
    elif args.crop is not None:
        changes["crop"] = args.crop
    if args.mean is not None:
        changes["mean"] = args.mean
    if args.std is not None:
        changes["std"] = args.std
    if args.bgr:
        changes["color"] = "BGR"
    if args.scale is not None:
        changes["scale"] = args.scale
    return changes


def inspector_config(args: argparse.Namespace, **options):
    """The InspectorConfig that the preprocessing flags make (``options``: batch_size, threads)."""
    from onnxvis.engine.config import InspectorConfig
    from onnxvis.image.inputs import parse_input_values

    return InspectorConfig(
        preset=args.preset, changes=preprocess_changes(args), layout=args.layout, inputs=parse_input_values(args.inputs),
        target_output=getattr(args, "target_output", None), **options
    )


def open_inspector(args: argparse.Namespace, **options):
    """The Inspector for a command with the preprocessing flags.

    ``--input NAME=FILE.npy`` for the image input itself makes that array the command's image, fed as
    it is (``args.images`` becomes ``[FILE.npy]``): given with images too, it is refused, never ignored.
    """
    from onnxvis.engine.inspector import Inspector

    config = inspector_config(args, **options)
    inspector = Inspector(args.model, config)
    try:
        image_name = inspector.image_input.name
    except OnnxvisError:  # no image input: the command says so where it needs one
        return inspector
    if image_name not in config.inputs:
        return inspector
    value = next(text for name, _, text in (item.partition("=") for item in args.inputs) if name.strip() == image_name).strip()
    from onnxvis.image import preprocess as pp

    if not pp.is_array_file(value):
        raise OnnxvisError(
            f"input {image_name!r} is the image input: give it a .npy file (--input {image_name}=FILE.npy), fed as it is, "
            "or give the photo as IMAGE"
        )
    if not hasattr(args, "images"):
        raise OnnxvisError(f"input {image_name!r} is the image input: give {value} where the images go, not with --input")
    if args.images:
        raise OnnxvisError(
            f"input {image_name!r} is the image input, given both an array (--input {image_name}={value}) and IMAGE; give one of them"
        )
    args.images = [value]
    rest = {name: v for name, v in config.inputs.items() if name != image_name}
    return Inspector(inspector.model, config.replace(inputs=rest))


def guess_note(inspector) -> list[str]:
    """The note to print when the preprocessing was guessed (once the run worked: an error stays one line)."""
    settled = inspector.preprocessing
    return [f"note: the preprocessing is {settled.origin}; {GUESS_HINT}"] if settled.guessed else []


def add_labels(
    p: argparse.ArgumentParser, flag: str = "--labels", dest: str = "labels", whose: str = "the model's classes"
) -> None:
    """--labels FILE: class names for a command that shows or takes classes. A command comparing two
    models adds it twice, e.g. ``add_labels(p)`` then ``add_labels(p, "--labels-b", "labels_b", "model B's classes")``."""
    p.add_argument(
        flag,
        dest=dest,
        metavar="FILE",
        help=f"names of {whose}: one per line, or a JSON list, one per class score (over the names the model "
        "carries, and the ImageNet-1k names guessed for 1000 or 1001 scores)",
    )


LABELS_GUESS_HINT = "give --labels FILE if these are not ImageNet's classes"


def apply_labels(args: argparse.Namespace, inspector, output: str | None = None, dest: str = "labels"):
    """Name the inspector's classes with the file given as ``--labels`` (``dest``), checked against the
    class count of ``output`` (default: the class output found from the graph); returns the names in use.

    Raises:
        OnnxvisError: a file that is missing, not UTF-8, empty, or of another count than the classes.
    """
    from onnxvis.engine.classes import load_labels

    path = getattr(args, dest, None)
    if path is None:
        return inspector.class_names
    names = load_labels(path, inspector.class_count(output), setting=dest)
    return inspector.use_labels(names, f"file {Path(path).name}", output, setting=dest)


def check_target_first(args: argparse.Namespace, inspector, output: str) -> None:
    """--target checked against the class count the graph declares, before the output folder is made
    (where the graph does not declare it, the run checks it against the scores)."""
    count = inspector.class_count(output)
    if args.target is not None and count:
        from onnxvis.analysis.cam.runs import check_target

        check_target(args.target, count, inspector.labels)


def labels_note(inspector) -> list[str]:
    """The line to print when the class names are a guess (once the run worked: an error stays one line)."""
    names = inspector.class_names
    if not names.guessed:
        return []
    return [f"labels: {names.origin} ({names.reason}; {LABELS_GUESS_HINT})"]


def target_labels_note(inspector, target: str | None) -> list[str]:
    """:func:`labels_note` for a command whose class comes from ``--target``: the names matter only when
    a target (or one of several, comma-separated) is a name, not an index."""
    by_name = target is not None and any(not t.strip().lstrip("-").isdigit() for t in target.split(","))
    return labels_note(inspector) if by_name else []


def image_paths(args: argparse.Namespace) -> list[Path]:
    from onnxvis.image import preprocess as pp

    return pp.image_files(args.images) if args.images else [pp.default_image_path()]


# The flag that sets each library parameter an error can be about (OnnxvisError.setting): the library
# speaks of parameters, the command line of flags (tests/test_messages.py checks the library's side).
FLAGS = {
    "nrow": "--nrow N|auto",
    "zoom": "--zoom N",
    "padding": "--padding N",
    "preset": "--preset NAME",
    "layers": "--layers SPEC",
    "resize": "--resize H,W",
    "layout": "--layout NCHW|NHWC",
    "inputs": "--input NAME=VALUE",
    "top": "--top K",
    "preset_b": "--preset-b NAME",
    "labels": "--labels FILE",
    "labels_b": "--labels-b FILE",
    "keep": "--keep N",
    "batch_size": "--batch-size N",
    "percentiles": "--percentiles P,...",
    "max_tiles": "--max-tiles N",
    "formats": "--format",
    "output": "-o DIR",
    "fresh": "--fresh",
    "engine": "--engine local|ray",
    "ray_address": "--ray-address ADDR",
    "port": "--port N",
    "steps": "--steps N",
    "samples": "--samples N",
    "noise": "--noise SD",
    "baseline": "--baseline zero|black|blur",
    "method": "--method NAME",
    "target_output": "--target-output NAME",
    "channels": "--channels SPEC",
    "objective": "--objective channel|neuron|class",
    "target": "--target CLASS",
    "diversity": "--diversity N",
    "size": "--size PX",
}


def with_flag(message: str, setting: str | None) -> str:
    """``message`` (the library's words), with the flag that sets the parameter ``setting``."""
    flag = FLAGS.get(setting or "")
    return f"{message} (set with {flag})" if flag else message
