"""One settled preprocessing for a model whose height and width are free (issue 25, item 4): every command
uses and prints it; by default it keeps the whole photo, its longer side at most 640 pixels, rounded to the
multiple the graph really needs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_class_scores import run_cli

from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp
from onnxvis.image.inputs import size_multiple
from onnxvis.model.file import Model


def detector(path):
    """A free-size FPN-like detector, x [1,3,H,W]: three stride-2 convs (/8), a Resize x2 of the /8 map added
    to the /4 map (the join that needs a multiple of 8), then two more stride-2 convs (/16, /32) to a (1, K)
    head. The old rule multiplied every stride on the path (8 * 2 * 2 = 32); the graph needs 8."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name):
        return numpy_helper.from_array(rng.standard_normal((4, 3 if name == "w0" else 4, 3, 3)).astype(np.float32) * 0.2, name)

    conv = dict(strides=[2, 2], pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["x", "w0"], ["d2"], name="down2", **conv),
             helper.make_node("Conv", ["d2", "w1"], ["d4"], name="down4", **conv),
             helper.make_node("Conv", ["d4", "w2"], ["d8"], name="down8", **conv),
             helper.make_node("Resize", ["d8", "", "scales"], ["up"], mode="nearest", name="up"),
             helper.make_node("Add", ["up", "d4"], ["p4"]),
             helper.make_node("Conv", ["p4", "w3"], ["e8"], name="extra8", **conv),
             helper.make_node("Conv", ["e8", "w4"], ["e16"], name="extra16", **conv),
             helper.make_node("GlobalAveragePool", ["e16"], ["g"]), helper.make_node("Flatten", ["g"], ["scores"])]
    inits = [w(f"w{i}") for i in range(5)] + [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def page(tmp_path):
    """A wide page, 900x300, whose left third is white: a centre crop would cut it away."""
    pixels = np.zeros((300, 900, 3), np.uint8)
    pixels[:, :300] = 255
    path = tmp_path / "page.png"
    Image.fromarray(pixels).save(path)
    return path


def test_the_multiple_is_what_the_graph_needs(tmp_path):
    model = detector(tmp_path / "det.onnx")
    multiple, why = size_multiple(Model.open(model))
    assert multiple == 8 and "Resize up" in why
    with Inspector(model) as insp:
        for size in (224, 320, 40, 200):  # multiples of 8; 40 and 200 are not multiples of 32
            insp.outputs(np.zeros((1, 3, size, size + 8), np.float32))
        with pytest.raises(OnnxvisError):  # and 8 is needed: 36 breaks the Add
            Inspector(model, changes={"resize": (36, 36)}).outputs(pp.default_image_path())


def test_the_default_keeps_the_whole_photo_and_rounds_it(tmp_path, page):
    model = detector(tmp_path / "det.onnx")
    with Inspector(model) as insp:
        settled = insp.preprocessing.preprocess
        assert settled.max_side == 640 and settled.multiple == 8 and settled.crop is None and settled.resize is None
        prepared = insp.prepare(page)
    assert prepared.array.shape == (1, 3, 216, 640)  # 900x300 scaled to 640x213, rounded to 640x216: nothing cut
    assert prepared.rgb[:, :200].mean() > 250 and prepared.rgb[:, -200:].mean() < 5  # the white left third is there
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 60)).save(small)
    with Inspector(model) as insp:
        assert insp.prepare(small).array.shape == (1, 3, 64, 96)  # never scaled up; 60x100 rounded to 64x96 (halves to even)


def test_every_command_prints_the_same_preprocessing(tmp_path, capsys, page):
    model = detector(tmp_path / "det.onnx")
    expected = ("imagenet (guessed): the whole image, longer side at most 640, height and width rounded to a multiple of 8, "
                "RGB, 0..1")
    code, out, err = run_cli(capsys, "info", model)
    assert code == 0 and f"preproc   {expected}" in out
    assert "size      dynamic (?x?): as the preprocessing below says; height and width rounded to a multiple of 8" in out
    for command in (["fmaps", model, page, "-o", tmp_path / "f"], ["predict", model, page],
                    ["examples", model, page.parent, "--top", "1", "-o", tmp_path / "e"]):
        code, out, err = run_cli(capsys, *command)
        assert code == 0, err
        assert f"preprocessing: {expected}" in err, (command[0], err)


def test_a_size_the_user_or_the_metadata_gives_is_kept(tmp_path, page):
    model = detector(tmp_path / "det.onnx")
    with Inspector(model, changes={"resize": (64, 96)}) as insp:
        assert insp.prepare(page).array.shape == (1, 3, 64, 96)
    with Inspector(model, preset="imagenet") as insp:  # a preset's size is the user's choice; rounded to the graph's multiple
        settled = insp.preprocessing.preprocess
        assert settled.crop == (224, 224) and settled.multiple == 8
        assert insp.prepare(page).array.shape == (1, 3, 224, 224)
