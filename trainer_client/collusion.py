"""Colluding adversaries that adapt to the defences: the attack math, pure numpy, no I/O.

Used by `scripts/bench_attacks.py --adaptive` only. Every function works on flattened updates
(pseudo-gradients Δ = w_global − w_local, as `backend.core.training.pseudo_gradient` returns
them, float64 rows) and returns what the colluders submit.

Threat model (what `Knowledge` holds): the colluders know everything public when they craft
round r: the revealed updates of earlier rounds, the earlier global models (hence the earlier
aggregate steps), the protocol and its code; they have their own shards, can train on them and
share everything among themselves. Commit–reveal hides the current round's honest updates from
them; only the *omniscient* stress attacks (`current_honest`) are given those as well.

The attacks, and where they come from:

- free riders (no training): `noisy_copy` of a peer's previous-round reveal, `replay_aggregate`
  of the last outer step, `zero` (a near-zero update);
- poisoners: `alie` (Baruah, Baruch & Goldberg, "A Little Is Enough: Circumventing Defenses
  for Distributed Learning", NeurIPS 2019), `ipm` (Xie, Koyejo & Gupta, "Fall of Empires:
  Breaking Byzantine-tolerant SGD by Inner Product Manipulation", UAI 2019), `min_max` and
  `min_sum` (Shejwalkar & Houmansadr, "Manipulating the Byzantine: Optimizing Model Poisoning
  Attacks and Defenses for Federated Learning", NDSS 2021).

Each colluder adds its own Gaussian jitter (`add_jitter`) to the shared crafted vector, so the
colluders' submissions are not copies of each other (copy detection would flag them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "CRAFTED",
    "FREE_RIDING",
    "Knowledge",
    "add_jitter",
    "alie",
    "alie_z",
    "craft",
    "ipm",
    "max_gamma",
    "min_max",
    "min_sum",
    "near_zero_fallback",
    "noisy_copy",
    "replay_aggregate",
    "std_perturbation",
]

#: Attacks `craft` builds from `Knowledge` (the others reuse `trainer_client.adversaries`).
CRAFTED = (
    "noisy_copy",
    "replay_aggregate",
    "zero",
    "alie",
    "ipm",
    "min_max",
    "min_sum",
    "alie_omniscient",
    "min_max_omniscient",
    "noisy_copy_current",
)
#: The crafted attacks that send no work of their own (no training needed, except `zero`'s).
FREE_RIDING = ("noisy_copy", "replay_aggregate", "zero", "noisy_copy_current")


@dataclass(frozen=True, eq=False)
class Knowledge:
    """What the colluders know when they craft one round's updates (rows are flat updates)."""

    n: int  # trainers in the job, colluders included
    own: np.ndarray | None = None  # (f, d) the colluders' honest updates this round
    previous_others: np.ndarray | None = None  # (m, d) the others' reveals of the last round
    previous_step: np.ndarray | None = None  # (d,) w_{r−1} − w_r: the last outer step as a Δ
    current_honest: np.ndarray | None = None  # (h, d) omniscient stress only


def add_jitter(v: np.ndarray, rel: float, rng: np.random.Generator) -> np.ndarray:
    """``v`` plus isotropic Gaussian noise whose L2 norm is exactly ``rel`` × ‖v‖."""
    v = np.asarray(v, dtype=np.float64)
    noise = rng.standard_normal(v.shape)
    scale = rel * float(np.linalg.norm(v)) / (float(np.linalg.norm(noise)) or 1.0)
    return v + scale * noise


def near_zero_fallback(d: int, rng: np.random.Generator, scale: float = 1e-6) -> np.ndarray:
    """What a free rider with nothing to copy sends (round 1): ``scale`` × a standard normal.

    `trainer_client.adversaries.near_zero` needs an honest update to shrink; a free rider that
    has not trained has none, so it shrinks noise instead. The defences flag it as near-zero.
    """
    return scale * rng.standard_normal(d)


def noisy_copy(source: np.ndarray, scale: float = 0.9) -> np.ndarray:
    """A free rider's copy of someone else's update, shrunk by ``scale`` (jitter is added later)."""
    return scale * np.asarray(source, dtype=np.float64)


def replay_aggregate(previous_step: np.ndarray, target_norm: float) -> np.ndarray:
    """The last outer step as a pseudo-gradient (w_{r−1} − w_r: the outer step moves the model
    by −lr × Δ, so this points like the updates did), rescaled to ``target_norm``."""
    step = np.asarray(previous_step, dtype=np.float64)
    norm = float(np.linalg.norm(step))
    return step * (target_norm / norm) if norm > 0 else step


def alie_z(n: int, f: int) -> float:
    """z_max of "A Little Is Enough" (Baruah et al. 2019, §3): with s = ⌊n/2 + 1⌋ − f honest
    workers the attackers need on their side, z = Φ⁻¹((n − s) / n)."""
    s = math.floor(n / 2 + 1) - f
    if not 0 < s < n:
        raise ValueError(f"ALIE's z is defined for 0 < f < n/2 + 1 attackers (n={n}, f={f})")
    return NormalDist().inv_cdf((n - s) / n)


def alie(benign: np.ndarray, z: float) -> np.ndarray:
    """ALIE: μ − z·σ coordinate-wise, from the benign updates the attackers have (Baruah et al.
    2019, Algorithm 3; σ is the sample standard deviation)."""
    x = np.asarray(benign, dtype=np.float64)
    return x.mean(axis=0) - z * x.std(axis=0, ddof=1)


def ipm(benign: np.ndarray, eps: float = 0.5) -> np.ndarray:
    """Inner-product manipulation (Xie et al. 2019, §4): −ε × the mean of the benign updates."""
    return -eps * np.asarray(benign, dtype=np.float64).mean(axis=0)


def std_perturbation(benign: np.ndarray) -> np.ndarray:
    """The "inverse standard deviation" perturbation of Shejwalkar & Houmansadr (2021, §IV-B):
    p = −σ / ‖σ‖ coordinate-wise over the benign updates."""
    sigma = np.asarray(benign, dtype=np.float64).std(axis=0, ddof=1)
    norm = float(np.linalg.norm(sigma))
    return -sigma / norm if norm > 0 else sigma


def _sq_dists_to(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.square(x - v).sum(axis=1)


def _pairwise_sq_dists(x: np.ndarray) -> np.ndarray:
    return np.stack([_sq_dists_to(x, row) for row in x])


def max_gamma(
    feasible: Callable[[float], bool], upper: float, rel_tol: float = 1e-6, max_iter: int = 200
) -> float:
    """The largest γ in [0, upper] with ``feasible(γ)``, by bisection.

    Shejwalkar & Houmansadr (2021, Algorithm 1) halve a step from γ_init; with a feasible 0 and
    an infeasible ``upper`` this is the same search to a relative tolerance. ``feasible`` must
    hold on an interval containing 0 (it does for both objectives below: convex in γ).
    """
    lo, hi = 0.0, float(upper)
    if feasible(hi):
        return hi
    for _ in range(max_iter):
        if hi - lo <= rel_tol * hi:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid)
    return lo


def min_max(benign: np.ndarray, p: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Min-Max (Shejwalkar & Houmansadr 2021, eq. 4): μ + γp with the largest γ such that its
    largest distance to a benign update is at most the largest distance between two of them.
    Returns (crafted, γ)."""
    x = np.asarray(benign, dtype=np.float64)
    mu = x.mean(axis=0)
    p = std_perturbation(x) if p is None else p
    bound = float(_pairwise_sq_dists(x).max())

    def feasible(g: float) -> bool:
        return float(_sq_dists_to(x, mu + g * p).max()) <= bound

    # ‖μ + γp − x_i‖ ≥ γ − ‖μ − x_i‖: past this γ no benign update is close enough
    upper = math.sqrt(bound) + math.sqrt(float(_sq_dists_to(x, mu).max())) + 1e-12
    g = max_gamma(feasible, upper)
    return mu + g * p, g


def min_sum(benign: np.ndarray, p: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Min-Sum (Shejwalkar & Houmansadr 2021, eq. 5): μ + γp with the largest γ such that its sum
    of squared distances to the benign updates is at most the largest such sum of one of them.
    Returns (crafted, γ)."""
    x = np.asarray(benign, dtype=np.float64)
    mu = x.mean(axis=0)
    p = std_perturbation(x) if p is None else p
    bound = float(_pairwise_sq_dists(x).sum(axis=1).max())

    def feasible(g: float) -> bool:
        return float(_sq_dists_to(x, mu + g * p).sum()) <= bound

    # Σ‖μ + γp − x_i‖² = Σ‖μ − x_i‖² + kγ²‖p‖² (the cross term vanishes about the mean)
    upper = math.sqrt(bound / len(x)) / max(float(np.linalg.norm(p)), 1e-300) + 1e-12
    g = max_gamma(feasible, upper)
    return mu + g * p, g


def _shared_vector(attack: str, k: Knowledge, eps: float) -> np.ndarray:
    """The one vector all poisoning colluders start from (before each adds its jitter)."""
    omniscient = attack.endswith("_omniscient")
    benign = k.current_honest if omniscient else k.own
    if benign is None:
        raise ValueError(f"{attack} needs updates to compute its statistics from")
    if attack.startswith("alie"):
        # f: the attackers among the n (omniscient: everyone not honest)
        f = k.n - len(benign) if omniscient else len(benign)
        return alie(benign, alie_z(k.n, f))
    if attack == "ipm":
        return ipm(benign, eps)
    if attack.startswith("min_max"):
        return min_max(benign)[0]
    if attack == "min_sum":
        return min_sum(benign)[0]
    raise ValueError(f"unknown crafted attack {attack!r}; known: {', '.join(CRAFTED)}")


def _free_ride(
    attack: str, k: Knowledge, f: int, rng: np.random.Generator, jitter: float, d: int
) -> list[np.ndarray]:
    """The free riders' submissions: copies, the replayed step, or near-zero updates."""
    if attack == "zero" and k.own is not None:
        return [add_jitter(1e-6 * row, jitter, rng) for row in k.own]
    pool = k.current_honest if attack == "noisy_copy_current" else k.previous_others
    if (
        attack == "zero"
        or pool is None
        or (attack == "replay_aggregate" and k.previous_step is None)
    ):
        return [add_jitter(near_zero_fallback(d, rng), jitter, rng) for _ in range(f)]
    if attack == "replay_aggregate":
        target = float(np.median(np.linalg.norm(pool, axis=1)))
        shared = replay_aggregate(k.previous_step, target)
        return [add_jitter(shared, jitter, rng) for _ in range(f)]
    return [add_jitter(noisy_copy(pool[j]), jitter, rng) for j in rng.integers(len(pool), size=f)]


def craft(
    attack: str,
    k: Knowledge,
    f: int,
    rng: np.random.Generator,
    *,
    jitter: float = 0.05,
    eps: float = 0.5,
    d: int | None = None,
) -> list[np.ndarray]:
    """The ``f`` colluders' submissions for one round, each with its own jitter.

    Free riders with nothing public to work from yet (round 1 for `noisy_copy` and
    `replay_aggregate`) send `near_zero_fallback`; `zero` shrinks each colluder's own update
    by 1e-6 (as `trainer_client.adversaries.near_zero`), jittered relative to itself. The
    poisoners all start from one shared vector (ALIE, IPM, Min-Max, Min-Sum).
    """
    if attack in FREE_RIDING:
        return _free_ride(attack, k, f, rng, jitter, d if d is not None else _width(k))
    shared = _shared_vector(attack, k, eps)
    return [add_jitter(shared, jitter, rng) for _ in range(f)]


def _width(k: Knowledge) -> int:
    for rows in (k.own, k.previous_others, k.current_honest):
        if rows is not None:
            return int(rows.shape[1])
    if k.previous_step is not None:
        return int(k.previous_step.shape[0])
    raise ValueError("no update to take the model size from: pass d")
