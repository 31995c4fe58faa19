"""examples' defaults on the shared SqueezeNet (issue 25, item 14): the layer a reader looks at first, not the
1000-channel classifier; each channel block labelled, with gaps between blocks and rows; a wide layer over
several files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import asset, call_onnxvis
from onnxvis.analysis.examples.find import reader_layer
from onnxvis.engine.inspector import Inspector
from onnxvis.write import examples as wx

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"


def test_squeezenet_defaults_to_its_last_spatial_conv_before_the_classifier():
    with Inspector(asset(SQUEEZENET)) as insp:
        layer = reader_layer(insp)
        last = insp.layers[-1]
    assert last.out_channels == 1000  # conv10, one channel per class
    assert layer.index == last.index - 1 and layer.out_channels == 256  # fire9's expand3x3


def test_a_model_without_a_classifier_conv_keeps_its_last_conv():
    with Inspector(asset("models/mnist_cntk.onnx")) as insp:
        assert reader_layer(insp) is insp.layers[-1]


def test_layouts_split_a_wide_layer_and_name_the_parts():
    parts = wx.layouts_of(1000, 9, 64)
    assert [p.first for p in parts] == list(range(0, 1000, 128)) and parts[-1].channels == 1000 - 7 * 128
    assert wx.part_name("25_conv10", parts[1], len(parts)) == "examples_25_conv10_ch0128-0255"
    assert wx.part_name("0_conv1", wx.layouts_of(64, 9, 64)[0], 1) == "examples_0_conv1"


def test_blocks_are_labelled_and_apart():
    grid = wx.layout(5, 3, 16)  # 5 channels of 3 tiles, 3 blocks a row
    pixels = wx.label_blocks(np.zeros((*grid.size, 3), np.uint8), grid)
    for c in range(5):
        top, left = grid.label_origin(c)
        band = pixels[top : top + wx._LABEL, left : left + 3 * 18]
        assert band.max() > 100, c  # the channel's number is written above its block
        tile_top, _ = grid.origin(c, 0)
        assert tile_top == top + wx._LABEL
    (t0, l0), (_, l1), (t3, _) = grid.origin(0, 2), grid.origin(1, 0), grid.origin(3, 0)
    assert l1 - (l0 + 16) > 2 * wx._PAD  # a gap between two channels' blocks, wider than between tiles
    assert t3 - (t0 + 16) >= wx._LABEL + wx._ROW_GAP  # rows apart, with the next row's labels between


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted(asset("images/imagenet-sample").glob("*.JPEG"))[:6]:
        (folder / path.name).symlink_to(path)
    return folder


def test_the_cli_on_squeezenet_writes_a_wide_default_layer_in_parts(tmp_path, photos):
    result = call_onnxvis("examples", str(asset(SQUEEZENET)), str(photos), "--top", "2", "--preset", "caffe", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    names = sorted(Path(p).name for p in result.stdout.split())
    jpegs = [n for n in names if n.endswith(".jpg")]
    assert len(jpegs) == 2 and jpegs[0].endswith("_ch0000-0127.jpg") and jpegs[1].endswith("_ch0128-0255.jpg"), names
    assert not any("conv10" in n or "_25_" in n for n in names)
    lines = (tmp_path / "out" / next(n for n in names if n.endswith(".jsonl"))).read_text().splitlines()
    assert len(lines) == 256 and json.loads(lines[-1])["channel"] == 255
    for name in jpegs:
        with Image.open(tmp_path / "out" / name) as img:
            assert max(img.size) < 2000
    page = (tmp_path / "out" / "examples.html").read_text()
    assert page.count("<h2 ") == 1 and page.count('id="L24c') == 256 and "p128{" in page
