"""onnxvis report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onnxvis.cli.common import (
    add_channel_order,
    add_colormap,
    add_grid_options,
    add_labels,
    add_layers,
    add_output,
    add_preprocess_options,
    add_target_output,
    apply_labels,
    grid_options,
    guess_note,
    labels_note,
    open_inspector,
    output_dir,
    print_paths,
    rgb_layers,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report: summary, weight statistics, kernels, feature maps, top-5",
        description="Write report.html: the model's summary (producer, opsets, inputs, preprocessing), a table "
        "of the conv layers with weight statistics (min, max, mean, std, the norm of each filter, near-dead "
        "filters), the kernel grid of every conv layer, and for each IMAGE the feature maps of the chosen "
        "layers with per-channel activation statistics and, when its classes have names (--labels FILE, the "
        "model's own, or ImageNet-1k's guessed for 1000 or 1001 scores), the top-5 predictions. Pictures are "
        "embedded; the file fetches nothing from the network.",
        epilog="examples:\n  onnxvis report models/alexnet.onnx cat.jpg dog.jpg\n"
        "  onnxvis report models/vgg16.onnx cat.jpg --layers 0,4,8 --colormap diverging -o reports/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("images", metavar="IMAGE", nargs="*", help="photos to run (none: a report of the weights alone)")
    p.add_argument("--full-paths", action="store_true",
                   help="show the full paths of the model and the images (default: file names only, for sharing)")
    p.add_argument(
        "--cam",
        choices=["grad", "gradpp", "xgrad", "layer", "hires", "elementwise", "eigengrad", "fullgrad",
                 "score", "ablation", "eigen", "fem", "kpca", "none"],
        default="grad",
        help="the class activation map drawn for each image, at the last spatial conv layer (default grad: Grad-CAM, "
        "or AblationCAM where the model cannot be differentiated; none: no map)",
    )
    add_layers(p, "the first conv layer; the feature maps shown")
    p.add_argument(
        "--max-tiles",
        type=int,
        default=8192,
        metavar="N",
        help="kernel tiles per layer in the report, cutting to the first output channels (default 8192; 0 = no cap)",
    )
    add_colormap(p)
    add_channel_order(p)
    add_labels(p)
    add_target_output(p)
    add_preprocess_options(p)
    add_grid_options(p, nrow="auto")
    add_output(p)


def run(args: argparse.Namespace) -> None:
    from onnxvis.draw.layers import check_max_tiles
    from onnxvis.report import build_report, write_report

    inspector = open_inspector(args)
    check_max_tiles(args.max_tiles)  # the library's check, before the output folder is made
    grid = grid_options(args)
    apply_labels(args, inspector)
    layers = inspector.select(args.layers, default="first")
    images = [Path(image) for image in args.images]
    if images:
        _ = inspector.preprocessing  # a bad setting fails before anything is written
    out = output_dir(args, inspector.model.name, [inspector.model.path, *images])
    text = build_report(
        inspector,
        images,
        layers,
        grid=grid,
        colormap=args.colormap,
        max_tiles=args.max_tiles,
        full_paths=args.full_paths,
        progress=True,
        cam_method=None if args.cam == "none" else args.cam,
        rgb_from_bgr=rgb_layers(inspector, inspector.layers, args.channel_order),
        features_folder=out.root,
    )
    written = write_report(out, text)
    if images:
        for note in guess_note(inspector) + labels_note(inspector):  # once it worked: a failure above stays one line
            print(note, file=sys.stderr)
    print_paths([written])
