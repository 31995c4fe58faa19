"""onnxvis kernels."""

from __future__ import annotations

import argparse

from onnxvis.cli.common import (
    add_channel_order,
    add_colormap,
    add_formats,
    add_grid_options,
    add_layers,
    add_output,
    checked_formats,
    grid_options,
    output_dir,
    print_paths,
    rgb_layers,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kernels",
        help="draw the conv kernels as PNG grids",
        description="Read the conv weights from the ONNX file and write one PNG grid per layer. A layer with 3 "
        "input channels gives an RGB grid of its kernels, 1 input channel a grey grid, 1x1 kernels an "
        "output x input heat map, and any other layer a grey mosaic with one row per output channel and "
        "one column per input channel.",
        epilog="examples:\n  onnxvis kernels models/alexnet.onnx\n  onnxvis kernels models/alexnet.onnx --layers 0,1 --split\n"
        "  onnxvis kernels model.onnx --layers conv1 --nrow 16 -o pictures/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    add_layers(p, "all")
    p.add_argument("--split", action="store_true",
                   help="also write, per output channel, the grid of its input-channel slices (the tutorial's view)")
    p.add_argument(
        "--max-tiles",
        type=int,
        default=None,
        metavar="N",
        help="draw at most N tiles per layer, cutting to the first output channels (default 262144, a VGG16 layer in full; 0 = no cap)",
    )
    add_colormap(p)
    add_channel_order(p)
    pre = p.add_argument_group("preprocessing (to know the channel order of the image; overrides the model's metadata)")
    pre.add_argument("--preset", help="imagenet, caffe, tf, unit, raw or cifar10")
    pre.add_argument("--bgr", action="store_true", help="the model takes channels in BGR order (Caffe models)")
    add_formats(p)
    add_grid_options(p)
    add_output(p)


def run(args: argparse.Namespace) -> None:
    from onnxvis.draw.layers import check_max_tiles
    from onnxvis.engine.inspector import Inspector
    from onnxvis.write.layers import draw_kernels

    inspector = Inspector(args.model, preset=args.preset, changes={"color": "BGR"} if args.bgr else {})
    chosen = inspector.select(args.layers, default="all")
    grid = grid_options(args)
    check_max_tiles(args.max_tiles)  # the library's check, before the output folder is made
    formats = checked_formats(args)
    flipped = rgb_layers(inspector, chosen, args.channel_order)
    out = output_dir(args, inspector.model.name, [inspector.model.path])
    print_paths(
        draw_kernels(
            chosen, out, grid, split=args.split, max_tiles=args.max_tiles, formats=formats, colormap=args.colormap, progress=True,
            rgb_from_bgr=flipped,
        )
    )
