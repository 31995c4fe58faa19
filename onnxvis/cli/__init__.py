"""The ``onnxvis`` command: parse arguments, call the library, print the files written.

Written paths go to stdout, one per line; messages go to stderr. A user mistake raises
:class:`~onnxvis.errors.OnnxvisError`, printed as one line ``onnxvis: error: ...`` with exit code 2.
Only argparse and the error type are imported at start-up, so ``onnxvis --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# numpy's OpenBLAS gets one thread unless the user chose (set before numpy loads: the commands import it
# later). onnxruntime already uses the cores, and the BLAS work here is small (EigenCAM's SVDs, KPCA):
# on the shared 2-core machine two OpenBLAS threads waited on each other and EigenCAM over 10 photos
# took 21 s of CPU instead of 1.6, for the same maps bit for bit.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from onnxvis.cli import (  # noqa: E402
    cam,
    compare,
    examples,
    export,
    features,
    fmaps,
    info,
    kernels,
    layers,
    predict,
    report,
    saliency,
    serve,
    stats,
    tensors,
    tutorial,
)
from onnxvis.cli.common import with_flag  # noqa: E402
from onnxvis.errors import OnnxvisError, one_line  # noqa: E402

EXIT_USAGE = 2


EXIT_BUG = 1


DESCRIPTION = """\
See what a convolutional network learned, from its ONNX file alone: the kernels of its conv layers
and the feature maps that an image produces. No training framework needed.

quick tour:
  onnxvis export alexnet                      torchvision AlexNet -> models/alexnet.onnx (needs the export extra)
  onnxvis layers models/alexnet.onnx          list the conv layers
  onnxvis tensors models/alexnet.onnx         list every tensor with its shape (the names --tensor takes)
  onnxvis kernels models/alexnet.onnx         kernel grids of every conv layer -> PNG
  onnxvis fmaps models/alexnet.onnx cat.jpg   conv1 feature maps of a photo -> PNG
  onnxvis predict models/alexnet.onnx cat.jpg the top-5 classes: check the model and its preprocessing
  onnxvis cam models/alexnet.onnx cat.jpg     where the model looks for its class (as grad-cam) -> PNG
  onnxvis saliency models/alexnet.onnx cat.jpg  which pixels the class score depends on (as Captum) -> PNG
  onnxvis features models/alexnet.onnx        the image each channel asks for, optimised (as Lucent) -> PNG
  onnxvis report models/alexnet.onnx cat.jpg  one HTML page: weights, kernels, feature maps, top-5
  onnxvis compare float.onnx int8.onnx cat.jpg where two versions of a model part, layer by layer
  onnxvis tutorial models/alexnet.onnx        the PyTorch tutorial's TensorBoard run, without torch
  onnxvis serve models/alexnet.onnx           explore it in the browser (needs the serve extra)
  onnxvis stats models/alexnet.onnx photos/   numbers per node: weights, activations (Model Explorer, TensorBoard)
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line, like every other onnxvis error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"onnxvis: error: {one_line(message)}; see '{self.prog} --help'\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnxvis", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    export.add_parser(sub)
    layers.add_parser(sub)
    tensors.add_parser(sub)
    info.add_parser(sub)
    kernels.add_parser(sub)
    fmaps.add_parser(sub)
    predict.add_parser(sub)
    cam.add_parser(sub)
    saliency.add_parser(sub)
    features.add_parser(sub)
    report.add_parser(sub)
    tutorial.add_parser(sub)
    serve.add_parser(sub)
    examples.add_parser(sub)
    compare.add_parser(sub)
    stats.add_parser(sub)
    for command in sub.choices.values():
        # Also after the command, where the error text's advice ("run it again with --debug") puts it;
        # SUPPRESS keeps the value given before the command when it is not given again.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show a traceback on errors")
    return parser


class _VersionAction(argparse.Action):
    """--version that imports nothing until it is asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"onnxvis {_version()}")
        parser.exit()


def _version() -> str:
    from onnxvis import __version__

    return __version__


def _with_flag(exc: OnnxvisError) -> str:
    """The library's message, with the flag that sets what it is about."""
    return with_flag(str(exc), exc.setting)


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


COMMANDS = {
    "export": export.run,
    "layers": layers.run,
    "tensors": tensors.run,
    "info": info.run,
    "kernels": kernels.run,
    "fmaps": fmaps.run,
    "predict": predict.run,
    "cam": cam.run,
    "saliency": saliency.run,
    "features": features.run,
    "report": report.run,
    "tutorial": tutorial.run,
    "serve": serve.run,
    "examples": examples.run,
    "compare": compare.run,
    "stats": stats.run,
}


if __name__ == "__main__":
    raise SystemExit(main())
