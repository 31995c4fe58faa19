"""onnxvis.model.proto, the ONNX messages read without onnx: onnx (and protobuf) are the oracle."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxvis.model import proto as pb
from onnxvis.model.file import Model


def test_every_shared_model_reads_as_onnx_reads_it(assets):
    for path in sorted((assets / "models").glob("*.onnx")):
        model = Model.open(path)
        ref = onnx.ModelProto.FromString(model.proto.SerializeToString())
        assert model.proto == ref, path.name
        for mine, theirs in zip(model.graph.node, ref.graph.node, strict=True):
            assert (mine.op_type, mine.domain, mine.name, list(mine.input), list(mine.output)) == (
                theirs.op_type, theirs.domain, theirs.name, list(theirs.input), list(theirs.output))
            for a, b in zip(mine.attribute, theirs.attribute, strict=True):
                va, vb = pb.attribute_value(a), helper.get_attribute_value(b)
                if a.type in (4, 5):  # a tensor, a graph: compared as bytes
                    assert va.SerializeToString() == vb.SerializeToString()
                elif a.type not in (9, 10):
                    assert va == vb, (path.name, a.name)
        values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
        refs = [*ref.graph.input, *ref.graph.output, *ref.graph.value_info]
        for a, b in zip(values, refs, strict=True):
            dims = [(d.HasField("dim_value"), d.dim_value, d.dim_param) for d in a.type.tensor_type.shape.dim]
            assert dims == [(d.HasField("dim_value"), d.dim_value, d.dim_param) for d in b.type.tensor_type.shape.dim]
            assert a.type.WhichOneof("value") == b.type.WhichOneof("value")
        assert model.opsets == {(o.domain or "ai.onnx"): o.version for o in ref.opset_import}
        assert model.metadata == {p.key: p.value for p in ref.metadata_props}


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64, np.bool_,
                                   np.float16, np.float64, np.uint32, np.uint64])
@pytest.mark.parametrize("raw", [True, False])
def test_tensors_decode_as_numpy_helper_decodes_them(dtype, raw):
    array = (np.random.default_rng(0).standard_normal((2, 3)) * 100).astype(dtype)
    code = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    tensor = helper.make_tensor("x", code, array.shape, array.tobytes() if raw else array.flatten(), raw=raw)
    mine = pb.TensorProto.FromString(tensor.SerializeToString())
    got, want = pb.to_array(mine), numpy_helper.to_array(tensor)
    assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
    assert pb.tensor_dtype_of(array.dtype) == code
    built = pb.tensor_from_array(array, "x")
    assert onnx.TensorProto.FromString(built.SerializeToString()) == numpy_helper.from_array(array, "x")


def test_messages_built_here_encode_as_onnx_encodes_them():
    mine = pb.value_info("x", TensorProto.FLOAT16, ["batch", 3, None, 224])
    assert mine.SerializeToString() == helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 3, None, 224]).SerializeToString()
    assert pb.value_info("y").SerializeToString() == helper.make_empty_tensor_value_info("y").SerializeToString()
    stub = pb.TensorProto(dims=[2, 3], data_type=1, name="w", data_location=pb.EXTERNAL,
                          external_data=[pb.StringStringEntryProto(key="location", value="f.bin")])
    ref = TensorProto(dims=[2, 3], data_type=1, name="w")
    ref.data_location = TensorProto.EXTERNAL
    entry = ref.external_data.add()
    entry.key, entry.value = "location", "f.bin"
    assert stub.SerializeToString() == ref.SerializeToString()
    assert pb.uses_external_data(stub) and not pb.uses_external_data(pb.TensorProto(name="v"))


def test_protobuf_reading_rules():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="first", strides=[2, 2])
    data = node.SerializeToString()
    # a singular field seen twice: the last one wins, as protobuf reads it
    twice = pb.NodeProto.FromString(data + pb.encode_field(3, b"second"))
    assert twice.name == onnx.NodeProto.FromString(data + pb.encode_field(3, b"second")).name == "second"
    # an unknown field and a known field of another wire type are skipped (kept in the bytes)
    odd = data + pb.encode_varint(99 << 3) + pb.encode_varint(7) + pb.encode_varint(4 << 3) + pb.encode_varint(1)
    read = pb.NodeProto.FromString(odd)
    assert read.op_type == onnx.NodeProto.FromString(odd).op_type == "Conv" and read.SerializeToString() == odd
    # a singular message seen twice is merged
    graph = helper.make_graph([node], "g", [], [])
    merged = helper.make_model(graph).SerializeToString() + pb.encode_field(7, pb.encode_field(2, b"renamed"))
    mine, theirs = pb.parse_model(merged), onnx.ModelProto.FromString(merged)
    assert (mine.graph.name, len(mine.graph.node)) == (theirs.graph.name, len(theirs.graph.node)) == ("renamed", 1)
    # defaults and presence
    assert not read.HasField("domain") and read.domain == "" and read.attribute[0].ints == [2, 2]
    with pytest.raises(pb.NotUtf8, match="NodeProto.name"):
        pb.NodeProto.FromString(data + pb.encode_field(3, b"\xff\xfe"))
    with pytest.raises(pb.WireFormatError):
        pb.parse_model(b"\x3a\x80")  # a graph field claiming more bytes than there are
