"""Weighted aggregation of pseudo-gradients and the outer optimiser step (DiLoCo style).

Pure float64 math: inputs are never mutated; results are new arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["OuterOptimizer", "outer_step", "weighted_mean"]

#: Column-block width of the float64 accumulator (512 KiB: stays in cache).
_MEAN_BLOCK = 65536


def weighted_mean(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Float64 ``sum_i w_i x_i / sum_i w_i`` over the rows of ``x``.

    Weights must be finite and >= 0; rows with weight 0 are skipped entirely (their content,
    even NaN, is ignored).  All-zero weights return a zero vector.  The sum is accumulated row
    by row in the given order, block by block over columns, so the result is bit-for-bit
    reproducible (no BLAS reduction order involved) and float32 input is never copied whole.
    """
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array of updates (n x d), got shape {a.shape}")
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != a.shape[0]:
        raise ValueError(f"{w.shape[0]} weights for {a.shape[0]} updates")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    d = a.shape[1]
    out = np.zeros(d, dtype=np.float64)
    nz = np.flatnonzero(w > 0)
    if nz.size == 0:
        return out
    total = float(np.sum(w[nz]))
    acc = np.empty(min(d, _MEAN_BLOCK), dtype=np.float64)
    tmp = np.empty_like(acc)
    for start in range(0, d, _MEAN_BLOCK):
        stop = min(d, start + _MEAN_BLOCK)
        ac = acc[: stop - start]
        ac.fill(0.0)
        for i in nz:
            row = a[i, start:stop]
            wi = float(w[i])
            if wi == 1.0:
                np.add(ac, row, out=ac)
            else:
                tm = tmp[: stop - start]
                np.multiply(row, wi, out=tm, dtype=np.float64)
                np.add(ac, tm, out=ac)
        np.divide(ac, total, out=out[start:stop])
    return out


@dataclass(frozen=True)
class OuterOptimizer:
    """Outer optimiser applied to the aggregated pseudo-gradient."""

    kind: Literal["sgd", "nesterov"] = "sgd"
    lr: float = 1.0
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in ("sgd", "nesterov"):
            raise ValueError(f"unknown outer optimiser {self.kind!r}")
        if not (np.isfinite(self.lr) and self.lr >= 0):
            raise ValueError("lr must be finite and >= 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError("momentum must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OuterOptimizer:
        """Inverse of :meth:`to_dict`."""
        unknown = set(d) - {"kind", "lr", "momentum"}
        if unknown:
            raise ValueError(f"unknown outer optimiser fields: {sorted(unknown)}")
        return cls(
            kind=str(d.get("kind", "sgd")),  # type: ignore[arg-type]
            lr=float(d.get("lr", 1.0)),
            momentum=float(d.get("momentum", 0.9)),
        )


def outer_step(
    w: np.ndarray,
    delta: np.ndarray,
    opt: OuterOptimizer,
    momentum_buf: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One outer step with the pseudo-gradient ``delta`` as the gradient.

    sgd: ``w - lr * delta``; it keeps no state, so the returned buffer is None.
    nesterov (torch SGD, dampening 0): ``buf = mu * buf + delta`` (``buf`` None = zeros),
    ``w - lr * (delta + mu * buf)``; returns ``(new_w, new_buf)``.
    """
    w64 = np.asarray(w, dtype=np.float64)
    g = np.asarray(delta, dtype=np.float64)
    if w64.shape != g.shape:
        raise ValueError(f"shape mismatch: w {w64.shape} vs delta {g.shape}")
    if opt.kind == "sgd":
        return w64 - opt.lr * g, None
    if momentum_buf is None:
        buf = g.copy()
    else:
        old = np.asarray(momentum_buf, dtype=np.float64)
        if old.shape != g.shape:
            raise ValueError(f"shape mismatch: momentum_buf {old.shape} vs delta {g.shape}")
        buf = opt.momentum * old + g
    step = g + opt.momentum * buf
    return w64 - opt.lr * step, buf
