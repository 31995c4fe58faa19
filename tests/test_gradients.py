"""The gradient engine: onnx-ad's backward pass on a prepared graph, checked against finite differences
of the same model in onnxruntime, and what it mends or refuses (auto_pad, ceil_mode, old opsets,
float16, quantized graphs, a fixed batch; control flow, an op without a rule, a class out of range)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import asset
from onnxvis.engine.gradients import GradientGraph, class_axis, score_seeds, score_tensor
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError
from onnxvis.model.file import Model


def _save(path, nodes, inits, x_shape, out_shape, opset=17, extra_opsets=(), x_type=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", x_type, x_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def _net(path, opset=17, batch="N", softmax=True, reshape_to_one=False):
    """x (batch, 3, 16, 16) -> conv (pads) -> tanh -> max pool (ceil_mode: 8x8, not 7x7) -> conv (auto_pad
    SAME_UPPER, stride 2: pads 0 before, 1 after) -> tanh -> average pool (SAME_UPPER, pads left out of
    the count) -> global average pool -> flatten -> gemm -> [softmax]: 6 classes."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "wa"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "ba"),
        numpy_helper.from_array(rng.normal(0, 0.5, (5, 4, 3, 3)).astype(np.float32), "wb"),
        numpy_helper.from_array(rng.normal(0, 0.5, (6, 5)).astype(np.float32), "wc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["a"], ["ta"]),
        helper.make_node("MaxPool", ["ta"], ["p"], name="pool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("Conv", ["p", "wb"], ["b"], name="conv_b", strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Tanh", ["b"], ["tb"]),
        helper.make_node("AveragePool", ["tb"], ["avg"], name="avg", kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("GlobalAveragePool", ["avg"], ["g"]),
    ]
    if reshape_to_one:  # a graph that only works with batch 1, whatever its input says
        inits.append(numpy_helper.from_array(np.array([1, 5], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["g", "shape"], ["f"]))
    else:
        nodes.append(helper.make_node("Flatten", ["g"], ["f"]))
    nodes.append(helper.make_node("Gemm", ["f", "wc"], ["logits" if softmax else "out"], transB=1))
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["out"], name="final_softmax", axis=1))
    return _save(path, nodes, inits, [batch, 3, 16, 16], [batch, 6], opset=opset)


def _input(rows=1, seed=1):
    return np.random.default_rng(seed).normal(size=(rows, 3, 16, 16)).astype(np.float32)


def _central_differences(graph: GradientGraph, x: np.ndarray, cls: int, where: list[tuple], step: float) -> np.ndarray:
    """d score[cls] / d x at ``where``, by central differences of the graph's own forward pass (float64 steps)."""
    out = []
    for index in where:
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        hi = graph.forward(up).reshape(len(x), -1)[0, cls].astype(np.float64)
        lo = graph.forward(down).reshape(len(x), -1)[0, cls].astype(np.float64)
        out.append((hi - lo) / (2 * step))
    return np.asarray(out)


def _check_against_differences(graph, x, cls, layout="NCHW", step=1e-2, rel=1e-2, count=10):
    shape = graph.shapes[graph.score.tensor]
    run = graph.run(x, score_seeds(shape, np.array([[cls]] * len(x)), layout))
    grad = run.gradients[graph.input_name][..., 0]
    rng = np.random.default_rng(3)
    where = [tuple([0, *(int(rng.integers(0, d)) for d in x.shape[1:])]) for _ in range(count)]
    # the pixels with the largest gradients too, where a wrong sign or factor shows most
    flat = np.argsort(-np.abs(grad[0]).reshape(-1))[:3]
    where += [(0, *np.unravel_index(i, grad.shape[1:])) for i in flat]
    numeric = _central_differences(graph, x, cls, where, step)
    analytic = np.array([grad[i] for i in where])
    scale = np.abs(grad).max()
    assert scale > 0
    np.testing.assert_allclose(analytic, numeric, atol=rel * scale)
    return grad


@pytest.mark.parametrize("opset", [11, 17])
def test_input_gradient_equals_central_differences(tmp_path, opset):
    model = Model.open(_net(tmp_path / "net.onnx", opset=opset))
    graph = GradientGraph(model, "x", "NCHW", "out", ["x"], (3, 16, 16), rows=1)
    assert graph.score.tensor == "logits" and "final_softmax" in graph.notes[0]
    assert graph.converted_from == (opset if opset < 16 else None)
    _check_against_differences(graph, _input(), cls=2)


def test_score_is_the_output_without_a_final_softmax(tmp_path):
    model = Model.open(_net(tmp_path / "net.onnx", softmax=False))
    assert score_tensor(model, "out").tensor == "out" and score_tensor(model, "out").note is None
    graph = GradientGraph(model, "x", "NCHW", "out", ["x"], (3, 16, 16))
    assert graph.notes == []
    _check_against_differences(graph, _input(), cls=4)


def test_gradient_at_a_tensor_inside_the_graph(tmp_path):
    """The gradient at 'p' (MaxPool's output) is d score / d p through the rest of the graph: checked by
    feeding p +- a step to the tail."""
    path = _net(tmp_path / "net.onnx")
    with Inspector(path) as insp:
        graph = insp.gradients(["p", "x"], "out", (3, 16, 16), rows=1)
        x = _input()
        run = graph.run(x, score_seeds((1, 6), np.array([[1]])))
        p = run.values["p"]
        grad = run.gradients["p"][0, ..., 0]
        assert p.shape[1:] == grad.shape
        np.testing.assert_allclose(p, insp.run_arrays({"x": x}, ["p"])["p"], rtol=1e-5, atol=1e-6)
        step = 1e-2
        largest = [np.unravel_index(i, grad.shape) for i in np.argsort(-np.abs(grad).reshape(-1))[:2]]
        for index in [(0, 1, 2), (3, 4, 4), (2, 0, 7), *largest]:
            up, down = p.copy(), p.copy()
            up[(0, *index)] += step
            down[(0, *index)] -= step
            hi = insp.run_arrays({"p": up}, ["logits"])["logits"][0, 1]
            lo = insp.run_arrays({"p": down}, ["logits"])["logits"][0, 1]
            assert grad[tuple(index)] == pytest.approx((hi - lo) / (2 * step), abs=1e-2 * float(np.abs(grad).max()))
        # the input's gradient in the same pass, and the place's own pass, agree with a graph for x alone
        alone = insp.gradients(["x"], "out", (3, 16, 16), rows=1).run(x, score_seeds((1, 6), np.array([[1]])))
        np.testing.assert_allclose(run.gradients["x"], alone.gradients["x"], rtol=1e-5, atol=1e-7)


def test_built_once_and_batched_rows_equal_single_rows(tmp_path):
    path = _net(tmp_path / "net.onnx")
    with Inspector(path) as insp:
        graph = insp.gradients(["x"], "out", (3, 16, 16), rows=3)
        assert insp.gradients(["x"], "out", (3, 16, 16), rows=3) is graph  # kept
        assert graph.rows == 3
        x = _input(rows=5)
        classes = np.array([[0, 5], [1, 2], [3, 3], [4, 0], [5, 1]])  # two targets per image, one pass
        seeds = score_seeds((5, 6), classes)
        batched = graph.run(x, seeds)
        single = insp.gradients(["x"], "out", (3, 16, 16), rows=1)
        for i in range(5):
            for j in range(2):
                one = single.run(x[i : i + 1], score_seeds((1, 6), classes[i : i + 1, j : j + 1]))
                np.testing.assert_allclose(batched.gradients["x"][i, ..., j], one.gradients["x"][0, ..., 0], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(batched.scores, insp.run_arrays({"x": x}, ["logits"])["logits"], rtol=1e-5, atol=1e-6)


def test_a_graph_that_fixes_its_batch_runs_one_row_at_a_time(tmp_path):
    path = _net(tmp_path / "net.onnx", reshape_to_one=True)
    with Inspector(path) as insp:
        graph = insp.gradients(["x"], "out", (3, 16, 16), rows=4)
        assert graph.rows == 1
        x = _input(rows=3)
        run = graph.run(x, score_seeds((3, 6), np.array([[0], [1], [2]])))
        assert run.gradients["x"].shape == (3, 3, 16, 16, 1)
        assert np.abs(run.gradients["x"]).max() > 0


def test_seeds_are_the_derivative_of_class_scores():
    from onnxvis.analysis.cam.runs import class_scores

    rng = np.random.default_rng(0)
    for shape, layout in [((2, 7), "NCHW"), ((2, 7, 1, 1), "NCHW"), ((2, 7, 3, 4), "NCHW"), ((2, 3, 4, 7), "NHWC"), ((2, 7), "NHWC")]:
        value = rng.normal(size=shape).astype(np.float32)
        classes = np.array([[5, 1], [0, 6]])
        seeds = score_seeds(shape, classes, layout)
        scores = class_scores(value, layout)
        assert scores.shape == (2, 7) and shape[class_axis(shape, layout)] == 7
        for row in range(2):
            for j in range(2):
                assert float((seeds[row, ..., j] * value[row]).sum()) == pytest.approx(float(scores[row, classes[row, j]]), rel=1e-5)
    with pytest.raises(OnnxvisError, match="target class 7 is out of range: the model scores 7 classes"):
        score_seeds((1, 7), np.array([[7]]))


def _to_float16(path, out):
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, str(out))
    return out


def test_float16_is_computed_in_float32(tmp_path):
    """A float16 model (as the Caffe2 SqueezeNet): its gradient graph computes in float32, on the same weights."""
    path = _net(tmp_path / "net.onnx", softmax=False)
    half = _to_float16(path, tmp_path / "half.onnx")
    x = _input()
    graph = GradientGraph(Model.open(half), "x", "NCHW", "out", ["x"], (3, 16, 16))
    assert any("float16" in note for note in graph.notes)
    with Inspector(half) as insp:
        reference = insp.run_arrays({"x": x.astype(np.float16)}, ["out"])["out"].astype(np.float32)
    np.testing.assert_allclose(graph.forward(x), reference, atol=2e-2)
    _check_against_differences(graph, x, cls=3)


def _qdq_net(path):
    """The float net, its weights stored as int8 behind DequantizeLinear and its activations through
    QuantizeLinear -> DequantizeLinear pairs (the QDQ format of onnxruntime's quantizer)."""
    rng = np.random.default_rng(0)
    w = rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)
    scale = np.full((4,), 0.01, np.float32)
    inits = [
        numpy_helper.from_array(w, "wq"), numpy_helper.from_array(scale, "ws"), numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(128, np.uint8), "z"),
        numpy_helper.from_array(rng.normal(0, 0.5, (6, 4)).astype(np.float32), "wc"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
        helper.make_node("Conv", ["xd", "w"], ["a"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["a"], ["t"]),
        helper.make_node("GlobalAveragePool", ["t"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wc"], ["out"], transB=1),
    ]
    return _save(path, nodes, inits, [1, 3, 16, 16], [1, 6], opset=13), (w.astype(np.float32) * scale[:, None, None, None])


def test_quantized_graph_is_differentiated_as_its_dequantized_float_graph(tmp_path):
    path, w = _qdq_net(tmp_path / "qdq.onnx")
    graph = GradientGraph(Model.open(path), "x", "NCHW", "out", ["x"], (3, 16, 16))
    assert any("dequantized float graph" in note for note in graph.notes)
    x = _input()
    run = graph.run(x, score_seeds((1, 6), np.array([[2]])))
    # the float graph by hand: the same weights, dequantized, and no rounding of the activations
    wc = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[5])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Tanh", ["a"], ["t"]),
        helper.make_node("GlobalAveragePool", ["t"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wc"], ["out"], transB=1),
    ]
    weights = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(wc, "wc")]
    plain = _save(tmp_path / "plain.onnx", nodes, weights, [1, 3, 16, 16], [1, 6])
    expected = GradientGraph(Model.open(plain), "x", "NCHW", "out", ["x"], (3, 16, 16)).run(x, score_seeds((1, 6), np.array([[2]])))
    np.testing.assert_allclose(run.gradients["x"], expected.gradients["x"], rtol=1e-5, atol=1e-8)
    assert np.abs(run.gradients["x"]).max() > 0  # not the zero that QuantizeLinear's rounding would give


def test_control_flow_on_the_way_is_refused_in_one_line(tmp_path):
    def branch(op, out):
        outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)]
        return helper.make_graph([helper.make_node(op, ["x"], [out])], op, [], outputs)

    then, other = branch("Relu", "y1"), branch("Neg", "y2")
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch"], name="choose", then_branch=then, else_branch=other),
        helper.make_node("Flatten", ["branch"], ["f"]),
        helper.make_node("Gemm", ["f", "wc"], ["out"], transB=1),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.float32), "zero"), numpy_helper.from_array(np.ones((2, 12), np.float32), "wc")]
    path = _save(tmp_path / "if.onnx", nodes, inits, [1, 3, 2, 2], [1, 2])
    with pytest.raises(OnnxvisError) as info:
        GradientGraph(Model.open(path), "x", "NCHW", "out", ["x"], (3, 2, 2))
    message = str(info.value)
    assert "If node 'choose'" in message and "control flow" in message and "\n" not in message


def test_an_op_without_a_rule_is_refused_naming_op_and_node(tmp_path):
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("FusedConv", ["x", "w"], ["a"], name="fused", domain="com.microsoft", activation="Relu", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["a"], ["g"]),
        helper.make_node("Flatten", ["g"], ["out"]),
    ]
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")]
    path = _save(tmp_path / "fused.onnx", nodes, inits, [1, 3, 8, 8], [1, 4], extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(OnnxvisError) as info:
        GradientGraph(Model.open(path), "x", "NCHW", "out", ["x"], (3, 8, 8))
    message = str(info.value)
    assert "FusedConv" in message and "'fused'" in message and "\n" not in message


def test_unknown_place_is_refused(tmp_path):
    model = Model.open(_net(tmp_path / "net.onnx"))
    with pytest.raises(OnnxvisError, match="no tensor named 'nope'"):
        GradientGraph(model, "x", "NCHW", "out", ["nope"], (3, 16, 16))


# ------------------------------------------------------------------------------ real models


def _digit(index: int = 7) -> np.ndarray:
    """A real handwritten digit of the UCI set as mnist_cntk's input: 8x8 (0..16) upscaled to 20x20,
    centred in 28x28, 0..255 (as the assets' MANIFEST describes)."""
    import gzip

    from PIL import Image

    with gzip.open(asset("data/sklearn_digits.csv.gz"), "rt") as f:
        rows = [line.strip().split(",") for line in f if line.strip()]
    values = next(r for r in rows if int(float(r[64])) == index)
    small = Image.fromarray((np.asarray(values[:64], np.float32).reshape(8, 8) * (255 / 16)).astype(np.float32), "F")
    canvas = np.zeros((28, 28), np.float32)
    canvas[4:24, 4:24] = np.asarray(small.resize((20, 20), Image.Resampling.BILINEAR))
    return np.clip(np.rint(canvas), 0, 255)[None, None].astype(np.float32)


def test_mnist_cntk_gradient_agrees_with_central_differences_at_12_pixels():
    """A model no torch ever saw (CNTK, opset 7, auto_pad SAME_UPPER): the gradient of class 7's score
    agrees within 5% with central differences of onnxruntime on the file itself, step 1 in 0..255."""
    path = asset("models/mnist_cntk.onnx")
    x = _digit(7)
    with Inspector(path) as insp:
        graph = insp.gradients([insp.image_input.name], shape=x.shape[1:], rows=1)
        assert graph.converted_from == 7
        grad = graph.run(x, score_seeds((1, 10), np.array([[7]]))).gradients[graph.input_name][0, ..., 0]
        session = insp.session([insp.class_output()])
        name = insp.image_input.name
        # 12 pixels on the digit and its border, where the score moves (the largest gradients among the ink)
        ink = np.argwhere(x[0, 0] > 0)
        order = np.argsort(-np.abs(grad[0][tuple(ink.T)]))
        pixels = [tuple(ink[i]) for i in order[:12]]
        for y, xx in pixels:
            up, down = x.copy(), x.copy()
            up[0, 0, y, xx] += 1
            down[0, 0, y, xx] -= 1
            hi = session.run({name: up})[insp.class_output()][0, 7]
            lo = session.run({name: down})[insp.class_output()][0, 7]
            numeric = (float(hi) - float(lo)) / 2
            print(f"pixel ({y}, {xx}): gradient {grad[0, y, xx]:.5g}, central difference {numeric:.5g}")
            assert grad[0, y, xx] == pytest.approx(numeric, rel=0.05), (y, xx)
