"""The stderr progress bar (tqdm): drawn on a terminal, silent otherwise, tqdm loaded only then; and the CLI's use of it."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import numpy as np

from conftest import ROOT
from onnxvis.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_when_the_stream_is_not_a_terminal():
    stream = io.StringIO()
    with Progress(3, "kernels", stream=stream) as bar:
        assert not bar.enabled
        for name in "abc":
            bar.advance(name)
        bar.write("a message")
    assert stream.getvalue() == "a message\n"


def test_on_a_terminal_tqdm_draws_the_counts_and_clears_its_line():
    stream = FakeTerminal()
    with Progress(3, "kernels", stream=stream) as bar:
        assert bar.enabled
        bar.advance("conv1")
        bar.write("")  # a message makes tqdm draw the bar again, with the step just done
        bar.advance("conv2")
        bar.advance("conv3")
    text = stream.getvalue()
    assert text.startswith("\rkernels:   0%|")
    assert "| 0/3 [" in text and "| 1/3 [" in text and "conv1]" in text  # done/total, then the item just finished
    assert "it/s" in text  # tqdm's rate (and its ETA) are shown
    assert text.endswith("\r")  # the line is blanked and the cursor back at its start
    assert text.rsplit("\r", 2)[-2].strip() == ""


def test_messages_go_above_the_bar_through_tqdm_write():
    stream = io.StringIO()
    with Progress(2, "report", stream=stream, enabled=True) as bar:  # forced on: a StringIO is no terminal
        bar.advance("one")
        bar.write("layer 1: drew the first 16 of 512 output channels")
        bar.advance("two")
    text = stream.getvalue()
    before, after = text.split("layer 1: drew the first 16 of 512 output channels\n")
    assert before.startswith("\rreport:") and before.endswith("\r")  # the bar's line was cleared before the message
    assert after.startswith("\rreport:")  # and the bar drawn again below it


def test_done_never_passes_the_total():
    bar = Progress(4, "x", stream=io.StringIO())
    bar.advance()
    bar.advance()
    assert bar.done == 2
    bar.advance(steps=5)
    assert bar.done == 4


def test_enabled_can_be_forced():
    assert Progress(1, "x", stream=FakeTerminal(), enabled=False).enabled is False
    assert Progress(1, "x", stream=io.StringIO(), enabled=True).enabled is True


_IMPORTS_TQDM = """
import io, sys
from onnxvis.cli import main
from onnxvis.progress import Progress
assert main(["kernels", sys.argv[1], "-o", sys.argv[2]]) == 0  # stderr is a pipe: no bar
with Progress(3, "x", stream=io.StringIO()) as bar:  # no terminal: no bar
    bar.advance("a")
    bar.write("m")
print("tqdm" in sys.modules)
with Progress(3, "x", stream=io.StringIO(), enabled=True) as bar:
    bar.advance("a")
print("tqdm" in sys.modules)
"""


def test_tqdm_is_imported_only_when_a_bar_is_drawn(tmp_path):
    model = _two_layer_model(tmp_path / "two.onnx")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _IMPORTS_TQDM, str(model), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["False", "True"]


def _two_layer_model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["y0"], name="c0"), helper.make_node("Conv", ["y0", "w1"], ["y1"], name="c1")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y1", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w0"),
         numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run_with_stderr_on_a_terminal(args, cwd, columns=0):
    """Run the CLI with stderr on a pseudo-terminal (``columns`` wide; a new one says 0x0); returns
    (exit code, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "onnxvis", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read().decode()
    code = proc.wait()
    os.close(master)
    return code, stdout, b"".join(chunks).decode(errors="replace")


def test_cli_draws_the_bar_on_a_terminal_only(tmp_path, cli):
    model = _two_layer_model(tmp_path / "two.onnx")
    code, stdout, terminal = _run_with_stderr_on_a_terminal(["kernels", model, "-o", tmp_path / "tty"], tmp_path)
    assert code == 0, terminal
    assert "kernels:" in terminal and "/2 [" in terminal
    assert len(stdout.splitlines()) == 2  # the written paths still go to stdout, untouched

    piped = cli("kernels", model, "-o", tmp_path / "pipe")
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "kernels:" not in piped.stderr
    assert len(piped.stdout.splitlines()) == 2


def test_a_terminal_that_tells_its_width_gets_a_bar_that_fits(tmp_path):
    model = _two_layer_model(tmp_path / "two.onnx")
    code, _, narrow = _run_with_stderr_on_a_terminal(["kernels", model, "--split", "-o", tmp_path / "narrow"], tmp_path, columns=50)
    assert code == 0, narrow
    drawn = [line for line in narrow.split("\r") if "kernels:" in line]
    assert drawn and max(map(len, drawn)) <= 50 and "/2 [" in narrow  # 80 columns when it does not say


def test_report_shows_the_bar_on_a_terminal(tmp_path):
    model = _two_layer_model(tmp_path / "two.onnx")
    code, stdout, terminal = _run_with_stderr_on_a_terminal(["report", model, "-o", tmp_path / "r"], tmp_path)
    assert code == 0, terminal
    assert "report:" in terminal and "/2 [" in terminal
    assert stdout.strip().endswith("report.html")
