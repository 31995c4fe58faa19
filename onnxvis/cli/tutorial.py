"""onnxvis tutorial."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onnxvis.cli.common import print_paths
from onnxvis.errors import OnnxvisError, printable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tutorial",
        help="write the PyTorch tutorial's TensorBoard run: its tags, steps and pixels (needs: pip install 'onnxvis[tensorboard]')",
        description="Write one TensorBoard run holding what the AlexNet visualisation tutorial's two scripts write "
        "with SummaryWriter, from the ONNX file alone: for the first two conv layers n, "
        "'n_Convlayer_split_in_channel' (one step per output channel) and 'n_all' at step 620 (the kernels "
        "viewed as tiles of 3 channels, view(-1, 3, k, k)); and 'feature map in conv1' at step 620 (the first "
        "conv layer's maps of IMAGE resized to 224x224 and normalised with CIFAR-10's mean and std). Every "
        "grid is make_grid(normalize=True, scale_each=True), converted to bytes as add_image does. Needs "
        "neither torch nor TensorFlow.",
        epilog="examples:\n  onnxvis tutorial models/alexnet.onnx\n  onnxvis tutorial models/alexnet.onnx cat.jpg -o runs/tutorial\n"
        "  tensorboard --logdir runs/tutorial",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("image", metavar="IMAGE", nargs="?", help="photo for the feature maps (default: matplotlib's sample portrait)")
    p.add_argument(
        "--input",
        dest="inputs",
        action="append",
        metavar="NAME=VALUE",
        help="a value for another model input: a number fills it, or a .npy file (repeat for several inputs)",
    )
    p.add_argument("-o", "--output", metavar="DIR", help="folder of the TensorBoard run (default onnxvis-out/<model name>/tutorial/)")


def run(args: argparse.Namespace) -> None:
    import shlex

    from onnxvis.image import preprocess as pp
    from onnxvis.image.inputs import parse_input_values
    from onnxvis.model.file import Model
    from onnxvis.outdir import OutputDir, default_root
    from onnxvis.write.tensorboard import INSTALL_HINT, check_available
    from onnxvis.write.tutorial import tutorial_run, write_run

    try:
        check_available()
    except OnnxvisError:
        raise OnnxvisError(
            f"onnxvis tutorial writes a TensorBoard run and needs the tensorboard package; install it with: {INSTALL_HINT}"
        ) from None
    model = Model.open(args.model)
    image = Path(args.image) if args.image else pp.default_image_path()
    # its own folder: TensorBoard takes every event file of a folder as one run
    out = OutputDir(Path(args.output) if args.output else default_root(model.name) / "tutorial", protect=[model.path, image])
    inputs = parse_input_values(args.inputs)
    try:
        run = tutorial_run(model, image, inputs)
    except OnnxvisError as exc:
        if exc.setting != "inputs":  # --input is the only flag of fmaps that the tutorial takes
            exc.setting = None
        raise
    written = write_run(run, out)
    if run.image is not None:  # None: the feature map was skipped (the model does not take 224x224 images)
        print(f"image: {run.image}", file=sys.stderr)
    for line in run.lines:
        print(printable(line), file=sys.stderr)
    print_paths([written])
    sys.stdout.flush()  # the path first, then how to open it, even when both go to one terminal
    print(f"open it with: tensorboard --logdir {shlex.quote(str(out.root))}", file=sys.stderr)
