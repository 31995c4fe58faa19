"""Arrays as images (issue 25, item 3): a .npy file given for the image input, as IMAGE or in a folder, is
what is fed: no preprocessing, the model's layout and dtype, its shape checked; overlays are drawn over the
array shown as a picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_class_scores import run_cli, stand_in

from onnxvis.draw import grids
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError
from onnxvis.image.preprocess import array_picture


def spectrogram_model(path, height=76, width=32):
    """A spectrogram model: 'input_1' [1, 1, 76, 32] float32 -> Conv (4 channels) -> pool -> 3 scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["input_1", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Slice", ["f", "starts", "ends", "axes"], ["y"])]
    inits += [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("starts", 0), ("ends", 3), ("axes", 1))]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, [1, 1, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits,
        value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, height, width])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def conv_output(model, array: np.ndarray) -> np.ndarray:
    """conv0's output for ``array``, from onnxruntime directly: the oracle."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(model))
    proto.graph.output.append(onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["c"], {session.get_inputs()[0].name: array})[0]


@pytest.fixture
def spec(tmp_path):
    array = np.random.default_rng(2).standard_normal((1, 1, 76, 32)).astype(np.float32) * 30 - 7
    path = tmp_path / "spec.npy"
    np.save(path, array)
    return path, array


@pytest.mark.parametrize("how", ["input", "image"])
def test_fmaps_feeds_the_array_as_it_is(tmp_path, capsys, spec, how):
    model = spectrogram_model(tmp_path / "spectro.onnx")
    path, array = spec
    given = ["--input", f"input_1={path}"] if how == "input" else [path]
    code, out, err = run_cli(capsys, "fmaps", model, *given, "-o", tmp_path / "out")
    assert code == 0, err
    (written,) = out.split()
    expected = grids.fmap_pixels(conv_output(model, array)[0], grids.GridOptions())
    np.testing.assert_array_equal(np.asarray(Image.open(written)), expected)
    assert "preprocessing: none: the array is fed as it is (1x1x76x32 float32)" in err
    # and not the default portrait's maps, which a run without the array draws
    code, out2, err2 = run_cli(capsys, "fmaps", model, "-o", tmp_path / "portrait")
    assert code == 0, err2
    assert Image.open(out2.split()[0]).tobytes() != Image.open(written).tobytes()


def test_the_array_is_cast_to_the_input_dtype_and_may_omit_the_batch(tmp_path, spec):
    model = spectrogram_model(tmp_path / "spectro.onnx")
    _, array = spec
    with Inspector(model) as insp:
        prepared = insp.prepare(array[0].astype(np.float64))
        assert prepared.as_is and prepared.array.dtype == np.float32 and prepared.array.shape == (1, 1, 76, 32)
        np.testing.assert_array_equal(prepared.array, array)
        assert prepared.rgb.shape == (76, 32, 3)


@pytest.mark.parametrize(
    "shape, message",
    [((1, 1, 70, 32), "the array in bad.npy has shape [1, 1, 70, 32], but input 'input_1' is [1x1x76x32] (NCHW): dimension 2 must be 76"),
     ((2, 1, 76, 32), "has shape [2, 1, 76, 32], but input 'input_1' is [1x1x76x32] (NCHW); give one example"),
     ((76, 32), "has shape [76, 32], but input 'input_1' is [1x1x76x32]")],
)
def test_an_array_of_another_shape_is_refused_in_one_line(tmp_path, capsys, shape, message):
    model = spectrogram_model(tmp_path / "spectro.onnx")
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    code, out, err = run_cli(capsys, "fmaps", model, tmp_path / "bad.npy", "-o", tmp_path / "out")
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert message in err and "--input" not in err  # given as IMAGE: no flag to blame


def test_an_array_for_the_image_input_is_never_silently_ignored(tmp_path, capsys, spec):
    model = spectrogram_model(tmp_path / "spectro.onnx")
    path, array = spec
    photo = tmp_path / "p.png"
    Image.new("L", (32, 76), 128).save(photo)
    code, _, err = run_cli(capsys, "fmaps", model, photo, "--input", f"input_1={path}", "-o", tmp_path / "out")
    assert code == 2 and "given both an array (--input input_1=" in err and "give one of them" in err
    code, _, err = run_cli(capsys, "fmaps", model, "--input", "input_1=0.5", "-o", tmp_path / "out")
    assert code == 2 and "input 'input_1' is the image input: give it a .npy file" in err
    # the library too: an Inspector given a value for its image input refuses to run rather than feed a photo
    with Inspector(model, inputs={"input_1": array}) as insp, pytest.raises(OnnxvisError, match="the image input"):
        insp.outputs(photo)
    assert not (tmp_path / "out").exists()


def test_predict_walks_folders_for_arrays(tmp_path, capsys):
    model = stand_in(tmp_path / "logits.onnx", "logits")
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((3, 16, 16)).astype(np.float32) * (i + 1) for i in range(2)]
    for i, a in enumerate(arrays):
        np.save(folder / f"a{i}.npy", a)
    Image.new("RGB", (20, 20), (200, 10, 10)).save(folder / "photo.png")
    code, out, err = run_cli(capsys, "predict", model, folder, "--format", "jsonl", "--top", "1")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image"].rsplit("/", 1)[1] for line in lines] == ["a0.npy", "a1.npy", "photo.png"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for line, a in zip(lines, arrays, strict=False):
        assert line["top"][0]["class"] == int(np.argmax(session.run(None, {"x": a[None]})[0]))


def test_cam_draws_over_the_array_shown_as_a_picture(tmp_path, capsys, spec):
    model = spectrogram_model(tmp_path / "spectro.onnx")
    path, array = spec
    code, out, err = run_cli(capsys, "cam", model, path, "--method", "eigen", "--format", "png,npy", "-o", tmp_path / "cam")
    assert code == 0, err
    pngs = [p for p in out.split() if p.endswith(".png")]
    assert pngs and np.asarray(Image.open(pngs[0])).shape == (76, 32, 3)


def test_examples_take_folders_of_arrays(tmp_path, capsys):
    model = spectrogram_model(tmp_path / "spectro.onnx")
    folder = tmp_path / "specs"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(3):
        np.save(folder / f"s{i}.npy", rng.standard_normal((1, 1, 76, 32)).astype(np.float32))
    code, out, err = run_cli(capsys, "examples", model, folder, "--top", "2", "-o", tmp_path / "ex")
    assert code == 0, err
    (jsonl,) = [p for p in out.split() if p.endswith(".jsonl")]
    lines = [json.loads(line) for line in open(jsonl)]
    assert len(lines) == 4 and all(t["image"].endswith(".npy") for line in lines for t in line["top"])
    assert any(p.endswith(".jpg") for p in out.split())


def test_array_picture_shows_the_first_channel_or_the_first_three():
    grey = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    picture = array_picture(grey, "NCHW")
    assert picture.shape == (3, 4, 3) and (picture[..., 0] == picture[..., 2]).all()
    assert picture.min() == 0 and picture.max() == 255
    five = np.zeros((1, 2, 2, 5), np.float32)
    five[..., 0], five[..., 3] = 1.0, 100.0  # channel 3 is not shown, so it does not set the scale
    picture = array_picture(five, "NHWC")
    assert (picture[..., 0] == 255).all() and (picture[..., 1:] == 0).all()
    assert (array_picture(np.full((1, 3, 2, 2), 4.0), "NCHW") == 0).all()  # constant: black
