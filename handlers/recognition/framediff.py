"""Skipping work that cannot change the decision: unchanged frames, decided tracks.

**Unchanged frame.** :class:`FrameDiff` keeps a 160x120 grey thumbnail of the
last frame the pipeline analysed. A new frame whose mean absolute difference to
it is below ``threshold`` grey levels over the whole thumbnail *and* over the
last target face's box is not analysed again: the previous analysis is reused.
Reusing it can only make the decision's evidence look stiller (identical crops
and landmarks), so the stillness check can turn a grant into a denial, never a
denial into a grant; the threshold (0.15 by default) is kept well under the
stillness check's ``min_pixel_change`` (0.4 on the aligned crop) so a live,
moving face is never reused. A frozen replay is reused frame after frame and
is denied as ``liveness_still`` exactly as before, at a fraction of the cost.

**Decided track.** While the track a face belongs to is decided and in its
cool-down, :meth:`DecisionEngine.observe` ignores the frame's analysis; the
pipeline is told so after detection and selection (``skip_if``) and stops
there (no refinement, quality, liveness, alignment, embedding or search).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

THUMB = (160, 120)


class FrameDiff:
    """Cheap "did this frame change?" against the last analysed frame (one camera stream)."""

    def __init__(self, threshold: float = 0.15) -> None:
        self.threshold = threshold
        self._last: npt.NDArray[np.int16] | None = None
        self._scale: tuple[float, float] = (1.0, 1.0)

    @staticmethod
    def _thumb(image: npt.NDArray[np.generic]) -> npt.NDArray[np.int16] | None:
        if image.dtype != np.uint8 or not (image.ndim == 2 or image.shape[2] == 3):
            return None  # unusual pixel formats are always analysed
        u8 = np.asarray(image, np.uint8)
        grey = u8 if u8.ndim == 2 else np.asarray(cv2.cvtColor(u8, cv2.COLOR_BGR2GRAY), np.uint8)
        return np.asarray(cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA), np.int16)

    def unchanged(
        self, image: npt.NDArray[np.generic], box: tuple[float, float, float, float] | None
    ) -> bool:
        """True when ``image`` matches the last remembered frame (whole and inside ``box``)."""
        if self.threshold <= 0 or self._last is None:
            return False
        t = self._thumb(image)
        if t is None or t.shape != self._last.shape:
            return False
        diff = np.abs(t - self._last)
        if float(diff.mean()) >= self.threshold:
            return False
        if box is not None:
            sx, sy = self._scale
            x0, y0 = max(0, int(box[0] * sx)), max(0, int(box[1] * sy))
            x1, y1 = int((box[0] + box[2]) * sx) + 1, int((box[1] + box[3]) * sy) + 1
            region = diff[y0:y1, x0:x1]
            if region.size and float(region.mean()) >= self.threshold:
                return False
        return True

    def remember(self, image: npt.NDArray[np.generic]) -> None:
        """Keep ``image`` as the reference for the next :meth:`unchanged`."""
        self._last = self._thumb(image) if self.threshold > 0 else None
        h, w = image.shape[:2]
        self._scale = (THUMB[0] / max(w, 1), THUMB[1] / max(h, 1))
