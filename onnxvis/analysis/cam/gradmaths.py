"""The gradient CAM methods' arithmetic, as pytorch-grad-cam 1.5 computes it, with no model in it.

Activations and gradients are one image's (C, h, w), channels first, the gradient being that of the
target's score with respect to the activations (what grad-cam's hook on the layer's output sees).
Each function follows the grad-cam class named in its docstring step for step, in float32 as
grad-cam's numpy code runs; :func:`onnxvis.analysis.cam.maths.finish` then turns a raw (h, w) map
into grad-cam's output (ReLU, ``scale_cam_image``, aggregate one layer). FullGrad has its own
aggregation (:func:`fullgrad_map`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxvis.analysis.cam.maths import check_size, eigen_projection, scale_cam_image
from onnxvis.errors import OnnxvisError

__all__ = [
    "GRADIENT_METHODS",
    "fullgrad_map",
    "grad_cam_weights",
    "gradient_raw_map",
    "gradpp_weights",
    "resize_channels",
    "scale_channels",
    "xgrad_weights",
]

# onnxvis's name -> grad-cam's class
GRADIENT_METHODS = {
    "grad": "GradCAM",
    "gradpp": "GradCAMPlusPlus",
    "xgrad": "XGradCAM",
    "layer": "LayerCAM",
    "hires": "HiResCAM",
    "elementwise": "GradCAMElementWise",
    "eigengrad": "EigenGradCAM",
    "fullgrad": "FullGrad",
}


def _pair(acts: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    acts = np.asarray(acts, dtype=np.float32)
    grads = np.asarray(grads, dtype=np.float32)
    if acts.ndim != 3 or 0 in acts.shape:
        raise OnnxvisError(f"gradient CAMs need activations of shape (channels, height, width), got {acts.shape}")
    if grads.shape != acts.shape:
        raise OnnxvisError(f"the gradient has shape {grads.shape}, the activations {acts.shape}; they must be the same")
    return acts, grads


def grad_cam_weights(grads: np.ndarray) -> np.ndarray:
    """GradCAM: each channel's weight is its gradient's mean over the positions, (C,)."""
    return np.mean(np.asarray(grads, dtype=np.float32), axis=(1, 2))


def gradpp_weights(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """GradCAMPlusPlus (eq. 19 of the paper): alpha = g^2 / (2 g^2 + sum(A) g^3 + 1e-6), 0 where g is 0,
    and the weight sum(relu(g) * alpha) over the positions, (C,)."""
    acts, grads = _pair(acts, grads)
    grads_power_2 = grads**2
    grads_power_3 = grads_power_2 * grads
    sum_activations = np.sum(acts, axis=(1, 2))[:, None, None]
    aij = grads_power_2 / (2 * grads_power_2 + sum_activations * grads_power_3 + 0.000001)
    aij = np.where(grads != 0, aij, 0)
    return np.sum(np.maximum(grads, 0) * aij, axis=(1, 2))


def xgrad_weights(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """XGradCAM: sum over the positions of g * A / (sum(A) + 1e-7), (C,)."""
    acts, grads = _pair(acts, grads)
    sum_activations = np.sum(acts, axis=(1, 2))[:, None, None]
    return (grads * acts / (sum_activations + 1e-7)).sum(axis=(1, 2))


def gradient_raw_map(method: str, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """A gradient method's raw (h, w) map at one place (every method but FullGrad, see :func:`fullgrad_map`).

    - grad, gradpp, xgrad: the channels weighted by :func:`grad_cam_weights`, :func:`gradpp_weights`,
      :func:`xgrad_weights` and summed (BaseCAM's ``get_cam_image``);
    - layer (LayerCAM): sum over channels of relu(g) * A;
    - hires (HiResCAM): sum over channels of g * A;
    - elementwise (GradCAMElementWise): sum over channels of relu(g * A);
    - eigengrad (EigenGradCAM): g * A projected on its first principal direction (EigenCAM's projection).
    """
    acts, grads = _pair(acts, grads)
    if method in ("grad", "gradpp", "xgrad"):
        weights = {"grad": lambda: grad_cam_weights(grads), "gradpp": lambda: gradpp_weights(acts, grads),
                   "xgrad": lambda: xgrad_weights(acts, grads)}[method]()
        return (weights[:, None, None] * acts).sum(axis=0)
    if method == "layer":
        return (np.maximum(grads, 0) * acts).sum(axis=0)
    if method == "hires":
        return (grads * acts).sum(axis=0)
    if method == "elementwise":
        return np.maximum(grads * acts, 0).sum(axis=0)
    if method == "eigengrad":
        return eigen_projection(grads * acts)
    raise OnnxvisError(f"unknown gradient CAM method {method!r}; choose from {', '.join(GRADIENT_METHODS)}")


def resize_channels(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize`` (INTER_LINEAR) of each (h, w) map of a (C, h, w) stack to ``size`` (H, W), float32:
    :func:`onnxvis.analysis.cam.maths.resize_bilinear` for many channels at once."""
    from onnxvis.analysis.cam.maths import cv2_axis

    maps = np.asarray(maps, dtype=np.float32)
    height, width = check_size(size)
    x0, x1, a0, a1 = cv2_axis(maps.shape[2], width)
    y0, y1, b0, b1 = cv2_axis(maps.shape[1], height)
    rows = maps[:, :, x0] * a0 + maps[:, :, x1] * a1  # OpenCV: horizontal pass first, then vertical
    return (rows[:, y0] * b0[:, None] + rows[:, y1] * b1[:, None]).astype(np.float32)


def scale_channels(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """grad-cam's ``scale_accross_batch_and_channels`` for one image: each channel of (C, h, w) min-max
    scaled (eps 1e-7), then resized to ``size`` (H, W): (C, H, W) float32."""
    maps = np.asarray(maps, dtype=np.float32)
    flat = maps.reshape(maps.shape[0], -1)
    shifted = maps - flat.min(axis=1)[:, None, None]
    scaled = shifted / (np.float32(1e-7) + shifted.reshape(maps.shape[0], -1).max(axis=1)[:, None, None])
    if scaled.shape[1:] == tuple(size):
        return scaled.astype(np.float32)
    return resize_channels(scaled, size)


def fullgrad_map(
    image: np.ndarray,
    input_gradient: np.ndarray,
    biases: Sequence[tuple[np.ndarray, np.ndarray]],
    size: tuple[int, int],
) -> np.ndarray:
    """FullGrad: |x * dS/dx| with each input channel scaled, plus, for every layer with a bias b (a
    Conv's, or a BatchNormalization's beta - mean * gamma / sqrt(var + eps)), |b * dS/d(its output)|
    with each channel scaled and resized, summed over the channels; all summed, then min-max scaled
    (grad-cam's FullGrad: ``compute_cam_per_layer`` and its ``aggregate_multi_layers``).

    Args:
        image: the input, (C, H, W) channels first.
        input_gradient: its gradient, (C, H, W).
        biases: (bias (C_l,), gradient at the layer's output (C_l, h_l, w_l)) per layer.
        size: the input's (H, W).

    Returns:
        (H, W) float32 in [0, 1].
    """
    size = check_size(size)
    image = np.asarray(image, dtype=np.float32)
    input_gradient = np.asarray(input_gradient, dtype=np.float32)
    if image.shape != input_gradient.shape or image.ndim != 3:
        raise OnnxvisError(f"FullGrad needs the input and its gradient as (C, H, W), got {image.shape} and {input_gradient.shape}")
    total = scale_channels(np.abs(input_gradient * image), size).sum(axis=0)
    for bias, grads in biases:
        grads = np.asarray(grads, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32).reshape(-1)
        if grads.ndim != 3 or bias.shape[0] != grads.shape[0]:
            raise OnnxvisError(f"a FullGrad layer's bias of {bias.shape[0]} channels does not fit its gradient of shape {grads.shape}")
        total = total + scale_channels(np.abs(bias[:, None, None] * grads), size).sum(axis=0)
    return scale_cam_image(total[None])[0]
