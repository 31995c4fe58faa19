"""Benchmark the gradient methods against their references, each as a whole process.

    python benchmarks/gradients.py             # 3 rounds
    python benchmarks/gradients.py --runs 1

ResNet-18 (torchvision, seeded random weights, exported with ``onnxvis export resnet18 --weights``;
made once in ``--workdir`` by benchmarks/run.py's set-up), the predicted class, the same photo:

- ``cam --method grad`` (the map at ``layer4[-1]``, written over the photo) against grad-cam's GradCAM
  (``gradcam_ref.py`` in the torch venv);
- ``saliency --method integrated-gradients`` (50 steps, zero baseline, the attribution as .npy)
  against Captum's IntegratedGradients (``captum_ref.py``, its defaults: the 50 steps in one batch).
  The exported file fixes its batch to 1 (a Reshape to [1, 512]), so onnxvis runs the steps one by one.

Rounds alternate the order of the commands; the table gives medians of wall and CPU time and peak
memory (see benchmarks/run.py's ``measure``). Not a test: nothing fails on a slow machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from cam import block_output
from run import DEFAULT_IMAGE, ROOT, Run, _default_python, measure, prepare_models

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--workdir", default=str(HERE / "results"))
    parser.add_argument("--torch-python", default=_default_python(str(ROOT / ".venv"), sys.executable))
    parser.add_argument("--onnxvis-python", default=_default_python(str(ROOT / ".venv-core"), sys.executable))
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    weights, model = prepare_models(["resnet18"], workdir, args.torch_python, env)["resnet18"]
    logs = workdir / "runs" / "gradients"
    logs.mkdir(parents=True, exist_ok=True)
    tensor = block_output(model, args.onnxvis_python, env, logs / "names.log")
    commands = {
        "grad-cam GradCAM": [args.torch_python, str(HERE / "gradcam_ref.py"), str(weights), args.image, "grad", str(logs / "ref_grad.png")],
        "onnxvis cam --method grad": [
            args.onnxvis_python, "-m", "onnxvis", "cam", str(model), args.image, "--method", "grad", "--tensor", tensor,
            "-o", str(logs / "onnxvis_grad"),
        ],
        "Captum IntegratedGradients": [args.torch_python, str(HERE / "captum_ref.py"), str(weights), args.image, str(logs / "ref_ig.npy")],
        "onnxvis saliency --method integrated-gradients": [
            args.onnxvis_python, "-m", "onnxvis", "saliency", str(model), args.image, "--method", "integrated-gradients",
            "--format", "npy", "-o", str(logs / "onnxvis_ig"),
        ],
    }
    references = {
        "onnxvis cam --method grad": "grad-cam GradCAM",
        "onnxvis saliency --method integrated-gradients": "Captum IntegratedGradients",
    }
    runs: dict[str, list[Run]] = {label: [] for label in commands}
    for round_no in range(args.runs + 1):  # round 0 warms the page cache and is not counted
        order = list(commands) if round_no % 2 == 0 else list(reversed(commands))
        for label in order:
            run = measure(commands[label], env, logs / f"{label.replace(' ', '_').replace('-', '')}.log")
            if round_no:
                runs[label].append(run)
            print(f"round {round_no} {label}: {run.wall:.2f} s", file=sys.stderr)
    rows = ["| command (ResNet-18) | wall (median) | CPU (median) | peak memory | vs the reference |", "|---|---:|---:|---:|---:|"]
    for label, measured in runs.items():
        wall = statistics.median(r.wall for r in measured)
        cpu = statistics.median(r.cpu for r in measured)
        peak = statistics.median(r.peak for r in measured) / 2**20
        ref = runs.get(references.get(label, ""))
        ratio = f"{statistics.median(r.wall for r in ref) / wall:.1f}x faster" if ref else ""
        rows.append(f"| {label} | {wall:.2f} s | {cpu:.2f} s | {peak:.0f} MiB | {ratio} |")
    text = "\n".join(rows)
    print(text)
    (workdir / "gradients_latest.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
