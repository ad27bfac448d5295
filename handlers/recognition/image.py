"""Recognition's view of :mod:`facegate.drivers.images` (the one image module).

Decoding, normalisation and their limits live there; this module only turns
an :class:`~facegate.drivers.images.ImageError` into recognition's
:class:`ImageRejected` (its ``problem`` values are the ``Reason`` codes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ...drivers import images
from .errors import ImageRejected
from .reasons import Reason


def _rejected(exc: images.ImageError) -> ImageRejected:
    return ImageRejected(Reason(exc.problem.value), exc.message)


def to_bgr8(img: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Normalise grey / BGRA / 16-bit / float images to contiguous BGR uint8 (no copy if usable)."""
    try:
        return images.to_bgr8(img, floats=True)
    except images.ImageError as exc:
        raise _rejected(exc) from None


def decode_image(
    data: bytes, *, max_bytes: int = images.MAX_ENCODED_BYTES, max_pixels: int = images.MAX_PIXELS
) -> npt.NDArray[np.uint8]:
    """Decode ``data`` within the limits (see :func:`facegate.drivers.images.decode_image`).

    Blocking: run off the event loop.
    """
    try:
        return images.decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except images.ImageError as exc:
        raise _rejected(exc) from None
