"""The deterministic AC transform: shapes, normalisation and the reference crop fallback."""

import cv2
import numpy as np
import pytest
import torch

from vjepa2_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ac_preprocess, central_crop_box


def test_square_image_is_only_normalised():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    x = ac_preprocess(img, crop_size=64)
    assert x.shape == (3, 2, 64, 64)
    c = 1
    expected = (img[1, :, :, c].astype(np.float32) - IMAGENET_MEAN[c] * 255) / (IMAGENET_STD[c] * 255)
    np.testing.assert_allclose(x[c, 1].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_single_frame_and_resize():
    img = np.full((48, 80, 3), 255, dtype=np.uint8)
    x = ac_preprocess(img, crop_size=32, ratio=(0.75, 1.35))
    assert x.shape == (3, 1, 32, 32)
    assert torch.allclose(x[0], torch.full_like(x[0], (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))


def test_crop_fallback_matches_reference_rule():
    # 16:9 frame with ratio clamp 1.35: full height, width round(1.35 * H), centred.
    top, left, h, w = central_crop_box(180, 320, (0.75, 1.35))
    assert (h, w) == (180, 243) and top == 0 and left == (320 - 243) // 2
    # tall frame: full width, height round(W / 0.75)
    assert central_crop_box(400, 100, (0.75, 1.35))[2:] == (133, 100)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((2, 4, 4, 4), np.uint8), np.zeros((0, 4, 3))])
def test_malformed_images_raise_clear_errors(bad):
    with pytest.raises(ValueError):
        ac_preprocess(bad, crop_size=16)


def test_encoder_view_is_the_centre_square_at_the_input_size():
    from vjepa2_core.data.transforms import encoder_view

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    view = encoder_view(frame, 60)
    assert view.shape == (60, 60, 3) and view.dtype == np.uint8
    centre = frame[:, 40:160]  # the 120 x 120 centre: what lies outside it never shows
    np.testing.assert_array_equal(view, encoder_view(centre, 60))
    assert np.abs(view.astype(int) - cv2.resize(centre, (60, 60), interpolation=cv2.INTER_LINEAR)).max() <= 1
    np.testing.assert_array_equal(encoder_view(centre, 120), centre)  # at its own size: the pixels themselves
