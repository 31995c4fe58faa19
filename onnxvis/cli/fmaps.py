"""onnxvis fmaps."""

from __future__ import annotations

import argparse
import sys

from onnxvis.cli.common import (
    add_formats,
    add_grid_options,
    add_layers,
    add_output,
    add_preprocess_options,
    checked_formats,
    grid_options,
    guess_note,
    image_paths,
    open_inspector,
    output_dir,
    print_paths,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fmaps",
        help="draw the feature maps an image produces, as PNG grids",
        description="Run the model on an image with onnxruntime and write one PNG grid of feature maps per "
        "layer. A map is the conv node's own output, before any activation. Preprocessing comes from the "
        "model's metadata (onnxvis export writes it), else from a guess that is printed; the options below "
        "override it.",
        epilog="examples:\n  onnxvis fmaps models/alexnet.onnx\n  onnxvis fmaps models/alexnet.onnx cat.jpg --layers all\n"
        "  onnxvis fmaps models/alexnet.onnx cat.jpg dog.jpg photos/   # one folder of pictures per image\n"
        "  onnxvis fmaps models/alexnet.onnx cat.jpg --resize 224,224 \\\n"
        "      --mean 0.49139968,0.48215827,0.44653124 --std 0.24703233,0.24348505,0.26158768",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument(
        "images",
        metavar="IMAGE",
        nargs="*",
        help="photos or folders of photos to run (default: matplotlib's sample portrait); with several, each "
        "image's pictures go into a folder named after it",
    )
    add_layers(p, "the first conv layer")
    add_preprocess_options(p)
    add_formats(p)
    add_grid_options(p)
    add_output(p)


def run(args: argparse.Namespace) -> None:
    from onnxvis.write.layers import draw_fmaps, image_folders

    inspector = open_inspector(args)
    chosen = inspector.select(args.layers, default="first")
    images = image_paths(args)
    grid = grid_options(args)
    formats = checked_formats(args)
    _ = inspector.preprocessing  # a bad setting fails before anything is written
    out = output_dir(args, inspector.model.name, [inspector.model.path, *images])  # a bad -o fails before the run
    if len(images) == 1:
        result = inspector.feature_maps(images[0], chosen)
        written = draw_fmaps(result, out, grid, formats=formats, progress=True)
        prepared_text = result.describe_preprocessing() if result.as_is else inspector.preprocessing.preprocess.describe()
    else:
        results = inspector.feature_maps(images, chosen)
        written = draw_fmaps(results, out, grid, formats=formats, progress=True, folders=image_folders(images))
        prepared_text = inspector.preprocessing.preprocess.describe()
    for note in guess_note(inspector):
        print(note, file=sys.stderr)
    more = f" and {len(images) - 1} more" if len(images) > 1 else ""
    print(f"image{'s' if len(images) > 1 else ''}: {images[0]}{more}", file=sys.stderr)
    print(f"{inspector.image_input.describe()}", file=sys.stderr)
    print(f"preprocessing: {prepared_text}", file=sys.stderr)
    print_paths(written)
