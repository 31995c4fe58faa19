"""--layers takes ranges (issue 25, item 11): ``0-3`` is the first four conv layers, ``-3--1`` the last three;
a negative index counts from the end."""

from __future__ import annotations

import numpy as np
import pytest
from test_class_scores import run_cli

from onnxvis.errors import OnnxvisError
from onnxvis.model.file import Model
from onnxvis.model.layers import ConvLayer, find_conv_layers, select_layers


def chain(path, names: list[str]):
    """x [1,3,8,8] -> one 3x3 Conv per name, in a chain."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, last = [], [], "x"
    for i, name in enumerate(names):
        inits.append(numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [last, f"w{i}"], [f"c{i}"], name=name, pads=[1, 1, 1, 1]))
        last = f"c{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def layers(tmp_path):
    def make(n: int, names: list[str] | None = None) -> list[ConvLayer]:
        path = chain(tmp_path / f"chain{n}.onnx", names or [f"conv{i}" for i in range(n)])
        return find_conv_layers(Model.open(path))

    return make


@pytest.mark.parametrize(
    "spec, expected",
    [("0-3", [0, 1, 2, 3]), ("2-2", [2]), ("0-1,4", [0, 1, 4]), ("4,0-1", [4, 0, 1]), ("-3--1", [3, 4, 5]),
     ("0 - 2", [0, 1, 2]), ("1-3,2-4", [1, 2, 3, 4]), ("-1", [5]), ("3--1", [3, 4, 5])],
)
def test_ranges_of_indexes(layers, spec, expected):
    assert [layer.index for layer in select_layers(layers(6), spec)] == expected


def test_a_name_that_reads_like_a_range_is_the_name(layers):
    chosen = select_layers(layers(3, ["a", "0-1", "b"]), "0-1")
    assert [layer.name for layer in chosen] == ["0-1"]


@pytest.mark.parametrize(
    "spec, message",
    [("3-1", "the layer range '3-1' runs backwards (from layer 3 to layer 1); give it as 1-3"),
     ("0-9", "layer index 9 is out of range: the model has 6 conv layers (0 to 5, or -1 for the last)"),
     ("a-b", "no conv layer is named 'a-b'")],
)
def test_bad_ranges_are_one_clear_line(layers, spec, message):
    with pytest.raises(OnnxvisError) as info:
        select_layers(layers(6), spec)
    assert message in str(info.value) and info.value.setting == "layers"


def test_kernels_draws_a_range(tmp_path, capsys):
    model = chain(tmp_path / "four.onnx", [f"conv{i}" for i in range(4)])
    code, out, err = run_cli(capsys, "kernels", model, "--layers", "1-2", "-o", tmp_path / "k")
    assert code == 0, err
    assert [p.rsplit("/", 1)[1] for p in out.split()] == ["kernels_01_conv1.png", "kernels_02_conv2.png"]
