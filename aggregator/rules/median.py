"""The coordinate-wise median rule: flag updates far from the coordinate median."""

from __future__ import annotations

import numpy as np

from aggregator.rules.kernels import as_matrix, column_blocks, far_from

__all__ = ["coordinate_median", "median_mask"]


def coordinate_median(x: np.ndarray) -> np.ndarray:
    """Coordinate-wise median in float64 (computed per column block)."""
    a = as_matrix(x)
    n, d = a.shape
    if n == 0:
        raise ValueError("coordinate_median of zero updates")
    out = np.empty(d, dtype=np.float64)
    for blk in column_blocks(n, d):
        out[blk] = np.median(a[:, blk].astype(np.float64), axis=0)
    return out


def median_mask(a: np.ndarray, dist_ratio: float) -> np.ndarray:
    """Rows farther than ``dist_ratio`` x the median distance from the coordinate median.

    With three updates the median distance is one honest update's own distance, so the farther
    of two honest updates can exceed the ratio: the rule needs four or more (else flags none).
    """
    if a.shape[0] < 4:
        return np.zeros(a.shape[0], dtype=bool)
    return far_from(a, coordinate_median(a), dist_ratio)
