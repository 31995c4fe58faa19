"""The Inspector: one model opened once, sessions kept, images batched and prepared in the background."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import asset
from onnxvis.engine.config import InspectorConfig
from onnxvis.engine.inspector import Inspector
from onnxvis.engine.runner import Session
from onnxvis.errors import OnnxvisError
from onnxvis.image import preprocess as pp


def _net(path, batch="N", reshape_to_one: bool = False, metadata: dict | None = None, size=(16, 16)):
    """x (batch, 3, *size) -> conv a -> relu -> conv b -> global average pool -> flatten -> (batch, 5) scores."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "wa"),
        numpy_helper.from_array(rng.standard_normal((5, 4, 3, 3)).astype(np.float32), "wb"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "wb"], ["b"], name="conv_b", strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["b"], ["g"]),
    ]
    if reshape_to_one:  # a graph that only works with batch 1, whatever its input says
        inits.append(numpy_helper.from_array(np.array([1, 5], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["g", "shape"], ["scores"]))
    else:
        nodes.append(helper.make_node("Flatten", ["g"], ["scores"]))
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, *size])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 5])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def _photos(folder, count):
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"p{i:02d}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_batched_runs_equal_runs_of_one_image(tmp_path):
    model = _net(tmp_path / "m.onnx")
    photos = _photos(tmp_path / "photos", 11)
    batched = Inspector(model, batch_size=4)
    single = Inspector(model, batch_size=1)
    many = list(batched.run(photos, ["a", "scores"]))
    assert [r.image for r in many] == photos  # in order
    for result, photo in zip(many, photos, strict=True):
        alone = single.run(photo, ["a", "scores"])
        for name in ("a", "scores"):
            assert result.values[name].shape == alone.values[name].shape
            np.testing.assert_allclose(result.values[name], alone.values[name], rtol=1e-5, atol=1e-5)
    assert len(batched._sessions) == 1  # one session for the set of tensors, kept


def test_a_session_is_kept_per_set_of_tensors(tmp_path, monkeypatch):
    opened = []
    real_init = Session.__init__

    def counting_init(self, *args, **kwargs):
        opened.append(args[1] if len(args) > 1 else kwargs["targets"])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Session, "__init__", counting_init)
    inspector = Inspector(_net(tmp_path / "m.onnx"))
    photo = _photos(tmp_path / "photos", 1)[0]
    for _ in range(3):
        inspector.run(photo, ["a"])
        inspector.predict(photo)
    assert opened == [["a"], ["scores"]]


def test_a_graph_that_refuses_batches_falls_back_to_one_image_a_run(tmp_path):
    inspector = Inspector(_net(tmp_path / "m.onnx", reshape_to_one=True), batch_size=4)
    photos = _photos(tmp_path / "photos", 5)
    results = list(inspector.outputs(photos))
    reference = Inspector(_net(tmp_path / "plain.onnx"), batch_size=1)
    for values, photo in zip(results, photos, strict=True):
        np.testing.assert_allclose(values["scores"], reference.outputs(photo)["scores"], rtol=1e-5, atol=1e-5)


def test_arrays_that_a_graph_refuses_as_a_batch_run_one_row_at_a_time(tmp_path):
    inspector = Inspector(_net(tmp_path / "m.onnx", reshape_to_one=True), batch_size=4)
    x = np.random.default_rng(5).standard_normal((6, 3, 16, 16)).astype(np.float32)
    scores = inspector.run_arrays({"x": x}, ["scores"])["scores"]
    assert scores.shape == (6, 5) and inspector._unbatchable  # it fell back, and remembers it
    reference = Inspector(_net(tmp_path / "plain.onnx")).run_arrays({"x": x}, ["scores"])["scores"]
    np.testing.assert_allclose(scores, reference, rtol=1e-5, atol=1e-5)


def test_a_fixed_batch_of_one_takes_arrays_of_any_length(tmp_path):
    inspector = Inspector(_net(tmp_path / "m.onnx", batch=1))
    x = np.random.default_rng(3).standard_normal((3, 3, 16, 16)).astype(np.float32)
    scores = inspector.run_arrays({"x": x}, ["scores"])["scores"]
    assert scores.shape == (3, 5)
    for i in range(3):
        np.testing.assert_allclose(scores[i], inspector.run_arrays({"x": x[i : i + 1]}, ["scores"])["scores"][0], rtol=1e-5)


def _with_a_computed_weight(path, reshape_to_one: bool = False):
    """_net plus a tensor that does not depend on the batch: conv a's weight times 2 (a computed weight)."""
    model = onnx.load(str(_net(path, reshape_to_one=reshape_to_one)))
    model.graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    model.graph.node.append(helper.make_node("Mul", ["wa", "two"], ["wa2"]))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("reshape_to_one", [False, True])
def test_a_tensor_without_rows_comes_back_whole(tmp_path, reshape_to_one):
    """A tensor that does not depend on the batch (4, 3, 3, 3) is not cut by rows, batched or one by one."""
    inspector = Inspector(_with_a_computed_weight(tmp_path / "m.onnx", reshape_to_one), batch_size=4)
    wa2 = 2 * numpy_helper.to_array(next(t for t in onnx.load(str(tmp_path / "m.onnx")).graph.initializer if t.name == "wa"))
    for count in (1, 3, 6):
        x = np.random.default_rng(count).standard_normal((count, 3, 16, 16)).astype(np.float32)
        got = inspector.run_arrays({"x": x}, ["wa2", "scores"])
        assert got["scores"].shape == (count, 5)
        np.testing.assert_array_equal(got["wa2"], wa2)
    for result in inspector.run(_photos(tmp_path / "photos", 5), ["wa2", "scores"]):
        assert result.values["scores"].shape == (5,)
        np.testing.assert_array_equal(result.values["wa2"], wa2)


def test_a_run_can_start_in_the_middle_of_the_graph(tmp_path):
    """Feeding an intermediate tensor runs only the tail: the result equals the whole model's."""
    inspector = Inspector(_net(tmp_path / "m.onnx"))
    x = np.random.default_rng(4).standard_normal((6, 3, 16, 16)).astype(np.float32)
    whole = inspector.run_arrays({"x": x}, ["r", "scores"])
    tail = inspector.run_arrays({"r": whole["r"]}, ["scores"])["scores"]
    np.testing.assert_allclose(tail, whole["scores"], rtol=1e-5, atol=1e-6)
    ablated = whole["r"].copy()
    ablated[:, 0] = 0
    changed = inspector.run_arrays({"r": ablated}, ["scores"])["scores"]
    assert not np.allclose(changed, whole["scores"])
    tail_session = inspector.session(["scores"], {"r": whole["r"][:1]})
    assert tail_session.input_names == ["r"]  # conv_a is not in that session's graph


def test_a_bad_image_among_many_fails_at_that_image_and_stopping_early_is_clean(tmp_path):
    photos = _photos(tmp_path / "photos", 4)
    (tmp_path / "photos" / "p02.png").write_bytes(b"not a png")
    inspector = Inspector(_net(tmp_path / "m.onnx"), batch_size=1)
    seen = []
    with pytest.raises(OnnxvisError, match="p02.png"):
        for result in inspector.run(photos, ["scores"]):
            seen.append(result.image)
    assert seen == photos[:2]
    stream = inspector.run(_photos(tmp_path / "more", 30), ["scores"])
    first = next(stream)
    stream.close()  # the background thread stops; nothing hangs
    assert first.image.name == "p00.png"


def test_where_the_preprocessing_came_from_is_recorded(tmp_path):
    stored = pp.Preprocess(resize=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    with_metadata = _net(tmp_path / "meta.onnx", metadata={"onnxvis.preprocess": stored.to_json()})
    plain = _net(tmp_path / "plain.onnx")
    assert Inspector(with_metadata).preprocessing.source == "metadata"
    assert Inspector(plain).preprocessing.source == "guess" and Inspector(plain).preprocessing.guessed
    assert Inspector(plain, preset="unit").preprocessing.source == "preset"
    flagged = Inspector(with_metadata, changes={"mean": (0.0, 0.0, 0.0)}).preprocessing
    assert flagged.source == "flags" and flagged.preprocess.mean == (0.0, 0.0, 0.0) and flagged.preprocess.std == (0.25, 0.25, 0.25)
    given = Inspector(plain, preprocess=pp.preset("raw")).preprocessing
    assert given.source == "argument" and given.preprocess.scale == 255.0


def test_the_config_is_frozen_picklable_and_the_one_source_of_the_settings(tmp_path):
    import dataclasses
    import pickle

    changes = {"resize": (12, 12)}
    config = InspectorConfig(preset="unit", changes=changes, inputs={"k": np.ones(2, np.float32)}, batch_size=3)
    changes["crop"] = (8, 8)  # the config holds its own copy
    assert config.changes == {"resize": (12, 12)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 4  # type: ignore[misc]
    back = pickle.loads(pickle.dumps(config))
    assert back.preset == "unit" and back.changes == config.changes and back.batch_size == 3
    np.testing.assert_array_equal(back.inputs["k"], config.inputs["k"])
    # the size is kept exactly when the changes set it, and only then
    assert config.explicit_size and InspectorConfig(changes={"crop": (8, 8)}).explicit_size
    assert not InspectorConfig(changes={"mean": (0.0,)}).explicit_size and not InspectorConfig().explicit_size
    with pytest.raises(TypeError):
        InspectorConfig(explicit_size=True)  # type: ignore[call-arg]
    with pytest.raises(OnnxvisError, match="batch size must be 1 or more"):
        InspectorConfig(batch_size=0)
    # keywords build the config; with a config they change it
    model = _net(tmp_path / "m.onnx")
    assert Inspector(model, config).config is config
    assert Inspector(model, preset="unit", batch_size=2).config == InspectorConfig(preset="unit", batch_size=2)
    assert Inspector(model, InspectorConfig(preset="unit"), batch_size=2).config == InspectorConfig(preset="unit", batch_size=2)


def test_an_inspector_rebuilt_from_a_pickled_config_settles_and_computes_the_same(tmp_path):
    """What a Ray actor does: the same config gives the same preprocessing and the same numbers."""
    import pickle

    model = _net(tmp_path / "m.onnx", size=("H", "W"))  # a dynamic size: the size set is the one used
    config = InspectorConfig(preset="unit", changes={"resize": (18, 22)}, batch_size=2)
    photos = _photos(tmp_path / "photos", 3)
    here = Inspector(model, config)
    there = Inspector(str(model), pickle.loads(pickle.dumps(config)))
    assert there.preprocessing == here.preprocessing and there.preprocessing.source == "flags"
    for a, b in zip(here.run(photos, ["a"]), there.run(photos, ["a"]), strict=True):
        assert a.prepared.preprocess.resize == (18, 22) and a.values["a"].shape == (4, 18, 22)
        np.testing.assert_array_equal(a.values["a"], b.values["a"])


def test_changes_apply_to_a_given_preprocessing_too(tmp_path):
    given = Inspector(_net(tmp_path / "m.onnx"), preprocess=pp.preset("raw"), changes={"mean": (1.0, 2.0, 3.0)}).preprocessing
    assert given.source == "argument" and given.preprocess.name == "raw" and given.preprocess.mean == (1.0, 2.0, 3.0)


def test_prepared_rgb_is_the_photo_the_model_saw(tmp_path):
    photo = _photos(tmp_path / "photos", 1)[0]
    prepared = Inspector(_net(tmp_path / "m.onnx"), preset="unit").prepare(photo)
    assert prepared.rgb.shape == (16, 16, 3) and prepared.rgb.dtype == np.uint8
    np.testing.assert_allclose(prepared.array[0], prepared.rgb.transpose(2, 0, 1) / np.float32(255), atol=1e-6)


def test_squeezenet_predictions_match_a_bare_onnxruntime_run(tmp_path):
    """The Inspector's batched predictions are the numbers a plain session gives on the same arrays."""
    import onnxruntime as ort

    path = asset("models/squeezenet1.0_caffe2_fp16.onnx")
    inspector = Inspector(path)
    photos = [asset("images/skimage_coffee.png"), asset("images/skimage_chelsea.png")]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output = session.get_outputs()[0].name
    for prediction, photo in zip(inspector.predict(photos, top=3), photos, strict=True):
        x = inspector.prepare(photo).array
        probs = session.run([output], {session.get_inputs()[0].name: x})[0].reshape(-1).astype(np.float64)
        expected = np.argsort(-probs, kind="stable")[:3]
        assert [t[0] for t in prediction.top] == list(expected)
        np.testing.assert_allclose([t[2] for t in prediction.top], probs[expected], rtol=1e-3)
    assert inspector.predict(photos[0]).top[0][0] == 967  # espresso


@pytest.mark.parametrize("cam", ["none", "ablation", "eigen"])
def test_the_report_runs_each_image_once_and_traces_layers_once(tmp_path, monkeypatch, cam):
    """One pass of the whole model per image gives its feature maps, its top-5 and what its CAM starts
    from; the CAM's own passes (AblationCAM's ablated copies) run only the graph's tail."""
    from onnxvis import cli
    from onnxvis.engine import inspector as inspector_module
    from onnxvis.image import preprocess as preprocess_module
    from onnxvis.model import layers as layers_module

    image_rows = []
    decoded = []
    traces = []
    real_run = Session.run
    real_find = layers_module.find_conv_layers
    real_load = preprocess_module.load_image

    def counting_run(self, feeds):
        if "image" in self.input_names:  # a pass that starts from the photo
            image_rows.append(len(feeds["image"]))
        return real_run(self, feeds)

    def counting_find(model):
        traces.append(model.path)
        return real_find(model)

    def counting_load(path, *args, **kwargs):
        decoded.append(path)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(Session, "run", counting_run)
    monkeypatch.setattr(inspector_module, "find_conv_layers", counting_find)
    monkeypatch.setattr(preprocess_module, "load_image", counting_load)
    from conftest import classifier, photo

    model = classifier(tmp_path / "tiny.onnx")
    images = [photo(tmp_path / "a.png", 1), photo(tmp_path / "b.png", 2)]
    assert cli.main(["report", str(model), *map(str, images), "--layers", "all", "--cam", cam, "-o", str(tmp_path / "out")]) == 0
    assert len(traces) == 1
    assert sum(image_rows) == len(images), image_rows  # each photo through the model's head once
    assert sorted(decoded) == sorted(images)  # and decoded once
    text = (tmp_path / "out" / "report.html").read_text()
    assert ("Where the model looks" in text) == (cam != "none")
