"""Malicious trainer behaviours, used by the demo and the attack benchmark to test defences.

Each takes the honest pseudo-gradient (and what else the attack needs) and returns the update
the attacker would submit. They are deliberately not tuned to be easy to detect.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from backend.core.codec import Tensors

ATTACKS = ("sign_flip", "noise", "label_flip", "copy", "zero")


def sign_flip(delta: Mapping[str, np.ndarray], scale: float = 4.0) -> Tensors:
    """Send −scale × the honest update: pushes the model uphill."""
    return {
        k: (-scale * np.asarray(v, dtype=np.float32)).astype(np.float32) for k, v in delta.items()
    }


def gaussian_noise(delta: Mapping[str, np.ndarray], rng: np.random.Generator) -> Tensors:
    """Gaussian noise with the same overall L2 norm as the honest update."""
    norm = float(np.sqrt(sum(float(np.square(v, dtype=np.float64).sum()) for v in delta.values())))
    raw = {k: rng.standard_normal(np.shape(v)) for k, v in delta.items()}
    raw_norm = float(np.sqrt(sum(float(np.square(v).sum()) for v in raw.values()))) or 1.0
    return {k: (v * (norm / raw_norm)).astype(np.float32) for k, v in raw.items()}


def near_zero(delta: Mapping[str, np.ndarray], scale: float = 1e-6) -> Tensors:
    """A free rider: a tiny update that costs nothing to produce."""
    return {
        k: (scale * np.asarray(v, dtype=np.float32)).astype(np.float32) for k, v in delta.items()
    }


def flip_labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Label-flip poisoning: class c becomes num_classes − 1 − c."""
    return (num_classes - 1 - y).astype(y.dtype)
