"""Simulated malicious trainers, used by the demo and the benchmarks to test the defences.

The attack functions take the honest pseudo-gradient (and what else the attack needs) and
return the update the attacker would submit; `label_flip` poisons the training data instead.
They are deliberately not tuned to be easy to detect. `AdversarialClient` is a `TrainerClient`
that applies one of them through the honest client's hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from backend.core.codec import Tensors
from backend.core.datasets import Dataset
from backend.core.jobspec import JobSpec
from trainer_client.client import TrainerClient

ATTACKS = ("sign_flip", "noise", "label_flip", "zero")


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


def poison_data(attack: str, data: Dataset, num_classes: int, family: str = "mlp") -> Dataset:
    """The data an attacker trains on: flipped labels for `label_flip`, else the honest data.

    A charlm row's bytes are its labels too (each position's target is the next byte), so
    there `label_flip` flips every byte: flipping y alone would poison one target in `context`.
    """
    if attack != "label_flip":
        return data
    y = flip_labels(data.y, num_classes)
    if family == "charlm":
        return Dataset((num_classes - 1 - data.x).astype(data.x.dtype), y)
    return Dataset(data.x, y)


def poison_update(attack: str, delta: Tensors, rng: np.random.Generator) -> Tensors:
    """The update an attacker submits instead of its honest Δ (unchanged for `label_flip`)."""
    if attack == "sign_flip":
        return sign_flip(delta)
    if attack == "noise":
        return gaussian_noise(delta, rng)
    if attack == "zero":
        return near_zero(delta)
    return delta


class AdversarialClient(TrainerClient):
    """A trainer that follows the protocol but submits a malicious update (`attack`)."""

    def __init__(self, *args: Any, attack: str, **kwargs: Any) -> None:
        if attack not in ATTACKS:
            raise ValueError(f"unknown attack {attack!r}; known: {', '.join(ATTACKS)}")
        super().__init__(*args, **kwargs)
        self.attack = attack

    def local_data(self, spec: JobSpec) -> Dataset:
        return poison_data(self.attack, self.data, spec.model.num_classes, spec.model.family)

    def make_update(self, w_global: Tensors, w_local: Tensors, seed: int) -> Tensors:
        # The noise is drawn from the round's training seed: reruns submit the same update.
        honest = super().make_update(w_global, w_local, seed)
        return poison_update(self.attack, honest, np.random.default_rng(seed))
