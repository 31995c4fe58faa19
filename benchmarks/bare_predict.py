"""The floor for `onnxvis predict`: a plain loop that decodes, resizes and normalises with Pillow and
numpy, then runs one onnxruntime session, in one process. The same Caffe preprocessing as onnxvis
chooses for SqueezeNet (resize 256x256, centre crop 224, BGR, 0..255 minus the mean), the same
threads, and the same output: the top-5 of each image as JSON lines.

    python benchmarks/bare_predict.py MODEL FOLDER [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

MEAN = np.array([104.0, 117.0, 123.0], np.float32).reshape(3, 1, 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = np.float16 if "float16" in session.get_inputs()[0].type else np.float32
    for file in sorted(os.listdir(args.folder)):
        if not file.lower().endswith((".jpeg", ".jpg", ".png")):
            continue
        path = os.path.join(args.folder, file)
        img = Image.open(path).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR)
        img = img.crop((16, 16, 240, 240))
        x = np.asarray(img, np.float32).transpose(2, 0, 1)[::-1] - MEAN
        probs = session.run(None, {name: x[None].astype(dtype)})[0].reshape(-1).astype(np.float64)
        top = np.argsort(-probs)[:5]
        print(json.dumps({"image": path, "top": [{"class": int(i), "label": None, "score": float(probs[i])} for i in top]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
