"""The trimmed-mean rule: flag updates far from the coordinate-wise trimmed mean."""

from __future__ import annotations

import math

import numpy as np

from aggregator.rules.kernels import as_matrix, column_blocks, far_from

__all__ = ["trimmed_mean", "trimmed_mean_mask"]


def _trim_count(n: int, beta: float) -> int:
    if not 0.0 <= beta < 0.5:
        raise ValueError("beta must be in [0, 0.5)")
    # the epsilon protects products like 0.29 * 100 = 28.999999999999996
    return min(math.floor(beta * n + 1e-9), (n - 1) // 2)


def trimmed_mean(x: np.ndarray, beta: float) -> np.ndarray:
    """Coordinate-wise mean after trimming ``floor(beta * n)`` values from each end (float64)."""
    a = as_matrix(x)
    n, d = a.shape
    if n == 0:
        raise ValueError("trimmed_mean of zero updates")
    k = _trim_count(n, beta)
    out = np.empty(d, dtype=np.float64)
    for blk in column_blocks(n, d):
        b = a[:, blk].astype(np.float64)
        b.sort(axis=0)
        out[blk] = b[k : n - k].mean(axis=0)
    return out


def trimmed_mean_mask(a: np.ndarray, beta: float, dist_ratio: float) -> np.ndarray:
    """Rows farther than ``dist_ratio`` x the median distance from the trimmed mean (n >= 4).

    Needs four or more updates for the same reason as :func:`aggregator.rules.median.median_mask`.
    """
    if a.shape[0] < 4:
        return np.zeros(a.shape[0], dtype=bool)
    return far_from(a, trimmed_mean(a, beta), dist_ratio)
