"""onnxvis serve."""

from __future__ import annotations

import argparse

from onnxvis.cli.common import add_labels, add_preprocess_options, add_target_output, apply_labels, open_inspector
from onnxvis.errors import OnnxvisError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="explore a model in the browser: layers, kernels, feature maps and top-5 of your photos (needs: pip install 'onnxvis[serve]')",
        description="Start a local web server and print its URL. The page lists the conv layers with their weight "
        "statistics; click one to see its kernels (grey or diverging, whole or split per output channel) and, for "
        "a photo you drop on the page or the sample photo, its feature maps (in a near-square grid), the top-5 classes and the "
        "class activation map of the predicted class or of one you choose (Grad-CAM; AblationCAM where the model cannot be "
        "differentiated). The model is opened once; pictures are cached. It listens on 127.0.0.1 (this machine "
        "only) unless --host says otherwise; Ctrl-C stops it.",
        epilog="examples:\n  onnxvis serve models/alexnet.onnx\n  onnxvis serve model.onnx --port 8080 --preset caffe\n"
        "  onnxvis serve model.onnx --host 0.0.0.0     # reachable from other machines: no login, no encryption",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="path of the .onnx file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    add_labels(p)
    add_target_output(p)
    add_preprocess_options(p)


def run(args: argparse.Namespace) -> None:
    try:
        from onnxvis.serve.app import serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("starlette", "uvicorn", "python_multipart"):
            raise
        raise OnnxvisError(
            f"serve needs Starlette and uvicorn ({exc.name} is missing); install them with: pip install 'onnxvis[serve]'"
        ) from None
    from onnxvis.serve.explorer import Explorer

    inspector = open_inspector(args)
    apply_labels(args, inspector)  # a bad labels file is an error now, not on the page
    try:
        _ = inspector.image_input
    except OnnxvisError:
        pass  # no image input: the page still shows the layers and kernels, and says why photos cannot run
    else:
        _ = inspector.preprocessing  # a bad preprocessing flag is an error now, not on the page
    serve(Explorer(inspector), args.host, args.port)
