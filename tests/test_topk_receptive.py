"""The pure parts of ``onnxvis examples``: the mergeable top-K and receptive fields from the graph."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import asset
from onnxvis.analysis.examples.receptive import Field, receptive_fields
from onnxvis.analysis.examples.topk import TopK, channel_maxima


def _brute(scores: np.ndarray, k: int) -> list[list[tuple[float, int]]]:
    """Per channel, the (score, image) pairs sorted by score down, then image up: the order TopK promises."""
    n, c = scores.shape
    return [sorted(((float(scores[i, ch]), i) for i in range(n)), key=lambda t: (-t[0], t[1]))[:k] for ch in range(c)]


def _kept(top: TopK, name: str = "L") -> list[list[tuple[float, int]]]:
    s, img, _, _ = top.entries(name)
    return [[(float(a), int(b)) for a, b in zip(s[c], img[c], strict=True)] for c in range(s.shape[0])]


def test_channel_maxima_finds_the_first_maximum_and_ignores_nan():
    maps = np.zeros((2, 3, 4, 5), np.float32)
    maps[0, 0, 2, 3] = 5
    maps[0, 1, 1, 1] = maps[0, 1, 3, 0] = 7  # a tie: the first in row-major order wins
    maps[1, 2] = np.nan
    maps[1, 2, 0, 4] = -1
    scores, y, x = channel_maxima(maps)
    assert (scores[0, 0], y[0, 0], x[0, 0]) == (5, 2, 3)
    assert (scores[0, 1], y[0, 1], x[0, 1]) == (7, 1, 1)
    assert (scores[1, 2], y[1, 2], x[1, 2]) == (-1, 0, 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_in_any_chunks_and_merging_in_any_order_gives_the_brute_force_top_k(seed):
    rng = np.random.default_rng(seed)
    n, c, k = 200, 7, 5
    # few distinct values: many ties, which must break by image id the same way every time
    scores = rng.integers(0, 6, size=(n, c)).astype(np.float32)
    ys = rng.integers(0, 9, size=(n, c))
    xs = rng.integers(0, 9, size=(n, c))
    want = _brute(scores, k)

    one = TopK(k)
    for start in range(0, n, 13):
        ids = np.arange(start, min(n, start + 13))
        one.add("L", ids, scores[ids], ys[ids], xs[ids])
    assert _kept(one) == want

    # the same images split among "workers", processed in a shuffled order, merged in another
    parts = []
    for chunk in np.array_split(rng.permutation(n), 6):
        part = TopK(k)
        part.add("L", chunk, scores[chunk], ys[chunk], xs[chunk])
        parts.append(part)
    left = TopK(k)
    for i in rng.permutation(len(parts)):
        left.merge(parts[i])
    right = TopK(k).merge(parts[5]).merge(TopK(k).merge(parts[2]).merge(parts[0])).merge(parts[4])
    right.merge(TopK(k).merge(parts[1]).merge(parts[3]))
    assert left.equal(one) and right.equal(one)
    # positions travel with their entries
    _, img, y, x = one.entries("L")
    assert np.array_equal(y, ys[img, np.arange(c)[:, None]]) and np.array_equal(x, xs[img, np.arange(c)[:, None]])


def test_payload_travels_and_state_round_trips():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(30, 4)).astype(np.float32)
    payload = rng.normal(size=(30, 4, 2, 3)).astype(np.float16)
    top = TopK(3)
    top.add("a", np.arange(30), scores, np.zeros((30, 4)), np.zeros((30, 4)), payload)
    top.add("b", np.arange(30), -scores, np.ones((30, 4)), np.ones((30, 4)))
    _, img, _, _ = top.entries("a")
    assert np.array_equal(top.payload("a"), payload[img, np.arange(4)[:, None]])
    again = TopK.from_arrays(top.to_arrays())
    assert again.equal(top) and again.names == ["a", "b"] and again.payload("b") is None
    assert np.array_equal(again.payload("a"), top.payload("a"))
    assert not again.equal(TopK(3))


def test_remap_keeps_entries_and_renumbers():
    top = TopK(2)
    top.add("L", np.array([0, 1, 2]), np.array([[1.0], [1.0], [0.5]]), np.zeros((3, 1)), np.zeros((3, 1)))
    top.remap_images(np.array([5, 3, 9]))
    s, img, _, _ = top.entries("L")
    assert img.tolist() == [[3, 5]] and s.tolist() == [[1.0, 1.0]]  # the tie now breaks by the new ids


# ------------------------------------------------------------------------------------------ fields


def _graph(nodes, inits, shape=(1, 1, 32, 32)):
    from onnx import TensorProto, helper, numpy_helper

    return helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in inits.items()],
    )


def _model(graph):
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _layers(model, tmp_path):
    import onnx

    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return find_conv_layers(Model.open(path))


def test_fields_of_a_conv_pool_stack_match_hand_computation(tmp_path):
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),  # 3x3 s1 p1
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], strides=[2, 2], pads=[2, 2, 2, 2], dilations=[2, 2]),  # 3x3 d2
        helper.make_node("Conv", ["c2", "w3"], ["c3"], kernel_shape=[1, 5]),  # 1x5: different axes
    ]
    layers = _layers(_model(_graph(nodes, {"w1": (2, 1, 3, 3), "w2": (2, 2, 3, 3), "w3": (2, 2, 1, 5)})), tmp_path)
    fields = receptive_fields(_model(_graph(nodes, {})).graph, "x", layers)
    assert fields["c1"] == Field((1, 1), (-1, -1), (3, 3))
    # pool 2/2: jump 2, size 4; conv 3x3 dilation 2 (effective 5) stride 2 pad 2: size 4 + 4*2 = 12, start -1 - 2*2
    assert fields["c2"] == Field((4, 4), (-5, -5), (12, 12))
    assert fields["c3"] == Field((4, 4), (-5, -5), (12, 12 + 4 * 4))
    assert fields["c2"].box(1, 2) == (-1, 3, 11, 15)


def test_branches_merge_into_their_envelope_and_unknown_ops_give_none(tmp_path):
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),  # 1x1
        helper.make_node("Conv", ["x", "w3"], ["b"], pads=[1, 1, 1, 1]),  # 3x3
        helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w4"], ["after_cat"]),
        helper.make_node("Resize", ["cat", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Conv", ["up", "w5"], ["after_resize"]),
        helper.make_node("GlobalAveragePool", ["after_cat"], ["gap"]),
        helper.make_node("Mul", ["after_cat", "gap"], ["se"]),
        helper.make_node("Conv", ["se", "w5"], ["after_se"]),
        helper.make_node("Conv", ["x", "w3"], ["same"], strides=[2, 2], auto_pad="SAME_UPPER"),
    ]
    inits = {"w1": (2, 1, 1, 1), "w3": (2, 1, 3, 3), "w4": (4, 4, 1, 1), "w5": (4, 4, 1, 1)}
    graph = _graph(nodes, inits)
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    layers = _layers(_model(graph), tmp_path)
    fields = receptive_fields(graph, "x", layers, input_size=(32, 32))
    assert fields["after_cat"] == Field((1, 1), (-1, -1), (3, 3))
    assert fields["after_resize"] is None
    assert fields["after_se"] is None  # the squeeze-excite product sees the whole image
    # SAME_UPPER, 32 -> 16 with stride 2 and a 3x3 kernel: total pad 1, all of it at the end
    assert fields["same"] == Field((2, 2), (0, 0), (3, 3))


def test_field_of_a_real_model_bounds_what_a_position_sees(tmp_path):
    """mnist_cntk: changing pixels outside the field of a position leaves its value alone;
    changing one inside changes it."""
    import onnx
    import onnxruntime as ort

    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    path = asset("models/mnist_cntk.onnx")
    model = Model.open(path)
    layers = find_conv_layers(model)
    fields = receptive_fields(model.graph, "Input3", layers, (28, 28))
    last = layers[-1]
    field = fields[last.output_name]
    assert field is not None and field.size[0] > 5 and field.jump == (2, 2)

    proto = onnx.load(str(path))
    proto.graph.output.append(onnx.helper.make_tensor_value_info(last.output_name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, (1, 1, 28, 28)).astype(np.float32)

    def value(image, y, x):
        return session.run([last.output_name], {"Input3": image})[0][0, :, y, x]

    y, x = 7, 6
    top, left, bottom, right = field.box(y, x)
    outside = base.copy()
    mask = np.ones((28, 28), bool)
    mask[max(top, 0) : bottom, max(left, 0) : right] = False
    outside[0, 0][mask] = rng.uniform(0, 255, mask.sum())
    assert np.array_equal(value(outside, y, x), value(base, y, x))
    for py, px in [(top, left), (bottom - 1, right - 1), (top, right - 1)]:
        if 0 <= py < 28 and 0 <= px < 28:
            inside = base.copy()
            inside[0, 0, py, px] += 1000
            assert not np.array_equal(value(inside, y, x), value(base, y, x)), (py, px)
