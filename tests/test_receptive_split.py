"""Receptive fields carried through Split, Slice on channels and Concat (issue 25, item 15): YOLOv8's C2f
blocks split their channels, convolve one part and concatenate them again; the crops must not fall back to
the whole photo there. A brute-force check on the values: pixels outside a position's field do not move it."""

from __future__ import annotations

import numpy as np

from onnxvis.analysis.examples.receptive import Field, receptive_fields


def c2f_model(path, slice_axes=(1,)):
    """x [1,2,32,32] -> Conv 3x3 s2 (4 ch) -> Split axis 1 [2, 2] -> (a, b); b -> Conv 3x3 -> c;
    Concat(a, b, c) -> Conv 3x3 -> y1; Slice of y1 along ``slice_axes`` -> Conv 1x1 -> y2."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {"w0": (4, 2, 3, 3), "wb": (2, 2, 3, 3), "wm": (3, 6, 3, 3), "wt": (2, 2, 1, 1)}
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in w.items()]
    axes = list(slice_axes)
    starts = [0 if a in (1, -3) else 1 for a in axes]
    ends = [2 if a in (1, -3) else 100 for a in axes]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("sizes", [2, 2]), ("starts", starts), ("ends", ends), ("axes", axes))]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], name="stem", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["c0", "sizes"], ["a", "b"], axis=1),
        helper.make_node("Conv", ["b", "wb"], ["c"], name="inner", pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["a", "b", "c"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "wm"], ["y1"], name="merge", pads=[1, 1, 1, 1]),
        helper.make_node("Slice", ["y1", "starts", "ends", "axes"], ["part"]),
        helper.make_node("Conv", ["part", "wt"], ["y2"], name="tail"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 32, 32])],
                              [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _fields(path):
    from onnxvis.model.file import Model
    from onnxvis.model.layers import find_conv_layers

    model = Model.open(path)
    layers = find_conv_layers(model)
    found = receptive_fields(model.graph, "x", layers, (32, 32), initializer=model.tensor)
    return model, layers, found


def test_split_concat_and_a_channel_slice_keep_the_field(tmp_path):
    _, _, fields = _fields(c2f_model(tmp_path / "c2f.onnx"))
    stem = Field((2, 2), (-1, -1), (3, 3))
    assert fields["c0"] == stem
    assert fields["c"] == Field((2, 2), (-3, -3), (7, 7))  # a 3x3 conv after the split part
    # the concat's envelope (c's field), then a 3x3 conv: 7 + 2 * 2
    assert fields["y1"] == Field((2, 2), (-5, -5), (11, 11))
    assert fields["y2"] == fields["y1"]  # the channel slice and a 1x1 conv keep it


def test_a_slice_across_space_still_gives_no_field(tmp_path):
    _, _, fields = _fields(c2f_model(tmp_path / "space.onnx", slice_axes=(3,)))
    assert fields["y1"] is not None and fields["y2"] is None


def test_pixels_outside_the_field_do_not_move_the_value(tmp_path):
    import onnxruntime as ort

    path = c2f_model(tmp_path / "c2f.onnx")
    _, _, fields = _fields(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 32, 32)).astype(np.float32)
    y, x0 = 7, 5
    top, left, bottom, right = fields["y2"].box(y, x0)
    changed = rng.standard_normal(x.shape).astype(np.float32)
    changed[:, :, max(top, 0) : bottom, max(left, 0) : right] = x[:, :, max(top, 0) : bottom, max(left, 0) : right]
    base, moved = session.run(["y2"], {"x": x})[0], session.run(["y2"], {"x": changed})[0]
    assert np.allclose(base[0, :, y, x0], moved[0, :, y, x0], atol=1e-5)
    assert not np.allclose(base[0, :, y + 3, x0 + 3], moved[0, :, y + 3, x0 + 3])  # elsewhere it does move
    # and the field is tight: a change just inside its border moves the value
    inside = x.copy()
    inside[:, :, top + 1 if top >= 0 else 0, left + 1 if left >= 0 else 0] += 10
    assert not np.allclose(session.run(["y2"], {"x": inside})[0][0, :, y, x0], base[0, :, y, x0])
