"""Settlement as the contract computes it (SPEC.md "Settlement"), from the posted rounds.

Pure functions: the auditor feeds them the posted scores and reasons and the job's terms and
compares the results with what the contract slashed, pooled, paid and refunded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from backend.chain.market import JobStatus, RoundPost
from backend.core.errors import Reason

__all__ = ["Slash", "expected_payouts", "expected_slashes", "score_totals"]

#: One slash: (round, trainer, amount in wei).
Slash = tuple[int, str, int]

BPS = 10_000  # slashBps is in basis points


def score_totals(participants: Sequence[str], posts: Sequence[RoundPost]) -> dict[str, int]:
    """Each trainer's fixed-point score summed over the posted rounds."""
    totals = dict.fromkeys(participants, 0)
    for post in posts:
        for k, trainer in enumerate(participants):
            if k < len(post.scores):
                totals[trainer] += int(post.scores[k])
    return totals


def expected_slashes(
    participants: Sequence[str], posts: Sequence[RoundPost], stake: int, slash_bps: int
) -> list[Slash]:
    """Every slash the posted reasons call for, in posting order.

    Each slashable reason takes `slash_bps` of what is still locked of the trainer's stake
    (integer division, as the contract does), so repeated slashes shrink.
    """
    locked = dict.fromkeys(participants, stake)
    slashes: list[Slash] = []
    for post in posts:
        for k, trainer in enumerate(participants):
            if k >= len(post.scores):
                continue
            if Reason(int(post.reasons[k])).slashable:
                amount = locked[trainer] * slash_bps // BPS
                locked[trainer] -= amount
                slashes.append((post.round, trainer, amount))
    return slashes


def expected_payouts(
    reward: int,
    slashed_pool: int,
    totals: Mapping[str, int],
    status: JobStatus,
    posted: int,
    rounds: int,
) -> tuple[dict[str, int], int, int]:
    """(reward per trainer, owner refund, reward pool) by SPEC.md's settlement formula.

    The refund is what the payouts leave, capped at the owner's `reward`: slashed stake never
    reaches the owner (with no contribution at all it is burned).
    """
    if status == JobStatus.CANCELLED:
        return dict.fromkeys(totals, 0), reward, 0
    earned = reward * posted // rounds if status == JobStatus.ABANDONED else reward
    pool = earned + slashed_pool
    total = sum(totals.values())
    rewards = {t: pool * s // total if total else 0 for t, s in totals.items()}
    left = pool - sum(rewards.values())
    refundable = reward if total == 0 else reward - earned + left
    return rewards, min(refundable, reward), pool
