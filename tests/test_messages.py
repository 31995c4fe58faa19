"""The library speaks of models and parameters, the command line of flags.

No string the library can show names a flag of the CLI: a notebook user is never told to pass ``-o``.
A library error carries the parameter it is about (``OnnxvisError(..., setting="inputs")``), and the
CLI adds the flag that sets it (``onnxvis.cli.common.FLAGS``).
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator

from conftest import ROOT
from onnxvis.cli import build_parser
from onnxvis.cli.common import FLAGS, with_flag

LIBRARY = ROOT / "onnxvis"
# A flag as a message would spell it: a dash or two, then a letter (not "x-o", not "-1", not "--").
FLAG = re.compile(r"(?<![\w-])--?[a-z][\w-]*")
# A string on (or just below) a line with this comment may name a flag; the comment says why.
EXEMPT = "# names a flag:"


def cli_flags() -> set[str]:
    """Every option string of the CLI and of all its commands."""

    def walk(parser: argparse.ArgumentParser) -> Iterator[str]:
        for action in parser._actions:
            yield from action.option_strings
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    return set(walk(build_parser()))


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def flag_mentions(source: str, flags: set[str]) -> list[tuple[int, str, str]]:
    """(line, flag, text) for each string of ``source`` that names one of ``flags``.

    Every string constant counts, and every literal part of an f-string: the arguments of an
    ``OnnxvisError`` or of any raise, and also the hints assigned first and raised later, the notes
    written to a log and the summary's rows. Docstrings do not: they document, for readers of the code.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docstrings:
            continue
        named = [flag for flag in FLAG.findall(node.value) if flag in flags]
        if not named:
            continue
        near = lines[max(0, node.lineno - 2) : node.end_lineno or node.lineno]
        if any(EXEMPT in line for line in near):
            continue
        found.extend((node.lineno, flag, node.value) for flag in named)
    return sorted(found)


def library_sources() -> list:
    return sorted(p for p in LIBRARY.rglob("*.py") if "cli" not in p.relative_to(LIBRARY).parts[:1])


def settings_used(source: str) -> set[str]:
    """The ``setting="..."`` values that ``source`` passes to any call."""
    return {
        kw.value.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "setting" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)
    }


def test_no_library_message_names_a_flag():
    flags = cli_flags()
    assert {"-o", "--input", "--layers", "--top", "--batch-size", "--max-tiles"} <= flags  # the walk sees the commands
    sources = library_sources()
    assert LIBRARY / "outdir.py" in sources and LIBRARY / "engine" / "inspector.py" in sources
    assert not any(p.parent.name == "cli" for p in sources)
    mentions = [
        f"{path.relative_to(ROOT)}:{line}: {flag} in {text!r}"
        for path in sources
        for line, flag, text in flag_mentions(path.read_text(encoding="utf-8"), flags)
    ]
    assert mentions == [], "library messages that name a CLI flag (say the parameter, pass setting=...):\n" + "\n".join(mentions)


FAKE_MODULE = '''
"""A module whose docstring may say --layers: it documents, it is not a message."""
from onnxvis.errors import OnnxvisError


def open_folder(path, layers):
    """Open it (choose another with -o)."""
    if layers is None:
        raise OnnxvisError(f"no layer in {path}; choose other layers with --layers")
    hint = "choose another folder with -o"
    if not path:
        raise ValueError(f"cannot open {path}; {hint}")
    rows = [("input", "fmaps needs --input x=VALUE")]
    # names a flag: this fake exemption says why
    caption = "cut (--max-tiles)"
    return rows, caption, "x-o is no flag, nor -1, nor --not-a-flag, nor a-b--c"
'''


def test_the_check_finds_a_flag_in_a_fake_module():
    found = flag_mentions(FAKE_MODULE, cli_flags())
    assert [(line, flag) for line, flag, _ in found] == [(9, "--layers"), (10, "-o"), (13, "--input")]
    assert found[0][2] == "; choose other layers with --layers"  # the literal part of the f-string
    # and the exemption needs its comment: without it the caption is found too
    assert (15, "--max-tiles") in [(line, flag) for line, flag, _ in flag_mentions(FAKE_MODULE.replace(EXEMPT, "#"), cli_flags())]


def test_every_setting_the_library_names_has_a_real_flag():
    used = set().union(*(settings_used(p.read_text(encoding="utf-8")) for p in library_sources()))
    assert {"output", "inputs", "layers", "batch_size", "top", "max_tiles", "port"} <= used
    flags = cli_flags()
    assert sorted(used - FLAGS.keys()) == [], "settings the CLI cannot turn into a flag"
    for setting, usage in FLAGS.items():
        assert usage.split()[0] in flags, (setting, usage)


def test_settings_used_sees_the_keyword():
    assert settings_used('raise OnnxvisError("x", setting="port")\nf(setting=name)') == {"port"}


def test_the_cli_adds_the_flag_to_the_library_words():
    assert with_flag("the port must be between 0 and 65535, got 70000", "port") == (
        "the port must be between 0 and 65535, got 70000 (set with --port N)"
    )
    assert with_flag("no flag for this", None) == "no flag for this"
    assert with_flag("no flag for this", "not-a-setting") == "no flag for this"


def test_a_ray_worker_error_keeps_its_setting():
    """A worker's error crosses Ray as bytes: the setting goes with it, so the CLI still names the flag."""
    import pytest

    from onnxvis.analysis.examples.ray_engine import _error_blob, _unpack
    from onnxvis.errors import OnnxvisError

    for setting in ("inputs", None):
        with pytest.raises(OnnxvisError, match=r"^the model needs input 'b'\nsecond line$") as caught:
            _unpack(_error_blob(OnnxvisError("the model needs input 'b'\nsecond line", setting=setting)))
        assert caught.value.setting == setting
