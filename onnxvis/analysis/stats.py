"""Numbers about weights and activations, in pure numpy: what the report, the server and ``stats`` show.

- :func:`weight_stats`: one layer's weight (min, max, mean, std, L2 norm, zeros) and its near-dead
  filters, as the report has always counted them.
- :class:`RunningStats`: one tensor's activations over many images by running sums (mean, std, max,
  the share of zeros, the channels that never fire), so that memory does not grow with the images.
- :func:`histogram` and :class:`RunningHistogram`: TensorBoard's histogram of values, bucketed as
  torch's ``SummaryWriter.add_histogram`` buckets them (its default ``bins="tensorflow"``): the same
  bucket limits and counts, the same trimming to the buckets that hold values. The running one
  adds images into fixed buckets, so the histogram of all the activations of 100 photos is
  exactly the one of their concatenation, without keeping them.

Nothing here knows ONNX, images or files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "DEAD_FRACTION",
    "WeightStats",
    "weight_stats",
    "RunningStats",
    "Histogram",
    "histogram",
    "RunningHistogram",
    "tensorflow_bins",
]

DEAD_FRACTION = 0.01
"""A filter is near-dead when its L2 norm is below this fraction of the median filter norm of its layer."""


# ------------------------------------------------------------------------------------------------
# Weights
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightStats:
    """Statistics of one layer's weight.

    Attributes:
        min, max, mean, std: over all weights.
        norms: the L2 norm of each filter (``weight[o]``), one per output channel.
        dead: per filter, whether it is near-dead: its norm is below ``DEAD_FRACTION`` x the layer's
            median filter norm, or zero.
        zeros: how many weights are exactly zero.
        count: how many weights there are.
    """

    min: float
    max: float
    mean: float
    std: float
    norms: np.ndarray
    dead: np.ndarray
    zeros: int = 0
    count: int = 0

    @property
    def near_dead(self) -> int:
        """How many filters are near-dead."""
        return int(np.count_nonzero(self.dead))

    @property
    def near_dead_share(self) -> float:
        """The share of the filters that are near-dead, 0 to 1."""
        return self.near_dead / self.dead.size if self.dead.size else 0.0

    @property
    def norm(self) -> float:
        """The L2 norm of the whole weight (the filters' norms combined)."""
        return float(math.sqrt(float(np.einsum("i,i->", self.norms, self.norms))))

    @property
    def sparsity(self) -> float:
        """The share of the weights that are exactly zero, 0 to 1."""
        return self.zeros / self.count if self.count else 0.0


def weight_stats(weight: np.ndarray) -> WeightStats:
    """The statistics of a weight whose first axis is the filters (output channels).

    Conv kernels come as (O, I, ...) from :func:`onnxvis.model.weights.kernel_weights`; a dense
    layer's weight as (outputs, inputs). Sums are float64, taken over
    blocks of about a million weights: a VGG16 classifier's 100 million weights need no float64 copy.
    """
    w = np.asarray(weight, dtype=np.float32)
    rows = w.reshape(w.shape[0], -1)
    step = max(1, _BLOCK // max(1, rows.shape[1]))
    if rows.shape[0] <= step:  # one block (every conv layer): numpy's own two-pass mean and std
        flat = rows.astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", flat, flat))
        mean, std = float(flat.mean()), float(flat.std())
    else:
        parts = [rows[i : i + step] for i in range(0, rows.shape[0], step)]
        norms = np.concatenate([np.sqrt(np.einsum("ij,ij->i", p, p, dtype=np.float64)) for p in parts])
        mean = float(sum(float(p.sum(dtype=np.float64)) for p in parts) / rows.size)
        centred = sum(float(np.square(p.astype(np.float64) - mean).sum()) for p in parts)
        std = math.sqrt(centred / rows.size)
    dead = (norms < DEAD_FRACTION * np.median(norms)) | (norms == 0)
    zeros = int(rows.size - np.count_nonzero(rows))
    return WeightStats(float(rows.min()), float(rows.max()), mean, std, norms, dead, zeros, int(rows.size))


_BLOCK = 1 << 20


# ------------------------------------------------------------------------------------------------
# Activations, over many images
# ------------------------------------------------------------------------------------------------


class RunningStats:
    """One tensor's values over many images, by running sums: memory stays that of one image.

    Each :meth:`add` takes one image's tensor (batch removed). Sums are kept per channel in float64,
    each image's partial sums taken in float32 over one channel (numpy's pairwise sums), so that
    the mean and std of millions of values stay exact to about 1e-6.

    Args:
        channel_axis: the axis of the channels in each added tensor (0 for NCHW maps, -1 for NHWC
            and dense outputs); None when it is unknown, which leaves :attr:`dead_channels` unknown.
        count_zeros: count the values that are exactly zero (for the outputs of activations).
    """

    def __init__(self, channel_axis: int | None = 0, count_zeros: bool = False) -> None:
        self.channel_axis = channel_axis
        self.count_zeros = count_zeros
        self.images = 0
        self.count = 0
        self.zeros = 0
        self._sum: np.ndarray | None = None
        self._squares: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self._min = math.inf

    def add(self, values: np.ndarray) -> None:
        """Add one image's tensor (any float type; cast to float32 for the sums)."""
        x = np.asarray(values)
        if x.size == 0:
            return
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        rows = self._rows(x)
        sums = rows.sum(axis=1, dtype=np.float32).astype(np.float64)
        squares = np.einsum("ij,ij->i", rows, rows).astype(np.float64)
        highs = rows.max(axis=1)
        if self._sum is not None and self._sum.shape != sums.shape:
            # Another channel count than the images before: the axis was not the channels'. Keep totals only.
            self.channel_axis = None
            self._sum, self._squares = np.atleast_1d(self._sum.sum()), np.atleast_1d(self._squares.sum())  # type: ignore[union-attr]
            self._max = np.atleast_1d(self._max.max())  # type: ignore[union-attr]
            sums, squares, highs = np.atleast_1d(sums.sum()), np.atleast_1d(squares.sum()), np.atleast_1d(highs.max())
        if self._sum is None or self._squares is None or self._max is None:
            self._sum, self._squares = np.zeros_like(sums), np.zeros_like(squares)
            self._max = np.full(highs.shape, -np.inf, np.float32)
        self._sum += sums
        self._squares += squares
        np.maximum(self._max, highs, out=self._max)
        self._min = min(self._min, float(rows.min()))
        self.count += x.size
        self.images += 1
        if self.count_zeros:
            self.zeros += int(x.size - np.count_nonzero(x))

    def _rows(self, x: np.ndarray) -> np.ndarray:
        """The values as (channels, values of that channel), or one row when the axis is unknown."""
        if self.channel_axis is None or x.ndim == 0:
            return x.reshape(1, -1)
        axis = self.channel_axis % x.ndim
        if axis == 0:
            return x.reshape(x.shape[0], -1)
        moved = np.moveaxis(x, axis, 0)
        return moved.reshape(moved.shape[0], -1)

    @property
    def mean(self) -> float:
        return float(self._sum.sum() / self.count) if self.count and self._sum is not None else math.nan

    @property
    def std(self) -> float:
        """The population std (numpy's default), over every value of every image."""
        if not self.count or self._squares is None:
            return math.nan
        mean = self.mean
        return math.sqrt(max(float(self._squares.sum()) / self.count - mean * mean, 0.0))

    @property
    def max(self) -> float:
        return float(self._max.max()) if self._max is not None else math.nan

    @property
    def min(self) -> float:
        return self._min if self.count else math.nan

    @property
    def zero_share(self) -> float:
        """The share of the values that are exactly zero (with ``count_zeros``), 0 to 1."""
        return self.zeros / self.count if self.count else math.nan

    @property
    def channels(self) -> int | None:
        return int(self._max.size) if self._max is not None and self.channel_axis is not None else None

    @property
    def silent(self) -> np.ndarray | None:
        """Per channel, whether it never fired: no value above zero in any image."""
        if self._max is None or self.channel_axis is None:
            return None
        return self._max <= 0

    @property
    def dead_channels(self) -> float:
        """The share of channels that never fired over the images (NaN when the channels are unknown)."""
        silent = self.silent
        return float(np.count_nonzero(silent)) / silent.size if silent is not None and silent.size else math.nan


# ------------------------------------------------------------------------------------------------
# Histograms, as TensorBoard's add_histogram makes them
# ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def tensorflow_bins() -> np.ndarray:
    """torch's ``SummaryWriter.default_bins``: 0, and +-1e-12 growing by 1.1 up to 1e20 (1,549 edges)."""
    v = 1e-12
    buckets = []
    while v < 1e20:
        buckets.append(v)
        v *= 1.1
    edges = [-b for b in reversed(buckets)] + [0.0] + buckets
    out = np.array(edges, dtype=np.float64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class Histogram:
    """TensorBoard's HistogramProto fields: ``bucket[i]`` values fall at or below ``bucket_limit[i]``
    (and above the limit before it); the first bucket is an empty one that carries the left edge."""

    min: float
    max: float
    num: int
    sum: float
    sum_squares: float
    bucket_limit: tuple[float, ...]
    bucket: tuple[float, ...]


def _trimmed(counts: np.ndarray, limits: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """torch's make_histogram: keep the buckets from the first to the last that hold values, with an
    empty bucket before them whose right limit is the first one's left edge."""
    cum = np.cumsum(np.greater(counts, 0))
    start, end = np.searchsorted(cum, [0, cum[-1] - 1], side="right")
    start, end = int(start), int(end) + 1
    kept = counts[start - 1 : end] if start > 0 else np.concatenate([[0], counts[:end]])
    return tuple(float(v) for v in limits[start : end + 1]), tuple(float(c) for c in kept)


def histogram(values: np.ndarray) -> Histogram:
    """The histogram ``SummaryWriter.add_histogram(tag, values)`` writes (bins="tensorflow", no max_bins).

    Raises:
        ValueError: ``values`` is empty (add_histogram refuses it too).
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("no values to make a histogram of")
    counts, limits = np.histogram(x, bins=tensorflow_bins())
    bucket_limit, bucket = _trimmed(counts, limits)
    # einsum for the squares (torch's x.dot(x) is a BLAS call, whose threads would compete with onnxruntime's)
    return Histogram(float(x.min()), float(x.max()), int(x.size), float(x.sum()), float(np.einsum("i,i->", x, x)), bucket_limit, bucket)


# The running histogram finds a value's bucket from its bit pattern, never comparing it with 1,549
# edges. A float16 has 65,536 patterns: they are counted, and each pattern's bucket and value are
# known. A float32 is looked up by its upper 20 bits (sign, exponent, 11 bits of mantissa): such a
# cell of 4,096 neighbouring floats spans at most 0.05% of its value, and the edges are 10% apart,
# so at most one edge falls in it; the few values in the 1,548 cells that hold one are compared
# with that edge's first float. The tables come from exact comparisons, as np.histogram makes them.
_CELL_BITS = 12


def _positions(values: np.ndarray) -> np.ndarray:
    """Where np.histogram puts each float64 value among the tensorflow bins, as a monotonic index:
    the bucket (0 to 1547) inside the edges, -1 below them, 1548 above (NaN: at its sign's end)."""
    edges = tensorflow_bins()
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = edges.size - 2  # the last bucket holds its right edge
    nan = np.isnan(values)
    idx[nan] = np.where(np.signbit(values[nan]), -1, edges.size - 1)
    return idx.astype(np.int64)


def _buckets(positions: np.ndarray) -> np.ndarray:
    """Positions -> bucket + 1, and 0 for the values outside every bucket (the bincount's first entry, dropped)."""
    inside = (positions >= 0) & (positions <= tensorflow_bins().size - 2)
    return np.where(inside, positions + 1, 0)


def _float64_of(bits: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return bits.view(np.float32).astype(np.float64)


@lru_cache(maxsize=1)
def _float32_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bucket (+1) of each 20-bit cell, or -(k + 1) for the k-th cell that holds an edge; and for
    those cells: the first float (as bits) of the next bucket, the bucket before it and after it (+1)."""
    first = (np.arange(1 << (32 - _CELL_BITS), dtype=np.uint64) << np.uint64(_CELL_BITS)).astype(np.uint32)
    last = first + np.uint32((1 << _CELL_BITS) - 1)
    start, end = _positions(_float64_of(first)), _positions(_float64_of(last))
    changes = np.flatnonzero(start != end)
    if np.any(np.abs(end[changes] - start[changes]) != 1):  # positions are monotonic within a cell (one sign)
        raise AssertionError("a cell of float32 holds more than one histogram edge")
    lo, hi = first[changes].astype(np.int64), last[changes].astype(np.int64)
    while np.any(hi - lo > 1):  # for all those cells at once: the first float of the next position
        mid = (lo + hi) // 2
        same = _positions(_float64_of(mid.astype(np.uint32))) == start[changes]
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    table = _buckets(start).astype(np.int16)
    table[changes] = -(np.arange(changes.size) + 1)
    return table, hi.astype(np.uint32), _buckets(start[changes]).astype(np.int16), _buckets(end[changes]).astype(np.int16)


@lru_cache(maxsize=1)
def _float16_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each float16 bit pattern: its bucket (+1), its value, whether it is a number (not NaN)."""
    values = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)
    return _buckets(_positions(values)), values, ~np.isnan(values)


class RunningHistogram:
    """A histogram of many arrays' values, in TensorBoard's default buckets, built as they come.

    The result equals :func:`histogram` of their concatenation: the same buckets and counts, min,
    max and count; ``sum`` and ``sum_squares`` are float64 running sums (the last bits may differ
    from one float64 sum of everything).
    """

    def __init__(self) -> None:
        self._counts = np.zeros(tensorflow_bins().size, dtype=np.int64)  # bucket 0: outside the bins, then one per bin
        self.num = 0
        self.sum = 0.0
        self.sum_squares = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, values: np.ndarray) -> None:
        x = np.asarray(values)
        if x.size == 0:
            return
        if x.dtype == np.float16:
            self._add_float16(np.ascontiguousarray(x).reshape(-1))
            return
        if x.dtype != np.float32:  # float64 and the rest: compared with the edges as they are
            x64 = x.astype(np.float64).reshape(-1)
            self._counts += np.bincount(_buckets(_positions(x64)), minlength=self._counts.size)
            self._totals(x64.size, float(x64.sum()), float(np.einsum("i,i->", x64, x64)), float(x64.min()), float(x64.max()))
            return
        x = np.ascontiguousarray(x).reshape(-1)
        table, edge, before, after = _float32_tables()
        bits = x.view(np.uint32)
        buckets = np.take(table, bits >> _CELL_BITS)
        near = np.flatnonzero(buckets < 0)  # in a cell that holds an edge: compare with it
        if near.size:
            k = -buckets[near].astype(np.int64) - 1
            buckets[near] = np.where(bits[near] >= edge[k], after[k], before[k])
        self._counts += np.bincount(buckets, minlength=self._counts.size)
        # einsum, not np.dot: no BLAS threads to compete with onnxruntime's
        self._totals(x.size, float(x.sum(dtype=np.float64)), float(np.einsum("i,i->", x, x, dtype=np.float64)),
                     float(x.min()), float(x.max()))

    def _add_float16(self, x: np.ndarray) -> None:
        buckets, values, numbers = _float16_tables()
        patterns = np.bincount(x.view(np.uint16), minlength=1 << 16)
        self._counts += np.bincount(buckets, weights=patterns, minlength=self._counts.size).astype(np.int64)
        present = np.flatnonzero((patterns > 0) & numbers)  # the patterns that occur (a NaN counts in num only)
        found, weights = values[present], patterns[present].astype(np.float64)
        self._totals(x.size, float(np.einsum("i,i->", weights, found)), float(np.einsum("i,i,i->", weights, found, found)),
                     float(found.min()) if found.size else math.nan, float(found.max()) if found.size else math.nan)

    def _totals(self, count: int, total: float, squares: float, low: float, high: float) -> None:
        self.num += count
        self.sum += total
        self.sum_squares += squares
        self.min = min(self.min, low)
        self.max = max(self.max, high)

    def result(self) -> Histogram:
        """The histogram so far. Raises ValueError when nothing was added."""
        if self.num == 0:
            raise ValueError("no values to make a histogram of")
        bucket_limit, bucket = _trimmed(self._counts[1:], tensorflow_bins())
        return Histogram(self.min, self.max, self.num, self.sum, self.sum_squares, bucket_limit, bucket)
