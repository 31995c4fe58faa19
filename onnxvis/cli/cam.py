"""onnxvis cam."""

from __future__ import annotations

import argparse
import sys

from onnxvis.cli.common import (
    add_labels,
    add_layers,
    add_output,
    add_preprocess_options,
    apply_labels,
    check_target_first,
    floats,
    guess_note,
    image_paths,
    open_inspector,
    output_dir,
    print_paths,
    target_labels_note,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cam",
        help="where the model looks: class activation maps (Grad-CAM and its family, ScoreCAM, AblationCAM, EigenCAM, FEM, "
        "KPCA-CAM) over the photo",
        description="Compute, for each image and place, the class activation map of a class as pytorch-grad-cam "
        "1.5 does (same numbers), from the ONNX file: no torch, any framework's model. "
        "Writes the map over the photo (grad-cam's show_cam_on_image, JET colours) as PNG, and with "
        "--format npy the map itself (float32, the model input's height x width, in [0, 1]). score: ScoreCAM, "
        "one run of the whole model per channel (masks batched); ablation: AblationCAM, which runs only the "
        "graph after the chosen tensor; eigen, fem, kpca: from the activations alone (not class-specific). "
        "grad, gradpp, xgrad, layer, hires, elementwise, eigengrad, fullgrad: the gradient methods, one forward "
        "and backward pass (onnx-ad's backward graph in onnxruntime), of the class score before a final Softmax.",
        epilog="examples:\n  onnxvis cam models/resnet18.onnx cat.jpg\n"
        "  onnxvis cam models/resnet18.onnx cat.jpg --method score --target 'tiger cat'\n"
        "  onnxvis cam pets.onnx cat.jpg --labels pets.txt --target Bengal\n"
        "  onnxvis cam models/resnet18.onnx cat.jpg --tensor relu_16 --format png,npy --metrics\n"
        "  onnxvis cam squeezenet.onnx photos/ --preset caffe --method eigen",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("images", metavar="IMAGE", nargs="*", help="photos or folders of photos (default: matplotlib's sample portrait)")
    p.add_argument(
        "--method",
        choices=["score", "ablation", "eigen", "fem", "kpca", "grad", "gradpp", "xgrad", "layer", "hires", "elementwise", "eigengrad",
                 "fullgrad"],
        default="ablation",
        help="the CAM method (default ablation); grad ... fullgrad use gradients (fullgrad takes every layer with a bias, "
        "not --layers or --tensor)",
    )
    add_layers(p, "the last conv layer with a spatial output")
    p.add_argument(
        "--tensor",
        dest="tensors",
        action="append",
        metavar="NAME",
        help="any tensor of the graph with (batch, channels, height, width) values, e.g. a block's output after its "
        "residual add and activation (repeat for several)",
    )
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="class index, or class name (from --labels, the model's names, or the ImageNet-1k names guessed for "
        "1000 or 1001 scores; case does not matter) (default: the predicted class)",
    )
    p.add_argument("--target-output", metavar="NAME", help="the output that holds the class scores, for models with several")
    add_labels(p)
    p.add_argument(
        "--metrics",
        action="store_true",
        help="print grad-cam's CamMultImageConfidenceChange and ROAD scores (ROAD needs pip install 'onnxvis[cam]')",
    )
    p.add_argument(
        "--percentiles",
        type=floats,
        default=(10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0),
        metavar="P,...",
        help="ROAD's percentiles for --metrics (default 10,20,...,90, as grad-cam's ROADCombined)",
    )
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="masked images per run for ScoreCAM (default 16)")
    add_preprocess_options(p)
    p.add_argument(
        "--format",
        dest="formats",
        default="png",
        metavar="png,npy,tensorboard",
        help="what to write: png (the map over the photo; default), npy (the map), tensorboard (needs "
        "pip install 'onnxvis[tensorboard]'), comma-separated",
    )
    add_output(p)


def run(args: argparse.Namespace) -> None:
    from onnxvis.analysis.cam.gradmaths import GRADIENT_METHODS
    from onnxvis.analysis.cam.runs import Cam, check_batch_size, default_layer, places_for
    from onnxvis.errors import OnnxvisError
    from onnxvis.progress import Progress
    from onnxvis.write.cam import parse_cam_formats, write_cams

    check_batch_size(args.batch_size)  # the library's check, before the output folder is made
    formats = parse_cam_formats(args.formats)
    if "tensorboard" in formats:
        from onnxvis.write.tensorboard import check_available

        check_available()
    if args.metrics:
        from onnxvis.analysis.cam.metrics import check_percentiles, check_road_available, metrics_line

        check_percentiles(args.percentiles)
        check_road_available()  # before the long run
    inspector = open_inspector(args)
    images = image_paths(args)
    output = inspector.class_output(args.target_output)
    apply_labels(args, inspector, output)
    check_target_first(args, inspector, output)
    gradients = args.method in GRADIENT_METHODS
    if args.method == "fullgrad":
        if args.layers or args.tensors:
            print("note: FullGrad takes every layer with a bias, as grad-cam's: --layers and --tensor are ignored", file=sys.stderr)
        places = []
    else:
        layers = inspector.select(args.layers) if args.layers else ([] if args.tensors else [default_layer(inspector, output)])
        places = places_for(inspector, layers, args.tensors or [])
    out = output_dir(args, inspector.model.name, [inspector.model.path, *images])
    written: list = []
    rules: list[str] = []
    with Progress(len(images) * max(1, len(places)), f"cam {args.method}") as bar:

        def each(result) -> None:
            name = result.image.name
            if not places or result.place == places[0]:  # once per image: the class its maps are of
                if result.score_rule and not rules:  # once per run: how the scores were read from an output of another shape
                    rules.append(result.score_rule)
                    bar.write(f"note: output {output!r}: {result.score_rule}")
                bar.write(f"{name}: {result.target_text()}" + (" (the predicted class)" if args.target is None else ""))
            if result.blank:
                bar.write(
                    f"{name} {result.place.label}: the map is all zeros (the {args.method} method finds nothing at this place "
                    f"for class {result.target}); try another layer or tensor (--layers, --tensor) or another target (--target"
                    + (", --target-output)" if len(inspector.model.graph.output) > 1 else ")")
                )
            if args.metrics:
                try:
                    bar.write(metrics_line(inspector, result, args.percentiles, output))
                except OnnxvisError as exc:  # a metric is no reason to fail the run
                    bar.write(f"{name} {result.place.label}: no metrics: {exc}")
            bar.advance(name)

        if gradients:
            from onnxvis.analysis.cam.gradcams import gradient_cams

            results = gradient_cams(inspector, images, places, args.method, args.target, output)
        else:
            results = Cam(inspector, places, args.target, output, method=args.method, batch_size=args.batch_size)(images)
        try:
            write_cams(results, out, formats, each, written=written)
        except OnnxvisError as exc:
            if not written:
                raise
            print_paths(written)  # never fail after writing files without naming them
            files = "the file" if len(written) == 1 else f"the {len(written)} files"
            raise OnnxvisError(f"{exc} ({files} written before it: listed on stdout)", setting=exc.setting) from None
    notes = [f"note: {note}" for note in inspector.gradient_notes()] if gradients else []
    for note in notes + guess_note(inspector) + target_labels_note(inspector, args.target):
        print(note, file=sys.stderr)
    print_paths(written)
