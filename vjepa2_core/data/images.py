"""Raw and compressed camera-image decoding shared by the ROS node and the rosbag tools (no ROS imports here).

Inputs are the plain fields of `sensor_msgs/Image` / `sensor_msgs/CompressedImage`, so a message from rclpy,
from `rosbags` or from a test can be decoded the same way. Every failure is an `ImageDecodeError` with a message
saying what was wrong, never a numpy reshape traceback.
"""

from __future__ import annotations

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
    return out.shape[0], out.shape[1], out.strides[0], out.tobytes()


def decode_compressed(format: str, data: Any) -> np.ndarray:  # noqa: A002 - the message field is named format
    """Fields of a `sensor_msgs/CompressedImage` (jpeg/png, any image_transport format string) -> RGB uint8."""
    fmt = (format or "").lower()
    if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png", "webp", "bmp", "tiff")):
        raise ImageDecodeError(f"unsupported compressed format {format!r} (expected jpeg or png)")
    if "compresseddepth" in fmt.replace(" ", ""):
        raise ImageDecodeError(f"depth images are not camera images: {format!r}")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError("compressed image data is empty")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"could not decode {buf.size} bytes of {format or 'compressed'} data")
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
