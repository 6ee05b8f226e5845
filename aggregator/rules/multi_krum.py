"""Multi-Krum (Blanchard et al. 2017, as in Flower): keep the updates closest to their neighbours.

A selection-only rule: it keeps a fixed number of updates whatever the data, so the ones it
leaves out are excluded from the aggregate without being flagged.
"""

from __future__ import annotations

import numpy as np

from aggregator.rules.kernels import as_matrix, pairwise_sq_distances
from aggregator.rules.outer import weighted_mean

__all__ = ["krum_scores", "multi_krum_aggregate", "multi_krum_mask", "multi_krum_select"]


def krum_scores(sq_dists: np.ndarray, num_malicious: int) -> np.ndarray:
    """Krum score of each row: sum of its ``n - f - 2`` smallest squared distances to others.

    As in Flower, the neighbour count is ``max(1, n - f - 2)`` (capped at ``n - 1``).
    """
    d2 = np.asarray(sq_dists, dtype=np.float64)
    if d2.ndim != 2 or d2.shape[0] != d2.shape[1]:
        raise ValueError(f"expected a square distance matrix, got shape {d2.shape}")
    if num_malicious < 0:
        raise ValueError("num_malicious must be >= 0")
    n = d2.shape[0]
    k = min(max(1, n - num_malicious - 2), n - 1)
    if k <= 0:
        return np.zeros(n, dtype=np.float64)
    others = d2.copy()
    np.fill_diagonal(others, np.inf)
    others.sort(axis=1)
    return others[:, :k].sum(axis=1)


def _select_from_scores(scores: np.ndarray, to_keep: int) -> np.ndarray:
    if to_keep < 0:
        raise ValueError("to_keep must be >= 0")
    n = scores.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if to_keep == 0:
        return np.array([int(np.argmin(scores))], dtype=np.int64)
    order = np.argsort(scores, kind="stable")
    return np.sort(order[: min(to_keep, n)]).astype(np.int64)


def multi_krum_select(x: np.ndarray, num_malicious: int, to_keep: int) -> np.ndarray:
    """Indices (ascending) chosen by Multi-Krum, matching Flower's ``aggregate_krum``.

    ``to_keep > 0`` keeps the ``to_keep`` lowest Krum scores (ties by index, stable sort);
    ``to_keep == 0`` is plain Krum (a single argmin).
    """
    return _select_from_scores(krum_scores(pairwise_sq_distances(x), num_malicious), to_keep)


def multi_krum_aggregate(
    x: np.ndarray, num_malicious: int, to_keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-Krum selection plus the float64 mean of the selected rows (no n x d temporaries)."""
    a = as_matrix(x)
    idx = multi_krum_select(a, num_malicious, to_keep)
    w = np.zeros(a.shape[0], dtype=np.float64)
    w[idx] = 1.0
    return idx, weighted_mean(a, w)


def multi_krum_mask(a: np.ndarray, num_malicious: int, to_keep: int) -> np.ndarray:
    """Rows Multi-Krum leaves out (``to_keep == 0``: keep ``n - num_malicious``); n < 3: none."""
    n = a.shape[0]
    if n < 3:
        return np.zeros(n, dtype=bool)
    keep_count = to_keep if to_keep > 0 else max(1, n - num_malicious)
    keep = multi_krum_select(a, num_malicious, min(keep_count, n))
    mask = np.ones(n, dtype=bool)
    mask[keep] = False
    return mask
