"""onnxvis export."""

from __future__ import annotations

import argparse

from onnxvis.cli.common import floats, ints, print_paths
from onnxvis.errors import OnnxvisError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a torchvision model to ONNX (needs: pip install 'onnxvis[export]')",
        description="Build a torchvision classification model, load its weights, export it to ONNX, check it "
        "against torch on a random input, and record the preprocessing and labels in its metadata.",
        epilog="examples:\n  onnxvis export alexnet\n  onnxvis export alexnet --weights alexnet-owt-7be5be79.pth\n"
        "  onnxvis export resnet18 --weights random -o models/\n"
        "  onnxvis export resnet18 --weights checkpoint.pth --labels classes.txt -o models/pets.onnx\n"
        "  onnxvis export alexnet --weights cifar10-alexnet.pth --labels cifar10.txt --resize 224,224 \\\n"
        "      --mean 0.49139968,0.48215827,0.44653124 --std 0.24703233,0.24348505,0.26158768",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="NAME", help="a torchvision model name: alexnet, resnet18, vgg16, squeezenet1_1, ...")
    p.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (pretrained, from the torch hub cache or downloaded; the default), "
        "'random' (random init, recorded as such), or the path of a .pth file: a state dict, or a training "
        "checkpoint holding one under state_dict, model, model_state_dict, net or weights; 'module.' and "
        "'_orig_mod.' key prefixes are removed, another class count is read from the classifier. Read with "
        "weights_only=True: a pickled whole model is refused",
    )
    p.add_argument("--labels", metavar="FILE", help="class names, one per line or a JSON list, one per class; stored in the model")
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR|FILE.onnx",
        default="models",
        help="folder for NAME.onnx (default models/), or the .onnx file to write",
    )
    p.add_argument("--external-data", action="store_true", help="write the weights to NAME.onnx.data beside the model")
    p.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    pre = p.add_argument_group("preprocessing recorded in the model (default: the torchvision weights' own)")
    pre.add_argument("--preset", help="imagenet, caffe, tf, unit, raw or cifar10")
    pre.add_argument("--resize", type=ints, metavar="N|H,W", help="H,W: exact size; N: shorter side to N (use with --crop)")
    pre.add_argument("--crop", type=ints, metavar="H,W", help="centre crop after resizing; the model's input size")
    pre.add_argument("--mean", type=floats, metavar="M[,M,M]", help="per-channel mean")
    pre.add_argument("--std", type=floats, metavar="S[,S,S]", help="per-channel std")


def run(args: argparse.Namespace) -> None:
    hint = "install them with: pip install 'onnxvis[export]'"
    try:
        from exporters import missing_dependencies
    except ImportError as exc:  # an install without the exporters package
        raise OnnxvisError(f"export needs the exporters package, torch and torchvision ({exc}); {hint}") from None
    missing = missing_dependencies()
    if missing:
        raise OnnxvisError(f"export needs {', '.join(missing)}, which this Python cannot import; {hint}")
    from exporters.torchvision_export import export_model

    if args.resize is not None and len(args.resize) == 1 and args.crop is None:
        raise OnnxvisError("--resize N (shorter side) needs --crop H,W to fix the model's input size; for an exact size give --resize H,W")
    preprocess = {"preset": args.preset, "resize": args.resize, "crop": args.crop, "mean": args.mean, "std": args.std}
    result = export_model(
        args.model,
        weights=args.weights,
        output_dir=args.output,
        external_data=args.external_data,
        opset=args.opset,
        labels=args.labels,
        preprocess=preprocess,
    )
    print_paths(result.files)
