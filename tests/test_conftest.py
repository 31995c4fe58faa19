"""The suite's own machinery in tests/conftest.py: the CLI run in this process shows what a process would.

Most CLI tests call ``call_onnxvis`` (``onnxvis.cli.main`` in the pytest process, a second faster than
a new Python each time); these checks keep it honest against ``run_onnxvis``, the real process.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest

from conftest import call_onnxvis, conv_model, run_onnxvis
from onnxvis.errors import OnnxvisError


@pytest.fixture
def model(tmp_path):
    weight = np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32)
    conv_model(weight, path=tmp_path / "m.onnx", name="first conv")
    return tmp_path / "m.onnx"


def test_in_process_and_in_a_process_give_the_same_answer(tmp_path, model):
    """The same exit code, stdout and stderr: a listing, a user error, a usage mistake, the written files."""
    for args in (
        ["layers", model],
        ["kernels", model, "--layers", "7", "-o", "out"],
        ["kernels", model, "--nrow", "x"],
        ["kernels", model, "-o", "out"],
    ):
        (tmp_path / "here").mkdir(exist_ok=True)
        (tmp_path / "there").mkdir(exist_ok=True)
        here = call_onnxvis(*args, cwd=tmp_path / "here")
        there = run_onnxvis(*args, cwd=tmp_path / "there")
        assert (here.returncode, here.stderr) == (there.returncode, there.stderr), args
        assert here.stdout.replace("here", "there") == there.stdout.replace("here", "there"), args
    assert here.returncode == 0 and here.stdout.strip().endswith("kernels_00_first_conv.png")
    assert (tmp_path / "here" / "out" / "kernels_00_first_conv.png").read_bytes() == (
        tmp_path / "there" / "out" / "kernels_00_first_conv.png").read_bytes()


def test_what_native_code_writes_is_caught_in_order(monkeypatch, tmp_path):
    """onnxruntime and the like write to the file descriptors, not to sys.stderr: those lines count too."""
    import onnxvis.cli as cli

    def noisy(args):
        print("python out")
        os.write(1, b"native out\n")
        print("python err", file=sys.stderr)
        os.write(2, b"[E:onnxruntime] native err\n")
        raise OnnxvisError("the model is damaged; export it again")

    monkeypatch.setitem(cli.COMMANDS, "info", noisy)
    done = call_onnxvis("info", "x.onnx", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout.splitlines() == ["python out", "native out"]
    assert done.stderr.splitlines() == ["python err", "[E:onnxruntime] native err",
                                        "onnxvis: error: the model is damaged; export it again"]


def test_warnings_show_on_stderr_as_in_a_fresh_python(monkeypatch, tmp_path):
    import onnxvis.cli as cli

    def warns(args):
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
        warnings.warn("hidden by default", DeprecationWarning, stacklevel=1)

    monkeypatch.setitem(cli.COMMANDS, "info", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what the test itself filters does not hide it from the run
        done = call_onnxvis("info", "x.onnx", cwd=tmp_path)
    assert done.returncode == 0
    assert "UserWarning: a library's warning" in done.stderr
    assert "hidden by default" not in done.stderr


def test_the_folder_and_the_environment_hold_for_the_call_only(monkeypatch, tmp_path):
    import onnxvis.cli as cli

    monkeypatch.setitem(cli.COMMANDS, "info", lambda args: print(os.getcwd(), os.environ["ONNXVIS_TEST_VALUE"]))
    monkeypatch.delenv("ONNXVIS_TEST_VALUE", raising=False)
    before = os.getcwd()
    done = call_onnxvis("info", "x.onnx", cwd=tmp_path, env={"ONNXVIS_TEST_VALUE": "42"})
    assert done.stdout.split() == [str(tmp_path), "42"]
    assert os.getcwd() == before and "ONNXVIS_TEST_VALUE" not in os.environ


def test_an_escaping_exception_and_the_interpreter_exits(monkeypatch, tmp_path):
    import onnxvis.cli as cli

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    debug = call_onnxvis("--debug", "info", "x.onnx", cwd=tmp_path)  # --debug lets it out of main()
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ZeroDivisionError: a bug" in debug.stderr
    version = call_onnxvis("--version")  # argparse ends by SystemExit(0)
    assert version.returncode == 0 and version.stdout.startswith("onnxvis ")
    assert call_onnxvis().returncode == 2  # no command: the help on stderr


def test_what_acts_at_start_up_is_refused(tmp_path):
    with pytest.raises(ValueError, match="run_onnxvis"):
        call_onnxvis("layers", "x.onnx", env={"PYTHONPATH": str(tmp_path)})
