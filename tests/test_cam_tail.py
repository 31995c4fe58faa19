"""AblationCAM's tail and ScoreCAM's masked images on the heads that exporters write (issue 25, item 5,
and the free batch of ``onnxvis export``): the tail gets everything it reads with the copies' batch,
runs batched when the graph takes a batch and one copy at a time when it does not, and a graph that
refuses even one copy is said in one line of words, in the CLI and in report.html."""

from __future__ import annotations

import numpy as np
import pytest
from cam_standins import classifier, photo, scores

from conftest import call_onnxvis
from onnxvis.analysis.cam import maths as cam
from onnxvis.analysis.cam import runs
from onnxvis.engine import runner

SETTINGS = {"preset": "unit", "changes": {"resize": (16, 16)}}


@pytest.fixture
def picture(tmp_path):
    return photo(tmp_path / "photo.png")


@pytest.fixture
def rows_per_run(monkeypatch):
    """The rows fed to each onnxruntime run, per run: [{name: rows}, ...]."""
    seen: list[dict[str, int]] = []
    run = runner.Session.run

    def spy(self, feeds):
        seen.append({name: np.asarray(value).shape[0] for name, value in feeds.items() if np.ndim(value)})
        return run(self, feeds)

    monkeypatch.setattr(runner.Session, "run", spy)
    return seen


def _expected_ablation(insp, image, head: str) -> np.ndarray:
    """grad-cam's AblationCAM at r1, its tail computed in numpy."""
    r1 = insp.run_arrays({"x": insp.prepare(image).array}, ["r1"])["r1"]
    target = int(np.argmax(scores(r1, head)[0]))
    weights = cam.ablation_cam_weights(r1[0], float(scores(r1, head)[0, target]), lambda copies: scores(copies, head)[:, target])
    return cam.finish(cam.weighted_sum(weights, r1[0]), (16, 16))


def test_a_reshape_that_reads_the_batch_from_the_input_gets_the_copies_batch(tmp_path, picture, rows_per_run):
    """torch.export's x.view(x.size(0), -1): the tail computes the shape from the graph input, which is
    fed with the copies' batch (the regression of the free batch that `onnxvis export` writes)."""
    import onnx

    from onnxvis.engine.inspector import Inspector

    model = classifier(tmp_path / "sym.onnx", "sym_size")
    graph = onnx.load(str(model)).graph
    assert runs.tail_inputs(graph, "r1", ["logits"]) == ["x"]  # not "view_shape", the batch-1 shape [1, -1]
    assert runs.tail_inputs(graph, "gap", ["logits"]) == ["x"]
    with Inspector(model, **SETTINGS) as insp:
        ablation = runs.Cam(insp, runs.places_for(insp, [], ["r1"]), method="ablation")
        assert ablation.tensors == ["logits", "r1"]  # the pass gives no batchless shape
        rows_per_run.clear()
        (result,) = ablation([picture])
        expected = _expected_ablation(insp, picture, "sym_size")
    np.testing.assert_allclose(result.cam, expected, atol=1e-5)
    assert result.cam.max() == pytest.approx(1, abs=1e-6)
    # one pass, then the 6 copies in one batch, the image repeated beside them
    assert rows_per_run[:2] == [{"x": 1}, {"r1": 6, "x": 6}]


def test_scorecam_runs_batched_on_such_a_model(tmp_path, picture, rows_per_run):
    from onnxvis.engine.inspector import Inspector

    model = classifier(tmp_path / "sym.onnx", "sym_size")
    with Inspector(model, **SETTINGS) as insp:
        rows_per_run.clear()
        (result,) = runs.Cam(insp, runs.places_for(insp, [], ["r1"]), method="score", batch_size=4)([picture])
    assert rows_per_run == [{"x": 1}, {"x": 4}, {"x": 2}]  # the pass, then 6 masked images 4 at a time
    assert result.cam.max() == pytest.approx(1, abs=1e-6)


def test_a_head_with_a_batch_of_1_gets_the_copies_one_by_one(tmp_path, picture, rows_per_run):
    """A YOLOv8-like head (a Reshape to [1, -1]) refuses the batch of copies: they run one at a time,
    and the map is grad-cam's."""
    from onnxvis.engine.inspector import Inspector

    model = classifier(tmp_path / "b1.onnx", "batch1")
    with Inspector(model, **SETTINGS) as insp:
        rows_per_run.clear()
        (result,) = runs.Cam(insp, runs.places_for(insp, [], ["r1"]), method="ablation")([picture])
        expected = _expected_ablation(insp, picture, "batch1")
    np.testing.assert_allclose(result.cam, expected, atol=1e-5)
    assert rows_per_run[1] == {"r1": 6}  # the batch was tried, and failed
    assert rows_per_run[2:8] == [{"r1": 1}] * 6


def test_a_head_with_a_batch_of_1_works_from_the_command_line(tmp_path, picture):
    done = call_onnxvis("cam", classifier(tmp_path / "b1.onnx", "batch1"), picture, "--preset", "unit", "--resize", "16,16",
                       "--format", "npy", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    (npy,) = done.stdout.split()
    assert np.load(npy).max() == pytest.approx(1, abs=1e-6)


def test_a_merged_batch_is_caught_and_run_one_by_one(tmp_path, picture, monkeypatch):
    """A graph that takes the batch but merges it (a Reshape to [1, -1, 85] before the scores) gives
    fewer rows than it was fed: the scorer sees it and runs the rows one by one."""
    from onnxvis.engine.inspector import Inspector

    model = classifier(tmp_path / "flat.onnx", "flatten")
    with Inspector(model, **SETTINGS) as insp:
        run_arrays = insp.run_arrays

        def merging(feeds, targets, batch_size=None):
            out = run_arrays(feeds, targets, batch_size)
            return {t: v[:1] for t, v in out.items()} if batch_size and batch_size > 1 else out

        monkeypatch.setattr(insp, "run_arrays", merging)
        places = runs.places_for(insp, [], ["r1"])
        (merged,) = runs.Cam(insp, places, method="ablation")([picture])
        monkeypatch.setattr(insp, "run_arrays", run_arrays)
        (plain,) = runs.Cam(insp, places, method="ablation")([picture])
    np.testing.assert_array_equal(merged.cam, plain.cam)


RAW = ("[ONNXRuntimeError]", "onnxruntime_src", "::", "Status Message", "check the input size")


def test_a_tail_that_refuses_even_one_copy_is_one_line_of_words(tmp_path, picture):
    """The head reads the conv output's values, which AblationCAM changes, as an index: onnxruntime
    refuses every copy; the user reads which node stopped and why, and what to choose instead."""
    model = classifier(tmp_path / "values.onnx", "values")
    done = call_onnxvis("cam", model, picture, "--preset", "unit", "--resize", "16,16", "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("onnxvis: error: the graph after tensor 'c1' does not run on its changed copies (AblationCAM's): "
                           "onnxruntime's Gather node 'pick' stops: indices element out of data bounds, idx=1000 must be "
                           "within the inclusive range [-5,4]; "), line
    assert "choose another layer or tensor, or a method that changes nothing (eigen, fem, kpca)" in line
    assert not any(raw in line for raw in RAW), line
    # the same model with a method that changes nothing runs
    done = call_onnxvis("cam", model, picture, "--method", "eigen", "--preset", "unit", "--resize", "16,16", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr


def test_report_says_it_in_the_same_words(tmp_path, picture):
    from onnxvis.engine.inspector import Inspector
    from onnxvis.report import build_report

    with Inspector(classifier(tmp_path / "values.onnx", "values"), **SETTINGS) as insp:
        failed = build_report(insp, [picture], cam_method="ablation")
    with Inspector(classifier(tmp_path / "b1.onnx", "batch1"), **SETTINGS) as insp:
        drawn = build_report(insp, [picture], cam_method="ablation")
    assert "no class activation map: the graph after tensor &#x27;c1&#x27; does not run on its changed copies" in failed
    assert "Gather node &#x27;pick&#x27; stops: indices element out of data bounds" in failed
    assert not any(raw in failed for raw in RAW)
    assert "Where the model looks: ablation CAM of class" in drawn and "no class activation map" not in drawn


def test_runtime_reason_keeps_whole_words():
    from onnxvis.errors import OnnxvisError

    def wrapped(text: str) -> OnnxvisError:
        try:
            try:
                raise RuntimeError(text)
            except RuntimeError:
                raise OnnxvisError("onnxruntime cannot run m.onnx on this input: " + text[:300]) from None
        except OnnxvisError as exc:
            return exc

    gather = ("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running Gather node. "
              "Name:'pick' Status Message: indices element out of data bounds, idx=-10000000 must be within the "
              "inclusive range [-5,4]")
    assert runs.runtime_reason(wrapped(gather)) == (
        "onnxruntime's Gather node 'pick' stops: indices element out of data bounds, idx=-10000000 must be within the "
        "inclusive range [-5,4]"
    )
    reshape = ("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Reshape node. Name:'node_view' "
               "Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:91 "
               "onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, onnxruntime::TensorShapeVector&, bool) "
               "input_shape_size == requested_shape_size was false. The input tensor cannot be reshaped to the requested shape. "
               "Input shape:{32,512}, requested shape:{1,-1}\n")
    assert runs.runtime_reason(wrapped(reshape)) == (
        "onnxruntime's Reshape node 'node_view' stops: The input tensor cannot be reshaped to the requested shape. "
        "Input shape:{32,512}, requested shape:{1,-1}")
    matmul = ("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running MatMul node. Name:'mm' "
              "Status Message: matmul_helper.h:59 Compute MatMul dimension mismatch")
    assert runs.runtime_reason(wrapped(matmul)) == "onnxruntime's MatMul node 'mm' stops: Compute MatMul dimension mismatch"
    long = "[ONNXRuntimeError] : 1 : FAIL : " + "word " * 100
    reason = runs.runtime_reason(wrapped(long))
    assert reason.startswith("onnxruntime stops: word word") and reason.endswith("word ...") and len(reason) < 230
