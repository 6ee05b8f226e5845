"""The auditor's settlement formulas mirror the contract's, including the burn rule."""

from __future__ import annotations

from backend.audit.settlement import expected_payouts
from backend.core.jobstatus import JobStatus

ETH = 10**18


def test_zero_contribution_refunds_only_the_reward_and_burns_the_slashed_stake() -> None:
    rewards, refund, pool = expected_payouts(
        3 * ETH, ETH // 20, {"a": 0, "b": 0}, JobStatus.SETTLED, 1, 1
    )
    assert rewards == {"a": 0, "b": 0}
    assert refund == 3 * ETH  # not 3.05 ETH: the flags must not pay the owner
    assert pool == 3 * ETH + ETH // 20


def test_finalize_pays_the_pool_by_score_and_refunds_the_dust() -> None:
    rewards, refund, pool = expected_payouts(
        10 * ETH + 7, ETH, {"a": 1, "b": 2}, JobStatus.SETTLED, 3, 3
    )
    assert pool == 11 * ETH + 7
    assert rewards == {"a": pool // 3, "b": pool * 2 // 3}
    assert sum(rewards.values()) + refund == pool and refund < 3


def test_abandon_refunds_the_unearned_reward() -> None:
    reward, slashed = 9 * ETH + 5, ETH // 10
    rewards, refund, pool = expected_payouts(
        reward, slashed, {"a": 100, "b": 200, "c": 0}, JobStatus.ABANDONED, 1, 3
    )
    assert pool == reward // 3 + slashed
    assert sum(rewards.values()) + refund == reward + slashed
    _, refund0, _ = expected_payouts(reward, slashed, {"a": 0}, JobStatus.ABANDONED, 1, 3)
    assert refund0 == reward
