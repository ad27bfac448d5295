"""The error bound of the approximate scan: one per row, and a loose one that covers every row.

Standard: a row's bound holds except with a probability of the order of 1e-9.
The rounding error of a score is a sum of many independent, bounded, zero-mean
terms (each component's rounding), so it is close to normal; ``SIGMAS`` = 6
standard deviations leave a two-sided tail of 2e-9 per row. The model, and so
the standard, is the same for the int8 and the 4-bit kernels.

4-bit rows (``MatMulNBits``, one scale ``s_rb`` per block b of ``NBITS_BLOCK``
components of row r, code = rint(x / s) + 8): each component's error is
uniform in ``[-s_rb / 2, s_rb / 2]`` (variance ``s_rb^2 / 12``), so the score
error of row r has variance ``sum_b |q_b|^2 s_rb^2 / 12``, from that row's own
scales: a row of small components gets a small bound, and a row with an
outlying component (a coarse step) its own larger one, with no quantile
guess. The kernel also quantises the query to int8 per block (step
``max|q_b| / 127``); that error, times a row of norm 1, has variance at most
``max_b step_b^2 / 12`` (the blocks of a unit row share its norm); 1.1 covers
the product of both errors and the float16 rounding of the stored scales.

``loose`` is the largest row bound of the query (from each block's largest
scale): the shortlist filters every score with it first, then compares the few
rows that pass with their own bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

#: Standard deviations of the rounding error covered by a bound.
SIGMAS = 6.0
#: Components of a row sharing one 4-bit scale (MatMulNBits block_size).
NBITS_BLOCK = 32
# The query's int8 step and the product of errors (see module doc); also > the float16
# rounding of the stored scales (relative 2^-11, 2^-10 on their square).
_SLACK = 1.1


@dataclass(frozen=True, slots=True, eq=False)
class ScanBound:
    """``|approximate - exact| <= of(rows)`` for every row, and ``of(rows) <= loose``."""

    loose: float
    # 4-bit kernel: per-block |q_b|^2 / 12 (float32), each row's block scales, the query term.
    q2: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    scales: npt.NDArray[np.float16] | None = field(default=None, repr=False)
    qvar: float = 0.0

    @property
    def uniform(self) -> bool:
        """Every row has the same bound, ``loose`` (the int8 kernel)."""
        return self.scales is None

    def of(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """The bound of each row in ``rows``."""
        if self.scales is None or self.q2 is None:
            return np.full(rows.size, self.loose, np.float32)
        s = self.scales[rows].astype(np.float32)
        var = (s * s) @ self.q2 + np.float32(self.qvar)
        return np.asarray(np.float32(SIGMAS) * np.sqrt(var * np.float32(_SLACK)), dtype=np.float32)


def int8_bound(qscale: float) -> ScanBound:
    """int8 rows and query: each side rounds to ``1 / qscale`` (uniform error), unit vectors."""
    half = 0.5 / qscale
    return ScanBound(SIGMAS * float(np.sqrt(2.0 * half * half / 3.0)))


def nbits_bound(q: npt.NDArray[np.float32], scales: npt.NDArray[np.float16],
                max_scale: npt.NDArray[np.float32]) -> ScanBound:
    """The 4-bit bound of query ``q`` over rows with block ``scales`` (largest: ``max_scale``)."""
    qb = q.reshape(-1, NBITS_BLOCK).astype(np.float32)
    q2 = np.asarray(np.sum(qb * qb, axis=1) / np.float32(12.0), dtype=np.float32)
    step = float(np.abs(qb).max()) / 127.0
    qvar = step * step / 12.0
    top = max_scale.astype(np.float64)
    loose = SIGMAS * float(np.sqrt((float(top * top @ q2) + qvar) * _SLACK))
    # Float32 in of() may round a row's bound one ulp above the float64 ``loose``.
    return ScanBound(loose * (1.0 + 1e-5), q2, scales, qvar)
