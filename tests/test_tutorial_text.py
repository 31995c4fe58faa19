"""The oracle of `onnxvis tutorial` (benchmarks/tutorial_run.py) is the tutorial's code as its text gives it.

The text is ../shared/seed/tutorial.txt, the reference. Its two scripts must be the bodies of the
oracle's two functions, line for line, with only the changes the issue allows: the paths, the
imports the second script takes from the first (and the two it uses that neither imports), and the
``writer.close()`` the first one lacks. No torch needed: this reads code, it does not run it.
"""

from __future__ import annotations

import ast
import difflib
import textwrap

import pytest

from conftest import ROOT

TUTORIAL = ROOT.parent / "shared" / "seed" / "tutorial.txt"
ORACLE = ROOT / "benchmarks" / "tutorial_run.py"

# The path lines: the text's file names replaced by the function's arguments, nothing else.
PATHS = {
    'log_dir = os.path.join(BASE_DIR, "results")': "log_dir = os.path.join(BASE_DIR, results_dir)",
    'path_state_dict = os.path.join("data", "alexnet-owt-4df8aa71.pth")': 'path_state_dict = os.path.join("data", state_dict_file)',
    'path_img = os.path.join(BASE_DIR,"data", "tiger cat.jpg")  # your path to image':
        'path_img = os.path.join(BASE_DIR,"data", image_file)  # your path to image',
}


def text_scripts() -> tuple[list[str], list[str]]:
    """The tutorial's two code blocks, as lines: from ``import os`` to the kernel loop's last print, and
    from the second ``BASE_DIR`` line to ``writer.close()``."""
    if not TUTORIAL.exists():
        pytest.skip(f"real test asset {TUTORIAL} is missing (../shared/seed is not beside the repo)")
    lines = [line.rstrip() for line in TUTORIAL.read_text(encoding="utf-8").splitlines()]
    start = lines.index("import os")
    end = next(i for i, line in enumerate(lines) if line.strip().startswith('print("{}_convlayer shape'))
    first = lines[start : end + 1]
    second_start = next(i for i in range(end, len(lines)) if lines[i].startswith("BASE_DIR = "))
    second_end = lines.index("writer.close()", second_start)
    return first, lines[second_start : second_end + 1]


def function_body(name: str) -> list[str]:
    """The body of the oracle's function ``name`` without its docstring, dedented, as lines."""
    source = ORACLE.read_text(encoding="utf-8")
    tree = ast.parse(source)
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name)
    body = function.body[1:] if isinstance(function.body[0], ast.Expr) else function.body  # the docstring
    lines = source.splitlines()[body[0].lineno - 1 : function.end_lineno]
    return [line.rstrip() for line in textwrap.dedent("\n".join(lines)).splitlines()]


def changes(text: list[str], ours: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """What differs: (kind, the text's lines, ours) for each block that is not equal."""
    matcher = difflib.SequenceMatcher(a=text, b=ours, autojunk=False)
    return [(tag, text[i1:i2], ours[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def allowed(kind: str, theirs: list[str], ours: list[str], imports: bool, close: bool) -> bool:
    if kind == "replace":
        return len(theirs) == len(ours) and all(PATHS.get(t) == o for t, o in zip(theirs, ours, strict=True))
    if kind == "insert":
        return all((imports and (o.startswith("import ") or o.startswith("from "))) or (close and o == "writer.close()") for o in ours)
    return False  # nothing of the text is deleted


def test_the_text_holds_both_scripts():
    first, second = text_scripts()
    assert first[0] == "import os" and "nrow=8)" in first[first.index("    for o_idx in range(c_out):") + 2]
    assert second[0].startswith("BASE_DIR = ") and second[-1] == "writer.close()"
    assert not any(line.startswith("import ") for line in second)  # its imports are the first script's


@pytest.mark.parametrize("script, function", [(0, "kernel_script"), (1, "feature_map_script")])
def test_each_script_is_as_written_but_its_paths_imports_and_close(script, function):
    text = text_scripts()[script]
    ours = function_body(function)
    found = changes(text, ours)
    refused = [c for c in found if not allowed(*c, imports=script == 1, close=script == 0)]
    assert refused == [], "\n".join(f"{kind}: {theirs} -> {mine}" for kind, theirs, mine in refused)
    assert sum(len(theirs) for kind, theirs, _ in found if kind == "replace") == (2 if script == 0 else 3)  # the path lines


def test_the_first_script_gets_the_writer_close_at_its_end():
    first, _ = text_scripts()
    ours = function_body("kernel_script")
    assert "writer.close()" not in first and ours[-1] == "writer.close()"


def test_the_second_script_imports_what_it_takes_from_the_first_and_what_it_lacks():
    first, second = text_scripts()
    ours = function_body("feature_map_script")
    imports = [line for line in ours if line.startswith(("import ", "from "))]
    added = [line for line in imports if line not in first]
    assert added == ["import torchvision.transforms as transforms", "from PIL import Image"]  # used, imported by neither
    for line in imports:
        if line in first:  # a first-script import the second uses by its name
            name = line.split(" as ")[-1].split()[-1].split(".")[0]
            assert any(name in code for code in second), f"{line!r} is not used by the second script"
    assert ours[len(imports) :] == [PATHS.get(line, line) for line in second]


def test_the_check_sees_a_change_it_does_not_allow():
    first, _ = text_scripts()
    split = next(i for i, line in enumerate(first) if "make_grid(kernel_idx" in line)
    changed = [*first[:split], first[split].replace("nrow=8)", "nrow=c_int)"), *first[split + 1 :], "writer.close()"]
    refused = [c for c in changes(first, changed) if not allowed(*c, imports=False, close=True)]
    assert len(refused) == 1 and "nrow=c_int" in refused[0][2][0]
