"""A streaming top-K per channel: which images excite each channel most, in bounded memory.

Every image gives each channel one candidate: its spatial maximum (score) and where it lies (y, x).
:class:`TopK` keeps, per channel, the K best candidates seen so far under one total order:

    higher score first, then smaller image id, then smaller y, then smaller x.

Because the order is total and each (image, channel) gives one candidate, the kept set is the top K
of the union of all candidates, whatever the order they came in or how they were split: merging
partial results (:meth:`TopK.merge`) is associative and commutative, so one process, a resumed run
and a Ray cluster that merges per-block results all keep the same entries, channel for channel.
Memory is channels x K per layer, whatever the number of images.

A layer may also keep a small payload per entry (a downsampled copy of the channel's map, used
where the receptive field cannot be computed); it travels with its entry through every merge.

The answer's contract (what "the same answer" means between two runs, e.g. the local engine and
Ray's, which batch the images differently; onnxruntime's full optimisation level makes a score
depend, in its last bits, on the batch it was computed in):

* the same images per channel;
* scores equal within a relative tolerance of :data:`RTOL` (0.1%);
* where two scores lie within it of each other, their order is decided by image path (the smaller id
  first: ids follow the catalog, which is sorted by path).

The kept entries are selected by the exact order above; :meth:`TopK.entries` (what is written and
drawn) then orders them by this contract: each run of entries whose scores lie within :data:`RTOL` of
the run's best one is ordered by image path. So two runs that agree within the tolerance write the
same images in the same order. (A run keeps more entries than it draws, ``keep`` >= ``top``: the
images at the edge of the drawn K are chosen by the same rule.) :meth:`TopK.agrees` checks the
contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxvis.errors import OnnxvisError

__all__ = ["RTOL", "TopK", "channel_maxima"]

RTOL = 1e-3
"""Two scores within this relative tolerance of each other are the same score (the contract above)."""


def channel_maxima(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image and channel: the spatial maximum and its first position in row-major order.

    Args:
        maps: (N, C, H, W) feature maps, channels first. NaN counts as the lowest value.

    Returns:
        (scores float32 (N, C), y int32 (N, C), x int32 (N, C)).
    """
    if maps.ndim != 4:
        raise OnnxvisError(f"expected feature maps (N, C, H, W), got shape {maps.shape}")
    n, c, h, w = maps.shape
    if h * w == 0:
        raise OnnxvisError(f"feature maps of shape {maps.shape} have no spatial positions")
    flat = maps.reshape(n, c, h * w)
    if flat.dtype.kind == "f" and np.isnan(flat).any():
        flat = np.where(np.isnan(flat), -np.inf, flat)
    where = flat.argmax(axis=2)  # the first maximum: deterministic
    scores = np.take_along_axis(flat, where[:, :, None], axis=2)[:, :, 0].astype(np.float32)
    return scores, (where // w).astype(np.int32), (where % w).astype(np.int32)


@dataclass
class _Layer:
    score: np.ndarray  # (C, n) float32, best first; -inf marks an empty slot
    image: np.ndarray  # (C, n) int64, -1 for an empty slot
    y: np.ndarray  # (C, n) int32
    x: np.ndarray  # (C, n) int32
    payload: np.ndarray | None  # (C, n, ...) or None


def _tolerant_order(score: np.ndarray, image: np.ndarray, rtol: float = RTOL) -> np.ndarray:
    """The positions of one channel's entries (kept best first by exact score) in the contract's order:
    each run of entries within ``rtol`` of the run's first (best) score, by image id; empty slots last."""
    order = np.arange(score.size)
    start = 0
    while start < score.size:
        best = float(score[start])
        if image[start] < 0 or not np.isfinite(best):
            break
        end = start + 1
        while end < score.size and image[end] >= 0 and best - float(score[end]) <= rtol * abs(best):
            end += 1
        if end - start > 1:  # a stable sort: equal ids (never, one entry per image) keep their order
            order[start:end] = start + np.argsort(image[start:end], kind="stable")
        start = end
    return order


def _empty(channels: int, payload_shape: tuple[int, ...] | None) -> _Layer:
    return _Layer(
        np.full((channels, 0), -np.inf, np.float32),
        np.full((channels, 0), -1, np.int64),
        np.zeros((channels, 0), np.int32),
        np.zeros((channels, 0), np.int32),
        None if payload_shape is None else np.zeros((channels, 0, *payload_shape), np.float16),
    )


def _select(layer: _Layer, k: int) -> _Layer:
    """Sort each channel's entries by the total order and keep the first k."""
    # lexsort: the last key is the primary one. Empty slots (-inf, id -1) never beat a real entry
    # since -(-inf) = +inf sorts last.
    order = np.lexsort((layer.x, layer.y, layer.image, -layer.score.astype(np.float64)), axis=-1)[:, :k]

    def take(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)

    return _Layer(
        take(layer.score), take(layer.image), take(layer.y), take(layer.x),
        None if layer.payload is None else take(layer.payload),
    )


def _concat(a: _Layer, b: _Layer) -> _Layer:
    if (a.payload is None) != (b.payload is None):
        raise OnnxvisError("cannot merge top-K results: one has map payloads and the other not")
    return _Layer(
        np.concatenate([a.score, b.score], axis=1),
        np.concatenate([a.image, b.image], axis=1),
        np.concatenate([a.y, b.y], axis=1),
        np.concatenate([a.x, b.x], axis=1),
        None if a.payload is None else np.concatenate([a.payload, b.payload], axis=1),
    )


class TopK:
    """The K best (score, image id, y, x) per channel, for several layers.

    Args:
        k: how many entries each channel keeps.
    """

    def __init__(self, k: int):
        if int(k) < 1:
            raise OnnxvisError(f"K must be 1 or more, got {k}")
        self.k = int(k)
        self._layers: dict[str, _Layer] = {}

    @property
    def names(self) -> list[str]:
        return list(self._layers)

    def channels(self, name: str) -> int:
        return self._layers[name].score.shape[0]

    def add(
        self,
        name: str,
        images: np.ndarray,
        scores: np.ndarray,
        y: np.ndarray,
        x: np.ndarray,
        payload: np.ndarray | None = None,
    ) -> None:
        """Offer the candidates of N images for layer ``name``.

        Args:
            images: (N,) image ids.
            scores, y, x: (N, C), as :func:`channel_maxima` gives them.
            payload: optional (N, C, ...) kept with each entry (stored as float16).
        """
        images = np.asarray(images, np.int64)
        scores = np.asarray(scores, np.float32)
        if scores.ndim != 2 or images.shape != (scores.shape[0],) or np.shape(y) != scores.shape or np.shape(x) != scores.shape:
            raise OnnxvisError(f"top-K candidates of layer {name!r} have inconsistent shapes")
        channels = scores.shape[1]
        pay = None if payload is None else np.asarray(payload, np.float16).swapaxes(0, 1)
        batch = _Layer(
            np.ascontiguousarray(scores.T),
            np.ascontiguousarray(np.broadcast_to(images[None, :], (channels, images.size))),
            np.ascontiguousarray(np.asarray(y, np.int32).T),
            np.ascontiguousarray(np.asarray(x, np.int32).T),
            pay,
        )
        self._merge_layer(name, batch)

    def _merge_layer(self, name: str, batch: _Layer) -> None:
        current = self._layers.get(name)
        if current is None:
            current = _empty(batch.score.shape[0], None if batch.payload is None else batch.payload.shape[2:])
        elif current.score.shape[0] != batch.score.shape[0]:
            raise OnnxvisError(
                f"layer {name!r} had {current.score.shape[0]} channels and now {batch.score.shape[0]}; "
                "the model or the layer changed"
            )
        self._layers[name] = _select(_concat(current, batch), self.k)

    def merge(self, other: "TopK") -> "TopK":
        """Fold ``other``'s entries into this one (in place; returns self). K stays this one's."""
        for name, layer in other._layers.items():
            self._merge_layer(name, layer)
        return self

    def remap_images(self, mapping: np.ndarray) -> None:
        """Renumber image ids: id i becomes ``mapping[i]`` (keeps the order: ties break by the new ids)."""
        for name, layer in self._layers.items():
            valid = layer.image >= 0
            image = np.where(valid, mapping[np.where(valid, layer.image, 0)], -1)
            self._layers[name] = _select(_Layer(layer.score, image, layer.y, layer.x, layer.payload), self.k)

    def entries(self, name: str, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(score, image id, y, x), each (C, k') best first by the contract (near-equal scores in path
        order, see the module's docstring); empty slots have image id -1."""
        layer = self._contract_order(name)
        k = layer.score.shape[1] if k is None else min(int(k), layer.score.shape[1])
        return layer.score[:, :k], layer.image[:, :k], layer.y[:, :k], layer.x[:, :k]

    def payload(self, name: str) -> np.ndarray | None:
        """The payloads, (C, n, ...), in the order of :meth:`entries`."""
        return self._contract_order(name).payload

    def _contract_order(self, name: str) -> _Layer:
        layer = self._layers[name]
        order = np.stack([_tolerant_order(layer.score[c], layer.image[c]) for c in range(layer.score.shape[0])]) \
            if layer.score.size else np.zeros(layer.score.shape, np.int64)

        def take(a: np.ndarray) -> np.ndarray:
            return np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)

        return _Layer(take(layer.score), take(layer.image), take(layer.y), take(layer.x),
                      None if layer.payload is None else take(layer.payload))

    def agrees(self, other: "TopK", k: int | None = None, rtol: float = RTOL) -> str | None:
        """None when both give the same answer under the contract (same images in the same order per
        channel, scores within ``rtol``) for their first ``k`` entries (default: all kept); else where not."""
        if self.names != other.names:
            return f"layers {self.names} against {other.names}"
        for name in self.names:
            sa, ia, _, _ = self.entries(name, k)
            sb, ib, _, _ = other.entries(name, k)
            if ia.shape != ib.shape:
                return f"layer {name!r}: {ia.shape} entries against {ib.shape}"
            for c in np.nonzero((ia != ib).any(axis=1))[0][:1]:
                return f"layer {name!r}, channel {c}: images {ia[c].tolist()} against {ib[c].tolist()}"
            both = ia >= 0
            a, b = sa[both].astype(np.float64), sb[both].astype(np.float64)
            far = np.abs(a - b) > rtol * np.maximum(np.abs(a), np.abs(b))
            if far.any():
                i = int(np.argmax(far))
                return f"layer {name!r}: score {a[i]} against {b[i]}, beyond the relative tolerance {rtol}"
        return None

    # ------------------------------------------------------------------ plain arrays (checkpoints, Ray)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (for ``np.savez`` or sending to another process)."""
        out: dict[str, np.ndarray] = {"k": np.array(self.k), "names": np.array(self.names, dtype=str)}
        for i, layer in enumerate(self._layers.values()):
            out[f"{i}.score"], out[f"{i}.image"], out[f"{i}.y"], out[f"{i}.x"] = layer.score, layer.image, layer.y, layer.x
            if layer.payload is not None:
                out[f"{i}.payload"] = layer.payload
        return out

    @classmethod
    def from_arrays(cls, arrays: "dict[str, np.ndarray] | np.lib.npyio.NpzFile") -> "TopK":
        try:
            top = cls(int(arrays["k"]))
            for i, name in enumerate(arrays["names"].tolist()):
                payload = arrays[f"{i}.payload"] if f"{i}.payload" in arrays else None
                top._layers[str(name)] = _Layer(
                    np.asarray(arrays[f"{i}.score"], np.float32),
                    np.asarray(arrays[f"{i}.image"], np.int64),
                    np.asarray(arrays[f"{i}.y"], np.int32),
                    np.asarray(arrays[f"{i}.x"], np.int32),
                    None if payload is None else np.asarray(payload, np.float16),
                )
        except (KeyError, ValueError, TypeError) as exc:
            raise OnnxvisError(f"top-K state is damaged or from another version ({exc})") from None
        return top

    def equal(self, other: "TopK") -> bool:
        """Whether both keep exactly the same entries (scores, images, positions), layer for layer."""
        if self.names != other.names:
            return False
        for name in self.names:
            a, b = self.entries(name), other.entries(name)
            if any(not np.array_equal(u, v) for u, v in zip(a, b, strict=True)):
                return False
        return True
