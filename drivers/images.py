"""The one image module: safe decoding and normalisation to BGR uint8, with one set of limits.

Every path that turns encoded bytes or a pixel array into an image uses this
module: the camera drivers (frames, files shown to the simulated camera),
recognition (enrolment photos, frames, the offline evaluation tools) and the
simulation kit. The limits, in one place:

- :data:`MAX_ENCODED_BYTES` (64 MiB): the largest encoded image read at all.
  Enrolment photos have a tighter operator limit, ``[recognition]
  max_image_bytes`` (default 20 MB), passed as ``max_bytes``.
- :data:`MAX_PIXELS` (40 000 000, about 8K x 5K): the largest image or frame;
  bigger inputs are rejected, never resized. ``[recognition]
  max_image_pixels`` (default the same) may lower it for enrolment.
- :data:`MIN_SIDE` (16 px): the smallest side of an image or frame (no face
  can be found in less).

Contract of :func:`decode_image`: a hostile file never allocates unbounded
memory. The encoded size is capped first, then the pixel dimensions are read
from the header (PNG/JPEG/BMP parsed here, anything else probed with a
1/8-scale decode) and capped *before* the full decode. Every refusal is an
:class:`ImageError` whose ``problem`` is a stable code (the same strings as
recognition's reason codes) and whose message names no file and no pixel.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ..runtime.errors import FacegateError

Image = npt.NDArray[np.uint8]

MAX_ENCODED_BYTES = 64 * 1024 * 1024
"""Largest encoded image read (bytes)."""
MAX_PIXELS = 40_000_000
"""Largest image or frame (width x height); bigger inputs are rejected, never resized."""
MIN_SIDE = 16
"""Smallest side of an image or frame (px)."""


class ImageProblem(enum.StrEnum):
    """Why an image was refused (values equal recognition's ``Reason`` codes)."""

    EMPTY = "image_empty"
    CORRUPT = "image_corrupt"
    TOO_LARGE = "image_too_large"
    TOO_SMALL = "image_too_small"
    FORMAT = "image_format"


class ImageError(FacegateError, ValueError):
    """An image cannot be used; ``message`` is operator text without file names or pixels.

    Also a ``ValueError`` (bad input), which the simulation kit's ``show_face`` documents.
    """

    def __init__(self, problem: ImageProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


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


def _check_size(w: int, h: int, max_pixels: int, what: str) -> None:
    if w * h > max_pixels:
        raise ImageError(
            ImageProblem.TOO_LARGE, f"{what} is {w}x{h} pixels (limit {max_pixels} pixels)"
        )
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageError(
            ImageProblem.TOO_SMALL, f"{what} is {w}x{h} pixels (min {MIN_SIDE}x{MIN_SIDE})"
        )


def to_bgr8(
    array: npt.NDArray[Any],
    *,
    what: str = "image",
    floats: bool = False,
    copy: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> Image:
    """``array`` as a C-contiguous BGR uint8 HxWx3 image within the limits.

    Accepts grey (HxW or HxWx1), BGR and BGRA in uint8 or uint16 (scaled to 8
    bits) and, with ``floats``, float32/64 (0..1 or 0..255). ``copy`` makes the
    result a read-only array that never shares memory with ``array`` (camera
    frames); otherwise a usable uint8 BGR array is returned as it is. Checks
    run in the order type, shape, pixel type, size.
    """
    if not isinstance(array, np.ndarray):
        raise ImageError(ImageProblem.FORMAT, f"{what}: expected a numpy array, got {type(array).__name__}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError(
            ImageProblem.FORMAT, f"{what}: expected HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}"
        )
    if array.dtype == np.uint16:
        pixels: Image = (np.asarray(array, dtype=np.uint16) >> 8).astype(np.uint8)
    elif array.dtype == np.uint8:
        pixels = np.asarray(array, dtype=np.uint8)
    elif floats and array.dtype in (np.float32, np.float64):
        flt = np.nan_to_num(np.asarray(array, dtype=np.float32))
        scale = 255.0 if float(flt.max(initial=0.0)) <= 1.0 else 1.0
        pixels = np.clip(flt * scale, 0, 255).astype(np.uint8)
    else:
        raise ImageError(ImageProblem.FORMAT, f"{what}: unsupported pixel type {array.dtype}")
    h, w = pixels.shape[:2]
    _check_size(w, h, max_pixels, what)
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        out: Image = np.asarray(cv2.cvtColor(pixels.reshape(h, w), cv2.COLOR_GRAY2BGR), np.uint8)
    elif pixels.shape[2] == 4:
        out = np.asarray(cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR), np.uint8)
    elif copy and pixels is array:
        out = np.array(pixels, dtype=np.uint8, order="C", copy=True)  # never freeze the caller's array
    else:
        out = np.ascontiguousarray(pixels, dtype=np.uint8)
    if copy:
        out.setflags(write=False)
    return out


def decode_image(
    data: bytes, *, max_bytes: int = MAX_ENCODED_BYTES, max_pixels: int = MAX_PIXELS
) -> Image:
    """Decode ``data`` (JPEG, PNG, BMP, WebP, TIFF...) to BGR uint8 within the limits.

    ``max_bytes`` and ``max_pixels`` may only lower the module's limits.
    Blocking: run it off the event loop.
    """
    max_bytes, max_pixels = min(max_bytes, MAX_ENCODED_BYTES), min(max_pixels, MAX_PIXELS)
    if not data:
        raise ImageError(ImageProblem.EMPTY, "the image is empty")
    if len(data) > max_bytes:
        raise ImageError(
            ImageProblem.TOO_LARGE, f"encoded image is {len(data)} bytes (limit {max_bytes})"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    dims = header_dims(data)
    if dims is None:
        # Unknown header layout: a 1/8-scale decode bounds memory and yields the size.
        probe = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if probe is None:
            raise ImageError(ImageProblem.CORRUPT, "not a decodable image")
        dims = (probe.shape[1] * 8, probe.shape[0] * 8)
    w, h = dims
    if _truncated(data):
        raise ImageError(ImageProblem.CORRUPT, "the image data is truncated")
    _check_size(w, h, max_pixels, "image")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(ImageProblem.CORRUPT, "the image data is corrupt or truncated")
    return to_bgr8(img, floats=True, max_pixels=max_pixels)
