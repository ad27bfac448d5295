"""Which rows the matcher re-ranks exactly, from the approximate scan's scores and error bound.

The scan gives every row r an approximate cosine ``y_r`` with ``|y_r - exact_r|
<= b_r``, its own bound, and ``b_r <= loose`` for every row (scan_bound.py).
Blocks of ``BLOCK`` rows are walked best block maximum first; the best row of
each block is noted until ``k`` distinct subjects are seen. Those k rows r_j
have ``exact >= y_j - b_j``, so the exact k-th best subject scores at least
``floor = min_j (y_j - b_j)``, and a row of an exact top-``k`` subject that
could be its best has ``exact_r >= floor``, hence ``y_r + b_r >= floor``. Rows
are selected by that test directly, first with ``loose`` for every row
(``y_r >= floor - loose``, one compare per score or per row of a passing
block), then with each passing row's own bound. Those rows are the shortlist.
No fixed candidate count: a subject owning many templates (20 by default)
cannot crowd out the runner-up, which was the issue 16 bug.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .scan_bound import ScanBound

BLOCK = 256
#: Blocks whose maxima are inspected first; more only when one subject owns most of them.
BLOCKS_SCANNED = 64
NO_SUBJECT = -1


def round_rows(n: int) -> int:
    """``n`` rounded up to whole blocks (at least one)."""
    return max(BLOCK, -(-n // BLOCK) * BLOCK)


def _first_rows_of_k_subjects(bm: npt.NDArray[np.float32], y2: npt.NDArray[np.float32],
                              row_sid: npt.NDArray[np.int32], k: int) -> npt.NDArray[np.intp]:
    """The best rows of the best blocks, one per subject, until ``k`` subjects (fewer: all there are)."""
    nb = bm.size
    scanned = min(BLOCKS_SCANNED, nb)
    while True:
        top = np.argpartition(bm, -scanned)[-scanned:]
        top = top[np.argsort(-bm[top], kind="stable")]
        best = top * BLOCK + y2[top].argmax(axis=1)
        seen: set[int] = set()
        rows: list[int] = []
        for row, owner in zip(best.tolist(), row_sid[best].tolist(), strict=True):
            if owner != NO_SUBJECT and owner not in seen:
                seen.add(owner)
                rows.append(row)
                if len(rows) >= k:
                    return np.asarray(rows, np.intp)
        if scanned == nb:
            return np.asarray(rows, np.intp)
        scanned = min(nb, scanned * 4)


def shortlist(y: npt.NDArray[np.float32], bound: ScanBound, row_sid: npt.NDArray[np.int32],
              n: int, k: int) -> npt.NDArray[np.intp]:
    """Rows (< n) to re-rank exactly for the best ``k`` subjects (see module doc), ascending.

    ``y`` holds ``round_rows(n)`` approximate scores; rows past ``n`` are ignored.
    """
    y[n:] = -np.inf
    y2 = y.reshape(-1, BLOCK)
    bm = y2.max(axis=1)
    firsts = _first_rows_of_k_subjects(bm, y2, row_sid, k)
    if firsts.size < k:  # fewer than k subjects: every row
        return np.arange(n, dtype=np.intp)
    floor = float(np.min(y[firsts] - bound.of(firsts)))
    loose = floor - bound.loose
    blocks = np.flatnonzero(bm >= loose)
    if blocks.size * 8 >= bm.size:
        # A wide bound passes many blocks: one compare over every score is cheaper than
        # gathering those blocks (rows past n are -inf and never pass).
        rows = np.flatnonzero(y >= loose)
    else:  # few blocks pass: compare only their rows (a block's rows are contiguous in y2)
        hit = np.nonzero(y2[blocks] >= loose)
        rows = blocks[hit[0]] * BLOCK + hit[1]
    if bound.uniform:
        return np.asarray(rows, dtype=np.intp)
    return np.asarray(rows[y[rows] + bound.of(rows) >= floor], dtype=np.intp)
