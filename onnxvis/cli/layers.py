"""onnxvis layers."""

from __future__ import annotations

import argparse

from onnxvis.cli.common import layer_rows, no_conv_error


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "layers",
        help="list the conv layers of a model",
        description="Print one line per conv layer: index, node name, op, weight shape, stride, padding, group, "
        "parameter count, and where the weight is stored.",
        epilog="example:\n  onnxvis layers models/alexnet.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")


def run(args: argparse.Namespace) -> None:
    from onnxvis.engine.inspector import Inspector

    inspector = Inspector(args.model)
    if not inspector.layers:
        raise no_conv_error(args.model)
    print("\n".join(layer_rows(inspector.layers)))
