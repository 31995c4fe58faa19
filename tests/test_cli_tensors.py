"""onnxvis tensors (issue 25, item 12): every tensor of the main graph with its shape, named as --tensor takes them."""

from __future__ import annotations

import numpy as np

from conftest import asset, call_onnxvis
from onnxvis.engine import runner
from onnxvis.model.file import Model
from onnxvis.model.tensors import tensor_rows

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"


def test_every_node_output_is_listed_with_the_shape_onnxruntime_gives():
    path = asset(SQUEEZENET)
    model = Model.open(path)
    rows = tensor_rows(model)
    names = [r.name for r in rows]
    expected = [o for n in model.proto.graph.node if n.op_type != "Constant" for o in n.output]
    assert names == ["data_0", *expected]
    assert not set(names) & {t.name for t in model.proto.graph.initializer}  # weights are not tensors to map
    picked = [names[3], names[len(names) // 2], names[-2], names[-1]]
    values = runner.run_tensors(model, {"data_0": np.zeros((1, 3, 224, 224), np.float16)}, picked)
    shapes = {r.name: r.shape for r in rows}
    for name in picked:
        assert shapes[name] == values[name].shape, name


def test_the_cli_lists_names_that_cam_takes(tmp_path):
    result = call_onnxvis("tensors", str(asset(SQUEEZENET)), "--op", "Concat")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["tensor", "shape", "dtype", "from"]
    assert len(lines) == 1 + 8 and all(" Concat" in line for line in lines[1:])  # the eight fire modules' concat
    name, shape = lines[-1].split()[:2]
    assert shape == "[1x512x13x13]"
    cam = call_onnxvis("cam", str(asset(SQUEEZENET)), str(asset("images/skimage_coffee.png")), "--method", "eigen",
                       "--tensor", name, "-o", str(tmp_path / "out"))
    assert cam.returncode == 0, cam.stderr
    assert len(cam.stdout.splitlines()) == 1 and cam.stdout.strip().endswith(".png")


def test_a_free_dimension_keeps_its_name():
    rows = tensor_rows(Model.open(asset("models/ppocr_mobile_v2.0_cls_paddle.onnx")))
    assert rows[0].op == "input" and rows[0].shape_text().startswith("[")
    assert all(r.op != "Constant" for r in rows)
    convs = [r for r in rows if r.op == "Conv"]
    assert len(convs) == 53 and all(r.shape is None or len(r.shape) == 4 for r in convs)


def test_layers_all_is_the_tensor_list():
    model = str(asset("models/mnist_cntk.onnx"))
    listed, every = call_onnxvis("tensors", model), call_onnxvis("layers", model, "--all")
    assert listed.returncode == every.returncode == 0, listed.stderr + every.stderr
    assert every.stdout == listed.stdout and "Convolution28" in every.stdout and every.stdout.count("\n") > 5
