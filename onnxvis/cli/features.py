"""onnxvis features."""

from __future__ import annotations

import argparse
import sys

from onnxvis.cli.common import (
    add_labels,
    add_layers,
    add_output,
    add_preprocess_options,
    apply_labels,
    guess_note,
    open_inspector,
    output_dir,
    print_paths,
    target_labels_note,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="what a channel wants to see: the image that excites it most, optimised from noise (feature visualisation, "
        "Lucent's recipe)",
        description="For chosen channels of chosen places, optimise an image that maximises the channel's mean activation, "
        "with Lucent 0.1.8's recipe: a Fourier-parameterised image with decorrelated colour and a sigmoid; the transforms "
        "pad 12, jitter 8, random scale 0.9-1.1, random rotation -10..10 degrees, jitter 4; the model's preprocessing and "
        "size; Adam at lr 0.05. The gradient comes from the ONNX file (onnx-ad's backward graph in onnxruntime); the channels "
        "of a place are optimised together as one batch. Writes one grid per place (features_<place>.png) and one PNG per "
        "channel (features_<place>_c<channel>.png; with --diversity, _c<channel>_d<k>.png).",
        epilog="examples:\n  onnxvis features squeezenet.onnx --layers 15 --channels 0-7\n"
        "  onnxvis features models/googlenet.onnx --tensor inception4a --channels 0 --steps 256\n"
        "  onnxvis features models/resnet18.onnx --layers -1 --objective neuron --channels 0-3\n"
        "  onnxvis features models/resnet18.onnx --objective class --target 'tiger cat'\n"
        "  onnxvis features squeezenet.onnx --layers 25 --channels 3 --diversity 4 --format png,npy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    add_layers(p, "the last conv layer with a spatial output")
    p.add_argument(
        "--tensor",
        dest="tensors",
        action="append",
        metavar="NAME",
        help="any tensor of the graph with (batch, channels, height, width) values, e.g. a block's output (repeat for several)",
    )
    p.add_argument("--channels", metavar="SPEC", help="channels to optimise: 0-15, 3,5,9-11, or all (default: the first 16)")
    p.add_argument(
        "--objective",
        choices=["channel", "neuron", "class"],
        default="channel",
        help="channel: the channel's mean activation (default, Lucent's); neuron: the channel at the centre of the tensor; "
        "class: a class score before a final Softmax (the logit), with --target",
    )
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="for --objective class: class index or name (from --labels, the model's names, or the ImageNet-1k names guessed "
        "for 1000 or 1001 scores), several comma-separated",
    )
    p.add_argument("--target-output", metavar="NAME", help="the output that holds the class scores, for models with several")
    add_labels(p)
    p.add_argument(
        "--diversity",
        type=int,
        default=1,
        metavar="N",
        help="N different images per channel, pushed apart by Lucid's Gram-matrix diversity penalty (weight 100, as Lucent's "
        "tutorial) (default 1)",
    )
    p.add_argument("--size", type=int, default=128, metavar="PX", help="side of the optimised image (default 128)")
    p.add_argument("--steps", type=int, default=512, metavar="N", help="Adam steps (default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same images (default 0)")
    add_preprocess_options(p)
    p.add_argument(
        "--format",
        dest="formats",
        default="png",
        metavar="png,npy,tensorboard",
        help="what to write: png (default), npy (float32 N x size x size x 3 in [0, 1], and the channel of each), "
        "tensorboard (needs pip install 'onnxvis[tensorboard]'), comma-separated",
    )
    add_output(p)


def run(args: argparse.Namespace) -> None:
    from onnxvis.analysis.cam.runs import default_layer, places_for
    from onnxvis.analysis.features.run import Recipe, visualise
    from onnxvis.progress import Progress
    from onnxvis.write.features import parse_feature_formats, write_features

    formats = parse_feature_formats(args.formats)
    if "tensorboard" in formats:
        from onnxvis.write.tensorboard import check_available

        check_available()
    recipe = Recipe(size=args.size, steps=args.steps)
    recipe.check()
    inspector = open_inspector(args)
    if args.objective == "class":
        apply_labels(args, inspector, inspector.class_output(args.target_output))
        places = []
    else:
        layers = inspector.select(args.layers) if args.layers else ([] if args.tensors else [default_layer(inspector)])
        places = places_for(inspector, layers, args.tensors or [])
    out = output_dir(args, inspector.model.name, [inspector.model.path])
    written: list = []
    with Progress(args.steps * max(1, len(places)), "features", unit="step") as bar:
        runs = visualise(
            inspector, places, args.channels, objective=args.objective, targets=args.target, output=args.target_output,
            diversity=args.diversity, seed=args.seed, recipe=recipe, on_step=lambda place, step, values: bar.advance(place.label),
        )
        for images in runs:
            for image in images[:: args.diversity]:
                name = f"class {image.channel}" + (f" ({image.label})" if image.label else "") if args.objective == "class" else (
                    f"channel {image.channel}")
                bar.write(f"{image.place.label} {name}: {args.objective} objective {image.value:.4g} at the last step")
            written.extend(write_features(images, out, formats))
    notes = [f"note: {note}" for note in inspector.gradient_notes()]
    for note in notes + guess_note(inspector) + target_labels_note(inspector, args.target):
        print(note, file=sys.stderr)
    print_paths(written)
