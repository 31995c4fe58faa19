"""`onnxvis stats` against `onnxvis examples --layers all`, whole process against whole process.

    python benchmarks/stats.py                   # 5 alternated rounds on the 100 ImageNet photos
    python benchmarks/stats.py --runs 3

Both run SqueezeNet (Caffe, fp16) over the 100 ImageNet photos with the Caffe preset and every conv
layer: ``examples`` keeps the top 9 images of each channel of the 26 conv layers and draws them;
``stats`` measures the 26 conv weights, then the 26 conv outputs and the 26 Relus over every photo
(running sums) and prints its table. ``stats, every format`` adds jsonl, the 11 Model Explorer files
and TensorBoard histograms (the activation histograms are the costly part). The target: ``stats``
at most 1.5 times ``examples``' time. Medians of wall time, CPU time and peak RSS (``wait4``),
rounds alternating the order of the sides. Not a test: nothing fails on a slow machine.
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
    parser.add_argument("--python", default=_default_python(str(ROOT / ".venv-core"), sys.executable))
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    onnxvis = [args.python, "-m", "onnxvis"]
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            "onnxvis examples --layers all": [*onnxvis, "examples", str(MODEL), str(PHOTOS), "--layers", "all", "--preset", "caffe",
                                              "--fresh", "-o", f"{tmp}/examples"],
            "onnxvis stats": [*onnxvis, "stats", str(MODEL), str(PHOTOS), "--preset", "caffe"],
            "onnxvis stats, every format": [*onnxvis, "stats", str(MODEL), str(PHOTOS), "--preset", "caffe",
                                            "--format", "text,jsonl,model-explorer,tensorboard", "-o", f"{tmp}/stats"],
        }
        results: dict[str, list] = {k: [] for k in sides}
        for argv in sides.values():  # warm-up: page cache, bytecode
            measure(argv, env, Path(tmp) / "warm.log")
        for r in range(args.runs):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for label in order:
                results[label].append(measure(sides[label], env, Path(tmp) / "run.log"))
    print(f"machine: {machine()}")
    photos = len(list(PHOTOS.glob("*.JPEG")))
    print(f"{args.runs} rounds, medians; SqueezeNet 1.0 (Caffe, fp16), {photos} ImageNet photos, every conv layer")
    print("| command | wall | CPU | peak RSS | wall vs examples | CPU vs examples |")
    print("|---|---:|---:|---:|---:|---:|")
    base = results["onnxvis examples --layers all"]
    base_wall, base_cpu = statistics.median(x.wall for x in base), statistics.median(x.cpu for x in base)
    for label, runs in results.items():
        wall, cpu = statistics.median(x.wall for x in runs), statistics.median(x.cpu for x in runs)
        peak = statistics.median(x.peak for x in runs)
        print(f"| `{label}` | {wall:.2f} s | {cpu:.2f} s | {_mib(peak)} | {wall / base_wall:.2f} | {cpu / base_cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
