"""CI's rules for skips (tests/skips.py, tests/conftest.py), for the browser (tests/browser.py), and
the two shares of the suite (--suite core|full, tests/conftest.py).

With CI=true a skip that tests/skips.py does not allow fails the run, and so does a browser test
whose browser cannot start; without CI both stay skips with their reasons. Each case runs pytest on
small test files in a subprocess, with tests/conftest.py loaded as a plugin.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import skips
from skips import ALLOWED, _no_torch, _root, not_allowed, reason_of

from conftest import ROOT, imports_a_full_only_module

TESTS = ROOT / "tests"


def _pytest(tmp_path: Path, body: str, ci: bool, *args: str, files: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """pytest on test_case.py holding ``body`` (and on ``files``, name -> text, beside it)."""
    test = tmp_path / "test_case.py"
    test.write_text(textwrap.dedent(body))
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "conftest", "-p", "no:cacheprovider", "-p", "no:randomly", *args,
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )


def test_an_unlisted_skip_fails_in_ci_only(tmp_path):
    body = """
        import pytest

        def test_hidden():
            pytest.skip("the frobnicator is not installed")

        def test_runs():
            assert True
    """
    local = _pytest(tmp_path, body, ci=False)
    assert local.returncode == 0, local.stdout
    assert "the frobnicator is not installed" in local.stdout  # -rs shows the reason
    ci = _pytest(tmp_path, body, ci=True)
    assert ci.returncode == 1, ci.stdout
    assert "CI=true: 1 skip(s) not allowed by tests/skips.py" in ci.stdout
    assert "test_case.py::test_hidden: the frobnicator is not installed" in ci.stdout


def test_an_allowed_skip_passes_in_ci(tmp_path):
    reason = "root can write anywhere" if _root() else "needs root, to run onnxvis as the user nobody"
    ci = _pytest(tmp_path, f"""
        import pytest

        def test_by_design():
            pytest.skip({reason!r})
    """, ci=True)
    assert ci.returncode == 0, ci.stdout
    assert "CI=true: 1 skip(s), all allowed by tests/skips.py" in ci.stdout


def test_a_browser_that_cannot_start_fails_in_ci_and_skips_outside(tmp_path):
    body = """
        import browser

        browser._find = lambda *names: None  # as on a machine without Chromium

        def test_page(browser):
            raise AssertionError("never reached: the fixture cannot start a browser")
    """
    local = _pytest(tmp_path, body, ci=False)
    assert local.returncode == 0, local.stdout
    assert "chromium and chromedriver not found" in local.stdout and "1 skipped" in local.stdout
    ci = _pytest(tmp_path, body, ci=True)
    assert ci.returncode == 1, ci.stdout
    assert "CI=true and the browser tests cannot run: chromium and chromedriver not found" in ci.stdout
    assert "1 error" in ci.stdout  # a fixture failure: the test did not run, and CI is red


@pytest.mark.parametrize("suite", [None, "core", "full"])
def test_the_allow_list_is_precise(monkeypatch, suite):
    monkeypatch.setattr(skips, "SUITE", suite)
    whole = suite is None  # scripts/test.sh runs shares: there no test that needs torch may skip for want of it
    torch_skip = "could not import 'torch': No module named 'torch'"
    assert (not_allowed([torch_skip]) == []) == (_no_torch() and whole)  # allowed only where torch is absent
    vision_skip = "could not import 'torchvision.utils': No module named 'torchvision'"
    assert (not_allowed([vision_skip]) == []) == (_no_torch() and whole)
    cam_skip = "could not import 'pytorch_grad_cam': No module named 'pytorch_grad_cam'"
    assert (not_allowed([cam_skip]) == []) == (_no_torch() and whole)
    assert (not_allowed(["exporting needs torch (the full environment)"]) == []) == (_no_torch() and whole)
    # Ray, the one heavy extra, is installed in the full environment only: its skip is allowed where it is absent
    ray_missing = importlib.util.find_spec("ray") is None
    assert (not_allowed(["could not import 'ray': No module named 'ray'"]) == []) == (ray_missing and whole)
    # any other optional extra of the core (starlette, scikit-learn, ...) belongs in the core environment
    assert not_allowed(["could not import 'starlette': No module named 'starlette'"]) != []
    assert not_allowed(["could not import 'sklearn': No module named 'sklearn'"]) != []
    # a torch that is there but broken is no reason to skip, nor any other missing module
    assert not_allowed(["could not import 'torch': libtorch.so: cannot open shared object file"]) != []
    assert not_allowed(["could not import 'selenium.webdriver': No module named 'selenium'"]) != []
    assert not_allowed(["real test asset /x is missing (../shared/assets is not beside the repo)"]) != []
    core_only = "torch is installed here; the shim test above covers this case"
    assert (not_allowed([core_only]) == []) == (not _no_torch())
    assert (not_allowed(["root can write anywhere (tests/test_cli_errors.py ...)"]) == []) == _root()
    from skips import _others_cannot_reach_the_repo

    nobody = "the user nobody cannot run onnxvis here: python: No module named onnxvis"
    assert (not_allowed([nobody]) == []) == _others_cannot_reach_the_repo()
    assert len(ALLOWED) <= 7  # short, on purpose: each entry is a test CI does not run


# ------------------------------------------------------------------------ the two shares


_SHARES = {
    "test_torchy.py": """
        import pytest

        torch = pytest.importorskip("torch")  # at import: the module is full as a whole

        def test_with_torch():
            assert torch.zeros(1).sum() == 0
    """,
}
_BODY = """
    import pytest

    def test_plain():
        pass

    @pytest.mark.full
    def test_marked():
        pass

    @pytest.mark.full
    @pytest.mark.slow
    def test_marked_and_slow():
        pass
"""


def _ran(done: subprocess.CompletedProcess) -> set[str]:
    return {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line and not line.startswith(("SKIPPED", "FAILED"))}


def test_the_core_share_leaves_out_what_is_marked_full_and_does_not_import_full_modules(tmp_path):
    done = _pytest(tmp_path, _BODY, False, "--suite", "core", "--collect-only", files=_SHARES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _ran(done) == {"test_plain"}
    assert "test_torchy" not in done.stdout  # not even imported: no skip, no error
    assert "1/3 tests collected (2 deselected)" in done.stdout


def test_the_full_share_runs_only_what_is_marked_full(tmp_path):
    done = _pytest(tmp_path, _BODY, False, "--suite", "full", "--collect-only", "-m", "not slow", files=_SHARES)
    assert done.returncode == 0, done.stdout + done.stderr
    if _no_torch():  # the module needs torch: here it can only skip, and says why
        assert _ran(done) == {"test_marked"} and "could not import 'torch'" in done.stdout
    else:
        assert _ran(done) == {"test_marked", "test_with_torch"}


def test_in_ci_a_test_that_skips_for_want_of_torch_in_the_core_share_fails(tmp_path):
    """An unmarked test that needs torch would run in neither share: CI says to mark it."""
    body = """
        import pytest

        def test_unmarked_oracle():
            pytest.importorskip("torch")
    """
    done = _pytest(tmp_path, body, True, "--suite", "core")
    if not _no_torch():
        assert done.returncode == 0, done.stdout  # torch is here: the test runs, nothing to refuse
        return
    assert done.returncode == 1, done.stdout
    assert "CI=true: 1 skip(s) not allowed by tests/skips.py" in done.stdout
    assert "mark it @pytest.mark.full" in done.stdout
    whole = _pytest(tmp_path, body, True)  # the whole suite in the core environment: the skip is by design
    assert whole.returncode == 0, whole.stdout


def test_a_module_is_full_by_what_it_imports_at_its_top_level(tmp_path):
    cases = {
        "import torch\n": True,
        "from torchvision import transforms\n": True,
        "import pytest\nray = pytest.importorskip('ray')\n": True,
        "import pytest\nfrom pytest import importorskip\ncv2 = importorskip('cv2.data')\n": True,
        "import numpy\nimport torchmetrics_like\n": False,  # a name that starts with torch is not torch
        "def test_a():\n    import torch\n": False,  # inside a test: the test carries the mark
        "import pytest\n\ndef helper():\n    return pytest.importorskip('torch')\n": False,
        "try:\n    import torch\nexcept ImportError:\n    torch = None\n": True,
    }
    for number, (source, full) in enumerate(cases.items()):
        module = tmp_path / f"test_m{number}.py"
        module.write_text(source)
        assert imports_a_full_only_module(module) == full, source


@pytest.mark.parametrize(
    "longrepr, reason",
    [(("/x/test_a.py", 3, "Skipped: needs FIFOs"), "needs FIFOs"), ("odd", "odd")],
)
def test_reason_of(longrepr, reason):
    assert reason_of(longrepr) == reason
