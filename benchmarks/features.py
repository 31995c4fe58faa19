"""Benchmark ``onnxvis features`` against torch-lucent 0.1.8: whole processes, side by side.

The task: 64 steps at 128 px on GoogLeNet's ``inception4a`` channel 0 (Lucent's ``"inception4a:0"``),
Lucent's default recipe on both sides (Fourier image, decorrelated colour, standard transforms,
ImageNet normalisation, upsampled to 224, Adam 0.05). The weights are torchvision's GoogLeNet with
random seeded weights, exported by ``onnxvis export googlenet --weights random`` (``torch.manual_seed(0)``
then ``googlenet(weights=None)``); the Lucent side builds the same model the same way and checks
that its logits match the ONNX file's under onnxruntime.

- **onnxvis**: ``onnxvis features googlenet.onnx --tensor cat_2 --channels 0 --steps 64`` (core venv; ``cat_2``
  is inception4a's Concat in the exported graph), PNG written;
- **lucent**: ``render.render_vis(model, "inception4a:0", thresholds=(64,))`` (torch venv), PNG written.

Seconds and peak memory (``/usr/bin/time``'s maximum resident set size) of each whole process, best of
``--runs``. Then, in one onnxvis process, the time of one step for 1 channel and for 16 channels in
a batch (median over the steps after the first few).

    python benchmarks/features.py                      # 3 runs each
    python benchmarks/features.py --runs 1 --workdir /tmp/onnxvis-features
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_PY = Path(os.environ.get("TORCH_PYTHON", ROOT / ".venv" / "bin" / "python"))
CORE_PY = Path(os.environ.get("ONNXVIS_PYTHON", ROOT / ".venv-core" / "bin" / "python"))

LUCENT = r"""
import sys, numpy as np, torch, torchvision, warnings
from lucent.optvis import render
onnx_path, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)  # as onnxvis export googlenet --weights random
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = torchvision.models.googlenet(weights=None).eval()
if len(sys.argv) > 3:  # check the weights against the ONNX file once
    import onnxruntime as ort
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    print("max |torch - onnxruntime| logits:", float(np.abs(ref - got).max()), flush=True)
images = render.render_vis(model, "inception4a:0", thresholds=(64,), show_image=False, progress=False)
from PIL import Image
Image.fromarray((images[-1][0] * 255).astype(np.uint8)).save(out)
"""

BATCH = r"""
import sys, time, json, numpy as np
from onnxvis.engine.inspector import Inspector
from onnxvis.analysis.cam.runs import Place
from onnxvis.analysis.features.run import Recipe, optimise
insp = Inspector(sys.argv[1])
place = Place("cat_2", "inception4a")
steps = int(sys.argv[2])
result = {}
for n in (1, 16):
    stamps = []
    optimise(insp, place, list(range(n)), recipe=Recipe(steps=steps), on_step=lambda s, v: stamps.append(time.perf_counter()))
    per_step = np.diff(stamps)[2:]  # after the first steps (session warm-up)
    result[n] = float(np.median(per_step))
print(json.dumps(result))
"""


def timed(command: list[str], env: dict) -> tuple[float, float, float, str]:
    """(wall seconds, peak RSS MiB, CPU seconds (user + system), output) of one whole process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stamp:
        proc = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "-o", stamp.name, *command], env=env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(command)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        wall, rss_kb, user, system = stamp.read().split()[-4:]
    return float(wall), int(rss_kb) / 1024, float(user) + float(system), proc.stdout + proc.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--torch-python", type=Path, default=TORCH_PY)
    p.add_argument("--onnxvis-python", type=Path, default=CORE_PY)
    p.add_argument("--batch-steps", type=int, default=12, help="steps per batch size for the 1 vs 16 channels timing")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="onnxvis-features-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    model = work / "googlenet.onnx"
    if not model.is_file():
        subprocess.run([str(args.torch_python), "-m", "onnxvis", "export", "googlenet", "--weights", "random", "-o", str(work)],
                       env=env, check=True, capture_output=True)
    lucent_script = work / "lucent_render.py"
    lucent_script.write_text(LUCENT)
    text = timed([str(args.torch_python), str(lucent_script), str(model), str(work / "lucent.png"), "check"], env)[-1]
    print(next((line for line in text.splitlines() if line.startswith("max |")), "no weight check printed"))
    rows: dict[str, list[tuple[float, float, float]]] = {"onnxvis": [], "lucent": []}
    for run in range(args.runs):
        out = work / f"onnxvis_r{run}"
        rows["onnxvis"].append(timed([str(args.onnxvis_python), "-m", "onnxvis", "features", str(model), "--tensor", "cat_2",
                                      "--channels", "0", "--steps", "64", "--size", "128", "-o", str(out)], env)[:3])
        rows["lucent"].append(timed([str(args.torch_python), str(lucent_script), str(model), str(work / f"lucent_r{run}.png")], env)[:3])
    print(f"| tool | wall seconds (best of {args.runs}) | CPU seconds | peak memory MiB |\n|---|---|---|---|")
    best = {}
    for tool, values in rows.items():
        seconds = min(v[0] for v in values)
        cpu = min(v[2] for v in values)
        memory = max(v[1] for v in values)
        best[tool] = {"seconds": seconds, "cpu_seconds": cpu, "peak_mib": memory, "all": values}
        print(f"| {tool} | {seconds:.1f} | {cpu:.1f} | {memory:.0f} |")
    batch_script = work / "batch.py"
    batch_script.write_text(BATCH)
    text = timed([str(args.onnxvis_python), str(batch_script), str(model), str(args.batch_steps)], env)[-1]
    per_step = json.loads(text.strip().splitlines()[-1])
    ratio = per_step["16"] / per_step["1"]
    print(f"\none step, 1 channel: {per_step['1']:.3f} s; 16 channels in a batch: {per_step['16']:.3f} s ({ratio:.1f}x)")
    if args.json:
        args.json.write_text(json.dumps({"runs": best, "per_step": per_step, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
