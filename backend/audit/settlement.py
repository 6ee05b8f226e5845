"""Settlement as the contract computes it (SPEC.md "Settlement"), from the results of record.

Pure functions: the auditor feeds them each round's result of record (the post, or the
correction a dispute put in its place) and the job's terms, and compares the results with what
the contract slashed (net of the slashes a dispute reversed), pooled, paid and refunded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from backend.chain.market import JobStatus, RoundPost
from backend.core.errors import Reason

__all__ = [
    "Settlement",
    "Slash",
    "expected_payouts",
    "expected_slashes",
    "net_slashes",
    "score_totals",
]

#: One slash: (round, trainer, amount in wei).
Slash = tuple[int, str, int]

BPS = 10_000  # slashBps is in basis points


def score_totals(participants: Sequence[str], posts: Sequence[RoundPost]) -> dict[str, int]:
    """Each trainer's fixed-point score summed over the rounds' results."""
    totals = dict.fromkeys(participants, 0)
    for post in posts:
        for k, trainer in enumerate(participants):
            if k < len(post.scores):
                totals[trainer] += int(post.scores[k])
    return totals


def expected_slashes(
    participants: Sequence[str],
    posts: Sequence[RoundPost],
    stake: int,
    slash_bps: int,
    *,
    settled: bool = False,
) -> list[Slash]:
    """Every slash the results' reasons call for, in round order, then (`settled`: the job was
    settled or abandoned) the missed-round charges, as round 0.

    Each slashable reason takes `slash_bps` of what is still locked of the trainer's stake
    (integer division, as the contract does), so repeated slashes shrink. Each round with
    reason 1 (no valid reveal) costs `stake × slash_bps // (2 × BPS)` at settlement, capped at
    what is then still locked.
    """
    locked = dict.fromkeys(participants, stake)
    missed = dict.fromkeys(participants, 0)
    slashes: list[Slash] = []
    for post in posts:
        for k, trainer in enumerate(participants):
            if k >= len(post.scores):
                continue
            reason = Reason(int(post.reasons[k]))
            missed[trainer] += reason == Reason.MISSING
            if reason.slashable:
                amount = locked[trainer] * slash_bps // BPS
                locked[trainer] -= amount
                slashes.append((post.round, trainer, amount))
    if settled:
        each = stake * slash_bps // (2 * BPS)
        for trainer in participants:
            amount = min(each * missed[trainer], locked[trainer])
            if amount:
                slashes.append((0, trainer, amount))
    return slashes


def net_slashes(applied: Iterable[Slash], reversed_: Iterable[Slash]) -> list[Slash]:
    """The slashes that stand: every TrainerSlashed minus the SlashReversed that undid one."""
    undone = Counter(reversed_)
    out: list[Slash] = []
    for slash in applied:
        if undone[slash]:
            undone[slash] -= 1
            continue
        out.append(slash)
    return out


@dataclass(frozen=True)
class Settlement:
    """What a job's settlement pays: per trainer, to the owner, and the pools it fixed."""

    rewards: dict[str, int]
    refund: int
    pool: int
    forfeit_pool: int = 0


def expected_payouts(
    reward: int,
    slashed_pool: int,
    totals: Mapping[str, int],
    status: JobStatus,
    posted: int,
    rounds: int,
    *,
    owner_fault: bool = False,
    forfeit: int = 0,
    revealers: Sequence[str] = (),
) -> Settlement:
    """The settlement by SPEC.md's formula (FedMarketSettlement's passes, FedMarket `_rewardOf`).

    Settled: the whole reward plus the slashed stake is paid by score. Abandoned for the
    owner's fault (`owner_fault`, a withheld validation chunk): the same, in equal parts if
    nobody scored. Abandoned for the aggregator's fault (a missed post, or an overturned round):
    the posted rounds' share of the reward is paid by score, and the failed round's share plus
    `forfeit` (the aggregator's slashed bond) goes in equal parts to that round's `revealers`.
    The refund is what the payouts leave, capped at the owner's `reward`: slashed stake never
    reaches the owner (with no contribution at all it is burned).
    """
    if status == JobStatus.CANCELLED:
        return Settlement(dict.fromkeys(totals, 0), reward, 0)
    reserved = forfeit_pool = 0
    if status == JobStatus.ABANDONED and not owner_fault:
        earned = reward * posted // rounds
        if revealers:
            reserved = reward * (posted + 1) // rounds - earned
            forfeit_pool = forfeit + reserved
    else:
        earned = reward
    pool = earned + slashed_pool
    total = sum(totals.values())
    n = len(totals)
    equal_split = total == 0 and owner_fault and n != 0
    if equal_split:
        rewards = dict.fromkeys(totals, pool // n)
    else:
        rewards = {t: pool * s // total if total else 0 for t, s in totals.items()}
    paid = sum(rewards.values())
    unearned = reward - earned - reserved
    refundable = reward - reserved if total == 0 and not equal_split else unearned + pool - paid
    if forfeit_pool:
        each = forfeit_pool // len(revealers)
        for t in revealers:
            rewards[t] = rewards.get(t, 0) + each
    return Settlement(rewards, min(refundable, reward), pool, forfeit_pool)
