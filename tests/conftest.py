"""Shared fixtures and builders: the real assets in ../shared, small models built with onnx.helper, the
CLI (in this process, or in a real one), a real ``onnxvis serve`` process, and the two shares of the
suite (``--suite core|full``, the ``full`` marker).

Test modules import from here, never from each other.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import skips
from browser import STARTED, chromium, in_ci
from PIL import Image
from skips import FULL_ONLY, not_allowed, reason_of

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
    """Run the CLI as a user would, in a subprocess; returns the completed process (text).

    For what only a real process shows: its exit status, signals, another user, the modules it
    imports at start-up, a terminal. Everything else calls :func:`call_onnxvis`, a second faster."""
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


def default_sigint() -> None:
    """In a child, before it runs: Ctrl-C (SIGINT) back to its default. A suite started in the background
    (``nohup``, ``&``) ignores SIGINT, and a child that inherits that would never see a Ctrl-C.
    Pass it as ``preexec_fn`` to every child a test interrupts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def call_onnxvis(*args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in this process, ``onnxvis.cli.main(args)``, and return what :func:`run_onnxvis` would:
    the exit code, stdout and stderr (text). Both streams are caught at the file descriptors too, where
    native libraries such as onnxruntime write; Python's warnings show on stderr as in a fresh Python;
    ``cwd`` and ``env`` hold for the call only. An exception that escapes main() prints its traceback
    and exits 1, as it would in a process."""
    from onnxvis.cli import main

    if env and {"PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH"} & set(env):
        raise ValueError("PYTHONPATH and the like act when a Python starts: test what a process imports with run_onnxvis")
    argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with _working_folder(cwd), _environment(env), _streams_into(out, err), _warnings_as_a_fresh_python():
            code = _exit_code(main, argv)
        return subprocess.CompletedProcess(["onnxvis", *argv], code, _read_text(out), _read_text(err))


def _exit_code(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse (--help, --version, a usage mistake), as the interpreter ends
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except Exception:  # escaped main(): --debug, or a bug in main itself
        traceback.print_exc()
        return 1


@contextmanager
def _working_folder(cwd: Path | None) -> Iterator[None]:
    before = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


@contextmanager
def _environment(env: dict | None) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _streams_into(out, err) -> Iterator[None]:
    """stdout and stderr into two files: file descriptors 1 and 2 and Python's sys.stdout and sys.stderr,
    one stream each, so that Python's lines and a native library's land in the order written."""
    sys.stdout.flush()
    sys.stderr.flush()
    streams = sys.stdout, sys.stderr
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        # line-buffered, as Python's own are when the output is a file read by the test at the end
        sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def _read_text(file) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "surrogateescape")


@contextmanager
def _warnings_as_a_fresh_python() -> Iterator[None]:
    """Warnings printed on stderr, filtered as a fresh Python filters them (pytest would record them)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")

        def show(message, category, filename, lineno, file=None, line=None):
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = show
        yield


@pytest.fixture
def cli(tmp_path):
    """Run the CLI in this process, in a fresh working folder: cli('kernels', model) -> CompletedProcess."""

    def run(*args, **kwargs):
        kwargs.setdefault("cwd", tmp_path)
        return call_onnxvis(*args, **kwargs)

    return run


# --------------------------------------------------------------------- small models and photos

LABELS = ["tabby cat", "dog <&>", "espresso", "teapot", "guitar", "kite", "boat"]


def classifier(path: Path, labels=LABELS, preprocess: dict | None = None, seed: int = 0) -> Path:
    """Conv(4x3x3x3) -> Relu -> Conv(6x4x3x3) -> GlobalAveragePool -> Flatten -> MatMul -> scores [1, 7].

    Filter 2 of the first conv is all zero (near-dead); the model carries onnxvis metadata.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w0[2] = 0
    w1 = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((6, len(labels))).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w0"], ["c0"], name="stem/conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], name="block/conv"),
        helper.make_node("GlobalAveragePool", ["c1"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 24, 24])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, len(labels)])],
        [numpy_helper.from_array(w0, "w0"), numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(fc, "fc")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tiny-maker", producer_version="3.1")
    model.ir_version = 8
    pre = preprocess or {"resize": [24, 24], "crop": None, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "color": "RGB", "scale": 1}
    helper.set_model_props(model, {"onnxvis.source": "a test", "onnxvis.preprocess": json.dumps(pre), "onnxvis.labels": json.dumps(labels)})
    onnx.save(model, str(path))
    return path


def photo(path: Path, seed: int) -> Path:
    """A 50x40 RGB photo of random pixels."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------ a real server process

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"
COFFEE = "images/skimage_coffee.png"
ESPRESSO = 967  # SqueezeNet's class for skimage's coffee


class ServerProcess:
    """``python -m onnxvis serve MODEL --port 0 ...`` with its own TMPDIR; ``url`` once it listens."""

    def __init__(self, model: Path, tmp: Path, *args: str):
        self.tmp = tmp / "tmpdir"
        self.tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), TMPDIR=str(self.tmp))
        self.stderr_path = tmp / "server.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onnxvis", "serve", str(model), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, preexec_fn=default_sigint,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("http://"):
            self.stop()
            pytest.fail(f"the server did not start: {line!r} {self.stderr()}")
        self.url = line.strip()
        parts = urlsplit(self.url)
        self.address = (parts.hostname, parts.port)

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text()

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=120)  # not a speed check: only so a hung server cannot hang the suite
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode

    def raw(self, request: bytes) -> bytes:
        """Send bytes as they are (no client tidies the path) and return the whole answer."""
        with socket.create_connection(self.address) as sock:
            sock.sendall(request)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks)


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
        if skips.SUITE == "core" and any(skips.wants_the_full_environment(reason) for _, reason in refused):
            write("  a test that needs torch or another extra of the full environment: mark it @pytest.mark.full, "
                  "so that the full share runs it (tests/conftest.py)", red=True)
    elif in_ci():
        write(f"CI=true: {len(_SKIPS)} skip(s), all allowed by tests/skips.py")


# ------------------------------------------------------------------ the two shares of the suite
#
# scripts/test.sh runs the suite in two environments. The core one (.venv-core, no torch) runs every
# test but those marked ``full``; the full one (.venv, torch and the extras only it has) runs those
# alone. A test module that imports such a module at its top level is marked as a whole (the core
# share does not even import it); a test that needs one inside carries ``@pytest.mark.full``. A test
# the core share skips for want of torch is one that lacks its mark: CI fails it (tests/skips.py).

FULL_MARKER = (
    "full: needs the full environment (.venv): torch or an extra only it has (" + ", ".join(FULL_ONLY) + "), "
    "or torch importable, to show that onnxvis does not import it; `scripts/test.sh` runs these there only "
    "(--suite full), and the rest in .venv-core (--suite core); a module importing one at its top level is marked whole"
)


def pytest_addoption(parser):
    parser.addoption(
        "--reverse", action="store_true", default=False,
        help="run the collected tests in reverse order (files and the tests in them), to find tests that depend on order",
    )
    parser.addoption(
        "--suite", choices=("core", "full"), default=None,
        help="run one share of the suite, as scripts/test.sh does: 'core' every test but those marked full "
             "(in .venv-core, without torch), 'full' only those (in .venv); by default every test",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", FULL_MARKER)
    skips.SUITE = config.getoption("--suite")


@functools.cache
def imports_a_full_only_module(module: Path) -> bool:
    """Whether importing this test module imports a module of FULL_ONLY: an ``import`` or a
    ``pytest.importorskip(...)`` outside any function."""
    try:
        tree = ast.parse(module.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return False  # pytest reports the error when it collects the module
    names = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue  # runs when a test does, not at import
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.Call) and _is_importorskip(node.func) and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value))
        pending.extend(ast.iter_child_nodes(node))
    return any(name.split(".")[0] in FULL_ONLY for name in names)


def _is_importorskip(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "importorskip") or (isinstance(func, ast.Name) and func.id == "importorskip")


def _test_module(path: Path) -> bool:
    return path.suffix == ".py" and path.name.startswith("test_")


def pytest_ignore_collect(collection_path, config):
    # The core share does not import a module that needs the full environment: it would only skip.
    if config.getoption("--suite") == "core" and _test_module(collection_path) and imports_a_full_only_module(collection_path):
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # before -m selects: a module's mark is then on its tests
def pytest_collection_modifyitems(config, items):
    for item in items:
        if _test_module(item.path) and imports_a_full_only_module(item.path):
            item.add_marker(pytest.mark.full)
    suite = config.getoption("--suite")
    if suite is not None:
        wanted = suite == "full"
        keep = [item for item in items if (item.get_closest_marker("full") is not None) == wanted]
        deselected = [item for item in items if (item.get_closest_marker("full") is not None) != wanted]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = keep
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
    done = call_onnxvis("export", "resnet18", "--weights", weights, "-o", folder)  # in this process: torch is loaded already
    assert done.returncode == 0, done.stderr
    return model, folder / "resnet18.onnx"


@pytest.fixture(scope="session")
def seeded_resnet18(tmp_path_factory):
    """:func:`export_seeded_resnet18` once per run, for every module that needs it (an export costs tens of
    seconds of CPU): (torch model, .onnx path). The file is shared: write outputs elsewhere, and take a
    ``copy.deepcopy`` of the model before hooking into it."""
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    return export_seeded_resnet18(tmp_path_factory.mktemp("seeded_resnet18"))
