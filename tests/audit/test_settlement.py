"""The auditor's settlement formulas mirror the contract's: the burn rule, the aggregator's and
the owner's fault, and slashes net of the ones a dispute reversed."""

from __future__ import annotations

from backend.audit.settlement import expected_payouts, net_slashes
from backend.core.jobstatus import JobStatus

ETH = 10**18


def test_zero_contribution_refunds_only_the_reward_and_burns_the_slashed_stake() -> None:
    s = expected_payouts(3 * ETH, ETH // 20, {"a": 0, "b": 0}, JobStatus.SETTLED, 1, 1)
    assert s.rewards == {"a": 0, "b": 0}
    assert s.refund == 3 * ETH  # not 3.05 ETH: the flags must not pay the owner
    assert s.pool == 3 * ETH + ETH // 20 and s.forfeit_pool == 0


def test_finalize_pays_the_pool_by_score_and_refunds_the_dust() -> None:
    s = expected_payouts(10 * ETH + 7, ETH, {"a": 1, "b": 2}, JobStatus.SETTLED, 3, 3)
    assert s.pool == 11 * ETH + 7
    assert s.rewards == {"a": s.pool // 3, "b": s.pool * 2 // 3}
    assert sum(s.rewards.values()) + s.refund == s.pool and s.refund < 3


def test_a_missed_post_forfeits_the_bond_and_the_rounds_share_to_its_revealers() -> None:
    reward, slashed, bond = 9 * ETH + 5, ETH // 10, 2 * ETH
    totals = {"a": 100, "b": 200, "c": 0}
    s = expected_payouts(
        reward, slashed, totals, JobStatus.ABANDONED, 1, 3, forfeit=bond, revealers=["a", "c"]
    )
    earned = reward // 3
    share = reward * 2 // 3 - earned
    assert s.pool == earned + slashed and s.forfeit_pool == bond + share
    base = {t: s.pool * v // 300 for t, v in totals.items()}
    each = s.forfeit_pool // 2
    assert s.rewards == {"a": base["a"] + each, "b": base["b"], "c": base["c"] + each}
    # nobody revealed in the failed round: its share is refunded, the bond is burned
    alone = expected_payouts(reward, slashed, totals, JobStatus.ABANDONED, 1, 3, forfeit=bond)
    assert alone.forfeit_pool == 0
    assert sum(alone.rewards.values()) + alone.refund == reward + slashed


def test_an_owner_who_withheld_a_chunk_pays_the_whole_reward() -> None:
    s = expected_payouts(
        6 * ETH + 1, 0, {"a": 1, "b": 3}, JobStatus.ABANDONED, 1, 3, owner_fault=True
    )
    assert s.pool == 6 * ETH + 1 and s.rewards == {"a": s.pool // 4, "b": s.pool * 3 // 4}
    # nobody scored: equal parts, not a refund
    eq = expected_payouts(
        6 * ETH + 1, 0, {"a": 0, "b": 0}, JobStatus.ABANDONED, 0, 3, owner_fault=True
    )
    assert eq.rewards == {"a": 3 * ETH, "b": 3 * ETH} and eq.refund == 1


def test_slashes_stand_unless_reversed() -> None:
    applied = [(1, "a", 10), (2, "b", 5), (2, "a", 5)]
    assert net_slashes(applied, [(2, "b", 5)]) == [(1, "a", 10), (2, "a", 5)]
    assert net_slashes(applied, []) == applied
