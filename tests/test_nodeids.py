"""onnxvis names nodes as model-explorer-onnx 0.4.2 does: checked against the adapter itself, run in its own venv.

The oracle is the adapter (tests/explorer.py runs it in .venv-explorer): for the real models and
for small models built to hit every case of the rule (unnamed and duplicate nodes, names that
collide with generated ones, If branches inside If branches, Loop and Scan bodies with and without
outer reads, shadowed names, functions, a graph without a name), the set of node ids of every graph
must be the same.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from explorer import adapter_graphs, real_adapter_graphs

from conftest import ASSETS, real_models
from onnxvis.model.nodeids import ExplorerNode, explorer_ids

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _ours(path) -> dict[str, set[str]]:
    return {g: set(ids) for g, ids in explorer_ids(onnx.load(str(path), load_external_data=False)).graphs.items()}


def _theirs(paths) -> dict[str, dict[str, set[str]]]:
    return {p: {g: set(ids) for g, ids in graphs.items()} for p, graphs in adapter_graphs(*paths).items()}


def _f(name, shape=(1, 4)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(nodes, inputs, outputs, initializers=(), name="g", functions=(), opset=17):
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("local", 1)],
                              functions=list(functions))
    model.ir_version = 9
    return model


def _duplicates():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),                       # node
        helper.make_node("Relu", ["a"], ["b"]),                       # node_1
        helper.make_node("Relu", ["b"], ["c"], name="node_1"),        # collides with the generated name: node_1_1
        helper.make_node("Relu", ["c"], ["d"], name="conv"),
        helper.make_node("Relu", ["d"], ["e"], name="conv"),          # conv_1
        helper.make_node("Relu", ["e"], ["f"], name="conv_1"),        # conv_1_1
        helper.make_node("Relu", ["f"], ["g"], name=""),              # node_2
        helper.make_node("Dropout", ["g"], ["h", ""], name="drop"),   # an empty optional output
        helper.make_node("Add", ["h", "w"], ["y"]),
    ]
    model = _model(nodes, [_f("x")], [_f("y")], [numpy_helper.from_array(np.ones((1, 4), np.float32), "w")])
    model.graph.ClearField("name")  # no name: Model Explorer calls it <main>
    return model


def _branches():
    inner_then = helper.make_graph([helper.make_node("Relu", ["x"], ["t2"]), helper.make_node("Neg", ["t2"], ["t3"])],
                                   "inner_then", [], [_f("t3")])
    inner_else = helper.make_graph([helper.make_node("Abs", ["x"], ["e2"], name="abs")], "inner_else", [], [_f("e2")])
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t1"]),
         helper.make_node("If", ["cond"], ["t4"], then_branch=inner_then, else_branch=inner_else),
         helper.make_node("Add", ["t1", "t4"], ["t5"], name="node")],
        "then", [], [_f("t5")],
    )
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["o1"]), helper.make_node("Relu", ["o1"], ["o2"])], "else", [], [_f("o2")])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("If", ["cond"], ["y1"], name="choose", then_branch=then, else_branch=other),
        helper.make_node("If", ["cond"], ["y2"], then_branch=other, else_branch=then),  # unnamed If: node_1
        helper.make_node("Add", ["y1", "y2"], ["y"]),
    ]
    return _model(nodes, [_f("x"), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])], [_f("y")])


def _loops():
    i64 = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, [])  # noqa: E731
    b = lambda n: helper.make_tensor_value_info(n, TensorProto.BOOL, [])  # noqa: E731
    # a body that reads the outer "w" (a capture) and shadows the outer name "x" with its own input
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("Add", ["x", "w"], ["x2"]),
         helper.make_node("Relu", ["x2"], ["x3"]),
         helper.make_node("Identity", ["x3"], ["scan_out"])],
        "body", [i64("iter"), b("c_in"), _f("x")], [b("c_out"), _f("x3"), _f("scan_out")],
        [numpy_helper.from_array(np.ones((1, 4), np.float32), "x2_bias")],
    )
    # a body that reads nothing from outside: no capture
    lonely = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Neg", ["s"], ["s2"], name="neg")],
        "lonely", [i64("iter"), b("c_in"), _f("s")], [b("c_out"), _f("s2")],
    )
    scan_body = helper.make_graph([helper.make_node("Add", ["acc", "row"], ["acc2"]), helper.make_node("Identity", ["acc2"], ["out"])],
                                  "scan_body", [_f("acc", (4,)), _f("row", (4,))], [_f("acc2", (4,)), _f("out", (4,))])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Loop", ["n", "cond", "r"], ["final", "stacked"], name="loop", body=body),
        helper.make_node("Loop", ["n", "cond", "final"], ["final2"], body=lonely),
        helper.make_node("Scan", ["init", "rows"], ["acc_out", "outs"], body=scan_body, num_scan_inputs=1),
        helper.make_node("Relu", ["final2"], ["y"], name="loop"),  # the same name as the first Loop: loop_1
    ]
    inputs = [_f("x"), i64("n"), b("cond"), _f("init", (4,)), _f("rows", (3, 4))]
    outputs = [_f("y"), _f("stacked", (None, 1, 4)), _f("acc_out", (4,)), _f("outs", (3, 4))]
    inits = [numpy_helper.from_array(np.full((1, 4), 2, np.float32), "w")]
    return _model(nodes, inputs, outputs, inits, opset=16)


def _function():
    function = helper.make_function(
        "local", "Twice", ["a"], ["b"],
        [helper.make_node("Relu", ["a"], ["t"]), helper.make_node("Relu", ["t"], ["b"]), helper.make_node("Neg", ["a"], ["u"])],
        [helper.make_opsetid("", 17)],
    )
    nodes = [helper.make_node("Twice", ["x"], ["m"], domain="local"), helper.make_node("Twice", ["m"], ["y"], domain="local")]
    return _model(nodes, [_f("x")], [_f("y")], functions=[function])


BUILT = {"duplicates": _duplicates, "branches": _branches, "loops": _loops, "function": _function}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("nodeids")
    paths = {}
    for name, make in BUILT.items():
        path = folder / f"{name}.onnx"
        onnx.save(make(), str(path))
        paths[name] = str(path)
    return paths


def test_built_models_have_the_adapters_node_ids(built):
    theirs = _theirs(list(built.values()))
    for name, path in built.items():
        assert _ours(path) == theirs[path], name


def test_the_built_models_hit_the_cases_they_are_made_for(built):
    # The adapter agrees above; this says what the cases are, so that a change of the rule shows here.
    dup = explorer_ids(onnx.load(built["duplicates"]))
    assert dup.main == "<main>"
    assert dup.graphs["<main>"] == [
        "[value] x", "[value] w", "[value] y",
        "node", "node_1", "node_1_1", "conv", "conv_1", "conv_1_1", "node_2", "drop", "node_3",
    ]
    branches = explorer_ids(onnx.load(built["branches"]))
    assert set(branches.graphs) == {"g"}  # If branches live in the If's graph
    assert {"choose/then_branch/node_2/else_branch/abs", "choose/then_branch/node_2_phi", "choose_phi",
            "node_5/else_branch/node_6/then_branch/node_7", "node_5_phi"} <= set(branches.graphs["g"])
    loops = explorer_ids(onnx.load(built["loops"]))
    assert set(loops.graphs) == {"g", "loop/body", "node_4/body", "node_5/body"}  # node counters are the model's
    assert {"loop_capture", "loop_1"} <= set(loops.graphs["g"])  # the first body reads the outer w
    assert not {"node_4_capture", "node_5_capture"} & set(loops.graphs["g"])  # the others read nothing from outside
    assert "[value] x_1" in loops.graphs["loop/body"]  # the body's own x, renamed: the outer x came first
    function = explorer_ids(onnx.load(built["function"]))
    assert function.graphs["[function]local::Twice"] == ["[value] a", "[value] b", "node", "node_1", "node_2"]


@pytest.mark.parametrize("name", real_models())
def test_real_models_have_the_adapters_node_ids(name):
    theirs = {g: set(ids) for g, ids in real_adapter_graphs()[name].items()}
    assert _ours(ASSETS / "models" / name) == theirs


def test_node_addresses_follow_onnxvis_paths(built):
    loops = explorer_ids(onnx.load(built["loops"]))
    assert loops.node("", 0) == ExplorerNode("g", "node")
    assert loops.node("loop.body", 1) == ExplorerNode("loop/body", "node_1")  # by onnxvis's path of the body
    assert loops.node("Scan_3.body", 1) == ExplorerNode("node_5/body", "node_6")  # an unnamed node's path: <op>_<position>
    assert loops.value("w") == ExplorerNode("g", "[value] w")
    assert loops.value("x", "loop.body") == ExplorerNode("loop/body", "[value] x_1")
    assert loops.value("nothing") is None
    assert loops.producer("x3", "loop.body") == ExplorerNode("loop/body", "node_2")  # by the tensor it computes
    assert loops.producer("final") == ExplorerNode("g", "loop") and loops.producer("x") is None
    branches = explorer_ids(onnx.load(built["branches"]))
    assert branches.node("choose.then_branch/If_1.else_branch", 0) == ExplorerNode("g", "choose/then_branch/node_2/else_branch/abs")
    assert "onnx_ir" not in sys.modules  # the rule is onnxvis's own
