"""Benchmark `onnxvis cam` against pytorch-grad-cam, each as a whole process.

    python benchmarks/cam.py                 # 3 rounds
    python benchmarks/cam.py --runs 1 --methods ablation

ResNet-18 (torchvision, seeded random weights, exported with ``onnxvis export resnet18 --weights``;
made once in ``--workdir`` by benchmarks/run.py's set-up), the map of the predicted class at
``layer4[-1]`` (the block's output: ``--tensor`` of its last Relu for onnxvis), written over the photo:

- reference: ``gradcam_ref.py`` in the torch venv (ScoreCAM / AblationCAM of grad-cam);
- onnxvis: ``onnxvis cam MODEL IMAGE --method M --tensor T`` in the core venv (no torch);
- floor: ``ort_floor.py``, a bare onnxruntime loop running the whole model 512 times, 16 images a run
  (``--floor-batch``; onnxvis feeds ScoreCAM's masked images 16 at a time to an export's free batch),
  which is what ScoreCAM's 512 masked images cost at the least.

Rounds alternate the order of the commands; the table gives medians of wall and CPU time and peak
memory (see benchmarks/run.py's ``measure``). Not a test: nothing fails on a slow machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from run import DEFAULT_IMAGE, ROOT, Run, _default_python, measure, prepare_models

HERE = Path(__file__).resolve().parent


def block_output(model: Path, python: str, env: dict[str, str], log: Path) -> str:
    """The ONNX name of layer4[-1]'s output: the last Relu of the graph."""
    code = (
        "import onnx,sys; g=onnx.load(sys.argv[1], load_external_data=False).graph; "
        "print([n.output[0] for n in g.node if n.op_type=='Relu'][-1])"
    )
    measure([python, "-c", code, str(model)], env, log)
    return log.read_text().split()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default="ablation,score")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--workdir", default=str(HERE / "results"))
    parser.add_argument("--torch-python", default=_default_python(str(ROOT / ".venv"), sys.executable))
    parser.add_argument("--onnxvis-python", default=_default_python(str(ROOT / ".venv-core"), sys.executable))
    parser.add_argument("--floor-batch", type=int, default=16, help="images per run of the bare loop (default 16)")
    parser.add_argument("--no-reference", action="store_true", help="leave grad-cam out (onnxvis and the floor only)")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    weights, model = prepare_models(["resnet18"], workdir, args.torch_python, env)["resnet18"]
    logs = workdir / "runs" / "cam"
    logs.mkdir(parents=True, exist_ok=True)
    tensor = block_output(model, args.onnxvis_python, env, logs / "names.log")
    commands: dict[str, list[str]] = {}
    for method in args.methods.split(","):
        if not args.no_reference:
            commands[f"grad-cam {method}"] = [
                args.torch_python, str(HERE / "gradcam_ref.py"), str(weights), args.image, method, str(logs / f"ref_{method}.png"),
            ]
        commands[f"onnxvis {method}"] = [
            args.onnxvis_python, "-m", "onnxvis", "cam", str(model), args.image,
            "--method", method, "--tensor", tensor, "-o", str(logs / f"onnxvis_{method}"),
        ]
    floor = f"floor: onnxruntime x512, batch {args.floor_batch}"
    commands[floor] = [args.onnxvis_python, str(HERE / "ort_floor.py"), str(model), "512", str(args.floor_batch)]
    runs: dict[str, list[Run]] = {label: [] for label in commands}
    for round_no in range(args.runs + 1):  # round 0 warms the page cache and is not counted
        order = list(commands) if round_no % 2 == 0 else list(reversed(commands))
        for label in order:
            run = measure(commands[label], env, logs / f"{label.replace(' ', '_').replace(':', '')}.log")
            if round_no:
                runs[label].append(run)
            print(f"round {round_no} {label}: {run.wall:.2f} s", file=sys.stderr)
    rows = ["| command | wall (median) | CPU (median) | peak memory | vs grad-cam | vs the floor (wall) |",
            "|---|---:|---:|---:|---:|---:|"]
    floor_wall = statistics.median(r.wall for r in runs[floor])
    for label, measured in runs.items():
        wall = statistics.median(r.wall for r in measured)
        cpu = statistics.median(r.cpu for r in measured)
        peak = statistics.median(r.peak for r in measured) / 2**20
        method = label.split()[-1]
        ref = runs.get(f"grad-cam {method}")
        ratio = f"{statistics.median(r.wall for r in ref) / wall:.1f}x faster" if label.startswith("onnxvis") and ref else ""
        rows.append(f"| {label} | {wall:.2f} s | {cpu:.2f} s | {peak:.0f} MiB | {ratio} | {wall / floor_wall:.2f}x |")
    rows.append(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()}")
    text = "\n".join(rows)
    print(text)
    (workdir / "cam_latest.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
