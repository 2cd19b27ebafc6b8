"""Raw and compressed camera-image decoding shared by the ROS node and the rosbag tools (no ROS imports here).

Inputs are the plain fields of `sensor_msgs/Image` / `sensor_msgs/CompressedImage`, so a message from rclpy,
from `rosbags` or from a test can be decoded the same way. Every failure is an `ImageDecodeError` with a message
saying what was wrong, never a numpy reshape traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """The image fields are inconsistent or the encoding/format is not supported."""


# encoding -> (channels, bytes per channel, conversion to RGB or None when already RGB)
_RAW_ENCODINGS: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 1, None),
    "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    "8uc1": (1, 1, cv2.COLOR_GRAY2RGB),
    "8uc3": (3, 1, cv2.COLOR_BGR2RGB),  # OpenCV convention: 3-channel 8-bit is BGR
    "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
    "16uc1": (1, 2, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_ENCODINGS = tuple(sorted(_RAW_ENCODINGS))
MAX_SIDE = 16384  # larger than any camera; guards against absurd height/width fields
# A compressed frame is refused before decoding when its header promises more pixels than this (a 146 KB PNG can
# declare 20000 x 2500 = 50 M pixels): 4096 x 4096, above any camera the planner is fed from.
MAX_COMPRESSED_PIXELS = 4096 * 4096
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; not DHT C4, JPG C8, DAC CC)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _as_bytes(data: Any) -> np.ndarray:
    """View a bytes-like field (bytes, bytearray, array.array('B'), memoryview, ndarray, list) as uint8 [N]."""
    if isinstance(data, np.ndarray):
        if data.dtype.itemsize != 1:
            raise ImageDecodeError(f"image data must be bytes, got an array of {data.dtype}")
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8)
        except (ValueError, OverflowError) as exc:
            raise ImageDecodeError(f"image data is not a byte sequence: {exc}") from None
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        raise ImageDecodeError(f"image data of type {type(data).__name__} is not bytes-like") from None


def decode_image(
    encoding: str, height: int, width: int, step: int, data: Any, is_bigendian: bool = False
) -> np.ndarray:
    """Fields of a raw `sensor_msgs/Image` -> RGB uint8 [H,W,3] (a new array; 16-bit mono keeps the high byte)."""
    enc = (encoding or "").strip().lower()
    if enc not in _RAW_ENCODINGS:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, depth, conversion = _RAW_ENCODINGS[enc]
    height, width, step = int(height), int(width), int(step)
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ImageDecodeError(f"invalid image size {height}x{width}")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} ({encoding})")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError("image data is empty")
    if buf.size < step * height:
        raise ImageDecodeError(f"image data has {buf.size} bytes, expected step*height = {step * height}")
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        pixels = (np.ascontiguousarray(rows).view(dtype).astype(np.uint16) >> 8).astype(np.uint8)
    else:
        pixels = rows
    pixels = np.ascontiguousarray(pixels).reshape(height, width, channels)
    if conversion is None:
        return pixels.copy()
    return cv2.cvtColor(pixels, conversion)


def encode_image(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[int, int, int, bytes]:
    """RGB uint8 [H,W,3] -> (height, width, step, data) in an 8-bit `encoding` (the inverse of decode_image)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageDecodeError(f"expected RGB uint8 [H,W,3], got {rgb.dtype} {tuple(rgb.shape)}")
    enc = encoding.strip().lower()
    to = {
        "rgb8": None,
        "bgr8": cv2.COLOR_RGB2BGR,
        "8uc3": cv2.COLOR_RGB2BGR,
        "rgba8": cv2.COLOR_RGB2RGBA,
        "bgra8": cv2.COLOR_RGB2BGRA,
        "mono8": cv2.COLOR_RGB2GRAY,
        "8uc1": cv2.COLOR_RGB2GRAY,
    }
    if enc not in to:
        raise ImageDecodeError(f"cannot encode to {encoding!r}; use one of {', '.join(sorted(to))}")
    out = rgb if to[enc] is None else cv2.cvtColor(rgb, to[enc])
    out = np.ascontiguousarray(out)
    # The row step is the packed row length; strides[0] is not (numpy keeps any stride on a length-1 axis, so a
    # single-row view of a wider image reports the parent's row stride).
    step = out.shape[1] * (out.shape[2] if out.ndim == 3 else 1) * out.itemsize
    return out.shape[0], out.shape[1], step, out.tobytes()


def _png_size(buf: bytes) -> tuple[int, int]:
    """(height, width) from the IHDR chunk, which the PNG standard places first."""
    if len(buf) < 24 or buf[12:16] != b"IHDR":
        raise ImageDecodeError("could not decode PNG data: no IHDR header")
    return int.from_bytes(buf[20:24], "big"), int.from_bytes(buf[16:20], "big")


def _jpeg_size(buf: bytes) -> tuple[int, int]:
    """(height, width) from the first start-of-frame segment, walking the marker segments before it."""
    i = 2
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:
            raise ImageDecodeError(f"could not decode JPEG data: bad marker at byte {i}")
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # TEM, RSTn: no length
            i += 2
            continue
        length = int.from_bytes(buf[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF:
            if i + 9 > len(buf) or length < 8:
                break
            return int.from_bytes(buf[i + 5 : i + 7], "big"), int.from_bytes(buf[i + 7 : i + 9], "big")
        if marker == 0xDA or length < 2:  # image data before any frame header
            break
        i += 2 + length
    raise ImageDecodeError("could not decode JPEG data: no frame header (SOF) found")


def compressed_size(data: Any) -> tuple[int, int]:
    """(height, width) a PNG or JPEG stream declares in its header, read without decoding any pixels."""
    buf = _as_bytes(data)
    if buf[:8].tobytes() == _PNG_MAGIC:
        return _png_size(buf[:24].tobytes())
    if buf[:2].tobytes() == b"\xff\xd8":
        return _jpeg_size(buf.tobytes())  # the frame header may follow long EXIF/ICC segments
    raise ImageDecodeError(f"could not decode {buf.size} bytes of compressed data: not a PNG or JPEG stream")


def decode_compressed(
    format: str, data: Any, max_pixels: int = MAX_COMPRESSED_PIXELS  # noqa: A002 - the message field is named format
) -> np.ndarray:
    """Fields of a `sensor_msgs/CompressedImage` (jpeg/png, any image_transport format string) -> RGB uint8.

    The size the header declares is checked against `max_pixels` before any pixel is decoded, so a small
    message cannot make the decoder allocate gigabytes (a decompression bomb).
    """
    fmt = (format or "").lower()
    if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ImageDecodeError(f"unsupported compressed format {format!r} (expected jpeg or png)")
    if "compresseddepth" in fmt.replace(" ", ""):
        raise ImageDecodeError(f"depth images are not camera images: {format!r}")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError("compressed image data is empty")
    height, width = compressed_size(buf)
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE) or height * width > max_pixels:
        raise ImageDecodeError(
            f"compressed image declares {height}x{width} pixels, more than the limit of {max_pixels} "
            f"(and {MAX_SIDE} per side); refused before decoding"
        )
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"could not decode {buf.size} bytes of {format or 'compressed'} data")
    if bgr.shape[:2] != (height, width):
        raise ImageDecodeError(f"decoded size {bgr.shape[:2]} differs from the header's {height}x{width}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_compressed(rgb: np.ndarray, format: str = "jpeg", quality: int = 95) -> bytes:  # noqa: A002
    """RGB uint8 [H,W,3] -> jpeg or png bytes (for test publishers and bag writers)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageDecodeError(f"expected RGB uint8 [H,W,3], got {rgb.dtype} {tuple(rgb.shape)}")
    ext = ".png" if "png" in format.lower() else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, enc = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageDecodeError(f"could not encode image as {format}")
    return enc.tobytes()


def read_image_file(path: str | Path) -> np.ndarray:
    """A PNG or JPEG file -> RGB uint8 [H,W,3], through `decode_compressed` (the size check included); a missing,
    unreadable or non-image file is an `ImageDecodeError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read image {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return decode_compressed("", data)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{str(path)!r} is not a usable image: {exc}") from None


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """RGB uint8 [H,W,3] -> a lossless PNG file (its parent directory is created); returns the path."""
    path = Path(path)
    data = encode_compressed(rgb, "png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
