"""The floor for benchmarks/cam.py: a bare onnxruntime loop, the whole model run N times (batch 1).

    python ort_floor.py MODEL.onnx N

ScoreCAM at ResNet-18's layer4 needs 512 whole-model runs; this is what they cost with nothing else.
"""

import sys

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
for _ in range(int(sys.argv[2])):
    session.run(None, {name: x})
