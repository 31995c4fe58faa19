"""onnxvis compare."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onnxvis.cli.common import add_labels, add_output, add_preprocess_options, apply_labels, preprocess_changes, print_paths
from onnxvis.errors import OnnxvisError


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="where two versions of a model part: float vs int8 or float16, fine-tuned vs base, layer by layer",
        description="Pair the conv and dense layers of MODEL_A and MODEL_B (by node name, by name without the "
        "quantizer's suffixes, then by order and shape), compare their weights (SQNR, max error, norm change, per "
        "layer and per output channel) and, over the images, their outputs (SQNR as onnxruntime's qdq_loss_debug "
        "pools it, cosine similarity, max error) and class scores (top-1 agreement, KL divergence). Writes one HTML "
        "page and, with --format, JSON lines, CSV, PNG pictures and a TensorBoard run; prints a line per layer.",
        epilog="examples:\n  onnxvis compare resnet18.onnx resnet18_int8.onnx photos/\n"
        "  onnxvis compare squeezenet_fp16.onnx squeezenet_fp32.onnx photos/ --format html,jsonl,csv\n"
        "  onnxvis compare base.onnx finetuned.onnx cat.jpg --preset-b imagenet\n"
        "  onnxvis compare mnist.onnx mnist_int8.onnx digits/ --format html,model-explorer -o cmp/\n"
        "  model-explorer mnist_int8.onnx --extensions=model_explorer_onnx --node_data_paths=cmp/nodedata_output_sqnr_db_b.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL_A", help="the reference model (.onnx), e.g. the float one")
    p.add_argument("model_b", metavar="MODEL_B", help="the model compared with it, e.g. its int8 or float16 version")
    p.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="*",
                   help="photos or folders of photos to run both models on (default: matplotlib's sample portrait)")
    p.add_argument("--preset-b", metavar="NAME",
                   help="B's preprocessing preset, when B takes another input than A (default: B's metadata, else A's)")
    p.add_argument("--format", dest="formats", default="html", metavar="html,jsonl,csv,png,tensorboard,model-explorer",
                   help="what to write, comma-separated (default html); model-explorer writes each layer's weight and "
                   "output SQNR as node data for Google's Model Explorer, on A's graph (nodedata_*_a.json) and on B's "
                   "(nodedata_*_b.json)")
    p.add_argument("--worst", type=_positive, default=4, metavar="N",
                   help="how many of the worst layers get pictures of their kernels and feature maps (default 4)")
    p.add_argument("--channels", type=_positive, default=16, metavar="N",
                   help="channels per picture, worst first (default 16)")
    p.add_argument("--batch-size", type=_positive, default=8, metavar="N", help="images per run when a model allows it (default 8)")
    p.add_argument("--full-paths", action="store_true", help="show full paths in the files written (default: file names only)")
    add_labels(p, whose="model A's classes, and B's too unless --labels-b is given")
    add_labels(p, "--labels-b", "labels_b", "model B's classes")
    add_preprocess_options(p)
    add_output(p)


def _out_name(a: str, b: str) -> str:
    return f"{Path(a).stem}_vs_{Path(b).stem}"


def _check_output(path: Path) -> None:
    """A bad -o fails before the run, without creating anything (the folder is made once there is something to write)."""
    if path.exists() and not path.is_dir():
        raise OnnxvisError(f"output path {path} exists and is not a folder; give a folder with -o")


def run(args: argparse.Namespace) -> None:
    from onnxvis.analysis.compare.run import compare, open_pair
    from onnxvis.cli.common import image_paths
    from onnxvis.image.inputs import parse_input_values
    from onnxvis.outdir import OutputDir
    from onnxvis.progress import Progress
    from onnxvis.write.compare import build_outputs, layer_lines, parse_formats, write_comparison

    formats = parse_formats(args.formats)
    if "tensorboard" in formats:
        from onnxvis.write.tensorboard import check_available

        check_available()
    root = Path(args.output) if args.output else Path("onnxvis-out") / _out_name(args.model, args.model_b)
    _check_output(root)
    insp_a, insp_b, matching = open_pair(
        args.model, args.model_b, preset_b=args.preset_b, inputs=parse_input_values(args.inputs), batch_size=args.batch_size,
        preset=args.preset, changes=preprocess_changes(args), layout=args.layout,
    )
    # --labels names A's classes, and B's too unless --labels-b does; without them, each model's own names.
    labels_a = apply_labels(args, insp_a).names
    labels_b = apply_labels(args, insp_b, dest="labels_b" if args.labels_b else "labels").names
    images = image_paths(args)
    with Progress(len(images), "compare") as bar:
        result = compare(insp_a, insp_b, matching, images, labels_a=labels_a, labels_b=labels_b, progress=bar.advance)
    files = build_outputs(result, formats, worst=args.worst, channels=args.channels, full_paths=args.full_paths)
    out = OutputDir(root, protect=[insp_a.model.path, insp_b.model.path, *images])
    written = write_comparison(out, files)
    for line in layer_lines(result):
        print(line, file=sys.stderr)
    print(f"A is fed {result.preprocess_a.preprocess.describe()} ({result.preprocess_a.origin})", file=sys.stderr)
    print(f"B is fed {result.preprocess_b.preprocess.describe()} ({result.preprocess_b.origin})", file=sys.stderr)
    classes = result.classes
    if classes.agreement is not None:
        kl = f"{classes.mean_kl:.4g}" if classes.mean_kl is not None else "-"
        flips = sum(d.flipped for d in result.images)
        print(f"top-1 agreement {classes.agreement:.2%} over {len(result.images)} images ({flips} flip); mean KL(A||B) {kl}",
              file=sys.stderr)
    elif classes.problem:
        print(f"note: {classes.problem}", file=sys.stderr)
    print_paths(written)
