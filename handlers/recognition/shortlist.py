"""Which rows the matcher re-ranks exactly, from the approximate scan's scores and error bound.

The scan gives every row an approximate cosine ``y`` with ``|y - exact| <=
bound`` (scan.py). Blocks of ``BLOCK`` rows are walked best block maximum
first; the owner of each block's best row is noted until ``k`` distinct
subjects are seen, at the block maximum ``m_k``. At least ``k`` subjects then
have an approximate score ``>= m_k``, so the exact k-th best subject scores
at least ``m_k - bound``, and every row of an exact top-``k`` subject that
could be its best has ``y >= m_k - 2 * bound``. Those rows are the shortlist.
No fixed candidate count: a subject owning many templates (20 by default)
cannot crowd out the runner-up, which was the issue 16 bug.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BLOCK = 256
#: Blocks whose maxima are inspected first; more only when one subject owns most of them.
BLOCKS_SCANNED = 64
NO_SUBJECT = -1


def round_rows(n: int) -> int:
    """``n`` rounded up to whole blocks (at least one)."""
    return max(BLOCK, -(-n // BLOCK) * BLOCK)


def _kth_subject_floor(bm: npt.NDArray[np.float32], y2: npt.NDArray[np.float32],
                       row_sid: npt.NDArray[np.int32], k: int) -> float:
    """The block maximum at which the k-th distinct subject appears (-inf: fewer than k)."""
    nb = bm.size
    scanned = min(BLOCKS_SCANNED, nb)
    while True:
        top = np.argpartition(bm, -scanned)[-scanned:]
        top = top[np.argsort(-bm[top], kind="stable")]
        owners = row_sid[top * BLOCK + y2[top].argmax(axis=1)]
        seen: set[int] = set()
        for i, owner in enumerate(owners.tolist()):
            if owner != NO_SUBJECT:
                seen.add(owner)
                if len(seen) >= k:
                    return float(bm[top[i]])
        if scanned == nb:
            return -np.inf
        scanned = min(nb, scanned * 4)


def shortlist(y: npt.NDArray[np.float32], bound: float, row_sid: npt.NDArray[np.int32],
              n: int, k: int) -> npt.NDArray[np.intp]:
    """Rows (< n) to re-rank exactly for the best ``k`` subjects (see module doc).

    ``y`` holds ``round_rows(n)`` approximate scores; rows past ``n`` are ignored.
    """
    y[n:] = -np.inf
    y2 = y.reshape(-1, BLOCK)
    bm = y2.max(axis=1)
    floor = _kth_subject_floor(bm, y2, row_sid, k) - 2.0 * bound
    blocks = np.flatnonzero(bm >= floor)
    rows = (blocks[:, None] * BLOCK + np.arange(BLOCK)).ravel()
    rows = rows[rows < n]
    return np.asarray(rows[y[rows] >= floor], dtype=np.intp)
