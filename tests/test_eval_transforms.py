"""Eval video transform against numbers worked out from the reference rules (spec section 8)."""

import numpy as np
import pytest
import torch

from vjepa2_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_video_transform, short_side_size


def _ramp_clip(t: int, h: int, w: int) -> np.ndarray:
    """Channel 0 = 2*column, channel 1 = 3*row, channel 2 = 40*frame: bilinear resizing keeps them linear."""
    clip = np.zeros((t, h, w, 3), np.uint8)
    clip[..., 0] = (2 * np.arange(w))[None, None, :]
    clip[..., 1] = (3 * np.arange(h))[None, :, None]
    clip[..., 2] = (40 * np.arange(t))[:, None, None]
    return clip


def _unnormalise(x: torch.Tensor, c: int) -> np.ndarray:
    return (x[c].numpy() * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255.0


def test_sizes_follow_the_reference_truncation():
    assert int(256 * 256 / 224) == 292 and int(384 * 256 / 224) == 438
    assert short_side_size(480, 640, 292) == (292, 389)  # int(292 * 640 / 480) = 389.33 -> 389
    assert short_side_size(640, 480, 292) == (389, 292)


def test_single_view_resize_and_centre_crop_values():
    # 48x80 clip, crop 32: short side int(32*256/224) = 36, long side int(36*80/48) = 60;
    # crop offsets round((60-32)/2) = 14 along x, round((36-32)/2) = 2 along y.
    clip = _ramp_clip(3, 48, 80)
    (view,) = eval_video_transform(crop_size=32)(clip)
    assert view.shape == (3, 3, 32, 32) and view.dtype == torch.float32
    # cv2 INTER_LINEAR samples source x = (x + 0.5) * 80/60 - 0.5; the ramp gives 2 * that (interior columns).
    cols = np.arange(14, 14 + 32)
    expected_r = 2 * ((cols + 0.5) * 80 / 60 - 0.5)
    got_r = _unnormalise(view, 0)[1, 10]
    np.testing.assert_allclose(got_r[1:-1], expected_r[1:-1], atol=1.0)  # cv2 fixed-point weights + uint8 rounding
    rows = np.arange(2, 2 + 32)
    expected_g = 3 * ((rows + 0.5) * 48 / 36 - 0.5)
    np.testing.assert_allclose(_unnormalise(view, 1)[2, :, 5], expected_g, atol=1.0)
    np.testing.assert_allclose(_unnormalise(view, 2)[:, 0, 0], [0, 40, 80], atol=1e-3)


def test_constant_clip_is_exactly_normalised():
    clip = np.full((2, 30, 50, 3), 200, np.uint8)
    (view,) = eval_video_transform(crop_size=16)(clip)
    for c in range(3):
        assert torch.allclose(view[c], torch.full_like(view[c], (200 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))


def test_multi_view_slides_along_the_long_side():
    # 40x100 clip, crop 20, 3 views: short side 20 -> 20x50; step (50-20)//2 = 15 -> views at x = 0, 15, 30.
    clip = _ramp_clip(2, 40, 100)
    views = eval_video_transform(crop_size=20, num_views=3)(clip)
    assert len(views) == 3 and all(v.shape == (3, 2, 20, 20) for v in views)
    left_edges = [_unnormalise(v, 0)[0, 10, 5] for v in views]
    expected = [2 * ((x0 + 5 + 0.5) * 100 / 50 - 0.5) for x0 in (0, 15, 30)]
    np.testing.assert_allclose(left_edges, expected, atol=1.0)
    # tall clip: the views move down
    tall = eval_video_transform(crop_size=20, num_views=2)(_ramp_clip(1, 100, 40))
    rows = [_unnormalise(v, 1)[0, 5, 10] for v in tall]
    np.testing.assert_allclose(rows, [3 * ((y0 + 5 + 0.5) * 2 - 0.5) for y0 in (0, 30)], atol=1.0)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="uint8 RGB clip"):
        eval_video_transform(16)(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        eval_video_transform(16, num_views=0)
