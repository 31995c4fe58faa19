"""The README's feature-visualisation figures, and the "picture, not noise" check in full.

1. **A picture, not noise**: SqueezeNet 1.0 (Caffe, fp16) layer 15 channel 0, optimised with
   Lucent's recipe (Fourier image, decorrelated colour, transforms) and without it (the pixels
   themselves, no decorrelation, no transforms; the same sigmoid, Adam and steps). Prints the share of
   spectral energy above half the Nyquist frequency of each, and writes both side by side as
   ``docs/features_fourier_vs_pixels.png``.
2. **Beside the dataset examples** (with ``--examples DIR``, the ``--workdir`` of
   ``benchmarks/features_examples.py``): each channel's optimised image beside its top photos among
   the 300, as ``docs/features_examples_squeezenet_25.png`` (conv10).

    python benchmarks/features_figures.py
    python benchmarks/features_figures.py --examples /tmp/featcheck/full --skip-spectrum
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ASSETS = ROOT.parent / "shared" / "assets"
MODEL = ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"


def spectrum(steps: int, channel: int, layer: str) -> None:
    from PIL import Image, ImageDraw

    from onnxvis.analysis.cam.runs import places_for
    from onnxvis.analysis.features.maths import high_frequency_share
    from onnxvis.analysis.features.run import Recipe, optimise
    from onnxvis.engine.inspector import Inspector

    insp = Inspector(MODEL)
    place = places_for(insp, insp.select(layer))[0]
    fourier = optimise(insp, place, [channel], recipe=Recipe(steps=steps))[0]
    pixels = optimise(insp, place, [channel], recipe=Recipe.unconstrained(steps=steps))[0]
    a, b = high_frequency_share(fourier.image), high_frequency_share(pixels.image)
    print(f"layer {layer} channel {channel}, {steps} steps: energy above half Nyquist: Lucent's recipe {a:.4f}, "
          f"pixels {b:.4f} (ratio {a / b:.3f}); objective {fourier.value:.1f} vs {pixels.value:.1f}")
    canvas = Image.new("RGB", (2 * 128 + 6, 128 + 18), "white")
    canvas.paste(Image.fromarray(fourier.pixels()), (0, 18))
    canvas.paste(Image.fromarray(pixels.pixels()), (134, 18))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 3), f"Lucent's recipe {a:.3f}", fill="black")
    draw.text((136, 3), f"pixels {b:.3f}", fill="black")
    canvas.quantize(256).save(ROOT / "docs" / "features_fourier_vs_pixels.png", optimize=True)  # small, for the README


def beside_examples(folder: Path, layer_index: int, channels: int, k: int, tile: int) -> None:
    from PIL import Image

    from onnxvis.analysis.examples.run import load_state

    state = load_state(folder / "examples")
    layer = next(info for info in state.layers if info.index == layer_index)
    scores, ids, _, _ = state.top.entries(layer.output)
    canvas = Image.new("RGB", ((k + 1) * (tile + 4) + 8, channels * (tile + 4)), "white")
    optimised = folder / "optimised"
    for row in range(channels):
        png = next(optimised.glob(f"features_{layer.index:02d}_*_c{row:03d}.png"))
        canvas.paste(Image.open(png).convert("RGB").resize((tile, tile), Image.Resampling.BILINEAR), (0, row * (tile + 4)))
        photos = [state.catalog[i] for i in ids[row] if i >= 0 and not state.catalog[i].startswith(str(optimised))][:k]
        for col, path in enumerate(photos):
            image = Image.open(path).convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            thumb = image.crop((left, top, left + side, top + side)).resize((tile, tile), Image.Resampling.BILINEAR)
            canvas.paste(thumb, (8 + (col + 1) * (tile + 4), row * (tile + 4)))
    out = ROOT / "docs" / f"features_examples_squeezenet_{layer_index}.png"
    canvas.quantize(256).save(out, optimize=True)  # small, for the README
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=512)
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--layer", default="15")
    p.add_argument("--examples", type=Path, help="the workdir of benchmarks/features_examples.py")
    p.add_argument("--skip-spectrum", action="store_true")
    args = p.parse_args()
    if not args.skip_spectrum:
        spectrum(args.steps, args.channel, args.layer)
    if args.examples:
        beside_examples(args.examples, 25, 8, 3, 64)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
