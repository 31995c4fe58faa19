"""--format tensorboard: event files that TensorBoard's own reader reads, holding the PNGs' pictures."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, asset, run_onnxvis

pytest.importorskip("tensorboard", reason="the tensorboard package is not installed (pip install 'onnxvis[tensorboard]')")

from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

from onnxvis.write import tensorboard as tb  # noqa: E402


def _written(done) -> list[Path]:
    return [Path(line) for line in done.stdout.splitlines() if line.strip()]


def _events(path: Path) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.IMAGES: 0})
    acc.Reload()
    return acc


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_masked_crc32c_matches_the_standard_check_value():
    # CRC-32C of "123456789" is 0xE3069283 (RFC 3720); TFRecord masks it.
    crc = 0xE3069283
    expected = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert tb.masked_crc32c(b"123456789") == expected
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as pure_python

    assert tb.masked_crc32c(b"123456789", pure_python) == expected
    data = os.urandom(5000)
    assert tb.masked_crc32c(data) == tb.masked_crc32c(data, pure_python)


def test_records_pass_tensorboards_crc_checks(tmp_path):
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New

    events = tb.EventFile()
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    from onnxvis.outdir import OutputDir
    from onnxvis.write.png import encode_png

    events.add_png("kernels/00_a", encode_png(pixels), 4, 4, 3, step=7)
    path = events.save(OutputDir(tmp_path), "test")
    assert "tfevents" in path.name
    reader = PyRecordReader_New(str(path))
    records = []
    while True:
        try:
            reader.GetNext()  # raises DataLossError on a bad CRC
        except errors.OutOfRangeError:
            break
        records.append(reader.record())
    assert len(records) == 2  # the file-version event, then the image
    from tensorboard.compat.proto import event_pb2

    first, second = (event_pb2.Event.FromString(r) for r in records)
    assert first.file_version == "brain.Event:2"
    assert second.step == 7 and second.summary.value[0].tag == "kernels/00_a"
    # A flipped byte is caught by the reader: the CRC is really checked.
    damaged = bytearray(path.read_bytes())
    damaged[-10] ^= 0xFF
    bad = tmp_path / "bad.tfevents"
    bad.write_bytes(bytes(damaged))
    reader = PyRecordReader_New(str(bad))
    reader.GetNext()
    with pytest.raises(errors.DataLossError):
        reader.GetNext()


def test_kernels_png_and_tensorboard_hold_the_same_images(cli, make_conv_model, tmp_path):
    weight = np.random.default_rng(0).standard_normal((5, 3, 4, 4)).astype(np.float32)
    model = make_conv_model(weight, name="conv/first")
    out = tmp_path / "out"
    done = cli("kernels", model, "--split", "--format", "png,tensorboard", "-o", out)
    assert done.returncode == 0, done.stderr
    files = _written(done)
    (event_file,) = [f for f in files if "tfevents" in f.name]
    pngs = [f for f in files if f.suffix == ".png"]
    assert len(pngs) == 1 + 5
    acc = _events(out)  # TensorBoard reads the folder, as `tensorboard --logdir` does
    tags = acc.Tags()["images"]
    assert sorted(tags) == ["kernels/00_conv_first", "kernels_split/00_conv_first"]
    (grid,) = acc.Images("kernels/00_conv_first")
    main_png = out / "kernels_00_conv_first.png"
    assert main_png in pngs
    assert np.array_equal(_pixels(grid.encoded_image_string), np.asarray(Image.open(main_png)))
    assert (grid.height, grid.width) == np.asarray(Image.open(main_png)).shape[:2]
    split = acc.Images("kernels_split/00_conv_first")
    assert [e.step for e in split] == [0, 1, 2, 3, 4]  # one step per output channel
    for event in split:
        png = out / "kernels_00_conv_first_split" / f"out{event.step:04d}.png"
        assert np.array_equal(_pixels(event.encoded_image_string), np.asarray(Image.open(png)))
    assert event_file.parent == out


def test_tensorboard_alone_writes_no_png_and_a_rerun_replaces_the_file(cli, make_conv_model, tmp_path):
    weight = np.random.default_rng(1).standard_normal((3, 2, 3, 3)).astype(np.float32)
    model = make_conv_model(weight)
    out = tmp_path / "tb"
    for _ in range(2):
        done = cli("kernels", model, "--format", "tensorboard", "-o", out)
        assert done.returncode == 0, done.stderr
        (written,) = _written(done)
        assert "tfevents" in written.name
    assert not list(out.glob("*.png"))
    assert len(list(out.glob("*tfevents*"))) == 1  # replaced, not a second copy of every image
    reference = cli("kernels", model, "-o", tmp_path / "png")
    (png,) = _written(reference)
    (image,) = _events(out).Images("kernels/00_conv0")
    assert np.array_equal(_pixels(image.encoded_image_string), np.asarray(Image.open(png)))


def test_diverging_kernels_reach_tensorboard_in_colour(cli, make_conv_model, tmp_path):
    weight = np.random.default_rng(2).standard_normal((4, 4, 3, 3)).astype(np.float32)
    done = cli("kernels", make_conv_model(weight), "--colormap", "diverging", "--format", "png,tensorboard", "-o", tmp_path / "d")
    assert done.returncode == 0, done.stderr
    (image,) = _events(tmp_path / "d").Images("kernels/00_conv0")
    pixels = _pixels(image.encoded_image_string)
    assert pixels.ndim == 3 and pixels.shape[2] == 3
    png = [f for f in _written(done) if f.suffix == ".png"][0]
    assert np.array_equal(pixels, np.asarray(Image.open(png)))


def test_fmaps_of_a_real_model_in_tensorboard(cli, tmp_path):
    model = asset("models/mnist_cntk.onnx")
    image = asset("images/skimage_camera.png")
    done = cli("fmaps", model, image, "--layers", "all", "--format", "png,tensorboard", "-o", tmp_path / "f")
    assert done.returncode == 0, done.stderr
    pngs = sorted(f for f in _written(done) if f.suffix == ".png")
    assert len(pngs) == 2
    acc = _events(tmp_path / "f")
    tags = sorted(acc.Tags()["images"])
    assert tags == ["fmaps/" + p.stem[len("fmaps_"):] for p in pngs]
    for tag, png in zip(tags, pngs, strict=True):
        (image_event,) = acc.Images(tag)
        assert np.array_equal(_pixels(image_event.encoded_image_string), np.asarray(Image.open(png)))


def test_kernels_of_every_layer_of_a_real_model(cli, tmp_path):
    model = asset("models/cifar10_tutorial_pytorch.onnx")
    done = cli("kernels", model, "--format", "png,tensorboard", "-o", tmp_path / "k")
    assert done.returncode == 0, done.stderr
    pngs = [f for f in _written(done) if f.suffix == ".png"]
    acc = _events(tmp_path / "k")
    assert len(acc.Tags()["images"]) == len(pngs) == 4
    for png in pngs:
        (image_event,) = acc.Images("kernels/" + png.stem[len("kernels_"):])
        assert np.array_equal(_pixels(image_event.encoded_image_string), np.asarray(Image.open(png)))


def test_unknown_format_is_a_user_error(cli, make_conv_model, tmp_path):
    done = cli("kernels", make_conv_model(np.ones((2, 1, 3, 3), np.float32)), "--format", "png,svg", "-o", tmp_path / "x")
    assert done.returncode == 2
    assert "unknown output format 'svg'" in done.stderr and "tensorboard" in done.stderr


def test_missing_tensorboard_package_says_how_to_install_it(make_conv_model, tmp_path):
    blocker = tmp_path / "block"
    (blocker / "tensorboard").mkdir(parents=True)
    (blocker / "tensorboard" / "__init__.py").write_text("raise ImportError('tensorboard is blocked for this test')\n")
    model = make_conv_model(np.ones((2, 1, 3, 3), np.float32))
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = run_onnxvis("kernels", model, "--format", "png,tensorboard", "-o", tmp_path / "none", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "pip install 'onnxvis[tensorboard]'" in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "none").exists()  # checked before any work, even the output folder


def test_tfrecord_framing():
    record = tb.tfrecord(b"abc")
    (length,) = struct.unpack("<Q", record[:8])
    assert length == 3 and record[12:15] == b"abc" and len(record) == 8 + 4 + 3 + 4
    assert struct.unpack("<I", record[8:12])[0] == tb.masked_crc32c(record[:8])
    assert struct.unpack("<I", record[15:])[0] == tb.masked_crc32c(b"abc")
