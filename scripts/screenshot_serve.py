"""Take docs/serve.png: the ``onnxvis serve`` page on a real model and photo, in headless Chromium.

    python scripts/screenshot_serve.py [MODEL] [PHOTO] [-o docs/serve.png]

Starts ``python -m onnxvis serve MODEL --port 0``, gives it PHOTO through the page's file input,
selects a layer, and saves a palette PNG (small enough for the repository).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
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
    parser.add_argument("photo", nargs="?", default=str(ASSETS / "images" / "skimage_coffee.png"))
    parser.add_argument("--layer", type=int, default=3)
    parser.add_argument("--size", default="1280,900", help="window width,height")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "serve.png"))
    args = parser.parse_args()

    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen([sys.executable, "-m", "onnxvis", "serve", args.model, "--port", "0"],
                              stdout=subprocess.PIPE, text=True, env=env)
    url = server.stdout.readline().strip()
    profile = tempfile.TemporaryDirectory(prefix="onnxvis-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in CHROMIUM_ARGS + [f"--window-size={args.size}", f"--user-data-dir={profile.name}"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        wait = WebDriverWait(driver, 300, poll_frequency=0.1)
        driver.get(url)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        driver.find_element("css selector", f"#layers [data-layer='{args.layer}']").click()
        driver.find_element("id", "image").send_keys(str(Path(args.photo).resolve()))
        wait.until(lambda d: d.execute_script(
            "const f = document.getElementById('fmaps'), k = document.getElementById('kernels');"
            "return f.complete && f.naturalWidth > 0 && k.complete && k.naturalWidth > 0 &&"
            " document.querySelectorAll('#predictions li').length === 5"))
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    finally:
        driver.quit()
        server.send_signal(signal.SIGINT)
        server.wait()
        profile.cleanup()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    print(out, f"{out.stat().st_size / 1024:.0f} KB", shot.size)


if __name__ == "__main__":
    main()
