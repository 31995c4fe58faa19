"""``onnxvis examples``: right against a brute-force loop, meaningful on digits, bounded in memory,
resumable, and redrawn without the model."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, asset
from onnxvis.analysis.examples import run as ex
from onnxvis.analysis.examples.find import find_examples
from onnxvis.engine.config import InspectorConfig
from onnxvis.errors import OnnxvisError
from onnxvis.outdir import OutputDir
from onnxvis.write.examples import draw_examples

SQUEEZENET = "models/squeezenet1.0_caffe2_fp16.onnx"
PHOTOS = "images/imagenet-sample"
SQUEEZE_LAYERS = "3,12"


def _run_api(model, folder, layers, out, keep=9, **settings):
    found = find_examples(model, [folder], InspectorConfig(**settings), layers=layers, keep=keep, out=out, fresh=True)
    return found.inspector, found.layers, found.images, found.state


@pytest.fixture(scope="module")
def squeeze_local(tmp_path_factory):
    out = tmp_path_factory.mktemp("squeeze")
    return _run_api(asset(SQUEEZENET), asset(PHOTOS), SQUEEZE_LAYERS, out)


def _brute_force(insp, layers, images):
    """A plain onnxruntime loop: one image at a time, the layers exposed as outputs, every map kept."""
    import onnx
    import onnxruntime as ort

    from onnxvis.image import preprocess as pp

    proto = onnx.load(str(insp.model.path))
    for layer in layers:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(layer.output_name, onnx.TensorProto.FLOAT16, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    settings = insp.preprocessing.preprocess
    maps = {layer.output_name: [] for layer in layers}
    for path in images:
        chw = pp.preprocess(pp.load_image(path), settings)
        feed = {insp.image_input.name: chw[None].astype(np.float16)}
        values = session.run([layer.output_name for layer in layers], feed)
        for layer, value in zip(layers, values, strict=True):
            maps[layer.output_name].append(value[0].astype(np.float32))
    return {name: np.stack(v) for name, v in maps.items()}  # (N, C, H, W)


@pytest.mark.slow
def test_top_k_of_every_channel_matches_a_brute_force_loop(squeeze_local):
    insp, layers, images, state = squeeze_local
    brute = _brute_force(insp, layers, images)
    catalog = [str(p) for p in images]
    assert state.catalog == catalog and state.seen.all()
    k = 9
    checked = swapped = 0
    for layer in layers:
        maps = brute[layer.output_name]
        n, c = maps.shape[:2]
        peak = maps.reshape(n, c, -1).max(axis=2)  # (N, C)
        scores, ids, ys, xs = state.top.entries(layer.output_name, k)
        assert scores.shape == ids.shape == (c, k)  # every channel kept its top K
        for ch in range(c):
            want = np.sort(peak[:, ch])[::-1][:k]
            # fp16 maps batched vs one at a time may differ in the last bit: a tolerance of a few ulps
            tol = 2e-3 * max(1.0, abs(float(want[0])))
            assert np.allclose(scores[ch], want, rtol=0, atol=tol), (layer.name, ch)
            assert np.allclose(scores[ch], peak[ids[ch], ch], rtol=0, atol=tol)
            # the kept images are the brute-force top K, except for swaps among scores tied with the K-th
            brute_set = set(np.argsort(-peak[:, ch], kind="stable")[:k].tolist())
            for i in set(ids[ch].tolist()) ^ brute_set:
                assert abs(float(peak[i, ch]) - float(want[-1])) <= tol, (layer.name, ch, i)
                swapped += 1
            # (y, x) is where the maximum is
            for i, y, x in zip(ids[ch], ys[ch], xs[ch], strict=True):
                assert abs(maps[i, ch, y, x] - peak[i, ch]) <= tol
            checked += 1
    print(f"brute force: {checked} channels checked, {swapped // 2} swaps among ties with the K-th score")
    # layers 3 and 12 are fire2/expand3x3 (64 channels) and fire5/expand3x3 (128): every channel checked
    assert [brute[layer.output_name].shape[1] for layer in layers] == [64, 128]
    assert checked == 64 + 128


def _digits(folder: Path, count: int | None = None) -> list[int]:
    """The UCI digits as 28x28 PNGs as mnist was made: 8x8 (0..16) -> 20x20 bilinear, centred, 0..255."""
    from PIL import Image

    with gzip.open(asset("data/sklearn_digits.csv.gz"), "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
    rows = rows[:count] if count else rows
    folder.mkdir(parents=True, exist_ok=True)
    labels = []
    for i, row in enumerate(rows):
        small = Image.fromarray((row[:64].reshape(8, 8) / 16.0 * 255.0).astype(np.float32), "F")
        digit = np.asarray(small.resize((20, 20), Image.Resampling.BILINEAR))
        canvas = np.zeros((28, 28), np.float32)
        canvas[4:24, 4:24] = digit
        Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "L").save(folder / f"d{i:04d}.png")
        labels.append(int(row[64]))
    return labels


def test_top_9_of_the_last_mnist_conv_are_far_purer_than_chance(tmp_path):
    labels = _digits(tmp_path / "digits")
    insp, layers, images, state = _run_api(asset("models/mnist_cntk.onnx"), tmp_path / "digits", "1", tmp_path / "out")
    label_of = {str(p): labels[int(Path(p).stem[1:])] for p in images}
    _, ids, _, _ = state.top.entries(layers[0].output_name, 9)
    purities = []
    for channel in ids:
        counts = np.bincount([label_of[state.catalog[i]] for i in channel], minlength=10)
        purities.append(counts.max() / 9)
    # chance: the commonest digit of 9 drawn at random from 10 balanced classes, by simulation
    rng = np.random.default_rng(0)
    all_labels = np.array(labels)
    chance = np.mean([np.bincount(rng.choice(all_labels, 9, replace=False), minlength=10).max() / 9 for _ in range(2000)])
    print(f"mnist purity: {np.mean(purities):.3f} over {len(purities)} channels (chance {chance:.3f})")
    print(f"per channel: {np.round(purities, 2).tolist()}")
    assert chance < 0.35
    assert np.mean(purities) > 0.55


def test_cli_writes_jsonl_pictures_and_a_page_and_redraws_without_the_model(tmp_path, cli):
    model = tmp_path / "model.onnx"
    shutil.copy(asset("models/mnist_cntk.onnx"), model)
    _digits(tmp_path / "digits", 120)
    r = cli("examples", model, tmp_path / "digits", "--layers", "all", "--top", "5", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    written = [Path(line) for line in r.stdout.split()]
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["examples-state.npz", "examples.html", "examples_00_Convolution28.jsonl", "examples_00_Convolution28.jpg",
         "examples_01_Convolution110.jsonl", "examples_01_Convolution110.jpg"]
    ), names
    lines = (tmp_path / "out" / "examples_01_Convolution110.jsonl").read_text().splitlines()
    assert len(lines) == 16
    first = json.loads(lines[0])
    assert first["channel"] == 0 and len(first["top"]) == 5
    scores = [e["score"] for e in first["top"]]
    assert scores == sorted(scores, reverse=True)
    assert set(first["top"][0]) == {"image", "score", "y", "x"} and Path(first["top"][0]["image"]).exists()
    page = (tmp_path / "out" / "examples.html").read_text()
    assert "Content-Security-Policy" in page and "<script" not in page and page.count('class="t L1"') == 16 * 5
    from PIL import Image

    with Image.open(tmp_path / "out" / "examples_01_Convolution110.jpg") as img:
        big = img.size
    # redraw with another K and tile size: the model is gone, so it cannot run
    model.unlink()
    r = cli("examples", model, "--redraw", "--top", "3", "--tile", "32", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert len(json.loads((tmp_path / "out" / "examples_01_Convolution110.jsonl").read_text().splitlines()[0])["top"]) == 3
    with Image.open(tmp_path / "out" / "examples_01_Convolution110.jpg") as img:
        assert img.size[0] < big[0] and img.size[1] < big[1]
    r = cli("examples", model, "--redraw", "--top", "17", "-o", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "between 1 and 16" in r.stderr


def test_cli_mistakes_are_one_line(tmp_path, cli):
    model = asset("models/mnist_cntk.onnx")
    (tmp_path / "empty").mkdir()
    for args, words in [
        ((model, tmp_path / "empty"), "holds no image file"),
        ((model, tmp_path / "missing"), "image file not found"),
        ((model,), "give one or more FOLDER"),
        ((model, tmp_path / "empty", "--top", "0"), "must be 1 or more, got 0 (set with --top K)"),
        ((model, tmp_path / "empty", "--top", "9", "--keep", "4"),
            "(4) must be at least the images drawn per channel (9) (set with --keep N)"),
        ((model, asset("images/skimage_coffee.png"), "--batch-size", "0"),
            "the batch size must be 1 or more, got 0 (set with --batch-size N)"),
        ((model, "--redraw", "-o", tmp_path / "nothing"), "no examples-state.npz"),
    ]:
        r = cli("examples", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and words in r.stderr, r.stderr


def test_an_interrupted_run_continues_without_redoing_images(tmp_path, cli):
    """Half of the digits, then all: the second run scores only the new half, and the result equals
    one run over all of them. Unreadable files are skipped, reported, and not retried."""
    _digits(tmp_path / "all", 200)
    part = tmp_path / "part"
    part.mkdir()
    for p in sorted((tmp_path / "all").iterdir())[::2]:
        os.symlink(p, part / p.name)
    (part / "broken.png").write_bytes(b"not a png")
    model = asset("models/mnist_cntk.onnx")
    r = cli("examples", model, part, "--layers", "all", "-o", tmp_path / "resumed")
    assert r.returncode == 0, r.stderr
    assert "skipped: " in r.stderr and "broken.png" in r.stderr
    for p in sorted((tmp_path / "all").iterdir())[1::2]:
        os.symlink(p, part / p.name)
    r = cli("examples", model, part, "--layers", "all", "-o", tmp_path / "resumed")
    assert r.returncode == 0, r.stderr
    assert "continuing" in r.stderr and "101 of 201 images already scored" in r.stderr
    assert "broken.png" not in r.stderr  # seen: not read again
    r = cli("examples", model, part, "--layers", "all", "-o", tmp_path / "once", "--fresh")
    assert r.returncode == 0, r.stderr
    resumed, once = ex.load_state(tmp_path / "resumed"), ex.load_state(tmp_path / "once")
    assert resumed.catalog == once.catalog and resumed.top.equal(once.top)
    for name in ("examples_00_Convolution28.jsonl", "examples_01_Convolution110.jsonl"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "once" / name).read_bytes()
    # another layer choice does not silently mix with the saved run
    r = cli("examples", model, part, "--layers", "0", "-o", tmp_path / "resumed")
    assert r.returncode == 2 and "--fresh" in r.stderr


# `onnxvis examples` in a process of its own, saving its state after every chunk of images rather than
# every 30 seconds (the module's _CHECKPOINT_SECONDS), so that it can be killed soon after a save.
_CHECKPOINT_EVERY_CHUNK = textwrap.dedent(
    """
    import sys
    from onnxvis.analysis.examples import run
    from onnxvis.cli import main
    assert hasattr(run, "_CHECKPOINT_SECONDS"), "the checkpoint interval moved: update this test"
    run._CHECKPOINT_SECONDS = 0.0
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_run_killed_with_sigkill_resumes_without_redoing_the_images_it_saved(tmp_path, cli, monkeypatch):
    """SIGKILL cannot be caught: what the last checkpoint saved is kept, and only the rest is scored again."""
    _digits(tmp_path / "digits", 100)
    photos = tmp_path / "photos"
    photos.mkdir()
    for copy in range(6):  # 600 images, 10 chunks of 64: the run goes on well past its first save
        for p in sorted((tmp_path / "digits").iterdir()):
            os.symlink(p, photos / f"{copy:02d}_{p.name}")
    model = asset("models/mnist_cntk.onnx")
    out = tmp_path / "out"
    args = ["examples", str(model), str(photos), "--layers", "all", "-o", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _CHECKPOINT_EVERY_CHUNK, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    saved = 0
    while proc.poll() is None:  # until a save holds some images but not all
        if (out / ex.STATE_FILE).exists():
            try:
                saved = int(ex.load_state(out).seen.sum())
            except OnnxvisError:  # replaced while read: read it again
                saved = 0
            if 0 < saved < 600:
                break
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1]}"
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = ex.load_state(out)  # the last save is whole: written atomically
    kept = {path for path, seen in zip(state.catalog, state.seen, strict=True) if seen}
    assert len(kept) >= saved and len(kept) < 600

    scored: list[str] = []  # what the engine is given to score, image by image
    real_score = ex.score_images

    def counting_score(inspector, plan, todo, *more, **options):
        todo = list(todo)
        scored.extend(path for _, path in todo)
        return real_score(inspector, plan, todo, *more, **options)

    monkeypatch.setattr(ex, "score_images", counting_score)
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"{len(kept)} of 600 images already scored" in again.stderr
    assert sorted(scored) == sorted(set(state.catalog) - kept)  # the saved ones were not scored again
    monkeypatch.setattr(ex, "score_images", real_score)
    once = cli("examples", model, photos, "--layers", "all", "-o", tmp_path / "once")
    assert once.returncode == 0, once.stderr
    resumed, whole = ex.load_state(out), ex.load_state(tmp_path / "once")
    assert resumed.seen.all() and resumed.catalog == whole.catalog and resumed.top.equal(whole.top)


def test_a_layer_without_receptive_field_falls_back_to_masked_whole_images(tmp_path):
    """A Resize before the conv: no field from the graph, so the tiles are whole photos dimmed
    where the (stored, downsampled) map is low."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Conv", ["up", "w"], ["y"], pads=[1, 1, 1, 1], name="conv"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
         numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    from PIL import Image

    (tmp_path / "photos").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    from onnxvis.image.preprocess import Preprocess

    _, _, _, state = _run_api(tmp_path / "m.onnx", tmp_path / "photos", "0", tmp_path / "out", keep=4, preprocess=Preprocess(name="unit"))
    assert state.fields["y"] is None and state.top.payload("y").shape == (4, 4, 16, 16)
    written = draw_examples(state, OutputDir(tmp_path / "out"), 4, tile=32)
    with Image.open([p for p in written if p.suffix == ".jpg"][0]) as img:
        pixels = np.asarray(img)
    assert pixels.shape[0] > 32 and pixels.max() > 0
    assert "no receptive field" in [p for p in written if p.suffix == ".html"][0].read_text()


_PEAK = textwrap.dedent(
    """
    import sys
    from onnxvis.analysis.examples.find import find_examples
    model, out, *folders = sys.argv[1:]
    found = find_examples(model, folders, layers="all", keep=16, out=out)
    assert found.state.seen.sum() == len(found.images)
    # the process's own peak resident memory, in kB (not ru_maxrss of a forked child, which counts the parent's)
    with open("/proc/self/status") as f:
        print(len(found.images), next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    photos = sorted(p for p in asset(PHOTOS).iterdir() if p.suffix == ".JPEG")[:20]
    few = tmp_path / "few"
    few.mkdir()
    for p in photos:
        os.symlink(p, few / p.name)
    # the same 20 photos over and over (under other names): the same photo sizes, 5 and 25 times the images
    folders = {20: few}
    for count in (100, 500):
        folders[count] = tmp_path / f"set{count}"
        folders[count].mkdir()
        for i in range(count):
            os.symlink(photos[i % 20], folders[count] / f"{i:03d}_{photos[i % 20].name}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    peaks = {}
    for count, folder in folders.items():
        r = subprocess.run(
            [sys.executable, "-c", _PEAK, str(asset(SQUEEZENET)), str(tmp_path / f"out{count}"), str(folder)],
            env=env, capture_output=True, text=True,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[0] == str(count)
        peaks[count] = int(r.stdout.split()[1])
    print("peak memory (MiB) by number of images:", {n: round(kb / 1024) for n, kb in peaks.items()})
    # Keeping every image's maps of all 26 SqueezeNet layers would add ~3 MB per image (fp16): 1.2 GB
    # for 400 more. What is measured levels off after the first hundred runs (allocator and onnxruntime
    # warming up): 20 -> 150 -> 300 -> 600 images gave 135, 155, 168, 171 MiB.
    assert peaks[500] - peaks[100] < 40 * 1024, peaks


def test_tiles_cut_from_a_shrunk_photo_match_cropping_each_box():
    """The fast path (shrink the photo once per layer, slice each tile) draws what cropping each
    receptive field box and resizing it would, black past the border included."""
    from PIL import Image

    from onnxvis.write.examples import shrink_photo, tile_crop, tile_slice

    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 255, (14, 14, 3), dtype=np.uint8)).resize((224, 224), Image.Resampling.BILINEAR))
    photo = Image.fromarray(smooth)
    tile, size = 64, 160
    scale = tile / size
    shrunk = shrink_photo(photo, scale)
    for top, left in [(-24, -24), (0, 40), (100, 120), (-40, 150)]:
        box = (top, left, top + size, left + size)
        a, b = tile_crop(photo, box, tile).astype(int), tile_slice(shrunk, scale, box, tile).astype(int)
        assert np.mean(np.abs(a - b)) < 12, (box, np.mean(np.abs(a - b)))  # resampling order and rounding differ by a pixel
        assert ((a == 0).all(axis=2) == (b == 0).all(axis=2)).mean() > 0.95  # the same black border
