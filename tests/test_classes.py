"""Labels files (onnxvis.engine.classes.read_labels), what export records in the metadata, `info` showing it,
and `onnxvis export` without torch. No torch needed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, run_onnxvis
from onnxvis.engine.classes import read_labels
from onnxvis.errors import OnnxvisError
from onnxvis.model.metadata import labels_origin, preprocess_origin


def test_read_labels_text_and_json(tmp_path):
    text = tmp_path / "classes.txt"
    text.write_text("\ufeffcat\r\n  dog  \nbird of prey\n\n", encoding="utf-8")
    assert read_labels(text) == ["cat", "dog", "bird of prey"]
    listed = tmp_path / "classes.json"
    listed.write_text(json.dumps(["cat", "chien", "\u9ce5", 7]), encoding="utf-8")
    assert read_labels(listed) == ["cat", "chien", "\u9ce5", "7"]


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "labels file not found"),
        ("", "holds no class names"),
        ("cat\n\ndog\n", "empty name at position 2"),
        ('["cat", ', "not valid JSON"),
        ('[["cat"]]', "must hold a JSON list of names"),
        (b"\xff\xfe\x00bad", "is not UTF-8 text"),
    ],
    ids=["missing", "empty", "hole", "bad-json", "nested", "binary"],
)
def test_read_labels_refuses_with_one_line(tmp_path, content, expected):
    path = tmp_path / "labels.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(OnnxvisError, match=expected) as caught:
        read_labels(path)
    assert "\n" not in str(caught.value)


def test_labels_origin():
    assert labels_origin({"onnxvis.labels_origin": "file pets.txt,\n given at export"}) == "file pets.txt, given at export"
    assert labels_origin({"onnxvis.labels_origin": "  "}) is None
    assert labels_origin({}) is None


def test_preprocess_origin():
    stored = {"resize": [224, 224], "origin": "the user's settings: resize 224,224"}
    assert preprocess_origin({"onnxvis.preprocess": json.dumps(stored)}) == "the user's settings: resize 224,224"
    assert preprocess_origin({"onnxvis.preprocess": json.dumps({"resize": [224, 224]})}) is None
    assert preprocess_origin({"onnxvis.preprocess": json.dumps({"origin": 3})}) is None
    assert preprocess_origin({"onnxvis.preprocess": "not json"}) is None
    assert preprocess_origin({}) is None


def _classifier(path, metadata: dict[str, str], classes: int = 3):
    """conv -> global average pool -> flatten -> matmul: scores of shape [1, classes]."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((4, classes)).astype(np.float32), "fc"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    import onnx

    onnx.save(model, str(path))
    return path


def test_info_shows_the_class_count_and_where_the_names_came_from(tmp_path):
    stored = {"resize": [16, 16], "mean": [0.5], "std": [0.5], "origin": "the user's settings: resize 16,16"}
    named = _classifier(tmp_path / "named.onnx", {
        "onnxvis.labels": '["cat", "dog", "bird"]',
        "onnxvis.labels_origin": "file pets.txt, given at export",
        "onnxvis.preprocess": json.dumps(stored),
    })
    done = run_onnxvis("info", named)
    assert done.returncode == 0, done.stderr
    assert "classes   3, named; labels from file pets.txt, given at export" in done.stdout
    assert "          set at export from the user's settings: resize 16,16" in done.stdout

    no_origin = _classifier(tmp_path / "older.onnx", {"onnxvis.labels": '["cat", "dog", "bird"]'})
    done = run_onnxvis("info", no_origin)
    assert "classes   3, named in the model's onnxvis.labels metadata" in done.stdout

    unnamed = _classifier(tmp_path / "unnamed.onnx", {}, classes=37)
    done = run_onnxvis("info", unnamed)
    assert done.returncode == 0, done.stderr
    assert "classes   37 (guessed from the output's shape), without names; output 'logits' [1x37] float32" in done.stdout
    assert "set at export" not in done.stdout  # a guessed preprocessing has no export origin


def test_export_without_torch_is_one_line_that_says_what_to_install(tmp_path):
    """sys.modules['torch'] = None makes `import torch` fail as in an install without it."""
    code = "import sys; sys.modules['torch'] = None\nfrom onnxvis.cli import main\nsys.exit(main(['export', 'alexnet']))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("onnxvis: error: export needs torch")
    assert lines[0].endswith("install them with: pip install 'onnxvis[export]'")
    assert not list(tmp_path.iterdir())  # not even the models/ folder


def test_export_in_this_environment_without_torch(tmp_path):
    """In the core environment (no torch at all) the plain command says the same."""
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed here; the shim test above covers this case")
    except ImportError:
        pass
    done = run_onnxvis("export", "alexnet", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        (
            "onnxvis: error: export needs torch, torchvision, onnxscript, which this Python cannot import; "
            "install them with: pip install 'onnxvis[export]'"
        )
    ]
