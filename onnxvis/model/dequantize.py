"""Dequantize stored integer (or float8 / float4) weights as ONNX's DequantizeLinear defines it.

``(q - zero_point) * scale`` is computed in float32 and rounded to the scale's type (or the node's
``output_dtype``), as the ONNX spec and onnxruntime define it: per tensor, per channel on any axis,
or blocked.
"""

from __future__ import annotations

import math

import numpy as np

from onnxvis.errors import OnnxvisError

__all__ = ["dequantize", "scale_layout"]


def dequantize(
    q: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None = None,
    axis: int = 1,
    block_size: int = 0,
    out_dtype: np.dtype | None = None,
) -> np.ndarray:
    """``(q - zero_point) * scale`` as ONNX's DequantizeLinear defines it, returned as float32.

    Args:
        q: quantized values of any type numpy and ml_dtypes can convert to float32 (int8, uint8,
            int16, int32, int4, uint4, float8 variants, float4).
        scale: a scalar (per tensor), a 1-D array along ``axis`` (per channel), or, with
            ``block_size``, an array shaped like ``q`` except ``ceil(q.shape[axis] / block_size)``
            along ``axis`` (blocked).
        zero_point: same shape as ``scale``, or None for 0.
        axis: the channel axis for per-channel and blocked scales (negative counts from the end).
        block_size: > 0 for blocked quantization.
        out_dtype: the output type of the node (the scale's type by default); the result is rounded
            to it, as the runtime does, before it is returned as float32.
    """
    q = np.asarray(q)
    scale = np.asarray(scale)
    values = q.astype(np.float32)
    zp = np.zeros((), np.float32) if zero_point is None else np.asarray(zero_point).astype(np.float32)
    s = scale.astype(np.float32)
    axis = axis + q.ndim if axis < 0 else axis
    if block_size and block_size > 0:
        if s.ndim != q.ndim:
            raise OnnxvisError(f"blocked dequantization needs a scale of rank {q.ndim}, got shape {s.shape}")
        s = np.repeat(s, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
        if zp.ndim:
            zp = np.repeat(zp, block_size, axis=axis).take(range(q.shape[axis]), axis=axis)
    elif s.size > 1 or s.ndim == 1:
        if s.ndim != 1 or s.size != q.shape[axis]:
            raise OnnxvisError(
                f"a per-channel scale of shape {s.shape} does not fit axis {axis} of a weight of shape {q.shape}"
            )
        shape = [1] * q.ndim
        shape[axis] = s.size
        s = s.reshape(shape)
        if zp.ndim:
            zp = zp.reshape(shape)
    try:
        result = (values - zp) * s
    except ValueError:  # a zero point whose shape fits neither the scale nor the weight
        raise OnnxvisError(
            f"the zero point of shape {np.asarray(zero_point).shape} does not fit the weight {q.shape} and its scale "
            f"{scale.shape}; the file is damaged, export it again"
        ) from None
    target = np.dtype(out_dtype) if out_dtype is not None else scale.dtype
    if target != np.float32:
        result = result.astype(target).astype(np.float32)
    return result


def scale_layout(scale_shape: tuple[int, ...] | None, axis: int, block_size: int = 0) -> str:
    """How a weight is quantized, for listings: "per-tensor", "per-channel (axis 0, 8 scales)", "blocked (...)"."""
    if block_size:
        return f"blocked (axis {axis}, block {block_size})"
    if scale_shape is None:
        return "scale computed"
    count = math.prod(scale_shape) if scale_shape else 1
    return "per-tensor" if count == 1 else f"per-channel (axis {axis}, {count} scales)"

