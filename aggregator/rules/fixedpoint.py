"""Fixed-point encoding of contribution scores for the chain (6 decimals)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from backend.core.units import SCORE_ONE

__all__ = ["MAX_ROUND_SCORE", "SCORE_ONE", "from_fixed_point", "to_fixed_point"]

MAX_ROUND_SCORE = 10**12


def to_fixed_point(scores: np.ndarray) -> list[int]:
    """``round_half_even(score * 1e6)`` clipped to ``[0, MAX_ROUND_SCORE]``; NaN -> 0.

    The rounding applies to the float64 product (so e.g. 2.5e-6 * 1e6, which is
    2.4999999999999996 in binary, rounds to 2).  +inf clips to MAX_ROUND_SCORE, -inf to 0.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    scaled = np.rint(np.where(np.isnan(s), 0.0, s) * SCORE_ONE)
    clipped = np.clip(scaled, 0.0, float(MAX_ROUND_SCORE))
    return [int(v) for v in clipped.astype(np.int64)]


def from_fixed_point(ints: Iterable[int]) -> np.ndarray:
    """Float64 scores from fixed-point integers (exact for all values <= MAX_ROUND_SCORE)."""
    arr = np.array(list(ints), dtype=np.float64)
    return arr / SCORE_ONE
