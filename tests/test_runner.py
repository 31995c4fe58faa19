"""The minimal graph: its outputs equal a full-model onnxruntime run, and it holds only what they need.

The reference for every comparison is the plain way: ``onnx.load`` of the whole file (external data
included), every conv output added as a graph output, one onnxruntime session with optimisations off.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import ASSETS, asset, real_models

pytest.importorskip("onnxruntime")

# Sizes for the dynamic dimensions of the real models' inputs (batch is always 1).
_DYNAMIC_SIZES = {
    "ppocr_mobile_v2.0_cls_paddle.onnx": {2: 48, 3: 192},
    "mtcnn_pnet_keras2onnx.onnx": {1: 24, 2: 24},
}


# ------------------------------------------------------------------------------------------ helpers


def _random_feeds(model, name: str = "") -> dict[str, np.ndarray]:
    """A random array for every runtime input of ``model`` (an onnxvis Model)."""
    from onnx import helper

    rng = np.random.default_rng(0)
    feeds = {}
    for value in model.graph.input:
        if model.has_initializer(value.name):
            continue
        tensor_type = value.type.tensor_type
        dims = []
        for axis, d in enumerate(tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            else:
                dims.append(1 if axis == 0 else _DYNAMIC_SIZES.get(name, {}).get(axis, 32))
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.uniform(-1, 1, dims).astype(dtype)
        else:
            feeds[value.name] = rng.integers(0, 100, dims).astype(dtype)
    return feeds


def _reference(path, targets: list[str], feeds: dict[str, np.ndarray], same_options: bool = False) -> dict[str, np.ndarray]:
    """The plain way: onnx.load the whole model, add the targets as outputs, run everything.

    With optimisations off, or with ``same_options`` the session options onnxvis uses.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from onnxvis.engine.runner import session_options

    full = onnx.load(str(path))  # loads external data too
    present = {o.name for o in full.graph.output}
    full.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in targets if t not in present)
    if same_options:
        options = session_options()
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
    session = ort.InferenceSession(full.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(targets, session.run(targets, {k: v for k, v in feeds.items() if k in wanted}), strict=True))


def _assert_same(got: np.ndarray, expected: np.ndarray, what: str, ulps: float = 0) -> None:
    """Equal up to float rounding: 1e-5 relative to the largest value, or ``ulps`` units in the
    last place of the output's float type at that value (for float16 rounding differences)."""
    assert got.shape == expected.shape and got.dtype == expected.dtype, what
    if np.issubdtype(expected.dtype, np.floating):
        scale = max(float(np.max(np.abs(expected.astype(np.float64)))) if expected.size else 0.0, 1.0)
        tolerance = max(1e-5, ulps * float(np.finfo(expected.dtype).eps)) * scale
        np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=0, atol=tolerance, err_msg=what)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=what)


def _main_graph_targets(model) -> list[str]:
    from onnxvis.model.layers import find_conv_layers

    return [layer.output_name for layer in find_conv_layers(model) if layer.in_main_graph]


def _reads(graph) -> set[str]:
    """Every name the nodes of ``graph`` read, subgraphs' outer-scope names included."""
    from onnxvis.model.graph import outer_names

    names = set()
    for node in graph.node:
        names.update(n for n in node.input if n)
        names.update(outer_names(node))
    return names


def _ancestors(graph, targets) -> set[int]:
    """Indexes of the nodes that ``targets`` depend on, by a plain backward walk."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    seen, stack = set(), list(targets)
    from onnxvis.model.graph import outer_names

    while stack:
        i = producer.get(stack.pop())
        if i is None or i in seen:
            continue
        seen.add(i)
        stack.extend(graph.node[i].input)
        stack.extend(outer_names(graph.node[i]))
    return seen


# ------------------------------------------------------------------------------- the real models


@pytest.mark.parametrize("name", real_models() or ["(assets missing)"])
def test_minimal_graph_equals_the_full_model_on_real_models(name):
    from onnxvis.engine.runner import run_tensors
    from onnxvis.model.file import Model

    path = asset(f"models/{name}")
    model = Model.open(path)
    targets = _main_graph_targets(model)
    assert targets, f"{name} has no conv layer in its main graph"
    feeds = _random_feeds(model, name)
    got = run_tensors(model, feeds, targets)
    assert list(got) == targets
    # the same session options on the whole model: the same numbers
    expected = _reference(path, targets, feeds, same_options=True)
    for target in targets:
        _assert_same(got[target], expected[target], f"{name}: {target}")
    # no optimisation at all: the same up to rounding (float16 models: onnxruntime computes their
    # convs in float32 and, with optimisations off, rounds to float16 between every two nodes)
    plain = _reference(path, targets, feeds)
    for target in targets:
        _assert_same(got[target], plain[target], f"{name}: {target} (optimisations off)", ulps=4)


@pytest.mark.parametrize("name", real_models() or ["(assets missing)"])
def test_first_conv_alone_gives_the_same_map_with_a_smaller_graph(name):
    from onnxvis.engine.runner import minimal_model, run_tensors
    from onnxvis.model.file import Model

    path = asset(f"models/{name}")
    model = Model.open(path)
    first = _main_graph_targets(model)[:1]
    feeds = _random_feeds(model, name)
    _assert_same(run_tensors(model, feeds, first)[first[0]], _reference(path, first, feeds)[first[0]], name)

    small = minimal_model(model, first)
    assert len(small.graph.node) == len(_ancestors(model.graph, first)) < len(model.graph.node)
    assert [o.name for o in small.graph.output] == first


@pytest.mark.parametrize("name", real_models() or ["(assets missing)"])
def test_minimal_graph_holds_only_what_the_targets_need(name):
    import onnx

    from onnxvis.engine.runner import minimal_model
    from onnxvis.model.file import Model

    path = asset(f"models/{name}")
    model = Model.open(path)
    targets = _main_graph_targets(model)[:2]
    small = minimal_model(model, targets)

    # the nodes: exactly the ancestors of the targets, in the original order
    keep = sorted(_ancestors(model.graph, targets))
    assert [n.SerializeToString() for n in small.graph.node] == [model.graph.node[i].SerializeToString() for i in keep]
    # the initializers: exactly those the kept nodes read, each with the data of a plain onnx.load
    read = _reads(small.graph)
    names = [t.name for t in small.graph.initializer]
    assert len(names) == len(set(names))
    assert set(names) == {n for n in read if model.has_initializer(n)}
    plain = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    for tensor in small.graph.initializer:
        assert tensor.SerializeToString() == plain[tensor.name].SerializeToString(), tensor.name
    # the inputs: the runtime inputs that are read, never an initializer
    assert {i.name for i in small.graph.input} <= read - set(names)


@pytest.mark.parametrize("name", real_models() or ["(assets missing)"])
def test_weights_stay_in_the_file_and_match_plain_onnx_load(name):
    """The lean model refers to the big weights where they lie in the file: the same bytes as onnx.load."""
    import onnx
    from onnx import TensorProto, numpy_helper

    from onnxvis.engine.runner import minimal_model
    from onnxvis.model.file import Model

    path = asset(f"models/{name}")
    model = Model.open(path)
    arrays: dict[str, np.ndarray] = {}
    small = minimal_model(model, _main_graph_targets(model), arrays, from_file=True)
    plain = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    data = path.read_bytes()
    for tensor in small.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            assert tensor.SerializeToString() == plain[tensor.name].SerializeToString()
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        if tensor.name in arrays:
            np.testing.assert_array_equal(arrays[tensor.name], numpy_helper.to_array(plain[tensor.name]))
            continue
        assert entries["location"] == os.path.basename(os.path.realpath(path))
        offset, length = int(entries["offset"]), int(entries["length"])
        assert data[offset : offset + length] == plain[tensor.name].raw_data, tensor.name
        assert list(tensor.dims) == list(plain[tensor.name].dims)
        assert tensor.data_type == plain[tensor.name].data_type


def test_real_models_do_use_the_file_mapping():
    """onnxruntime accepts the references into the model file (no silent fallback to copies)."""
    from onnx import TensorProto

    from onnxvis.engine.runner import Session, minimal_model
    from onnxvis.model.file import Model

    path = asset("models/ultraface_rfb320_pytorch.onnx")
    model = Model.open(path)
    targets = _main_graph_targets(model)
    small = minimal_model(model, targets, {}, from_file=True)
    assert any(t.data_location == TensorProto.EXTERNAL for t in small.graph.initializer)
    session = Session(model, targets)
    assert session.from_file  # no silent fallback to copies
    assert session.output_names == targets


# ------------------------------------------------------------------------------ built models


def _chain(path, channels=(3, 64, 64, 32), size=20, *, external: bool = False, activation: str = "Relu"):
    """x -> Conv -> BatchNormalization -> activation -> Conv -> ... -> Flatten: weights of 64 KiB and more."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes, inits, outputs = [], [], []
    current = "x"
    for i, (c_in, c_out) in enumerate(zip(channels, channels[1:], strict=False)):
        w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
        b = rng.standard_normal(c_out).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Conv", [current, f"w{i}", f"b{i}"], [f"conv{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        bn = [rng.uniform(0.5, 2, c_out), rng.standard_normal(c_out), rng.standard_normal(c_out), rng.uniform(0.5, 2, c_out)]
        inits += [numpy_helper.from_array(v.astype(np.float32), f"bn{i}_{k}") for k, v in enumerate(bn)]
        nodes.append(helper.make_node("BatchNormalization", [f"conv{i}"] + [f"bn{i}_{k}" for k in range(4)], [f"bn{i}"]))
        nodes.append(helper.make_node(activation, [f"bn{i}"], [f"act{i}"]))
        current = f"act{i}"
        outputs.append(f"conv{i}")
    nodes.append(helper.make_node("Flatten", [current], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels[0], size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="chain.data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return outputs


@pytest.mark.parametrize("external", [False, True], ids=["single file", "external data"])
def test_built_chain_equals_the_full_model(tmp_path, external):
    from onnxvis.engine.runner import run_tensors
    from onnxvis.model.file import Model

    path = tmp_path / "chain.onnx"
    targets = _chain(path, external=external)
    model = Model.open(path)
    x = np.random.default_rng(2).standard_normal((1, 3, 20, 20)).astype(np.float32)
    expected = _reference(path, targets, {"x": x})
    for chosen in (targets, targets[:1], targets[1:2], targets[::-1]):
        got = run_tensors(model, {"x": x}, chosen)
        assert list(got) == chosen
        for t in chosen:
            _assert_same(got[t], expected[t], t)


def test_external_data_weights_are_lent_as_arrays_equal_to_onnx_load(tmp_path):
    import onnx
    from onnx import TensorProto, numpy_helper

    from onnxvis.engine.runner import Session, minimal_model
    from onnxvis.model.file import Model

    path = tmp_path / "chain.onnx"
    targets = _chain(path, external=True)
    model = Model.open(path)
    arrays: dict[str, np.ndarray] = {}
    small = minimal_model(model, targets, arrays, from_file=True)
    plain = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    assert sorted(arrays) == ["w1", "w2"]  # 64x64x3x3 and 32x64x3x3 floats; w0 (3 inputs) is under 64 KiB
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, plain[name])
    for tensor in small.graph.initializer:
        if tensor.name not in arrays:
            assert tensor.data_location == TensorProto.DEFAULT
            np.testing.assert_array_equal(numpy_helper.to_array(tensor), plain[tensor.name])
    session = Session(model, targets)
    assert session.from_file  # no silent fallback to copies
    assert session.output_names == targets


def test_single_file_weights_are_mapped_from_the_file(tmp_path):
    from onnx import TensorProto

    from onnxvis.engine.runner import minimal_model
    from onnxvis.model.file import Model

    path = tmp_path / "chain.onnx"
    targets = _chain(path)
    model = Model.open(path)
    arrays: dict[str, np.ndarray] = {}
    small = minimal_model(model, targets, arrays, from_file=True)
    assert not arrays
    external = sorted(t.name for t in small.graph.initializer if t.data_location == TensorProto.EXTERNAL)
    assert external == ["w1", "w2"]
    # without from_file, the same two are lent as arrays; without either, every tensor holds its data
    arrays = {}
    minimal_model(model, targets, arrays)
    assert sorted(arrays) == ["w1", "w2"]
    assert all(t.data_location == TensorProto.DEFAULT for t in minimal_model(model, targets).graph.initializer)


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Sigmoid"])
def test_conv_output_is_before_batchnorm_and_activation(tmp_path, activation):
    """Optimisations must not fuse the BatchNormalization or the activation into the conv asked for."""
    from onnx import numpy_helper

    from onnxvis.engine.runner import run_tensors
    from onnxvis.model.file import Model

    path = tmp_path / "chain.onnx"
    targets = _chain(path, (3, 8), activation=activation)
    model = Model.open(path)
    x = np.random.default_rng(3).standard_normal((1, 3, 20, 20)).astype(np.float32)
    got = run_tensors(model, {"x": x}, targets)[targets[0]]
    # conv by hand: correlate the zero-padded input with the stored kernels, add the bias
    w = numpy_helper.to_array(model.initializer_proto("w0")).astype(np.float64)
    b = numpy_helper.to_array(model.initializer_proto("b0")).astype(np.float64)
    padded = np.pad(x[0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    manual = np.zeros((8, 20, 20)) + b[:, None, None]
    for i in range(3):
        for j in range(3):
            manual += np.einsum("oc,chw->ohw", w[:, :, i, j], padded[:, i : i + 20, j : j + 20])
    np.testing.assert_allclose(got[0], manual, rtol=1e-4, atol=1e-4)
    assert (got < 0).any()


def test_a_model_changed_after_open_is_reported(tmp_path):
    from onnxvis.engine.runner import run_tensors
    from onnxvis.errors import OnnxvisError
    from onnxvis.model.file import Model

    path = tmp_path / "chain.onnx"
    targets = _chain(path)
    model = Model.open(path)
    with open(path, "ab") as f:
        f.write(b"\x00")
    os.utime(path, ns=(1, 1))
    with pytest.raises(OnnxvisError, match="changed on disk"):
        run_tensors(model, {"x": np.zeros((1, 3, 20, 20), np.float32)}, targets)


def test_raw_data_range_points_at_the_raw_bytes_of_plain_onnx_load(tmp_path):
    import onnx

    from onnxvis.model.file import Model

    path = tmp_path / "chain.onnx"
    _chain(path)
    model = Model.open(path)
    data = path.read_bytes()
    for tensor in onnx.load(str(path)).graph.initializer:
        offset, length = model.raw_data_range(tensor.name)
        assert data[offset : offset + length] == tensor.raw_data
    external = tmp_path / "ext"
    external.mkdir()
    _chain(external / "chain.onnx", external=True)
    model = Model.open(external / "chain.onnx")
    assert all(model.raw_data_range(name) is None for name in model.initializer_names)


def test_missing_input_is_an_onnxvis_error(tmp_path):
    from onnxvis.engine.runner import run_tensors
    from onnxvis.errors import OnnxvisError
    from onnxvis.model.file import Model

    path = tmp_path / "chain.onnx"
    targets = _chain(path)
    with pytest.raises(OnnxvisError, match="needs input 'x'"):
        run_tensors(Model.open(path), {}, targets)


def test_assets_folder_is_where_conftest_says():
    if not ASSETS.is_dir():
        pytest.skip(f"real test assets not found at {ASSETS}")
    assert real_models(), f"no .onnx files in {ASSETS / 'models'}"
