"""Tests of onnxvis.image.preprocess: torchvision parity (torch as oracle only), presets, odd and bad images."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from onnxvis.errors import OnnxvisError
from onnxvis.image.preprocess import (
    METADATA_KEY,
    PRESETS,
    Preprocess,
    center_crop,
    default_image_path,
    from_metadata,
    load_image,
    preprocess,
    preset,
    resized_size,
    to_layout,
)

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "assets" / "images"
PHOTOS = ["skimage_chelsea.png", "skimage_coffee.png", "skimage_camera.png", "matplotlib_grace_hopper.jpg"]

CIFAR_MEAN = [0.49139968, 0.48215827, 0.44653124]
CIFAR_STD = [0.24703233, 0.24348505, 0.26158768]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def photo(name: str) -> Path:
    path = IMAGES / name
    if not path.is_file():
        pytest.skip(f"shared test photo {path} is absent")
    return path


def transforms():
    """torchvision.transforms, or skip: torch is only an oracle here."""
    pytest.importorskip("torch")
    return pytest.importorskip("torchvision.transforms")


def assert_one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


# --------------------------------------------------------------------------------------------
# Parity with torchvision
# --------------------------------------------------------------------------------------------


@pytest.mark.full
@pytest.mark.parametrize("name", PHOTOS)
def test_cifar10_matches_torchvision_bit_for_bit(name):
    T = transforms()
    path = photo(name)
    with Image.open(path) as img:
        ref = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])(img.convert("RGB"))
    ours = preprocess(load_image(path), preset("cifar10"))
    assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
    assert np.abs(ours - ref.numpy()).max() <= 1e-6
    assert np.array_equal(ours, ref.numpy())  # measured: identical


@pytest.mark.full
@pytest.mark.parametrize("name", PHOTOS)
def test_imagenet_matches_torchvision_bit_for_bit(name):
    T = transforms()
    path = photo(name)
    with Image.open(path) as img:
        ref = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(
            img.convert("RGB")
        )
    ours = preprocess(load_image(path), preset("imagenet"))
    assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
    assert np.abs(ours - ref.numpy()).max() <= 1e-6
    assert np.array_equal(ours, ref.numpy())


@pytest.mark.parametrize(
    "size, resize, crop",
    [
        ((451, 300), 256, 224),  # landscape, like chelsea
        ((300, 451), 256, 224),  # portrait
        ((7, 5), 3, 3),  # tiny, downscale
        ((5, 7), 13, 11),  # upscale, odd crop
        ((10, 6), None, 9),  # crop taller than the image: padded with 0, odd difference
        ((3, 4), None, 8),  # crop larger both ways
        ((1, 1), None, 4),  # 1x1 padded
        ((17, 9), 8, 7),
    ],
)
@pytest.mark.full
def test_resize_and_centre_crop_match_torchvision(size, resize, crop):
    T = transforms()
    img = noise(*size, seed=sum(size))
    steps = ([T.Resize(resize)] if resize else []) + [T.CenterCrop(crop), T.ToTensor()]
    ref = T.Compose(steps)(img).numpy()
    ours = preprocess(img, Preprocess(resize=resize, crop=(crop, crop)))
    assert ours.shape == ref.shape == (3, crop, crop)
    assert np.array_equal(ours, ref)


@pytest.mark.full
def test_grey_model_matches_torchvision_grayscale():
    T = transforms()
    img = load_image(photo("skimage_coffee.png"))
    ref = T.Compose([T.Grayscale(), T.Resize(64), T.CenterCrop(60), T.ToTensor(), T.Normalize([0.5], [0.5])])(img)
    ours = preprocess(img, Preprocess(resize=64, crop=(60, 60), mean=(0.5,), std=(0.5,), color="L"))
    assert ours.shape == (1, 60, 60)
    assert np.array_equal(ours, ref.numpy())


@pytest.mark.full
@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(1, 1000))
def test_resized_size_matches_torchvision(width, height, n):
    pytest.importorskip("torch")
    from torchvision.transforms.functional import _compute_resized_output_size

    h, w = _compute_resized_output_size((height, width), [n])
    assert resized_size(width, height, (n,)) == (w, h)


# --------------------------------------------------------------------------------------------
# Preprocessing arithmetic without torch
# --------------------------------------------------------------------------------------------


def test_unit_scale_is_float32_division_by_255():
    img = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L")
    out = preprocess(img, Preprocess(color="L"))
    expected = (np.arange(256, dtype=np.float32) / np.float32(255)).reshape(1, 16, 16)
    assert out.dtype == np.float32 and np.array_equal(out, expected)


def test_caffe_is_bgr_0_255_minus_bgr_mean():
    img = Image.new("RGB", (5, 4), (10, 20, 30))
    pp = preset("caffe").replace(resize=None, crop=None)
    out = preprocess(img, pp)
    assert out.shape == (3, 4, 5)
    assert np.array_equal(out[:, 0, 0], np.array([30 - 104, 20 - 117, 10 - 123], dtype=np.float32))


def test_tf_preset_maps_to_minus_one_one():
    img = Image.fromarray(np.array([[0, 255]], dtype=np.uint8), "L")
    out = preprocess(img, preset("tf"))
    assert out.shape == (3, 1, 2)
    assert np.allclose(out[:, 0, 0], -1.0) and np.allclose(out[:, 0, 1], 1.0)


def test_other_scale_gives_zero_to_scale():
    img = Image.fromarray(np.array([[0, 255]], dtype=np.uint8), "L")
    out = preprocess(img, Preprocess(scale=2.0, color="L"))
    assert np.allclose(out[0, 0], [0.0, 2.0])


def test_grey_image_into_rgb_model_is_replicated():
    img = noise(9, 7, "L")
    out = preprocess(img, preset("unit"))
    assert out.shape == (3, 7, 9)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
    assert np.array_equal(out[0], np.asarray(img, dtype=np.float32) / np.float32(255))


def test_colour_image_into_grey_model_uses_pil_luma():
    img = noise(9, 7)
    out = preprocess(img, Preprocess(color="L"))
    assert out.shape == (1, 7, 9)
    assert np.array_equal(out[0], np.asarray(img.convert("L"), dtype=np.float32) / np.float32(255))


def test_centre_crop_pads_with_zero_like_torchvision():
    img = Image.new("L", (1, 1), 200)
    out = np.asarray(center_crop(img, (4, 4)))
    expected = np.zeros((4, 4), dtype=np.uint8)
    expected[1, 1] = 200  # left/top padding (4 - 1) // 2 = 1
    assert np.array_equal(out, expected)


def test_preprocess_accepts_rgba_pil_image_directly():
    img = Image.new("RGBA", (3, 2), (10, 20, 30, 0))
    out = preprocess(img, Preprocess(scale=255))
    assert out.shape == (3, 2, 3) and np.array_equal(out[:, 1, 2], [10, 20, 30])


# --------------------------------------------------------------------------------------------
# Presets, JSON and metadata
# --------------------------------------------------------------------------------------------


def test_presets_have_the_documented_values():
    assert set(PRESETS) == {"imagenet", "caffe", "tf", "unit", "raw", "cifar10"}
    imagenet = preset("imagenet")
    assert (imagenet.resize, imagenet.crop, imagenet.mean, imagenet.std, imagenet.color, imagenet.scale) == (
        (256,), (224, 224), tuple(IMAGENET_MEAN), tuple(IMAGENET_STD), "RGB", 1.0
    )
    cifar = preset("CIFAR10")
    assert cifar.resize == (224, 224) and cifar.crop is None
    assert cifar.mean == tuple(CIFAR_MEAN) and cifar.std == tuple(CIFAR_STD)
    caffe = preset("caffe")
    assert caffe.color == "BGR" and caffe.scale == 255 and caffe.mean == (104, 117, 123) and caffe.std == (1, 1, 1)
    assert preset("raw").scale == 255 and preset("unit").scale == 1
    assert preset("tf").mean == (0.5,) * 3 and preset("tf").std == (0.5,) * 3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_json_round_trip_and_describe(name):
    pp = preset(name)
    assert pp.name == name
    assert Preprocess.from_json(pp.to_json()) == pp
    line = pp.describe()
    assert line.startswith(f"{name}: ") and "\n" not in line and pp.color in line


def test_describe_imagenet():
    assert preset("imagenet").describe() == (
        "imagenet: resize 256, crop 224x224, RGB, 0..1, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"
    )
    assert preset("raw").describe().startswith("raw: no resize, RGB, 0..255,")


def test_unknown_preset_lists_valid_names():
    with pytest.raises(OnnxvisError) as info:
        preset("imagenet21k")
    assert_one_line(info.value)
    assert "imagenet21k" in str(info.value) and all(n in str(info.value) for n in PRESETS)


def test_from_metadata_reads_exporter_schema():
    text = json.dumps(
        {"resize": [256], "crop": [224, 224], "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
         "color": "RGB", "scale": 1, "layout": "NCHW"}
    )
    pp = from_metadata({METADATA_KEY: text, "other": "x"})
    assert pp == preset("imagenet").replace(name="metadata")
    exact = from_metadata({METADATA_KEY: json.dumps({"resize": [224, 224], "crop": None, "color": "bgr", "scale": 255})})
    assert exact.resize == (224, 224) and exact.crop is None and exact.color == "BGR" and exact.scale == 255.0


def test_from_metadata_absent_is_none():
    assert from_metadata({}) is None
    assert from_metadata({"producer": "pytorch"}) is None


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[256, 224]",
        json.dumps({"resize": "big"}),
        json.dumps({"resize": [0]}),
        json.dumps({"resize": [1, 2, 3]}),
        json.dumps({"crop": [224.5, 224]}),
        json.dumps({"std": [0, 1, 1]}),
        json.dumps({"mean": ["a", "b", "c"]}),
        json.dumps({"mean": [0.1, 0.2]}),
        json.dumps({"color": "XYZ"}),
        json.dumps({"scale": -1}),
        json.dumps({"resize": [True]}),
    ],
)
def test_malformed_metadata_is_a_user_error(text):
    with pytest.raises(OnnxvisError) as info:
        from_metadata({METADATA_KEY: text})
    assert_one_line(info.value)
    assert METADATA_KEY in str(info.value)


def test_construction_normalises_and_validates():
    pp = Preprocess(resize=256, crop=[224], mean=[1, 2, 3], color="rgb")
    assert pp.resize == (256,) and pp.crop == (224, 224) and pp.mean == (1.0, 2.0, 3.0) and pp.color == "RGB"
    assert pp.replace(resize=(10, 20)).resize == (10, 20) and pp.resize == (256,)
    with pytest.raises(OnnxvisError):
        preset("imagenet").replace(color="L")  # three different means for one channel
    assert preset("tf").replace(color="L").channels == 1  # three equal means collapse


# --------------------------------------------------------------------------------------------
# Odd but valid images
# --------------------------------------------------------------------------------------------


def check(out: np.ndarray, shape: tuple[int, ...]) -> None:
    assert out.dtype == np.float32 and out.shape == shape and np.isfinite(out).all()


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    img = load_image(path)
    assert img.mode == "RGB"
    out = preprocess(img, preset("unit"))
    check(out, (3, 24, 32))
    assert np.allclose(out[:, 12, 16], [1, 0, 0], atol=0.05)  # CMYK (0, 255, 255, 0) is red


def test_16bit_grey_png_maps_full_range(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    path = save(Image.fromarray(values), tmp_path / "grey16.png")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    img = load_image(path)
    assert img.mode == "L"
    assert np.array_equal(np.asarray(img)[0], [0, 1, 128, 255])
    out = preprocess(img, preset("raw"))
    check(out, (3, 1, 4))


def test_32bit_int_image_in_16bit_range(tmp_path):
    img = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I")
    path = save(img, tmp_path / "int32.tif")
    assert np.array_equal(np.asarray(load_image(path)), [[0, 255]])


def test_float_image_in_unit_range(tmp_path):
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    path = save(img, tmp_path / "float.tif")
    assert np.array_equal(np.asarray(load_image(path)), [[0, 128, 255]])


def test_rgba_png_drops_alpha_like_torchvision(tmp_path):
    path = save(Image.new("RGBA", (6, 5), (10, 20, 30, 0)), tmp_path / "rgba.png")
    img = load_image(path)
    assert img.mode == "RGB"
    out = preprocess(img, preset("raw"))
    check(out, (3, 5, 6))
    assert np.array_equal(out[:, 0, 0], [10, 20, 30])


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (4, 3), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 0)
    path = save(img, tmp_path / "palette.png", transparency=0)
    out = preprocess(load_image(path), preset("raw"))
    check(out, (3, 3, 4))
    assert np.array_equal(out[:, 2, 3], [200, 100, 50]) and np.array_equal(out[:, 0, 0], [0, 0, 0])


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_grey_sources_stay_grey(tmp_path, mode):
    img = Image.new(mode, (8, 6), 255 if mode != "LA" else (255, 0))
    path = save(img, tmp_path / f"grey_{mode}.png")
    loaded = load_image(path)
    assert loaded.mode == "L"
    check(preprocess(loaded, Preprocess(color="L")), (1, 6, 8))
    out = preprocess(loaded, preset("imagenet"))
    check(out, (3, 224, 224))
    assert np.allclose(out[:, 0, 0], (1 - np.array(IMAGENET_MEAN)) / IMAGENET_STD, atol=1e-5)


def test_exif_orientation_6_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 10))  # red top-left quadrant as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = save(stored, tmp_path / "rotated.jpg", exif=exif, quality=95)
    img = load_image(path)
    assert img.size == (20, 40)
    out = preprocess(img, preset("unit"))
    check(out, (3, 40, 20))
    assert np.allclose(out[:, 2, 17], [1, 0, 0], atol=0.1)  # stored top-left is now top-right
    assert np.allclose(out[:, 2, 2], [0, 0, 1], atol=0.1)
    assert np.allclose(out[:, 37, 17], [0, 0, 1], atol=0.1)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 3
    out = preprocess(load_image(path), preset("unit"))
    check(out, (3, 8, 10))
    assert np.allclose(out[:, 4, 5], [1, 0, 0])


def test_one_pixel_image(tmp_path):
    path = save(Image.new("RGB", (1, 1), (255, 255, 255)), tmp_path / "one.png")
    out = preprocess(load_image(path), preset("imagenet"))
    check(out, (3, 224, 224))
    assert np.allclose(out[:, 100, 100], (1 - np.array(IMAGENET_MEAN)) / IMAGENET_STD, atol=1e-5)


def test_large_valid_image(tmp_path):
    grad = np.linspace(0, 255, 8000).astype(np.uint8)
    big = Image.fromarray(np.broadcast_to(grad, (6000, 8000)).copy(), "L").convert("RGB")
    path = save(big, tmp_path / "big.jpg", quality=50)
    img = load_image(path)
    assert img.size == (8000, 6000)
    out = preprocess(img, preset("imagenet"))
    check(out, (3, 224, 224))
    assert out[0, 112, 0] < out[0, 112, 223]  # the gradient survives


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def refused(path, **kwargs) -> str:
    with pytest.raises(OnnxvisError) as info:
        load_image(path, **kwargs)
    assert_one_line(info.value)
    return str(info.value)


def test_missing_file(tmp_path):
    assert "not found" in refused(tmp_path / "nope.png")


def test_directory(tmp_path):
    assert "directory" in refused(tmp_path)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"this is a text file, not a picture\n" * 10)
    assert "not an image" in refused(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path, fmt):
    buf = io.BytesIO()
    noise(64, 64).save(buf, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert "truncated or corrupt" in refused(path)


def png_claiming(width: int, height: int) -> bytes:
    """A small valid 1x1 PNG whose IHDR is patched to claim width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(40000, 40000))
    assert path.stat().st_size < 200
    limit_before = Image.MAX_IMAGE_PIXELS
    tracemalloc.start()
    try:
        message = refused(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "pixels" in message
    assert peak < 20_000_000  # far from the 4.8 GB a decode would need
    assert Image.MAX_IMAGE_PIXELS == limit_before  # PIL's global state untouched


def test_own_limit_applies_below_pils_hard_limit(tmp_path):
    # 144 megapixels: PIL only warns (89..179 MP); our default limit of 100 MP refuses it.
    path = tmp_path / "bomb144.png"
    path.write_bytes(png_claiming(12000, 12000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = refused(path)
    assert "12000x12000" in message and "limit" in message


def test_max_pixels_argument(tmp_path):
    path = save(noise(100, 100), tmp_path / "small.png")
    assert "100x100" in refused(path, max_pixels=9_999)
    assert load_image(path, max_pixels=10_000).size == (100, 100)


def test_to_layout():
    chw = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    nchw = to_layout(chw)
    assert nchw.shape == (1, 2, 3, 4) and nchw.dtype == np.float32 and np.array_equal(nchw[0], chw)
    nhwc = to_layout(chw, "nhwc", np.float16)
    assert nhwc.shape == (1, 3, 4, 2) and nhwc.dtype == np.float16 and nhwc.flags.c_contiguous
    assert nhwc[0, 1, 2, 1] == chw[1, 1, 2]
    assert to_layout(chw, dtype=np.float64).dtype == np.float64
    assert np.array_equal(to_layout(np.full((1, 1, 1), 300.4, np.float32), dtype=np.uint8), [[[[255]]]])
    with pytest.raises(OnnxvisError):
        to_layout(chw, "CHWN")


# --------------------------------------------------------------------------------------------
# Default image and imports
# --------------------------------------------------------------------------------------------


def test_default_image_loads():
    path = default_image_path()
    assert path.name == "grace_hopper.jpg" and path.is_file()
    img = load_image(path)
    assert img.mode == "RGB" and img.width > 100 and img.height > 100


@pytest.mark.full  # torch importable, so that its absence from the run means something
def test_importing_preprocess_imports_neither_matplotlib_nor_torch():
    code = (
        "import sys, onnxvis.image.preprocess as p; p.default_image_path(); "
        "bad = [m for m in ('matplotlib', 'torch') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
