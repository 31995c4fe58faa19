"""The ``onnxvis`` command: parse arguments, call the library, print the files written.

Written paths go to stdout, one per line; messages go to stderr. A user mistake raises
:class:`~onnxvis.errors.OnnxvisError`, printed as one line ``onnxvis: error: ...`` with exit code 2.
Only argparse and the error type are imported at start-up, so ``onnxvis --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from onnxvis.errors import OnnxvisError, one_line, printable

if TYPE_CHECKING:
    from onnxvis.output import OutputDir

EXIT_USAGE = 2
EXIT_BUG = 1

DESCRIPTION = """\
See what a convolutional network learned, from its ONNX file alone: the kernels of its conv layers
and the feature maps that an image produces. No training framework needed.

quick tour:
  onnxvis export alexnet                      torchvision AlexNet -> models/alexnet.onnx (needs the export extra)
  onnxvis layers models/alexnet.onnx          list the conv layers
  onnxvis kernels models/alexnet.onnx         kernel grids of every conv layer -> PNG
  onnxvis fmaps models/alexnet.onnx cat.jpg   conv1 feature maps of a photo -> PNG
  onnxvis predict models/alexnet.onnx cat.jpg the top-5 classes: check the model and its preprocessing
  onnxvis cam models/alexnet.onnx cat.jpg     where the model looks for its class (as grad-cam) -> PNG
  onnxvis report models/alexnet.onnx cat.jpg  one HTML page: weights, kernels, feature maps, top-5
  onnxvis tutorial models/alexnet.onnx        the PyTorch tutorial's TensorBoard run, without torch
  onnxvis serve models/alexnet.onnx           explore it in the browser (needs the serve extra)
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line, like every other onnxvis error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"onnxvis: error: {one_line(message)}; see '{self.prog} --help'\n")
        raise SystemExit(EXIT_USAGE)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or H,W as whole numbers, got {text!r}") from None
    if not 1 <= len(values) <= 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected N or H,W of positive numbers, got {text!r}")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_grid_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("grid (torchvision make_grid options)")
    g.add_argument("--nrow", type=int, default=8, help="images per row (default 8)")
    g.add_argument("--padding", type=int, default=2, help="pixels between images (default 2)")
    g.add_argument("--pad-value", type=float, default=0.0, help="value of the padding, 0 black to 1 white (default 0)")
    g.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="draw raw values clipped to [0, 1] instead of min-max scaling")
    g.add_argument("--no-scale-each", dest="scale_each", action="store_false", help="scale all tiles together instead of each on its own")


def _add_preprocess_options(p: argparse.ArgumentParser) -> None:
    pre = p.add_argument_group("preprocessing (overrides the model's metadata)")
    pre.add_argument("--preset", help="imagenet, caffe, tf, unit, raw or cifar10")
    pre.add_argument("--resize", type=_ints, metavar="N|H,W", help="H,W: exact size; N: shorter side to N (use with --crop)")
    pre.add_argument("--crop", type=_ints, metavar="H,W", help="centre crop after resizing")
    pre.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="per-channel mean, in the value scale of --scale")
    pre.add_argument("--std", type=_floats, metavar="S[,S,S]", help="per-channel std")
    pre.add_argument("--bgr", action="store_true", help="feed channels in BGR order (Caffe models)")
    pre.add_argument("--scale", type=float, choices=[1.0, 255.0], help="value of white: 1 (0..1) or 255 (0..255)")
    pre.add_argument("--layout", choices=["NCHW", "NHWC"], help="input layout (default: detected from the graph)")
    pre.add_argument(
        "--input",
        dest="inputs",
        action="append",
        metavar="NAME=VALUE",
        help="a value for another model input: a number fills it, or a .npy file (repeat for several inputs)",
    )


def _add_formats(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        dest="formats",
        default="png",
        metavar="png,tensorboard",
        help="what to write: png (default), tensorboard (an event file in the output folder; needs "
        "pip install 'onnxvis[tensorboard]'), or both, comma-separated",
    )


def _add_colormap(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--colormap",
        choices=["grey", "diverging"],
        default="grey",
        help="grey: torchvision's picture (RGB for 3 input channels), min-max scaled (default); diverging: "
        "blue negative, white zero, red positive, each tile scaled by its largest magnitude, so the sign "
        "of every weight shows",
    )


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (default onnxvis-out/<model name>/)")


def _add_layers(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--layers",
        metavar="SPEC",
        help=f"which conv layers: comma list of indexes (0 is the first conv) or node names, or 'all' (default: {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnxvis", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
    pre.add_argument("--resize", type=_ints, metavar="N|H,W", help="H,W: exact size; N: shorter side to N (use with --crop)")
    pre.add_argument("--crop", type=_ints, metavar="H,W", help="centre crop after resizing; the model's input size")
    pre.add_argument("--mean", type=_floats, metavar="M[,M,M]", help="per-channel mean")
    pre.add_argument("--std", type=_floats, metavar="S[,S,S]", help="per-channel std")

    p = sub.add_parser(
        "layers",
        help="list the conv layers of a model",
        description="Print one line per conv layer: index, node name, op, weight shape, stride, padding, group, "
        "parameter count, and where the weight is stored.",
        epilog="example:\n  onnxvis layers models/alexnet.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")

    p = sub.add_parser(
        "info",
        help="describe a model: producer, opsets, inputs, guessed preprocessing, conv layers",
        description="Print the producer, the opsets, the inputs with their guessed layout and preprocessing, "
        "then the conv layers with how each one's weight is stored.",
        epilog="example:\n  onnxvis info models/alexnet.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")

    p = sub.add_parser(
        "kernels",
        help="draw the conv kernels as PNG grids",
        description="Read the conv weights from the ONNX file and write one PNG grid per layer. A layer with 3 "
        "input channels gives an RGB grid of its kernels, 1 input channel a grey grid, 1x1 kernels an "
        "output x input heat map, and any other layer a grey mosaic with one row per output channel and "
        "one column per input channel.",
        epilog="examples:\n  onnxvis kernels models/alexnet.onnx\n  onnxvis kernels models/alexnet.onnx --layers 0,1 --split\n"
        "  onnxvis kernels model.onnx --layers conv1 --nrow 16 -o pictures/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    _add_layers(p, "all")
    p.add_argument("--split", action="store_true",
                   help="also write, per output channel, the grid of its input-channel slices (the tutorial's view)")
    p.add_argument(
        "--max-tiles",
        type=int,
        default=None,
        metavar="N",
        help="draw at most N tiles per layer, cutting to the first output channels (default 262144, a VGG16 layer in full; 0 = no cap)",
    )
    _add_colormap(p)
    _add_formats(p)
    _add_grid_options(p)
    _add_output(p)

    p = sub.add_parser(
        "fmaps",
        help="draw the feature maps an image produces, as PNG grids",
        description="Run the model on an image with onnxruntime and write one PNG grid of feature maps per "
        "layer. A map is the conv node's own output, before any activation. Preprocessing comes from the "
        "model's metadata (onnxvis export writes it), else from a guess that is printed; the options below "
        "override it.",
        epilog="examples:\n  onnxvis fmaps models/alexnet.onnx\n  onnxvis fmaps models/alexnet.onnx cat.jpg --layers all\n"
        "  onnxvis fmaps models/alexnet.onnx cat.jpg dog.jpg photos/   # one folder of pictures per image\n"
        "  onnxvis fmaps models/alexnet.onnx cat.jpg --resize 224,224 \\\n"
        "      --mean 0.49139968,0.48215827,0.44653124 --std 0.24703233,0.24348505,0.26158768",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument(
        "images",
        metavar="IMAGE",
        nargs="*",
        help="photos or folders of photos to run (default: matplotlib's sample portrait); with several, each "
        "image's pictures go into a folder named after it",
    )
    _add_layers(p, "the first conv layer")
    _add_preprocess_options(p)
    _add_formats(p)
    _add_grid_options(p)
    _add_output(p)

    p = sub.add_parser(
        "predict",
        help="print the top-k classes of images: the quickest check of a model and its preprocessing",
        description="Run the whole model on each image (folders are walked for image files, in sorted order) "
        "and print its best classes, with their labels when the model carries them (onnxvis export stores "
        "them). Scores are probabilities: a softmax of the model's outputs, unless they already are.",
        epilog="examples:\n  onnxvis predict models/alexnet.onnx cat.jpg\n"
        "  onnxvis predict model.onnx photos/ --top 1 --format csv > predictions.csv\n"
        "  onnxvis predict squeezenet.onnx photos/ --preset caffe --format jsonl",
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
    p.add_argument("--output-name", metavar="NAME", help="the model output that holds the class scores (default: found from its shape)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per run when the model allows batches (default 8)")
    _add_preprocess_options(p)

    p = sub.add_parser(
        "cam",
        help="where the model looks: class activation maps (ScoreCAM, AblationCAM, EigenCAM, FEM, KPCA-CAM) over the photo",
        description="Compute, for each image and place, the class activation map of a class as pytorch-grad-cam "
        "1.5 does (same numbers), from forward passes only: no gradients, no torch, any framework's model. "
        "Writes the map over the photo (grad-cam's show_cam_on_image, JET colours) as PNG, and with "
        "--format npy the map itself (float32, the model input's height x width, in [0, 1]). score: ScoreCAM, "
        "one run of the whole model per channel (masks batched); ablation: AblationCAM, which runs only the "
        "graph after the chosen tensor; eigen, fem, kpca: from the activations alone (not class-specific).",
        epilog="examples:\n  onnxvis cam models/resnet18.onnx cat.jpg\n"
        "  onnxvis cam models/resnet18.onnx cat.jpg --method score --target 'tiger cat'\n"
        "  onnxvis cam models/resnet18.onnx cat.jpg --tensor relu_16 --format png,npy --metrics\n"
        "  onnxvis cam squeezenet.onnx photos/ --preset caffe --method eigen",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("images", metavar="IMAGE", nargs="*", help="photos or folders of photos (default: matplotlib's sample portrait)")
    p.add_argument(
        "--method", choices=["score", "ablation", "eigen", "fem", "kpca"], default="ablation", help="the CAM method (default ablation)"
    )
    _add_layers(p, "the last conv layer with a spatial output")
    p.add_argument(
        "--tensor",
        dest="tensors",
        action="append",
        metavar="NAME",
        help="any tensor of the graph with (batch, channels, height, width) values, e.g. a block's output after its "
        "residual add and activation (repeat for several)",
    )
    p.add_argument("--target", metavar="CLASS", help="class index, or label when the model has labels (default: the predicted class)")
    p.add_argument("--target-output", metavar="NAME", help="the output that holds the class scores, for models with several")
    p.add_argument(
        "--metrics",
        action="store_true",
        help="print grad-cam's CamMultImageConfidenceChange and ROAD scores (ROAD needs pip install 'onnxvis[cam]')",
    )
    p.add_argument(
        "--percentiles",
        type=_floats,
        default=(10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0),
        metavar="P,...",
        help="ROAD's percentiles for --metrics (default 10,20,...,90, as grad-cam's ROADCombined)",
    )
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="masked images per run for ScoreCAM (default 16)")
    _add_preprocess_options(p)
    p.add_argument(
        "--format",
        dest="formats",
        default="png",
        metavar="png,npy,tensorboard",
        help="what to write: png (the map over the photo; default), npy (the map), tensorboard (needs "
        "pip install 'onnxvis[tensorboard]'), comma-separated",
    )
    _add_output(p)

    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report: summary, weight statistics, kernels, feature maps, top-5",
        description="Write report.html: the model's summary (producer, opsets, inputs, preprocessing), a table "
        "of the conv layers with weight statistics (min, max, mean, std, the norm of each filter, near-dead "
        "filters), the kernel grid of every conv layer, and for each IMAGE the feature maps of the chosen "
        "layers with per-channel activation statistics and, when the model carries class labels, the top-5 "
        "predictions. Pictures are embedded; the file fetches nothing from the network.",
        epilog="examples:\n  onnxvis report models/alexnet.onnx cat.jpg dog.jpg\n"
        "  onnxvis report models/vgg16.onnx cat.jpg --layers 0,4,8 --colormap diverging -o reports/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("images", metavar="IMAGE", nargs="*", help="photos to run (none: a report of the weights alone)")
    p.add_argument("--full-paths", action="store_true",
                   help="show the full paths of the model and the images (default: file names only, for sharing)")
    p.add_argument(
        "--cam",
        choices=["score", "ablation", "eigen", "fem", "kpca", "none"],
        default="ablation",
        help="the class activation map drawn for each image, at the last spatial conv layer (default ablation; none: no map)",
    )
    _add_layers(p, "the first conv layer; the feature maps shown")
    p.add_argument(
        "--max-tiles",
        type=int,
        default=8192,
        metavar="N",
        help="kernel tiles per layer in the report, cutting to the first output channels (default 8192; 0 = no cap)",
    )
    _add_colormap(p)
    _add_preprocess_options(p)
    _add_grid_options(p)
    _add_output(p)

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

    p = sub.add_parser(
        "serve",
        help="explore a model in the browser: layers, kernels, feature maps and top-5 of your photos (needs: pip install 'onnxvis[serve]')",
        description="Start a local web server and print its URL. The page lists the conv layers with their weight "
        "statistics; click one to see its kernels (grey or diverging, whole or split per output channel) and, for "
        "a photo you drop on the page or the sample photo, its feature maps, the top-5 classes and (once onnxvis has them) the class "
        "activation map. The model is opened once; pictures are cached. It listens on 127.0.0.1 (this machine "
        "only) unless --host says otherwise; Ctrl-C stops it.",
        epilog="examples:\n  onnxvis serve models/alexnet.onnx\n  onnxvis serve model.onnx --port 8080 --preset caffe\n"
        "  onnxvis serve model.onnx --host 0.0.0.0     # reachable from other machines: no login, no encryption",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    _add_preprocess_options(p)

    p = sub.add_parser(
        "examples",
        help="find the images of a folder that excite each channel most, and crop them to the receptive field",
        description="Run the model on every image of the FOLDERs, in batches, and keep for each channel of the "
        "chosen layers the top-K images by the channel's spatial maximum (the conv node's own output, as fmaps "
        "draws it). Writes, per layer, examples_<idx>_<layer>.jsonl (one line per channel) and "
        "examples_<idx>_<layer>.png (each channel's K images cropped to the receptive field around the "
        "maximum), examples.html to browse them, and examples-state.npz, from which an interrupted run "
        "continues (run the same command again) and a finished one is redrawn (--redraw) without the model. "
        "Memory stays bounded by layers x channels x K. --engine ray spreads the work over a Ray cluster.",
        epilog="examples:\n  onnxvis examples models/alexnet.onnx photos/ --layers 4 --top 9\n"
        "  onnxvis examples models/alexnet.onnx photos/ -o ex/ && onnxvis examples models/alexnet.onnx --redraw -o ex/ --top 4 --tile 96\n"
        "  onnxvis examples models/alexnet.onnx /data/imagenet/val --layers all --engine ray --ray-address auto",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("folders", metavar="FOLDER", nargs="*", help="folders of images (walked recursively) or image files")
    _add_layers(p, "the last conv layer")
    p.add_argument("--top", type=int, default=9, metavar="K", help="images per channel (default 9)")
    p.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="entries kept per channel in examples-state.npz, so that --redraw can show up to N (default: max(K, 16))",
    )
    p.add_argument("--tile", type=int, default=64, metavar="PX", help="side of each cropped image in the pictures (default 64)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per onnxruntime run (default 8)")
    p.add_argument(
        "--redraw", action="store_true",
        help="draw the saved run of the output folder again (with another --top or --tile); the model does not run",
    )
    p.add_argument("--fresh", action="store_true", help="start afresh instead of continuing the run saved in the output folder")
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local",
        help="local: this process (default); ray: Ray Data actors (needs pip install 'onnxvis[ray]')",
    )
    p.add_argument(
        "--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. auto, or ray://head:10001); default: start Ray on this machine"
    )
    p.add_argument(
        "--workers", type=int, metavar="N",
        help="Ray actors, each with one onnxruntime session (default: the cluster's CPUs / --cpus-per-worker)",
    )
    p.add_argument(
        "--cpus-per-worker", type=int, default=1, metavar="N", help="CPUs and onnxruntime threads of each Ray actor (default 1)"
    )
    _add_preprocess_options(p)
    _add_output(p)
    return parser


class _VersionAction(argparse.Action):
    """--version that imports nothing until it is asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"onnxvis {_version()}")
        parser.exit()


def _version() -> str:
    from onnxvis import __version__

    return __version__


def _output_dir(args: argparse.Namespace, model_name: str, protect: list) -> OutputDir:
    from onnxvis.output import OutputDir

    root = Path(args.output) if args.output else Path("onnxvis-out") / model_name
    return OutputDir(root, protect=protect)


def _grid_options(args: argparse.Namespace):
    from onnxvis.grids import GridOptions

    return GridOptions(args.nrow, args.padding, args.pad_value, args.normalize, args.scale_each)


def _formats(args: argparse.Namespace) -> tuple[str, ...]:
    """--format, checked before any work (and whether the tensorboard package is there)."""
    from onnxvis.render import parse_formats

    formats = parse_formats(args.formats)
    if "tensorboard" in formats:
        from onnxvis.tensorboard import check_available

        check_available()
    return formats


def _print_paths(paths) -> None:
    for path in paths:
        print(path)


def cmd_export(args: argparse.Namespace) -> None:
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
    _print_paths(result.files)


def _fmt_tuple(values) -> str:
    return "x".join(str(v) for v in values) if values else "-"


def _layer_rows(layers) -> list[str]:
    """The layer table, its name column as wide as the longest name: tf2onnx and JAX names are long."""
    names = [printable(layer.name) for layer in layers]
    width = max([4, *map(len, names)])
    rows = [f"{'idx':>3}  {'name':<{width}} {'op':<12} {'weight':<16} {'stride':<7} {'pads':<9} {'group':>5} {'params':>10}  weight source"]
    for layer, name in zip(layers, names, strict=True):
        shape = _fmt_tuple(layer.weight_shape) if layer.weight_shape else "?"
        params = f"{layer.param_count:,}" if layer.param_count is not None else "?"
        where = f" [in {layer.graph_path}]" if layer.graph_path else ""
        if layer.op_type == "ConvTranspose" and layer.weight_shape:
            where += " [stored in x out/group; drawn per output channel]"
        if layer.fused_activation:
            where += f" [{layer.fused_activation} fused: maps are after it]"
        rows.append(printable(
            f"{layer.index:>3}  {name:<{width}} {layer.op_type:<12} {shape:<16} {_fmt_tuple(layer.strides):<7} "
            f"{','.join(map(str, layer.pads)):<9} {layer.group:>5} {params:>10}  {layer.source.describe()}{where}"
        ))
    return rows


def _no_conv_error(model_path) -> OnnxvisError:
    return OnnxvisError(
        f"{model_path} has no convolution layer (Conv, ConvTranspose, QLinearConv, ConvInteger); "
        "onnxvis draws conv layers only, check that this is the model you meant"
    )


def cmd_layers(args: argparse.Namespace) -> None:
    from onnxvis.inspector import Inspector

    inspector = Inspector(args.model)
    if not inspector.layers:
        raise _no_conv_error(args.model)
    print("\n".join(_layer_rows(inspector.layers)))


GUESS_HINT = "change it with --preset imagenet|caffe|tf|unit|raw|cifar10, or with --resize, --crop, --mean, --std, --bgr, --scale"
"""How a user changes a guessed preprocessing (printed with every guess)."""


def cmd_info(args: argparse.Namespace) -> None:
    from onnxvis.inspector import Inspector

    inspector = Inspector(args.model)
    lines = []
    for key, value in inspector.summary(full_paths=True):
        if key == "conv layers":
            lines.append(f"conv layers: {value}")
        else:
            lines.append(f"{key:<9} {value}")
        if key == "" and inspector.preprocessing.guessed:
            lines.append(f"{'':<9} {GUESS_HINT}")
    if inspector.layers:
        lines.extend(_layer_rows(inspector.layers))
    print("\n".join(printable(line) for line in lines))


def cmd_kernels(args: argparse.Namespace) -> None:
    from onnxvis.inspector import Inspector
    from onnxvis.render import draw_kernels

    inspector = Inspector(args.model)
    chosen = inspector.select(args.layers, default="all")
    grid = _grid_options(args)
    if args.max_tiles is not None and args.max_tiles < 0:
        raise OnnxvisError("--max-tiles must be 0 (no cap) or more")
    formats = _formats(args)
    out = _output_dir(args, inspector.model.name, [inspector.model.path])
    _print_paths(
        draw_kernels(
            chosen, out, grid, split=args.split, max_tiles=args.max_tiles, formats=formats, colormap=args.colormap, progress=True
        )
    )


def _preprocess_changes(args: argparse.Namespace) -> dict:
    """The preprocessing fields the flags change."""
    changes: dict = {}
    if args.resize is not None:
        if len(args.resize) == 1 and args.crop is None:
            raise OnnxvisError("--resize N (shorter side) needs --crop H,W; for an exact size give --resize H,W")
        changes["resize"] = args.resize
        changes["crop"] = args.crop
    elif args.crop is not None:
        changes["crop"] = args.crop
    if args.mean is not None:
        changes["mean"] = args.mean
    if args.std is not None:
        changes["std"] = args.std
    if args.bgr:
        changes["color"] = "BGR"
    if args.scale is not None:
        changes["scale"] = args.scale
    return changes


def _inspector(args: argparse.Namespace, **options):
    """The Inspector for a command with the preprocessing flags."""
    from onnxvis.inputs import parse_input_values
    from onnxvis.inspector import Inspector

    return Inspector(
        args.model,
        preset=args.preset,
        changes=_preprocess_changes(args),
        layout=args.layout,
        inputs=parse_input_values(args.inputs),
        explicit_size=args.resize is not None or args.crop is not None,
        **options,
    )


def _guess_note(inspector) -> list[str]:
    """The note to print when the preprocessing was guessed (once the run worked: an error stays one line)."""
    settled = inspector.preprocessing
    return [f"note: the preprocessing is {settled.origin}; {GUESS_HINT}"] if settled.guessed else []


def _images(args: argparse.Namespace) -> list[Path]:
    from onnxvis import preprocess as pp

    return pp.image_files(args.images) if args.images else [pp.default_image_path()]


def cmd_fmaps(args: argparse.Namespace) -> None:
    from onnxvis.render import draw_fmaps, image_folders

    inspector = _inspector(args)
    chosen = inspector.select(args.layers, default="first")
    images = _images(args)
    grid = _grid_options(args)
    formats = _formats(args)
    _ = inspector.preprocessing  # a bad setting fails before anything is written
    out = _output_dir(args, inspector.model.name, [inspector.model.path, *images])  # a bad -o fails before the run
    if len(images) == 1:
        result = inspector.feature_maps(images[0], chosen)
        written = draw_fmaps(result, out, grid, formats=formats, progress=True)
        prepared_text = result.preprocess.describe()
    else:
        results = inspector.feature_maps(images, chosen)
        written = draw_fmaps(results, out, grid, formats=formats, progress=True, folders=image_folders(images))
        prepared_text = inspector.preprocessing.preprocess.describe()
    for note in _guess_note(inspector):
        print(note, file=sys.stderr)
    more = f" and {len(images) - 1} more" if len(images) > 1 else ""
    print(f"image{'s' if len(images) > 1 else ''}: {images[0]}{more}", file=sys.stderr)
    print(f"{inspector.image_input.describe()}", file=sys.stderr)
    print(f"preprocessing: {prepared_text}", file=sys.stderr)
    _print_paths(written)


def cmd_predict(args: argparse.Namespace) -> None:
    import csv
    import json

    from onnxvis.progress import Progress

    if args.top < 1:
        raise OnnxvisError("--top must be 1 or more")
    if args.batch_size < 1:
        raise OnnxvisError("--batch-size must be 1 or more")
    inspector = _inspector(args, batch_size=args.batch_size)
    images = _images(args)
    inspector.class_output(args.output_name)  # a model without class scores fails before the run
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.formats == "csv" else None
    if writer is not None:
        writer.writerow(["image", "rank", "class", "label", "score"])
    with Progress(len(images), "predict") as bar:
        for prediction in inspector.predict(images, top=args.top, output=args.output_name):
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
    for note in _guess_note(inspector):
        print(note, file=sys.stderr)
    print(f"preprocessing: {inspector.preprocessing.preprocess.describe()}", file=sys.stderr)


def cmd_cam(args: argparse.Namespace) -> None:
    from onnxvis.cammodel import compute_cams, default_layer, places_for
    from onnxvis.camwrite import parse_cam_formats, write_cams
    from onnxvis.progress import Progress

    if args.batch_size < 1:
        raise OnnxvisError("--batch-size must be 1 or more")
    formats = parse_cam_formats(args.formats)
    if "tensorboard" in formats:
        from onnxvis.tensorboard import check_available

        check_available()
    inspector = _inspector(args)
    images = _images(args)
    layers = inspector.select(args.layers) if args.layers else ([] if args.tensors else [default_layer(inspector)])
    places = places_for(inspector, layers, args.tensors or [])
    output = inspector.class_output(args.target_output)
    out = _output_dir(args, inspector.model.name, [inspector.model.path, *images])
    if args.metrics:
        from onnxvis.cammetrics import check_road_available, metrics_line

        check_road_available()  # before the long run
    with Progress(len(images) * len(places), f"cam {args.method}") as bar:

        def each(result) -> None:
            if args.metrics:
                bar.write(metrics_line(inspector, result, args.percentiles, output))
            bar.advance(result.image.name)

        results = compute_cams(inspector, images, places, args.method, args.target, output, args.batch_size)
        written = write_cams(results, out, formats, each)
    for note in _guess_note(inspector):
        print(note, file=sys.stderr)
    _print_paths(written)


def cmd_report(args: argparse.Namespace) -> None:
    from onnxvis.report import build_report, write_report

    inspector = _inspector(args)
    if args.max_tiles < 0:
        raise OnnxvisError("--max-tiles must be 0 (no cap) or more")
    grid = _grid_options(args)
    layers = inspector.select(args.layers, default="first")
    images = [Path(image) for image in args.images]
    if images:
        _ = inspector.preprocessing  # a bad setting fails before anything is written
    out = _output_dir(args, inspector.model.name, [inspector.model.path, *images])
    text = build_report(
        inspector,
        images,
        layers,
        grid=grid,
        colormap=args.colormap,
        max_tiles=args.max_tiles,
        full_paths=args.full_paths,
        progress=True,
        cam_method=None if args.cam == "none" else args.cam,
    )
    written = write_report(out, text)
    if images:
        for note in _guess_note(inspector):  # once it worked: a failure above stays one line
            print(note, file=sys.stderr)
    _print_paths([written])


def cmd_tutorial(args: argparse.Namespace) -> None:
    import shlex

    from onnxvis import preprocess as pp
    from onnxvis.inputs import parse_input_values
    from onnxvis.model import Model
    from onnxvis.output import OutputDir
    from onnxvis.tensorboard import INSTALL_HINT, check_available
    from onnxvis.tutorial import tutorial_run, write_run

    try:
        check_available()
    except OnnxvisError:
        raise OnnxvisError(
            f"onnxvis tutorial writes a TensorBoard run and needs the tensorboard package; install it with: {INSTALL_HINT}"
        ) from None
    model = Model.open(args.model)
    image = Path(args.image) if args.image else pp.default_image_path()
    # its own folder: TensorBoard takes every event file of a folder as one run
    out = OutputDir(Path(args.output) if args.output else Path("onnxvis-out") / model.name / "tutorial", protect=[model.path, image])
    inputs = parse_input_values(args.inputs)
    try:
        run = tutorial_run(model, image, inputs)
    except OnnxvisError as exc:
        if exc.setting != "inputs":  # --input is the only flag of fmaps that the tutorial takes
            exc.setting = None
        raise
    written = write_run(run, out)
    print(f"image: {run.image}", file=sys.stderr)
    for line in run.lines:
        print(printable(line), file=sys.stderr)
    _print_paths([written])
    sys.stdout.flush()  # the path first, then how to open it, even when both go to one terminal
    print(f"open it with: tensorboard --logdir {shlex.quote(str(out.root))}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        from onnxvis.serve import serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("starlette", "uvicorn", "python_multipart"):
            raise
        raise OnnxvisError(
            f"serve needs Starlette and uvicorn ({exc.name} is missing); install them with: pip install 'onnxvis[serve]'"
        ) from None
    from onnxvis.explorer import Explorer

    if not 0 <= args.port <= 65535:
        raise OnnxvisError(f"--port must be between 0 and 65535, got {args.port}")
    inspector = _inspector(args)
    try:
        _ = inspector.image_input
    except OnnxvisError:
        pass  # no image input: the page still shows the layers and kernels, and says why photos cannot run
    else:
        _ = inspector.preprocessing  # a bad preprocessing flag is an error now, not on the page
    serve(Explorer(inspector), args.host, args.port)


def cmd_examples(args: argparse.Namespace) -> None:
    from onnxvis import examples as ex
    from onnxvis.examples_draw import draw_examples
    from onnxvis.inputs import parse_input_values

    if args.top < 1:
        raise OnnxvisError(f"--top must be 1 or more, got {args.top}")
    keep = args.keep if args.keep is not None else max(args.top, ex.DEFAULT_KEEP)
    if keep < args.top:
        raise OnnxvisError(f"--keep ({keep}) must be at least --top ({args.top})")
    if args.redraw:
        if args.folders:
            raise OnnxvisError("--redraw draws the run saved in the output folder again: give no FOLDER")
        root = Path(args.output) if args.output else Path("onnxvis-out") / Path(args.model).stem
        state = ex.load_state(root)
        _print_paths(draw_examples(state, _output_dir(args, Path(args.model).stem, []), args.top, args.tile, progress=True))
        return
    if not args.folders:
        raise OnnxvisError("give one or more FOLDERs of images (or --redraw to draw a saved run again)")
    if args.batch_size < 1:
        raise OnnxvisError(f"--batch-size must be 1 or more, got {args.batch_size}")
    engine = None
    if args.engine == "ray":
        from onnxvis.examples_ray import ray_engine

        engine = ray_engine(args.ray_address, args.workers, args.cpus_per_worker)
    images = ex.find_images(args.folders)
    insp = _inspector(args, batch_size=args.batch_size)
    layers = insp.select(args.layers, default="last")
    out = _output_dir(args, insp.model.name, [insp.model.path])
    plan, meta = ex.make_plan(
        insp, layers, images, keep, inputs=parse_input_values(args.inputs), layout=args.layout,
        explicit_size=args.resize is not None or args.crop is not None,
    )
    for note in _guess_note(insp):
        print(note, file=sys.stderr)
    state = ex.collect_examples(
        plan, meta, images, out, engine or ex.local_engine(insp), fresh=args.fresh, progress=True,
        log=lambda message: print(message, file=sys.stderr),
    )
    written = draw_examples(state, out, args.top, args.tile, progress=True)
    print(f"preprocessing: {plan.preprocess.describe()}", file=sys.stderr)
    _print_paths([out.root / ex.STATE_FILE, *written])


COMMANDS = {
    "export": cmd_export,
    "layers": cmd_layers,
    "info": cmd_info,
    "kernels": cmd_kernels,
    "fmaps": cmd_fmaps,
    "predict": cmd_predict,
    "cam": cmd_cam,
    "report": cmd_report,
    "tutorial": cmd_tutorial,
    "serve": cmd_serve,
    "examples": cmd_examples,
}


# The flag that sets each library parameter an error can be about (OnnxvisError.setting).
FLAGS = {
    "nrow": "--nrow N",
    "padding": "--padding N",
    "preset": "--preset NAME",
    "layers": "--layers SPEC",
    "resize": "--resize H,W",
    "layout": "--layout NCHW|NHWC",
    "inputs": "--input NAME=VALUE",
    "top": "--top K",
}


def _with_flag(exc: OnnxvisError) -> str:
    """The library's message, with the flag that sets what it is about."""
    flag = FLAGS.get(exc.setting or "")
    return f"{exc} (set with {flag})" if flag else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 user error, 1 a bug in onnxvis)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # Paths are printed as the OS gave them, even when they are not valid in the locale's encoding.
    restore = _stdout_errors("surrogateescape")
    try:
        COMMANDS[args.command](args)
    except OnnxvisError as exc:
        if args.debug:
            raise
        print(f"onnxvis: error: {one_line(_with_flag(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("onnxvis: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError:
        if args.debug:
            raise
        print(
            "onnxvis: error: out of memory: the model or the image is too large for this machine; "
            "choose fewer layers with --layers, a smaller image, or a smaller --resize",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:  # a bug in onnxvis: still one line, the traceback only with --debug
        if args.debug:
            raise
        print(
            f"onnxvis: error: internal error ({one_line(f'{type(exc).__name__}: {exc}')[:300]}); this is a bug "
            "in onnxvis: please report it with the output of the same command run with --debug",
            file=sys.stderr,
        )
        return EXIT_BUG
    finally:
        restore()
    return 0


def _stdout_errors(errors: str):
    """Set the error handler of stdout; returns a function that puts the old one back."""
    stream = sys.stdout
    old = getattr(stream, "errors", None)
    if old is None or not hasattr(stream, "reconfigure"):
        return lambda: None
    try:
        stream.reconfigure(errors=errors)
    except (ValueError, OSError):  # a closed or detached stream
        return lambda: None

    def restore() -> None:
        try:
            stream.reconfigure(errors=old)
        except (ValueError, OSError):
            pass

    return restore


if __name__ == "__main__":
    raise SystemExit(main())
