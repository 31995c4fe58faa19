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
        epilog="examples:\n  onnxvis layers models/alexnet.onnx\n  onnxvis layers models/alexnet.onnx --all   # every tensor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("--all", dest="all_tensors", action="store_true",
                   help="list every tensor of the graph with its shape instead, as 'onnxvis tensors' does (the names --tensor takes)")


def run(args: argparse.Namespace) -> None:
    if args.all_tensors:
        from onnxvis.cli import tensors

        args.op = None
        tensors.run(args)
        return
    from onnxvis.engine.inspector import Inspector
    from onnxvis.model.layers import no_conv_layer

    inspector = Inspector(args.model)
    if not inspector.layers:
        raise no_conv_layer(args.model, "onnxvis draws conv layers only, check that this is the model you meant")
    print("\n".join(layer_rows(inspector.layers)))
