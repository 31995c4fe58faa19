"""The floor for benchmarks/cam.py: a bare onnxruntime loop, the whole model run N times.

    python ort_floor.py MODEL.onnx N [BATCH]

ScoreCAM at ResNet-18's layer4 needs 512 whole-model runs; this is what they cost with nothing else:
N images through the whole model, BATCH at a time (default 1; onnxvis cam feeds ScoreCAM's masked
images 16 at a time to a model with a free batch), at onnxruntime's default (all) optimisations.
"""

import sys

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
total = int(sys.argv[2])
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
x = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
for start in range(0, total, batch):
    session.run(None, {name: x[: min(batch, total - start)]})
