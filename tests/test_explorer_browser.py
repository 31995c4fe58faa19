"""In a real browser: Model Explorer, started as the README says with onnxvis's node data, colours the nodes.

Model Explorer runs from its own venv (tests/explorer.py); headless Chromium renders its WebGL graph
in software. The check reads the screenshot: the node-data colours of ``act_zeros`` (its thresholds)
cover Relu nodes with the file, and do not appear without it.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from explorer import model_explorer
from PIL import Image

from conftest import asset

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"


def _colour_pixels(png: bytes, colours: list[str]) -> dict[str, int]:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    counts = {}
    for colour in colours:
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], np.int16)
        counts[colour] = int(np.count_nonzero(np.abs(pixels - rgb).max(axis=2) <= 2))
    return counts


def _graph_screenshot(driver, url: str, wait_for_text: str | None) -> bytes:
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 600, poll_frequency=0.5)
    driver.get(url)
    wait.until(lambda d: d.execute_script("return !!document.querySelector('.expand-all') && !!document.querySelector('canvas')"))
    if wait_for_text:
        wait.until(lambda d: wait_for_text in d.execute_script("return document.body.innerText"))
    shots: list[bytes] = []

    def settled(d) -> bool:  # drawn: two screenshots in a row alike
        shots.append(d.get_screenshot_as_png())
        return len(shots) > 2 and shots[-1] == shots[-2]

    wait.until(settled)
    driver.find_element("css selector", ".expand-all").click()
    shots.clear()
    wait.until(settled)
    zoom_in(driver)
    shots.clear()
    wait.until(settled)
    return shots[-1]


def zoom_in(driver, x: int = 600, y: int = 170) -> None:
    """One step of Ctrl+wheel zoom at (x, y) of the graph: the fitted graph of SqueezeNet draws nodes a few pixels tall."""
    driver.execute_script(
        "const c = document.querySelector('canvas'), r = c.getBoundingClientRect();"
        "c.dispatchEvent(new WheelEvent('wheel', {deltaY: -240, ctrlKey: true, clientX: r.left + arguments[0],"
        " clientY: r.top + arguments[1], bubbles: true, cancelable: true}));", x, y)


@pytest.mark.slow
def test_model_explorer_colours_the_nodes_with_onnxvis_node_data(cli, tmp_path, browser_webgl):
    photos = sorted(asset("images/imagenet-sample").glob("*.JPEG"))[:8]
    done = cli("stats", asset(SQUEEZENET), *photos, "--preset", "caffe", "--format", "model-explorer", "-o", tmp_path / "nd")
    assert done.returncode == 0, done.stderr
    zeros = tmp_path / "nd" / "nodedata_act_zeros.json"
    data = json.loads(zeros.read_text())["squeezenet_old"]
    # each Relu's colour: the first threshold its share of zeros does not exceed
    used = {next(t["bgColor"] for t in data["thresholds"] if r["value"] <= t["value"]) for r in data["results"].values()}
    assert len(used) >= 3  # the photos give Relus of several colours
    driver = browser_webgl
    with model_explorer(asset(SQUEEZENET), [zeros]) as url:
        coloured = _colour_pixels(_graph_screenshot(driver, url, data["name"]), sorted(used))
        panel = driver.execute_script("return document.body.innerText")
    with model_explorer(asset(SQUEEZENET)) as url:
        plain = _colour_pixels(_graph_screenshot(driver, url, None), sorted(used))
    assert data["name"] in panel  # the node-data provider is listed under its name
    assert sum(coloured.values()) > 2000, (coloured, plain)  # nodes filled with the thresholds' colours
    assert sum(1 for n in coloured.values() if n > 150) >= 2, (coloured, plain)  # of at least two of them
    assert sum(plain.values()) < 0.05 * sum(coloured.values()), (coloured, plain)  # none without onnxvis's file
