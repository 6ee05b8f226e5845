"""The cosine rules: flag updates pointing away from a robust centre.

``cosine`` compares each update with the coordinate median of the others (or a given centre);
``cosine_norm`` applies the norm bound first and the cosine test among the survivors only.
"""

from __future__ import annotations

import numpy as np

from aggregator.rules.kernels import as_matrix, column_blocks, gram64, row_norms
from aggregator.rules.norm_bound import norm_bound_flags

__all__ = ["cosine_mask", "cosine_norm_mask", "cosine_to_centre_flags", "loo_median_cosines"]


def loo_median_cosines(x: np.ndarray) -> np.ndarray:
    """Cosine of each row to the coordinate median of the *other* rows (n >= 2), float64.

    Excluding the row itself removes its self-influence on the centre: with n ~ 10 a
    random vector of honest norm has cosine ~0.1 to a median that includes it.  One sort per
    column gives all n leave-one-out medians (each is one of at most three order-statistic
    combinations, chosen by the removed element's rank).  A row whose leave-one-out centre
    is zero gets cosine 1 (no direction: never flagged); a zero row gets cosine 0.
    """
    a = as_matrix(x)
    n, d = a.shape
    if n < 2:
        raise ValueError("loo_median_cosines needs at least two rows")
    m = n - 1
    ranks = np.arange(n)[:, None]
    dots = np.zeros(n, dtype=np.float64)
    c_sq = np.zeros(n, dtype=np.float64)
    for blk in column_blocks(4 * n, d):
        bt = a[:, blk].T.astype(np.float64)  # w x n, rows contiguous for the sort
        order = np.argsort(bt, axis=1, kind="stable")
        s = np.take_along_axis(bt, order, axis=1).T  # n x w, sorted down each column
        if m % 2 == 1:
            h = (m - 1) // 2
            loo = np.where(ranks > h, s[h], s[h + 1])
        else:
            h = m // 2
            loo = np.where(  # h + 1 <= m < n always holds here
                ranks > h,
                (s[h - 1] + s[h]) / 2.0,
                np.where(ranks == h, (s[h - 1] + s[h + 1]) / 2.0, (s[h] + s[h + 1]) / 2.0),
            )
        # loo[k, j]: median of column j without its rank-k element, which is row order[j, k]
        contrib = np.empty_like(s)
        np.put_along_axis(contrib.T, order, (s * loo).T, axis=1)
        dots += contrib.sum(axis=1)
        np.put_along_axis(contrib.T, order, (loo * loo).T, axis=1)
        c_sq += contrib.sum(axis=1)
    norms = row_norms(a)
    c_norm = np.sqrt(c_sq)
    cos = np.ones(n, dtype=np.float64)
    has_dir = c_norm > 0.0
    cos[has_dir & (norms == 0.0)] = 0.0
    ok = has_dir & (norms > 0.0)
    cos[ok] = dots[ok] / (norms[ok] * c_norm[ok])
    return cos


def cosine_to_centre_flags(
    x: np.ndarray, min_cosine: float, centre: np.ndarray | None = None
) -> np.ndarray:
    """Flag rows whose cosine to a robust centre is < ``min_cosine``.

    Default centre: the coordinate median, taken leave-one-out (row i is compared with the
    median of the other rows, see :func:`loo_median_cosines`; n = 1 flags nothing).  An
    explicit ``centre`` is used as given for every row.  A zero row has cosine 0; a zero
    centre defines no direction, so it flags nothing.
    """
    a = as_matrix(x)
    n = a.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    if centre is None:
        if n < 2:
            return np.zeros(n, dtype=bool)
        return loo_median_cosines(a) < min_cosine
    c = np.asarray(centre, dtype=np.float64).reshape(-1)
    if c.shape[0] != a.shape[1]:
        raise ValueError(f"centre has length {c.shape[0]}, updates have {a.shape[1]}")
    c_norm = float(np.sqrt(np.dot(c, c)))
    if not c_norm > 0.0:
        return np.zeros(n, dtype=bool)
    dots = gram64(a, c[None, :])[:, 0]
    norms = row_norms(a)
    cos = np.zeros(n, dtype=np.float64)
    nz = norms > 0.0
    cos[nz] = dots[nz] / (norms[nz] * c_norm)
    return cos < min_cosine


def cosine_mask(a: np.ndarray, min_cosine: float, centre: np.ndarray | None) -> np.ndarray:
    """The ``cosine`` rule on n >= 2 rows: with fewer than three and no centre, flag none."""
    if a.shape[0] < 3 and centre is None:
        return np.zeros(a.shape[0], dtype=bool)
    return cosine_to_centre_flags(a, min_cosine, centre)


def cosine_norm_mask(
    a: np.ndarray, max_norm_ratio: float, min_cosine: float, centre: np.ndarray | None
) -> np.ndarray:
    """The ``cosine_norm`` rule: the norm bound, then the cosine test among the survivors."""
    # Norm bound first, then the cosine rule among the survivors only: a scaled attacker
    # must not drag the centre the others are compared with (with n = 3, the median of
    # the two others would be half the attacker's update).
    mask = norm_bound_flags(a, max_norm_ratio)
    rest = np.flatnonzero(~mask)
    if rest.size >= 3 or (centre is not None and rest.size > 0):
        cos_mask = cosine_to_centre_flags(a[rest], min_cosine, centre)
        if not cos_mask.all():
            mask[rest[cos_mask]] = True
    return mask
