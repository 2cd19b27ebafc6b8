"""Raw and compressed image decoding on the real Franka camera frame: exact round trips and clear errors."""

from __future__ import annotations

import array

import numpy as np
import pytest

from vjepa2_core.data.images import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
)


@pytest.fixture(scope="module")
def frame(franka_npz) -> np.ndarray:
    return np.load(franka_npz)["observations"][0, 0]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3"])
def test_colour_round_trip_is_exact(frame, encoding):
    h, w, step, data = encode_image(frame, encoding)
    out = decode_image(encoding, h, w, step, array.array("B", data))
    assert out.dtype == np.uint8 and out.shape == frame.shape
    np.testing.assert_array_equal(out, frame)


def test_channel_order_is_respected(frame):
    h, w, step, data = encode_image(frame, "bgr8")
    as_if_rgb = decode_image("rgb8", h, w, step, data)
    np.testing.assert_array_equal(as_if_rgb, frame[..., ::-1])


def test_mono8_becomes_grey_rgb(frame):
    h, w, step, data = encode_image(frame, "mono8")
    out = decode_image("mono8", h, w, step, data)
    assert out.shape == frame.shape
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert abs(float(out.mean()) - float(frame.mean())) < 10


def test_padded_rows_are_cropped(frame):
    small = frame[:5, :7]
    padded = np.zeros((5, 7 * 3 + 11), np.uint8)
    padded[:, : 7 * 3] = small.reshape(5, -1)
    out = decode_image("rgb8", 5, 7, padded.shape[1], padded.tobytes())
    np.testing.assert_array_equal(out, small)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_keeps_high_byte(bigendian):
    img = np.array([[0, 256, 65535], [1024, 512, 40000]], dtype=">u2" if bigendian else "<u2")
    out = decode_image("mono16", 2, 3, 6, img.tobytes(), is_bigendian=bigendian)
    np.testing.assert_array_equal(out[..., 1], (img.astype(np.uint32) >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "args, match",
    [
        (("yuv422", 2, 2, 4, b"\0" * 8), "unsupported encoding"),
        (("rgb8", 0, 2, 6, b""), "invalid image size"),
        (("rgb8", 2, 2, 5, b"\0" * 10), "step 5 is smaller"),
        (("rgb8", 2, 2, 6, b""), "empty"),
        (("rgb8", 2, 2, 6, b"\0" * 11), "expected step\\*height = 12"),
        (("rgb8", 2, 2, 6, 12345), "not bytes-like"),
        (("rgb8", 2, 2, 6, np.zeros(12, np.float32)), "must be bytes"),
        (("mono8", 100000, 1, 1, b"\0"), "invalid image size"),
    ],
)
def test_malformed_raw_images_raise_clear_errors(args, match):
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(*args)
    assert issubclass(ImageDecodeError, ValueError)


def test_supported_encodings_listed_in_error():
    with pytest.raises(ImageDecodeError) as err:
        decode_image("16UC3", 1, 1, 6, b"\0" * 6)
    for enc in ("rgb8", "bgr8", "mono8"):
        assert enc in str(err.value) and enc in SUPPORTED_ENCODINGS


def test_png_round_trip_is_exact(frame):
    data = encode_compressed(frame, "png")
    np.testing.assert_array_equal(decode_compressed("png", array.array("B", data)), frame)


def test_jpeg_decodes_close_with_image_transport_format(frame):
    data = encode_compressed(frame, "jpeg", quality=95)
    out = decode_compressed("rgb8; jpeg compressed bgr8", data)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frame.astype(int)).mean() < 3.0


@pytest.mark.parametrize(
    "fmt, data, match",
    [
        ("jpeg", b"", "empty"),
        ("jpeg", b"not a jpeg at all", "could not decode"),
        ("h264", b"\0\0\1", "unsupported compressed format"),
        ("16UC1; compressedDepth png", b"\x89PNG", "depth"),
    ],
)
def test_malformed_compressed_images_raise(fmt, data, match):
    with pytest.raises(ImageDecodeError, match=match):
        decode_compressed(fmt, data)


def test_encode_rejects_non_rgb():
    with pytest.raises(ImageDecodeError, match="RGB uint8"):
        encode_image(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageDecodeError, match="cannot encode"):
        encode_image(np.zeros((4, 4, 3), np.uint8), "yuv422")
