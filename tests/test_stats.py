"""onnxvis.analysis.stats: weight statistics, running activation sums, TensorBoard's histograms.

The oracles: numpy over all values at once (what the running sums must equal), and torch's
``SummaryWriter.add_histogram`` read back by TensorBoard (what the histograms must equal), in the
full environment.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxvis.analysis import stats as st


def _reference_weight_stats(w: np.ndarray) -> dict:
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    norms = np.linalg.norm(flat, axis=1)
    dead = (norms < 0.01 * np.median(norms)) | (norms == 0)
    return {"min": flat.min(), "max": flat.max(), "mean": flat.mean(), "std": flat.std(), "norms": norms, "dead": dead,
            "norm": np.linalg.norm(flat), "sparsity": np.mean(flat == 0)}


def test_weight_stats_are_the_reports_numbers_plus_norm_and_sparsity():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((10, 3, 3, 3)).astype(np.float32)
    w[2] = 0  # dead: zero
    w[5] *= 1e-4  # near-dead: below 1% of the median norm
    w[7, 0] = 0  # some zeros, not dead
    got = st.weight_stats(w)
    ref = _reference_weight_stats(w)
    for key in ("min", "max", "mean", "std", "norm", "sparsity"):
        assert getattr(got, key) == pytest.approx(ref[key], rel=1e-12), key
    assert np.allclose(got.norms, ref["norms"], rtol=1e-12)
    assert got.dead.tolist() == ref["dead"].tolist() and got.near_dead == 2
    assert got.near_dead_share == pytest.approx(0.2)
    assert got.zeros == 27 + 9 and got.count == w.size


def test_big_weights_are_measured_in_blocks_with_the_same_numbers(monkeypatch):
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((300, 50)) * 0.02 + 0.001).astype(np.float32)
    w[17] = 0
    whole = st.weight_stats(w)
    monkeypatch.setattr(st, "_BLOCK", 1000)  # 20 rows a block
    blocked = st.weight_stats(w)
    for key in ("min", "max", "mean", "std", "norm", "sparsity", "near_dead"):
        assert getattr(blocked, key) == pytest.approx(getattr(whole, key), rel=1e-12), key
    assert np.allclose(blocked.norms, whole.norms, rtol=1e-12) and blocked.dead.tolist() == whole.dead.tolist()


def test_the_report_and_the_server_count_near_dead_filters_with_the_same_function():
    from onnxvis import report
    from onnxvis.serve import explorer

    assert report.weight_stats is st.weight_stats and explorer.weight_stats is st.weight_stats
    assert report.DEAD_FRACTION == st.DEAD_FRACTION == 0.01


def test_running_stats_equal_numpy_over_all_images_at_once():
    rng = np.random.default_rng(1)
    maps = [np.maximum(rng.standard_normal((6, h, w)) * 3 + 0.5, 0).astype(np.float32) for h, w in ((7, 9), (5, 5), (11, 4))]
    for m in maps:
        m[4] = 0  # channel 4 never fires
        m[2] = -np.abs(m[2]) - 1  # channel 2 is negative everywhere
    running = st.RunningStats(channel_axis=0, count_zeros=True)
    for m in maps:
        running.add(m)
    everything = np.concatenate([m.reshape(6, -1) for m in maps], axis=1).astype(np.float64)
    assert running.images == 3 and running.count == everything.size
    assert running.mean == pytest.approx(everything.mean(), rel=1e-6)
    assert running.std == pytest.approx(everything.std(), rel=1e-6)
    assert running.max == everything.max() and running.min == everything.min()
    assert running.zeros == np.count_nonzero(everything == 0)
    assert running.zero_share == pytest.approx(np.mean(everything == 0))
    assert running.channels == 6 and running.silent.tolist() == [False, False, True, False, True, False]
    assert running.dead_channels == pytest.approx(2 / 6)


def test_running_stats_take_float16_and_channels_last():
    rng = np.random.default_rng(2)
    maps = [rng.standard_normal((h, 5, 4)).astype(np.float16) for h in (3, 8)]
    for m in maps:
        m[..., 1] = -1
    running = st.RunningStats(channel_axis=-1)
    for m in maps:
        running.add(m)
    everything = np.concatenate([m.reshape(-1, 4) for m in maps]).astype(np.float64)
    assert running.mean == pytest.approx(everything.mean(), rel=1e-6)
    assert running.std == pytest.approx(everything.std(), rel=1e-6)
    assert running.silent.tolist() == [False, True, False, False]
    assert np.isnan(running.zero_share) or running.zeros == 0  # zeros are counted only when asked for


def test_running_stats_without_a_known_channel_axis_give_no_silent_channels():
    running = st.RunningStats(channel_axis=None)
    running.add(np.zeros((3, 4), np.float32))
    assert running.channels is None and np.isnan(running.dead_channels) and running.max == 0


def test_tensorflow_bins_are_torchs_default_bins():
    edges = st.tensorflow_bins()
    assert edges.size == 1549 and edges[774] == 0 and edges[775] == 1e-12 and edges[773] == -1e-12
    assert np.all(np.diff(edges) > 0)
    assert edges[-1] < 1e20 <= edges[-1] * 1.1


def _tricky_values() -> np.ndarray:
    """Every bucket edge as float32 and its float32 neighbours, zeros of both signs, tiny and huge values."""
    e32 = st.tensorflow_bins().astype(np.float32)
    rng = np.random.default_rng(3)
    return np.concatenate([
        e32, np.nextafter(e32, np.float32(np.inf)), np.nextafter(e32, np.float32(-np.inf)),
        np.array([0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, 3e38, -3e38, 1e20, -1e20, 9.99e19, -9.99e19], np.float32),
        rng.standard_normal(5000).astype(np.float32), (rng.standard_normal(5000) * 1e-11).astype(np.float32),
    ])


def test_histogram_is_torchs_make_histogram():
    values = _tricky_values()
    got = st.histogram(values)
    x = values.astype(np.float64)
    counts, limits = np.histogram(x, bins=st.tensorflow_bins())
    assert got.num == values.size and got.min == x.min() and got.max == x.max()
    assert sum(got.bucket) == counts.sum()  # the values beyond +-1e20 fall outside every bucket, as in torch
    assert got.bucket[0] == 0  # the empty bucket that carries the left edge
    assert got.bucket_limit[0] == limits[np.flatnonzero(counts)[0]]
    assert got.bucket_limit[-1] == limits[np.flatnonzero(counts)[-1] + 1]


def test_the_running_histogram_is_the_histogram_of_everything():
    values = _tricky_values()
    running = st.RunningHistogram()
    for part in np.array_split(values, 7):
        running.add(part)
    got, want = running.result(), st.histogram(values)
    assert got.bucket == want.bucket and got.bucket_limit == want.bucket_limit
    assert (got.num, got.min, got.max) == (want.num, want.min, want.max)
    normal = np.random.default_rng(5).standard_normal(10_000).astype(np.float32)
    running = st.RunningHistogram()
    for part in np.array_split(normal, 3):
        running.add(part)
    got, want = running.result(), st.histogram(normal)
    assert got.sum == pytest.approx(want.sum, rel=1e-9) and got.sum_squares == pytest.approx(want.sum_squares, rel=1e-9)


def test_the_running_histogram_puts_every_float32_of_a_range_where_numpy_does():
    # A dense sweep of bit patterns around 1 and around -1e-6 (each cell of the lookup, each edge in it).
    for start in (np.float32(0.5), np.float32(-1e-6), np.float32(1e-12)):
        bits = start.view(np.uint32).astype(np.int64) + np.arange(-300_000, 300_000)
        values = bits.astype(np.uint32).view(np.float32)
        values = values[np.isfinite(values)]
        running = st.RunningHistogram()
        running.add(values)
        counts, _ = np.histogram(values.astype(np.float64), bins=st.tensorflow_bins())
        assert np.array_equal(running._counts[1:], counts)


def test_the_running_histogram_counts_float16_and_float64_exactly():
    rng = np.random.default_rng(6)
    every16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    every16 = every16[np.isfinite(every16)]  # every float16 number
    for values in (every16, rng.standard_normal(3000).astype(np.float16), _tricky_values().astype(np.float64)):
        running = st.RunningHistogram()
        for part in np.array_split(values, 3):
            running.add(part)
        got, want = running.result(), st.histogram(values)
        assert got.bucket == want.bucket and got.bucket_limit == want.bucket_limit, values.dtype
        assert (got.num, got.min, got.max) == (want.num, want.min, want.max), values.dtype
        if values.dtype == np.float16 and values is not every16:  # (the others hold +-3e38: their sums cancel)
            assert got.sum == pytest.approx(want.sum, rel=1e-9, abs=1e-9) and got.sum_squares == pytest.approx(want.sum_squares, rel=1e-9)


def test_empty_histograms_are_refused():
    with pytest.raises(ValueError):
        st.histogram(np.array([], np.float32))
    with pytest.raises(ValueError):
        st.RunningHistogram().result()


# ------------------------------------------------------------------ the oracle: torch's SummaryWriter


@pytest.mark.full
def test_weight_and_activation_histograms_equal_summarywriters(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator
    from torch.utils.tensorboard import SummaryWriter

    from onnxvis.outdir import OutputDir
    from onnxvis.write.tensorboard import EventFile

    rng = np.random.default_rng(4)
    weight = rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.1
    maps = [np.maximum(rng.standard_normal((8, 12, 12)), 0).astype(np.float32) for _ in range(5)]
    writer = SummaryWriter(str(tmp_path / "torch"))
    writer.add_histogram("weights/w", torch.from_numpy(weight))
    writer.add_histogram("activations/a", torch.from_numpy(np.concatenate([m.reshape(-1) for m in maps])))
    writer.close()

    events = EventFile()
    events.add_histogram("weights/w", st.histogram(weight))
    running = st.RunningHistogram()
    for m in maps:
        running.add(m)
    events.add_histogram("activations/a", running.result())
    events.save(OutputDir(tmp_path / "ours"), "stats")

    def read(folder):
        acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.HISTOGRAMS: 0})
        acc.Reload()
        return {tag: acc.Histograms(tag)[0].histogram_value for tag in acc.Tags()["histograms"]}

    theirs, ours = read(tmp_path / "torch"), read(tmp_path / "ours")
    assert set(theirs) == set(ours) == {"weights/w", "activations/a"}
    for tag in theirs:
        a, b = theirs[tag], ours[tag]
        assert (a.min, a.max, a.num) == (b.min, b.max, b.num), tag
        assert a.bucket_limit == b.bucket_limit and a.bucket == b.bucket, tag
        assert a.sum == pytest.approx(b.sum, rel=1e-9) and a.sum_squares == pytest.approx(b.sum_squares, rel=1e-9), tag
    assert ours["weights/w"].num == weight.size
    assert ours["weights/w"].min == float(weight.min()) and ours["weights/w"].max == float(weight.max())
