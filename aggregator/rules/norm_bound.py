"""The norm-bound rule: flag updates much longer than the median update."""

from __future__ import annotations

import numpy as np

from aggregator.rules.kernels import row_norms

__all__ = ["norm_bound_flags"]


def norm_bound_flags(x: np.ndarray, max_ratio: float) -> np.ndarray:
    """Flag rows whose L2 norm exceeds ``max_ratio`` x the median row norm.

    A zero median norm gives no scale, so nothing is flagged then.
    """
    norms = row_norms(x)
    if norms.size == 0:
        return np.zeros(0, dtype=bool)
    med = float(np.median(norms))
    if not med > 0.0:
        return np.zeros(norms.shape[0], dtype=bool)
    return norms > max_ratio * med
