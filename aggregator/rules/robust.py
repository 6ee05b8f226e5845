"""Robust statistics and outlier rules over pseudo-gradients (one update per row).

All functions are pure and deterministic: no I/O, no randomness, inputs in caller order.
Rows are flattened updates ``x[i] = w_global - w_local_i`` of equal length ``d``.

Small rounds (documented behaviour of :func:`detect_outliers`):

* ``n == 0``: empty mask.  ``n == 1``: nothing is ever flagged.
* ``n == 2``: there is no majority, so rules that need a robust centre or neighbourhood
  (``multi_krum``, ``median``, ``trimmed_mean`` and ``cosine`` against the default median
  centre) flag nothing.  ``norm_bound`` still runs (with ``max_norm_ratio >= 2`` it cannot
  flag either row, since the median of two norms is their mean) and ``cosine`` runs when the
  caller supplies an explicit ``centre`` (e.g. the previous round's aggregate).
* For every rule, a mask that would flag *every* row is replaced by an all-False mask: a rule
  that rejects everyone carries no information about who is malicious.

Evidence and selection (:func:`screen_updates`): a threshold test (a norm, a distance to a
robust centre or a cosine beyond a bar set by this round's updates) is evidence and flags the
update; Multi-Krum only *selects* a fixed number of updates, so the ones it leaves out are
excluded from the aggregate without being flagged (an all-honest round always leaves some out).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import numpy as np

from aggregator.rules.outer import weighted_mean

__all__ = [
    "SELECTION_ONLY_RULES",
    "OutlierRule",
    "OutlierRuleName",
    "Screening",
    "coordinate_median",
    "cosine_to_centre_flags",
    "detect_outliers",
    "distances_to",
    "gram64",
    "krum_scores",
    "loo_median_cosines",
    "multi_krum_aggregate",
    "multi_krum_select",
    "norm_bound_flags",
    "pairwise_sq_distances",
    "row_norms",
    "row_sq_norms",
    "rule_from_dict",
    "screen_updates",
    "trimmed_mean",
]

OutlierRuleName = Literal[
    "multi_krum", "median", "trimmed_mean", "norm_bound", "cosine", "cosine_norm", "consensus"
]

#: Target size (bytes) of a float64 column block used by the chunked helpers.
_BLOCK_BYTES = 16 * 1024 * 1024
#: Target size (bytes) of one centred block of the distance Gram: small enough to stay in cache
#: between the centring and the product.
_GRAM_BLOCK_BYTES = 4 * 1024 * 1024
#: Longest run of columns one float32 product sums before the float64 accumulator takes over.
_GRAM_MAX_WIDTH = 8192


def _as_matrix(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as a 2-D floating array (no copy for float32/float64 input)."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array of updates (n x d), got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def _column_blocks(n_rows: int, d: int) -> Iterator[slice]:
    """Column slices whose float64 copy of ``n_rows`` rows stays around ``_BLOCK_BYTES``."""
    width = max(1024, _BLOCK_BYTES // (8 * max(1, n_rows)))
    for start in range(0, d, width):
        yield slice(start, min(d, start + width))


def gram64(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Float64 Gram matrix ``x @ y.T`` (``y`` defaults to ``x``), upcast block by block.

    Memory overhead is a few column blocks, never an n x d float64 copy.
    """
    a = _as_matrix(x)
    b = a if y is None else _as_matrix(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dimension mismatch: {a.shape[1]} vs {b.shape[1]}")
    g = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    for blk in _column_blocks(a.shape[0] + b.shape[0], a.shape[1]):
        ab = a[:, blk].astype(np.float64)
        bb = ab if y is None else b[:, blk].astype(np.float64)
        g += ab @ bb.T
    if y is None:
        g = (g + g.T) / 2.0  # exactly symmetric
    return g


def row_sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared L2 norm of each row, accumulated in float64 (chunked, no full upcast)."""
    a = _as_matrix(x)
    sq = np.zeros(a.shape[0], dtype=np.float64)
    for blk in _column_blocks(a.shape[0], a.shape[1]):
        b = a[:, blk].astype(np.float64)
        sq += np.einsum("ij,ij->i", b, b)
    return sq


def row_norms(x: np.ndarray) -> np.ndarray:
    """L2 norm of each row, accumulated in float64 (chunked, no full upcast)."""
    return np.sqrt(row_sq_norms(x))


def distances_to(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of ``x`` to ``centre`` (float64, chunked)."""
    a = _as_matrix(x)
    c = np.asarray(centre, dtype=np.float64).reshape(-1)
    if c.shape[0] != a.shape[1]:
        raise ValueError(f"centre has length {c.shape[0]}, updates have {a.shape[1]}")
    sq = np.zeros(a.shape[0], dtype=np.float64)
    for blk in _column_blocks(a.shape[0], a.shape[1]):
        b = a[:, blk].astype(np.float64)
        b -= c[blk]
        sq += np.einsum("ij,ij->i", b, b)
    return np.sqrt(sq)


def _centred_gram(a: np.ndarray) -> np.ndarray:
    """Float64 Gram matrix of the rows of ``a`` after subtracting their per-column mean.

    Distances do not change under a common shift, but the ``|a|^2 + |b|^2 - 2 a.b`` trick
    loses everything below the precision of ``|a|^2``: rows that share a large component
    (full weights rather than deltas, a common direction) had their small distances rounded
    to 0 or to one float32 ulp of ``|a|^2``.  The column mean is the shift that minimises
    ``sum_i |a_i - r|^2``, i.e. the rounding error of the trick; the subtraction of nearby
    values is exact (Sterbenz), so a shared component cancels exactly and the product only
    sees the residuals.  The residuals stay in the input dtype (float32 GEMM speed) one
    cache-sized column block at a time, and the block products are summed in float64, so
    no float32 sum runs longer than one block and memory stays bounded.
    """
    n, d = a.shape
    g = np.zeros((n, n), dtype=np.float64)
    if n == 0:
        return g  # no rows: no column mean to take
    width = min(_GRAM_MAX_WIDTH, max(1024, _GRAM_BLOCK_BYTES // (a.itemsize * max(1, n))))
    buf = np.empty((n, min(d, width)), dtype=a.dtype)
    weights = np.full(n, 1.0 / n, dtype=a.dtype)  # the column mean as one BLAS GEMV
    for start in range(0, d, width):
        blk = a[:, start : start + width]
        y = buf if blk.shape[1] == buf.shape[1] else np.empty(blk.shape, dtype=a.dtype)
        np.subtract(blk, weights @ blk, out=y)
        g += y @ y.T
    return (g + g.T) / 2.0  # exactly symmetric


def pairwise_sq_distances(x: np.ndarray) -> np.ndarray:
    """n x n squared Euclidean distances from one Gram matrix of the centred rows.

    See :func:`_centred_gram` for why the rows are centred first; float32 input stays float32
    (no n x d upcast).  The result is float64, symmetric, clipped at 0, with an exact-zero
    diagonal.
    """
    a = _as_matrix(x)
    g = _centred_gram(a)
    sq = np.diag(g).copy()
    d2 = sq[:, None] + sq[None, :] - 2.0 * g
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


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
    a = _as_matrix(x)
    idx = multi_krum_select(a, num_malicious, to_keep)
    w = np.zeros(a.shape[0], dtype=np.float64)
    w[idx] = 1.0
    return idx, weighted_mean(a, w)


def coordinate_median(x: np.ndarray) -> np.ndarray:
    """Coordinate-wise median in float64 (computed per column block)."""
    a = _as_matrix(x)
    n, d = a.shape
    if n == 0:
        raise ValueError("coordinate_median of zero updates")
    out = np.empty(d, dtype=np.float64)
    for blk in _column_blocks(n, d):
        out[blk] = np.median(a[:, blk].astype(np.float64), axis=0)
    return out


def _trim_count(n: int, beta: float) -> int:
    if not 0.0 <= beta < 0.5:
        raise ValueError("beta must be in [0, 0.5)")
    # the epsilon protects products like 0.29 * 100 = 28.999999999999996
    return min(math.floor(beta * n + 1e-9), (n - 1) // 2)


def trimmed_mean(x: np.ndarray, beta: float) -> np.ndarray:
    """Coordinate-wise mean after trimming ``floor(beta * n)`` values from each end (float64)."""
    a = _as_matrix(x)
    n, d = a.shape
    if n == 0:
        raise ValueError("trimmed_mean of zero updates")
    k = _trim_count(n, beta)
    out = np.empty(d, dtype=np.float64)
    for blk in _column_blocks(n, d):
        b = a[:, blk].astype(np.float64)
        b.sort(axis=0)
        out[blk] = b[k : n - k].mean(axis=0)
    return out


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


def max_pair_cosines(x: np.ndarray) -> np.ndarray:
    """Each row's largest cosine to any OTHER row (one Gram matrix), float64.

    Honest updates always have some peer pointing their way, even on non-IID shards; random
    noise of any norm has cosine ~1/sqrt(d) to everything. A zero row gets -inf... never: 0.
    """
    a = _as_matrix(x)
    n = a.shape[0]
    if n < 2:
        return np.ones(n, dtype=np.float64)
    g = gram64(a)
    norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
    denom = np.outer(norms, norms)
    cos = np.divide(g, denom, out=np.zeros_like(g), where=denom > 0)
    np.fill_diagonal(cos, -np.inf)
    return cos.max(axis=1)


def loo_median_cosines(x: np.ndarray) -> np.ndarray:
    """Cosine of each row to the coordinate median of the *other* rows (n >= 2), float64.

    Excluding the row itself removes its self-influence on the centre: with n ~ 10 a
    random vector of honest norm has cosine ~0.1 to a median that includes it.  One sort per
    column gives all n leave-one-out medians (each is one of at most three order-statistic
    combinations, chosen by the removed element's rank).  A row whose leave-one-out centre
    is zero gets cosine 1 (no direction: never flagged); a zero row gets cosine 0.
    """
    a = _as_matrix(x)
    n, d = a.shape
    if n < 2:
        raise ValueError("loo_median_cosines needs at least two rows")
    m = n - 1
    ranks = np.arange(n)[:, None]
    dots = np.zeros(n, dtype=np.float64)
    c_sq = np.zeros(n, dtype=np.float64)
    for blk in _column_blocks(4 * n, d):
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
    a = _as_matrix(x)
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


@dataclass(frozen=True)
class OutlierRule:
    """Outlier-detection strategy, recorded in the job spec via :meth:`to_dict`."""

    name: OutlierRuleName
    num_malicious: int = 1
    to_keep: int = 0
    beta: float = 0.1
    max_norm_ratio: float = 3.0
    min_cosine: float = 0.1
    median_dist_ratio: float = 3.0
    min_pair_cosine: float = 0.0
    noise_sigmas: float = 6.0

    def __post_init__(self) -> None:
        if self.name not in get_args(OutlierRuleName):
            raise ValueError(f"unknown outlier rule {self.name!r}")
        if self.num_malicious < 0 or self.to_keep < 0:
            raise ValueError("num_malicious and to_keep must be >= 0")
        if not 0.0 <= self.beta < 0.5:
            raise ValueError("beta must be in [0, 0.5)")
        if not (self.max_norm_ratio > 0 and self.median_dist_ratio > 0):
            raise ValueError("max_norm_ratio and median_dist_ratio must be > 0")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError("min_cosine must be in [-1, 1]")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields."""
        return asdict(self)


_INT_FIELDS = ("num_malicious", "to_keep")
_FLOAT_FIELDS = (
    "beta",
    "max_norm_ratio",
    "min_cosine",
    "median_dist_ratio",
    "min_pair_cosine",
    "noise_sigmas",
)


def rule_from_dict(d: Mapping[str, Any]) -> OutlierRule:
    """Inverse of :meth:`OutlierRule.to_dict`; rejects unknown keys and non-integral counts."""
    known = {f.name for f in fields(OutlierRule)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown outlier rule fields: {sorted(unknown)}")
    if "name" not in d:
        raise ValueError("outlier rule needs a 'name'")
    kwargs: dict[str, Any] = {"name": str(d["name"])}
    for key in _INT_FIELDS:
        if key in d:
            v = d[key]
            if isinstance(v, bool) or not float(v).is_integer():
                raise ValueError(f"{key} must be an integer, got {v!r}")
            kwargs[key] = int(v)
    for key in _FLOAT_FIELDS:
        if key in d:
            v = d[key]
            if isinstance(v, bool):
                raise ValueError(f"{key} must be a number, got {v!r}")
            kwargs[key] = float(v)
    return OutlierRule(**kwargs)


def _far_from(x: np.ndarray, centre: np.ndarray, ratio: float) -> np.ndarray:
    dist = distances_to(x, centre)
    med = float(np.median(dist))
    if not med > 0.0:
        return np.zeros(dist.shape[0], dtype=bool)
    return dist > ratio * med


#: Rules that only *select* (keep a fixed number of updates whatever the data): not being
#: selected is no evidence of cheating, so their exclusions are never flagged.
SELECTION_ONLY_RULES: frozenset[str] = frozenset({"multi_krum"})


@dataclass(frozen=True, eq=False)  # masks are arrays: == would be ambiguous
class Screening:
    """A rule's verdict on each row (boolean masks in caller order).

    ``flagged``: evidence against the update (the round posts ``Reason.OUTLIER``, slashable).
    ``excluded``: kept out of the aggregate; a superset of ``flagged``.  A row excluded but
    not flagged was only not selected: it scores 0 and is neither flagged nor slashed.
    """

    flagged: np.ndarray
    excluded: np.ndarray

    @property
    def held_out(self) -> np.ndarray:
        """Rows excluded without evidence (not aggregated, not flagged)."""
        return self.excluded & ~self.flagged


def screen_updates(
    x: np.ndarray, rule: OutlierRule, *, centre: np.ndarray | None = None
) -> Screening:
    """Which rows ``rule`` keeps out of the aggregate, and which of those it has evidence on.

    Threshold tests (a norm, a distance or a cosine beyond a bar relative to this round's
    updates) are evidence; a selection-only rule (:data:`SELECTION_ONLY_RULES`) excludes
    without flagging.  ``centre`` as in :func:`detect_outliers`.
    """
    excluded = detect_outliers(x, rule, centre=centre)
    if rule.name in SELECTION_ONLY_RULES:
        return Screening(np.zeros_like(excluded), excluded)
    return Screening(excluded.copy(), excluded)


def detect_outliers(
    x: np.ndarray, rule: OutlierRule, *, centre: np.ndarray | None = None
) -> np.ndarray:
    """Boolean mask (True = excluded) of the rows ``rule`` keeps out of the aggregate.

    ``centre`` optionally replaces the median centre of the cosine rules (works for any n).
    See the module docstring for n < 3 and the never-exclude-everyone guard, and
    :func:`screen_updates` for which exclusions are evidence (flags) and which only selection.
    """
    a = _as_matrix(x)
    n = a.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=bool)
    mask = _rule_mask(a, rule, centre)
    if mask.all():
        return np.zeros(n, dtype=bool)
    return mask


def _multi_krum_mask(a: np.ndarray, rule: OutlierRule) -> np.ndarray:
    n = a.shape[0]
    to_keep = rule.to_keep if rule.to_keep > 0 else max(1, n - rule.num_malicious)
    keep = multi_krum_select(a, rule.num_malicious, min(to_keep, n))
    mask = np.ones(n, dtype=bool)
    mask[keep] = False
    return mask


def _rule_mask(a: np.ndarray, rule: OutlierRule, centre: np.ndarray | None) -> np.ndarray:
    """The raw mask of ``rule`` on n >= 2 rows (before the never-exclude-everyone guard)."""
    n = a.shape[0]
    none = np.zeros(n, dtype=bool)
    small = n < 3
    name = rule.name
    if name == "multi_krum":
        mask = none if small else _multi_krum_mask(a, rule)
    elif name == "median":
        # With three updates the median distance is one honest update's own distance, so the
        # farther of two honest updates can exceed the ratio: these rules need four or more.
        mask = none if n < 4 else _far_from(a, coordinate_median(a), rule.median_dist_ratio)
    elif name == "trimmed_mean":
        mask = none if n < 4 else _far_from(a, trimmed_mean(a, rule.beta), rule.median_dist_ratio)
    elif name == "norm_bound":
        mask = norm_bound_flags(a, rule.max_norm_ratio)
    elif name == "cosine":
        if small and centre is None:
            mask = none
        else:
            mask = cosine_to_centre_flags(a, rule.min_cosine, centre)
    elif name == "cosine_norm":
        mask = _cosine_norm_mask(a, rule, centre)
    elif name == "consensus":
        # Noise-like updates: no peer points their way. Independent random directions have
        # cosine ~ N(0, 1/d), so the bar sits noise_sigmas standard deviations above that.
        # (Norms are clipped, not flagged, and compute_round adds the tests that need a
        # model: the reference direction and the harm to the validation loss.)
        mask = none
        if not small:
            bar = max(rule.min_pair_cosine, rule.noise_sigmas / np.sqrt(a.shape[1]))
            mask = max_pair_cosines(a) < bar
    else:  # pragma: no cover - guarded by OutlierRule.__post_init__
        raise ValueError(f"unknown outlier rule {name!r}")
    return mask


def _cosine_norm_mask(a: np.ndarray, rule: OutlierRule, centre: np.ndarray | None) -> np.ndarray:
    # Norm bound first, then the cosine rule among the survivors only: a scaled attacker
    # must not drag the centre the others are compared with (with n = 3, the median of
    # the two others would be half the attacker's update).
    mask = norm_bound_flags(a, rule.max_norm_ratio)
    rest = np.flatnonzero(~mask)
    if rest.size >= 3 or (centre is not None and rest.size > 0):
        cos_mask = cosine_to_centre_flags(a[rest], rule.min_cosine, centre)
        if not cos_mask.all():
            mask[rest[cos_mask]] = True
    return mask
