"""Write ImageNet-1k's class names, shipped as onnxvis/engine/imagenet_classes.txt, from torchvision's list.

The names are ``torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["categories"]``: the 1000
classes in the usual order (sorted WordNet ids), one short name each, the names every torchvision
classifier carries. onnxvis reads the shipped file (no torch) when a model with no names of its own
has 1000 class scores, or 1001 after a background class (:func:`onnxvis.engine.classes.guess_class_names`).

Run it once, where torchvision is installed; ``--check`` only compares (exit 1 when they differ)::

    python -m exporters.imagenet_labels            # writes onnxvis/engine/imagenet_classes.txt
    python -m exporters.imagenet_labels --check
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "onnxvis" / "engine" / "imagenet_classes.txt"


def torchvision_categories() -> list[str]:
    """torchvision's ImageNet-1k names, in class-index order."""
    from torchvision.models import AlexNet_Weights

    names = list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != 1000 or len(set(names)) != 1000:
        raise SystemExit(f"torchvision gave {len(names)} names ({len(set(names))} distinct), not ImageNet-1k's 1000")
    bad = [n for n in names if not n or n != n.strip() or "\n" in n or "\r" in n]
    if bad:
        raise SystemExit(f"names that cannot be one line each: {bad[:3]}")
    return names


def file_text(names: list[str]) -> str:
    return "".join(f"{name}\n" for name in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=SHIPPED, help=f"where to write (default {SHIPPED})")
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    text = file_text(torchvision_categories())
    if args.check:
        same = args.output.is_file() and args.output.read_text(encoding="utf-8") == text
        print(f"{args.output}: {'the same as' if same else 'DIFFERENT from'} torchvision's list")
        return 0 if same else 1
    handle, name = tempfile.mkstemp(dir=args.output.parent, prefix=".imagenet_classes.")
    with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
        out.write(text)
    os.chmod(name, 0o644)  # mkstemp's file is private; package data is readable by all
    os.replace(name, args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
