"""Issue 14, the free option: a trainer could read everyone's reveals and then withhold its own
(reason 1 cost nothing), so a poisoner aborted whenever it would be caught. Now every posted
round a participant did not reveal in costs half the job's cheat slash of its stake, charged at
settlement into the slashed pool (paid to the contributors). The contract itself checks reason 1
against the reveals, so the aggregator can neither invent nor waive the charge."""

from __future__ import annotations

from contract_harness import (
    ABANDONED,
    ETH,
    MISSING,
    OUTLIER,
    SETTLED,
    Chain,
    Posted,
    check_conservation,
)

from backend.audit.settlement import expected_slashes
from backend.chain.market import RoundPost

STAKE = 5 * ETH


def _job(chain: Chain, n: int = 3, rounds: int = 2, slash_bps: int = 5000) -> tuple[int, list]:
    trainers = chain.accounts[2 : 2 + n]
    for t in trainers:
        chain.register(t, 2 * STAKE)
    chain.make_verifiers(chain.accounts[9:13])
    job = chain.create_job(
        chain.accounts[0],
        10 * ETH + 7,
        rounds=rounds,
        maxTrainers=n,
        minTrainers=2,
        stakeRequired=STAKE,
        slashBps=slash_bps,
    )
    for t in trainers:
        chain.tx(chain.market.functions.join(job), t)
    return job, trainers


def test_a_withheld_reveal_and_a_missing_commit_each_cost_half_the_cheat_slash(
    chain: Chain,
) -> None:
    m = chain.market.functions
    job, (honest, withholder, absent) = _job(chain)
    # round 1: the withholder commits and, having seen the others, keeps its reveal back;
    # the absent trainer never commits. Round 2: the withholder reveals, the absent one not.
    chain.play_round(
        job,
        {honest: (1_000, 0), withholder: (0, MISSING), absent: (0, MISSING)},
        committers=[honest, withholder],
        revealers=[honest],
    )
    chain.play_round(
        job,
        {honest: (1_000, 0), withholder: (500, 0), absent: (0, MISSING)},
        committers=[honest, withholder],
    )
    assert [chain.participant(job, t)["missedRounds"] for t in (honest, withholder, absent)] == [
        0,
        1,
        2,
    ]
    assert chain.job(job)["slashedPool"] == 0  # nothing is charged before settlement
    r = chain.finish(job)
    each = STAKE * 5000 // 20_000  # half of the 50 % cheat slash
    charges = [
        (e["trainer"], e["amount"], e["round"], e["reason"])
        for e in chain.events("TrainerSlashed", r)
    ]
    assert charges == [(withholder, each, 0, MISSING), (absent, 2 * each, 0, MISSING)]
    j = chain.job(job)
    assert j["status"] == SETTLED and j["slashedPool"] == 3 * each
    assert chain.participant(job, withholder)["lockedStake"] == STAKE - each
    assert chain.participant(job, absent)["lockedStake"] == STAKE - 2 * each
    assert chain.participant(job, honest)["lockedStake"] == STAKE
    # the charges are paid to the contributors, by score
    pool = j["reward"] + 3 * each
    assert m.rewardOf(job, honest).call() == pool * 2_000 // 2_500
    assert m.rewardOf(job, withholder).call() == pool * 500 // 2_500
    assert m.rewardOf(job, absent).call() == 0
    # the auditor's mirror charges the same
    parts = chain.parts(job)
    posts = [
        RoundPost(rnd, b"", "", p.scores, p.reasons, 0, "")
        for rnd, p in ((1, chain.posted[(job, 1)]), (2, chain.posted[(job, 2)]))
    ]
    assert expected_slashes(parts, posts, STAKE, 5000, settled=True) == [
        (0, withholder, each),
        (0, absent, 2 * each),
    ]
    check_conservation(chain)


def test_withholding_costs_less_than_being_caught_and_is_capped_at_the_stake(
    chain: Chain,
) -> None:
    """The charge sits below the cheat slash (an honest trainer whose node failed is not
    treated as a poisoner) and never exceeds what is still locked."""
    job, (caught, withholder, absent) = _job(chain, rounds=3, slash_bps=10_000)
    for _ in range(3):
        chain.play_round(
            job,
            {caught: (0, OUTLIER), withholder: (0, MISSING), absent: (0, MISSING)},
            committers=[caught, withholder],
            revealers=[caught],
        )
    chain.finish(job)
    assert chain.participant(job, caught)["lockedStake"] == 0  # slashed whole in round 1
    # half the stake per missed round, 3 rounds: capped at the stake
    assert chain.participant(job, withholder)["lockedStake"] == 0
    assert chain.participant(job, absent)["lockedStake"] == 0
    check_conservation(chain)


def test_a_corrected_round_does_not_charge_a_missed_round_twice(chain: Chain) -> None:
    job, (h1, h2, absent) = _job(chain, rounds=1)
    parts = chain.parts(job)
    lie = {h1: (0, OUTLIER), h2: (3_000, 0), absent: (0, MISSING)}
    chain.play_round(job, lie, committers=[h1, h2])
    was = chain.posted[(job, 1)]
    good = {h1: (1_000, 0), h2: (2_000, 0), absent: (0, MISSING)}
    fix = Posted(b"\xc0" * 32, [good[t][0] for t in parts], [good[t][1] for t in parts], "bafy-fix")
    did, _ = chain.challenge(job, 1, fix.digest(job, 1), h1)
    d = chain.dispute(did)
    chain.vote(did, dict.fromkeys(d["members"], fix.digest(job, 1)))
    chain.resolve(did)
    fn = chain.court.functions.postCorrection(did, fix.as_tuple(), fix.model_cid, was.as_tuple())
    r = chain.tx(fn, h2)
    assert chain.participant(job, absent)["missedRounds"] == 1
    each = STAKE * 5000 // 20_000
    charged = [e for e in chain.events("TrainerSlashed", r) if e["round"] == 0]
    assert [(e["trainer"], e["amount"]) for e in charged] == [(absent, each)]
    check_conservation(chain)


def test_a_voided_round_charges_nothing(chain: Chain) -> None:
    """The owner withheld round 2's chunk: the round is undone, its missed reveals too."""
    m = chain.market.functions
    job, (h1, h2, absent) = _job(chain, rounds=2)
    chain.play_round(job, {h1: (1_000, 0), h2: (2_000, 0), absent: (3_000, 0)})
    chain.play_round(
        job,
        {h1: (1_000, 0), h2: (2_000, 0), absent: (0, MISSING)},
        committers=[h1, h2],
        chunk=False,
    )
    assert chain.participant(job, absent)["missedRounds"] == 1
    chain.at(chain.job(job)["postedAt"] + 101)
    r = chain.tx(m.forfeit(job, chain.posted[(job, 2)].as_tuple()), h1)
    assert chain.job(job)["status"] == ABANDONED
    assert chain.participant(job, absent)["missedRounds"] == 0
    assert chain.events("TrainerSlashed", r) == []
    check_conservation(chain)
