"""The harm test: an update that, applied alone, hurts the validation loss is poisoning.

Applied under every robust rule (``RuleSpec.harm_ratio``, 0 disables it): an update that hurts
the validation loss more than ``harm_ratio`` x a typical accepted update helps it is poisoning
(sign flips of any scale, label flips), not an unlucky shard. "Typical" is an order statistic
that the job's assumed share of colluders cannot steer (:func:`robust_gain_scale`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["harm_bar", "low_outlier_bar", "robust_gain_scale"]


def low_outlier_bar(values: np.ndarray, k: float = 3.0) -> float:
    """median − k·σ̂, with σ̂ from the values ABOVE the median (1.4826 × their median distance).

    Under an honest majority the upper half is honest, so σ̂ is the honest scatter even when
    up to half the values are attackers clustered low (a symmetric MAD would widen with them).
    """
    med = float(np.median(values))
    upper = values[values >= med] - med
    sigma = 1.4826 * float(np.median(upper)) if upper.size else 0.0
    return med - k * sigma


def robust_gain_scale(gains: np.ndarray, max_fraction: float) -> float:
    """The ``(f+1)``-th largest gain, ``f = floor(max_fraction x n)``.

    Up to ``f`` crafted gains cannot pull it below the honest gains' ``(f+1)``-th largest,
    nor push it above the largest honest gain: tiny positive gains (IPM) do not lower it.
    """
    f = int(max_fraction * gains.size)
    return float(np.sort(gains)[::-1][min(f, gains.size - 1)])


def harm_bar(gains: np.ndarray, harm_ratio: float, max_fraction: float = 0.3) -> float | None:
    """The gain below which an update is harmful; None when no update helps (no scale).

    Below ``-harm_ratio`` x :func:`robust_gain_scale` AND a robust low outlier among
    ``gains`` (3 sigma below their median). ``gains`` are those of the aggregated updates
    only, so holding some out of the aggregate does not move the bar; with up to
    ``max_fraction`` of them crafted, the first term stays at least ``harm_ratio`` x an honest
    gain away from 0. Known gap: crafted gains bunched at the median shrink the second term's
    spread (see contracts/SPEC.md, Contribution integrity).
    """
    if not (gains > 0).any():
        return None
    scale = max(robust_gain_scale(gains, max_fraction), 0.0)
    return min(-harm_ratio * scale, low_outlier_bar(gains))
