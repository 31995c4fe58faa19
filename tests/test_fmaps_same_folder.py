"""A second fmaps run into the same folder with another photo does not silently replace the first one's
pictures (issue 25, item 10): a picture is replaced only by a picture of the same image."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from test_class_scores import run_cli

from conftest import conv_model
from onnxvis.outdir import MANIFEST, OutputDir


def photo(path, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def test_another_photo_into_the_same_folder_is_refused(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    conv_model(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), path=model)
    cat, dog = photo(tmp_path / "cat.png", 1), photo(tmp_path / "dog.png", 2)
    out = tmp_path / "out"
    code, first, err = run_cli(capsys, "fmaps", model, cat, "-o", out)
    assert code == 0, err
    (picture,) = first.split()
    before = open(picture, "rb").read()
    code, second, err = run_cli(capsys, "fmaps", model, dog, "-o", out)
    assert code == 2 and second == "" and len(err.splitlines()) == 1
    assert f"holds what onnxvis drew from {cat.resolve()}, not from {dog.resolve()}; choose another output folder" in err
    assert err.rstrip().endswith("(set with -o DIR)")
    assert open(picture, "rb").read() == before  # the cat's maps are still there
    code, third, err = run_cli(capsys, "fmaps", model, cat, "-o", out)  # the same photo again: replaced, as always
    assert code == 0 and third == first, err
    code, _, err = run_cli(capsys, "fmaps", model, dog, "-o", tmp_path / "out_dog")
    assert code == 0, err


def test_a_folder_of_the_same_name_from_another_image_is_refused(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    conv_model(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), path=model)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = [photo(tmp_path / "a" / "cat.png", 1), photo(tmp_path / "a" / "owl.png", 3)]
    code, _, err = run_cli(capsys, "fmaps", model, *first, "-o", tmp_path / "out")
    assert code == 0, err
    other = [photo(tmp_path / "b" / "cat.png", 4), photo(tmp_path / "b" / "fox.png", 5)]  # another cat.jpg: folder cat/ again
    code, _, err = run_cli(capsys, "fmaps", model, *other, "-o", tmp_path / "out")
    assert code == 2 and "cat/fmaps_00_conv0.png holds what onnxvis drew from" in err


def test_the_manifest_records_what_a_file_was_made_from(tmp_path):
    out = OutputDir(tmp_path)
    path = out.write_bytes(out.path_for("x", ".png"), b"1", made_from="/photos/cat.png")
    line = json.loads((tmp_path / MANIFEST).read_text().splitlines()[-1])
    assert line[0] == "x.png" and line[3] == "/photos/cat.png"
    again = OutputDir(tmp_path)  # a later run reads it back
    again.write_bytes(again.path_for("x", ".png"), b"2", made_from="/photos/cat.png")
    try:
        OutputDir(tmp_path).write_bytes(path, b"3", made_from="/photos/dog.png")
    except Exception as exc:
        assert "holds what onnxvis drew from /photos/cat.png" in str(exc)
    else:
        raise AssertionError("replaced a picture of another image")
    assert path.read_bytes() == b"2"
    plain = OutputDir(tmp_path)  # a writer that says nothing (kernels, a report) replaces its own files as before
    plain.write_bytes(path, b"4")
    OutputDir(tmp_path).write_bytes(path, b"5", made_from="/photos/dog.png")  # nothing recorded now: allowed
    assert path.read_bytes() == b"5"
