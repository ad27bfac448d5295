"""Five-point face alignment to the standard ArcFace 112x112 template.

The landmark order is YuNet's: the eye, then the other eye, nose tip and the
two mouth corners, each pair left-to-right as seen in the image, which is the
order of the template below. The transform is the least-squares similarity
(rotation, uniform scale, translation) of Umeyama (1991).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
SIZE = 112


def similarity_transform(
    src: npt.NDArray[np.float32], dst: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """2x3 matrix M minimising ||M [src;1] - dst|| over similarity transforms."""
    s = src.astype(np.float64)
    d = dst.astype(np.float64)
    mu_s, mu_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mu_s, d - mu_d
    cov = dc.T @ sc / len(s)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    var_s = (sc**2).sum() / len(s)
    scale = float(np.trace(np.diag(sig) @ sign) / var_s) if var_s > 0 else 1.0
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align_face(
    bgr: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.float32]
) -> npt.NDArray[np.uint8]:
    """The 112x112 BGR crop whose landmarks land on :data:`ARCFACE_TEMPLATE`."""
    m = similarity_transform(landmarks.reshape(5, 2), ARCFACE_TEMPLATE)
    out = cv2.warpAffine(bgr, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, dtype=np.uint8)
