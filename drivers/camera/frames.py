"""Frame normalisation, image decoding and IR pairing shared by every camera driver.

Every frame a camera publishes is a read-only C-contiguous BGR ``uint8``
``H x W x 3`` array: consumers may keep a reference without copying, and a
bug that writes into a shared frame fails loudly instead of corrupting
another consumer's view.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .errors import CameraSourceError, FrameFormatError

Image = npt.NDArray[np.uint8]

MAX_FRAME_PIXELS = 40_000_000
"""Largest frame accepted (about 8K x 5K): bigger inputs are rejected, never resized."""
MAX_FILE_BYTES = 64 * 1024 * 1024
"""Largest image file :func:`decode_image_file` reads."""
_MIN_SIDE = 8


def to_bgr8(array: npt.NDArray[Any], *, what: str = "frame") -> Image:
    """Return ``array`` as a read-only contiguous BGR uint8 HxWx3 image.

    Accepts grey (HxW or HxWx1), BGR and BGRA, in uint8 or uint16 (scaled to
    8 bits). Anything else raises :class:`FrameFormatError` naming the problem
    (never the pixel data). The result never shares memory with ``array``.
    """
    if not isinstance(array, np.ndarray):
        raise FrameFormatError(f"{what}: expected a numpy array, got {type(array).__name__}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise FrameFormatError(f"{what}: expected HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}")
    h, w = array.shape[:2]
    if h < _MIN_SIDE or w < _MIN_SIDE:
        raise FrameFormatError(f"{what}: {w}x{h} is too small (min {_MIN_SIDE}x{_MIN_SIDE})")
    if h * w > MAX_FRAME_PIXELS:
        raise FrameFormatError(f"{what}: {w}x{h} exceeds {MAX_FRAME_PIXELS} pixels")
    if array.dtype == np.uint16:
        pixels: Image = (array.astype(np.uint16) >> 8).astype(np.uint8)
    elif array.dtype == np.uint8:
        pixels = array.astype(np.uint8, copy=False)
    else:
        raise FrameFormatError(f"{what}: expected uint8 or uint16 pixels, got {array.dtype}")
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        out: Image = np.asarray(cv2.cvtColor(pixels.reshape(h, w), cv2.COLOR_GRAY2BGR), np.uint8)
    elif pixels.shape[2] == 4:
        out = np.asarray(cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR), np.uint8)
    else:
        out = np.array(pixels, dtype=np.uint8, order="C", copy=True)  # never freeze the caller's array
    out.setflags(write=False)
    return out


def freeze(image: Image) -> Image:
    """Mark a freshly produced frame read-only (no copy) and return it."""
    image.setflags(write=False)
    return image


def fit_within(image: Image, width: int, height: int) -> Image:
    """Downscale ``image`` (keeping its aspect) so it fits in ``width x height``; never upscale."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized: Image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
    return freeze(resized)


def letterbox(image: Image, width: int, height: int) -> Image:
    """Scale ``image`` to fit ``width x height`` (either way) and centre it on a grey canvas.

    This is how a still photo "appears" to a camera of the configured resolution.
    """
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    canvas = np.full((height, width, 3), 114, dtype=np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    canvas[y : y + nh, x : x + nw] = resized
    return freeze(canvas)


def decode_image_file(path: Path) -> Image:
    """Read and decode one image file (blocking: call it off the event loop).

    Raises :class:`CameraSourceError` for a missing, empty, oversized or
    undecodable file, and :class:`FrameFormatError` for unusable pixels.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            raise CameraSourceError("image file is empty", path=path)
        if size > MAX_FILE_BYTES:
            raise CameraSourceError(f"image file of {size} bytes exceeds {MAX_FILE_BYTES}", path=path)
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise CameraSourceError(f"cannot read image file ({exc.strerror})", path=path) from None
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise CameraSourceError("not a decodable image", path=path)
    return to_bgr8(decoded, what="image file")


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """A frame with its capture time (``monotonic`` from the injected clock) and sequence number."""

    image: Image
    seq: int
    monotonic: float
    wall: float


class IrPairer:
    """Pairs colour frames with the IR frame nearest in capture time, within a tolerance.

    IR frames are kept in a short ring buffer. A colour frame takes the nearest
    one available *now* (waiting for a possibly nearer later frame would add a
    frame of latency to every decision). Thread-safe: IR frames may be added
    from a capture thread.
    """

    def __init__(self, tolerance_s: float, *, depth: int = 8) -> None:
        self.tolerance_s = tolerance_s
        self._frames: collections.deque[CapturedFrame] = collections.deque(maxlen=depth)
        self._lock = threading.Lock()
        self.paired = 0
        self.unpaired = 0

    def add(self, frame: CapturedFrame) -> None:
        """Remember an IR frame."""
        with self._lock:
            self._frames.append(frame)

    def match(self, monotonic: float) -> Image | None:
        """The IR image captured nearest to ``monotonic`` within tolerance, else None."""
        with self._lock:
            best = min(self._frames, key=lambda f: abs(f.monotonic - monotonic), default=None)
        if best is None or abs(best.monotonic - monotonic) > self.tolerance_s:
            self.unpaired += 1
            return None
        self.paired += 1
        return best.image

    def clear(self) -> None:
        """Forget buffered IR frames (the IR camera restarted)."""
        with self._lock:
            self._frames.clear()
