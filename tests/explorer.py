"""Google's Model Explorer and its ONNX adapter, in a venv of their own, for the node-data tests.

model-explorer-onnx installs a console command called ``onnxvis``: installed beside onnxvis it would
replace ours, so it never goes into the test environments. It lives in ``.venv-explorer`` at the
repository root (gitignored), made on first use (by scripts/test.sh, or by the ``explorer`` fixture)
and reused after; changing :data:`PINS` makes it again. The tests talk to it by running its Python
in a subprocess (:func:`adapter_graphs`, :func:`load_node_data`).

Where the venv cannot be made (no package index), a local run skips and says why; a CI run
(``CI=true``) fails: CI must run these tests.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from browser import in_ci

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-explorer"
# The adapter's node-id rule is its own and onnx_ir's (NameFixPass): pin both, and Model Explorer.
PINS = ["ai-edge-model-explorer==0.1.34", "model-explorer-onnx==0.4.2", "onnx-ir==1.1.0"]
_STAMP = VENV / "onnxvis-pins.txt"
PYTHON = VENV / "bin" / "python"

# Run in the venv: the adapter's graphs of each model, as {path: {graph id: [node ids]}}.
_DUMP = """
import json, sys
from model_explorer_onnx.main import ONNXAdapter
out = {}
for path in sys.argv[1:]:
    graphs = ONNXAdapter().convert(path, {})["graphs"]
    out[path] = {g.id: [n.id for n in g.nodes] for g in graphs}
json.dump(out, sys.stdout)
"""
# Run in the venv: each node-data file loaded into model_explorer.node_data_builder's classes and
# written back by them, as {path: the JSON they write}.
_LOAD = """
import json, sys
from model_explorer import node_data_builder as ndb
out = {}
for path in sys.argv[1:]:
    data = json.load(open(path))
    graphs = {}
    for graph_id, g in data.items():
        g = dict(g)
        g["results"] = {k: ndb.NodeDataResult(**v) for k, v in g["results"].items()}
        g["thresholds"] = [ndb.ThresholdItem(**t) for t in g.get("thresholds", [])]
        g["gradient"] = [ndb.GradientItem(**t) for t in g.get("gradient", [])]
        graphs[graph_id] = ndb.GraphNodeData(**g)
    out[path] = json.loads(ndb.ModelNodeData(graphsData=graphs).to_json_string())
json.dump(out, sys.stdout)
"""


def _unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"CI=true and the Model Explorer tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def ensure_venv() -> Path:
    """The venv's Python, made (once) if missing or made with other pins."""
    wanted = "\n".join(PINS) + "\n"
    if PYTHON.exists() and _STAMP.exists() and _STAMP.read_text() == wanted:
        return PYTHON
    base = getattr(sys, "_base_executable", None) or sys.executable
    try:
        if not PYTHON.exists():
            subprocess.run([base, "-m", "venv", str(VENV)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
            check=True, capture_output=True, text=True,
        )
    except subprocess.CalledProcessError as exc:
        _unavailable(f"could not make {VENV.name} with {', '.join(PINS)}: {' '.join((exc.stderr or str(exc)).split())[-300:]}")
    _STAMP.write_text(wanted)
    return PYTHON


def run_python(script: str, args: Sequence[str] = (), cwd: Path | None = None) -> str:
    """Run ``script`` with the venv's Python (without onnxvis on its path); returns its stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(ensure_venv()), "-c", script, *args], capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"the Model Explorer venv failed: {done.stderr[-2000:]}")
    return done.stdout


def _run(script: str, args: list[str]) -> dict:
    return json.loads(run_python(script, args))


def adapter_graphs(*models: Path | str) -> dict[str, dict[str, list[str]]]:
    """model-explorer-onnx's graphs of each model: {str(path): {graph id: [node ids]}}."""
    return _run(_DUMP, [str(m) for m in models])


@functools.lru_cache(maxsize=1)
def real_adapter_graphs() -> dict[str, dict[str, list[str]]]:
    """adapter_graphs of every model in ../shared/assets/models, by file name; one adapter run per test session."""
    folder = ROOT.parent / "shared" / "assets" / "models"
    paths = sorted(folder.glob("*.onnx"))
    return {Path(p).name: graphs for p, graphs in adapter_graphs(*paths).items()} if paths else {}


def load_node_data(*files: Path) -> dict[str, dict]:
    """Each node-data file as model_explorer.node_data_builder's classes read it and write it back."""
    return _run(_LOAD, [str(f) for f in files])


@contextmanager
def model_explorer(model: Path | str, node_data: Sequence[Path | str] = ()) -> Iterator[str]:
    """Model Explorer's server on ``model`` with the adapter and ``node_data`` files, as the README
    says to start it; yields the URL it prints (with the model and the node data in it)."""
    exe = ensure_venv().parent / "model-explorer"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(exe), str(model), "--extensions=model_explorer_onnx", "--no_open_in_browser", f"--port={port}"]
    if node_data:
        command.append("--node_data_paths=" + ",".join(str(p) for p in node_data))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
    try:
        seen = []
        assert server.stdout is not None
        for line in server.stdout:  # until it prints its URL (or stops)
            seen.append(line)
            if line.strip().startswith("http://"):
                break
        else:
            raise AssertionError(f"model-explorer stopped without serving: {''.join(seen)[-2000:]}")
        yield line.strip()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":  # scripts/test.sh makes the venv before the tests
    try:
        print(f"Model Explorer venv: {ensure_venv()} ({', '.join(PINS)})")
    except BaseException as exc:  # pytest's skip and fail outcomes are BaseExceptions
        print(f"tests/explorer.py: {exc}", file=sys.stderr)
        sys.exit(1 if in_ci() else 0)  # locally the Model Explorer tests then skip and say why
