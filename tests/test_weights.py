"""Conv weights wherever they are, decoded to the kernels the model really computes with.

The oracle for most tests is onnxruntime itself: feeding a one-hot impulse per input channel
through the model's own conv node gives back every kernel, exactly as the runtime sees it
(dequantized, cast, reshaped, folded). ``kernel_weights`` must equal that. Where onnxruntime has no
kernel for a type (bfloat16 Conv, float4), onnx's reference evaluator or ml_dtypes is the oracle.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import asset
from onnxvis.errors import OnnxvisError
from onnxvis.model.file import Model
from onnxvis.model.layers import find_conv_layers
from onnxvis.model.weights import dequantize, kernel_weights

RNG = np.random.default_rng(1234)


# ----------------------------------------------------------------------------------- builders


def conv_graph_model(
    path,
    weight: str,
    nodes: list,
    inits: list,
    *,
    op: str = "Conv",
    in_ch: int,
    ksize: tuple[int, ...],
    attrs: dict | None = None,
    opset: int = 21,
    x_type: int = TensorProto.FLOAT,
    extra_inputs: list | None = None,
    conv_inputs: list[str] | None = None,
    domain: str = "",
    ir_version: int = 10,
):
    """Save a model: ``nodes`` make ``weight``; one conv node reads ``x`` (batch dynamic) and it."""
    rank = len(ksize)
    spatial = [1] * rank if op == "ConvTranspose" else [2 * k - 1 for k in ksize]
    conv = helper.make_node(op, conv_inputs or ["x", weight], ["y"], name="the_conv", domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        nodes + [conv],
        "g",
        [helper.make_tensor_value_info("x", x_type, ["N", in_ch, *spatial])] + list(extra_inputs or []),
        [helper.make_empty_tensor_value_info("y")],
        inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir_version
    onnx.save(model, str(path))
    return model


def impulse_kernels(proto, op: str, in_ch: int, group: int, ksize: tuple[int, ...], x_dtype=np.float32, x_one=1) -> np.ndarray:
    """The kernels onnxruntime convolves with, recovered from impulse responses.

    Conv: a one-hot input at the centre of a (2k-1) input gives the kernel flipped (correlation).
    ConvTranspose: a one-pixel one-hot input gives the kernel as it is (scatter).
    """
    spatial = [1] * len(ksize) if op == "ConvTranspose" else [2 * k - 1 for k in ksize]
    x = np.zeros((in_ch, in_ch, *spatial), dtype=x_dtype)
    centre = tuple(s // 2 for s in spatial)
    for c in range(in_ch):
        x[(c, c) + centre] = x_one
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x})[0].astype(np.float64)
    out_ch = y.shape[1]
    per_in, per_out = in_ch // group, out_ch // group
    kernels = np.zeros((out_ch, per_in, *ksize))
    for o in range(out_ch):
        g = o // per_out
        for i in range(per_in):
            response = y[g * per_in + i, o]
            kernels[o, i] = response if op == "ConvTranspose" else np.flip(response)
        # channels of other groups must not respond
        others = [c for c in range(in_ch) if c // per_in != g]
        assert not np.any(y[others, o]), "impulse leaked across groups: the oracle itself is wrong"
    return kernels


def only_layer(path):
    layers = find_conv_layers(Model.open(path))
    assert len(layers) == 1
    return layers[0]


def f32(*shape):
    return RNG.normal(size=shape).astype(np.float32)


# ------------------------------------------------------------------------- float storage kinds


def test_plain_initializer(tmp_path):
    w = f32(4, 3, 3, 3)
    proto = conv_graph_model(tmp_path / "m.onnx", "w", [], [numpy_helper.from_array(w, "w")], in_ch=3, ksize=(3, 3))
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "initializer" and layer.source.describe() == "initializer float32"
    got = kernel_weights(layer)
    assert got.dtype == np.float32 and got.shape == (4, 3, 3, 3)
    np.testing.assert_array_equal(got, w)
    np.testing.assert_allclose(got, impulse_kernels(proto, "Conv", 3, 1, (3, 3)), atol=1e-6)


def test_ir3_initializers_listed_as_graph_inputs_are_initializers(tmp_path):
    w = f32(2, 1, 3, 3)
    path = tmp_path / "m.onnx"
    model = conv_graph_model(path, "w", [], [numpy_helper.from_array(w, "w")], in_ch=1, ksize=(3, 3), opset=7, ir_version=3)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 1, 3, 3]))
    onnx.save(model, str(path))
    layer = only_layer(path)
    assert layer.source.kind == "initializer"
    np.testing.assert_array_equal(kernel_weights(layer), w)


def test_float16_weights_against_onnxruntime(tmp_path):
    w = f32(5, 2, 3, 3).astype(np.float16)
    proto = conv_graph_model(
        tmp_path / "m.onnx", "w", [], [numpy_helper.from_array(w, "w")], in_ch=2, ksize=(3, 3), x_type=TensorProto.FLOAT16, opset=17
    )
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.dtype == "float16" and layer.source.describe() == "initializer float16"
    got = kernel_weights(layer)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, w.astype(np.float32))
    np.testing.assert_allclose(got, impulse_kernels(proto, "Conv", 2, 1, (3, 3), x_dtype=np.float16), rtol=1e-3)


@pytest.mark.parametrize("dtype", ["bfloat16", "float64"])
def test_bfloat16_and_double_weights_through_a_cast(tmp_path, dtype):
    """onnxruntime has no bfloat16 or double Conv on CPU; a Cast to float32 lets it be the oracle."""
    import ml_dtypes

    np_type = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float64
    w = f32(3, 3, 2, 2).astype(np_type)
    tensor = numpy_helper.from_array(w, "w_stored")
    assert tensor.data_type == helper.np_dtype_to_tensor_dtype(np.dtype(np_type))
    cast = helper.make_node("Cast", ["w_stored"], ["w"], to=TensorProto.FLOAT)
    proto = conv_graph_model(tmp_path / "m.onnx", "w", [cast], [tensor], in_ch=3, ksize=(2, 2), opset=17)
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "initializer" and layer.source.dtype == dtype
    assert "Cast to float32" in layer.source.detail
    got = kernel_weights(layer)
    np.testing.assert_array_equal(got, w.astype(np.float32))
    np.testing.assert_array_equal(got, impulse_kernels(proto, "Conv", 3, 1, (2, 2)))


@pytest.mark.parametrize("dtype", ["bfloat16", "float64"])
def test_bfloat16_and_double_weights_read_directly(tmp_path, dtype):
    import ml_dtypes

    w = f32(2, 3, 3, 3).astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float64)
    conv_graph_model(tmp_path / "m.onnx", "w", [], [numpy_helper.from_array(w, "w")], in_ch=3, ksize=(3, 3))
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.describe() == f"initializer {dtype}"
    got = kernel_weights(layer)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, w.astype(np.float32))


def test_constant_node_chain_identity_cast_reshape(tmp_path):
    """PaddlePaddle keeps weights in Constant nodes; exporters put Identity / Cast / Reshape after them."""
    w = f32(4, 2, 3, 3)
    nodes = [
        helper.make_node("Constant", [], ["flat"], value=numpy_helper.from_array(w.astype(np.float16).reshape(-1), "c")),
        helper.make_node("Identity", ["flat"], ["flat2"]),
        helper.make_node("Cast", ["flat2"], ["flat32"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([4, 2, 3, 3], np.int64), "s")),
        helper.make_node("Reshape", ["flat32", "shape"], ["w"]),
    ]
    proto = conv_graph_model(tmp_path / "m.onnx", "w", nodes, [], in_ch=2, ksize=(3, 3))
    assert not proto.graph.initializer
    layer = only_layer(tmp_path / "m.onnx")
    src = layer.source
    assert src.kind == "constant" and src.dtype == "float16"
    assert src.shape == (4, 2, 3, 3), "the reshaped shape is known without decoding"
    assert all(step in src.detail for step in ("Identity", "Cast to float32", "Reshape"))
    got = kernel_weights(layer)
    np.testing.assert_array_equal(got, w.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(got, impulse_kernels(proto, "Conv", 2, 1, (3, 3)))


def test_tensorflow_style_hwio_weight_behind_transpose(tmp_path):
    hwio = f32(3, 3, 2, 5)  # kH, kW, I, O as TensorFlow stores it
    nodes = [helper.make_node("Transpose", ["w_hwio"], ["w"], perm=[3, 2, 0, 1])]
    proto = conv_graph_model(tmp_path / "m.onnx", "w", nodes, [numpy_helper.from_array(hwio, "w_hwio")], in_ch=2, ksize=(3, 3))
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "initializer" and "via Transpose" in layer.source.detail
    assert layer.weight_shape == (5, 2, 3, 3)
    got = kernel_weights(layer)
    np.testing.assert_array_equal(got, hwio.transpose(3, 2, 0, 1))
    np.testing.assert_allclose(got, impulse_kernels(proto, "Conv", 2, 1, (3, 3)), atol=1e-6)


def test_constant_value_float_attribute_forms(tmp_path):
    # value_floats makes a 1-D constant: reshaped into the weight
    w = f32(2, 1, 2, 2)
    nodes = [
        helper.make_node("Constant", [], ["flat"], value_floats=w.reshape(-1).tolist()),
        helper.make_node("Constant", [], ["shape"], value_ints=[2, 1, 2, 2]),
        helper.make_node("Reshape", ["flat", "shape"], ["w"]),
    ]
    proto = conv_graph_model(tmp_path / "m.onnx", "w", nodes, [], in_ch=1, ksize=(2, 2))
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "constant"
    np.testing.assert_allclose(kernel_weights(layer), impulse_kernels(proto, "Conv", 1, 1, (2, 2)), atol=1e-6)


# ------------------------------------------------------------------------------ quantization


def _quantize(w: np.ndarray, axis: int | None, qtype: np.dtype, symmetric: bool):
    """Quantize ``w`` per tensor (axis None) or per channel; returns (q, scale, zero_point)."""
    info = np.iinfo(qtype)
    reduce = tuple(a for a in range(w.ndim) if a != axis) if axis is not None else None
    lo = np.minimum(w.min(axis=reduce), 0)
    hi = np.maximum(w.max(axis=reduce), 0)
    if symmetric:
        scale = np.maximum(np.abs(lo), np.abs(hi)) / info.max
        zp = np.zeros_like(scale)
    else:
        scale = (hi - lo) / (info.max - info.min)
        zp = np.round(info.min - lo / scale)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)) + zp.reshape(shape), info.min, info.max).astype(qtype)
    return q, scale.astype(np.float32), zp.astype(qtype)


@pytest.mark.parametrize(
    "op, axis, qtype, symmetric",
    [
        ("Conv", None, np.int8, True),
        ("Conv", None, np.uint8, False),
        ("Conv", 0, np.int8, True),
        ("Conv", 0, np.uint8, False),
        ("Conv", -4, np.int8, False),
        ("ConvTranspose", 1, np.int8, True),  # per output channel of a ConvTranspose weight (I, O/g, k, k)
        ("Conv", 0, np.int16, True),
    ],
)
def test_dequantize_linear_matches_onnxruntime(tmp_path, op, axis, qtype, symmetric):
    w = f32(6, 4, 3, 3)
    real_axis = None if axis is None else axis % 4
    q, scale, zp = _quantize(w, real_axis, np.dtype(qtype), symmetric)
    if axis is None:
        scale, zp = scale.reshape(()), zp.reshape(())
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "zp")]
    attrs = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s", "zp"], ["w"], **attrs)]
    in_ch = 6 if op == "ConvTranspose" else 4
    proto = conv_graph_model(tmp_path / "m.onnx", "w", nodes, inits, op=op, in_ch=in_ch, ksize=(3, 3))
    layer = only_layer(tmp_path / "m.onnx")
    src = layer.source
    assert src.kind == "quantized" and src.dtype == np.dtype(qtype).name
    assert ("per-tensor" if axis is None else f"per-channel (axis {real_axis}") in src.quantization
    assert "DequantizeLinear" in src.describe()
    got = kernel_weights(layer)
    oracle = impulse_kernels(proto, op, in_ch, 1, (3, 3))
    np.testing.assert_allclose(got, oracle, rtol=1e-6, atol=1e-7)
    # and the dequantized kernels are the float ones within half a quantization step
    shape = [1] * 4
    if real_axis is not None:
        shape[real_axis] = -1
    float_kernels = w if op == "Conv" else w.transpose(1, 0, 2, 3)
    step = scale.reshape(shape) if op == "Conv" else scale.reshape(shape).transpose(1, 0, 2, 3)
    assert np.all(np.abs(got - float_kernels) <= step * 0.5 + 1e-6)


@pytest.mark.parametrize(
    "elem",
    [TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E4M3FNUZ],
)
def test_int4_and_float8_dequantize_linear_match_onnxruntime(tmp_path, elem):
    np_type = helper.tensor_dtype_to_np_dtype(elem)
    w = f32(4, 2, 3, 3)
    scale = (np.abs(w).reshape(4, -1).max(axis=1) / 6).astype(np.float32)
    raw = np.round(w / scale.reshape(-1, 1, 1, 1)) if elem in (TensorProto.INT4, TensorProto.UINT4) else w / scale.reshape(-1, 1, 1, 1)
    if elem == TensorProto.UINT4:
        raw = raw + 8
        zp = np.full(4, 8).astype(np_type)
    else:
        zp = np.zeros(4).astype(np_type)
    q = np.asarray(raw).astype(np_type)
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "zp")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s", "zp"], ["w"], axis=0)]
    proto = conv_graph_model(tmp_path / "m.onnx", "w", nodes, inits, in_ch=2, ksize=(3, 3), opset=21)
    layer = only_layer(tmp_path / "m.onnx")
    name = np.dtype(np_type).name
    assert layer.source.dtype == name and layer.source.quantization.startswith(f"{name} per-channel (axis 0")
    got = kernel_weights(layer)
    np.testing.assert_allclose(got, impulse_kernels(proto, "Conv", 2, 1, (3, 3)), rtol=1e-6, atol=1e-7)
    # the reference evaluator of onnx agrees on the dequantized weight itself
    from onnx.reference import ReferenceEvaluator

    reference = ReferenceEvaluator(nodes[0], opsets={"": 21}).run(None, {"wq": q, "s": scale, "zp": zp})[0]
    np.testing.assert_array_equal(got, reference)


def test_float4_dequantize_linear_against_the_reference_evaluator(tmp_path):
    """onnxruntime has no float4 DequantizeLinear; kernels still work, decoded like onnx's reference."""
    from onnx.reference import ReferenceEvaluator

    np_type = helper.tensor_dtype_to_np_dtype(TensorProto.FLOAT4E2M1)
    w = f32(3, 2, 3, 3)
    q = np.clip(w * 2, -6, 6).astype(np_type)
    scale = np.float32(0.5)
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(np.array(scale), "s")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s"], ["w"])]
    conv_graph_model(tmp_path / "m.onnx", "w", nodes, inits, in_ch=2, ksize=(3, 3), opset=23, ir_version=11)
    layer = only_layer(tmp_path / "m.onnx")
    assert "float4" in layer.source.dtype and "per-tensor" in layer.source.quantization
    reference = ReferenceEvaluator(nodes[0], opsets={"": 23}).run(None, {"wq": q, "s": np.array(scale)})[0]
    np.testing.assert_array_equal(kernel_weights(layer), reference)


def test_blocked_dequantize_linear(tmp_path):
    w = f32(4, 8, 1, 1)
    block = 4
    scale = (np.abs(w).reshape(4, 2, 4).max(axis=2) / 7).astype(np.float32).reshape(4, 2, 1, 1)
    q = np.clip(np.round(w / np.repeat(scale, block, axis=1)), -8, 7).astype(helper.tensor_dtype_to_np_dtype(TensorProto.INT4))
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scale, "s")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s"], ["w"], axis=1, block_size=block)]
    proto = conv_graph_model(tmp_path / "m.onnx", "w", nodes, inits, in_ch=8, ksize=(1, 1), opset=21)
    layer = only_layer(tmp_path / "m.onnx")
    assert "blocked (axis 1, block 4)" in layer.source.quantization
    got = kernel_weights(layer)
    expected = q.astype(np.float32) * np.repeat(scale, block, axis=1)
    np.testing.assert_array_equal(got, expected)
    from onnx.reference import ReferenceEvaluator

    reference = ReferenceEvaluator(nodes[0], opsets={"": 21}).run(None, {"wq": q, "s": scale})[0]
    np.testing.assert_array_equal(got, reference)
    from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented

    try:
        oracle = impulse_kernels(proto, "Conv", 8, 1, (1, 1))
    except OrtNotImplemented as exc:  # an onnxruntime without a kernel for blocked int4 DequantizeLinear
        pytest.skip(f"onnxruntime {ort.__version__} has no kernel for blocked int4 DequantizeLinear: {str(exc)[:100]}")
    np.testing.assert_allclose(got, oracle, atol=1e-7)


def test_dequantize_rounds_to_a_float16_scale_like_the_runtime():
    q = np.array([[[[127, -128, 3]]]], np.int8)
    scale = np.array(0.0123, np.float16)
    got = dequantize(q, scale)
    expected = (q.astype(np.float32) * np.float32(scale)).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(OnnxvisError, match="does not fit axis"):
        dequantize(q, np.ones(5, np.float32), axis=0)


@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinearconv_weight_is_input_3_with_its_scale_and_zero_point(tmp_path, per_channel):
    w = f32(4, 3, 3, 3)
    q, scale, zp = _quantize(w, 0 if per_channel else None, np.dtype(np.int8), True)
    if not per_channel:
        scale, zp = scale.reshape(()), zp.reshape(())
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(q, "wq"),
        numpy_helper.from_array(scale, "ws"),
        numpy_helper.from_array(zp, "wz"),
        numpy_helper.from_array(np.array(0.05, np.float32), "ys"),
        numpy_helper.from_array(np.array(128, np.uint8), "yz"),
    ]
    conv_graph_model(
        tmp_path / "m.onnx", "wq", [], inits, op="QLinearConv", in_ch=3, ksize=(3, 3), x_type=TensorProto.UINT8,
        conv_inputs=["x", "xs", "xz", "wq", "ws", "wz", "ys", "yz"], opset=13,
    )
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.op_type == "QLinearConv" and layer.weight_name == "wq"
    assert layer.source.kind == "quantized"
    assert ("per-channel (axis 0, 4 scales)" if per_channel else "per-tensor") in layer.source.describe()
    got = kernel_weights(layer)
    expected = q.astype(np.float32) * (scale.reshape(-1, 1, 1, 1) if per_channel else scale)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.all(np.abs(got - w) <= (scale.reshape(-1, 1, 1, 1) if per_channel else scale) / 2 + 1e-6)


def test_conv_integer_without_scale_gives_integer_steps_like_onnxruntime(tmp_path):
    w = RNG.integers(0, 255, size=(3, 2, 3, 3)).astype(np.uint8)
    zp = np.array(100, np.uint8)
    inits = [numpy_helper.from_array(w, "wq"), numpy_helper.from_array(zp, "wz")]
    proto = conv_graph_model(
        tmp_path / "m.onnx", "wq", [], inits, op="ConvInteger", in_ch=2, ksize=(3, 3), x_type=TensorProto.UINT8,
        conv_inputs=["x", "wq", "", "wz"], opset=13,
    )
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "quantized" and "integer steps" in layer.source.describe()
    got = kernel_weights(layer)
    np.testing.assert_array_equal(got, w.astype(np.float32) - 100)
    np.testing.assert_array_equal(got, impulse_kernels(proto, "ConvInteger", 2, 1, (3, 3), x_dtype=np.uint8))


def test_conv_integer_of_onnxruntime_dynamic_quantization_within_one_step(tmp_path):
    """onnxruntime's dynamic quantizer: ConvInteger, then Cast and Mul by (x_scale * w_scale)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = asset("models/mnist_cntk.onnx")
    target = tmp_path / "mnist_dynamic.onnx"
    quantize_dynamic(str(source), str(target), op_types_to_quantize=["Conv"], weight_type=QuantType.QInt8)
    float_layers = find_conv_layers(Model.open(source))
    model = Model.open(target)
    layers = find_conv_layers(model)
    assert [layer.op_type for layer in layers] == ["ConvInteger", "ConvInteger"]
    for layer, float_layer in zip(layers, float_layers, strict=True):
        assert "w_scale from the Mul after it" in layer.source.describe()
        scale_name = next(n for n in model.initializer_names if n.endswith("_scale") and layer.weight_name.startswith(n[: -len("_scale")]))
        step = float(np.max(model.tensor(scale_name)))
        diff = np.abs(kernel_weights(layer) - kernel_weights(float_layer)).max()
        assert diff <= step * (0.5 + 1e-4), f"{layer.name}: {diff / step:.3f} steps"


# ------------------------------------------------------------------------------- computed


def test_constant_of_shape_is_folded_and_its_shape_known_before(tmp_path):
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["w"], value=numpy_helper.from_array(np.array([0.25], np.float32), "v"))]
    inits = [numpy_helper.from_array(np.array([3, 2, 3, 3], np.int64), "shape")]
    proto = conv_graph_model(tmp_path / "m.onnx", "w", nodes, inits, in_ch=2, ksize=(3, 3))
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "computed" and "ConstantOfShape" in layer.source.describe()
    assert layer.weight_shape == (3, 2, 3, 3)
    got = kernel_weights(layer)
    np.testing.assert_array_equal(got, np.full((3, 2, 3, 3), 0.25, np.float32))
    np.testing.assert_array_equal(got, impulse_kernels(proto, "Conv", 2, 1, (3, 3)))


def test_arithmetic_on_stored_weights_is_folded(tmp_path):
    """E.g. a weight normalised by the graph: w = v * g / norm (weight normalisation)."""
    v = f32(4, 2, 3, 3)
    g = np.abs(f32(4, 1, 1, 1)) + 0.5
    nodes = [
        helper.make_node("ReduceL2", ["v", "axes"], ["norm"], keepdims=1),
        helper.make_node("Div", ["v", "norm"], ["unit"]),
        helper.make_node("Mul", ["unit", "g"], ["w"]),
    ]
    inits = [numpy_helper.from_array(v, "v"), numpy_helper.from_array(g, "g"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")]
    proto = conv_graph_model(tmp_path / "m.onnx", "w", nodes, inits, in_ch=2, ksize=(3, 3), opset=18)
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "computed"
    assert "Div" in layer.source.detail and "Mul" in layer.source.detail and "ReduceL2" in layer.source.detail
    np.testing.assert_allclose(kernel_weights(layer), impulse_kernels(proto, "Conv", 2, 1, (3, 3)), rtol=1e-5, atol=1e-6)


def test_weight_computed_from_a_runtime_input_says_so(tmp_path):
    nodes = [
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("ConstantOfShape", ["ws"], ["w"]),
    ]
    inits = [numpy_helper.from_array(np.array([2, 2, 3, 3], np.int64), "ws_unused")]
    # w's shape depends on a run-time input, via a Concat with the input's shape
    nodes = [
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Slice", ["xs", "one", "two"], ["c"]),
        helper.make_node("Concat", ["c", "c", "k"], ["ws"], axis=0),
        helper.make_node("ConstantOfShape", ["ws"], ["w"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([3, 3], np.int64), "k"),
    ]
    conv_graph_model(tmp_path / "m.onnx", "w", nodes, inits, in_ch=2, ksize=(3, 3))
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "runtime input"
    assert "'x'" in layer.source.detail
    assert not layer.source.loadable
    with pytest.raises(OnnxvisError, match=r"layer 0 \(the_conv\).*not in the file"):
        kernel_weights(layer)


def test_weight_that_is_a_graph_input(tmp_path):
    extra = [helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2, 3, 3])]
    conv_graph_model(tmp_path / "m.onnx", "w", [], [], in_ch=2, ksize=(3, 3), extra_inputs=extra)
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.source.kind == "runtime input" and "input 'w'" in layer.source.detail
    with pytest.raises(OnnxvisError, match="runtime input"):
        kernel_weights(layer)


@pytest.mark.parametrize(
    "node, reason",
    [
        (helper.make_node("RandomNormal", [], ["w"], shape=[2, 2, 3, 3]), "random"),
        (helper.make_node("MakeWeight", ["seed"], ["w"], domain="custom.ops"), "no reference implementation"),
    ],
)
def test_weight_that_cannot_be_folded_says_why(tmp_path, node, reason):
    inits = [numpy_helper.from_array(np.array([1.0], np.float32), "seed")]
    path = tmp_path / "m.onnx"
    model = conv_graph_model(path, "w", [node], inits, in_ch=2, ksize=(3, 3))
    if node.domain:
        model.opset_import.append(helper.make_opsetid(node.domain, 1))
        onnx.save(model, str(path))
    layer = only_layer(path)
    assert layer.source.kind == "computed"
    assert "cannot be folded" in layer.source.detail and reason in layer.source.detail
    with pytest.raises(OnnxvisError, match="cannot be drawn"):
        kernel_weights(layer)


# ---------------------------------------------------------------------------------- external


def test_external_data_weights_read_from_the_model_folder(tmp_path, monkeypatch):
    w = f32(8, 3, 5, 5)
    c = f32(4, 8, 3, 3)
    folder = tmp_path / "exported"
    folder.mkdir()
    conv1 = helper.make_node("Conv", ["x", "w"], ["h"], name="c1")
    const = helper.make_node("Constant", [], ["wc"], value=numpy_helper.from_array(c, "wc_value"))
    conv2 = helper.make_node("Conv", ["h", "wc"], ["y"], name="c2")
    graph = helper.make_graph(
        [conv1, const, conv2], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "net.onnx"
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="net.onnx.data", size_threshold=0, convert_attribute=True)
    onnx.save(model, str(path))
    saved = onnx.load(str(path), load_external_data=False)
    assert saved.graph.initializer[0].data_location == TensorProto.EXTERNAL
    assert saved.graph.node[1].attribute[0].t.data_location == TensorProto.EXTERNAL, "the Constant's value is external too"
    monkeypatch.chdir(tmp_path)  # relative paths must resolve against the model's folder, not the cwd
    layers = find_conv_layers(Model.open(path))
    assert "external data in net.onnx.data" in layers[0].source.describe()
    np.testing.assert_array_equal(kernel_weights(layers[0]), w)
    assert layers[1].source.kind == "constant"
    np.testing.assert_array_equal(kernel_weights(layers[1]), c)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    w = f32(2, 1, 3, 3)
    inner = tmp_path / "models"
    inner.mkdir()
    node = helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "wv"))
    proto = conv_graph_model(inner / "m.onnx", "w", [node], [], in_ch=1, ksize=(3, 3))
    (tmp_path / "secret.bin").write_bytes(w.tobytes())
    tensor = proto.graph.node[0].attribute[0].t
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(w.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(inner / "m.onnx"))
    layer = only_layer(inner / "m.onnx")
    with pytest.raises(OnnxvisError, match="cannot be decoded"):
        kernel_weights(layer)


# ---------------------------------------------------------------------------- conv kinds


@pytest.mark.parametrize(
    "in_ch, out_ch, group, ksize",
    [
        (4, 6, 2, (3, 3)),  # grouped
        (6, 6, 6, (3, 3)),  # depthwise
        (4, 8, 4, (3, 3)),  # depthwise with multiplier 2
        (3, 5, 1, (1, 1)),  # 1x1
        (2, 3, 1, (5,)),  # 1-D
        (2, 3, 1, (2, 3, 3)),  # 3-D
        (4, 4, 2, (3,)),  # grouped 1-D
    ],
)
def test_conv_kinds_against_onnxruntime(tmp_path, in_ch, out_ch, group, ksize):
    w = f32(out_ch, in_ch // group, *ksize)
    proto = conv_graph_model(tmp_path / "m.onnx", "w", [], [numpy_helper.from_array(w, "w")],
        in_ch=in_ch, ksize=ksize, attrs={"group": group})
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.group == group and layer.out_channels == out_ch and layer.kernel_size == ksize
    got = kernel_weights(layer)
    assert got.shape == (out_ch, in_ch // group, *ksize)
    np.testing.assert_allclose(got, impulse_kernels(proto, "Conv", in_ch, group, ksize), atol=1e-6)


@pytest.mark.parametrize(
    "in_ch, out_per_group, group, ksize",
    [(4, 3, 1, (3, 3)), (4, 3, 2, (3, 3)), (6, 1, 6, (2, 2)), (4, 2, 2, (3,)), (2, 2, 1, (2, 2, 2))],
)
def test_conv_transpose_is_drawn_per_output_channel(tmp_path, in_ch, out_per_group, group, ksize):
    w = f32(in_ch, out_per_group, *ksize)  # ConvTranspose stores (C_in, C_out/group, *k)
    proto = conv_graph_model(
        tmp_path / "m.onnx", "w", [], [numpy_helper.from_array(w, "w")], op="ConvTranspose",
        in_ch=in_ch, ksize=ksize, attrs={"group": group}
    )
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.out_channels == out_per_group * group
    got = kernel_weights(layer)
    assert got.shape == (out_per_group * group, in_ch // group, *ksize)
    np.testing.assert_allclose(got, impulse_kernels(proto, "ConvTranspose", in_ch, group, ksize), atol=1e-6)
    # the index rule in kernel_weights' docstring, checked element by element
    per_in = in_ch // group
    for o in range(out_per_group * group):
        g = o // out_per_group
        for i in range(per_in):
            np.testing.assert_array_equal(got[o, i], w[g * per_in + i, o % out_per_group])


@pytest.mark.full
def test_conv_transpose_regrouping_against_torch():
    """torch: conv_transpose2d(x, W, groups=g) equals a conv2d with our kernels flipped, on the padded input."""
    torch = pytest.importorskip("torch")
    from onnxvis.model.layers import ConvLayer
    from onnxvis.model.weights import WeightSource

    for in_ch, out_per_group, group, k in [(4, 3, 2, 3), (6, 2, 3, 2), (3, 5, 1, 3), (8, 1, 8, 3)]:
        w = f32(in_ch, out_per_group, k, k)
        source = WeightSource("initializer", "", w.shape, "float32", "", lambda w=w: w)
        layer = ConvLayer(0, "ct", "ConvTranspose", "", "x", "w", "y", "", {"group": group}, source)
        kernels = torch.from_numpy(kernel_weights(layer))
        x = torch.from_numpy(f32(1, in_ch, 7, 7))
        expected = torch.nn.functional.conv_transpose2d(x, torch.from_numpy(w), groups=group)
        padded = torch.nn.functional.pad(x, (k - 1,) * 4)
        got = torch.nn.functional.conv2d(padded, kernels.flip(-1, -2), groups=group)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.full
def test_conv_1d_and_3d_against_torch():
    torch = pytest.importorskip("torch")
    from onnxvis.model.layers import ConvLayer
    from onnxvis.model.weights import WeightSource

    cases = [((4, 2, 5), torch.nn.functional.conv1d, (1, 2, 20)), ((3, 2, 2, 3, 3), torch.nn.functional.conv3d, (1, 2, 6, 7, 7))]
    for shape, fn, x_shape in cases:
        w = f32(*shape)
        source = WeightSource("initializer", "", w.shape, "float32", "", lambda w=w: w)
        layer = ConvLayer(0, "c", "Conv", "", "x", "w", "y", "", {}, source)
        x = torch.from_numpy(f32(*x_shape))
        torch.testing.assert_close(fn(x, torch.from_numpy(kernel_weights(layer))), fn(x, torch.from_numpy(w)))


def test_fused_conv_of_com_microsoft(tmp_path):
    w = f32(4, 3, 3, 3)
    proto = conv_graph_model(
        tmp_path / "m.onnx", "w", [], [numpy_helper.from_array(w, "w")], op="FusedConv", domain="com.microsoft",
        in_ch=3, ksize=(3, 3), attrs={"activation": "Relu"}, opset=17,
    )
    layer = only_layer(tmp_path / "m.onnx")
    assert layer.op_type == "FusedConv" and layer.fused_activation == "Relu"
    np.testing.assert_array_equal(kernel_weights(layer), w)
    # onnxruntime runs it: the positive part of its impulse response is the kernel's
    np.testing.assert_allclose(impulse_kernels(proto, "Conv", 3, 1, (3, 3)), np.maximum(w, 0), atol=1e-6)


# ------------------------------------------------------------------------------- real models


def test_real_constantofshape_model_is_folded():
    layers = find_conv_layers(Model.open(asset("models/light_squeezenet_constantofshape.onnx")))
    assert len(layers) == 26
    for layer in layers:
        assert layer.source.kind == "computed" and layer.weight_shape is not None
    got = kernel_weights(layers[0])
    assert got.shape == layers[0].weight_shape == (64, 3, 3, 3)
    np.testing.assert_allclose(got, 0.02)


def test_real_paddle_model_without_initializers_uses_constants():
    model = Model.open(asset("models/ppocr_mobile_v2.0_cls_paddle.onnx"))
    assert not model.initializer_names
    layers = find_conv_layers(model)
    assert len(layers) == 53
    assert {layer.source.kind for layer in layers} == {"constant"}
    first = kernel_weights(layers[0])
    assert first.shape == (8, 3, 3, 3) and np.isfinite(first).all() and first.std() > 0
    depthwise = next(layer for layer in layers if layer.group > 1)
    assert kernel_weights(depthwise).shape[1] == 1
