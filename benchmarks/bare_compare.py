"""The floor for `onnxvis compare`: a plain loop that decodes, resizes and normalises each photo once with
Pillow and numpy, and runs two onnxruntime sessions on it, one per model, in one process. The same
Caffe preprocessing as onnxvis chooses for SqueezeNet (resize 256x256, centre crop 224, BGR, 0..255
minus the mean), the same threads; each model gets the input type it declares. It prints the share
of photos where the two top-1 classes agree.

    python benchmarks/bare_compare.py MODEL_A MODEL_B FOLDER [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

MEAN = np.array([104.0, 117.0, 123.0], np.float32).reshape(3, 1, 1)


def _session(path: str, threads: int) -> tuple[ort.InferenceSession, str, type]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    return session, first.name, np.float16 if "float16" in first.type else np.float32


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_a")
    parser.add_argument("model_b")
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    sessions = [_session(args.model_a, args.threads), _session(args.model_b, args.threads)]
    agree = count = 0
    for file in sorted(os.listdir(args.folder)):
        if not file.lower().endswith((".jpeg", ".jpg", ".png")):
            continue
        img = Image.open(os.path.join(args.folder, file)).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR)
        x = np.asarray(img.crop((16, 16, 240, 240)), np.float32).transpose(2, 0, 1)[::-1] - MEAN
        tops = [int(np.argmax(session.run(None, {name: x[None].astype(dtype)})[0])) for session, name, dtype in sessions]
        agree += tops[0] == tops[1]
        count += 1
    print(f"top-1 agreement {agree / max(count, 1):.2%} over {count} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
