"""Contribution scoring: loss gain alone, leave-one-out and (GTG-)Shapley values.

``value(mask)`` is the caller's utility of aggregating the subset ``mask`` (bool[n]), e.g.
the validation-loss decrease of the model built from those updates; ``value`` of the empty
set should be the utility of not updating (usually 0).  It must return a finite float.
All scores are float64 and clipped at 0: a harmful update scores 0, never negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "SubsetValue",
    "exact_shapley",
    "leave_one_out",
    "loss_gain_alone",
    "normalise",
    "shapley_monte_carlo",
]

SubsetValue = Callable[[np.ndarray], float]

#: exact_shapley evaluates 2**n subsets; refuse beyond this.
MAX_EXACT_PLAYERS = 20


def _clip(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    return np.where(np.isfinite(s) & (s > 0.0), s, 0.0)


class _CachedValue:
    """Memoises ``value`` by the mask's bytes and checks the result is a finite float."""

    def __init__(self, value: SubsetValue) -> None:
        self._value = value
        self._cache: dict[bytes, float] = {}
        self.calls = 0

    def __call__(self, mask: np.ndarray) -> float:
        key = mask.tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        v = float(self._value(mask.copy()))
        self.calls += 1
        if not math.isfinite(v):
            raise ValueError(
                f"value() returned non-finite {v!r}; map divergence to a finite utility"
            )
        self._cache[key] = v
        return v


def loss_gain_alone(base_loss: float, losses_alone: np.ndarray) -> np.ndarray:
    """``max(0, base_loss - loss_i)`` per update in float64; NaN / inf losses score 0."""
    gain = float(base_loss) - np.asarray(losses_alone, dtype=np.float64)
    return _clip(gain)


def leave_one_out(value: SubsetValue, n: int) -> np.ndarray:
    """``LOO_i = max(0, v(all) - v(all without i))`` with n + 1 calls of ``value``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    v = _CachedValue(value)
    full = np.ones(n, dtype=bool)
    v_all = v(full)
    out = np.zeros(n, dtype=np.float64)
    for i in range(n):
        mask = full.copy()
        mask[i] = False
        out[i] = v_all - v(mask)
    return _clip(out)


def shapley_monte_carlo(
    value: SubsetValue,
    n: int,
    *,
    permutations: int = 32,
    seed: int = 0,
    truncation_tol: float = 0.0,
) -> np.ndarray:
    """GTG-Shapley style permutation-sampling estimate of Shapley values, clipped at 0.

    Permutation ``t`` starts with player ``t mod n`` (guided sampling: every player leads
    equally often) followed by a ``np.random.default_rng(seed)`` shuffle of the others.
    Within a permutation, once ``|v(all) - v(prefix)| < truncation_tol`` the remaining
    players get marginal 0 (and if ``|v(all) - v(empty)| < truncation_tol`` everyone scores
    0).  ``truncation_tol = 0`` disables truncation.  Subset values are cached.
    """
    if n < 0 or permutations < 1:
        raise ValueError("n must be >= 0 and permutations >= 1")
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    v = _CachedValue(value)
    empty = np.zeros(n, dtype=bool)
    v_empty = v(empty)
    v_full = v(np.ones(n, dtype=bool))
    sums = np.zeros(n, dtype=np.float64)
    if truncation_tol > 0.0 and abs(v_full - v_empty) < truncation_tol:
        return sums
    players = np.arange(n)
    for t in range(permutations):
        lead = t % n
        rest = rng.permutation(np.delete(players, lead))
        mask = empty.copy()
        prev = v_empty
        for i in (lead, *rest.tolist()):
            if truncation_tol > 0.0 and abs(v_full - prev) < truncation_tol:
                break
            mask[i] = True
            cur = v(mask)
            sums[i] += cur - prev
            prev = cur
    return _clip(sums / permutations)


def exact_shapley(value: SubsetValue, n: int, *, clip: bool = True) -> np.ndarray:
    """Exact Shapley values by enumerating all 2**n subsets (small n only, tests/audits)."""
    if n < 0 or n > MAX_EXACT_PLAYERS:
        raise ValueError(f"exact_shapley supports 0 <= n <= {MAX_EXACT_PLAYERS}")
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    size = 1 << n
    bits = ((np.arange(size)[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)
    vals = np.array([float(value(bits[s].copy())) for s in range(size)], dtype=np.float64)
    if not np.all(np.isfinite(vals)):
        raise ValueError("value() returned a non-finite utility")
    card = bits.sum(axis=1)
    fact = [math.factorial(k) for k in range(n + 1)]
    # weight of a coalition S (not containing i) of size k: k! (n-k-1)! / n!
    coef = np.array([fact[k] * fact[n - k - 1] / fact[n] if k < n else 0.0 for k in range(n + 1)])
    phi = np.zeros(n, dtype=np.float64)
    subsets = np.arange(size)
    for i in range(n):
        without = subsets[~bits[:, i]]
        phi[i] = float(np.sum(coef[card[without]] * (vals[without | (1 << i)] - vals[without])))
    return _clip(phi) if clip else phi


def normalise(scores: np.ndarray) -> np.ndarray:
    """Non-negative shares summing to 1; all zeros if no score is positive (NaN counts as 0)."""
    s = _clip(scores)
    total = float(np.sum(s))
    if not total > 0.0:
        return np.zeros_like(s)
    return s / total
