"""Does feature visualisation find what excites the channel? (issue 21's "Done when", in full)

On the shared SqueezeNet 1.0 (Caffe, fp16): channels 0-7 of layer 15 (fire6's 3x3 expand) and 0-7
of layer 25 (conv10), optimised with onnxvis's defaults (Lucent's recipe, 512 steps, 128 px, seed 0),
written as PNG; then ``onnxvis examples``' own scoring (:func:`onnxvis.analysis.examples.find.find_examples`,
the model's preprocessing, each channel's spatial maximum) runs over the 300 photos of
``imagenet-sample-300`` and the 16 PNGs together. A channel passes when its own PNG scores above every
photo. The margin is the PNG's score over the best photo's.

It takes minutes (16 images x 512 steps of forward and backward passes), so it is a benchmark, not a
test; ``tests/test_features.py`` checks a smaller version (fewer steps, one channel, fewer photos).

    python benchmarks/features_examples.py                       # the full check
    python benchmarks/features_examples.py --steps 128 --channels 0-3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ASSETS = ROOT.parent / "shared" / "assets"


def check(model: Path, photos: Path, layers: list[int], channels: list[int], steps: int, seed: int, work: Path,
          size: int = 128) -> list[dict]:
    """Optimise, write the PNGs into ``work``, score them with the photos; one row per channel."""
    from PIL import Image

    from onnxvis.analysis.cam.runs import places_for
    from onnxvis.analysis.examples.find import find_examples
    from onnxvis.analysis.features.run import Recipe, optimise
    from onnxvis.engine.inspector import Inspector

    insp = Inspector(model)
    folder = work / "optimised"
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[tuple[int, int], tuple[str, float, float]] = {}
    for index in layers:
        place = places_for(insp, insp.select(str(index)))[0]
        start = time.perf_counter()
        images = optimise(insp, place, channels, recipe=Recipe(size=size, steps=steps), seed=seed)
        took = time.perf_counter() - start
        print(f"layer {index} ({place.tensor}): {len(images)} images, {steps} steps in {took:.1f} s", flush=True)
        for image in images:
            path = folder / f"features_{place.label}_c{image.channel:03d}.png"
            Image.fromarray(image.pixels()).save(path)
            made[(index, image.channel)] = (str(path), image.value, took)
    result = find_examples(model, [str(photos), str(folder)], layers=",".join(str(i) for i in layers),
                           keep=len(channels) * len(layers) + 1, out=work / "examples", fresh=True)
    state = result.state
    rows = []
    for layer in state.layers:
        scores, ids, _, _ = state.top.entries(layer.output)
        for channel in channels:
            png, value, took = made[(layer.index, channel)]
            mine = [s for s, i in zip(scores[channel], ids[channel], strict=True) if i >= 0 and state.catalog[i] == png]
            photo = [(s, state.catalog[i]) for s, i in zip(scores[channel], ids[channel], strict=True)
                     if i >= 0 and not state.catalog[i].startswith(str(folder))]
            best, best_name = (float(photo[0][0]), Path(photo[0][1]).name) if photo else (float("nan"), "")
            score = float(mine[0]) if mine else float("nan")
            rows.append({"layer": layer.index, "channel": channel, "png": score, "best_photo": best, "photo": best_name,
                         "margin": score / best if mine and best > 0 else float("nan"), "wins": bool(mine) and score > best,
                         "objective": value, "seconds_for_layer": took})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx")
    p.add_argument("--photos", type=Path, default=ASSETS / "images" / "imagenet-sample-300")
    p.add_argument("--layers", default="15,25")
    p.add_argument("--channels", default="0-7")
    p.add_argument("--steps", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, help="where the PNGs and the examples go (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args()
    from onnxvis.analysis.features.run import parse_channels

    channels = parse_channels(args.channels, None)
    layers = [int(v) for v in args.layers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        start = time.perf_counter()
        rows = check(args.model, args.photos, layers, channels, args.steps, args.seed, work)
        total = time.perf_counter() - start
    print("| layer | channel | optimised PNG | best photo | photo | margin |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['channel']} | {r['png']:.1f} | {r['best_photo']:.1f} | {r['photo']} | {r['margin']:.2f}x |")
    wins = sum(r["wins"] for r in rows)
    print(f"\n{wins} of {len(rows)} channels: the optimised image beats every photo ({total:.0f} s in all)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "seconds": total, "steps": args.steps}, indent=1))


if __name__ == "__main__":
    main()
