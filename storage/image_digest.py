"""The keyed image digest of enrolment images (what it covers: :mod:`facegate.storage.image_sources`).

``HMAC-SHA256(key, "facegate/enrol-image/v1" || 0x00 || height, width, channels
|| pixels)`` over the decoded BGR uint8 pixels, under the device image-digest
key: 32 random bytes sealed under the KEK in the key vault like the other device
secrets (:mod:`facegate.storage.secrets`), re-wrapped by a KEK rotation and
shredded with the vault by teardown. The key is held in memory only.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError
from .image_sources import DIGEST_BYTES
from .secrets import device_secret

if TYPE_CHECKING:
    from .store import Store

IMAGE_DIGEST_SECRET = "image-digest"  # noqa: S105  # a vault entry name, not a secret
"""Name of the device secret (``vault.key_meta``: ``policy.secret.image-digest``)."""

_LABEL = b"facegate/enrol-image/v1\x00"


class ImageDigester:
    """Computes keyed digests of decoded images. Holds the key in memory only; never printed."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != DIGEST_BYTES:
            raise InvalidInputError("the image digest key must be 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "ImageDigester(<key hidden>)"

    def of_pixels(self, pixels: Any) -> bytes:
        """The keyed digest of a decoded image (uint8, (h, w) or (h, w, c)). Blocking: large images."""
        arr = np.ascontiguousarray(pixels)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or arr.size == 0:
            raise InvalidInputError("an image digest needs a non-empty uint8 (h, w[, c]) array")
        h, w = arr.shape[:2]
        c = arr.shape[2] if arr.ndim == 3 else 1
        mac = hmac.new(self._key, _LABEL, hashlib.sha256)
        mac.update(struct.pack(">III", h, w, c))
        mac.update(arr.tobytes())  # one copy of the pixels; bounded by recognition.max_image_pixels
        return mac.digest()


async def image_digester(store: Store) -> ImageDigester:
    """The device's digester (its key is created in the vault on first use)."""
    return ImageDigester(await device_secret(store, IMAGE_DIGEST_SECRET))
