"""Running the model: the minimal-graph runner (the only onnxruntime user), the Inspector that keeps
sessions and batches images, class scores.
"""
