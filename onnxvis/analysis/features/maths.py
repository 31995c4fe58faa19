"""Feature visualisation's arithmetic in numpy, each step with its adjoint, as Lucent 0.1.8 computes it.

The image that excites a channel is found by gradient ascent on a parameterisation of it. Every
step here is a map from arrays to arrays with its adjoint (the vector-Jacobian product), so that the
model's gradient with respect to its input (from onnxruntime, :mod:`onnxvis.engine.gradients`) is
carried back to the parameters by plain numpy. Each adjoint is tested against finite differences.

- :class:`FourierImage`: Lucent's ``fft_image`` (``param/spatial.py``): a spectrum of (real, imag)
  pairs, scaled by ``1 / max(f, 1/max(h, w)) ** decay_power``, inverse real FFT (``norm="ortho"``),
  divided by Lucent's "magic" 4;
- :func:`decorrelate`: Lucent's ``_linear_decorrelate_color`` (``param/color.py``), the square root of
  ImageNet's colour covariance, normalised;
- :func:`sigmoid`: the map into [0, 1];
- the transforms of Lucent's ``standard_transforms`` (``transform.py``): pad 12 with 0.5, jitter 8,
  random scale 0.9..1.1 (bilinear, ``align_corners=True``, zero padding), random rotation -10..10
  degrees (kornia's ``warp_affine``: bilinear, zeros outside), jitter 4; then the resize to the model's
  size (Lucent's ``Upsample(224, bilinear, align_corners=True)``) and the model's preprocessing;
- :class:`Adam`: ``torch.optim.Adam`` (betas 0.9, 0.999, eps 1e-8);
- the objectives' seeds (the derivative of the objective with respect to the place's tensor):
  a channel's mean, a neuron at the centre, and Lucid's diversity (Gram matrices, cosine similarity).

Arrays are float32 (float64 where a test asks), one image (C, H, W) or a batch (N, C, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COLOR_CORRELATION",
    "Adam",
    "FourierImage",
    "PixelImage",
    "Step",
    "Transforms",
    "channel_seed",
    "decorrelate",
    "decorrelate_adjoint",
    "diversity",
    "high_frequency_share",
    "neuron_seed",
    "resize_matrix",
    "rfft2d_freqs",
    "sigmoid",
    "sigmoid_adjoint",
]

# Lucent's color_correlation_svd_sqrt, normalised by its largest column norm (color.py).
_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
COLOR_CORRELATION = (_SVD_SQRT / np.max(np.linalg.norm(_SVD_SQRT, axis=0))).astype(np.float32)
# Lucid's magic constant: the spectrum's image divided by it ("increasing this seems to reduce saturation").
MAGIC = 4.0
# Lucent's standard_transforms, in its order.
PAD = 12
PAD_VALUE = 0.5
JITTER_FIRST = 8
SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))  # 0.9, 0.92, ..., 1.1
ANGLES = tuple(list(range(-10, 11)) + 5 * [0])  # degrees; 0 drawn 6 times in 26
JITTER_LAST = 4


# ------------------------------------------------------------------------------ parameterisations


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """Lucid's 2-D spectrum frequencies (h, w // 2 + 1, or + 2 for an odd width), cycles per pixel."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + (2 if w % 2 == 1 else 1)]
    return np.sqrt(fx * fx + fy * fy)


class FourierImage:
    """Lucent's ``fft_image``: parameters (N, C, h, fw, 2) -> image (N, C, h, w), and its adjoint."""

    def __init__(self, h: int, w: int, decay_power: float = 1.0) -> None:
        self.h, self.w = h, w
        freqs = rfft2d_freqs(h, w)
        self.scale = (1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power).astype(np.float32)
        self.param_shape = (*freqs.shape, 2)
        # The adjoint of the inverse real FFT: its columns 1 .. ceil(w/2)-1 stand for two (conjugate)
        # columns of the full spectrum, so they count twice; column 0 and (even w) column w/2 once;
        # the extra column of an odd width is cut off by irfft, so it gets no gradient.
        weight = np.zeros(freqs.shape[1], np.float32)
        weight[: w // 2 + 1] = 2
        weight[0] = 1
        if w % 2 == 0:
            weight[w // 2] = 1
        self._weight = weight

    def init(self, rng: np.random.Generator, n: int, channels: int = 3, sd: float = 0.01) -> np.ndarray:
        """Lucent's start: normal noise of standard deviation ``sd``."""
        return (rng.standard_normal((n, channels, *self.param_shape)) * sd).astype(np.float32)

    def forward(self, params: np.ndarray) -> np.ndarray:
        spectrum = (params[..., 0] + 1j * params[..., 1]) * self.scale
        image = np.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho")
        return (image / MAGIC).astype(params.dtype, copy=False)

    def adjoint(self, grad: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft2(grad.astype(np.float64) / MAGIC, norm="ortho")
        pad = self._weight.shape[0] - spectrum.shape[-1]
        if pad:
            spectrum = np.concatenate([spectrum, np.zeros((*spectrum.shape[:-1], pad), spectrum.dtype)], axis=-1)
        spectrum = spectrum * self._weight * self.scale
        return np.stack([spectrum.real, spectrum.imag], axis=-1).astype(grad.dtype, copy=False)


class PixelImage:
    """Lucent's ``pixel_image``: the parameters are the image (N, C, h, w); the identity, for the
    unconstrained optimisation the Fourier image is compared with."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.param_shape = (h, w)

    def init(self, rng: np.random.Generator, n: int, channels: int = 3, sd: float = 0.01) -> np.ndarray:
        return (rng.standard_normal((n, channels, self.h, self.w)) * sd).astype(np.float32)

    def forward(self, params: np.ndarray) -> np.ndarray:
        return params

    def adjoint(self, grad: np.ndarray) -> np.ndarray:
        return grad


def decorrelate(image: np.ndarray) -> np.ndarray:
    """(N, 3, H, W): each pixel's colour multiplied by Lucent's normalised colour matrix."""
    return np.einsum("cd,ndhw->nchw", COLOR_CORRELATION.astype(image.dtype), image)


def decorrelate_adjoint(grad: np.ndarray) -> np.ndarray:
    return np.einsum("cd,nchw->ndhw", COLOR_CORRELATION.astype(grad.dtype), grad)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1 + np.tanh(0.5 * x))).astype(x.dtype, copy=False)  # tanh: no overflow warning for large |x|


def sigmoid_adjoint(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The adjoint at the sigmoid's output ``y``."""
    return grad * y * (1 - y)


# ------------------------------------------------------------------------------------ transforms


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation along one axis with ``align_corners=True`` (torch's
    ``Upsample``): output i samples input ``i * (n_in - 1) / (n_out - 1)``."""
    matrix = np.zeros((n_out, n_in), np.float64)
    if n_out == 1 or n_in == 1:
        matrix[:, 0] = 1
        return matrix
    pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    lo = np.minimum(np.floor(pos).astype(int), n_in - 1)
    frac = pos - lo
    hi = np.minimum(lo + 1, n_in - 1)
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, lo), 1 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix


class _Axis:
    """A two-tap linear map along one axis (a bilinear resize, with rows of zeros for padding), applied
    by gathering (O(n), where a dense matrix would cost O(n^2)), and its exact adjoint by bincount."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.n_out, self.n_in = matrix.shape
        order = np.argsort(-np.abs(matrix), axis=1, kind="stable")[:, :2]
        rows = np.arange(self.n_out)[:, None]
        self.taps = np.sort(order, axis=1)
        self.weights = matrix[rows, self.taps]
        assert np.allclose((self.weights[:, :, None] * (self.taps[:, :, None] == np.arange(self.n_in))).sum(axis=1), matrix)

    def forward(self, x: np.ndarray, axis: int) -> np.ndarray:
        shape = [1] * x.ndim
        shape[axis] = self.n_out
        w = self.weights.astype(x.dtype)
        return (np.take(x, self.taps[:, 0], axis=axis) * w[:, 0].reshape(shape)
                + np.take(x, self.taps[:, 1], axis=axis) * w[:, 1].reshape(shape))

    def adjoint(self, g: np.ndarray, axis: int) -> np.ndarray:
        moved = np.moveaxis(g, axis, -1)
        lead = moved.shape[:-1]
        flat = moved.reshape(-1, self.n_out)
        base = (np.arange(flat.shape[0]) * self.n_in)[:, None]
        index = np.concatenate([base + self.taps[:, 0], base + self.taps[:, 1]], axis=1).ravel()
        weights = np.concatenate([flat * self.weights[:, 0], flat * self.weights[:, 1]], axis=1).ravel()
        out = np.bincount(index, weights=weights, minlength=flat.shape[0] * self.n_in).reshape(*lead, self.n_in)
        return np.moveaxis(out, -1, axis).astype(g.dtype, copy=False)


def _separable(x: np.ndarray, rows: _Axis, cols: _Axis) -> np.ndarray:
    return cols.forward(rows.forward(x, -2), -1)


def _separable_adjoint(g: np.ndarray, rows: _Axis, cols: _Axis) -> np.ndarray:
    return rows.adjoint(cols.adjoint(g, -1), -2)


_AXES: dict[bytes, _Axis] = {}


def _axis(matrix: np.ndarray) -> _Axis:
    """The two-tap map of ``matrix``, kept: a run meets the same few sizes at every step."""
    key = matrix.shape[0].to_bytes(4, "little") + matrix.shape[1].to_bytes(4, "little") + matrix.tobytes()
    found = _AXES.get(key)
    if found is None:
        if len(_AXES) > 256:
            _AXES.clear()
        found = _AXES[key] = _Axis(matrix)
    return found


class _Sampler:
    """Bilinear sampling of a (C, H, W) image at points (ys, xs) in pixel coordinates, zeros outside
    (``grid_sample`` with ``align_corners=True``, ``padding_mode="zeros"``), and its exact adjoint."""

    def __init__(self, shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray) -> None:
        h, w = shape
        self.shape, self.out = shape, ys.shape
        y0, x0 = np.floor(ys), np.floor(xs)
        fy, fx = ys - y0, xs - x0
        y0i, x0i = y0.astype(np.int64), x0.astype(np.int64)
        index, weight = [], []
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                yy, xx = y0i + dy, x0i + dx
                inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                index.append(np.where(inside, yy * w + xx, 0).ravel())
                weight.append(np.where(inside, wy * wx, 0).ravel())
        self.index = np.concatenate(index)
        self.weight = np.concatenate(weight)

    def forward(self, image: np.ndarray) -> np.ndarray:
        c = image.shape[0]
        flat = image.reshape(c, -1)[:, self.index] * self.weight.astype(image.dtype)
        return flat.reshape(c, 4, -1).sum(axis=1).reshape(c, *self.out)

    def adjoint(self, grad: np.ndarray) -> np.ndarray:
        c = grad.shape[0]
        size = self.shape[0] * self.shape[1]
        g = np.tile(grad.reshape(c, -1), (1, 4)) * self.weight
        out = np.stack([np.bincount(self.index, weights=g[i], minlength=size) for i in range(c)])
        return out.reshape(c, *self.shape).astype(grad.dtype, copy=False)


def _translate(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """kornia's ``translate`` by whole pixels: out[y, x] = image[y - dy, x - dx], zeros where that is outside."""
    out = np.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _rotation_points(h: int, w: int, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Where kornia's ``warp_affine`` with ``get_rotation_matrix2d(centre, degrees, 1)`` (OpenCV's
    matrix, counter-clockwise on the screen) samples its input for each output pixel."""
    a, b = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    xs = a * (x - cx) - b * (y - cy) + cx
    ys = b * (x - cx) + a * (y - cy) + cy
    return ys, xs


@dataclass(frozen=True)
class Step:
    """One image's random draws for one step of Lucent's standard transforms."""

    jitter_first: tuple[int, int] = (0, 0)  # (dy, dx), 0 .. 7
    scale: float = 1.0
    angle: float = 0.0  # degrees
    jitter_last: tuple[int, int] = (0, 0)  # 0 .. 3

    @staticmethod
    def draw(rng: np.random.Generator) -> "Step":
        """The draws in Lucent's order (``np.random.choice`` of each list); dx before dy, as Lucent."""
        dx, dy = (int(v) for v in rng.integers(0, JITTER_FIRST, 2))
        scale = float(SCALES[int(rng.integers(0, len(SCALES)))])
        angle = float(ANGLES[int(rng.integers(0, len(ANGLES)))])
        dx2, dy2 = (int(v) for v in rng.integers(0, JITTER_LAST, 2))
        return Step((dy, dx), scale, angle, (dy2, dx2))


class Transforms:
    """One image's transforms for one step, (C, h, w) in [0, 1] -> (C, *size), and the adjoint.

    With ``step=None``, the image is only resized to ``size`` (no robustness transforms: the
    unconstrained baseline). Lucent's order: pad, jitter, scale, rotate, jitter, then the resize to the
    model's size (Lucent normalises before that resize; the per-channel affine normalisation commutes
    with a bilinear resize, whose weights sum to 1, so it is done after, in the model's preprocessing).
    """

    def __init__(self, shape: tuple[int, int], size: tuple[int, int], step: Step | None) -> None:
        self.step = step
        h, w = shape
        self.shape = shape
        if step is not None:
            h, w = h + 2 * PAD, w + 2 * PAD
            n_h, n_w = (int(math.ceil(step.scale * d)) for d in (h, w))
            pad_x, pad_y = max(0, math.ceil((w - n_w) / 2)), max(0, math.ceil((h - n_h) / 2))
            # Lucent pads with F.pad(x, [pad_y, pad_x] * 2): left pad_y, right pad_x, top pad_y, bottom
            # pad_x (the same for a square image).
            scale_h = np.zeros((n_h + pad_y + pad_x, h))
            scale_h[pad_y : pad_y + n_h] = resize_matrix(h, n_h)
            scale_w = np.zeros((n_w + pad_y + pad_x, w))
            scale_w[pad_y : pad_y + n_w] = resize_matrix(w, n_w)
            self._scale_h, self._scale_w = _axis(scale_h), _axis(scale_w)
            h, w = scale_h.shape[0], scale_w.shape[0]
            ys, xs = _rotation_points(h, w, step.angle)
            self._rotate = _Sampler((h, w), ys, xs) if step.angle else None
        self._resize_h = _axis(resize_matrix(h, size[0]))
        self._resize_w = _axis(resize_matrix(w, size[1]))

    def forward(self, image: np.ndarray) -> np.ndarray:
        x = image
        step = self.step
        if step is not None:
            x = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)), constant_values=PAD_VALUE)
            x = _translate(x, *step.jitter_first)
            x = _separable(x, self._scale_h, self._scale_w)
            if self._rotate is not None:
                x = self._rotate.forward(x)
            x = _translate(x, *step.jitter_last)
        return _separable(x, self._resize_h, self._resize_w).astype(image.dtype, copy=False)

    def adjoint(self, grad: np.ndarray) -> np.ndarray:
        g = _separable_adjoint(grad, self._resize_h, self._resize_w)
        step = self.step
        if step is not None:
            g = _translate(g, -step.jitter_last[0], -step.jitter_last[1])
            if self._rotate is not None:
                g = self._rotate.adjoint(g)
            g = _separable_adjoint(g, self._scale_h, self._scale_w)
            g = _translate(g, -step.jitter_first[0], -step.jitter_first[1])
            g = g[:, PAD:-PAD, PAD:-PAD]
        return g.astype(grad.dtype, copy=False)


# ------------------------------------------------------------------------------------ optimiser


class Adam:
    """``torch.optim.Adam`` (no weight decay, no amsgrad), minimising: ``step`` takes the loss's gradient."""

    def __init__(self, params: np.ndarray, lr: float = 0.05, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = params
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.t = 0

    def step(self, grad: np.ndarray) -> np.ndarray:
        b1, b2 = self.betas
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        correction1 = 1 - b1**self.t
        correction2 = 1 - b2**self.t
        denom = np.sqrt(self.v) / math.sqrt(correction2) + self.eps
        self.params = (self.params - (self.lr / correction1) * self.m / denom).astype(self.params.dtype, copy=False)
        return self.params


# ------------------------------------------------------------------------------------ objectives


def channel_seed(shape: Sequence[int], channels: Sequence[int]) -> np.ndarray:
    """d(mean of row i's channel ``channels[i]``)/d(tensor), for a (N, C, H, W) tensor (Lucent's ``channel``)."""
    seed = np.zeros(tuple(shape), np.float32)
    area = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    for row, channel in enumerate(channels):
        seed[row, channel] = 1.0 / area
    return seed


def neuron_seed(shape: Sequence[int], channels: Sequence[int]) -> np.ndarray:
    """d(row i's channel ``channels[i]`` at the centre (H // 2, W // 2))/d(tensor) (Lucent's ``neuron``)."""
    seed = np.zeros(tuple(shape), np.float32)
    centre = tuple(d // 2 for d in shape[2:])
    for row, channel in enumerate(channels):
        seed[(row, channel) + centre] = 1.0
    return seed


def diversity(acts: np.ndarray, groups: Sequence[int]) -> tuple[float, np.ndarray]:
    """Lucid's diversity penalty and its gradient: over the rows of each group, the sum of the
    pairwise cosine similarities of their Gram matrices (channels x channels, over the positions).

    Lucent's ``diversity`` objective is minus this sum divided by the batch; its tutorial adds it with
    weight 100 to the channel objective. Returns (the sum over the groups, d sum/d acts).
    """
    n, c = acts.shape[:2]
    flat = acts.reshape(n, c, -1).astype(np.float64)
    grams = flat @ flat.transpose(0, 2, 1)
    norms = np.maximum(np.sqrt((grams**2).sum(axis=(1, 2))), 1e-12)
    unit = grams / norms[:, None, None]
    groups_arr = np.asarray(groups)
    total = 0.0
    grad = np.zeros_like(flat)
    for group in np.unique(groups_arr):
        rows = np.flatnonzero(groups_arr == group)
        if len(rows) < 2:
            continue
        summed = unit[rows].sum(axis=0)
        for i in rows:
            others = summed - unit[i]  # d/d unit_i of sum_{j != i} <unit_i, unit_j> (each pair counted twice, as Lucid)
            total += float((unit[i] * others).sum())
            # through the normalisation, then the Gram matrix (G = F F^T, symmetric: dF = 2 dG F)
            d_gram = 2 * (others - (others * unit[i]).sum() * unit[i]) / norms[i]
            grad[i] = 2 * d_gram @ flat[i]
    return total, grad.reshape(acts.shape).astype(np.float32)


def high_frequency_share(image: np.ndarray) -> float:
    """The share of an image's spectral energy (its mean removed) above half the Nyquist frequency.

    ``image``: (H, W) or (H, W, C) or (C, H, W) with C <= 4; the channels' spectra are added. The
    radius of a frequency (fy, fx) in cycles per pixel is compared with 0.25 (Nyquist is 0.5).
    """
    x = np.asarray(image, np.float64)
    if x.ndim == 2:
        x = x[None]
    elif x.shape[-1] <= 4 and x.shape[0] > 4:
        x = x.transpose(2, 0, 1)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).sum(axis=0)
    h, w = power.shape
    radius = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    total = power.sum()
    return float(power[radius > 0.25].sum() / total) if total > 0 else 0.0
