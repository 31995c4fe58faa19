"""The package's shape: no import cycle (imports inside functions count), torch only in exporters/."""

from __future__ import annotations

import ast

from conftest import ROOT

PACKAGE = ROOT / "onnxvis"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path) -> set[str]:
    """The onnxvis modules that ``path`` imports anywhere (module level or in functions), except under TYPE_CHECKING."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "onnxvis" and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "onnxvis":
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found.update(alias.name for alias in node.names if alias.name in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(path.stem)
    return found & modules


def _graph() -> dict[str, set[str]]:
    return {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}


def test_no_import_cycle_even_counting_imports_inside_functions():
    graph = _graph()
    graph = {name: {m for m in deps if m not in ("__init__", "__main__")} for name, deps in graph.items()}
    state: dict[str, int] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def walk(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                walk(dep)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_would_see_a_cycle(tmp_path, monkeypatch):
    """The check is real: two modules that import each other inside functions are found."""
    (tmp_path / "a.py").write_text("def f():\n    from onnxvis import b\n")
    (tmp_path / "b.py").write_text("def g():\n    import onnxvis.a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    assert _imports(tmp_path / "a.py") == {"b"} and _imports(tmp_path / "b.py") == {"a"}


def test_torch_is_imported_only_by_the_exporters():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in ("torch", "torchvision", "cv2", "tensorflow") for n in names), path
