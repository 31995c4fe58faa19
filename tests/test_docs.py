"""The README documents every command and every option the CLI has, and its quick start is real."""

from __future__ import annotations

import argparse
import re

from conftest import ROOT
from onnxvis.cli import COMMANDS, build_parser

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


def test_the_rooms_table_names_every_module_and_room():
    """Each room (subpackage) and each module of it is named in its row of "How it is built"; no name is stale."""
    table = README.split("## How it is built", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| [\d—-]+ \| (.+?) \| (.+?) \|$", table, re.M)}
    package = ROOT / "onnxvis"
    missing, stale = [], []
    for path in package.rglob("*.py"):
        rel = path.relative_to(package)
        if rel.name in ("__init__.py", "__main__.py") or "__pycache__" in rel.parts:
            continue
        room = f"`{rel.parts[0]}/`" if len(rel.parts) > 1 else f"`{rel.name}`"
        row = next((text for rooms, text in rows.items() if room in rooms), None)
        if row is None:
            missing.append(f"room {room}")
            continue
        for part in rel.parts[1:-1]:  # analysis/cam/maths.py: the row names cam/ and maths.py
            if f"`{part}/`" not in row:
                missing.append(f"{rel}: {part}/")
        if rel.parts[0] == "cli" and rel.stem in COMMANDS:  # "one module per command, named after it"
            continue
        if len(rel.parts) > 1 and f"`{rel.name}`" not in row:
            missing.append(str(rel))
    named = set(re.findall(r"`(\w+\.py)`", table))
    existing = {p.name for p in package.rglob("*.py")}
    stale = sorted(named - existing)
    assert missing == [], f"modules or rooms missing from the README's table: {missing}"
    assert stale == [], f"the README names modules that do not exist: {stale}"




def test_no_stale_text_waits_for_features_onnxvis_has():
    """Issue 25, item 19: serve's help and the README spoke of class activation maps as to come."""
    serve_help = _subcommands()["serve"].format_help()
    for text in (README, serve_help):
        assert "once onnxvis has" not in text
    assert "class activation map" in " ".join(serve_help.split())


def test_the_quick_start_has_a_path_without_torch():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    before_torch = quick.split("scripts/quickstart.sh", 1)[0]
    assert "pip install ." in before_torch and "onnxvis kernels model.onnx" in before_torch and "torch" in before_torch


def test_docs_report_png_shows_no_machine_path():
    """The picture was retaken once the report named only its files (scripts/screenshot_report.py); its PNG text
    chunks hold no path either."""
    from PIL import Image

    with Image.open(ROOT / "docs" / "report.png") as picture:
        assert picture.width >= 1000
        assert not any("/" in str(v) for v in picture.info.values() if isinstance(v, str))
    assert "docs/report.png" in README and "scripts/screenshot_report.py" in README
