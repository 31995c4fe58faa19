"""onnxvis saliency."""

from __future__ import annotations

import argparse
import sys

from onnxvis.cli.common import (
    add_labels,
    add_output,
    add_preprocess_options,
    apply_labels,
    check_target_first,
    guess_note,
    image_paths,
    open_inspector,
    output_dir,
    print_paths,
    target_labels_note,
)
from onnxvis.errors import OnnxvisError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "saliency",
        help="which pixels the class score depends on: Captum's gradient attributions (saliency, input x gradient, "
        "integrated gradients, SmoothGrad)",
        description="Compute, for each image, the attribution of a class score to the input pixels as Captum does "
        "(same numbers), from the ONNX file: onnx-ad's backward pass runs with the forward pass in one onnxruntime "
        "session, for any model, without torch. The score is the class score before a final Softmax (the logits). "
        "Writes the attribution's heat map over the photo as PNG (the absolute value summed over the channels, scaled "
        "as Captum's visualize_image_attr), and with --format npy the raw attribution (float32, the model input's "
        "shape without the batch axis, in its layout).",
        epilog="examples:\n  onnxvis saliency models/resnet18.onnx cat.jpg\n"
        "  onnxvis saliency models/resnet18.onnx cat.jpg --method integrated-gradients --steps 50 --baseline black\n"
        "  onnxvis saliency models/resnet18.onnx cat.jpg --method smoothgrad --samples 20 --noise 0.3 --format png,npy\n"
        "  onnxvis saliency pets.onnx cat.jpg --labels pets.txt --target Bengal",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("images", metavar="IMAGE", nargs="*", help="photos or folders of photos (default: matplotlib's sample portrait)")
    p.add_argument(
        "--method",
        choices=["gradient", "input-x-gradient", "integrated-gradients", "smoothgrad"],
        default="gradient",
        help="gradient: Captum's Saliency (abs=False); input-x-gradient: InputXGradient; integrated-gradients: "
        "IntegratedGradients (Gauss-Legendre); smoothgrad: NoiseTunnel over Saliency (default gradient)",
    )
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="class index, or class name (from --labels, the model's names, or the ImageNet-1k names guessed for "
        "1000 or 1001 scores; default: the predicted class)",
    )
    p.add_argument("--target-output", metavar="NAME", help="the output that holds the class scores, for models with several")
    add_labels(p)
    p.add_argument("--steps", type=int, default=50, metavar="N", help="integrated gradients' quadrature points (default 50, as Captum)")
    p.add_argument(
        "--baseline",
        choices=["zero", "black", "blur"],
        default="zero",
        help="integrated gradients' starting point: zero in the model input's space (Captum's default), a black photo, "
        "or the photo blurred (Gaussian, radius a tenth of its shorter side), both preprocessed as the photo",
    )
    p.add_argument("--samples", type=int, default=5, metavar="N", help="SmoothGrad's noisy copies of the input (default 5, as Captum)")
    p.add_argument(
        "--noise",
        type=float,
        default=1.0,
        metavar="SD",
        help="SmoothGrad's noise: the standard deviation, in the model input's units (default 1.0, Captum's stdevs)",
    )
    p.add_argument("--seed", type=int, default=0, help="SmoothGrad's random seed (default 0)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="inputs per run for the steps and samples (default 16)")
    add_preprocess_options(p)
    p.add_argument(
        "--format",
        dest="formats",
        default="png",
        metavar="png,npy,tensorboard",
        help="what to write: png (the heat map over the photo; default), npy (the raw attribution), tensorboard "
        "(needs pip install 'onnxvis[tensorboard]'), comma-separated",
    )
    add_output(p)


def run(args: argparse.Namespace) -> None:
    from onnxvis.analysis.saliency import attribute
    from onnxvis.progress import Progress
    from onnxvis.write.cam import parse_cam_formats
    from onnxvis.write.saliency import write_saliency

    if args.batch_size < 1:
        raise OnnxvisError("--batch-size must be 1 or more")
    formats = parse_cam_formats(args.formats)
    if "tensorboard" in formats:
        from onnxvis.write.tensorboard import check_available

        check_available()
    inspector = open_inspector(args)
    images = image_paths(args)
    output = inspector.class_output(args.target_output)
    apply_labels(args, inspector, output)
    check_target_first(args, inspector, output)
    out = output_dir(args, inspector.model.name, [inspector.model.path, *images])
    notes: list[str] = []
    with Progress(len(images), f"saliency {args.method}") as bar:

        def each(result) -> None:
            for note in result.notes:
                if note not in notes:
                    notes.append(note)
            bar.advance(result.image.name)

        results = attribute(
            inspector, images, args.method, args.target, output, steps=args.steps, baseline=args.baseline,
            samples=args.samples, noise=args.noise, seed=args.seed, batch_size=args.batch_size,
        )
        written = write_saliency(results, out, formats, each)
    for note in [*(f"note: {n}" for n in notes), *guess_note(inspector), *target_labels_note(inspector, args.target)]:
        print(note, file=sys.stderr)
    print_paths(written)
