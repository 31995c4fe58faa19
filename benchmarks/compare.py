"""`onnxvis compare` against the bare floor, whole process against whole process.

    python benchmarks/compare.py                 # 3 alternated rounds on the 100 ImageNet photos
    python benchmarks/compare.py --runs 5

Model A is the shared float16 SqueezeNet, model B its float32 conversion (initializers and input
cast, made here once). The bare floor (benchmarks/bare_compare.py) decodes and preprocesses each
photo once and runs both models on it with onnxruntime; onnxvis runs ``onnxvis compare A B FOLDER
--format html,jsonl``: every conv output of both models (26 each), their SQNR, cosine and error
sums, the class scores, then the page with its pictures. Medians of wall time, CPU time and peak RSS
(``wait4``), rounds alternating the order of the two sides. Not a test: nothing fails on a slow
machine; the target is at most 2.5x the floor's wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from run import ROOT, _default_python, _mib, machine, measure

ASSETS = ROOT.parent / "shared" / "assets"
MODEL = ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"
PHOTOS = ASSETS / "images" / "imagenet-sample"
TARGET = 2.5

_CONVERT = """
import sys
import numpy as np, onnx
from onnx import TensorProto, numpy_helper
model = onnx.load(sys.argv[1])
for i, t in enumerate(model.graph.initializer):
    if t.data_type == TensorProto.FLOAT16:
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
    if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
        v.type.tensor_type.elem_type = TensorProto.FLOAT
onnx.save(model, sys.argv[2])
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=_default_python(str(ROOT / ".venv-core"), sys.executable))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        model_b = Path(tmp) / "squeezenet_fp32.onnx"
        subprocess.run([args.python, "-c", _CONVERT, str(MODEL), str(model_b)], check=True)
        out = Path(tmp) / "out"
        sides = {
            "bare onnxruntime loop, both models": [args.python, str(ROOT / "benchmarks" / "bare_compare.py"), str(MODEL), str(model_b),
                                                   str(PHOTOS), "--threads", str(args.threads)],
            "onnxvis compare": [args.python, "-m", "onnxvis", "compare", str(MODEL), str(model_b), str(PHOTOS),
                                "--format", "html,jsonl", "-o", str(out)],
        }
        results: dict[str, list] = {k: [] for k in sides}
        measure(sides["onnxvis compare"], env, Path(tmp) / "warm.log")  # page cache, bytecode
        for r in range(args.runs):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for label in order:
                shutil.rmtree(out, ignore_errors=True)
                results[label].append(measure(sides[label], env, Path(tmp) / f"run_{r}_{label[:4]}.log"))
        count = len(list(PHOTOS.glob("*.JPEG")))
    print(f"machine: {machine()}")
    print(f"{count} photos, {args.runs} rounds, medians")
    print("| command | wall | CPU | peak RSS | vs bare (wall) |")
    print("|---|---|---|---|---|")
    bare = statistics.median(x.wall for x in results["bare onnxruntime loop, both models"])
    for label, runs in results.items():
        wall = statistics.median(x.wall for x in runs)
        ratio = wall / bare
        print(f"| {label} | {wall:.2f} s | {statistics.median(x.cpu for x in runs):.2f} s | "
              f"{_mib(statistics.median(x.peak for x in runs))} | {ratio:.2f}x |")
    ratio = statistics.median(x.wall for x in results["onnxvis compare"]) / bare
    print(f"target: at most {TARGET}x the bare loop: {'met' if ratio <= TARGET else 'NOT met'} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
