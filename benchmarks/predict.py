"""`onnxvis predict` against the bare floor, whole process against whole process.

    python benchmarks/predict.py                 # 5 alternated rounds on the 100 ImageNet photos
    python benchmarks/predict.py --runs 3 --copies 5
    python benchmarks/predict.py --photos ../shared/assets/images/imagenet-sample-300 --copies 1

The bare floor (benchmarks/bare_predict.py) decodes, resizes and normalises with Pillow and numpy
and runs one onnxruntime session in one process; onnxvis runs ``onnxvis predict MODEL FOLDER
--format jsonl`` on the same photos with the same preprocessing (the Caffe preset it guesses for
SqueezeNet). ``--copies N`` makes a folder of N x 100 photos (symbolic links) to show that memory does
not grow with the number of images. Medians of wall time, CPU time and peak RSS (``wait4``), rounds
alternating the order of the two sides. Not a test: nothing fails on a slow machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from run import ROOT, _default_python, _mib, machine, measure

ASSETS = ROOT.parent / "shared" / "assets"
MODEL = ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"
PHOTOS = ASSETS / "images" / "imagenet-sample"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 5], help="folders of N copies of the photos")
    parser.add_argument("--python", default=_default_python(str(ROOT / ".venv-core"), sys.executable))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--photos", type=Path, default=PHOTOS, help=f"the folder of JPEG photos (default {PHOTOS})")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.copies:
            folder = Path(tmp) / f"photos{copies}"
            folder.mkdir()
            for c in range(copies):
                for photo in sorted(args.photos.glob("*.JPEG")):
                    (folder / f"{c:03d}_{photo.name}").symlink_to(photo)
            count = len(list(folder.iterdir()))
            sides = {
                "bare onnxruntime loop": [args.python, str(ROOT / "benchmarks" / "bare_predict.py"), str(MODEL), str(folder),
                                          "--threads", str(args.threads)],
                "onnxvis predict": [args.python, "-m", "onnxvis", "predict", str(MODEL), str(folder), "--format", "jsonl"],
            }
            results: dict[str, list] = {k: [] for k in sides}
            measure(sides["onnxvis predict"], env, Path(tmp) / "warm.log")  # page cache, bytecode
            for r in range(args.runs):
                order = list(sides) if r % 2 == 0 else list(sides)[::-1]
                for label in order:
                    results[label].append(measure(sides[label], env, Path(tmp) / "run.log"))
            for label, runs in results.items():
                wall = statistics.median(x.wall for x in runs)
                rows.append((count, label, wall, statistics.median(x.cpu for x in runs), statistics.median(x.peak for x in runs)))
    print(f"machine: {machine()}")
    print("| images | command | wall | CPU | peak RSS | images/s | speed vs bare |")
    print("|---|---|---|---|---|---|---|")
    bare = {count: wall for count, label, wall, _, _ in rows if label.startswith("bare")}
    for count, label, wall, cpu, peak in rows:
        print(f"| {count} | {label} | {wall:.2f} s | {cpu:.2f} s | {_mib(peak)} | {count / wall:.1f} | {bare[count] / wall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
