"""--zoom N (nearest neighbour) on kernels, fmaps and report, and --nrow auto (a near-square grid) used by the
report and the page (issue 25, items 16 and 17). The defaults stay torchvision's picture."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from conftest import asset, call_onnxvis
from onnxvis.draw import grids
from onnxvis.draw.grids import AUTO, GridOptions
from onnxvis.errors import OnnxvisError

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("count, expected", [(1, 1), (2, 2), (16, 4), (64, 8), (65, 9), (1000, 32)])
def test_auto_columns_make_a_near_square_grid_of_square_tiles(count, expected):
    assert grids.auto_columns(count, 13, 13) == expected


def test_auto_columns_follow_the_tiles_shape():
    """Wide tiles (a 1-D strip, a 48x192 text line) get fewer columns: the picture, not the count, is square."""
    columns = grids.auto_columns(64, 50, 194)
    rows = -(-64 // columns)
    assert columns < 8 and 0.5 < (rows * 50) / (columns * 194) < 2


def test_a_thousand_maps_at_nrow_auto_are_near_square_not_a_strip():
    maps = np.random.default_rng(0).standard_normal((1000, 13, 13)).astype(np.float32)
    strip = grids.fmap_pixels(maps, GridOptions())
    square = grids.fmap_pixels(maps, GridOptions(nrow=AUTO))
    assert strip.shape == (2 + 125 * 15, 2 + 8 * 15)  # the default: make_grid's nrow 8
    assert square.shape == (2 + 32 * 15, 2 + 32 * 15)
    # the same tiles, placed in other cells: cell 40 is row 1, column 8 at auto, row 5 column 0 at 8
    assert np.array_equal(square[17:30, 2 + 8 * 15: 15 + 8 * 15], strip[2 + 5 * 15: 15 + 5 * 15, 2:15])


def test_zoom_repeats_each_pixel():
    maps = np.random.default_rng(1).standard_normal((5, 4, 3)).astype(np.float32)
    once = grids.fmap_pixels(maps, GridOptions())
    thrice = grids.fmap_pixels(maps, GridOptions(zoom=3))
    assert thrice.shape == (once.shape[0] * 3, once.shape[1] * 3)
    assert np.array_equal(thrice[::3, ::3], once) and np.array_equal(thrice[2::3, 1::3], once)


@pytest.mark.parametrize("options", [{"zoom": 0}, {"zoom": 33}, {"nrow": "wide"}, {"nrow": 0}])
def test_bad_grid_options_are_refused_with_their_setting(options):
    with pytest.raises(OnnxvisError) as info:
        GridOptions(**options)
    assert info.value.setting in options


def test_kernels_zoom_on_squeezenet_conv1(tmp_path):
    """Its 42x42 conv1 grid, at --zoom 8: 336x336, the same picture pixel for pixel; without --zoom, unchanged."""
    plain = call_onnxvis("kernels", str(asset(SQUEEZENET)), "--layers", "0", "-o", str(tmp_path / "a"))
    zoomed = call_onnxvis("kernels", str(asset(SQUEEZENET)), "--layers", "0", "--zoom", "8", "-o", str(tmp_path / "b"))
    assert plain.returncode == 0 and zoomed.returncode == 0, plain.stderr + zoomed.stderr
    small, big = png(plain.stdout.split()[0]), png(zoomed.stdout.split()[0])
    assert small.shape == (42, 42, 3) and big.shape == (336, 336, 3)
    assert np.array_equal(big[::8, ::8], small) and np.array_equal(big[7::8, 3::8], small)


def test_fmaps_zoom_and_nrow_auto(tmp_path):
    photo = str(asset("images/skimage_coffee.png"))
    base = call_onnxvis("fmaps", str(asset(SQUEEZENET)), photo, "--layers", "-1", "-o", str(tmp_path / "a"))
    auto = call_onnxvis("fmaps", str(asset(SQUEEZENET)), photo, "--layers", "-1", "--nrow", "auto", "--zoom", "2",
                        "-o", str(tmp_path / "b"))
    assert base.returncode == 0 and auto.returncode == 0, base.stderr + auto.stderr
    strip, square = png(base.stdout.split()[0]), png(auto.stdout.split()[0])
    assert strip.shape[0] > 10 * strip.shape[1]  # conv10's 1000 maps at nrow 8
    assert square.shape[0] == square.shape[1] == 2 * (2 + 32 * 15)  # 13x13 maps, 32 columns, zoom 2
    bad = call_onnxvis("fmaps", str(asset(SQUEEZENET)), photo, "--nrow", "wide", "-o", str(tmp_path / "c"))
    assert bad.returncode == 2 and "--nrow" in bad.stderr and "auto" in bad.stderr


def _images(html: str, after: str = "") -> list[np.ndarray]:
    """The PNGs of the page, or those of the figures that follow a heading ending in ``after``."""
    pattern = (re.escape(after) + r'</h3>.*?' if after else "") + r'data:image/png;base64,([^"]+)"'
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d)))) for d in re.findall(pattern, html, flags=re.S)]


def test_report_maps_are_near_square_by_default_and_zoom(tmp_path):
    from onnxvis.engine.inspector import Inspector
    from onnxvis.report import build_report

    with Inspector(asset(SQUEEZENET)) as insp:
        layer = insp.select("-1")
        html = build_report(insp, [asset("images/skimage_coffee.png")], fmap_layers=layer)
        zoomed = build_report(insp, [asset("images/skimage_coffee.png")], fmap_layers=layer, grid=GridOptions(nrow=AUTO, zoom=2))
    maps = _images(html, "feature maps")
    assert maps and all(0.8 < p.shape[0] / p.shape[1] < 1.25 for p in maps), [p.shape for p in maps]
    kernels = _images(html)[0]
    assert _images(zoomed)[0].shape[:2] == (2 * kernels.shape[0], 2 * kernels.shape[1])


def test_the_page_draws_a_wide_layer_near_square():
    from onnxvis.engine.inspector import Inspector
    from onnxvis.serve.explorer import Explorer

    explorer = Explorer(Inspector(asset(SQUEEZENET)), cam=None)
    try:
        photo = explorer.add_photo(asset("images/skimage_coffee.png").read_bytes())
        last = len(explorer.inspector.layers) - 1
        picture = np.asarray(Image.open(io.BytesIO(explorer.fmaps_png(photo.id, last))))
    finally:
        explorer.close()
    assert 0.8 < picture.shape[0] / picture.shape[1] < 1.25, picture.shape
