"""The consensus rule, whole: noise-like updates, the reference direction and norm clipping.

Three tests, none of which needs an absolute threshold that fits every model and dataset:

* noise: an update no peer points towards (its largest cosine to another update sits within
  ``noise_sigmas`` standard deviations of random directions) is flagged;
* reference direction (as in FLTrust): one pass of the job's own local training on the
  validation split; an update whose cosine to it is far below the median update's is flagged;
* norms are clipped to ``max_norm_ratio`` x the median instead of flagged: a large update is
  not proof of cheating, but it must not dominate the aggregate.

Pure and deterministic (the reference pass is seeded); no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aggregator.rules.harm import low_outlier_bar
from aggregator.rules.kernels import ROW_BLOCK, as_matrix, gram64
from backend.core.codec import Template, Tensors
from backend.core.datasets import Dataset
from backend.core.jobspec import JobSpec
from backend.core.training import pseudo_gradient, train_local

__all__ = [
    "ReferenceVerdict",
    "clip_factors",
    "consensus_mask",
    "max_pair_cosines",
    "reference_direction",
    "reference_test",
]


def max_pair_cosines(x: np.ndarray) -> np.ndarray:
    """Each row's largest cosine to any OTHER row (one Gram matrix), float64.

    Honest updates always have some peer pointing their way, even on non-IID shards; random
    noise of any norm has cosine ~1/sqrt(d) to everything. A zero row gets -inf... never: 0.
    """
    a = as_matrix(x)
    n = a.shape[0]
    if n < 2:
        return np.ones(n, dtype=np.float64)
    g = gram64(a)
    norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
    denom = np.outer(norms, norms)
    cos = np.divide(g, denom, out=np.zeros_like(g), where=denom > 0)
    np.fill_diagonal(cos, -np.inf)
    return cos.max(axis=1)


def consensus_mask(a: np.ndarray, min_pair_cosine: float, noise_sigmas: float) -> np.ndarray:
    """Noise-like rows: no peer points their way (n < 3: none).

    Independent random directions have cosine ~ N(0, 1/d), so the bar sits ``noise_sigmas``
    standard deviations above that (or at ``min_pair_cosine`` if higher).
    """
    if a.shape[0] < 3:
        return np.zeros(a.shape[0], dtype=bool)
    bar = max(min_pair_cosine, noise_sigmas / np.sqrt(a.shape[1]))
    return max_pair_cosines(a) < bar


def reference_direction(
    spec: JobSpec, global_weights: Tensors, validation: Dataset, template: Template
) -> np.ndarray:
    """The aggregator's own pseudo-gradient: one seeded local-training pass on the validation."""
    seed = spec.aggregation.seed
    w_ref, _ = train_local(spec.model, global_weights, validation, spec.training, seed=seed)
    return template.flatten(pseudo_gradient(global_weights, w_ref), np.float64)


@dataclass(frozen=True, eq=False)  # arrays: == would be ambiguous
class ReferenceVerdict:
    """Each row's cosine to the reference direction, their median and the flagged rows."""

    cosines: np.ndarray
    median: float
    flagged: np.ndarray  # all False when the median cosine is not positive


def reference_test(
    rows: np.ndarray,
    reference: np.ndarray,
    ref_ratio: float,
    *,
    order: Sequence[int] | None = None,
) -> ReferenceVerdict:
    """Flag rows far below the median cosine to ``reference`` AND a robust low outlier.

    Honest updates, even from skewed shards, keep a clearly positive cosine to the reference;
    label-flipped, sign-flipped and noise updates do not. Relative to the median update's
    cosine, so no absolute threshold has to fit every model and dataset. ``order``: the rows
    to test, in that order (default all); read a block of rows at a time, never copied whole.
    """
    pick = np.arange(rows.shape[0]) if order is None else np.asarray(order, dtype=np.int64)
    ref_norm = float(np.linalg.norm(reference))
    dots, row_n = np.empty(pick.size), np.empty(pick.size)
    for start in range(0, pick.size, ROW_BLOCK):
        part = slice(start, start + ROW_BLOCK)
        block = np.asarray(rows[pick[part]], dtype=np.float64)
        dots[part] = block @ reference
        row_n[part] = np.linalg.norm(block, axis=1)
    cosines = np.divide(dots, row_n * ref_norm, out=np.zeros(pick.size), where=row_n * ref_norm > 0)
    median_cos = float(np.median(cosines))
    # Near convergence honest updates scatter around the reference; only an update that is
    # both far below the median and a robust outlier (3 sigma) is flagged.
    bar = min(ref_ratio * median_cos, low_outlier_bar(cosines))
    flagged = cosines < bar if median_cos > 0 else np.zeros(pick.size, dtype=bool)
    return ReferenceVerdict(cosines, median_cos, flagged)


def clip_factors(norms: Sequence[float], max_norm_ratio: float) -> list[float]:
    """Per-row factor clipping each norm to ``max_norm_ratio`` x the median norm (<= 1)."""
    bound = max_norm_ratio * float(np.median(norms))
    return [(min(1.0, bound / n) if n > 0 else 1.0) for n in norms]
