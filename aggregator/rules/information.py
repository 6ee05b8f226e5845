"""Pay for information, not for resemblance: the information score of an update.

Everything public before a round (earlier rounds' revealed updates, the outer optimizer's
momentum, which carries every earlier aggregate) could be replayed by anyone for free. So an
update is paid only for its *innovation*: the part outside the span of those public vectors
(:func:`innovation`). A copy, a replay or any linear mix of public vectors has no innovation
but its jitter.

Jitter is not information, yet random directions gain or lose a little validation loss by
chance. The score therefore pays only the gain beyond chance (:func:`information_scores`):
under the null hypothesis "the innovation's signs carry no information", its first-order
gain ``g . dw`` (``g`` the validation-loss gradient, ``dw`` the weight change it causes) has
standard deviation ``sqrt(sum (g_j dw_j)^2)`` (a sign-randomisation test), whatever the
magnitudes' shape. An update is paid ``max(0, gain - k x that)``; ``k = 2`` leaves noise a
2.3 % chance of any pay, and then only of its excess.

Pure and deterministic; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from aggregator.rules.kernels import ROW_BLOCK, RowBlocks, norms64, row_blocks

__all__ = ["chance_gain_scale", "information_scores", "innovation", "public_basis"]

#: Singular values of the unit-normalised public rows below this fraction of the largest are
#: treated as 0 (duplicates among earlier updates); far above float noise, so two machines'
#: LAPACK builds agree on the rank.
_RANK_TOL = 1e-6
#: At most this many public directions are projected out. Up to it the basis is exact (an SVD
#: of every public row, as before issue 16); beyond it (a job of many trainers: hundreds of
#: public rows per round) it is the top directions found by a seeded randomized range finder
#: (Halko, Martinsson and Tropp 2011; one power iteration), so a round's time and memory for
#: this step grow with the number of public rows only linearly, and its memory is
#: O(MAX_PUBLIC_DIRECTIONS × d) plus one block of rows, not a float64 copy of all of them.
#: A replay of a public row whose direction falls outside the top ones keeps some innovation;
#: copy detection (`aggregator.rules.copies`) flags replays on its own.
MAX_PUBLIC_DIRECTIONS = 64
_OVERSAMPLE = 8
_SKETCH_SEED = 16


def public_basis(vectors: RowBlocks | None) -> np.ndarray | None:
    """Orthonormal rows spanning ``vectors`` (m x d, or blocks of such rows), float64; None
    when there are none.

    An SVD rather than QR: rank-deficient inputs (zero rows, duplicates) must not add
    directions that are not in their span.
    """
    blocks = row_blocks(vectors)
    if not blocks:
        return None
    norms = np.concatenate([norms64(b) for b in blocks])
    keep = np.isfinite(norms) & (norms > 0.0)
    if not keep.any():
        return None
    if int(keep.sum()) > MAX_PUBLIC_DIRECTIONS:
        return _sketched_basis(blocks, norms, keep)
    # Unit rows: one huge public row (a flagged update 1e10 x the others) must not push the
    # others' directions under a tolerance relative to the largest singular value.
    unit = np.concatenate([block for _, block in _unit_blocks(blocks, norms, keep)])
    _, s, vt = np.linalg.svd(unit, full_matrices=False)
    return vt[s > _RANK_TOL * s[0]]


def _unit_blocks(
    blocks: Sequence[np.ndarray], norms: np.ndarray, keep: np.ndarray
) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows slice of the kept rows, those rows as float64 unit vectors), block by block."""
    done, start = 0, 0
    for rows in blocks:
        kept = np.flatnonzero(keep[start : start + rows.shape[0]])
        for first in range(0, kept.size, ROW_BLOCK):
            idx = kept[first : first + ROW_BLOCK]
            unit = np.asarray(rows[idx], dtype=np.float64) / norms[start + idx, None]
            yield slice(done, done + idx.size), unit
            done += idx.size
        start += rows.shape[0]


def _sketched_basis(
    vectors: Sequence[np.ndarray], norms: np.ndarray, keep: np.ndarray
) -> np.ndarray:
    """The top MAX_PUBLIC_DIRECTIONS directions of the kept unit rows' span (orthonormal
    rows, float64): a seeded Gaussian sketch of the row space, one power iteration, then an
    exact SVD of the rows projected on it."""
    m, width = int(keep.sum()), MAX_PUBLIC_DIRECTIONS + _OVERSAMPLE
    omega = np.random.default_rng(_SKETCH_SEED).standard_normal((m, width))

    def rows_times(q: np.ndarray) -> np.ndarray:  # U @ q, U the kept unit rows (m x d)
        out = np.zeros((m, width))
        for part, block in _unit_blocks(vectors, norms, keep):
            out[part] = block @ q
        return out

    def rows_t_times(z: np.ndarray) -> np.ndarray:  # U.T @ z
        out = np.zeros((vectors[0].shape[1], width))
        for part, block in _unit_blocks(vectors, norms, keep):
            out += block.T @ z[part]
        return out

    q = np.linalg.qr(rows_t_times(omega))[0]
    q = np.linalg.qr(rows_t_times(rows_times(q)))[0]  # one power iteration
    _, s, vt = np.linalg.svd(rows_times(q), full_matrices=False)
    rank = min(MAX_PUBLIC_DIRECTIONS, int(np.sum(s > _RANK_TOL * s[0])))
    return (q @ vt[:rank].T).T


def innovation(x: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """``x`` minus its orthogonal projection on the public span (float64)."""
    v = np.asarray(x, dtype=np.float64)
    if basis is None:
        return v.copy()
    return v - basis.T @ (basis @ v)


def chance_gain_scale(gradient: np.ndarray, weight_change: np.ndarray) -> float:
    """Std of the first-order gain of ``weight_change`` with its signs randomised."""
    return float(np.sqrt(np.sum(np.square(gradient * weight_change))))


def information_scores(gains: np.ndarray, chance: np.ndarray, sigmas: float) -> np.ndarray:
    """``max(0, gain - sigmas x chance)`` per update, float64; non-finite gains score 0."""
    if sigmas < 0:
        raise ValueError("sigmas must be >= 0")
    g = np.asarray(gains, dtype=np.float64)
    # A negative chance scale (impossible from chance_gain_scale) must never turn a loss into
    # pay: Templar's sign bug was a negative score times a negative factor.
    s = g - sigmas * np.maximum(np.asarray(chance, dtype=np.float64), 0.0)
    return np.where(np.isfinite(s) & (s > 0.0), s, 0.0)
