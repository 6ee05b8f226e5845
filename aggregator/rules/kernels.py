"""Linear-algebra kernels over pseudo-gradients (one update per row), accumulated in float64.

All functions are pure and deterministic: no I/O, no randomness, inputs in caller order.
Rows are flattened updates ``x[i] = w_global - w_local_i`` of equal length ``d``; the kernels
work one column block at a time so that no n x d float64 copy is ever made.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = [
    "ROW_BLOCK",
    "RowBlocks",
    "as_matrix",
    "centred_gram",
    "column_blocks",
    "distances_to",
    "far_from",
    "gram64",
    "pairwise_sq_distances",
    "row_blocks",
    "row_norms",
    "row_sq_norms",
]

#: Target size (bytes) of a float64 column block used by the chunked helpers.
_BLOCK_BYTES = 16 * 1024 * 1024
#: Target size (bytes) of one centred block of the distance Gram: small enough to stay in cache
#: between the centring and the product.
_GRAM_BLOCK_BYTES = 4 * 1024 * 1024
#: Longest run of columns one float32 product sums before the float64 accumulator takes over.
_GRAM_MAX_WIDTH = 8192
#: Rows upcast to float64 at a time by the row-wise kernels (a row's values do not depend on
#: it: each row is reduced on its own).
ROW_BLOCK = 64


#: Rows as one matrix or as consecutive blocks of rows: several rounds' updates stay the
#: arrays they were decoded into, not concatenated into one more copy of all of them.
RowBlocks = np.ndarray | Sequence[np.ndarray]


def row_blocks(x: RowBlocks | None, d: int | None = None) -> list[np.ndarray]:
    """The non-empty 2-D blocks of ``x`` (a 1-D array is one row; None: none), no copy.

    Raises ValueError for a block that is not rows of ``d`` columns.
    """
    parts = [] if x is None else [x] if isinstance(x, np.ndarray) else list(x)
    blocks = []
    for part in parts:
        block = np.asarray(part)
        if block.ndim == 1:
            block = block[None, :]
        if block.ndim != 2 or (d is not None and block.shape[1] != d):
            want = "m x d" if d is None else f"m x {d}"
            raise ValueError(f"previous updates must be {want}, got shape {block.shape}")
        if block.shape[0]:
            blocks.append(block)
    return blocks


def as_matrix(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as a 2-D floating array (no copy for float32/float64 input)."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array of updates (n x d), got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def column_blocks(n_rows: int, d: int) -> Iterator[slice]:
    """Column slices whose float64 copy of ``n_rows`` rows stays around ``_BLOCK_BYTES``."""
    width = max(1024, _BLOCK_BYTES // (8 * max(1, n_rows)))
    for start in range(0, d, width):
        yield slice(start, min(d, start + width))


def gram64(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Float64 Gram matrix ``x @ y.T`` (``y`` defaults to ``x``), upcast block by block.

    Memory overhead is a few column blocks, never an n x d float64 copy.
    """
    a = as_matrix(x)
    b = a if y is None else as_matrix(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dimension mismatch: {a.shape[1]} vs {b.shape[1]}")
    g = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    for blk in column_blocks(a.shape[0] + b.shape[0], a.shape[1]):
        ab = a[:, blk].astype(np.float64)
        bb = ab if y is None else b[:, blk].astype(np.float64)
        g += ab @ bb.T
    if y is None:
        g = (g + g.T) / 2.0  # exactly symmetric
    return g


def row_sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared L2 norm of each row, accumulated in float64 (chunked, no full upcast)."""
    a = as_matrix(x)
    sq = np.zeros(a.shape[0], dtype=np.float64)
    for blk in column_blocks(a.shape[0], a.shape[1]):
        b = a[:, blk].astype(np.float64)
        sq += np.einsum("ij,ij->i", b, b)
    return sq


def row_norms(x: np.ndarray) -> np.ndarray:
    """L2 norm of each row, accumulated in float64 (chunked, no full upcast)."""
    return np.sqrt(row_sq_norms(x))


def norms64(x: np.ndarray, block_rows: int = ROW_BLOCK) -> np.ndarray:
    """`np.linalg.norm(x.astype(np.float64), axis=1)`, the same values (each row is reduced on
    its own), a block of rows at a time: no float64 copy of all of ``x``, nor of its square."""
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], block_rows):
        block = np.asarray(x[start : start + block_rows], dtype=np.float64)
        out[start : start + block.shape[0]] = np.linalg.norm(block, axis=1)
    return out


def distances_to(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of ``x`` to ``centre`` (float64, chunked)."""
    a = as_matrix(x)
    c = np.asarray(centre, dtype=np.float64).reshape(-1)
    if c.shape[0] != a.shape[1]:
        raise ValueError(f"centre has length {c.shape[0]}, updates have {a.shape[1]}")
    sq = np.zeros(a.shape[0], dtype=np.float64)
    for blk in column_blocks(a.shape[0], a.shape[1]):
        b = a[:, blk].astype(np.float64)
        b -= c[blk]
        sq += np.einsum("ij,ij->i", b, b)
    return np.sqrt(sq)


def centred_gram(a: np.ndarray) -> np.ndarray:
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

    See :func:`centred_gram` for why the rows are centred first; float32 input stays float32
    (no n x d upcast).  The result is float64, symmetric, clipped at 0, with an exact-zero
    diagonal.
    """
    a = as_matrix(x)
    g = centred_gram(a)
    sq = np.diag(g).copy()
    d2 = sq[:, None] + sq[None, :] - 2.0 * g
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def far_from(x: np.ndarray, centre: np.ndarray, ratio: float) -> np.ndarray:
    """Flag rows farther from ``centre`` than ``ratio`` x the median distance.

    A zero median distance gives no scale, so nothing is flagged then.
    """
    dist = distances_to(x, centre)
    med = float(np.median(dist))
    if not med > 0.0:
        return np.zeros(dist.shape[0], dtype=bool)
    return dist > ratio * med
