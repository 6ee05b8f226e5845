"""The aggregator's memory: a round holds its decoded updates once, plus a workspace that does
not grow with the number of trainers (issue 16).

Measured with tracemalloc, which sees numpy's buffers. The inputs (the revealed blobs, the
earlier rounds' public updates, the momentum) exist before the round; what the round adds must
grow with the number of trainers by one float32 matrix of their updates, no more: no float64
copy of them, no copy in another order, no concatenation of the earlier rounds.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from aggregator.round.compute import PublicUpdates, Submission, compute_round
from aggregator.round.replay import previous_updates
from backend.core import codec
from backend.core.datasets import load_digits_dataset, split_train_validation_test
from backend.core.errors import Reason
from backend.core.jobspec import JobSpec
from backend.core.models import ModelSpec, build_model, get_weights, template_of
from backend.core.training import pseudo_gradient, train_local

EARLIER_ROUNDS = 2


@pytest.fixture(scope="module")
def setting():
    train, val, _ = split_train_validation_test(load_digits_dataset())
    spec = JobSpec(model=ModelSpec(hidden=[512]))
    w0 = get_weights(build_model(spec.model))
    w_local, _ = train_local(spec.model, w0, train, spec.training, seed=0)
    template = template_of(spec.model)
    return spec, w0, val, template.flatten(pseudo_gradient(w0, w_local), np.float32)


def _round_growth(setting, n: int) -> tuple[int, int, int]:
    """(bytes the round allocated at its peak, bytes of its decoded updates, accepted)."""
    spec, w0, val, direction = setting
    template = template_of(spec.model)
    rng = np.random.default_rng(n)

    scale = 0.3 * float(np.linalg.norm(direction)) / direction.size**0.5

    def noise() -> np.ndarray:
        return scale * rng.standard_normal(direction.size).astype(np.float32)

    def honest() -> np.ndarray:  # the useful direction (new this round), each with its noise
        return direction + noise()

    owners = tuple(f"0x{i + 1:040x}" for i in range(n))
    earlier = [
        PublicUpdates(np.stack([noise() for _ in owners]), owners, np.ones(n, dtype=bool))
        for _ in range(EARLIER_ROUNDS)
    ]
    subs = [
        Submission(o, codec.encode(template.unflatten(honest())), commit_order=i)
        for i, o in enumerate(owners)
    ]
    momentum = noise().astype(np.float64)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = compute_round(spec, w0, subs, val, previous_updates(earlier), momentum)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    accepted = sum(o.reason == Reason.ACCEPTED and o.score > 0 for o in out.outcomes)
    return peak, n * direction.size * 4, accepted


def test_a_round_holds_its_updates_once_plus_a_constant(setting) -> None:
    # Large enough that every blocked kernel works at its fixed block size in both rounds
    # (64 rows, or 16 MB of float64 columns): the workspace is then the same constant.
    small, large = _round_growth(setting, 64), _round_growth(setting, 192)
    # the whole pipeline ran: most updates were aggregated and paid, in both rounds
    assert small[2] >= 48 and large[2] >= 144, (small, large)
    growth = (large[0] - small[0]) / (large[1] - small[1])
    # 1.0 is the decoded matrix itself; a float64 copy of the updates would add 2.0, the
    # earlier rounds concatenated (with the momentum) 2.0, a reordered copy 1.0
    assert growth < 1.25, (growth, small, large)
