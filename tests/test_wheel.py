"""The wheel ships every room: built, installed without -e into a fresh venv, and run from there.

An editable install reads the source tree, so a subpackage or a data file missing from
pyproject.toml would go unnoticed by every other test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, asset


def _repo_files() -> set[str]:
    package = ROOT / "onnxvis"
    files = {str(p.relative_to(ROOT)) for p in package.rglob("*.py")}
    files |= {str(p.relative_to(ROOT)) for p in (package / "serve" / "static").iterdir() if p.is_file()}
    return {f for f in files if "__pycache__" not in f}


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_runs_outside_the_checkout(tmp_path):
    mnist = asset("models/mnist_cntk.onnx")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("onnxvis-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert _repo_files() <= shipped, sorted(_repo_files() - shipped)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True,
    )
    assert installed.returncode == 0, installed.stderr
    # The dependencies (numpy, onnx, onnxruntime, ...) come from this environment, added as a plain
    # path: its .pth files, among them the editable onnxvis's finder, are not run from there.
    venv_site = Path(site)
    venv_site.joinpath("deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", "import onnxvis, importlib.resources as r; print(onnxvis.__file__); "
         "print(r.files('onnxvis.serve').joinpath('static').joinpath('index.html').is_file())"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(venv_site / "onnxvis" / "__init__.py"), "True"]
    done = subprocess.run([python, "-m", "onnxvis", "layers", str(mnist)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "Convolution28" in done.stdout and "Convolution110" in done.stdout
    console = venv / "bin" / "onnxvis"
    assert console.exists()
    done = subprocess.run([console, "kernels", str(mnist), "-o", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 2 and all(line.endswith(".png") for line in done.stdout.split())
