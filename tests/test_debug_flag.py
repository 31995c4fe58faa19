"""--debug works before and after the command (issue 25, item 9)."""

from __future__ import annotations

import pytest

from onnxvis.cli import build_parser, main


@pytest.mark.parametrize(
    "argv, debug",
    [(["layers", "m.onnx"], False), (["--debug", "layers", "m.onnx"], True), (["layers", "m.onnx", "--debug"], True),
     (["fmaps", "m.onnx", "cat.jpg", "--debug"], True), (["--debug", "info", "m.onnx", "--debug"], True)],
)
def test_debug_is_taken_anywhere(argv, debug):
    assert build_parser().parse_args(argv).debug is debug


def test_every_command_takes_debug_after_it():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in sub.choices:
        positional = ["a.onnx", "b.onnx"] if name in ("compare", "predict") else ["a.onnx"]
        assert parser.parse_args([name, *positional, "--debug"]).debug is True, name


def test_debug_after_the_command_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "missing.onnx"
    assert main(["layers", str(missing)]) == 2
    assert capsys.readouterr().err.startswith("onnxvis: error: ")
    from onnxvis.errors import OnnxvisError

    with pytest.raises(OnnxvisError):  # the traceback: the error is raised, not turned into one line
        main(["layers", str(missing), "--debug"])
