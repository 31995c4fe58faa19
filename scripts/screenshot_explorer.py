"""Take docs/explorer.png: Google's Model Explorer colouring SqueezeNet's nodes with onnxvis's node data.

    python scripts/screenshot_explorer.py [MODEL] [PHOTO_FOLDER] [--metric act_zeros] [-o docs/explorer.png]

Runs ``python -m onnxvis stats MODEL PHOTO_FOLDER --format model-explorer`` into a temporary folder,
starts ``model-explorer MODEL --extensions=model_explorer_onnx --node_data_paths=<that metric's file>``
from .venv-explorer (made by tests/explorer.py if missing), opens it in headless Chromium with
WebGL in software, hides the weight nodes (Model Explorer's setting "Hide op nodes with labels":
InitializedInput, since this IR-3 file lists every weight as a graph input), expands the graph,
zooms in on its first fire modules and saves a palette PNG (small enough for the repository).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=str(ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"))
    parser.add_argument("photos", nargs="?", default=str(ASSETS / "images" / "imagenet-sample"))
    parser.add_argument("--preset", default="caffe")
    parser.add_argument("--metric", default="act_zeros", help="the node-data file shown (default act_zeros)")
    parser.add_argument("--zoom", type=int, default=3, help="Ctrl+wheel steps into the top of the graph (default 3)")
    parser.add_argument("--size", default="1400,1000", help="window width,height")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "explorer.png"))
    args = parser.parse_args()

    from browser import chromium
    from explorer import model_explorer
    from PIL import Image
    from selenium.webdriver.support.ui import WebDriverWait

    folder = Path(tempfile.mkdtemp(prefix="onnxvis-explorer-"))
    subprocess.run([sys.executable, "-m", "onnxvis", "stats", args.model, args.photos, "--preset", args.preset,
                    "--format", "model-explorer", "-o", str(folder)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   stdout=subprocess.DEVNULL)
    node_data = folder / f"nodedata_{args.metric}.json"
    width, height = (int(v) for v in args.size.split(","))
    with chromium(window=(width, height), webgl=True) as driver, model_explorer(args.model, [node_data]) as url:
        wait = WebDriverWait(driver, 600, poll_frequency=0.5)
        driver.get(url)
        wait.until(lambda d: d.execute_script("return !!document.querySelector('.expand-all')"))
        # Model Explorer keeps its settings in the browser: set one, then load the page again.
        driver.execute_script(
            "Array.from(document.querySelectorAll('button')).find(b => b.getAttribute('mattooltip') === 'Advanced settings'"
            " && b.offsetParent).click()")
        wait.until(lambda d: d.execute_script("return !!document.querySelector('textarea')"))
        driver.execute_script(
            "const t = document.querySelector('textarea'); t.value = t.value + ',InitializedInput';"
            "t.dispatchEvent(new Event('input', {bubbles: true})); t.dispatchEvent(new Event('change', {bubbles: true}));")
        driver.execute_script("Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === 'Close').click()")
        time.sleep(1)
        driver.get(url)
        wait.until(lambda d: d.execute_script("return !!document.querySelector('.expand-all') && !!document.querySelector('canvas')"))
        wait.until(lambda d: "onnxvis:" in d.execute_script("return document.body.innerText"))
        time.sleep(3)
        settle(driver, wait)
        driver.find_element("css selector", ".expand-all").click()
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(driver).move_to_element_with_offset(driver.find_element("css selector", "canvas"), -300, 200).perform()  # no tooltip
        time.sleep(3)  # the expansion starts, then animates to fit
        settle(driver, wait)
        x = _graph_middle(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
        for _ in range(args.zoom):  # into the top of the graph, around its middle
            driver.execute_script(
                "const c = document.querySelector('canvas'), r = c.getBoundingClientRect();"
                "c.dispatchEvent(new WheelEvent('wheel', {deltaY: -120, ctrlKey: true, clientX: arguments[0],"
                " clientY: r.top + 220, bubbles: true, cancelable: true}));", x)
            time.sleep(1)
        settle(driver, wait)
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    print(out, f"{out.stat().st_size / 1024:.0f} KB", shot.size)


def settle(driver, wait) -> None:
    """Wait until the page is drawn: two screenshots in a row alike (the graph animates as it fits and zooms)."""
    shots: list[bytes] = []

    def still(d) -> bool:
        shots.append(d.get_screenshot_as_png())
        return len(shots) > 2 and shots[-1] == shots[-2]

    wait.until(still)


def _graph_middle(shot) -> int:
    """The x, in CSS pixels, of the middle of the expanded graph (the layer's box, darker than the background)."""
    import numpy as np

    pixels = np.asarray(shot).astype(int)
    scale = shot.size[0] / 1400 if shot.size[0] > 1400 else 1
    band = pixels[pixels.shape[0] // 3 : 2 * pixels.shape[0] // 3, : int(1000 * scale)]
    background = band[0, -1]
    columns = np.flatnonzero(np.abs(band - background).max(axis=2).max(axis=0) > 8)
    return int((columns.min() + columns.max()) / 2 / scale) if columns.size else 500


if __name__ == "__main__":
    main()
