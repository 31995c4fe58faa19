"""onnxvis.analysis.cam.maths, the arithmetic of the class activation maps: checked against OpenCV and torch (when
installed) and against properties that hold without them."""

from __future__ import annotations

import numpy as np
import pytest

from onnxvis.analysis.cam import maths as cam
from onnxvis.errors import OnnxvisError

SIZES = [(7, 7, 224, 224), (13, 13, 224, 224), (5, 9, 37, 61), (10, 10, 3, 4), (7, 7, 7, 7), (1, 5, 9, 9)]


@pytest.mark.full
@pytest.mark.parametrize("h,w,H,W", SIZES)
def test_resize_equals_opencv(h, w, H, W):
    cv2 = pytest.importorskip("cv2")
    a = np.random.default_rng(h * w).normal(size=(h, w)).astype(np.float32)
    np.testing.assert_allclose(cam.resize_bilinear(a, (H, W)), cv2.resize(a, (W, H)), atol=1e-5)


@pytest.mark.full
@pytest.mark.parametrize("h,w,H,W", SIZES)
def test_upsample_equals_torch_align_corners(h, w, H, W):
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(h + w).normal(size=(3, h, w)).astype(np.float32)
    ref = torch.nn.UpsamplingBilinear2d(size=(H, W))(torch.from_numpy(a)[None])[0].numpy()
    np.testing.assert_allclose(cam.upsample_align_corners(a, (H, W)), ref, atol=1e-5)


def test_resize_keeps_corners_and_constants():
    a = np.arange(4, dtype=np.float32).reshape(2, 2)
    out = cam.resize_bilinear(a, (4, 4))
    # OpenCV's half-pixel centres: the outer ring copies the source corners, the middle interpolates.
    assert out[0, 0] == 0 and out[-1, -1] == 3 and out[1, 1] == pytest.approx(0.75)
    assert np.all(cam.resize_bilinear(np.full((3, 5), 2.5, np.float32), (11, 7)) == 2.5)


@pytest.mark.full
def test_jet_table_and_overlay_match_opencv_and_grad_cam():
    pytest.importorskip("cv2")
    pytest.importorskip("torch")
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    assert np.array_equal(cam.JET, lut)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    mask = rng.uniform(size=(30, 40)).astype(np.float32)
    ref = show_cam_on_image(np.float32(img) / 255, mask, use_rgb=True)
    assert np.array_equal(cam.overlay(img, mask), ref)


def test_jet_ends():
    assert cam.JET[0].tolist() == [0, 0, 128] and cam.JET[255].tolist() == [128, 0, 0]
    out = cam.overlay(np.zeros((2, 2, 3), np.uint8), np.array([[0, 1], [0.5, 0]], np.float32))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3) and out.max() == 255


def test_finish_is_in_unit_range_with_second_min_max():
    raw = np.random.default_rng(2).normal(size=(7, 7)).astype(np.float32)
    out = cam.finish(raw, (224, 224))
    assert out.dtype == np.float32 and out.shape == (224, 224)
    assert out.min() == 0 and out.max() == pytest.approx(1, abs=1e-6)
    once = cam.scale_cam_image(np.maximum(raw, 0)[None], (224, 224))[0]
    # Without the second min-max the resized map would not reach 1: the samples fall between pixels.
    assert once.min() == 0 and once.max() < 1 - 1e-3
    # and the second min-max is what lifts it there, the same map stretched
    np.testing.assert_allclose(out, once / (1e-7 + once.max()), atol=1e-6)


def test_ablation_values_follow_grad_cams_running_minimum():
    acts = np.array([[[0.0, 1.0]], [[2.0, 3.0]]], np.float32)
    assert np.all(cam.ablation_values(acts, 4) == 0)
    neg = acts - 1
    values = cam.ablation_values(neg, 3)
    assert values.tolist() == [np.float32(-1 - 1e7), np.float32(np.float32(-1 - 1e7) - 1e7), np.float32(-1 - 3e7)]


def test_ablation_weights_relative_drop_and_copies():
    acts = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2) + 1
    seen = []

    def score(batch):
        seen.append(batch.copy())
        return batch.sum(axis=(1, 2, 3))

    weights = cam.ablation_cam_weights(acts, float(acts.sum()), score, batch_size=2)
    assert [b.shape[0] for b in seen] == [2, 1]
    low = acts.min()
    assert np.all(seen[0][0, 0] == low - 1e7) and np.all(seen[0][1, 1] == np.float32(np.float32(low - 1e7) - 1e7))
    assert np.all(seen[1][0, 2] == low - 1e7) and np.all(seen[1][0, :2] == acts[:2])
    ablated = np.concatenate([b.sum(axis=(1, 2, 3)) for b in seen])
    assert weights.shape == (3,) and weights.dtype == np.float32
    np.testing.assert_allclose(weights, (acts.sum() - ablated) / acts.sum(), rtol=1e-6)
    assert np.all(weights > 1e5)  # removing 1e7 per position is a huge relative drop


def test_score_weights_softmax_and_masks():
    acts = np.random.default_rng(3).normal(size=(5, 4, 4)).astype(np.float32)
    masks = cam.score_masks(acts, (16, 16))
    assert masks.shape == (5, 16, 16) and np.allclose(masks.min(axis=(1, 2)), 0) and np.allclose(masks.max(axis=(1, 2)), 1, atol=1e-6)
    weights = cam.score_cam_weights(acts, (16, 16), lambda m: m.mean(axis=(1, 2)), batch_size=2)
    assert weights.shape == (5,) and weights.sum() == pytest.approx(1, abs=1e-6)
    assert np.argmax(weights) == np.argmax(masks.mean(axis=(1, 2)))


def test_eigen_fem_shapes_and_fem_picks_peaky_channels():
    acts = np.zeros((2, 5, 5), np.float32)
    acts[0, 2, 2] = 10  # one hot spot: above mean + 2 std
    acts[1] = 1  # flat: nothing above its threshold
    fem = cam.fem_map(acts)
    assert fem[2, 2] > 0 and fem.sum() == fem[2, 2]
    eig = cam.eigen_projection(acts)
    assert eig.shape == (5, 5) and eig.dtype == np.float32 and abs(eig[2, 2]) == np.abs(eig).max()


def test_bad_shapes_are_one_clear_error():
    with pytest.raises(OnnxvisError, match="channels, height, width"):
        cam.eigen_projection(np.zeros((3, 4), np.float32))
    with pytest.raises(OnnxvisError, match="NaN"):
        cam.finish(np.full((2, 2), np.nan, np.float32), (4, 4))
    with pytest.raises(OnnxvisError, match="same size"):
        cam.overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((3, 3), np.float32))
