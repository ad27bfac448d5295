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

from .. import images
from .errors import CameraSourceError, FrameFormatError

Image = npt.NDArray[np.uint8]

def to_bgr8(array: npt.NDArray[Any], *, what: str = "frame") -> Image:
    """Return ``array`` as a read-only contiguous BGR uint8 HxWx3 image.

    Accepts grey (HxW or HxWx1), BGR and BGRA, in uint8 or uint16 (scaled to
    8 bits), within :mod:`facegate.drivers.images`' limits. Anything else
    raises :class:`FrameFormatError` naming the problem (never the pixel
    data). The result never shares memory with ``array``.
    """
    try:
        return images.to_bgr8(array, what=what, copy=True)
    except images.ImageError as exc:
        raise FrameFormatError(exc.message) from None


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
        if size > images.MAX_ENCODED_BYTES:
            limit = images.MAX_ENCODED_BYTES
            raise CameraSourceError(f"image file of {size} bytes exceeds {limit}", path=path)
        data = path.read_bytes()
    except OSError as exc:
        raise CameraSourceError(f"cannot read image file ({exc.strerror})", path=path) from None
    try:
        decoded = images.decode_image(data)
    except images.ImageError as exc:
        if exc.problem in (images.ImageProblem.EMPTY, images.ImageProblem.CORRUPT):
            raise CameraSourceError(exc.message, path=path) from None
        raise FrameFormatError(f"image file: {exc.message}") from None
    return freeze(decoded)


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
