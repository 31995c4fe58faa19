"""onnxvis tensors."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tensors",
        help="list every tensor of a model with its shape, as --tensor takes them",
        description="Print one line per tensor of the main graph: its name (as fmaps, cam and saliency's --tensor "
        "take it), its shape by onnx's shape inference (a free dimension keeps its name, '?' where inference cannot "
        "tell), its element type, and the op and node that make it. Graph inputs come first; weights (initializers "
        "and Constant nodes) are left out.",
        epilog="examples:\n  onnxvis tensors models/alexnet.onnx\n  onnxvis tensors models/alexnet.onnx --op Relu\n"
        "  onnxvis cam models/alexnet.onnx cat.jpg --tensor NAME",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("--op", metavar="OP", action="append", help="only the tensors made by this op type, e.g. Relu or Add (repeatable)")


def run(args: argparse.Namespace) -> None:
    from onnxvis.cli.common import tensor_table
    from onnxvis.model.file import Model
    from onnxvis.model.tensors import tensor_rows

    rows = tensor_rows(Model.open(args.model))
    if args.op:
        wanted = {op.lower() for op in args.op}
        rows = [r for r in rows if r.op.lower() in wanted]
    print("\n".join(tensor_table(rows)))
