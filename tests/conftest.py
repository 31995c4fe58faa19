"""Shared fixtures: the real assets in ../shared, small models built with onnx.helper, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from browser import STARTED, chromium, in_ci
from skips import not_allowed, reason_of

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"


def asset(relative: str) -> Path:
    """Path of a file in ../shared/assets; skips the test when the assets are not beside the repo."""
    path = ASSETS / relative
    if not path.exists():
        pytest.skip(f"real test asset {path} is missing (../shared/assets is not beside the repo)")
    return path


@pytest.fixture
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.skip(f"real test assets not found at {ASSETS}")
    return ASSETS


def real_models() -> list[str]:
    """Names of the real models, for parametrize (empty when the assets are absent)."""
    folder = ASSETS / "models"
    return sorted(p.name for p in folder.glob("*.onnx")) if folder.is_dir() else []


def conv_model(
    weight: np.ndarray,
    *,
    op: str = "Conv",
    input_shape: tuple | None = None,
    attrs: dict | None = None,
    path: Path | None = None,
    name: str = "conv0",
    opset: int = 17,
):
    """A one-node conv model whose weight is an initializer; saved to ``path`` when given."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    attrs = dict(attrs or {})
    rank = weight.ndim - 2
    if input_shape is None:
        channels = weight.shape[1] * attrs.get("group", 1) if op == "Conv" else weight.shape[0]
        input_shape = (1, channels) + (16,) * rank
    node = helper.make_node(op, ["x", "w"], ["y"], name=name, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if path is not None:
        onnx.save(model, str(path))
    return model


@pytest.fixture
def make_conv_model(tmp_path):
    """Build and save a one-conv model: make_conv_model(weight, **options) -> Path."""
    counter = iter(range(10**6))

    def build(weight: np.ndarray, **options) -> Path:
        path = tmp_path / f"model{next(counter)}.onnx"
        conv_model(np.asarray(weight, dtype=np.float32), path=path, **options)
        return path

    return build


def run_onnxvis(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, in a subprocess; returns the completed process (text)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "onnxvis", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path):
    """Run the CLI in a fresh working folder: cli('kernels', model) -> CompletedProcess."""

    def run(*args, **kwargs):
        kwargs.setdefault("cwd", tmp_path)
        return run_onnxvis(*args, **kwargs)

    return run


# ------------------------------------------------------------------- browser tests and CI skips


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium WebDriver (tests/browser.py): skips locally when it cannot start, FAILS in CI."""
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser_webgl():
    """As ``browser``, 1400x900, rendering WebGL in software (Model Explorer draws its graph with WebGL)."""
    with chromium(window=(1400, 900), webgl=True) as driver:
        yield driver


_SKIPS: list[tuple[str, str]] = []  # (test id, reason) of every skip of the run
_BROWSER_OUTCOMES: list[str] = []


def pytest_collectreport(report):
    if report.skipped:
        _SKIPS.append((report.nodeid, reason_of(report.longrepr)))


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPS.append((report.nodeid, reason_of(report.longrepr)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    ran_or_never_could = report.when == "call" or (report.when == "setup" and not report.passed)
    if ran_or_never_could and any(f == "browser" or f.startswith("browser_") for f in getattr(item, "fixturenames", ())):
        _BROWSER_OUTCOMES.append(report.outcome)


def _refused_skips() -> list[tuple[str, str]]:
    if not in_ci():
        return []
    refused = set(not_allowed(reason for _, reason in _SKIPS))
    return [(nodeid, reason) for nodeid, reason in _SKIPS if reason in refused]


def pytest_sessionfinish(session, exitstatus):
    # CI=true: a skip that tests/skips.py does not allow fails the run (its summary lists them).
    if _refused_skips() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    if _BROWSER_OUTCOMES or STARTED:
        counts = ", ".join(f"{_BROWSER_OUTCOMES.count(o)} {o}" for o in ("passed", "failed", "skipped") if o in _BROWSER_OUTCOMES)
        # e.g. "browser tests: 3 passed; headless Chromium 156.0.8078.114": the CI log shows they ran
        write(f"browser tests: {counts or 'none ran'}; headless {', '.join(sorted(set(STARTED))) or 'Chromium never started'}")
    refused = _refused_skips()
    if refused:
        write(f"CI=true: {len(refused)} skip(s) not allowed by tests/skips.py; each hides a test CI must run:", red=True)
        for nodeid, reason in refused:
            write(f"  {nodeid}: {reason}", red=True)
    elif in_ci():
        write(f"CI=true: {len(_SKIPS)} skip(s), all allowed by tests/skips.py")


# ------------------------------------------------------------------------ reverse order


def pytest_addoption(parser):
    parser.addoption(
        "--reverse", action="store_true", default=False,
        help="run the collected tests in reverse order (files and the tests in them), to find tests that depend on order",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()


def export_seeded_resnet18(folder: Path):
    """torchvision's ResNet-18 with seeded weights (BatchNorm statistics perturbed too), and the file
    `onnxvis export resnet18 --weights` writes from its state dict: (torch model in eval mode, .onnx path).
    The parity tests' oracle and subject; needs torch (the full environment)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    model.eval()
    weights = folder / "resnet18_seeded.pth"
    torch.save(model.state_dict(), weights)
    done = run_onnxvis("export", "resnet18", "--weights", weights, "-o", folder)
    assert done.returncode == 0, done.stderr
    return model, folder / "resnet18.onnx"
