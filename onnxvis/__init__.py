"""onnxvis: see what a CNN learned, its kernels and feature maps, from the ONNX file alone."""
