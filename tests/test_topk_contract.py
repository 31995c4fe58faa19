"""The top-K reducer's contract (issue 19): two runs whose scores differ in their last bits (onnxruntime's
full optimisation level, batched differently) give the same images in the same order."""

from __future__ import annotations

import numpy as np

from onnxvis.analysis.examples.topk import RTOL, TopK


def _top(scores: np.ndarray, k: int = 4) -> TopK:
    top = TopK(k)
    n, c = scores.shape
    top.add("l", np.arange(n), scores, np.zeros((n, c), np.int32), np.zeros((n, c), np.int32))
    return top


def test_scores_within_the_tolerance_are_ordered_by_image_path():
    # image 2 scores a hair above image 0: the same score under the contract, so image 0 comes first
    scores = np.array([[1.0], [0.5], [1.0 + RTOL / 4], [0.9]], np.float32)
    _, images, _, _ = _top(scores).entries("l")
    assert images[0].tolist() == [0, 2, 3, 1]
    # beyond the tolerance the score decides
    scores[2, 0] = 1.0 + 3 * RTOL
    assert _top(scores).entries("l")[1][0].tolist() == [2, 0, 3, 1]


def test_last_bit_noise_gives_the_same_answer_and_a_real_difference_is_caught():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((200, 8)).astype(np.float32)
    base[::7] = base[0]  # exact ties, as float16 models give
    noisy = base * (1 + rng.uniform(-1e-6, 1e-6, base.shape)).astype(np.float32)
    a, b = _top(base, 16), _top(noisy, 16)
    assert not a.equal(b)  # not bit for bit ...
    assert a.agrees(b, k=9) is None  # ... but the same answer
    far = base.copy()
    far[int(np.argmax(base[:, 3])), 3] += 1.0  # the best image of channel 3 scores far more
    assert "score" in (a.agrees(_top(far, 16), k=9) or "")
    swapped = base.copy()
    swapped[:, 5] = -swapped[:, 5]  # other images
    assert "images" in (a.agrees(_top(swapped, 16), k=9) or "")


def test_payloads_follow_their_entries():
    scores = np.array([[1.0], [1.0 + RTOL / 4]], np.float32)
    top = TopK(2)
    top.add("l", np.arange(2), scores, np.zeros((2, 1), np.int32), np.zeros((2, 1), np.int32),
            payload=np.array([[[[0.0]]], [[[2.0]]]], np.float16))
    assert top.entries("l")[1][0].tolist() == [0, 1]
    assert top.payload("l")[0, :, 0, 0].tolist() == [0.0, 2.0]
