"""Safe image decoding and normalisation to BGR uint8.

Contract: :func:`decode_image` never lets a hostile file allocate unbounded
memory: the encoded size is capped first, then the pixel dimensions are read
from the header (PNG/JPEG/BMP/WebP parsed here, anything else probed with a
1/8-scale decode) and capped *before* the full decode. Any failure is an
:class:`ImageRejected` with a reason code. :func:`to_bgr8` turns grey, BGRA,
16-bit and float images into BGR uint8.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import numpy.typing as npt

from .errors import ImageRejected
from .reasons import Reason

MIN_SIDE = 16


def _png_dims(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_dims(data: bytes) -> tuple[int, int] | None:
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in _SOF and i + 9 <= n:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + seg
    return None


def _bmp_dims(data: bytes) -> tuple[int, int] | None:
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(int(w)), abs(int(h))
    return None


def header_dims(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file header, or None when the format is not parsed here."""
    for parse in (_png_dims, _jpeg_dims, _bmp_dims):
        dims = parse(data)
        if dims is not None:
            return dims
    return None


def _truncated(data: bytes) -> bool:
    # libjpeg fills a cut-off JPEG with grey and reports success; catch it by its end marker.
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in data[-4096:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-64:]
    return False


def to_bgr8(img: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """Normalise grey / BGRA / 16-bit / float images to contiguous BGR uint8."""
    arr: npt.NDArray[np.uint8]
    if img.dtype == np.uint16:
        arr = (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        flt = np.nan_to_num(np.asarray(img, dtype=np.float32))
        scale = 255.0 if float(flt.max(initial=0.0)) <= 1.0 else 1.0
        arr = np.clip(flt * scale, 0, 255).astype(np.uint8)
    elif img.dtype == np.uint8:
        arr = np.asarray(img, dtype=np.uint8)
    else:
        raise ImageRejected(Reason.IMAGE_FORMAT, f"unsupported pixel type {img.dtype}")
    if arr.ndim == 2:
        out = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        out = cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        out = cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        out = arr
    else:
        raise ImageRejected(Reason.IMAGE_FORMAT, f"unsupported image shape {img.shape}")
    return np.ascontiguousarray(out, dtype=np.uint8)


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> npt.NDArray[np.uint8]:
    """Decode ``data`` (JPEG, PNG, BMP, WebP, TIFF...) to BGR uint8 within the caps.

    Blocking: run off the event loop.
    """
    if not data:
        raise ImageRejected(Reason.IMAGE_EMPTY, "the image is empty")
    if len(data) > max_bytes:
        raise ImageRejected(
            Reason.IMAGE_TOO_LARGE, f"encoded image is {len(data)} bytes (limit {max_bytes})"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    dims = header_dims(data)
    if dims is None:
        # Unknown header layout: a 1/8-scale decode bounds memory and yields the size.
        probe = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if probe is None:
            raise ImageRejected(Reason.IMAGE_CORRUPT, "not a decodable image")
        dims = (probe.shape[1] * 8, probe.shape[0] * 8)
    w, h = dims
    if _truncated(data):
        raise ImageRejected(Reason.IMAGE_CORRUPT, "the image data is truncated")
    if w * h > max_pixels:
        raise ImageRejected(
            Reason.IMAGE_TOO_LARGE, f"image is {w}x{h} pixels (limit {max_pixels} pixels)"
        )
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageRejected(Reason.IMAGE_TOO_SMALL, f"image is {w}x{h} pixels")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageRejected(Reason.IMAGE_CORRUPT, "the image data is corrupt or truncated")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageRejected(Reason.IMAGE_TOO_LARGE, "decoded image exceeds the pixel limit")
    return to_bgr8(img)
