"""Tests for onnxvis.model.file: lazy, safe reading of ONNX files.

The reference for every decoded tensor is ``onnx.numpy_helper.to_array`` of the same initializer
after a plain ``onnx.load``: same dtype, same bytes.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnxvis.errors import OnnxvisError
from onnxvis.model import protoscan as _protoscan
from onnxvis.model.file import Model

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
MODELS_DIR = ASSETS / "models"
REAL_MODELS = sorted(MODELS_DIR.glob("*.onnx")) if MODELS_DIR.is_dir() else []
NO_ASSETS = f"real test models not found in {MODELS_DIR} (shared assets folder absent)"
needs_assets = pytest.mark.skipif(not REAL_MODELS, reason=NO_ASSETS)

DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


# ------------------------------------------------------------------------------------ helpers


def assert_same_array(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    if got.dtype == object:  # strings: compare the values, not the object pointers
        assert got.tolist() == want.tolist()
        return
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


def assert_matches_plain_load(path: Path) -> Model:
    """Everything Model reads from ``path`` equals what a plain onnx.load gives."""
    model = Model.open(path)
    ref = onnx.load(str(path))
    assert list(model.proto.graph.node) == list(ref.graph.node)
    assert len(model.graph.initializer) == len(ref.graph.initializer)
    for skel, full in zip(model.graph.initializer, ref.graph.initializer, strict=True):
        assert (skel.name, list(skel.dims), skel.data_type) == (full.name, list(full.dims), full.data_type)
        assert not any(skel.HasField(f) if f == "raw_data" else len(getattr(skel, f)) for f in DATA_FIELDS)
        assert model.initializer_info(full.name) == (tuple(full.dims), full.data_type)
        assert_same_array(model.tensor(full.name), numpy_helper.to_array(full))
        assert model.initializer_proto(full.name) == full
    # The skeleton is the plain load (external data not loaded) minus the top-level initializers'
    # data, nothing else.
    ref = onnx.load(str(path), load_external_data=False)
    for t in ref.graph.initializer:
        for f in DATA_FIELDS:
            t.ClearField(f)
    assert model.proto == ref
    return model


def save_graph_model(
    path: Path,
    initializers: list[TensorProto],
    *,
    ir_version: int | None = None,
    opset: int = 13,
    as_inputs: bool = False,
) -> Path:
    """A model whose single output concatenates nothing: one Identity per initializer."""
    nodes = [helper.make_node("Identity", [t.name], [f"out_{i}"]) for i, t in enumerate(initializers)]
    outputs = [helper.make_tensor_value_info(f"out_{i}", t.data_type, list(t.dims)) for i, t in enumerate(initializers)]
    inputs = (
        [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers] if as_inputs else []
    )
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    kwargs = {"ir_version": ir_version} if ir_version is not None else {}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kwargs)
    onnx.save(model, str(path))
    return path


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------------- real models


@needs_assets
@pytest.mark.parametrize("path", REAL_MODELS or [None], ids=lambda p: p.name if p else "none")
def test_real_model_matches_plain_onnx_load(path):
    model = assert_matches_plain_load(path)
    assert model.name == path.name[: -len(".onnx")]
    assert model.opsets == {(o.domain or "ai.onnx"): o.version for o in onnx.load(str(path)).opset_import}


@needs_assets
def test_real_models_cover_the_interesting_storage_kinds():
    """The comparison above is only meaningful if the assets hold typed, raw and float16 data."""
    kinds = set()
    for path in REAL_MODELS:
        for t in onnx.load(str(path)).graph.initializer:
            kinds.add("raw" if t.HasField("raw_data") else "typed")
            kinds.add(t.data_type)
    assert {"raw", "typed", TensorProto.FLOAT16, TensorProto.INT8, TensorProto.FLOAT} <= kinds


@needs_assets
def test_first_conv_weight_of_squeezenet_stays_float16():
    model = Model.open(MODELS_DIR / "squeezenet1.0_caffe2_fp16.onnx")
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    w = model.tensor(conv.input[1])
    assert w.dtype == np.float16 and w.shape == (64, 3, 3, 3)
    assert w.flags.writeable
    assert np.isfinite(w).all() and w.std() > 0


@needs_assets
def test_model_without_initializers_keeps_its_constant_nodes():
    path = MODELS_DIR / "ppocr_mobile_v2.0_cls_paddle.onnx"
    model = Model.open(path)
    assert model.initializer_names == []
    ref = onnx.load(str(path))
    consts = [n for n in model.graph.node if n.op_type == "Constant"]
    assert consts and consts == [n for n in ref.graph.node if n.op_type == "Constant"]
    assert not model.has_initializer(consts[0].output[0])
    with pytest.raises(KeyError):
        model.tensor(consts[0].output[0])


@needs_assets
def test_metadata_and_producer_of_a_real_model():
    path = MODELS_DIR / "mnist_cntk.onnx"
    ref = onnx.load(str(path))
    model = Model.open(path)
    assert model.producer == ref.producer_name == "CNTK"
    assert model.producer_version == ref.producer_version
    assert model.ir_version == ref.ir_version == 3
    assert model.opsets == {"ai.onnx": 7}
    assert model.metadata == {p.key: p.value for p in ref.metadata_props}


# ------------------------------------------------------------------------------ dtypes, layouts


def _typed(name, data_type, values, dims):
    return helper.make_tensor(name, data_type, dims, values, raw=False)


SMALL_TENSORS = {
    "float32_raw": lambda: numpy_helper.from_array(np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4), "w"),
    "float16_raw": lambda: numpy_helper.from_array(np.array([[1.5, -2.25, 65504, np.inf]], np.float16), "w"),
    "float16_typed": lambda: _typed("w", TensorProto.FLOAT16, np.array([1.5, -2.25, 0.1], np.float16), [3]),
    "bfloat16_raw": lambda: numpy_helper.from_array(np.array([1.5, -3, 1e30], ml_dtypes.bfloat16), "w"),
    "bfloat16_typed": lambda: _typed("w", TensorProto.BFLOAT16, [1.5, -3.0, 7.0, 0.25], [2, 2]),
    "double_raw": lambda: numpy_helper.from_array(np.array([np.pi, -1e300, 5e-324]), "w"),
    "double_typed": lambda: _typed("w", TensorProto.DOUBLE, [np.pi, -1e300], [2]),
    "int8_raw": lambda: numpy_helper.from_array(np.arange(-128, 128, dtype=np.int8).reshape(16, 16), "w"),
    "int8_typed": lambda: _typed("w", TensorProto.INT8, [-128, 0, 127], [3]),
    "uint8_raw": lambda: numpy_helper.from_array(np.arange(256, dtype=np.uint8), "w"),
    "uint8_typed": lambda: _typed("w", TensorProto.UINT8, [0, 1, 255], [1, 3]),
    "int64_typed": lambda: _typed("w", TensorProto.INT64, [-(2**63), 2**63 - 1, 0, 42], [4]),
    "int64_raw": lambda: numpy_helper.from_array(np.array([-(2**63), 2**63 - 1], np.int64), "w"),
    "float32_typed": lambda: _typed("w", TensorProto.FLOAT, [0.5, -0.0, float("nan")], [3]),
    "uint64_typed": lambda: _typed("w", TensorProto.UINT64, [2**64 - 1, 3], [2]),
    "scalar_0d_raw": lambda: numpy_helper.from_array(np.array(3.25, np.float32), "w"),
    "scalar_0d_typed": lambda: _typed("w", TensorProto.INT64, [7], []),
    "empty_raw": lambda: numpy_helper.from_array(np.zeros((0, 3), np.float32), "w"),
    "empty_typed": lambda: _typed("w", TensorProto.FLOAT, [], [2, 0]),
    "bool_raw": lambda: numpy_helper.from_array(np.array([True, False, True]), "w"),
    "complex64_raw": lambda: numpy_helper.from_array(np.array([1 + 2j, -3j], np.complex64), "w"),
    "float8e4m3fn_raw": lambda: numpy_helper.from_array(np.array([1.5, -448, 0.125], ml_dtypes.float8_e4m3fn), "w"),
    "int4_raw": lambda: numpy_helper.from_array(np.array([-8, 7, 1], ml_dtypes.int4), "w"),
    "uint4_raw": lambda: numpy_helper.from_array(np.array([[0, 15], [3, 9]], ml_dtypes.uint4), "w"),
    "string_typed": lambda: helper.make_tensor("w", TensorProto.STRING, [2], [b"conv", "k\u00e9rnel".encode()]),
}


@pytest.mark.parametrize("kind", list(SMALL_TENSORS))
def test_small_model_tensor_matches_to_array(tmp_path, kind):
    tensor = SMALL_TENSORS[kind]()
    path = save_graph_model(tmp_path / f"{kind}.onnx", [tensor])
    model = assert_matches_plain_load(path)
    got = model.tensor("w")
    # Independent of onnx.load: the values we put in come back (NaN-aware, same dtype as to_array).
    assert_same_array(got, numpy_helper.to_array(tensor))
    assert got.shape == tuple(tensor.dims)


def test_skeleton_strips_every_data_field_but_keeps_the_rest(tmp_path):
    t = numpy_helper.from_array(np.ones((4, 5), np.float32), "w")
    t.doc_string = "the weight"
    entry = t.metadata_props.add()
    entry.key, entry.value = "origin", "test"
    path = save_graph_model(tmp_path / "m.onnx", [t, _typed("b", TensorProto.INT64, [1, 2], [2])])
    model = Model.open(path)
    w = model.graph.initializer[0]
    assert (w.name, list(w.dims), w.data_type, w.doc_string) == ("w", [4, 5], TensorProto.FLOAT, "the weight")
    assert [(p.key, p.value) for p in w.metadata_props] == [("origin", "test")]
    assert not w.HasField("raw_data") and not model.graph.initializer[1].int64_data
    assert model.initializer_names == ["w", "b"]
    assert model.has_initializer("b") and not model.has_initializer("nope")
    assert_same_array(model.tensor("b"), np.array([1, 2], np.int64))


def test_ir3_model_with_initializers_as_graph_inputs(tmp_path):
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    path = save_graph_model(tmp_path / "ir3.onnx", [w], ir_version=3, opset=7, as_inputs=True)
    model = assert_matches_plain_load(path)
    assert model.ir_version == 3
    assert [i.name for i in model.graph.input] == ["w"]
    assert_same_array(model.tensor("w"), np.arange(6, dtype=np.float32).reshape(2, 3))


def test_subgraph_initializers_stay_intact(tmp_path):
    then_w = numpy_helper.from_array(np.full((2, 2), 7.0, np.float32), "then_w")
    else_w = _typed("else_w", TensorProto.FLOAT, [1.0, 2.0, 3.0, 4.0], [2, 2])
    then_g = helper.make_graph(
        [helper.make_node("Identity", ["then_w"], ["t"])], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 2])], initializer=[then_w],
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["else_w"], ["e"])], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 2])], initializer=[else_w],
    )
    top_w = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(2, 2), "top_w")
    graph = helper.make_graph(
        [
            helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
            helper.make_node("Add", ["y", "top_w"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 2])],
        initializer=[top_w],
    )
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    model = assert_matches_plain_load(path)
    if_node = model.graph.node[0]
    branches = {a.name: a.g for a in if_node.attribute}
    assert branches["then_branch"].initializer[0] == then_w  # raw_data kept in the subgraph
    assert branches["else_branch"].initializer[0] == else_w  # typed data kept in the subgraph
    assert not model.has_initializer("then_w")
    assert not model.graph.initializer[0].HasField("raw_data")


def test_model_built_in_memory_still_works(tmp_path):
    """The constructor keeps its old form: full TensorProtos, no file behind them."""
    w = numpy_helper.from_array(np.arange(3, dtype=np.int8), "w")
    proto = onnx.load(str(save_graph_model(tmp_path / "mem.onnx", [w])))
    model = Model(tmp_path / "mem.onnx", proto, {t.name: t for t in proto.graph.initializer})
    assert model.name == "mem"
    assert_same_array(model.tensor("w"), np.arange(3, dtype=np.int8))
    assert model.initializer_proto("w") == w


def test_file_changed_after_open_is_reported(tmp_path):
    path = save_graph_model(tmp_path / "m.onnx", [numpy_helper.from_array(np.ones(4, np.float32), "w")])
    model = Model.open(path)
    save_graph_model(path, [numpy_helper.from_array(np.ones(40, np.float32), "w")])
    with pytest.raises(OnnxvisError, match="changed on disk") as excinfo:
        model.tensor("w")
    one_line_error(excinfo)


def test_mismatched_raw_size_is_an_onnxvis_error(tmp_path):
    t = numpy_helper.from_array(np.ones(4, np.float32), "w")
    t.raw_data = t.raw_data[:10]  # 10 bytes cannot be 4 float32
    path = save_graph_model(tmp_path / "bad.onnx", [t])
    model = Model.open(path)
    with pytest.raises(OnnxvisError, match="damaged") as excinfo:
        model.tensor("w")
    one_line_error(excinfo)


# ----------------------------------------------------------------------------- external data


@pytest.fixture
def external_model(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    tensors = [
        numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.arange(8, dtype=np.float16), "conv_b"),
        numpy_helper.from_array(np.array([-8, 7, 3], ml_dtypes.int4), "packed"),
        _typed("shape", TensorProto.INT64, [1, -1], [2]),
    ]
    nodes = [helper.make_node("Identity", [t.name], [t.name + "_out"]) for t in tensors]
    outs = [helper.make_tensor_value_info(t.name + "_out", t.data_type, list(t.dims)) for t in tensors]
    model = helper.make_model(helper.make_graph(nodes, "g", [], outs, initializer=tensors))
    path = folder / "x.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
        location="x.onnx.data", size_threshold=0,
    )
    assert (folder / "x.onnx.data").is_file()
    return path


def test_external_data_tensors_match(external_model):
    model = assert_matches_plain_load(external_model)
    skel = {t.name: t for t in model.graph.initializer}
    assert skel["conv_w"].data_location == TensorProto.EXTERNAL
    assert {e.key for e in skel["conv_w"].external_data} >= {"location", "offset", "length"}
    full = model.initializer_proto("conv_w")
    assert full.data_location == TensorProto.DEFAULT and not full.external_data and full.raw_data
    assert model.tensor("packed").dtype == ml_dtypes.int4


def _retarget(path: Path, new_name: str, **changes) -> Path:
    """Save a copy of the external-data model beside it, with external_data entries changed."""
    proto = onnx.load(str(path), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key in changes:
                e.value = str(changes[e.key])
    out = path.parent / new_name
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize(
    "location, match",
    [
        ("../../etc/passwd", "outside"),
        ("../x.onnx.data", "outside"),
        ("/etc/passwd", "absolute"),
        ("missing.data", "missing"),
        ("sub/../../m/x.onnx.data", "outside|missing"),
    ],
)
def test_external_location_outside_or_missing_is_refused(external_model, location, match):
    bad = _retarget(external_model, "bad.onnx", location=location)
    model = Model.open(bad)  # opening is lazy: the structure is fine
    with pytest.raises(OnnxvisError, match=match) as excinfo:
        model.tensor("conv_w")
    msg = one_line_error(excinfo)
    assert "conv_w" in msg and "data file" in msg
    with pytest.raises(OnnxvisError):
        model.initializer_proto("conv_b")


def test_external_symlink_pointing_outside_is_refused(external_model, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 4096)
    (external_model.parent / "link.data").symlink_to(secret)
    model = Model.open(_retarget(external_model, "link.onnx", location="link.data"))
    with pytest.raises(OnnxvisError, match="symbolic link") as excinfo:
        model.tensor("conv_w")
    one_line_error(excinfo)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"offset": 10**9}, "past the end"),
        ({"length": 10**9}, "past the end"),
        ({"offset": -4}, "non-negative"),
        ({"length": "twelve"}, "bad external data"),
    ],
)
def test_external_offset_or_length_beyond_file_is_refused(external_model, changes, match):
    model = Model.open(_retarget(external_model, "far.onnx", **changes))
    with pytest.raises(OnnxvisError, match=match) as excinfo:
        model.tensor("conv_w")
    one_line_error(excinfo)


def test_external_data_file_deleted_after_open(external_model):
    model = Model.open(external_model)
    (external_model.parent / "x.onnx.data").unlink()
    with pytest.raises(OnnxvisError, match="missing"):
        model.tensor("conv_b")


def test_external_length_not_matching_shape_is_refused(external_model):
    model = Model.open(_retarget(external_model, "short.onnx", length=4))
    with pytest.raises(OnnxvisError, match="damaged"):
        model.tensor("conv_w")


# ----------------------------------------------------------------------------------- bad files


def _valid_small_model_bytes() -> bytes:
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w")
    t = _typed("t", TensorProto.INT64, [1, 2, 3], [3])
    nodes = [helper.make_node("Identity", ["w"], ["y"]), helper.make_node("Identity", ["t"], ["z"])]
    graph = helper.make_graph(
        nodes, "g", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4]), helper.make_tensor_value_info("z", 7, [3])],
        initializer=[w, t],
    )
    return helper.make_model(graph).SerializeToString()


def test_missing_file(tmp_path):
    with pytest.raises(OnnxvisError, match="not found") as excinfo:
        Model.open(tmp_path / "nope.onnx")
    one_line_error(excinfo)


def test_directory(tmp_path):
    with pytest.raises(OnnxvisError, match="directory") as excinfo:
        Model.open(tmp_path)
    one_line_error(excinfo)


def test_empty_file(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(OnnxvisError, match="empty") as excinfo:
        Model.open(tmp_path / "e.onnx")
    one_line_error(excinfo)


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    (tmp_path / "r.onnx").write_bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
    with pytest.raises(OnnxvisError) as excinfo:
        Model.open(tmp_path / "r.onnx")
    one_line_error(excinfo)


@needs_assets
def test_truncated_real_model(tmp_path):
    data = (MODELS_DIR / "mnist_cntk.onnx").read_bytes()
    (tmp_path / "half.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxvisError, match="not a readable ONNX model") as excinfo:
        Model.open(tmp_path / "half.onnx")
    one_line_error(excinfo)


def test_every_truncation_of_a_small_model(tmp_path):
    data = _valid_small_model_bytes()
    path = tmp_path / "t.onnx"
    opened = 0
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        try:
            model = Model.open(path)
        except OnnxvisError as exc:
            assert "\n" not in str(exc)
            continue
        opened += 1  # a cut at a field boundary after the graph is valid protobuf
        for name in model.initializer_names:
            model.tensor(name)
    path.write_bytes(data)
    assert_same_array(Model.open(path).tensor("w"), np.arange(12, dtype=np.float32).reshape(3, 4))
    assert opened < 10


@pytest.mark.parametrize(
    "content, match",
    [
        (b"ir_version: 8\ngraph {\n  node { op_type: \"Relu\" }\n}\n", "text file"),
        ("# a note about the model, caf\u00e9\n".encode() * 5, "text file"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 528000000\n", "Git LFS"),
    ],
)
def test_text_file_named_onnx(tmp_path, content, match):
    (tmp_path / "t.onnx").write_bytes(content)
    with pytest.raises(OnnxvisError, match=match) as excinfo:
        Model.open(tmp_path / "t.onnx")
    one_line_error(excinfo)


def test_valid_protobuf_without_graph_or_nodes(tmp_path):
    (tmp_path / "nograph.onnx").write_bytes(onnx.ModelProto(ir_version=8, producer_name="x").SerializeToString())
    with pytest.raises(OnnxvisError, match="no graph") as excinfo:
        Model.open(tmp_path / "nograph.onnx")
    one_line_error(excinfo)
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), str(tmp_path / "nonodes.onnx"))
    with pytest.raises(OnnxvisError, match="no nodes") as excinfo:
        Model.open(tmp_path / "nonodes.onnx")
    one_line_error(excinfo)


def test_huge_claimed_length_costs_nothing(tmp_path):
    # ModelProto.graph (field 7, length-delimited) claiming 2**62 bytes; then GraphProto.initializer claiming 2**40.
    path = tmp_path / "huge.onnx"
    path.write_bytes(b"\x08\x07\x3a" + _protoscan.encode_varint(2**62) + b"\x2a\x02")
    tracemalloc.start()
    try:
        with pytest.raises(OnnxvisError, match="not a readable ONNX model"):
            Model.open(path)
        inner = b"\x2a" + _protoscan.encode_varint(2**40) + b"\x00" * 8
        path.write_bytes(b"\x08\x07\x3a" + _protoscan.encode_varint(len(inner)) + inner)
        with pytest.raises(OnnxvisError, match="past the end"):
            Model.open(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_models_give_a_model_or_an_onnxvis_error(tmp_path, data):
    raw = bytearray(_valid_small_model_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    path = tmp_path / "mut.onnx"
    path.write_bytes(bytes(raw))
    try:
        model = Model.open(path)
    except OnnxvisError as exc:
        assert "\n" not in str(exc)
        return
    for name in model.initializer_names:
        try:
            model.tensor(name)
            model.initializer_proto(name)
        except OnnxvisError as exc:
            assert "\n" not in str(exc)


def test_scanner_rejects_malformed_wire_data():
    bad = [
        b"\x00",  # field number 0
        b"\x0f",  # wire type 7
        b"\x08",  # truncated varint
        b"\x08" + b"\xff" * 11,  # varint longer than 10 bytes
        b"\x3a\x05abc",  # length past the end
        b"\x0c",  # end group without start
        b"\x0b\x10\x01",  # unterminated group
        b"\x09\x00\x00",  # fixed64 cut short
    ]
    for b in bad:
        with pytest.raises(_protoscan.WireFormatError):
            _protoscan.scan(b)
    ok = _protoscan.scan(b"\x0b\x10\x01\x0c\x08\x01")  # a group is valid protobuf, kept verbatim
    assert ok.skeleton == b"\x0b\x10\x01\x0c\x08\x01" and ok.graph_count == 0


# ------------------------------------------------------------------------- laziness and memory


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """A model with one 100 MB raw float32 initializer (and a small one after it)."""
    n = 25 * 1024 * 1024
    big = numpy_helper.from_array(np.arange(n, dtype=np.float32).reshape(1024, 25, 32, 32), "big")
    small = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "small")
    path = tmp_path_factory.mktemp("big") / "big.onnx"
    save_graph_model(path, [big, small])
    del big
    gc.collect()
    return path


def test_open_does_not_read_the_weight_bytes(big_model):
    size = big_model.stat().st_size
    assert size > 100 * 1024 * 1024
    tracemalloc.start()
    try:
        model = Model.open(big_model)
        open_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        small = model.tensor("small")
        small_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        big = model.tensor("big")
        big_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert open_peak < 2 * 1024 * 1024, open_peak
    assert small_peak < 1024 * 1024, small_peak
    assert big_peak < 1.2 * big.nbytes, big_peak  # one copy, straight into the result
    assert model.proto.ByteSize() < 10_000
    assert_same_array(small, np.array([1.0, 2.0], np.float32))
    assert big.shape == (1024, 25, 32, 32) and big.dtype == np.float32
    flat = big.reshape(-1)
    assert flat[0] == 0 and flat[12345] == 12345 and flat[-1] == flat.size - 1


def test_tracemalloc_does_see_a_full_read(big_model):
    """Control for the test above: plain onnx.load shows up in tracemalloc as >= the file size."""
    tracemalloc.start()
    try:
        onnx.load(str(big_model))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak > 100 * 1024 * 1024


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd to count open files")
def test_no_file_handles_stay_open(external_model, tmp_path):
    path = save_graph_model(tmp_path / "m.onnx", [numpy_helper.from_array(np.ones(3, np.float32), "w")])
    gc.collect()
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with Model.open(path) as model:
            model.tensor("w")
        ext = Model.open(external_model)
        for name in ext.initializer_names:
            ext.tensor(name)
            ext.initializer_proto(name)
        with pytest.raises(OnnxvisError):
            Model.open(_retarget(external_model, "far.onnx", offset=10**9)).tensor("conv_w")
    gc.collect()
    after = set(os.listdir("/proc/self/fd"))
    assert after - before == set()
