"""Raw and compressed image decoding on the real Franka camera frame: exact round trips and clear errors."""

from __future__ import annotations

import array
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

from vjepa2_core.data.images import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    compressed_size,
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


def png_bomb(width: int = 20000, height: int = 2500) -> bytes:
    """A valid RGB PNG of zeros, compressed row by row (no full-size array): 146 KB that decodes to 150 MB."""
    row = b"\0" * (1 + 3 * width)  # filter byte + pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_bomb_is_refused_from_its_header_before_decoding():
    bomb = png_bomb()
    assert len(bomb) < 200_000
    assert compressed_size(bomb) == (2500, 20000)
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="2500x20000 pixels, more than the limit"):
        decode_compressed("png", bomb)
    assert time.perf_counter() - start < 0.05, "the header check must not decode"
    # the same stream under the limit decodes: the check reads the real header, not a guess
    small = png_bomb(64, 8)
    assert decode_compressed("png", small).shape == (8, 64, 3)


def test_large_jpeg_is_refused_and_its_size_read_past_exif(frame):
    big = cv2.imencode(".jpg", np.zeros((4200, 4100), np.uint8))[1].tobytes()
    assert compressed_size(big) == (4200, 4100)
    with pytest.raises(ImageDecodeError, match="4200x4100 pixels"):
        decode_compressed("jpeg", big)
    # an APP1 (EXIF-like) segment of 60 KB before the frame header
    jpeg = encode_compressed(frame, "jpeg")
    app1 = b"\xff\xe1" + struct.pack(">H", 60002) + b"\0" * 60000
    padded = jpeg[:2] + app1 + jpeg[2:]
    assert compressed_size(padded) == frame.shape[:2]
    assert decode_compressed("jpeg", padded).shape == frame.shape
    assert decode_compressed("jpeg", jpeg, max_pixels=frame.shape[0] * frame.shape[1]).shape == frame.shape
    with pytest.raises(ImageDecodeError, match="limit"):
        decode_compressed("jpeg", jpeg, max_pixels=frame.shape[0] * frame.shape[1] - 1)


def test_content_not_format_string_decides_the_decoder(frame):
    bmp = cv2.imencode(".bmp", frame)[1].tobytes()
    with pytest.raises(ImageDecodeError, match="not a PNG or JPEG"):
        decode_compressed("png", bmp)


@pytest.mark.parametrize("encoding, channels", [("rgb8", 3), ("bgr8", 3), ("mono8", 1), ("rgba8", 4)])
def test_single_row_view_gets_the_packed_row_step(encoding, channels):
    wide = np.arange(256 * 3 * 4, dtype=np.uint32).astype(np.uint8).reshape(4, 256, 3)
    view = wide[1:2, :10]  # (1, 10, 3), strides[0] of the parent (768)
    assert view.strides[0] == 768
    h, w, step, data = encode_image(view, encoding)
    assert (h, w, step) == (1, 10, 10 * channels) and len(data) == step
    if encoding != "mono8":
        np.testing.assert_array_equal(decode_image(encoding, h, w, step, data), view)
