"""The README documents every command and every option the CLI has, and its quick start is real."""

from __future__ import annotations

import argparse
import re

from conftest import ROOT
from onnxvis.cli import build_parser

README = (ROOT / "README.md").read_text()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_has_a_readme_section():
    for name in _subcommands():
        assert re.search(rf"^### `onnxvis {name}\b", README, re.M), f"README has no section for 'onnxvis {name}'"


def test_every_option_is_documented():
    missing = []
    for name, parser in _subcommands().items():
        for action in parser._actions:
            longs = [s for s in action.option_strings if s.startswith("--") and s != "--help"]
            if longs and not any(re.search(rf"`[^`\n]*{re.escape(opt)}\b[^`\n]*`", README) for opt in longs):
                missing.append(f"{name} {longs[0]}")
    assert not missing, f"options missing from README: {missing}"


def test_quick_start_opens_with_the_two_commands_and_they_exist():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^bash (\S+)", quick, re.M)
    assert commands == ["scripts/quickstart.sh", "scripts/test.sh"]
    for script in commands:
        assert (ROOT / script).is_file()


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci.strip().splitlines()[-1]


def test_readme_images_exist():
    for image in re.findall(r"\]\((docs/[^)]+)\)", README):
        assert (ROOT / image).is_file(), image


def test_the_module_table_lists_every_module():
    table = README.split("## How it is built", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(onnxvis/[\w/]+\.py)` \|", table, re.M))
    modules = {f"onnxvis/{p.name}" for p in (ROOT / "onnxvis").glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert modules - listed == set(), f"modules missing from the README's table: {sorted(modules - listed)}"
    assert listed - modules == set(), f"the README lists modules that do not exist: {sorted(listed - modules)}"
