"""Benchmark ``onnxvis serve`` under 16 concurrent clients: the page's and the feature maps' latency.

    python benchmarks/serve.py                          # SqueezeNet, 16 clients, 3 rounds
    python benchmarks/serve.py --clients 16 --rounds 5 --model M.onnx --photos DIR

The server is a whole process, ``python -m onnxvis serve MODEL --port 0`` (``--python``, default the
repo's ``.venv``, the env with the serve extra), started once. Each client is a thread of this
driver with its own keep-alive HTTP connection (standard library only). All clients start together
and, in each round:

1. load the page as a browser does: ``/``, ``/static/app.js``, ``/static/style.css``,
   ``/api/summary``, ``/api/layers``, the first layer's kernels (timed as one "page load");
2. upload their own photo (16 different ImageNet photos: no client shares another's cache entry);
3. ask the feature maps of ``--layers`` layers of that photo, once "cold" (computed: decode,
   preprocess, onnxruntime, grid, PNG) and once "warm" (the same request again: the cache).

Round 1 also counts as cold for the page's JSON (it computes the weight statistics); later rounds
upload the photo again (same bytes, same id), so their feature maps are warm, and new layers are
asked each round so that "cold" stays cold. Side by side: a bare onnxruntime loop in the same
environment, one run of the same model up to the same layers, sequential, no HTTP: the floor a
server's cold request cannot go below on this machine.

This is not a test: nothing fails on a slow machine. It prints a Markdown table of medians and 95th
percentiles (milliseconds) and the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"

BARE = r"""
import sys, time, json
import numpy as np
from onnxvis.engine.inspector import Inspector
model, layers, photos = sys.argv[1], [int(i) for i in sys.argv[2].split(",")], sys.argv[3:]
insp = Inspector(model)
spec = insp.image_input
times = []
for path in photos:
    prepared = insp.prepare(path)
    for index in layers:
        start = time.perf_counter()
        insp.run_arrays({spec.name: prepared.array}, [insp.layers[index].output_name])
        times.append(1000 * (time.perf_counter() - start))
print(json.dumps(times))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


class Client:
    def __init__(self, address: tuple[str, int]):
        self.conn = http.client.HTTPConnection(*address, timeout=600)

    def request(self, method: str, path: str, body: bytes | None = None, kind: str | None = None) -> bytes:
        headers = {"Content-Type": kind} if kind else {}
        self.conn.request(method, path, body=body, headers=headers)
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{method} {path}: {answer.status} {data[:200]!r}")
        return data


def session(address, photo: Path, layers_per_round: list[list[int]], results: dict, start: threading.Barrier, errors: list):
    client = Client(address)
    data = photo.read_bytes()
    try:
        start.wait()
        for round_layers in layers_per_round:
            t = time.perf_counter()
            for path in ("/", "/static/app.js", "/static/style.css", "/api/summary", "/api/layers", "/api/kernels/0.png"):
                client.request("GET", path)
            results["page"].append(1000 * (time.perf_counter() - t))
            t = time.perf_counter()
            ident = json.loads(client.request("POST", "/api/photos", data, "application/octet-stream"))["id"]
            results["upload"].append(1000 * (time.perf_counter() - t))
            for layer in round_layers:
                t = time.perf_counter()
                client.request("GET", f"/api/fmaps/{ident}/{layer}.png")
                results["fmaps cold"].append(1000 * (time.perf_counter() - t))
                t = time.perf_counter()
                client.request("GET", f"/api/fmaps/{ident}/{layer}.png")
                results["fmaps warm"].append(1000 * (time.perf_counter() - t))
    except Exception as exc:  # reported, and the run fails
        errors.append(repr(exc))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"))
    parser.add_argument("--photos", default=str(ASSETS / "images" / "imagenet-sample"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2, help="feature-map layers per client and round")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = parser.parse_args()

    photos = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))[: args.clients]
    if len(photos) < args.clients:
        raise SystemExit(f"need {args.clients} photos in {args.photos}, found {len(photos)}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [args.python, "-m", "onnxvis", "serve", args.model, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = server.stdout.readline().strip()
        parts = urlsplit(url)
        address = (parts.hostname, parts.port)
        layer_count = len(json.loads(Client(address).request("GET", "/api/layers")))
        # each client and round asks new layers, so that "cold" requests are computed, not cached
        plans = [
            [[(c + r * args.layers + i) % layer_count for i in range(args.layers)] for r in range(args.rounds)]
            for c in range(args.clients)
        ]
        results: dict[str, list[float]] = {"page": [], "upload": [], "fmaps cold": [], "fmaps warm": []}
        errors: list[str] = []
        barrier = threading.Barrier(args.clients)
        threads = [
            threading.Thread(target=session, args=(address, photos[c], plans[c], results, barrier, errors)) for c in range(args.clients)
        ]
        wall = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - wall
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate()
    if server.returncode not in (0, 130):
        print(f"the server failed ({server.returncode}):\n{stderr}", file=sys.stderr)
        return 1
    if errors:
        print("errors:", *errors[:5], sep="\n  ", file=sys.stderr)
        return 1
    layers = sorted({layer for plan in plans for round_layers in plan for layer in round_layers})
    bare = subprocess.run(
        [args.python, "-c", BARE, args.model, ",".join(map(str, layers[:4])), *map(str, photos[:4])],
        capture_output=True, text=True, env=env, check=True,
    )
    results["bare onnxruntime run (sequential, no HTTP)"] = json.loads(bare.stdout)

    requests = sum(len(v) for k, v in results.items() if not k.startswith("bare")) + args.clients * args.rounds * 5
    print(f"onnxvis serve {Path(args.model).name}: {args.clients} concurrent clients x {args.rounds} rounds, "
          f"{args.layers} feature-map layers each per round; {requests} requests in {wall:.1f} s, 0 errors\n")
    print("| what | n | median ms | p95 ms |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        print(f"| {name} | {len(values)} | {statistics.median(values):.0f} | {percentile(values, 0.95):.0f} |")
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
