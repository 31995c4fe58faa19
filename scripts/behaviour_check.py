"""Run every command on the shared models with one source tree, and compare two such runs file by file.

Used to prove that a refactoring changed no behaviour: run it on the commit before and the commit
after, then compare the two records.

    python scripts/behaviour_check.py run SRC_TREE RECORD_DIR    # SRC_TREE: a checkout (PYTHONPATH)
    python scripts/behaviour_check.py compare RECORD_A RECORD_B

``run`` executes each case in a fresh process from RECORD_DIR (so printed paths are relative and
equal between runs) and writes RECORD_DIR/record.json: per case the exit code, stdout, stderr and
the sha256 of every file written. TensorBoard event files hold wall times, so they are recorded by
their images (tag, step, sha256 of the encoded picture), read back with TensorBoard's own reader.
``compare`` prints every difference and exits 1 if there is any.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
MODELS = SHARED / "models"
IMAGES = SHARED / "images"
SQUEEZE = MODELS / "squeezenet1.0_caffe2_fp16.onnx"
CHELSEA = IMAGES / "skimage_chelsea.png"
COFFEE = IMAGES / "skimage_coffee.png"
SAMPLE = IMAGES / "imagenet-sample"


def cases() -> dict[str, list[str]]:
    models = sorted(MODELS.glob("*.onnx"))
    out: dict[str, list[str]] = {}
    for m in models:
        out[f"layers-{m.stem}"] = ["layers", str(m)]
        out[f"info-{m.stem}"] = ["info", str(m)]
        out[f"kernels-{m.stem}"] = ["kernels", str(m), "-o", f"out/kernels-{m.stem}"]
        out[f"fmaps-{m.stem}"] = ["fmaps", str(m), "--layers", "all", "-o", f"out/fmaps-{m.stem}"]
    few = sorted(SAMPLE.glob("*.JPEG"))[:6]
    out.update({
        "kernels-split-diverging": ["kernels", str(MODELS / "cifar10_tutorial_pytorch.onnx"), "--split", "--colormap", "diverging",
                                    "--format", "png,tensorboard", "-o", "out/kernels-split"],
        "kernels-options": ["kernels", str(SQUEEZE), "--layers", "0,1", "--nrow", "4", "--padding", "1", "--pad-value", "1",
                            "--no-scale-each", "-o", "out/kernels-options"],
        "fmaps-images": ["fmaps", str(SQUEEZE), str(CHELSEA), str(COFFEE), "--layers", "0,5", "--format", "png,tensorboard",
                         "-o", "out/fmaps-images"],
        "fmaps-preset": ["fmaps", str(MODELS / "mnist_cntk.onnx"), str(IMAGES / "skimage_camera.png"), "--preset", "raw",
                         "-o", "out/fmaps-preset"],
        "predict-text": ["predict", str(SQUEEZE), *map(str, few)],
        "predict-csv": ["predict", str(SQUEEZE), str(SAMPLE), "--top", "3", "--format", "csv"],
        "predict-jsonl": ["predict", str(SQUEEZE), str(CHELSEA), "--format", "jsonl"],
        "report": ["report", str(SQUEEZE), str(CHELSEA), "-o", "out/report"],
        "report-nocam": ["report", str(MODELS / "mnist_cntk.onnx"), "--cam", "none", "-o", "out/report-mnist"],
        "tutorial": ["tutorial", str(SQUEEZE), "-o", "out/tutorial"],
        "examples": ["examples", str(SQUEEZE), *map(str, few), "--layers", "3,12", "--top", "3", "-o", "out/examples"],
        "error-missing": ["kernels", "no-such.onnx"],
        "error-layers": ["kernels", str(SQUEEZE), "--layers", "conv99"],
    })
    for method in ("ablation", "eigen", "fem", "kpca"):
        out[f"cam-{method}"] = ["cam", str(SQUEEZE), str(CHELSEA), "--method", method, "--format", "png,npy", "-o", f"out/cam-{method}"]
    out["cam-score"] = ["cam", str(MODELS / "cifar10_tutorial_pytorch.onnx"), str(CHELSEA), "--method", "score", "--format", "png,npy",
                        "-o", "out/cam-score"]
    out["cam-metrics"] = ["cam", str(SQUEEZE), str(COFFEE), "--method", "ablation", "--metrics", "-o", "out/cam-metrics"]
    return out


def _events(path: Path) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"images": 0})
    acc.Reload()
    return sorted(
        [tag, e.step, hashlib.sha256(e.encoded_image_string).hexdigest()]
        for tag in acc.Tags()["images"] for e in acc.Images(tag)
    )


def _files(folder: Path) -> dict:
    found = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(folder))
        if path.name == ".onnxvis-manifest.jsonl":
            continue  # sizes and mtimes of the files, which differ by run
        if "tfevents" in path.name:
            found[rel.split("events.out")[0] + "<events>"] = _events(path)
        else:
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run(tree: Path, record: Path) -> None:
    record.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), COLUMNS="120")
    results = {}
    for name, argv in cases().items():
        done = subprocess.run([sys.executable, "-m", "onnxvis", *argv], cwd=record, env=env, capture_output=True, text=True)
        out_dir = next((argv[i + 1] for i, a in enumerate(argv) if a == "-o"), None)
        results[name] = {
            "rc": done.returncode,
            "stdout": done.stdout,
            "stderr": done.stderr,
            "files": _files(record / out_dir) if out_dir and (record / out_dir).is_dir() else {},
        }
        print(f"{name}: exit {done.returncode}, {len(results[name]['files'])} files", file=sys.stderr)
    (record / "record.json").write_text(json.dumps(results, indent=1, sort_keys=True))


def compare(a: Path, b: Path) -> int:
    ra = json.loads((a / "record.json").read_text())
    rb = json.loads((b / "record.json").read_text())
    differences = 0
    for name in sorted(set(ra) | set(rb)):
        if name not in ra or name not in rb:
            print(f"{name}: only in {'B' if name not in ra else 'A'}")
            differences += 1
            continue
        for key in ("rc", "stdout", "stderr"):
            if ra[name][key] != rb[name][key]:
                differences += 1
                print(f"{name}: {key} differs\n  A: {ra[name][key]!r}\n  B: {rb[name][key]!r}")
        fa, fb = ra[name]["files"], rb[name]["files"]
        for rel in sorted(set(fa) | set(fb)):
            if fa.get(rel) != fb.get(rel):
                differences += 1
                print(f"{name}: {rel} differs" if rel in fa and rel in fb else f"{name}: {rel} only in {'A' if rel in fa else 'B'}")
    total = sum(len(r["files"]) for r in ra.values())
    print(f"{len(ra)} cases, {total} files in A: {differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "run":
        run(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
