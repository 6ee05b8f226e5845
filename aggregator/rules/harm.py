"""The harm test: an update that, applied alone, hurts the validation loss is poisoning.

Applied under every robust rule (``RuleSpec.harm_ratio``, 0 disables it): an update that hurts
the validation loss more than the median accepted update helps it is poisoning (sign flips of
any scale, label flips), not an unlucky shard.
"""

from __future__ import annotations

import numpy as np

__all__ = ["harm_bar", "low_outlier_bar"]


def low_outlier_bar(values: np.ndarray, k: float = 3.0) -> float:
    """median − k·σ̂, with σ̂ from the values ABOVE the median (1.4826 × their median distance).

    Under an honest majority the upper half is honest, so σ̂ is the honest scatter even when
    up to half the values are attackers clustered low (a symmetric MAD would widen with them).
    """
    med = float(np.median(values))
    upper = values[values >= med] - med
    sigma = 1.4826 * float(np.median(upper)) if upper.size else 0.0
    return med - k * sigma


def harm_bar(gains: np.ndarray, harm_ratio: float) -> float | None:
    """The gain below which an update is harmful; None when no update helps (no scale).

    Below ``-harm_ratio`` x the median positive gain AND a robust low outlier among ``gains``
    (3 sigma below their median). ``gains`` are those of the aggregated updates only, so
    holding some out of the aggregate does not move the bar.
    """
    helpful = gains[gains > 0]
    if not helpful.size:
        return None
    return min(-harm_ratio * float(np.median(helpful)), low_outlier_bar(gains))
