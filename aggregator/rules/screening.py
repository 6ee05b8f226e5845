"""The robust rules behind one name: `OutlierRule` (as recorded in the job spec) and its verdict.

Each rule lives in its own module (`multi_krum`, `median`, `trimmed_mean`, `norm_bound`,
`cosine`, `consensus`); this module dispatches to them.  Pure and deterministic.

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

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import numpy as np

from aggregator.rules.consensus import consensus_mask
from aggregator.rules.cosine import cosine_mask, cosine_norm_mask
from aggregator.rules.kernels import as_matrix
from aggregator.rules.median import median_mask
from aggregator.rules.multi_krum import multi_krum_mask
from aggregator.rules.norm_bound import norm_bound_flags
from aggregator.rules.trimmed_mean import trimmed_mean_mask

__all__ = [
    "SELECTION_ONLY_RULES",
    "OutlierRule",
    "OutlierRuleName",
    "Screening",
    "detect_outliers",
    "rule_from_dict",
    "screen_updates",
]

OutlierRuleName = Literal[
    "multi_krum", "median", "trimmed_mean", "norm_bound", "cosine", "cosine_norm", "consensus"
]


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
    a = as_matrix(x)
    n = a.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=bool)
    mask = _rule_mask(a, rule, centre)
    if mask.all():
        return np.zeros(n, dtype=bool)
    return mask


#: Each rule's raw mask on n >= 2 rows (before the never-exclude-everyone guard); the small-round
#: guards live with each rule.  The consensus rule's tests that need a model (reference
#: direction, norm clipping) run in the round (`aggregator.round.stages`).
_MASKS: dict[str, Callable[[np.ndarray, OutlierRule, np.ndarray | None], np.ndarray]] = {
    "multi_krum": lambda a, r, c: multi_krum_mask(a, r.num_malicious, r.to_keep),
    "median": lambda a, r, c: median_mask(a, r.median_dist_ratio),
    "trimmed_mean": lambda a, r, c: trimmed_mean_mask(a, r.beta, r.median_dist_ratio),
    "norm_bound": lambda a, r, c: norm_bound_flags(a, r.max_norm_ratio),
    "cosine": lambda a, r, c: cosine_mask(a, r.min_cosine, c),
    "cosine_norm": lambda a, r, c: cosine_norm_mask(a, r.max_norm_ratio, r.min_cosine, c),
    "consensus": lambda a, r, c: consensus_mask(a, r.min_pair_cosine, r.noise_sigmas),
}


def _rule_mask(a: np.ndarray, rule: OutlierRule, centre: np.ndarray | None) -> np.ndarray:
    """The raw mask of ``rule`` on n >= 2 rows (before the never-exclude-everyone guard)."""
    return _MASKS[rule.name](a, rule, centre)
