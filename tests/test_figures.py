"""Notebook display, matplotlib figures, and the diverging colour map that keeps the sign of weights."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, asset
from onnxvis import figures
from onnxvis.draw import grids
from onnxvis.draw.grids import GridOptions
from onnxvis.draw.layers import kernel_pixels


def _png_pixels(data: bytes) -> np.ndarray:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return np.asarray(Image.open(io.BytesIO(data)))


# ------------------------------------------------------------------------------------ colour map


def test_diverging_map_is_matplotlibs_rdbu_r():
    import matplotlib

    values = np.linspace(-1, 1, 1001, dtype=np.float32)[None]
    ours = figures.diverging_rgb(values)[0].astype(int)
    theirs = matplotlib.colormaps[figures.DIVERGING_CMAP]((values[0] + 1) / 2, bytes=True)[:, :3].astype(int)
    # matplotlib looks colours up in a 256-entry table (up to 3 levels a step where the map is steep);
    # we interpolate: one table step and a rounding apart at most, and closer on average.
    assert np.abs(ours - theirs).max() <= 4
    assert np.abs(ours - theirs).mean() < 1


def test_diverging_map_is_centred_on_zero_and_keeps_the_sign():
    rgb = figures.diverging_rgb(np.array([[-1.0, -0.3, 0.0, 0.3, 1.0, 7.0]], np.float32)).astype(int)[0]
    assert tuple(rgb[2]) == (247, 247, 247)  # zero is white (ColorBrewer's #f7f7f7)
    for negative in rgb[:2]:
        assert negative[2] > negative[0]  # blue
    for positive in rgb[3:]:
        assert positive[0] > positive[2]  # red
    assert tuple(rgb[5]) == tuple(rgb[4])  # clipped at +1
    # symmetric: -x and +x are equally far from white
    assert abs(int(rgb[1].sum()) - int(rgb[3].sum())) < 40


def test_nan_is_padding_in_the_pad_colour():
    rgb = figures.diverging_rgb(np.array([[np.nan, 0.0]], np.float32), pad_value=1.0)
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(figures.diverging_rgb(np.array([[np.nan]]), pad_value=0.0)[0, 0]) == (0, 0, 0)


def test_signed_kernels_scale_each_slice_by_its_largest_magnitude():
    w = np.zeros((2, 2, 2, 2), np.float32)
    w[0, 0] = [[1, -4], [2, 0]]
    w[0, 1] = [[0.5, 0], [0, 0]]
    w[1, 0] = [[-3, 0], [0, 0]]  # w[1, 1] stays all zero
    s = figures.signed_kernels(w)
    assert np.allclose(s[0, 0], [[0.25, -1], [0.5, 0]])
    assert np.allclose(s[0, 1], [[1, 0], [0, 0]])
    assert s[1, 0, 0, 0] == -1 and np.all(s[1, 1] == 0)
    together = figures.signed_kernels(w, scale_each=False)
    assert np.allclose(together, w / 4)
    one_by_one = np.array([[[[2.0]], [[-1.0]]]], np.float32)
    assert np.allclose(figures.signed_kernels(one_by_one), [[[[1.0]], [[-0.5]]]])  # a heat map is scaled as one


def test_diverging_kernel_pixels_show_the_sign_of_each_weight():
    w = np.zeros((1, 2, 3, 3), np.float32)
    w[0, 0, 0, 0] = -2.0
    w[0, 0, 2, 2] = 2.0
    w[0, 1, 1, 1] = 0.5
    pixels, picture = kernel_pixels(w, GridOptions(padding=1), colormap="diverging")
    assert picture.layout == "mosaic" and pixels.shape == (1 + 4, 1 + 2 * 4, 3)
    assert tuple(pixels[0, 0]) == (0, 0, 0)  # black padding (pad value 0)
    tile0 = pixels[1:4, 1:4].astype(int)
    assert tuple(tile0[0, 0]) == (5, 48, 97)  # -2, the largest magnitude: the map's deepest blue
    assert tuple(tile0[2, 2]) == (103, 0, 31)  # +2: its deepest red
    assert tuple(tile0[1, 1]) == (247, 247, 247)  # 0: white
    tile1 = pixels[1:4, 5:8].astype(int)
    assert tuple(tile1[1, 1]) == tuple(tile0[2, 2])  # 0.5 is its slice's largest: as red as +2


def test_rgb_layers_in_diverging_show_the_three_slices_side_by_side():
    w = np.random.default_rng(0).standard_normal((10, 3, 5, 5)).astype(np.float32)
    pixels, picture = kernel_pixels(w, GridOptions(nrow=4, padding=1), colormap="diverging")
    assert picture.layout == "slices side by side"
    # 4 kernels a row, 3 slices each: 12 tiles of 5+1 pixels; 10 kernels = 30 tiles = 3 rows
    assert pixels.shape == (1 + 3 * 6, 1 + 12 * 6, 3)
    capped, small = kernel_pixels(w, GridOptions(nrow=4, padding=1), max_tiles=9, colormap="diverging")
    assert small.shown_out_channels == 3 and small.truncated


def test_cli_kernels_colormap_diverging(cli, make_conv_model, tmp_path):
    w = np.random.default_rng(3).standard_normal((6, 4, 3, 3)).astype(np.float32)
    done = cli("kernels", make_conv_model(w), "--colormap", "diverging", "--split", "-o", tmp_path / "d")
    assert done.returncode == 0, done.stderr
    main, *split = [Path(p) for p in done.stdout.split()]
    expected, _ = kernel_pixels(w, GridOptions(), colormap="diverging")
    assert np.array_equal(np.asarray(Image.open(main)), expected)
    assert len(split) == 6
    tiles = np.asarray(Image.open(split[0])).astype(int)
    slice0 = w[0, 0]
    top_left = tiles[2:5, 2:5]  # first tile after 2 pixels of padding
    neg = slice0 < -0.2 * np.abs(slice0).max()
    pos = slice0 > 0.2 * np.abs(slice0).max()
    assert np.all(top_left[neg][:, 2] > top_left[neg][:, 0])
    assert np.all(top_left[pos][:, 0] > top_left[pos][:, 2])
    bad = cli("kernels", make_conv_model(w), "--colormap", "rainbow", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "diverging" in bad.stderr


def test_diverging_kernels_need_no_matplotlib(make_conv_model, tmp_path):
    model = make_conv_model(np.random.default_rng(4).standard_normal((2, 3, 3, 3)).astype(np.float32))
    code = (
        "import sys; from onnxvis.cli import main; "
        f"rc = main(['kernels', {str(model)!r}, '--colormap', 'diverging', '-o', {str(tmp_path / 'o')!r}]); "
        "print('MPL' if 'matplotlib' in sys.modules else 'NO-MPL', rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip().endswith("NO-MPL 0"), done.stdout + done.stderr


# ------------------------------------------------------------------------------------ notebooks


def test_picture_shows_itself_as_png():
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    picture = figures.Picture(pixels, "a <title>")
    assert np.array_equal(_png_pixels(picture._repr_png_()), pixels)


def test_pictures_show_as_html_with_every_image_and_title():
    pictures = figures.Pictures([figures.Picture(np.full((4, 4), 10 * i, np.uint8), f"layer <{i}>") for i in range(3)])
    html = pictures._repr_html_()
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(sources) == 3
    for i, data in enumerate(sources):
        assert np.all(_png_pixels(base64.b64decode(data)) == 10 * i)
    assert "layer &lt;2&gt;" in html and "<2>" not in html


def test_notebook_kernels_are_the_cli_pictures(cli, tmp_path):
    model = asset("models/cifar10_tutorial_pytorch.onnx")
    pictures = figures.kernels(model)
    done = cli("kernels", model, "-o", tmp_path / "k")
    files = [Path(p) for p in done.stdout.split()]
    assert len(pictures) == len(files) == 4
    for picture, path in zip(pictures, files, strict=True):
        assert np.array_equal(picture.pixels, np.asarray(Image.open(path)))
    assert pictures[0].title.startswith("0 ") and "12x3x5x5" in pictures[0].title
    assert figures.kernels(model, layers="1", colormap="diverging")[0].pixels.shape[-1] == 3


def test_notebook_fmaps(tmp_path):
    model = asset("models/mnist_cntk.onnx")
    image = asset("images/skimage_camera.png")
    pictures = figures.fmaps(model, image, layers="all")
    assert len(pictures) == 2
    assert "feature maps" in pictures[1].title
    from onnxvis.engine.shortcuts import feature_maps
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    opened = Model.open(model)
    layers = find_conv_layers(opened)
    maps = feature_maps(opened, image, layers[:1]).maps[layers[0]]
    assert np.array_equal(pictures[0].pixels, grids.to_uint8(grids.fmap_grid(maps)))


# ------------------------------------------------------------------------------------ matplotlib


def _image_and_colorbar(fig):
    main, bar = fig.axes  # the picture and its colour bar
    (image,) = main.get_images()
    return main, bar, image


def test_kernel_figure_has_a_title_a_colour_bar_and_a_zero_centred_map():
    w = np.random.default_rng(5).standard_normal((8, 3, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = -5.0  # the largest magnitude is negative
    fig = figures.kernel_figure(w, title="conv1")
    main, bar, image = _image_and_colorbar(fig)
    assert main.get_title() == "conv1"
    assert bar.get_ylabel() == "weight"
    low, high = image.get_clim()
    assert low == -5.0 and high == 5.0  # symmetric: white is exactly zero
    assert image.get_cmap().name.startswith(figures.DIVERGING_CMAP)
    shown = image.get_array()
    assert np.isclose(shown.min(), -5.0)  # the picture holds the weights themselves
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert _png_pixels(buffer.getvalue()).shape[0] > 100


def test_kernel_figure_of_a_model_layer():
    fig = figures.kernel_figure(asset("models/mnist_cntk.onnx"), layer=1)
    main, bar, image = _image_and_colorbar(fig)
    assert main.get_title().startswith("1 ") and "16x8x5x5" in main.get_title()
    low, high = image.get_clim()
    assert low == -high > -np.inf


def test_fmap_figure_with_colour_bar(tmp_path):
    fig = figures.fmap_figure(asset("models/mnist_cntk.onnx"), asset("images/skimage_camera.png"), layer=0)
    main, bar, image = _image_and_colorbar(fig)
    assert "feature maps" in main.get_title()
    assert bar.get_ylabel() == "activation"
    maps = np.random.default_rng(6).standard_normal((4, 6, 6)).astype(np.float32)
    fig = figures.fmap_figure(maps, cmap=figures.DIVERGING_CMAP, colorbar=False, title="t")
    (ax,) = fig.axes
    low, high = ax.get_images()[0].get_clim()
    assert low == -high == -float(np.abs(maps).max())
    with pytest.raises(Exception, match="needs an image"):
        figures.fmap_figure(asset("models/mnist_cntk.onnx"))


def test_importing_figures_does_not_import_matplotlib():
    code = "import sys, onnxvis.figures; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr
