"""Copy, replay and free-rider detection over one round of pseudo-gradients.

Reason codes (stable, used on chain): 0 clean, 9 copy of another update this round,
10 replay of an earlier round's update (another trainer's, or a public aggregate), 11
near-zero (free rider).  When several apply, the precedence is 11 > 10 > 9.

How close is a replay?  Not a constant tuned on one dataset: the bar comes from how honest
updates relate to public information (:func:`similarity_bar`).  An update closer to *another*
trainer's earlier update than trainers are to *their own* previous update (an order statistic that
the assumed share of colluders cannot move), and than two trainers' earlier updates ever
were, was not computed independently.  And it must be closer to that update than to its own
sender's past: a copier of A's last update cannot make A's fresh update look like the copy.
Noisy copies with more jitter than that pass here; the information score
(`aggregator.rules.information`) pays them nothing for it.

Within a round, only near-exact copies (the job's fixed cosine) are evidence: updates of one
round share the model, so honest ones with similar shards can be more alike than anyone is to
their own past.  We cannot know who computed an update first: the first row in the given order
(commit order) is not flagged, later matches get reason 9.  With updates published only after
their commitment is mined, only colluders (or chance) make two updates of a round alike, so
:attr:`CopyVerdict.duplicated` also marks clean rows alike beyond the round's typical best
match (a lower bar, and no evidence): the caller leaves their shared information
unaggregated and unpaid, flagging and slashing nobody.  When more rows than the assumed share
of colluders would be marked, the likeness is the data's (IID shards, a first round) and none
is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aggregator.rules.kernels import RowBlocks, gram64, row_blocks, row_sq_norms
from backend.core.errors import Reason

__all__ = [
    "REASON_CLEAN",
    "REASON_COPY",
    "REASON_REPLAY",
    "REASON_ZERO",
    "CopyVerdict",
    "copy_verdict",
    "detect_copies",
    "similarity_bar",
]

# The codes come from the one table (backend.core.errors.Reason), as plain ints for numpy.
REASON_CLEAN = int(Reason.ACCEPTED)
REASON_COPY = int(Reason.COPY)
REASON_REPLAY = int(Reason.REPLAY)
REASON_ZERO = int(Reason.NEAR_ZERO)

#: Robust deviations above the typical best match that make two updates "alike".
EXTREME_SIGMAS = 6.0
#: Robust deviations of honest own-persistence by which a copy must clear the copy bar.
SIGMAS = 3.0


@dataclass(frozen=True, eq=False)  # arrays: == would be ambiguous
class CopyVerdict:
    """Reason per row, the unflagged originals that later rows duplicate, and the bar used."""

    reasons: np.ndarray  # int64
    duplicated: np.ndarray  # bool: clean, but alike another row of this round
    bar: float  # cosine at or above which two updates match (a copy or a replay)


def _cosines(gram: np.ndarray, sq_a: np.ndarray, sq_b: np.ndarray) -> np.ndarray:
    """Pairwise cosines from a Gram block; 0 where either vector is zero."""
    denom = np.sqrt(sq_a)[:, None] * np.sqrt(sq_b)[None, :]
    cos = np.zeros_like(gram)
    np.divide(gram, denom, out=cos, where=denom > 0.0)
    return cos


def _matches(
    gram: np.ndarray,
    sq_a: np.ndarray,
    sq_b: np.ndarray,
    rel_tol: float,
    bar: float,
    own: np.ndarray | None = None,
) -> np.ndarray:
    """Pairwise ``a_i ~ b_j``: ``|a_i - b_j| <= rel_tol |b_j|``, or ``cos(a_i, b_j) >= bar``
    and closer than ``a_i`` is to its owner's own previous update (``own[i]``).

    The second condition keeps a copier from framing its victim: who copies A's previous
    update and commits first makes A's fresh update resemble the copy, but never more than
    A's update resembles A's own past. Pairs where either vector is zero never match.
    """
    d2 = sq_a[:, None] + sq_b[None, :] - 2.0 * gram
    np.maximum(d2, 0.0, out=d2)
    close = d2 <= (rel_tol * rel_tol) * sq_b[None, :]
    valid = (sq_a[:, None] > 0.0) & (sq_b[None, :] > 0.0)
    cos = _cosines(gram, sq_a, sq_b)
    alike = cos >= bar
    if own is not None:
        alike &= cos > own[:, None]
    return valid & (close | alike)


def _extreme_similarity(best: np.ndarray, sigmas: float = EXTREME_SIGMAS) -> float:
    """A cosine beyond the round's typical best match: ``sigmas`` robust deviations above.

    ``best`` holds each row's largest cosine to another row. In Fisher's z (atanh), the
    median plus ``sigmas`` x the spread of the values below it (1.4826 x their median
    distance): one value per row, so crafted rows (a minority) can shift the median only
    within the honest values and can only widen the lower spread.
    """
    if best.size < 3:
        return 1.0
    z = np.arctanh(np.clip(best, -0.999999, 0.999999))
    med = float(np.median(z))
    lower = med - z[z <= med]
    sigma = 1.4826 * float(np.median(lower)) if lower.size else 0.0
    return float(np.tanh(med + sigmas * sigma))


def _own_persistence(
    cross: np.ndarray, owners: Sequence[str], previous_owners: Sequence[str]
) -> np.ndarray:
    """Each row's cosine to its owner's latest earlier update (-1 for rows without one)."""
    latest = {o.lower(): j for j, o in enumerate(previous_owners)}  # later rows win
    own = np.full(len(owners), -1.0)
    for i, o in enumerate(owners):
        j = latest.get(o.lower())
        if j is not None:
            own[i] = cross[i, j]
    return own


def _historical_cross(
    blocks: Sequence[np.ndarray],
    sq_p: np.ndarray,
    owners: Sequence[str],
    sources: np.ndarray | None,
) -> float:
    """The largest cosine between two earlier source updates of different trainers.

    How alike independent trainers' updates already were, measured on public rows the
    current round cannot touch (a row flagged in its round is no source).
    """
    keep = np.array([bool(o) for o in owners], dtype=bool)
    if sources is not None:
        keep &= np.asarray(sources, dtype=bool)
    idx = np.flatnonzero(keep & (sq_p > 0.0))
    if idx.size < 2:
        return -1.0
    gram = _blocks_gram(blocks)[np.ix_(idx, idx)]
    cos = _cosines(gram, sq_p[idx], sq_p[idx])
    names = np.array([owners[i].lower() for i in idx])
    cos[names[:, None] == names[None, :]] = -1.0
    return float(cos.max())


def _blocks_gram(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """The float64 Gram matrix of the rows of all ``blocks``, block pair by block pair (no
    concatenated copy of the rows)."""
    ends = np.cumsum([0, *(b.shape[0] for b in blocks)])
    g = np.zeros((ends[-1], ends[-1]))
    for i, bi in enumerate(blocks):
        rows = slice(ends[i], ends[i + 1])
        g[rows, rows] = gram64(bi)
        for j in range(i + 1, len(blocks)):
            cols = slice(ends[j], ends[j + 1])
            g[rows, cols] = gram64(bi, blocks[j])
            g[cols, rows] = g[rows, cols].T
    return g


def similarity_bar(own: np.ndarray, cross: float, max_fraction: float, ceiling: float) -> float:
    """The cosine from which closeness to another's update is evidence of copying.

    In Fisher's z (atanh): the larger of (a) the ``(f+1)``-th largest own-persistence cosine
    (each trainer's update against its own previous one; rows without one are -1),
    ``f = floor(max_fraction x count)``, which up to ``f`` crafted values cannot move beyond
    the honest ones, and (b) ``cross``, the largest similarity of two trainers' earlier
    updates (:func:`_historical_cross`: on IID shards trainers resemble each other as much
    as their own past); plus ``SIGMAS`` robust deviations of the own-persistence values, so
    that honest scatter around either is no evidence. Crafted rows raise the order statistics
    only by evading (the information score still pays them nothing); bunched at the median
    they can shrink the spread (a known gap, contracts/SPEC.md).
    Never above ``ceiling`` (the job's fixed scaled-copy cosine); with fewer than three
    trainers' own-persistence values, ``ceiling``: too little data for a data-derived bar.
    """
    own = own[own > -1.0]
    if own.size < 3:
        return ceiling
    f = int(max_fraction * own.size)
    persistence = float(np.sort(own)[::-1][min(f, own.size - 1)])
    z = np.arctanh(np.clip(own, -0.999999, 0.999999))
    spread = 1.4826 * float(np.median(np.abs(z - np.median(z))))
    base = np.arctanh(np.clip(max(persistence, cross), -0.999999, 0.999999))
    return min(ceiling, float(np.tanh(base + SIGMAS * spread)))


def _duplicated(near: np.ndarray, clean: np.ndarray, max_fraction: float) -> np.ndarray:
    """Clean rows alike another row of this round, unless more than the assumed share of
    crafted rows would be: then the likeness is the data's (IID shards, a first round)."""
    dup = clean & near.any(axis=1)
    return dup if dup.sum() <= int(max_fraction * near.shape[0]) else np.zeros_like(dup)


def copy_verdict(
    x: np.ndarray,
    previous: RowBlocks | None = None,
    *,
    order: Sequence[int] | None = None,
    owners: Sequence[str] | None = None,
    previous_owners: Sequence[str] | None = None,
    sources: np.ndarray | None = None,
    rel_tol: float = 1e-3,
    scale_cos: float = 0.9999,
    zero_ratio: float = 1e-3,
    max_fraction: float = 0.3,
) -> CopyVerdict:
    """Reasons (11 near-zero, 10 replay, 9 copy, 0 clean) for rows ``x`` in commit order.

    * 11: norm exactly 0, or ``<= zero_ratio`` x the median norm of the round.
    * 9: a near-exact copy of an *earlier* row (``|x_i - x_j| <= rel_tol |x_j|`` or cosine
      ``>= scale_cos``); the earlier row stays clean.
    * 10: matches a source row of ``previous`` (earlier rounds' updates and public
      aggregates; ``sources``, default all): a near-exact resend of any, its own included, or
      another trainer's at or above the bar and closer than the row is to its own past.
    With ``owners`` and ``previous_owners`` the replay bar is :func:`similarity_bar` and clean
    rows alike another row of this round (beyond the round's typical best match) are
    ``duplicated``; without owners, the fixed ``scale_cos``. ``previous`` may be blocks of
    rows (several rounds', never concatenated); ``order``: the rows of ``x`` to judge, in
    commit order (default all, as given), so the caller keeps one matrix in its own order.
    Float64 Gram matrices, no loop over pairs, no copy of the rows.
    """
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array of updates (n x d), got shape {a.shape}")
    pick = np.arange(a.shape[0]) if order is None else np.asarray(order, dtype=np.int64)
    n = pick.size
    if n == 0:
        return CopyVerdict(np.zeros(0, np.int64), np.zeros(0, bool), scale_cos)
    g = gram64(a) if order is None else gram64(a)[np.ix_(pick, pick)]
    sq = np.maximum(np.diag(g).copy(), 0.0)
    norms = np.sqrt(sq)
    zero = (norms == 0.0) | (norms <= zero_ratio * float(np.median(norms)))
    blocks = row_blocks(previous, a.shape[1])
    sq_p, gp = _previous(a, blocks, pick)
    n_prev = sq_p.size
    others = _others_mask(n, owners, previous_owners, n_prev)
    bar = dup_bar = scale_cos
    own = None
    if owners is not None and previous_owners is not None:
        current, cross = _cosines(g, sq, sq), _cosines(gp, sq, sq_p)
        np.fill_diagonal(current, -1.0)
        best = np.maximum(
            current.max(axis=1), np.where(others, cross, -1.0).max(axis=1, initial=-1.0)
        )
        own = _own_persistence(cross, owners, previous_owners)
        history = _historical_cross(blocks, sq_p, previous_owners, sources)
        bar = similarity_bar(own, history, max_fraction, scale_cos)
        dup_bar = min(bar, _extreme_similarity(best[~zero]))

    # Same round: only near-exact copies are evidence. Honest updates of one round can be
    # more alike than any update is to its own past (same model, similar shards).
    m = _matches(g, sq, sq, rel_tol, scale_cos) & np.tri(n, n, k=-1, dtype=bool)  # j < i
    m[:, zero] = False
    copy = m.any(axis=1)
    src = np.ones(n_prev, bool) if sources is None else np.asarray(sources, dtype=bool)
    # A near-exact resend of any earlier update, one's own and a public aggregate's included,
    # is a replay; the data-derived bar applies to other trainers' updates only (an honest
    # update is naturally closer to an average of everyone's than to its own noisy past).
    trainers = src & _has_owner(previous_owners, n_prev)
    exact = _matches(gp, sq, sq_p, rel_tol, scale_cos) & src[None, :]
    alike = _matches(gp, sq, sq_p, rel_tol, bar, own) & others & trainers[None, :]
    replay = (exact | alike).any(axis=1)

    reasons = np.zeros(n, dtype=np.int64)
    reasons[copy] = REASON_COPY
    reasons[replay] = REASON_REPLAY
    reasons[zero] = REASON_ZERO
    near = _matches(g, sq, sq, rel_tol, dup_bar, own) & ~np.eye(n, dtype=bool)
    near[:, zero] = False
    near[zero, :] = False
    duplicated = _duplicated(near, reasons == REASON_CLEAN, max_fraction)
    return CopyVerdict(reasons, duplicated, bar)


def detect_copies(x: np.ndarray, previous: RowBlocks | None = None, **kwargs: object) -> np.ndarray:
    """The reasons of :func:`copy_verdict` alone (same arguments)."""
    return copy_verdict(x, previous, **kwargs).reasons  # type: ignore[arg-type]


def _previous(
    a: np.ndarray, blocks: Sequence[np.ndarray], pick: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(squared norms of the previous rows, the n x m Gram of ``a[pick]`` with them), one
    block of previous rows at a time."""
    if not blocks:
        return np.zeros(0), np.zeros((pick.size, 0))
    sq_p = np.concatenate([row_sq_norms(b) for b in blocks])
    gp = np.hstack([gram64(a, b) for b in blocks])
    return sq_p, gp[pick]


def _has_owner(previous_owners: Sequence[str] | None, m: int) -> np.ndarray:
    """Which previous rows are a trainer's update (not a public aggregate, owner '')."""
    if previous_owners is None:
        return np.ones(m, dtype=bool)
    return np.array([bool(o) for o in previous_owners], dtype=bool)


def _others_mask(
    n: int, owners: Sequence[str] | None, previous_owners: Sequence[str] | None, m: int
) -> np.ndarray:
    """n x m: True where previous row j is not row i's own (all True without owners)."""
    if owners is None or previous_owners is None:
        return np.ones((n, m), dtype=bool)
    if len(owners) != n or len(previous_owners) != m:
        raise ValueError("owners and previous_owners must match the rows")
    mine = np.array([o.lower() for o in owners])[:, None]
    theirs = np.array([o.lower() for o in previous_owners], dtype=mine.dtype)[None, :]
    return mine != theirs if m else np.ones((n, 0), dtype=bool)
