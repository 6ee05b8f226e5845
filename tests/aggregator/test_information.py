"""Pay for information, not resemblance: the information score and the data-derived copy bar.

Each attack of issue 14 is written first as the case that must fail to pay.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from aggregator.round.stages import Decoded, Selection, Verdicts, check_harm
from aggregator.rules.copies import REASON_COPY, REASON_REPLAY, copy_verdict
from aggregator.rules.fixedpoint import to_fixed_point
from aggregator.rules.harm import harm_bar, robust_gain_scale
from aggregator.rules.information import (
    MAX_PUBLIC_DIRECTIONS,
    chance_gain_scale,
    information_scores,
    innovation,
    public_basis,
)
from backend.core.errors import Reason
from backend.core.jobspec import JobSpec

D = 4000


def trainers(rng: np.random.Generator, n: int, persistence: float = 0.95) -> tuple:
    """Honest updates of two rounds: a shared direction, a per-trainer direction that
    persists between rounds, and fresh per-round noise (private data, new model)."""
    common = rng.standard_normal(D)
    own = rng.standard_normal((n, D))
    prev = common + 1.2 * own + 0.3 * rng.standard_normal((n, D))
    fresh = np.sqrt(1 - persistence**2) * rng.standard_normal((n, D))
    cur = common + 1.2 * own + 0.3 * rng.standard_normal((n, D)) + 2.0 * fresh
    return prev, cur


def jitter(rng: np.random.Generator, v: np.ndarray, rel: float) -> np.ndarray:
    e = rng.standard_normal(v.shape)
    return v + rel * np.linalg.norm(v) * e / np.linalg.norm(e)


def names(n: int, prefix: str = "0x") -> list[str]:
    return [f"{prefix}{i:040x}" for i in range(n)]


def test_innovation_of_any_mix_of_public_vectors_is_zero() -> None:
    rng = np.random.default_rng(0)
    public = rng.standard_normal((5, D))
    public = np.vstack([public, public[0], np.zeros(D)])  # duplicates and zero rows: no new span
    basis = public_basis(public)
    assert basis is not None and basis.shape[0] == 5
    mix = rng.standard_normal(7) @ public
    assert np.linalg.norm(innovation(mix, basis)) < 1e-9 * np.linalg.norm(mix)
    fresh = rng.standard_normal(D)
    kept = np.linalg.norm(innovation(fresh, basis)) / np.linalg.norm(fresh)
    assert kept > 0.99  # 5 directions of 4000 take almost nothing from a fresh one
    assert public_basis(None) is None and public_basis(np.zeros((3, D))) is None


def test_many_public_rows_keep_a_bounded_basis_that_still_spans_their_main_directions() -> None:
    """A job of many trainers: more public rows than MAX_PUBLIC_DIRECTIONS. The basis is
    capped (time and memory bounded), orthonormal, the same on every call, and still takes
    out a replay of the public rows' dominant directions."""
    rng = np.random.default_rng(1)
    directions = rng.standard_normal((10, D))  # what the public updates mostly share
    public = rng.standard_normal((300, 10)) @ directions + 1e-3 * rng.standard_normal((300, D))
    public = public.astype(np.float32)
    basis = public_basis(public)
    assert basis is not None and basis.shape == (MAX_PUBLIC_DIRECTIONS, D)
    assert np.allclose(basis @ basis.T, np.eye(MAX_PUBLIC_DIRECTIONS), atol=1e-9)
    assert np.array_equal(basis, public_basis(public))
    replay = public[17].astype(np.float64)
    assert np.linalg.norm(innovation(replay, basis)) < 1e-2 * np.linalg.norm(replay)
    fresh = rng.standard_normal(D)
    assert np.linalg.norm(innovation(fresh, basis)) > 0.95 * np.linalg.norm(fresh)


def test_chance_scale_is_the_sign_randomised_std() -> None:
    rng = np.random.default_rng(1)
    g, dw = rng.standard_normal(300), rng.standard_normal(300)
    signs = rng.choice([-1.0, 1.0], size=(20000, 300))
    assert chance_gain_scale(g, dw) == pytest.approx(float(np.std(signs @ (g * dw))), rel=0.03)


def test_jitter_earns_nothing_beyond_chance_and_a_loss_never_pays() -> None:
    # Templar's sign bug class: a negative gain with a negative factor must stay unpaid.
    assert information_scores(np.array([-1.0]), np.array([-1.0]), 2.0).tolist() == [0.0]
    assert information_scores(np.array([-1.0, np.nan, 3.0]), np.ones(3), 2.0).tolist() == [
        0.0,
        0.0,
        1.0,
    ]
    assert list(to_fixed_point(np.array([-0.5, 0.0]))) == [0, 0]
    with pytest.raises(ValueError):
        information_scores(np.ones(1), np.ones(1), -1.0)
    # Pure jitter: its first-order gain is chance; beyond 2 sigma it is paid < 3% of the time.
    rng = np.random.default_rng(2)
    g = rng.standard_normal(D)
    noise = rng.standard_normal((2000, D))
    gains = noise @ g
    chance = np.array([chance_gain_scale(g, e) for e in noise[:200]])
    paid = information_scores(gains[:200], chance, 2.0)
    assert np.mean(paid > 0) < 0.06


def test_noisy_copy_of_another_trainers_update_is_a_replay() -> None:
    rng = np.random.default_rng(3)
    prev, cur = trainers(rng, 20)
    owners = names(20)
    x = cur.copy()
    for i in range(6):  # colluders: 0.9 x an honest trainer's previous update + 5 % jitter
        x[i] = jitter(rng, 0.9 * prev[10 + i], 0.05)
    verdict = copy_verdict(x, prev, owners=owners, previous_owners=owners)
    assert verdict.reasons[:6].tolist() == [REASON_REPLAY] * 6
    assert verdict.reasons[6:].tolist() == [0] * 14  # honest, though close to their own past
    assert 0.85 < verdict.bar < 0.9999
    assert not verdict.duplicated.any()  # the victims keep their pay


def test_a_copier_cannot_frame_its_victim() -> None:
    # The copier sends A's previous update (+ jitter) and commits first, or sent it last
    # round: A's fresh update resembles that row as much as A's own past. A must stay clean.
    rng = np.random.default_rng(4)
    prev, cur = trainers(rng, 20)
    cur[7] = jitter(rng, prev[7], 0.02)  # A barely changes between rounds
    owners = names(20)
    x = np.vstack([jitter(rng, prev[7], 0.01), cur])  # this round: the copier commits first
    verdict = copy_verdict(x, prev, owners=[owners[0], *owners], previous_owners=owners)
    assert verdict.reasons[0] == REASON_REPLAY and verdict.reasons[8] == 0
    previous = np.vstack([prev, jitter(rng, prev[7], 0.01)])  # last round's copy of A
    prev_owners = [*owners, "0x" + "f" * 40]
    sources = np.append(np.ones(20, bool), False)  # it was flagged then
    for src in (None, sources):
        verdict = copy_verdict(
            cur, previous, owners=owners, previous_owners=prev_owners, sources=src
        )
        assert verdict.reasons.tolist() == [0] * 20


def test_jittered_colluders_cannot_vouch_for_each_other() -> None:
    rng = np.random.default_rng(5)
    prev, cur = trainers(rng, 20)
    owners = names(20)
    crafted = rng.standard_normal(D) + cur[6:].mean(axis=0)
    x = cur.copy()
    for i in range(6):
        x[i] = jitter(rng, crafted, 0.05)
    verdict = copy_verdict(x, prev, owners=owners, previous_owners=owners)
    # Alike beyond the round's typical best match: all six unpaid and unaggregated, but a
    # jittered cluster is no proof (honest rows of one round can be alike too): unflagged.
    assert verdict.duplicated[:6].all() and verdict.reasons.tolist() == [0] * 20
    assert not verdict.duplicated[6:].any()
    exact = x.copy()
    exact[1:6] = exact[0]  # near-exact copies are proof: later commits flagged
    verdict = copy_verdict(exact, prev, owners=owners, previous_owners=owners)
    assert verdict.reasons[1:6].tolist() == [REASON_COPY] * 5 and verdict.duplicated[0]
    # Round 1 (nothing earlier): no evidence to flag, but the cluster is still left unpaid.
    first = copy_verdict(x, None, owners=owners, previous_owners=())
    assert first.reasons.tolist() == [0] * 20
    assert first.duplicated[:6].all() and not first.duplicated[6:].any()


def test_noise_rows_cannot_lower_the_alike_bar_onto_honest_pairs() -> None:
    rng = np.random.default_rng(6)
    prev, cur = trainers(rng, 20)
    owners = names(20)
    x = cur.copy()
    x[:6] = rng.standard_normal((6, D)) * np.linalg.norm(cur[6])
    verdict = copy_verdict(x, prev, owners=owners, previous_owners=owners)
    assert not verdict.duplicated.any() and verdict.reasons.tolist() == [0] * 20


def test_tiny_positive_gains_cannot_pull_the_harm_bar_onto_honest_updates() -> None:
    rng = np.random.default_rng(7)
    honest = rng.normal(1.0, 0.8, 14)  # some honest shards alone hurt a little
    ipm = np.full(6, 1e-6)  # 30 % crafted: just above zero
    gains = np.concatenate([ipm, honest])
    bar = harm_bar(gains, 2.0, 0.3)
    assert bar is not None
    assert robust_gain_scale(gains, 0.3) >= np.sort(honest)[::-1][6]
    assert bar <= -2.0 * float(np.median(honest[honest > 0])) * 0.5
    assert not (honest < bar).any()


@pytest.mark.parametrize("snr", [0.3, 1.0, 3.0])
def test_honest_iid_updates_are_no_replay_of_the_momentum(snr: float) -> None:
    # The outer momentum is an average of everyone's updates: an honest update is closer to it
    # than to its own noisy past. Only a near-exact resend of an aggregate is a replay.
    rng = np.random.default_rng(8)
    n = 10
    g = rng.standard_normal(D)
    g /= np.linalg.norm(g)
    rounds = [g * np.sqrt(snr) + rng.standard_normal((n, D)) / np.sqrt(D) for _ in range(4)]
    momentum = np.zeros(D)
    for x in rounds[:3]:
        momentum = 0.9 * momentum + x.mean(axis=0)
    owners = names(n)
    previous = np.concatenate([*rounds[:3], momentum[None]])
    prev_owners = (*owners * 3, "")
    verdict = copy_verdict(rounds[3], previous, owners=owners, previous_owners=prev_owners)
    assert verdict.reasons.tolist() == [0] * n
    resend = np.vstack([rounds[3][:-1], momentum])
    verdict = copy_verdict(resend, previous, owners=owners, previous_owners=prev_owners)
    assert verdict.reasons[-1] == REASON_REPLAY


def test_a_huge_public_row_does_not_empty_the_public_span() -> None:
    # A colluder's flagged 1e10 x update stays public; the others' directions must stay in
    # the span, or a replay of them would be paid next round.
    rng = np.random.default_rng(9)
    public = rng.standard_normal((30, D))
    public[0] *= 1e10
    basis = public_basis(public)
    assert basis is not None and basis.shape[0] == 30
    replay = public[5]
    assert np.linalg.norm(innovation(replay, basis)) < 1e-6 * np.linalg.norm(replay)


class _QuadraticProbe:
    """A LossProbe stand-in: validation loss |Δ - t|² of the aggregated delta Δ."""

    def __init__(self, target: np.ndarray) -> None:
        self.target = target
        self.inputs = SimpleNamespace(spec=JobSpec(), template=SimpleNamespace(size=target.size))

    def loss_of(self, delta: np.ndarray) -> float:
        return float(((delta - self.target) ** 2).sum())


def test_an_update_harmful_only_alone_is_held_out_not_slashed() -> None:
    # Found by the adaptive benchmark's honest-only runs (2 of 600 honest trainer-rounds
    # slashed): a shard of a few classes, applied alone, drags the model toward them beyond
    # the harm bar; added to everyone else's updates it corrects what they overshoot. Harm is
    # evidence only when the update hurts both alone and added to the rest; a sign flip does.
    rows = np.array(
        [[1.5, 0.9], [1.5, 0.8], [1.5, 1.0], [1.5, 0.7], [0.0, -6.0], [-9.0, 0.0]], np.float32
    )
    n = len(rows)
    verdicts = Verdicts((Reason.ACCEPTED,) * n, ("",) * n)
    decoded = Decoded(rows, {i: i for i in range(n)}, list(range(n)), np.ones(n), verdicts)
    selection = Selection(verdicts, list(range(n)), [])
    probe = _QuadraticProbe(np.array([1.0, 0.0]))
    clip = {i: 1.0 for i in range(n)}
    alone = {i: probe.loss_of(rows[i] / n) for i in range(n)}
    ref = probe.loss_of(np.zeros(2))
    bar = harm_bar(np.array([ref - alone[i] for i in range(n)]), 2.0, 0.3)
    assert bar is not None and ref - alone[4] < bar and ref - alone[5] < bar  # both suspects
    out = check_harm(probe, decoded, selection, clip, alone, ref)  # type: ignore[arg-type]
    skewed, flipped = 4, 5
    assert out.verdicts.reasons[skewed] == Reason.ACCEPTED
    assert skewed not in out.accepted and "held out" in out.verdicts.details[skewed]
    assert out.verdicts.reasons[flipped] == Reason.OUTLIER
    assert "added to the round's other updates" in out.verdicts.details[flipped]
    assert out.accepted == [0, 1, 2, 3]
