"""onnxvis examples."""

from __future__ import annotations

import argparse
import sys

from onnxvis.cli.common import (
    add_layers,
    add_output,
    add_preprocess_options,
    guess_note,
    inspector_config,
    output_dir,
    output_root,
    print_paths,
)
from onnxvis.errors import OnnxvisError


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    add_layers(p, "the last spatial conv layer before the classifier, e.g. SqueezeNet's fire9 expand3x3 rather than conv10")
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
    add_preprocess_options(p)
    add_output(p)


def run(args: argparse.Namespace) -> None:
    from onnxvis.analysis.examples import run as ex
    from onnxvis.model.file import model_name
    from onnxvis.write.examples import draw_examples

    keep = args.keep if args.keep is not None else max(args.top, ex.DEFAULT_KEEP)
    ex.check_counts(args.top, keep)  # before any work
    if args.redraw:
        if args.folders:
            raise OnnxvisError("--redraw draws the run saved in the output folder again: give no FOLDER")
        name = model_name(args.model)  # the model may be gone: it does not run
        state = ex.load_state(output_root(args, name))
        print_paths(draw_examples(state, output_dir(args, name, []), args.top, args.tile, progress=True))
        return
    if not args.folders:
        raise OnnxvisError("give one or more FOLDERs of images (or --redraw to draw a saved run again)")
    engine: ex.Engine | str = "local"
    if args.engine == "ray":
        from onnxvis.analysis.examples.ray_engine import ray_engine

        engine = ray_engine(args.ray_address, args.workers, args.cpus_per_worker)

    def notes(inspector) -> None:
        for note in guess_note(inspector):
            print(note, file=sys.stderr)

    from onnxvis.analysis.examples.find import find_examples

    found = find_examples(
        args.model, args.folders, inspector_config(args, batch_size=args.batch_size), layers=args.layers, keep=keep,
        out=args.output, engine=engine, fresh=args.fresh, progress=True, log=lambda message: print(message, file=sys.stderr),
        on_start=notes,
    )
    written = draw_examples(found.state, found.out, args.top, args.tile, progress=True)
    print(f"preprocessing: {found.inspector.preprocessing.preprocess.describe()}", file=sys.stderr)
    print_paths([found.out.root / ex.STATE_FILE, *written])
