"""Copy, replay and free-rider detection over one round of pseudo-gradients.

Reason codes (stable, used on chain): 0 clean, 9 copy of another update this round,
10 replay of an earlier round's update, 11 near-zero (free rider).  When several apply, the
precedence is 11 > 10 > 9.

Limitation: within a round we cannot know who computed an update first.  The first row in
the given order is treated as the original and only later rows get reason 9, so the caller
must order rows meaningfully (commit time, then address).  Copies masked by enough added
noise (cosine below ``scale_cos``) are not detected here; contribution scoring then has to
price them.
"""

from __future__ import annotations

import numpy as np

from aggregator.rules.kernels import gram64, row_sq_norms
from backend.core.errors import Reason

__all__ = ["REASON_CLEAN", "REASON_COPY", "REASON_REPLAY", "REASON_ZERO", "detect_copies"]

# The codes come from the one table (backend.core.errors.Reason), as plain ints for numpy.
REASON_CLEAN = int(Reason.ACCEPTED)
REASON_COPY = int(Reason.COPY)
REASON_REPLAY = int(Reason.REPLAY)
REASON_ZERO = int(Reason.NEAR_ZERO)


def _matches(
    gram: np.ndarray,
    sq_a: np.ndarray,
    sq_b: np.ndarray,
    rel_tol: float,
    scale_cos: float,
) -> np.ndarray:
    """Pairwise ``a_i ~ b_j``: ``|a_i - b_j| <= rel_tol |b_j|`` or ``cos(a_i, b_j) >= scale_cos``.

    Pairs where either vector is zero never match (a zero row is a free rider, not a copy).
    """
    d2 = sq_a[:, None] + sq_b[None, :] - 2.0 * gram
    np.maximum(d2, 0.0, out=d2)
    close = d2 <= (rel_tol * rel_tol) * sq_b[None, :]
    denom = np.sqrt(sq_a)[:, None] * np.sqrt(sq_b)[None, :]
    valid = denom > 0.0
    cos = np.zeros_like(gram)
    np.divide(gram, denom, out=cos, where=valid)
    return valid & (close | (cos >= scale_cos))


def detect_copies(
    x: np.ndarray,
    previous: np.ndarray | None = None,
    *,
    rel_tol: float = 1e-3,
    scale_cos: float = 0.9999,
    zero_ratio: float = 1e-3,
) -> np.ndarray:
    """Reason code per row (int64): 11 near-zero, 10 replay of ``previous``, 9 copy, 0 clean.

    * 11: norm exactly 0, or ``<= zero_ratio`` x the median norm of the round.
    * 9: (nearly) identical to an *earlier* row (``|x_i - x_j| <= rel_tol |x_j|``) or a
      positively scaled copy of one (cosine ``>= scale_cos``); the earlier row stays clean.
    * 10: the same test against any row of ``previous`` (m x d updates of earlier rounds).

    Float64 Gram matrices (built block by block) replace any loop over pairs.
    """
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array of updates (n x d), got shape {a.shape}")
    n = a.shape[0]
    reasons = np.zeros(n, dtype=np.int64)
    if n == 0:
        return reasons
    g = gram64(a)
    sq = np.maximum(np.diag(g).copy(), 0.0)
    norms = np.sqrt(sq)
    med = float(np.median(norms))
    zero = (norms == 0.0) | (norms <= zero_ratio * med)

    # copies of an earlier row in this round: strict lower triangle (j < i)
    m = _matches(g, sq, sq, rel_tol, scale_cos)
    m &= np.tri(n, n, k=-1, dtype=bool)
    m[:, zero] = False
    copy = m.any(axis=1)

    replay = np.zeros(n, dtype=bool)
    if previous is not None:
        p = np.asarray(previous)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2 or p.shape[1] != a.shape[1]:
            raise ValueError(f"previous must be m x {a.shape[1]}, got shape {p.shape}")
        if p.shape[0] > 0:
            gp = gram64(a, p)
            sq_p = row_sq_norms(p)
            replay = _matches(gp, sq, sq_p, rel_tol, scale_cos).any(axis=1)

    reasons[copy] = REASON_COPY
    reasons[replay] = REASON_REPLAY
    reasons[zero] = REASON_ZERO
    return reasons
