"""The package's shape: imports go down the ranks (imports inside functions count), torch only in exporters/.

The rooms are ranked

    utilities (errors, outdir, progress) < model < image < engine < draw = analysis < write < clients

where the clients are cli/, serve/, report and figures. A module may import its own room, and any
room of a lower rank; draw and analysis share a rank and do not import each other. Imports under
``if TYPE_CHECKING:`` are for type checkers only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "onnxvis"

RANKS = {
    "errors": 0, "outdir": 0, "progress": 0,
    "model": 1,
    "image": 2,
    "engine": 3,
    "draw": 4, "analysis": 4,
    "write": 5,
    "cli": 6, "serve": 6, "report": 6, "figures": 6, "__main__": 6,
}
# rooms of one rank that must not import each other
APART = {frozenset({"draw", "analysis"})}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: Path) -> set[str]:
    """The onnxvis modules that ``path`` imports anywhere (module level or in functions), except under TYPE_CHECKING."""
    found: set[str] = set()
    top = package.name

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == top)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == top:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (package.parent / (sub.replace(".", "/") + ".py")).exists() or (
                    package.parent / sub.replace(".", "/")).is_dir()
                found.add(sub if is_module else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(module_name(path, package))
    return found


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        here = room(name)
        if here == "__init__":  # the public names, imported lazily
            continue
        if here not in RANKS:
            found.append(f"{name}: its room {here!r} has no rank (add it to RANKS)")
            continue
        for target in sorted(imports(path, package)):
            there = room(target)
            if there == "__init__" or there == here:
                continue
            if there not in RANKS:
                found.append(f"{name} imports {target}, whose room {there!r} has no rank")
            elif RANKS[there] > RANKS[here]:
                found.append(f"{name} (rank {RANKS[here]}) imports {target} (rank {RANKS[there]}): up a rank")
            elif frozenset({here, there}) in APART:
                found.append(f"{name} imports {target}: {here} and {there} share a rank and stay apart")
    return found


def test_imports_go_down_the_ranks_even_inside_functions():
    assert violations(PACKAGE) == []


def cycles(package: Path) -> list[list[str]]:
    """Import cycles between modules (the ranks rule out cycles between rooms, not inside one)."""
    graph = {module_name(p, package): imports(p, package) for p in package.rglob("*.py")}
    state: dict[str, int] = {}
    path: list[str] = []
    found: list[list[str]] = []

    def walk(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == 1:
                found.append(path[path.index(dep):] + [dep])
            elif dep not in state and dep in graph:
                walk(dep)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state and room(name) != "__init__":
            walk(name)
    return found


def test_no_import_cycle_inside_a_room():
    assert cycles(PACKAGE) == []


def test_the_cycle_check_would_see_a_cycle(tmp_path):
    package = _fake_package(tmp_path, {"model/a.py": "def f():\n    from onnxvis.model import b\n",
                                       "model/b.py": "def g():\n    import onnxvis.model.a\n"})
    assert cycles(package) == [["onnxvis.model.a", "onnxvis.model.b", "onnxvis.model.a"]]


def test_every_room_is_a_package_with_a_rank():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert rooms <= set(RANKS), rooms - set(RANKS)


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "onnxvis"
    for rel, text in files.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(package).parents:
            (package / parent / "__init__.py").touch()
        path.write_text(text)
    return package


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # the model room reaching up into the engine, inside a function
        ({"model/layers.py": "def f():\n    from onnxvis.engine import runner\n", "engine/runner.py": ""},
         "onnxvis.model.layers (rank 1) imports onnxvis.engine.runner (rank 3): up a rank"),
        # `import onnxvis.x.y` counts as well as `from`
        ({"image/inputs.py": "import onnxvis.write.png\n", "write/png.py": ""},
         "onnxvis.image.inputs (rank 2) imports onnxvis.write.png (rank 5): up a rank"),
        # draw and analysis stay apart
        ({"draw/grids.py": "from onnxvis.analysis.cam import maths\n", "analysis/cam/maths.py": ""},
         "onnxvis.draw.grids imports onnxvis.analysis.cam.maths: draw and analysis share a rank and stay apart"),
        # a new room must be ranked
        ({"misc/x.py": "", "model/file.py": "from onnxvis.misc import x\n"},
         "onnxvis.misc.x: its room 'misc' has no rank (add it to RANKS)"),
    ],
)
def test_the_rank_check_sees_an_import_that_goes_up(tmp_path, files, expected):
    assert expected in violations(_fake_package(tmp_path, files))


def test_the_rank_check_ignores_type_checking_imports_and_downward_ones(tmp_path):
    package = _fake_package(tmp_path, {
        "model/layers.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from onnxvis.engine.runner import S\n",
        "engine/runner.py": "from onnxvis.model import layers\nfrom onnxvis.errors import E\n",
        "errors.py": "",
    })
    assert violations(package) == []


def test_torch_is_imported_only_by_the_exporters():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in ("torch", "torchvision", "cv2", "tensorflow") for n in names), path
