"""The deletion check of every CAM method over the 100 ImageNet photos: the README's table.

    python benchmarks/cam_deletion.py                       # every method; ScoreCAM on the first 20 photos
    python benchmarks/cam_deletion.py --methods grad,ablation --photos 50

For each photo, SqueezeNet (Caffe, fp16) at its default CAM layer and its predicted class: delete the
map's hottest 20% (set to the mean) and, as the baseline, 20% in random blobs as coarse as the map
(onnxvis.analysis.cam.metrics.deletion); a photo counts when the map's deletion hurts the class more.
Prints each method's count, e.g. ``grad: 79/100``. A measurement, not a test: the suite checks the
same rule on fewer photos (tests/test_cam_models.py, tests/test_gradcams.py), where it takes seconds;
this takes about an hour, ScoreCAM alone a minute a photo (1,000 SqueezeNet runs each).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxvis.analysis.cam import runs as cammodel  # noqa: E402
from onnxvis.analysis.cam.gradcams import gradient_cams  # noqa: E402
from onnxvis.analysis.cam.gradmaths import GRADIENT_METHODS  # noqa: E402
from onnxvis.analysis.cam.metrics import deletion  # noqa: E402
from onnxvis.engine.inspector import Inspector  # noqa: E402

ASSETS = ROOT.parent / "shared" / "assets"
MODEL = ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"
PHOTOS = ASSETS / "images" / "imagenet-sample"
METHODS = ("grad", "eigengrad", "fullgrad", "ablation", "eigen", "fem", "kpca", "score")
SCORE_PHOTOS = 20


def photos(limit: int) -> list[Path]:
    with open(PHOTOS / "labels.csv", newline="") as f:
        return [PHOTOS / row["file"] for row in csv.DictReader(f)][:limit]


def wins(method: str, images: list[Path]) -> list[bool]:
    with Inspector(MODEL, preset="caffe") as insp:
        output = insp.class_output()
        places = cammodel.places_for(insp, [cammodel.default_layer(insp, output)])
        if method in GRADIENT_METHODS:
            maps = gradient_cams(insp, images, [] if method == "fullgrad" else places, method)
        else:
            maps = cammodel.Cam(insp, places, method=method)(images)
        return [bool(np.subtract(*deletion(insp, r, 0.2)) > 0) for r in maps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--photos", type=int, default=100)
    args = parser.parse_args()
    for method in args.methods.split(","):
        limit = min(args.photos, SCORE_PHOTOS) if method == "score" else args.photos
        start = time.perf_counter()
        outcome = wins(method, photos(limit))
        print(f"{method}: {sum(outcome)}/{len(outcome)} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
