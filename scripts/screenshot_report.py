"""Take docs/report.png: the top of an ``onnxvis report`` page and its first image, in headless Chromium.

    python scripts/screenshot_report.py [MODEL] [PHOTO] [--preset caffe] [-o docs/report.png]

Runs ``python -m onnxvis report MODEL PHOTO`` into a temporary folder (the report names only the files, so
the picture shows no machine path), opens the page, takes the summary and the layer table, then the first
image's section, stacks the two and saves a palette PNG (small enough for the repository).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=str(ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"))
    parser.add_argument("photo", nargs="?", default=str(ASSETS / "images" / "skimage_chelsea.png"))
    parser.add_argument("--preset", default="caffe")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--top", type=int, default=820, help="pixels of the page's top to keep")
    parser.add_argument("--image", type=int, default=700, help="pixels of the first image's section to keep")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "report.png"))
    args = parser.parse_args()

    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="onnxvis-report-") as tmp:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "onnxvis", "report", args.model, args.photo, "--preset", args.preset,
                        "--cam", "none", "-o", str(Path(tmp) / "out")], check=True, env=env, stdout=subprocess.DEVNULL)
        page = Path(tmp) / "out" / "report.html"
        text = page.read_text(encoding="utf-8")
        for private in (str(Path(args.model).resolve().parent), str(Path(args.photo).resolve().parent), tmp):
            assert private not in text, f"the report shows the path {private}"
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        height = max(args.top, args.image) + 400  # the viewport is shorter than the window
        for arg in CHROMIUM_ARGS + [f"--window-size={args.width},{height}", f"--user-data-dir={Path(tmp) / 'profile'}"]:
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(page.as_uri())
            top = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
            driver.execute_script("document.getElementById('image0').scrollIntoView()")
            image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        finally:
            driver.quit()
    shot = Image.new("RGB", (top.width, args.top + 2 + args.image), (255, 255, 255))
    shot.paste(top.crop((0, 0, top.width, args.top)), (0, 0))
    shot.paste(Image.new("RGB", (top.width, 2), (160, 160, 160)), (0, args.top))  # where the two parts meet
    shot.paste(image.crop((0, 0, image.width, args.image)), (0, args.top + 2))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    print(out, f"{out.stat().st_size / 1024:.0f} KB", shot.size)


if __name__ == "__main__":
    main()
