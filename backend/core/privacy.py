"""Local differential privacy for trainers: DP-SGD with Opacus, and the ε claim an update carries.

A job's `[privacy]` table (`backend.core.jobspec.PrivacySpec`) asks each trainer to train with
DP-SGD: Poisson-sampled batches (each row in with probability q = 1 / ceil(rows / batch_size)),
each per-sample gradient clipped to `clip_norm`, Gaussian noise of std `noise_multiplier` x
`clip_norm` added to the batch's sum. Opacus does the per-sample gradients, the clipping and the
noise (GradSampleModule, DPOptimizer, DPDataLoader); every loss goes through the model family's
hook (`backend.core.models.batch_loss`).

What ε means here: the trainer's whole participation in the job. `target_epsilon` is the budget
for every round together, so the noise is set (Opacus's `get_noise_multiplier`, RDP accountant)
from rounds x steps per round. The ε an update claims is the cumulative ε after rounds 1..r,
computed statelessly from the accountant history [(σ, q, r x steps per round)]: an upper bound
for a trainer that skipped rounds (composition only grows with steps), exact for one that took
part in every round, on a fixed local dataset.

The claim travels in the update's safetensors `__metadata__` (keys `dp_*`), so the content hash
the trainer commits to binds it, and it is public once the update is revealed. It is
self-reported: nobody can check from the update that noise was added.

The noise and the batch sampling must be unpredictable: their generators are seeded from 64
secret bits of the OS unless a seed is given (simulations and benchmarks, for reproducibility).
"""

from __future__ import annotations

import functools
import math
import re
import secrets
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from backend.core.codec import Tensors
from backend.core.datasets import Dataset
from backend.core.errors import ConfigError, Reason, UpdateRejected
from backend.core.jobspec import PrivacySpec, TrainingSpec
from backend.core.models import ModelSpec, batch_loss, build_model, get_weights, set_weights

__all__ = [
    "CLAIM_KEYS",
    "DPPlan",
    "PrivacyClaim",
    "budget_note",
    "claim_from_metadata",
    "epsilon_after",
    "plan_dp",
    "train_local_dp",
]

#: The metadata keys of a claim, all present or none.
CLAIM_KEYS = ("dp_epsilon", "dp_delta", "dp_noise_multiplier", "dp_clip_norm")
_MAX_VALUE_CHARS = 32
_MAX_VALUE = 1e6
#: The largest ε a claim states: a larger (or infinite) accounted ε is claimed as this, which
#: reads "at least 1e300". ε itself has no ceiling: a job's own settings can make an honest
#: trainer's ε enormous, and that must never make its update malformed (slashable).
CLAIM_MAX_EPSILON = 1e300
#: A claim's numbers: plain ASCII decimals as Python's repr writes them (no '_', no Unicode
#: digits, no spaces), so a verifier in any language parses the same claims as malformed.
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?")


@dataclass(frozen=True)
class PrivacyClaim:
    """What a trainer says its update spent: the cumulative (ε, δ) of its participation so far,
    with the noise multiplier and clip norm it trained with."""

    epsilon: float
    delta: float
    noise_multiplier: float
    clip_norm: float

    def to_metadata(self) -> dict[str, str]:
        """The claim as safetensors metadata (repr: the shortest string that reads back exactly)."""
        eps = self.epsilon if math.isfinite(self.epsilon) else CLAIM_MAX_EPSILON
        values = (min(eps, CLAIM_MAX_EPSILON), self.delta, self.noise_multiplier, self.clip_norm)
        return {k: repr(float(v)) for k, v in zip(CLAIM_KEYS, values, strict=True)}


def claim_from_metadata(meta: Mapping[str, str]) -> PrivacyClaim | None:
    """The privacy claim in an untrusted update's metadata; None if it makes none.

    Raises UpdateRejected(UNDECODABLE) for a partial or malformed claim: each value a short
    decimal string, finite, in range (0 <= ε <= 1e6, 0 < δ < 1, 0 < σ, clip <= 1e6).
    """
    present = [k for k in CLAIM_KEYS if k in meta]
    if not present:
        return None
    if len(present) != len(CLAIM_KEYS):
        missing = [k for k in CLAIM_KEYS if k not in meta]
        raise _bad_claim(f"incomplete: {', '.join(missing)} missing")
    eps, delta, sigma, clip = (_number(k, meta[k]) for k in CLAIM_KEYS)
    if eps > CLAIM_MAX_EPSILON:
        raise _bad_claim(f"dp_epsilon {eps!r} is above {CLAIM_MAX_EPSILON:g}")
    if not 0 < delta < 1:
        raise _bad_claim(f"dp_delta {delta!r} is outside (0, 1)")
    for key, value in (("dp_noise_multiplier", sigma), ("dp_clip_norm", clip)):
        if not 0 < value <= _MAX_VALUE:
            raise _bad_claim(f"{key} {value!r} is outside (0, {_MAX_VALUE:g}]")
    return PrivacyClaim(eps, delta, sigma, clip)


def _number(key: str, text: str) -> float:
    if len(text) > _MAX_VALUE_CHARS:
        raise _bad_claim(f"{key} is {len(text)} characters long")
    if not _DECIMAL.fullmatch(text):
        raise _bad_claim(f"{key} {text!r} is not a plain non-negative decimal")
    value = float(text)
    if not math.isfinite(value):
        raise _bad_claim(f"{key} {text!r} is not finite")
    return value


def _bad_claim(detail: str) -> UpdateRejected:
    return UpdateRejected(Reason.UNDECODABLE, f"privacy claim in the metadata: {detail}")


def budget_note(claim: PrivacyClaim | None, privacy: PrivacySpec | None) -> str:
    """How a claim compares with what the job asks: '' when it complies (or the job asks for
    nothing), else a few words ('no privacy claim', 'ε 9.1 > target 8', ...)."""
    if privacy is None:
        return ""
    if claim is None:
        return "no privacy claim"
    notes = []
    if privacy.target_epsilon is not None and claim.epsilon > privacy.target_epsilon:
        notes.append(f"ε {claim.epsilon:.3g} > target {privacy.target_epsilon:g}")
    if privacy.noise_multiplier is not None and claim.noise_multiplier < privacy.noise_multiplier:
        notes.append(f"noise {claim.noise_multiplier:.3g} < {privacy.noise_multiplier:g}")
    if claim.clip_norm > privacy.clip_norm:
        notes.append(f"clip {claim.clip_norm:.3g} > {privacy.clip_norm:g}")
    if claim.delta > privacy.delta:
        notes.append(f"δ {claim.delta:.3g} > {privacy.delta:g}")
    return "; ".join(notes)


# -- accounting --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DPPlan:
    """A trainer's DP-SGD settings for a job: the sampling rate, steps per round and noise."""

    sample_rate: float
    steps_per_round: int
    noise_multiplier: float
    clip_norm: float
    delta: float


def plan_dp(privacy: PrivacySpec, training: TrainingSpec, rows: int, rounds: int) -> DPPlan:
    """The DP-SGD plan for `rows` local rows over a job of `rounds` rounds: with a target ε,
    the noise that spends it over every round's steps (Opacus, RDP accountant)."""
    if rows < 1 or rounds < 1:
        raise ConfigError(f"DP-SGD needs at least one row and one round (got {rows}, {rounds})")
    batches = -(-rows // training.batch_size)
    sample_rate = 1.0 / batches  # Opacus's: one expected batch_size per step
    steps = batches * training.local_epochs
    sigma = privacy.noise_multiplier
    if sigma is None:
        assert privacy.target_epsilon is not None  # the spec's validator: exactly one is set
        sigma = _noise_for(privacy.target_epsilon, privacy.delta, sample_rate, steps * rounds)
    return DPPlan(sample_rate, steps, sigma, privacy.clip_norm, privacy.delta)


@functools.lru_cache(maxsize=64)
def _noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """Opacus's search for the noise multiplier (a few seconds: cached, since trainers with
    equal shards in a simulation share it)."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "optimal order is the largest alpha"
        try:
            return float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant="rdp",
                )
            )
        except ValueError as exc:  # Opacus: "The privacy budget is too low."
            raise ConfigError(
                f"the job's target ε {target_epsilon:g} (δ {delta:g}) cannot be met by DP-SGD "
                f"over {steps} steps at sampling rate {sample_rate:.3g} ({exc}); more rows per "
                "batch-size, or a job with a larger target"
            ) from None


def epsilon_after(plan: DPPlan, rounds_done: int) -> float:
    """The cumulative ε after `rounds_done` rounds of DP-SGD under `plan` (RDP accountant;
    an upper bound when some of those rounds were skipped)."""
    steps = plan.steps_per_round * rounds_done
    return _epsilon(plan.noise_multiplier, plan.sample_rate, steps, plan.delta)


@functools.lru_cache(maxsize=256)
def _epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta=delta))


# -- training ----------------------------------------------------------------------------------
def train_local_dp(
    spec: ModelSpec,
    global_weights: Mapping[str, np.ndarray],
    data: Dataset,
    training: TrainingSpec,
    privacy: PrivacySpec,
    *,
    rounds: int,
    round_: int,
    seed: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensors, float, PrivacyClaim]:
    """DP-SGD from the global weights for one round of a `rounds`-round job; return (local
    weights, last non-empty batch's loss, the claim: cumulative ε after rounds 1..`round_`).

    `seed` None (a real trainer): the batch sampling and the noise come from secret OS entropy;
    a known seed would let anyone regenerate the noise and subtract it.
    """
    from opacus import GradSampleModule
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer
    from opacus.validators import ModuleValidator

    plan = plan_dp(privacy, training, len(data.y), rounds)
    model = build_model(spec)
    set_weights(model, global_weights)
    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise ConfigError(f"DP-SGD cannot train this model: {problems[0]}")
    model.to(device)
    model.train()
    base = secrets.randbits(63) if seed is None else seed
    sampler = torch.Generator().manual_seed(base)
    noise = torch.Generator(device=torch.device(device)).manual_seed(base ^ 0x5DEECE66D)
    private = GradSampleModule(model)
    opt = DPOptimizer(
        torch.optim.SGD(private.parameters(), lr=training.lr, momentum=training.momentum),
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.clip_norm,
        expected_batch_size=training.batch_size,
        generator=noise,
    )
    rows = torch.utils.data.TensorDataset(
        torch.as_tensor(data.x, dtype=torch.float32), torch.as_tensor(data.y, dtype=torch.long)
    )
    loader = DPDataLoader(rows, sample_rate=plan.sample_rate, generator=sampler)
    loss_value, done, total = float("nan"), 0, plan.steps_per_round
    for _ in range(training.local_epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = batch_loss(spec, private, x.to(device), y.to(device))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # inputs need no grad: expected
                loss.backward()
            opt.step()  # an empty batch still steps: its noise is part of the guarantee
            if len(y):
                loss_value = float(loss.item())
            done += 1
            if on_step is not None:
                on_step(done, total)
    claim = PrivacyClaim(
        epsilon_after(plan, round_), plan.delta, plan.noise_multiplier, plan.clip_norm
    )
    return get_weights(model), loss_value, claim
