"""onnxvis stats."""

from __future__ import annotations

import argparse
import sys

from onnxvis.cli.common import add_output, add_preprocess_options, guess_note, open_inspector, output_dir, print_paths
from onnxvis.errors import OnnxvisError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="numbers per node: weight norm, min, max, std, near-dead filters, sparsity; with images, activation statistics",
        description="Measure every conv, Gemm and MatMul layer's weight (L2 norm, min, max, std, the share of "
        "near-dead filters, sparsity) and, over the images (folders are walked), the output of every conv layer "
        "and activation (mean, std, max, the share of zeros after the activation, the share of channels that never "
        "fire), with running sums: memory does not grow with the images. text prints a table in graph order; "
        "jsonl writes stats.jsonl; model-explorer writes one node-data file per metric for Google's Model Explorer "
        "(node ids of model-explorer-onnx 0.4.2); tensorboard writes histograms of each layer's weights and "
        "activations, as SummaryWriter.add_histogram does.",
        epilog="examples:\n  onnxvis stats models/alexnet.onnx\n"
        "  onnxvis stats squeezenet.onnx photos/ --preset caffe --format text,model-explorer -o st/\n"
        "  model-explorer squeezenet.onnx --extensions=model_explorer_onnx --node_data_paths=st/nodedata_act_zeros.json\n"
        "  onnxvis stats models/alexnet.onnx photos/ --format tensorboard && tensorboard --logdir onnxvis-out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="*", help="photos, or folders walked for image files (none: weights only)")
    p.add_argument(
        "--format",
        dest="formats",
        default="text",
        metavar="text,jsonl,model-explorer,tensorboard",
        help="what to write, comma-separated: text (a table on stdout; default), jsonl (stats.jsonl), model-explorer "
        "(nodedata_<metric>.json, one per metric), tensorboard (histograms; needs pip install 'onnxvis[tensorboard]')",
    )
    p.add_argument(
        "--batch-size", type=int, default=8, metavar="N", help="images per onnxruntime run when the model allows batches (default 8)"
    )
    add_preprocess_options(p)
    add_output(p)


def run(args: argparse.Namespace) -> None:
    from onnxvis.analysis.nodestats import compute_stats, stats_nodes
    from onnxvis.progress import Progress
    from onnxvis.write.stats import parse_stats_formats, text_table, write_stats

    formats = parse_stats_formats(args.formats)
    if "tensorboard" in formats:
        from onnxvis.write.tensorboard import check_available

        check_available()
    inspector = open_inspector(args, batch_size=args.batch_size)  # the configuration checks the batch size
    images = []
    if args.images:
        from onnxvis.image import preprocess as pp

        images = pp.image_files(args.images)
    nodes = stats_nodes(inspector)
    if not any(node.has_weight for node in nodes):
        raise OnnxvisError(f"{inspector.model.path} has no conv, Gemm or MatMul layer with a stored weight; there is nothing to measure")
    files = [f for f in formats if f != "text"]
    out = output_dir(args, inspector.model.name, [inspector.model.path, *images]) if files else None
    with Progress(len(images), "stats", unit="image") as bar:
        stats = compute_stats(
            inspector, nodes, images, histograms="tensorboard" in formats, each=lambda name: bar.advance(name),
            log=bar.write if bar.enabled else (lambda message: print(message, file=sys.stderr)),
        )
    if "text" in formats:
        print("\n".join(text_table(stats, len(images))))
    if out is not None:
        print_paths(write_stats(stats, out, files))
    if images:
        for note in guess_note(inspector):
            print(note, file=sys.stderr)
        print(f"preprocessing: {inspector.preprocessing.preprocess.describe()}", file=sys.stderr)
