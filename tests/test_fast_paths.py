"""The fast paths give the same pixels and bytes as the plain ways they replace.

- ``grids.split_grids`` normalises and tiles every output channel at once: equal to one
  ``make_grid`` per channel (torchvision's, when torch is installed; a per-channel loop here).
- ``grids._tile`` writes each tile once into its cell: equal to a naive cell-by-cell placement.
- ``grids.to_uint8`` clamps with fmax/fmin: equal to ``x * 255 + 0.5``, clamp, NaN -> 0.
- ``output.encode_png`` writes PNGs with zlib: Pillow decodes exactly the pixels given.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxvis.draw import grids
from onnxvis.write.png import encode_png


def _naive_tile(tiles: np.ndarray, nrow: int, padding: int, pad_value: float) -> np.ndarray:
    """torchvision's make_grid placement loop, written out."""
    nmaps, channels, h, w = tiles.shape
    if nmaps == 1:
        return tiles[0]
    xmaps = min(nrow, nmaps)
    ymaps = int(math.ceil(nmaps / xmaps))
    height, width = h + padding, w + padding
    grid = np.full((channels, height * ymaps + padding, width * xmaps + padding), pad_value, np.float32)
    k = 0
    for y in range(ymaps):
        for x in range(xmaps):
            if k >= nmaps:
                break
            grid[:, y * height + padding : y * height + padding + h, x * width + padding : x * width + padding + w] = tiles[k]
            k += 1
    return grid


def _naive_normalize(tiles: np.ndarray, scale_each: bool) -> np.ndarray:
    out = tiles.astype(np.float32).copy()
    groups = out if scale_each else out[None]
    for g in groups:
        low, high = float(g.min()), float(g.max())
        np.clip(g, np.float32(low), np.float32(high), out=g)
        g -= np.float32(low)
        g /= np.float32(max(high - low, 1e-5))
    return out


def _naive_uint8(grid: np.ndarray) -> np.ndarray:
    pixels = grid.astype(np.float32) * np.float32(255)
    pixels += np.float32(0.5)
    np.clip(pixels, 0, 255, out=pixels)
    np.nan_to_num(pixels, copy=False, nan=0.0)
    pixels = pixels.astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)


@given(
    count=st.integers(1, 21),
    channels=st.sampled_from([1, 3]),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    nrow=st.integers(1, 9),
    padding=st.integers(0, 3),
    pad_value=st.sampled_from([0.0, 1.0, 0.25, float("nan")]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=200, deadline=None)
def test_tile_equals_the_naive_placement(count, channels, h, w, nrow, padding, pad_value, seed):
    tiles = np.random.default_rng(seed).standard_normal((count, channels, h, w)).astype(np.float32)
    np.testing.assert_array_equal(grids._tile(tiles, nrow, padding, pad_value), _naive_tile(tiles, nrow, padding, pad_value))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("scale_each", [True, False])
@pytest.mark.parametrize("shape", [(5, 3, 4, 4), (4, 10, 3, 3), (3, 1, 5, 5), (2, 9, 1, 1), (6, 4, 3), (2, 3, 2, 3, 3)])
@pytest.mark.parametrize("pad_value", [0.0, 0.5, float("nan")])
def test_split_grids_equal_one_grid_per_channel(normalize, scale_each, shape, pad_value):
    rng = np.random.default_rng(sum(shape))
    weight = (rng.standard_normal(shape) * 3).astype(np.float32)
    weight[0, 0] = 7.0  # a constant slice
    kernels, _ = grids._as_4d_kernels(weight)
    chosen = [shape[0] - 1, 0] if shape[0] > 1 else [0]
    got = grids.split_grids(weight, chosen, nrow=4, padding=1, normalize=normalize, scale_each=scale_each, pad_value=pad_value)
    assert [o for o, _ in got] == chosen
    for o, grid in got:
        tiles = kernels[o][:, None]
        tiles = _naive_normalize(tiles, scale_each) if normalize else tiles.astype(np.float32)
        np.testing.assert_array_equal(grid, _naive_tile(tiles, 4, 1, pad_value))


def test_split_grids_all_channels_and_errors():
    weight = np.random.default_rng(0).standard_normal((7, 5, 3, 3)).astype(np.float32)
    assert [o for o, _ in grids.split_grids(weight)] == list(range(7))
    assert grids.split_grids(weight, []) == []
    with pytest.raises(ValueError, match="out of range"):
        grids.split_grids(weight, [7])
    with pytest.raises(ValueError, match="nrow"):
        grids.split_grids(weight, nrow=0)


@pytest.mark.full
def test_split_grids_match_torchvision():
    torch = pytest.importorskip("torch")
    vutils = pytest.importorskip("torchvision.utils")
    weight = np.random.default_rng(1).standard_normal((12, 6, 5, 5)).astype(np.float32)
    for o, grid in grids.split_grids(weight):
        expected = vutils.make_grid(torch.from_numpy(weight[o]).unsqueeze(1), normalize=True, scale_each=True, nrow=8)
        np.testing.assert_array_equal(grids.to_uint8(grid), _naive_uint8(expected[:1].numpy()))


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_normalize_without_clamp_equals_with_clamp():
    rng = np.random.default_rng(2)
    tiles = rng.standard_normal((9, 1, 6, 6)).astype(np.float32) * 100
    tiles[3] = 5.0
    tiles[4, 0, 0, 0] = np.inf
    tiles[5, 0, 1, 1] = np.nan
    for scale_each in (True, False):
        np.testing.assert_array_equal(grids.normalize_tiles(tiles, None, scale_each), _naive_normalize(tiles, scale_each))


@pytest.mark.parametrize("channels", [1, 3])
def test_to_uint8_equals_the_plain_formula(channels):
    rng = np.random.default_rng(3)
    grid = rng.uniform(-0.5, 1.5, (channels, 17, 13)).astype(np.float32)
    grid.flat[:6] = [np.nan, np.inf, -np.inf, 0.998, 0.002, -0.0]
    np.testing.assert_array_equal(grids.to_uint8(grid), _naive_uint8(grid))
    np.testing.assert_array_equal(grids.to_uint8(grid.astype(np.float64)), _naive_uint8(grid.astype(np.float64)))


@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    rgb=st.booleans(),
    kind=st.sampled_from(["noise", "smooth", "flat"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=150, deadline=None)
def test_encode_png_decodes_to_the_same_pixels(h, w, rgb, kind, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if rgb else (h, w)
    if kind == "noise":
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    elif kind == "smooth":
        ramp = np.add.outer(np.arange(h) * 3, np.arange(w) * 5) % 256
        pixels = np.broadcast_to(ramp[..., None] if rgb else ramp, shape).astype(np.uint8)
    else:
        pixels = np.full(shape, seed % 256, np.uint8)
    image = Image.open(io.BytesIO(encode_png(pixels)))
    image.load()
    assert image.mode == ("RGB" if rgb else "L")
    assert image.info.get("Software") == "onnxvis"
    np.testing.assert_array_equal(np.asarray(image), pixels)


def test_encode_png_big_and_non_contiguous():
    from PIL import Image

    rng = np.random.default_rng(4)
    big = (np.add.outer(np.arange(900), np.arange(700)) // 7 % 256).astype(np.uint8)
    big[::5] = rng.integers(0, 256, big[::5].shape, dtype=np.uint8)
    rgb = rng.integers(0, 256, (3, 40, 50), dtype=np.uint8).transpose(1, 2, 0)  # as to_uint8 returns it
    for pixels in (big, rgb, big[::2, ::3]):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(pixels)))), pixels)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8),
    np.zeros((0, 4), np.uint8), np.zeros(4, np.uint8)])
def test_encode_png_refuses_what_it_cannot_write(bad):
    with pytest.raises(ValueError):
        encode_png(bad)
