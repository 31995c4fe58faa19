"""onnxvis features: the whole gradient against finite differences, repeatability, batches, the files, the flags,
and (smaller than benchmarks/features_examples.py) that the optimised image beats real photos."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ASSETS, classifier
from onnxvis.analysis.cam.runs import Place, places_for
from onnxvis.analysis.features import maths as fm
from onnxvis.analysis.features.run import Recipe, make_problem, optimise, parse_channels
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError

SQUEEZENET = ASSETS / "models" / "squeezenet1.0_caffe2_fp16.onnx"
CIFAR = ASSETS / "models" / "cifar10_tutorial_pytorch.onnx"


def _need(path):
    if not path.exists():
        pytest.skip(f"real test asset not found: {path}")
    return path


@pytest.fixture
def small(tmp_path):
    return Inspector(classifier(tmp_path / "small.onnx"))


def _first_place(insp: Inspector, index: str = "1") -> Place:
    return places_for(insp, insp.select(index))[0]


@pytest.mark.parametrize("objective,diversity", [("channel", 1), ("neuron", 1), ("channel", 2), ("class", 1)])
def test_whole_gradient_matches_finite_differences(small: Inspector, objective: str, diversity: int) -> None:
    # parameters -> Fourier image -> colours -> sigmoid -> transforms -> preprocessing -> model (onnxruntime) -> objective
    recipe = Recipe(size=16)
    if objective == "class":
        place = Place(small.class_output(), "class")
        channels = [2]
    else:
        place = _first_place(small)
        channels = [1, 3]
    problem = make_problem(small, place, channels, objective=objective, diversity=diversity, recipe=recipe)
    rng = np.random.default_rng(0)
    n = len(channels) * diversity
    params = problem.images.param.init(rng, n) * 50  # away from the flat start
    draws = [fm.Step((2, 5), 0.94, 7.0, (1, 3)), fm.Step((6, 0), 1.06, -4.0, (0, 2))] * n
    draws = draws[:n]
    _, total, grad = problem.gradient(params, draws)
    assert total == pytest.approx(problem.value(params, draws), rel=1e-4, abs=1e-4)
    scale = float(np.abs(grad).max())
    assert scale > 0
    for _ in range(4):
        d = rng.standard_normal(params.shape).astype(np.float32)
        eps = 1e-3
        numeric = (problem.value(params + eps * d, draws) - problem.value(params - eps * d, draws)) / (2 * eps)
        assert numeric == pytest.approx(float((grad.astype(np.float64) * d).sum()), rel=1e-2, abs=1e-4 * scale)


def test_same_seed_same_images_other_seed_other_images(small: Inspector) -> None:
    place = _first_place(small)
    recipe = Recipe(size=24, steps=6)
    a = optimise(small, place, [0, 1], seed=3, recipe=recipe)
    b = optimise(small, place, [0, 1], seed=3, recipe=recipe)
    c = optimise(small, place, [0, 1], seed=4, recipe=recipe)
    for x, y, z in zip(a, b, c, strict=True):
        assert np.array_equal(x.pixels(), y.pixels())
        assert not np.array_equal(x.pixels(), z.pixels())
    assert a[0].history.shape == (6,)


def test_a_channel_in_a_batch_is_the_channel_alone(small: Inspector) -> None:
    # each image draws its own random numbers from (seed, channel, copy): the batch does not change it
    place = _first_place(small)
    recipe = Recipe(size=24, steps=5)
    alone = optimise(small, place, [3], recipe=recipe)[0]
    batch = optimise(small, place, [0, 3, 5], recipe=recipe)
    assert [i.channel for i in batch] == [0, 3, 5]
    assert np.allclose(alone.image, batch[1].image, atol=1e-4)


def test_the_objective_goes_up(small: Inspector) -> None:
    image = optimise(small, _first_place(small), [1], recipe=Recipe(size=32, steps=40))[0]
    assert image.history[-5:].mean() > image.history[:5].mean()
    assert image.image.shape == (32, 32, 3) and 0 <= image.image.min() and image.image.max() <= 1


def test_diversity_makes_different_images(small: Inspector) -> None:
    images = optimise(small, _first_place(small), [1], diversity=3, recipe=Recipe(size=24, steps=8))
    assert [(i.channel, i.copy) for i in images] == [(1, 0), (1, 1), (1, 2)]
    assert not np.allclose(images[0].image, images[1].image)


def test_parse_channels() -> None:
    assert parse_channels(None, 64) == list(range(16))
    assert parse_channels(None, 4) == [0, 1, 2, 3]
    assert parse_channels("0-2,7", 10) == [0, 1, 2, 7]
    assert parse_channels("all", 3) == [0, 1, 2]
    for bad in ("x", "5-", "12"):
        with pytest.raises(OnnxvisError) as info:
            parse_channels(bad, 10)
        assert info.value.setting == "channels"


def test_cli_files_and_bytes(cli, tmp_path) -> None:
    model = classifier(tmp_path / "m.onnx")
    args = ("features", model, "--layers", "1", "--channels", "0-2", "--size", "20", "--steps", "3", "--format", "png,npy")
    first = cli(*args, "-o", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith("."))
    stem = "features_01_block_conv"
    assert names == [f"{stem}.npy", f"{stem}.png", f"{stem}_c000.png", f"{stem}_c001.png", f"{stem}_c002.png", f"{stem}_channels.npy"]
    stack = np.load(tmp_path / "a" / "features_01_block_conv.npy")
    assert stack.shape == (3, 20, 20, 3) and stack.dtype == np.float32
    assert list(np.load(tmp_path / "a" / "features_01_block_conv_channels.npy")) == [0, 1, 2]
    again = cli(*args, "-o", tmp_path / "b")
    other = cli(*args, "-o", tmp_path / "c", "--seed", "1")
    png = "features_01_block_conv_c001.png"
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()
    assert (tmp_path / "a" / png).read_bytes() != (tmp_path / "c" / png).read_bytes()
    assert again.returncode == other.returncode == 0
    diverse = cli("features", model, "--layers", "1", "--channels", "2", "--size", "16", "--steps", "2", "--diversity", "2",
                  "-o", tmp_path / "d")
    assert diverse.returncode == 0, diverse.stderr
    assert {"features_01_block_conv_c002_d0.png", "features_01_block_conv_c002_d1.png"} <= {p.name for p in (tmp_path / "d").iterdir()}


def test_cli_class_by_label_and_mistakes(cli, tmp_path) -> None:
    model = classifier(tmp_path / "m.onnx")
    done = cli("features", model, "--objective", "class", "--target", "espresso", "--size", "16", "--steps", "2", "-o", tmp_path / "a")
    assert done.returncode == 0, done.stderr
    assert "class 2 (espresso)" in done.stderr
    assert any(p.name.endswith("_c002.png") for p in (tmp_path / "a").iterdir())
    for args, words in [
        (("--objective", "class"), "--target"),
        (("--channels", "99"), "--channels"),
        (("--steps", "0"), "--steps"),
        (("--diversity", "0"), "--diversity"),
        (("--format", "gif"), "--format"),
    ]:
        bad = cli("features", model, "--layers", "1", *args, "-o", tmp_path / "x")
        assert bad.returncode == 2, (args, bad.stderr)
        assert bad.stderr.startswith("onnxvis: error: ") and words in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr


@pytest.mark.slow
def test_optimised_image_beats_photos_on_squeezenet(tmp_path) -> None:
    # The "Done when" check, smaller (benchmarks/features_examples.py runs it in full: 16 channels, 512 steps,
    # the 300 photos): one channel of layer 15, 128 steps, against the 100 photos of imagenet-sample, scored by
    # onnxvis examples' own code over the photos and the PNG together.
    from PIL import Image

    from onnxvis.analysis.examples.find import find_examples

    model = _need(SQUEEZENET)
    photos = _need(ASSETS / "images" / "imagenet-sample")
    insp = Inspector(model)
    place = _first_place(insp, "15")
    image = optimise(insp, place, [0], recipe=Recipe(steps=128))[0]
    folder = tmp_path / "optimised"
    folder.mkdir()
    png = folder / "features_15_c000.png"
    Image.fromarray(image.pixels()).save(png)
    state = find_examples(model, [str(photos), str(folder)], layers="15", keep=2, out=tmp_path / "examples").state
    scores, ids, _, _ = state.top.entries(place.tensor)
    assert state.catalog[ids[0, 0]] == str(png), (scores[0], [state.catalog[i] for i in ids[0]])
    assert scores[0, 0] > 1.2 * scores[0, 1]  # a clear margin over the best photo


@pytest.mark.slow
def test_fourier_image_is_a_picture_not_noise() -> None:
    # the share of spectral energy above half Nyquist: Lucent's recipe against pixels optimised without it
    insp = Inspector(_need(SQUEEZENET))
    place = _first_place(insp, "15")
    fourier = optimise(insp, place, [0], recipe=Recipe(steps=64))[0]
    pixels = optimise(insp, place, [0], recipe=Recipe.unconstrained(steps=64))[0]
    assert fm.high_frequency_share(fourier.image) <= 0.5 * fm.high_frequency_share(pixels.image)


def test_examples_page_shows_the_optimised_image_beside_the_photos(cli, tmp_path) -> None:
    from conftest import photo

    model = classifier(tmp_path / "m.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(4):
        photo(photos / f"p{seed}.png", seed)
    out = tmp_path / "out"
    made = cli("features", model, "--layers", "1", "--channels", "0,2", "--size", "16", "--steps", "2", "-o", out)
    assert made.returncode == 0, made.stderr
    shown = cli("examples", model, photos, "--layers", "1", "--top", "2", "-o", out)
    assert shown.returncode == 0, shown.stderr
    page = (out / "examples.html").read_text()
    assert 'alt="optimised image of channel 0"' in page and 'alt="optimised image of channel 2"' in page
    assert 'alt="optimised image of channel 1"' not in page  # only where both exist
    alone = cli("examples", model, photos, "--layers", "1", "--top", "2", "-o", tmp_path / "plain")
    assert alone.returncode == 0 and "optimised image" not in (tmp_path / "plain" / "examples.html").read_text()


def test_report_shows_the_optimised_images_beside_the_top_photos(cli, tmp_path) -> None:
    from conftest import photo

    model = classifier(tmp_path / "m.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        photo(photos / f"p{seed}.png", seed)
    out = tmp_path / "out"
    plain = cli("report", model, "-o", out)
    assert plain.returncode == 0 and "What the channels want to see" not in (out / "report.html").read_text()
    assert cli("features", model, "--layers", "1", "--channels", "1", "--size", "16", "--steps", "2", "-o", out).returncode == 0
    assert cli("examples", model, photos, "--layers", "1", "--top", "2", "-o", out).returncode == 0
    done = cli("report", model, "-o", out)
    assert done.returncode == 0, done.stderr
    page = (out / "report.html").read_text()
    assert "What the channels want to see" in page and 'alt="optimised image of channel 1"' in page
    section = page.split('id="features"', 1)[1]
    assert section.count('alt="p') >= 2  # the channel's top photos beside it
