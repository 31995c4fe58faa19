"""CI's rules for skips (tests/skips.py, tests/conftest.py) and for the browser (tests/browser.py).

With CI=true a skip that tests/skips.py does not allow fails the run, and so does a browser test
whose browser cannot start; without CI both stay skips with their reasons. Each case runs pytest on
a small test file in a subprocess, with tests/conftest.py loaded as a plugin.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from skips import ALLOWED, _no_torch, _root, not_allowed, reason_of

from conftest import ROOT

TESTS = ROOT / "tests"


def _pytest(tmp_path: Path, body: str, ci: bool) -> subprocess.CompletedProcess:
    test = tmp_path / "test_case.py"
    test.write_text(textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "conftest", "-p", "no:cacheprovider", "-p", "no:randomly", str(test)],
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


def test_the_allow_list_is_precise():
    torch_skip = "could not import 'torch': No module named 'torch'"
    assert (not_allowed([torch_skip]) == []) == _no_torch()  # allowed only where torch is absent
    vision_skip = "could not import 'torchvision.utils': No module named 'torchvision'"
    assert (not_allowed([vision_skip]) == []) == _no_torch()
    cam_skip = "could not import 'pytorch_grad_cam': No module named 'pytorch_grad_cam'"
    assert (not_allowed([cam_skip]) == []) == _no_torch()
    # Ray, the one heavy extra, is installed in the full environment only: its skip is allowed where it is absent
    ray_missing = importlib.util.find_spec("ray") is None
    assert (not_allowed(["could not import 'ray': No module named 'ray'"]) == []) == ray_missing
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


@pytest.mark.parametrize(
    "longrepr, reason",
    [(("/x/test_a.py", 3, "Skipped: needs FIFOs"), "needs FIFOs"), ("odd", "odd")],
)
def test_reason_of(longrepr, reason):
    assert reason_of(longrepr) == reason
