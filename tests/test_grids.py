"""make_grid and the layouts: parity with torchvision (torch as the oracle) and the edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from onnxvis.draw import grids


def _torch_pixels(tensor, **kwargs) -> np.ndarray:
    """What torchvision's save_image(make_grid(...)) writes, as an (H, W, 3) uint8 array."""
    torch = pytest.importorskip("torch")
    tv_utils = pytest.importorskip("torchvision.utils")
    grid = tv_utils.make_grid(torch.from_numpy(np.ascontiguousarray(tensor)), **kwargs)
    # save_image's conversion, verbatim
    return grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def _assert_pixels_match(ours: np.ndarray, theirs: np.ndarray) -> None:
    ours = _as_rgb(ours)
    assert ours.shape == theirs.shape
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.max() <= 1, f"max difference {diff.max()} grey levels"
    assert (diff > 0).mean() < 0.001, f"{(diff > 0).mean():.4%} of values differ"


CASES = [
    ((64, 3, 11, 11), dict(nrow=8, padding=2, normalize=True, scale_each=True)),
    ((10, 3, 5, 5), dict(nrow=4, padding=0, normalize=True, scale_each=False)),
    ((7, 1, 9, 4), dict(nrow=3, padding=5, normalize=True, scale_each=True, pad_value=0.5)),
    ((5, 3, 6, 6), dict(nrow=8, padding=2, normalize=False)),
    ((12, 3, 4, 4), dict(normalize=True, value_range=(-0.5, 0.5))),
    ((1, 3, 8, 8), dict(normalize=True, scale_each=True)),
]


@pytest.mark.full
@pytest.mark.parametrize("shape,kwargs", CASES)
def test_make_grid_matches_torchvision(shape, kwargs):
    rng = np.random.default_rng(abs(hash(shape)) % 2**32)
    tensor = (rng.standard_normal(shape) * rng.uniform(0.01, 3)).astype(np.float32)
    theirs = _torch_pixels(tensor, **kwargs)
    ours = grids.to_uint8(grids.make_grid(tensor, **kwargs))
    _assert_pixels_match(ours, theirs)


@pytest.mark.full
def test_make_grid_two_channel_floats_match_torchvision():
    torch = pytest.importorskip("torch")
    tv_utils = pytest.importorskip("torchvision.utils")
    tensor = np.random.default_rng(2).standard_normal((9, 2, 3, 3)).astype(np.float32)
    theirs = tv_utils.make_grid(torch.from_numpy(tensor), nrow=2, normalize=True, scale_each=True).numpy()
    ours = grids.make_grid(tensor, nrow=2, normalize=True, scale_each=True)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.full
@pytest.mark.parametrize("shape", [(6, 6), (1, 6, 6), (3, 6, 6)])
def test_make_grid_single_image_shapes_match_torchvision(shape):
    tensor = np.random.default_rng(1).random(shape, dtype=np.float32)
    _assert_pixels_match(grids.to_uint8(grids.make_grid(tensor, normalize=True)), _torch_pixels(tensor, normalize=True))


def test_constant_kernel_is_black():
    tiles = np.full((4, 3, 5, 5), 0.7, dtype=np.float32)
    tiles[1] = np.linspace(-1, 1, 75, dtype=np.float32).reshape(3, 5, 5)
    pixels = grids.to_uint8(grids.make_grid(tiles, nrow=4, padding=0, normalize=True, scale_each=True))
    assert pixels[:, :5].max() == 0, "a constant tile must come out black"
    assert pixels[:, 5:10].max() == 255


def test_batch_of_one_has_no_padding():
    tile = np.random.default_rng(0).random((1, 3, 7, 5), dtype=np.float32)
    grid = grids.make_grid(tile, padding=4, normalize=True)
    assert grid.shape == (3, 7, 5)


def test_one_channel_is_copied_to_three():
    tiles = np.random.default_rng(0).random((4, 1, 3, 3), dtype=np.float32)
    grid = grids.make_grid(tiles, nrow=2, padding=1)
    assert grid.shape == (3, 9, 9)
    assert np.array_equal(grid[0], grid[1]) and np.array_equal(grid[1], grid[2])
    assert np.array_equal(grid[0, 1:4, 1:4], tiles[0, 0])


def test_grid_geometry_and_pad_value():
    tiles = np.zeros((5, 3, 2, 2), dtype=np.float32)
    grid = grids.make_grid(tiles, nrow=3, padding=1, pad_value=1.0)
    # 3 columns, 2 rows, each cell 2 + 1, plus the final padding
    assert grid.shape == (3, 2 * 3 + 1, 3 * 3 + 1)
    assert grid[0, 0].min() == 1.0  # top padding row
    assert grid[0, 4:6, 7:9].min() == 1.0  # the empty sixth cell is padding
    assert grid[0, 1:3, 1:3].max() == 0.0


def test_to_uint8_rounds_like_save_image():
    values = np.array([[[0.0, 0.5, 1.0, -3.0, 7.0, 0.001, 0.998]]], dtype=np.float32)
    expected = np.clip(values * 255 + 0.5, 0, 255).astype(np.uint8)[0]
    assert np.array_equal(grids.to_uint8(values), expected)
    assert grids.to_uint8(values).tolist() == [[0, 128, 255, 0, 255, 0, 254]]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError):
        grids.make_grid([[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        grids.make_grid(np.zeros((0, 3, 2, 2), np.float32))
    with pytest.raises(ValueError):
        grids.make_grid(np.zeros((2, 3, 2, 2), np.float32), nrow=0)
    with pytest.raises(ValueError):
        grids.make_grid(np.zeros((2, 3, 2, 2, 2), np.float32))


# The tutorial's views of AlexNet-shaped weights, against torchvision on the same numbers.


@pytest.mark.full
def test_kernel_grid_rgb_is_the_tutorials_conv1_view():
    weight = np.random.default_rng(3).standard_normal((64, 3, 11, 11)).astype(np.float32)
    picture = grids.kernel_grid(weight)
    assert picture.layout == "rgb" and not picture.truncated
    _assert_pixels_match(grids.to_uint8(picture.grid), _torch_pixels(weight, normalize=True, scale_each=True, nrow=8))


@pytest.mark.full
def test_split_view_matches_the_tutorial_for_conv1_and_conv2():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    for weight in (rng.standard_normal((64, 3, 11, 11)), rng.standard_normal((192, 64, 5, 5))):
        weight = weight.astype(np.float32)
        channels = [0, 1, 17, weight.shape[0] - 1]
        for o, grid in grids.split_grids(weight, channels):
            theirs = _torch_pixels(torch.from_numpy(weight)[o].unsqueeze(1).numpy(), normalize=True, scale_each=True, nrow=8)
            _assert_pixels_match(grids.to_uint8(grid), theirs)


def test_grey_and_mosaic_layouts():
    rng = np.random.default_rng(5)
    grey = grids.kernel_grid(rng.standard_normal((8, 1, 5, 5)).astype(np.float32))
    assert grey.layout == "grey" and grey.grid.shape == (1, 2 + 7 * 1, 2 + 7 * 8)
    mosaic = grids.kernel_grid(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), nrow=2)
    # one row per output channel, one column per input channel, whatever nrow says
    assert mosaic.layout == "mosaic" and mosaic.grid.shape == (1, 2 + 6 * 5, 2 + 4 * 5)


@pytest.mark.full
def test_mosaic_matches_torchvision_on_slices():
    weight = np.random.default_rng(6).standard_normal((5, 4, 3, 3)).astype(np.float32)
    theirs = _torch_pixels(weight.reshape(20, 1, 3, 3), nrow=4, normalize=True, scale_each=True)
    _assert_pixels_match(grids.to_uint8(grids.kernel_grid(weight).grid), theirs)


def test_heatmap_for_1x1_kernels():
    weight = np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1)
    picture = grids.kernel_grid(weight)
    assert picture.layout == "heatmap" and picture.grid.shape == (1, 4, 3)
    pixels = grids.to_uint8(picture.grid)
    assert pixels[0, 0] == 0 and pixels[3, 2] == 255


def test_strips_and_slices():
    strips = grids.kernel_grid(np.random.default_rng(7).standard_normal((4, 2, 9)).astype(np.float32))
    assert strips.layout == "strips" and strips.grid.shape == (1, 2 + 4 * 3, 2 + 2 * 11)
    slices = grids.kernel_grid(np.random.default_rng(8).standard_normal((2, 3, 4, 5, 5)).astype(np.float32))
    assert slices.layout == "slices" and slices.grid.shape == (1, 2 + 2 * 7, 2 + 12 * 7)


def test_cap_keeps_the_first_output_channels():
    weight = np.random.default_rng(9).standard_normal((100, 16, 3, 3)).astype(np.float32)
    capped = grids.kernel_grid(weight, max_tiles=160)
    assert capped.truncated and capped.shown_out_channels == 10 and capped.total_out_channels == 100
    full = grids.kernel_grid(weight, max_tiles=None)
    assert not full.truncated
    # the capped picture is the top of the full one
    assert np.array_equal(capped.grid, full.grid[:, : capped.grid.shape[1]])


@pytest.mark.full
def test_fmap_grid_matches_torchvision_feature_map_view():
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(10).standard_normal((64, 55, 55)).astype(np.float32)
    theirs = _torch_pixels(torch.from_numpy(maps).unsqueeze(1).numpy(), normalize=True, scale_each=True, nrow=8)
    _assert_pixels_match(grids.to_uint8(grids.fmap_grid(maps)), theirs)
