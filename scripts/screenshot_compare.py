"""Take docs/compare_int8.png: the ``onnxvis compare`` page of the int8 MNIST (QLinearConv) against its float model.

    python scripts/screenshot_compare.py [--digits N] [-o docs/compare_int8.png]

Renders the first N UCI digits (``../shared/assets/data/sklearn_digits.csv.gz``) as 28x28 PNGs the way
MANIFEST.md says, runs ``python -m onnxvis compare`` on them, opens the page in headless Chromium and
saves a palette PNG of it (small enough for the repository): the summary, the outputs, the line per
layer, and the worst layer's kernels and error.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def digits(folder: Path, count: int) -> None:
    from PIL import Image

    with gzip.open(ASSETS / "data" / "sklearn_digits.csv.gz", "rt") as f:
        rows = np.loadtxt(f, delimiter=",", max_rows=count)
    for i, row in enumerate(rows):
        small = Image.fromarray((row[:64].reshape(8, 8) * (255 / 16)).astype(np.float32), "F")
        canvas = np.zeros((28, 28), np.float32)
        canvas[4:24, 4:24] = np.asarray(small.resize((20, 20), Image.Resampling.BILINEAR))
        Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "L").save(folder / f"digit_{i:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=int, default=1797)
    parser.add_argument("--size", default="1280,2000", help="window width,height")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "compare_int8.png"))
    args = parser.parse_args()

    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="onnxvis-compare-") as tmp:
        folder = Path(tmp) / "digits"
        folder.mkdir()
        digits(folder, args.digits)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        models = ASSETS / "models"
        subprocess.run([sys.executable, "-m", "onnxvis", "compare", str(models / "mnist_cntk.onnx"),
                        str(models / "mnist_cntk_int8_qlinearconv.onnx"), str(folder), "-o", str(Path(tmp) / "out")],
                       check=True, env=env)
        page = Path(tmp) / "out" / "compare.html"
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in CHROMIUM_ARGS + [f"--window-size={args.size}", f"--user-data-dir={Path(tmp) / 'profile'}"]:
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(page.as_uri())
            shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        finally:
            driver.quit()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    print(out, f"{out.stat().st_size / 1024:.0f} KB", shot.size)


if __name__ == "__main__":
    main()
