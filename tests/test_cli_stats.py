"""onnxvis stats: the table, JSON lines, Model Explorer node data (checked with Model Explorer's own
adapter and classes, in their venv) and TensorBoard histograms (read back by TensorBoard)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from explorer import load_node_data, real_adapter_graphs, run_python

from conftest import ASSETS, asset, real_models

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"
CHELSEA = "images/skimage_chelsea.png"


def _written(done) -> list[Path]:
    return [Path(line) for line in done.stdout.splitlines() if line.strip() and Path(line.strip()).exists()]


def _small_model(path: Path) -> Path:
    """conv (4 filters, one zero, one near-dead) -> Relu -> Flatten -> Gemm (transB) -> output; unnamed nodes."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    w[1] = 0
    w[2] *= 1e-5
    fc = rng.standard_normal((3, 4 * 6 * 6)).astype(np.float32)
    fc[0, :10] = 0
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_the_text_table_shows_every_layers_weight_numbers(cli, tmp_path):
    done = cli("stats", _small_model(tmp_path / "small.onnx"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["node", "op", "weight", "norm", "min", "max", "std", "dead", "sparse"]
    conv = next(line for line in lines if line.startswith("Conv_0"))
    gemm = next(line for line in lines if line.startswith("Gemm_3"))
    assert conv.split()[2] == "4x1x3x3" and conv.split()[-2:] == ["50.0%", "25.0%"]  # 2 of 4 filters dead, 9 of 36 zero
    assert gemm.split()[2] == "3x144" and gemm.split()[-1] == f"{100 * 10 / 432:.1f}%"
    assert not any(line.startswith("Relu") for line in lines)  # without images an activation has nothing to show
    assert not (tmp_path / "onnxvis-out").exists()  # text alone writes no file


def test_jsonl_holds_the_numbers_numpy_gives(cli, tmp_path):
    from onnxvis.engine.inspector import Inspector

    model = asset("models/mnist_cntk.onnx")
    images = [asset(CHELSEA), asset("images/skimage_camera.png"), asset("images/matplotlib_grace_hopper.jpg")]
    done = cli("stats", model, *images, "--format", "jsonl", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    (path,) = _written(done)
    rows = {r["name"]: r for r in map(json.loads, path.read_text().splitlines())}
    assert list(rows) == ["Convolution28", "ReLU32", "Convolution110", "ReLU114", "Times212"]
    with Inspector(model) as insp:
        values = {}
        for result in insp.run(images, ["Convolution28_Output_0", "ReLU32_Output_0", "Convolution110_Output_0"]):
            for name, value in result.values.items():
                values.setdefault(name, []).append(value)
        weight = insp.kernels(insp.layers[0]).astype(np.float64)
    conv = np.stack(values["Convolution28_Output_0"]).astype(np.float64)  # (images, C, H, W)
    relu = np.stack(values["ReLU32_Output_0"]).astype(np.float64)
    row, act = rows["Convolution28"], rows["ReLU32"]
    assert row["weight_norm"] == pytest.approx(np.linalg.norm(weight), rel=1e-9)
    assert row["weight_std"] == pytest.approx(weight.std(), rel=1e-9)
    assert row["act_mean"] == pytest.approx(conv.mean(), rel=1e-6) and row["act_std"] == pytest.approx(conv.std(), rel=1e-6)
    assert row["act_max"] == conv.max() and row["act_zeros"] is None  # zeros are an activation's number
    assert act["act_zeros"] == pytest.approx(np.mean(relu == 0)) and act["act_mean"] == pytest.approx(relu.mean(), rel=1e-6)
    silent = (relu.max(axis=(0, 2, 3)) <= 0).mean()
    assert act["act_dead_channels"] == pytest.approx(silent) and act["act_images"] == 3
    assert rows["Times212"]["kind"] == "dense" and rows["Times212"]["act_mean"] is None
    assert row["explorer_node"] == "Convolution28" and row["explorer_graph"] == "CNTKGraph"


def _run_stats_in_process(model: Path, images: list[Path], out: Path, formats=("model-explorer",)):
    from onnxvis.analysis.nodestats import compute_stats, stats_nodes
    from onnxvis.engine.inspector import Inspector
    from onnxvis.outdir import OutputDir
    from onnxvis.write.stats import write_stats

    with Inspector(model) as insp:
        nodes = stats_nodes(insp)
        stats = compute_stats(insp, nodes, images, histograms="tensorboard" in formats)
        return insp.layers, stats, write_stats(stats, OutputDir(out), formats)


@pytest.fixture(scope="module")
def node_data_of(tmp_path_factory):
    """node_data_of(model name) -> its conv layers, its stats and the node-data files written for one photo (made once)."""
    if not real_models():
        pytest.skip(f"real test assets not found at {ASSETS}")
    root = tmp_path_factory.mktemp("nodedata")
    made: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in made:
            made[name] = _run_stats_in_process(ASSETS / "models" / name, [ASSETS / CHELSEA], root / name)
        return made[name]

    return get


@pytest.mark.slow
def test_node_data_of_every_real_model_lines_up_with_model_explorers_graph(node_data_of):
    adapter = real_adapter_graphs()
    files = []
    coverage = {}
    for name in real_models():
        layers, stats, written = node_data_of(name)
        graphs = {g: set(ids) for g, ids in adapter[name].items()}
        by_key = {p.stem.removeprefix("nodedata_"): json.loads(p.read_text()) for p in written}
        expected = {"weight_norm", "weight_near_dead", "weight_sparsity", "act_mean", "act_dead_channels"}
        if any(s.node.kind == "activation" for s in stats):  # the quantized MNISTs have none: their Relus are folded away
            expected.add("act_zeros")
        assert expected <= set(by_key), name
        for key, data in by_key.items():
            for graph_id, graph_data in data.items():
                assert graph_id in graphs, (name, key, graph_id)
                unknown = set(graph_data["results"]) - graphs[graph_id]
                assert not unknown, (name, key, sorted(unknown)[:5])
                assert graph_data["name"].startswith("onnxvis: ") and (graph_data.get("gradient") or graph_data.get("thresholds"))
        # every conv node has a value: its weight's, and (in the main graph) its output's
        conv_nodes = {s.node.layer.index: s.node.explorer for s in stats if s.node.kind == "conv"}
        assert sorted(conv_nodes) == [layer.index for layer in layers]
        for key in ("weight_norm", "weight_min", "weight_max", "weight_std", "weight_near_dead", "weight_sparsity"):
            for index, node in conv_nodes.items():
                assert node.node in by_key[key][node.graph]["results"], (name, key, index)
        for s in stats:
            if s.node.kind == "conv" and s.node.output:
                assert s.node.explorer.node in by_key["act_mean"][s.node.explorer.graph]["results"], (name, s.node.name)
        coverage[name] = (len(conv_nodes), sum(len(g["results"]) for g in by_key["act_mean"].values()))
        files += written
    loaded = load_node_data(*files)  # model_explorer.node_data_builder's classes read each file and write it back
    for path in files:
        ours = json.loads(path.read_text())
        back = loaded[str(path)]
        assert set(back) == set(ours), path
        for graph_id, data in ours.items():  # the classes add their defaults (empty thresholds, hide... false)
            assert {k: back[graph_id][k] for k in data} == data, path
    assert coverage["squeezenet1.0_caffe2_fp16.onnx"] == (26, 52)  # 26 convs, 26 Relus: all unnamed in the file


def test_squeezenets_unnamed_nodes_get_the_adapters_names(node_data_of):
    layers, stats, written = node_data_of("squeezenet1.0_caffe2_fp16.onnx")
    first = stats[0].node
    assert first.name == "Conv_0" and first.explorer.node == "node"  # onnxvis's name stays; the key is the adapter's
    assert [s.node.explorer.node for s in stats[:4]] == ["node", "node_1", "node_3", "node_4"]  # node_2 is the MaxPool
    data = json.loads(next(p for p in written if p.name == "nodedata_weight_norm.json").read_text())
    assert set(data) == {"squeezenet_old"} and data["squeezenet_old"]["results"]["node"]["value"] == pytest.approx(10.4, abs=0.05)
    from onnxvis.model.file import Model
    from onnxvis.model.nodeids import explorer_ids

    ids = explorer_ids(Model.open(asset(SQUEEZENET)).proto)
    for s in stats:  # by position (stats) and by the tensor computed (what compare uses): the same node
        assert ids.producer(s.node.layer.output_name if s.node.layer else s.node.output, s.node.path) == s.node.explorer
    near_dead = json.loads(next(p for p in written if p.name == "nodedata_weight_near_dead.json").read_text())["squeezenet_old"]
    assert [t["value"] for t in near_dead["thresholds"]] == [0, 0.05, 0.25, 1]
    assert near_dead["thresholds"][-1]["bgColor"] == "#b71c1c"  # many near-dead filters: dark red


def test_tensorboard_reads_one_weight_and_one_activation_histogram_per_layer(cli, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator

    from onnxvis.engine.inspector import Inspector

    model = asset("models/cifar10_tutorial_pytorch.onnx")
    done = cli("stats", model, asset(CHELSEA), asset("images/skimage_coffee.png"), "--format", "tensorboard", "-o", tmp_path / "tb")
    assert done.returncode == 0, done.stderr
    (event_file,) = _written(done)
    assert "tfevents" in event_file.name
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={event_accumulator.HISTOGRAMS: 0})
    acc.Reload()
    tags = acc.Tags()["histograms"]
    with Inspector(model) as insp:
        layers = insp.layers
        weights = {f"weights/{layer.index:02d}_{layer.name}": insp.kernels(layer) for layer in layers}
        first_map = insp.feature_maps(asset(CHELSEA), layers[:1]).maps[layers[0]]
    assert set(weights) <= set(tags) and len([t for t in tags if t.startswith("weights/")]) == len(layers) + 1  # + the Gemm
    for tag, weight in weights.items():
        (event,) = acc.Histograms(tag)
        h = event.histogram_value
        assert h.num == weight.size and h.min == float(weight.min()) and h.max == float(weight.max())
        assert sum(h.bucket) == weight.size
    activations = [t for t in tags if t.startswith("activations/")]
    assert len(activations) == len(layers) + 4  # each conv's output and each of the 4 Relus
    (conv0,) = acc.Histograms(f"activations/00_{layers[0].name}")
    assert conv0.histogram_value.num == 2 * first_map.size  # both photos' maps
    assert conv0.histogram_value.max >= float(first_map.max())


def test_model_explorer_and_jsonl_together_and_rerun_replaces_the_files(cli, tmp_path):
    model = _small_model(tmp_path / "small.onnx")
    for _ in range(2):
        done = cli("stats", model, asset(CHELSEA), "--format", "text,jsonl,model-explorer", "-o", tmp_path / "out")
        assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in _written(done))
    assert "stats.jsonl" in names and "nodedata_act_zeros.json" in names and "nodedata_weight_near_dead.json" in names
    near_dead = json.loads((tmp_path / "out" / "nodedata_weight_near_dead.json").read_text())["small"]["results"]
    assert near_dead == {"node": {"value": 0.5}, "node_3": {"value": 0}}  # the conv and the Gemm, by the adapter's names
    assert "activations over 1 image:" in done.stdout


def test_the_readmes_python_api_for_model_explorer_takes_onnxvis_files(tmp_path):
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    (code,) = [block for block in readme.split("```python\n")[1:] if "model_explorer.config()" in block]
    code = code.split("```", 1)[0]
    assert "visualize_from_config(config, extensions=[\"model_explorer_onnx\"])" in code
    # everything but starting the server and the browser: the config, as Model Explorer puts it in its URL
    code = code.replace('model_explorer.visualize_from_config(config, extensions=["model_explorer_onnx"])',
                        "import urllib.parse\nprint(urllib.parse.unquote(config.to_url_param_value()))")
    (tmp_path / "st").mkdir()
    for name in ("nodedata_act_zeros.json", "nodedata_weight_near_dead.json"):
        (tmp_path / "st" / name).write_text("{}")
    (tmp_path / "squeezenet.onnx").symlink_to(asset(SQUEEZENET))
    param = json.loads(run_python(code, cwd=tmp_path))
    assert param["models"] == [{"url": str(tmp_path / "squeezenet.onnx")}]
    assert param["nodeData"] == [str(tmp_path / "st" / "nodedata_act_zeros.json"), str(tmp_path / "st" / "nodedata_weight_near_dead.json")]


def test_the_readmes_python_api_for_stats_runs(tmp_path, monkeypatch):
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    (code,) = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:] if "compute_stats(" in block]
    (tmp_path / "squeezenet.onnx").symlink_to(asset(SQUEEZENET))
    (tmp_path / "a.jpg").symlink_to(asset("images/matplotlib_grace_hopper.jpg"))
    (tmp_path / "b.jpg").symlink_to(asset("images/matplotlib_grace_hopper.jpg"))
    monkeypatch.chdir(tmp_path)
    import onnxvis

    scope = {"onnxvis": onnxvis}
    exec(code, scope)
    assert len(scope["stats"]) == 52 and scope["stats"][1].activations.images == 2
    data = json.loads((tmp_path / "out" / "nodedata_sqnr.json").read_text())["squeezenet_old"]
    assert len(data["results"]) == 26 and data["results"]["node"] == {"value": 30}
    assert data["thresholds"][-1] == {"value": 1e308, "bgColor": "#053061"}


def test_cam_refuses_model_explorer_in_one_line(cli, tmp_path):
    done = cli("cam", asset("models/mnist_cntk.onnx"), "--format", "png,model-explorer", "-o", tmp_path / "cam")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no per-node numbers" in done.stderr and "onnxvis stats" in done.stderr
    assert "(set with --format)" in done.stderr
    assert not (tmp_path / "cam").exists()


def test_mistakes_are_one_line_errors(cli, tmp_path, make_conv_model):
    model = make_conv_model(np.ones((2, 1, 3, 3), np.float32))
    done = cli("stats", model, "--format", "text,svg")
    assert done.returncode == 2 and "unknown output format 'svg'" in done.stderr and "model-explorer" in done.stderr
    done = cli("stats", model, "--batch-size", "0")
    assert done.returncode == 2 and "--batch-size" in done.stderr
    flat = tmp_path / "flat.onnx"
    value = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [value("x", TensorProto.FLOAT, [1, 4])],
                              [value("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(flat))
    done = cli("stats", flat)
    assert done.returncode == 2 and "nothing to measure" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_images(tmp_path):
    from test_cli_predict import _peak_mib

    photos = sorted(asset("images/imagenet-sample").glob("*.JPEG"))
    few, many = tmp_path / "few", tmp_path / "many"
    few.mkdir()
    many.mkdir()
    for photo in photos[:10]:
        (few / photo.name).symlink_to(photo)
    for copy in range(2):
        for photo in photos:
            (many / f"{copy}_{photo.name}").symlink_to(photo)
    small = _peak_mib("stats", str(asset(SQUEEZENET)), str(few), "--preset", "caffe", cwd=tmp_path)
    large = _peak_mib("stats", str(asset(SQUEEZENET)), str(many), "--preset", "caffe", cwd=tmp_path)
    assert large < small + 25, f"10 images: {small:.0f} MiB, 200 images: {large:.0f} MiB"
