"""onnxvis predict."""

from __future__ import annotations

import argparse
import sys

from onnxvis.cli.common import (
    add_labels,
    add_preprocess_options,
    add_target_output,
    apply_labels,
    guess_note,
    image_paths,
    labels_note,
    open_inspector,
)
from onnxvis.errors import printable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="print the top-k classes of images: the quickest check of a model and its preprocessing",
        description="Run the whole model on each image (folders are walked for image files, in sorted order) "
        "and print its best classes with their names: from --labels FILE, else the names the model carries "
        "(onnxvis export stores them), else, for 1000 or 1001 class scores, ImageNet-1k's names, said to be a "
        "guess. Scores are probabilities: a softmax of the model's outputs, unless they already are.",
        epilog="examples:\n  onnxvis predict models/alexnet.onnx cat.jpg\n"
        "  onnxvis predict model.onnx photos/ --top 1 --format csv > predictions.csv\n"
        "  onnxvis predict squeezenet.onnx photos/ --preset caffe --format jsonl\n"
        "  onnxvis predict pets.onnx photos/ --labels pets.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="+", help="photos, or folders walked for image files")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument(
        "--format",
        dest="formats",
        choices=["text", "csv", "jsonl"],
        default="text",
        help='text (default): a block per image; csv: image,rank,class,label,score; jsonl: one line per image, '
        '{"image": PATH, "top": [{"class": INDEX, "label": NAME_OR_NULL, "score": FLOAT}, ...]}',
    )
    add_target_output(p)
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per run when the model allows batches (default 8)")
    add_labels(p)
    add_preprocess_options(p)


def scores_note(output: str, softmax: list[bool]) -> str:
    """Whether the probabilities shown are a softmax of the output, or its values as they are."""
    if all(softmax):
        return f"scores: a softmax of output {output!r}, whose values are not probabilities"
    if not any(softmax):
        return f"scores: output {output!r} as it is, no softmax: its values already are probabilities (they sum to 1)"
    return (f"scores: a softmax of output {output!r} for {sum(softmax)} of {len(softmax)} images; "
            "for the others its values already were probabilities (they sum to 1)")


def run(args: argparse.Namespace) -> None:
    import csv
    import json

    from onnxvis.progress import Progress

    inspector = open_inspector(args, batch_size=args.batch_size)
    images = image_paths(args)
    apply_labels(args, inspector, args.target_output)
    # before any line is printed: the library checks --top, and a model without class scores fails here
    predictions = inspector.predict(images, top=args.top, output=args.target_output)
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.formats == "csv" else None
    if writer is not None:
        writer.writerow(["image", "rank", "class", "label", "score"])
    softmax: list[bool] = []
    output = ""
    with Progress(len(images), "predict", unit="image") as bar:
        for prediction in predictions:
            softmax.append(prediction.softmax)
            output = prediction.output
            if writer is not None:
                for rank, (index, label, score) in enumerate(prediction.top, 1):
                    writer.writerow([str(prediction.image), rank, index, "" if label is None else label, f"{score:.6g}"])
            elif args.formats == "jsonl":
                top = [{"class": index, "label": label, "score": score} for index, label, score in prediction.top]
                print(json.dumps({"image": str(prediction.image), "top": top}, ensure_ascii=False))
            else:
                print(printable(str(prediction.image)))
                for rank, (index, label, score) in enumerate(prediction.top, 1):
                    print(printable(f"  {rank}. {index:>5}  {score:8.4f}  {label if label is not None else ''}".rstrip()))
            sys.stdout.flush()
            bar.advance(prediction.image.name)
    for note in guess_note(inspector) + labels_note(inspector) + [scores_note(output, softmax)]:
        print(note, file=sys.stderr)
    print(f"preprocessing: {inspector.preprocessing.preprocess.describe()}", file=sys.stderr)
