"""onnxvis layers."""

from __future__ import annotations

import argparse

from onnxvis.cli.common import layer_rows


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
    from onnxvis.model.layers import no_conv_layer

    inspector = Inspector(args.model)
    if not inspector.layers:
        raise no_conv_layer(args.model, "onnxvis draws conv layers only, check that this is the model you meant")
    print("\n".join(layer_rows(inspector.layers)))
