"""How far two tensors are apart: pure numpy, no model, no file.

The SQNR is onnxruntime's (``qdq_loss_debug.compute_signal_to_quantization_noice_ratio``)::

    20 * log10(max(||a||, eps) / max(||a - b||, eps))      eps = numpy.finfo(float).eps

with one difference: when ``a`` and ``b`` are exactly equal the SQNR is infinite (onnxruntime's eps
would give a large finite number, about 313 dB for a unit norm). Over several images the norms are
those of all the images' values put end to end, as ``compute_activation_error`` concatenates them,
so :class:`ActivationSums` keeps running sums of squares, never the maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EPS",
    "sqnr_db",
    "WeightErrors",
    "weight_errors",
    "ActivationSums",
    "softmax",
    "kl_divergence",
]

EPS = float(np.finfo(float).eps)


def sqnr_db(signal_sq: float, noise_sq: float) -> float:
    """SQNR in dB from the sums of squares of the signal ``a`` and the noise ``a - b``; inf when the noise is 0."""
    if noise_sq <= 0.0:
        return math.inf
    return 20.0 * math.log10(max(math.sqrt(signal_sq), EPS) / max(math.sqrt(noise_sq), EPS))


def _sqnr_vector(signal_sq: np.ndarray, noise_sq: np.ndarray) -> np.ndarray:
    signal = np.maximum(np.sqrt(signal_sq), EPS)
    noise = np.maximum(np.sqrt(noise_sq), EPS)
    with np.errstate(divide="ignore"):
        out = 20.0 * np.log10(signal / noise)
    return np.where(noise_sq > 0, out, np.inf)


def _norm_change(a_sq: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """(||b|| - ||a||) / ||a||: how much a filter grew (> 0) or shrank; 0 for two zero filters, inf from zero."""
    na, nb = np.sqrt(a_sq), np.sqrt(b_sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (nb - na) / na
    return np.where(na > 0, change, np.where(nb > 0, np.inf, 0.0))


@dataclass(frozen=True)
class WeightErrors:
    """Two weights compared, as a whole and per output channel (row 0 of the weight).

    Attributes:
        sqnr_db: the whole tensor's SQNR (onnxruntime's ``compute_weight_error``).
        max_abs_error: the largest |a - b|.
        norm_change: (||b|| - ||a||) / ||a|| of the whole tensor.
        channel_sqnr_db, channel_max_abs_error, channel_norm_change: the same, one value per output channel.
    """

    sqnr_db: float
    max_abs_error: float
    norm_change: float
    channel_sqnr_db: np.ndarray
    channel_max_abs_error: np.ndarray
    channel_norm_change: np.ndarray

    @property
    def equal(self) -> bool:
        return self.max_abs_error == 0.0

    def worst_channels(self) -> np.ndarray:
        """Output channels from the most damaged (lowest SQNR) to the least; equal SQNRs keep channel order."""
        return np.argsort(self.channel_sqnr_db, kind="stable")


def weight_errors(a: np.ndarray, b: np.ndarray) -> WeightErrors:
    """Compare weight ``b`` with the reference ``a`` (same shape, one output channel per row), in float64."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"weights of shapes {a64.shape} and {b64.shape} cannot be compared")
    rows = a64.reshape(a64.shape[0], -1) if a64.ndim else a64.reshape(1, 1)
    other = b64.reshape(rows.shape)
    diff = rows - other
    a_sq = np.einsum("ij,ij->i", rows, rows)
    b_sq = np.einsum("ij,ij->i", other, other)
    d_sq = np.einsum("ij,ij->i", diff, diff)
    d_max = np.abs(diff).max(axis=1) if diff.size else np.zeros(rows.shape[0])
    total_a, total_b, total_d = float(a_sq.sum()), float(b_sq.sum()), float(d_sq.sum())
    return WeightErrors(
        sqnr_db=sqnr_db(total_a, total_d),
        max_abs_error=float(d_max.max()) if d_max.size else 0.0,
        norm_change=float(_norm_change(np.array(total_a), np.array(total_b))),
        channel_sqnr_db=_sqnr_vector(a_sq, d_sq),
        channel_max_abs_error=d_max,
        channel_norm_change=_norm_change(a_sq, b_sq),
    )


@dataclass
class ActivationSums:
    """Running sums over images for one layer's output, per channel: enough for SQNR, cosine and max error.

    ``add`` takes one image's tensors, channels first (C, ...); a 1-D output (a dense layer) counts each
    value as a channel. Memory is a few numbers per channel, whatever the number of images.
    """

    a_sq: np.ndarray | None = None
    b_sq: np.ndarray | None = None
    ab: np.ndarray | None = None
    d_sq: np.ndarray | None = None
    max_abs_error: float = 0.0
    images: int = 0
    shape: tuple[int, ...] | None = None
    mismatch: str | None = field(default=None)

    def add(self, a: np.ndarray, b: np.ndarray) -> float | None:
        """Add one image; returns its noise-to-signal ratio ||a - b||^2 / ||a||^2 (None when not comparable)."""
        if a.shape != b.shape:
            self.mismatch = f"the outputs have different shapes, {'x'.join(map(str, a.shape))} and {'x'.join(map(str, b.shape))}"
            return None
        a32 = np.asarray(a, dtype=np.float32)
        b32 = np.asarray(b, dtype=np.float32)
        rows = a32.reshape(a32.shape[0] if a32.ndim > 1 else a32.size, -1)
        other = b32.reshape(rows.shape)
        diff = rows - other
        sums = [np.einsum("ij,ij->i", x, y).astype(np.float64) for x, y in ((rows, rows), (other, other), (rows, other), (diff, diff))]
        if self.a_sq is None:
            self.a_sq, self.b_sq, self.ab, self.d_sq = sums
            self.shape = tuple(a.shape)
        else:
            if self.shape != tuple(a.shape):
                self.mismatch = "the outputs change shape from one image to the next"
                return None
            assert self.b_sq is not None and self.ab is not None and self.d_sq is not None
            self.a_sq += sums[0]
            self.b_sq += sums[1]
            self.ab += sums[2]
            self.d_sq += sums[3]
        if diff.size:
            self.max_abs_error = max(self.max_abs_error, float(np.abs(diff).max()))
        self.images += 1
        signal = float(sums[0].sum())
        return float(sums[3].sum()) / signal if signal > 0 else (0.0 if float(sums[3].sum()) == 0 else math.inf)

    @property
    def comparable(self) -> bool:
        return self.mismatch is None and self.a_sq is not None

    @property
    def sqnr_db(self) -> float:
        """The SQNR of all images' values end to end (onnxruntime's ``compute_activation_error``)."""
        assert self.a_sq is not None and self.d_sq is not None
        if self.max_abs_error == 0.0:
            return math.inf
        return sqnr_db(float(self.a_sq.sum()), float(self.d_sq.sum()))

    @property
    def cosine(self) -> float:
        """The cosine similarity of all images' values end to end (1 for two zero tensors)."""
        assert self.a_sq is not None and self.b_sq is not None and self.ab is not None
        na, nb = float(self.a_sq.sum()), float(self.b_sq.sum())
        if na == 0 or nb == 0:
            return 1.0 if na == nb else 0.0
        return float(self.ab.sum()) / math.sqrt(na * nb)

    def channel_sqnr_db(self) -> np.ndarray:
        assert self.a_sq is not None and self.d_sq is not None
        return _sqnr_vector(self.a_sq, self.d_sq)


def softmax(scores: np.ndarray) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-12) -> float:
    """KL(p || q) in nats of two probability vectors; both are clipped at ``eps`` so that a zero in q stays finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, None)
    q = np.clip(np.asarray(q, dtype=np.float64), eps, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * (np.log(p) - np.log(q))))
