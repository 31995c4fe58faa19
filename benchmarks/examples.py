"""Benchmark ``onnxvis examples``: the local engine and the Ray engine against a bare onnxruntime loop.

Whole processes, as a user runs them, on 100, 1,000 and 10,000 images:

- **loop**: a plain script that does the same work with nothing but PIL, numpy and onnxruntime:
  decode, resize and crop, normalise, run the model with the chosen layers exposed as outputs (one
  image at a time), keep the top-K per channel. It writes no pictures.
- **local**: ``onnxvis examples MODEL FOLDER --layers ... --top 9`` (pictures and page included).
- **ray 1 / ray 2**: the same with ``--engine ray --workers 1`` / ``2`` (Ray started locally).

The 100 images are ``../shared/assets/images/imagenet-sample``; the larger sets are made from them
by flipping, cropping and rotating, into ``--workdir`` (a temporary folder by default, never the
repository). Peak memory is the largest total resident size of the process and all its descendants
(Ray's raylet, GCS and actors included), sampled every 0.2 s from /proc.

    python benchmarks/examples.py                       # 100 and 1,000 images
    python benchmarks/examples.py --sizes 100,1000,10000 --workdir /tmp/onnxvis-bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"

LOOP = r"""
import sys, os, numpy as np, onnx, onnxruntime as ort
from PIL import Image
model, folder, layers, k = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
proto = onnx.load(model)
for name in layers:
    proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT16, None))
session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
inp = session.get_inputs()[0].name
mean = np.array([104, 117, 123], np.float32).reshape(3, 1, 1)
paths = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if f.lower().endswith((".jpeg", ".jpg", ".png")))
best = {}  # layer -> (scores (C, k), ids (C, k))
for i, path in enumerate(paths):
    img = Image.open(path).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR).crop((16, 16, 240, 240))
    x = np.asarray(img, np.float32).transpose(2, 0, 1)[::-1] - mean   # caffe: BGR, 0..255, minus the mean
    values = session.run(layers, {inp: x[None].astype(np.float16)})
    for name, v in zip(layers, values, strict=True):
        peak = v[0].reshape(v.shape[1], -1).max(axis=1).astype(np.float32)[:, None]
        s, ids = best.get(name, (np.zeros((v.shape[1], 0), np.float32), np.zeros((v.shape[1], 0), np.int64)))
        s, ids = np.concatenate([s, peak], 1), np.concatenate([ids, np.full_like(peak, i, np.int64)], 1)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best[name] = (np.take_along_axis(s, order, 1), np.take_along_axis(ids, order, 1))
print(len(paths), "images")
"""


def make_images(count: int, folder: Path) -> Path:
    """``count`` images: the shared photos, then flipped, cropped and rotated variants of them."""
    from PIL import Image, ImageOps

    photos = sorted((ASSETS / "images" / "imagenet-sample").glob("*.JPEG"))
    if count <= len(photos):
        return ASSETS / "images" / "imagenet-sample"
    target = folder / f"images_{count}"
    if target.is_dir() and len(list(target.iterdir())) == count:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    import random

    rng = random.Random(0)
    for i in range(count):
        with Image.open(photos[i % len(photos)]) as src:
            img = src.convert("RGB")
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        img = img.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR, expand=False)
        w, h = img.size
        f = rng.uniform(0.6, 1.0)
        cw, ch = int(w * f), int(h * f)
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img.crop((left, top, left + cw, top + ch)).save(target / f"{i:05d}.jpg", quality=90)
    return target


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * page
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def measure(command: list[str], env: dict) -> tuple[float, int, str]:
    """(wall seconds, peak resident bytes of the process tree, output tail)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{output[-3000:]}")
    return wall, peak, output.strip().splitlines()[-1] if output.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="a Python with onnxvis's deps and ray")
    parser.add_argument("--model", default=str(ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"))
    parser.add_argument("--layers", default="3,12,25", help="conv layer indexes (default 3,12,25)")
    parser.add_argument("--sizes", default="100,1000", help="numbers of images (default 100,1000; add 10000 for the long run)")
    parser.add_argument("--tasks", default="loop,local,ray1,ray2")
    parser.add_argument("--workdir", help="where the generated images and outputs go (default: a temporary folder)")
    parser.add_argument("--json", help="append each result as a JSON line to this file")
    args = parser.parse_args()

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="onnxvis-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    sys.path.insert(0, str(ROOT))
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    layers = find_conv_layers(Model.open(args.model))
    names = [layers[int(i)].output_name for i in args.layers.split(",")]
    print(f"model {Path(args.model).name}, layers {args.layers}, top 9; {os.cpu_count()} CPUs; workdir {work}")
    print("| images | task | seconds | images/s | peak MiB | load before |\n|---:|---|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        folder = make_images(size, work)
        for task in args.tasks.split(","):
            out = work / f"out_{task}_{size}"
            shutil.rmtree(out, ignore_errors=True)
            if task == "loop":
                command = [args.python, "-c", LOOP, args.model, str(folder), ",".join(names), "9"]
            else:
                command = [args.python, "-m", "onnxvis", "examples", args.model, str(folder), "--layers", args.layers,
                           "--top", "9", "--fresh", "-o", str(out)]
                if task.startswith("ray"):
                    command += ["--engine", "ray", "--workers", task[3:]]
            load = os.getloadavg()[0]  # a shared machine: how busy it was when the task started
            wall, peak, _ = measure(command, env)
            print(f"| {size} | {task} | {wall:.1f} | {size / wall:.1f} | {peak / 2**20:.0f} | {load:.1f} |", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"images": size, "task": task, "seconds": wall, "peak_bytes": peak, "load": load}) + "\n")
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
