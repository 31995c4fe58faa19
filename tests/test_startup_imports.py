"""The one-picture commands read the model without onnx: `import onnx` (and the ml_dtypes it loads)
costs more than the rest of such a command (issue 19).

Each command runs in a fresh child process, which then lists the heavy modules it loaded. With its
output not a terminal, no progress bar is drawn, so tqdm must not be loaded either; matplotlib is
loaded only for a colour map that needs it (none of these do); PIL only where a photo is decoded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import asset

FP16 = "models/squeezenet1.0_caffe2_fp16.onnx"  # float16 weights and input
FP32 = "models/cifar10_tutorial_pytorch.onnx"
PHOTO = "images/skimage_chelsea.png"
HEAVY = ("onnx", "ml_dtypes", "google.protobuf", "tqdm", "matplotlib", "PIL", "torch")

_CHILD = """
import json, sys
argv = json.loads(sys.argv[1])
if argv[0] == "serve":  # start-up only: the app is built, nothing listens
    import onnxvis.serve.app as app

    def built(explorer, host, port, say=None):
        app.create_app(explorer)

    app.serve = built
from onnxvis.cli import main
code = main(argv)
print(json.dumps([code, [m for m in json.loads(sys.argv[2]) if m in sys.modules]]))
"""


def _loaded(argv: list[str], cwd: Path) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(argv), json.dumps(HEAVY)],
        cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert code in (0, None), done.stderr
    return loaded


def _commands(model: str, photo: str, out: Path) -> dict[str, tuple[list[str], set[str]]]:
    """command -> (argv, the heavy modules it may load)."""
    return {
        "kernels": (["kernels", model, "--layers", "0,1", "--split", "-o", str(out / "k")], set()),
        "layers": (["layers", model], set()),
        "info": (["info", model], set()),
        "fmaps": (["fmaps", model, photo, "--layers", "0", "-o", str(out / "f")], {"PIL"}),
        "predict": (["predict", model, photo], {"PIL"}),
        "cam-ablation": (["cam", model, photo, "--method", "ablation", "-o", str(out / "ca")], {"PIL"}),
        "cam-eigen": (["cam", model, photo, "--method", "eigen", "-o", str(out / "ce")], {"PIL"}),
        "serve": (["serve", model, "--port", "0"], set()),
    }


@pytest.mark.parametrize("model_name", [FP32, FP16])
@pytest.mark.parametrize("command", ["kernels", "layers", "info", "fmaps", "predict", "cam-ablation", "cam-eigen", "serve"])
def test_one_picture_commands_load_neither_onnx_nor_ml_dtypes(command, model_name, tmp_path):
    if command == "serve":
        pytest.importorskip("starlette")
        pytest.importorskip("uvicorn")
    argv, allowed = _commands(str(asset(model_name)), str(asset(PHOTO)), tmp_path)[command]
    loaded = set(_loaded(argv, tmp_path))
    assert "onnx" not in loaded and "ml_dtypes" not in loaded, f"{command} on {model_name} loaded {sorted(loaded)}"
    assert loaded <= allowed, f"{command} on {model_name} loaded {sorted(loaded - allowed)}"


def test_the_check_sees_an_import(tmp_path):
    """The child's list is not always empty: a model whose weight onnx must fold loads onnx (and says so)."""
    loaded = _loaded(["kernels", str(asset("models/light_squeezenet_constantofshape.onnx")), "-o", str(tmp_path / "k")], tmp_path)
    assert "onnx" in loaded


@pytest.mark.parametrize("given, expected", [(None, "1"), ("2", "2")])
def test_the_command_gives_openblas_one_thread_unless_the_user_chose(given, expected):
    """Set before numpy loads (numpy reads it once): a command's process has it, the user's own value wins."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    code = "import sys, os, onnxvis.cli; assert 'numpy' not in sys.modules; print(os.environ['OPENBLAS_NUM_THREADS'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
