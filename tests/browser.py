"""Headless Chromium for the browser tests (the report's, the server's): one place that starts it.

Chromium and its WebDriver come from Debian's ``chromium`` and ``chromium-driver`` packages (.ci/run
installs them); Selenium (the ``dev`` extra) drives them. Where one of the three is missing, or
Chromium does not start, a local run skips and says why, but a CI run (``CI=true``) FAILS: CI must
never be green with the browser never opened. Use the ``browser`` fixture of tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1400",
]

# "Chromium <version> (<n> browser sessions)" for each start, printed in the run's summary so that the
# CI log shows that the browser tests ran.
STARTED: list[str] = []


def in_ci() -> bool:
    """True in CI: the CI variable set to true (GitHub Actions, GitLab, .ci/run all set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason`` locally; fail in CI, where every browser test must run."""
    if in_ci():
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


# WebGL pages (Model Explorer) get it from SwiftShader, Chromium's software renderer, said outright:
# Chromium's silent fallback to it when the GPU is disabled is deprecated.
WEBGL_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


@contextmanager
def chromium(window: tuple[int, int] = (1280, 1400), webgl: bool = False) -> Iterator[Any]:
    """A selenium WebDriver for a fresh headless Chromium with its own profile; quits it after.

    ``webgl``: render WebGL in software (SwiftShader) instead of disabling the GPU.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[dev]'); cannot drive Chromium")
    chromium_path = _find("/usr/bin/chromium", "chromium", "chromium-browser")
    driver_path = _find("/usr/bin/chromedriver", "chromedriver")
    if chromium_path is None or driver_path is None:
        missing = " and ".join(n for n, p in (("chromium", chromium_path), ("chromedriver", driver_path)) if p is None)
        unavailable(f"{missing} not found: install Debian's chromium and chromium-driver packages (.ci/run does)")
    profile = tempfile.mkdtemp(prefix="onnxvis-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    args = [a for a in CHROMIUM_ARGS if not a.startswith("--window-size=") and not (webgl and a == "--disable-gpu")]
    for arg in [*args, *(WEBGL_ARGS if webgl else []), f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # selenium's errors for a failed start vary: version mismatch, missing libraries, ...
        shutil.rmtree(profile, ignore_errors=True)
        unavailable(f"headless Chromium did not start: {' '.join(str(exc).split())[:300]}")
    STARTED.append(f"Chromium {driver.capabilities.get('browserVersion', '?')}")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
