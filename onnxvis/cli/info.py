"""onnxvis info."""

from __future__ import annotations

import argparse

from onnxvis.cli.common import GUESS_HINT, LABELS_GUESS_HINT, layer_rows
from onnxvis.errors import printable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe a model: producer, opsets, inputs, guessed preprocessing, classes, conv layers",
        description="Print the producer, the opsets, the inputs with their guessed layout and preprocessing, "
        "the classes and where their names come from (the model's metadata, or ImageNet-1k's guessed for "
        "1000 or 1001 scores), then the conv layers with how each one's weight is stored.",
        epilog="example:\n  onnxvis info models/alexnet.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")


def run(args: argparse.Namespace) -> None:
    from onnxvis.cli.common import with_flag
    from onnxvis.engine.inspector import NEEDS_A_VALUE, Inspector

    inspector = Inspector(args.model)
    lines = []
    for key, value in inspector.summary(full_paths=True):
        if key == "conv layers":
            lines.append(f"conv layers: {value}")
        elif key == "input" and value.endswith(NEEDS_A_VALUE):
            lines.append(f"{key:<9} {with_flag(value, 'inputs')}")
        else:
            lines.append(f"{key:<9} {value}")
        if key == "" and inspector.preprocessing.guessed:
            lines.append(f"{'':<9} {GUESS_HINT}")
        if key == "classes" and inspector.class_names.guessed:
            lines.append(f"{'':<9} {LABELS_GUESS_HINT}")
    if inspector.layers:
        lines.extend(layer_rows(inspector.layers))
    print("\n".join(printable(line) for line in lines))
