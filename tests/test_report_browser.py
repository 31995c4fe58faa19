"""The HTML report in a real browser: headless Chromium opens it from a file.

The ``browser`` fixture (tests/conftest.py, tests/browser.py) starts it: where Chromium, its driver
or Selenium is missing, a local run skips and says which, and a CI run (CI=true) fails.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import ASSETS, classifier, photo


def _open(browser, report: Path) -> list[dict]:
    browser.get_log("browser")  # forget what an earlier page logged
    browser.get(report.resolve().as_uri())
    browser.execute_script("return document.readyState")
    return browser.get_log("browser")


def _report(cli, tmp_path: Path, *extra) -> Path:
    model = classifier(tmp_path / "tiny.onnx")
    images = [photo(tmp_path / "a.png", 1)]
    real = ASSETS / "images" / "skimage_chelsea.png"
    if real.exists():
        images.append(real)
    done = cli("report", model, *images, "--layers", "all", *extra, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def test_report_loads_in_chromium_without_errors(browser, cli, tmp_path):
    report = _report(cli, tmp_path)
    console = _open(browser, report)
    errors = [entry for entry in console if entry.get("level") in ("SEVERE", "ERROR")]
    assert not errors, errors

    state = browser.execute_script(
        "return [...document.images].map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, alt: i.alt}))"
    )
    assert len(state) >= 2 + 1 + 2 * 2  # two kernel grids; each photo and its two layers' maps
    broken = [s for s in state if not (s["complete"] and s["w"] > 0 and s["h"] > 0)]
    assert not broken, broken

    # nothing was fetched: every resource the page used is inside it
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith("data:") for name in fetched), fetched

    assert browser.title.startswith("onnxvis report")
    assert "Top-5 predictions" in browser.find_element("tag name", "body").text

    shot = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB"))
    assert shot.shape[0] > 200 and shot.shape[1] > 200
    assert shot.std() > 10  # not a blank page
    colours = np.unique(shot.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, tables and pictures, not one flat colour


def test_a_broken_image_would_be_caught(browser, cli, tmp_path):
    """The checks above can fail: a report with a damaged picture shows naturalWidth 0."""
    report = _report(cli, tmp_path)
    text = report.read_text()
    start = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    damaged = tmp_path / "damaged.html"
    damaged.write_text(text[:start] + "AAAA" + text[start + 4:])
    _open(browser, damaged)
    widths = browser.execute_script("return [...document.images].map(i => i.naturalWidth)")
    assert 0 in widths


def test_diverging_report_in_chromium(browser, cli, tmp_path):
    report = _report(cli, tmp_path, "--colormap", "diverging")
    console = _open(browser, report)
    assert not [e for e in console if e.get("level") == "SEVERE"], console
    widths = browser.execute_script("return [...document.images].map(i => i.naturalWidth)")
    assert widths and min(widths) > 0
