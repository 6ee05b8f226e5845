"""Reliability that reflects value at risk (issue 14): ReliabilityRegistry's stake-weighted,
decayed record, the join gates, reason 2 left out of a contribution, and the three attacks it
answers — self-dealt jobs, an aggregator's unproven "unavailable", and join squatting.

Each attack test also evaluates the old rule (an unweighted EMA with weight α of the newest
job: ``old_ema``) on the same contributions, to show what the attack achieved before."""

from __future__ import annotations

from typing import Any

from contract_harness import (
    ALPHA_PPM,
    ETH,
    MISSING,
    PPM,
    RUNNING,
    SETTLED,
    UNAVAILABLE,
    Chain,
    Posted,
    contribution,
    fold_reliability,
    model_hash,
)

from backend.chain.revert_messages import explain

ACCEPTED = 0


def old_ema(contributions: list[int], alpha: int = ALPHA_PPM) -> int:
    """The rule before issue 14: first job c, later (rel·(1e6 − α) + c·α) / 1e6."""
    rel = contributions[0]
    for c in contributions[1:]:
        rel = (rel * (PPM - alpha) + c * alpha) // PPM
    return rel


def run_job(
    chain: Chain,
    owner: str,
    aggregator: str,
    rounds: list[dict[str, tuple[int, int]]],
    *,
    stake: int = ETH,
    reward: int = ETH,
    **kw: Any,
) -> tuple[int, Any]:
    """A job of ``len(rounds)`` rounds whose trainers are the keys of ``rounds[0]`` (joined in
    that order, each registered if needed): every round is played as given ({trainer: (score,
    reason)}; reason 1: the trainer does not commit), then the job is finalized and every
    trainer claims (its stake is free again). Returns (job, the finalize receipt)."""
    trainers = list(rounds[0])
    for t in trainers:
        if not chain.account(t)[2]:
            chain.register(t, max(stake, 1))
        short = stake - chain.free(t)
        if short > 0:
            chain.tx(chain.market.functions.deposit(), t, short)
    kw.setdefault("minTrainers", len(trainers))
    kw.setdefault("maxTrainers", len(trainers))
    job = chain.create_job(
        owner, reward, aggregator=aggregator, rounds=len(rounds), stakeRequired=stake, **kw
    )
    for t in trainers:
        chain.tx(chain.market.functions.join(job), t)
    assert chain.job(job)["status"] == RUNNING
    for results in rounds:
        committers = [t for t in trainers if results[t][1] != MISSING]
        chain.play_round(job, results, committers=committers)
    receipt = chain.finish(job)
    assert chain.job(job)["status"] == SETTLED
    for t in trainers:
        chain.tx(chain.market.functions.claim(job), t)
    return job, receipt


def updates(chain: Chain, receipt: Any) -> dict[str, dict[str, int]]:
    return {e["trainer"]: e for e in chain.events("ReliabilityUpdated", receipt)}


# ------------------------------------------------------------------------------ the update math


def test_weighted_update_is_exact_against_the_python_formula(chain: Chain) -> None:
    """Wei- and ppm-exact: first job ppm = c, W = s; later D = W·(1e6 − α)/1e6, W' = D + s,
    ppm' = (ppm·D + c·s) / W' — over stakes from 1 wei to 3 ETH, odd contributions."""
    owner, agg = chain.accounts[0], chain.accounts[1]
    t, best = chain.accounts[2], chain.accounts[3]
    record = [0, 0, 0]
    assert chain.reliability(t) == record
    plan = [  # (stake, t's score, the best trainer's score)
        (ETH, 1_234_567, 3_000_001),
        (3, 2_000_000, 1_000_000),  # t is best: 1.0
        (3 * ETH + 11, 7, 999_999),
        (1, 0, 5),
        (ETH // 3, 500_000, 600_000),
    ]
    for stake, mine, theirs in plan:
        job, r = run_job(
            chain, owner, agg, [{t: (mine, ACCEPTED), best: (theirs, ACCEPTED)}], stake=stake
        )
        c = contribution(mine, max(mine, theirs))
        record = fold_reliability(record, c, stake)
        assert chain.reliability(t) == record
        assert updates(chain, r)[t] == {
            "trainer": t,
            "jobId": job,
            "contributionPpm": c,
            "stake": stake,
            "reliabilityPpm": record[0],
            "weight": record[2],
            "jobs": record[1],
        }
    assert record[1] == len(plan) and 0 < record[0] < PPM


def test_alpha_one_keeps_only_the_newest_job_and_zero_never_decays() -> None:
    for alpha in (PPM, 0):
        chain = Chain(alpha=alpha)
        assert chain.registry.functions.alphaPpm().call() == alpha
        owner, agg, t, u = chain.accounts[:4]
        record = [0, 0, 0]
        for stake, mine, theirs in ((2 * ETH, 1, 4), (ETH, 3, 4)):
            run_job(chain, owner, agg, [{t: (mine, ACCEPTED), u: (theirs, ACCEPTED)}], stake=stake)
            record = fold_reliability(record, contribution(mine, theirs), stake, alpha)
        assert chain.reliability(t) == record
        if alpha == PPM:
            assert record == [750_000, 2, ETH]  # the past weighs nothing
        else:
            assert record == [(250_000 * 2 + 750_000) // 3, 2, 3 * ETH]  # plain stake-weighted


def test_only_the_market_writes_and_alpha_is_checked(chain: Chain) -> None:
    r = chain.registry.functions
    stranger = chain.accounts[5]
    fn = r.recordJob(1, ETH, [(stranger, 1, 1, False)])
    assert chain.reverts("NotMarket", fn, stranger) == (stranger,)
    assert chain.reliability(stranger) == [0, 0, 0]
    # the market deploys its registry: a bad α reverts the market's deployment
    from backend.chain.contracts import load_artifact

    art = load_artifact("ReliabilityRegistry")
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    assert chain.reverts("InvalidReliability", factory.constructor(PPM + 1), stranger) == (PPM + 1,)


# ------------------------------------------------------------------- attack 1: self-dealt jobs


def test_a_self_dealt_one_wei_job_counts_with_dust_weight_and_cannot_pass_a_weight_gate(
    chain: Chain,
) -> None:
    """Owner A, aggregator B and trainer C are one person. A 1-wei job scores C 1.0: the record
    says 1.0, but rests on 1 wei — a job gated on weight refuses it, while a trainer with real
    stake behind the same 1.0 gets in. (A ppm-only gate is still passed: that is the attack as
    it worked before.)"""
    m = chain.market.functions
    a, b, c = chain.accounts[5], chain.accounts[6], chain.accounts[7]
    chain.register(a, ETH)
    run_job(chain, a, b, [{c: (1_000_000, ACCEPTED)}], stake=1, reward=1)
    assert chain.reliability(c) == [PPM, 1, 1]
    # an honest trainer with the same 1.0 at a real stake
    owner, agg, h, other = (
        chain.accounts[0],
        chain.accounts[1],
        chain.accounts[2],
        chain.accounts[3],
    )
    run_job(chain, owner, agg, [{h: (2, ACCEPTED), other: (1, ACCEPTED)}], stake=ETH)
    assert chain.reliability(h) == [PPM, 1, ETH]
    ppm_only = chain.create_job(owner, ETH, stakeRequired=1, minReliabilityPpm=PPM)
    chain.tx(m.join(ppm_only), c)  # what the attack bought before: a seat in a 1.0-gated job
    gated = chain.create_job(
        owner, ETH, stakeRequired=1, minReliabilityPpm=PPM, minReliabilityWeight=ETH // 2
    )
    assert chain.job(gated)["minReliabilityWeight"] == ETH // 2
    assert chain.reverts("ReliabilityWeightTooLow", m.join(gated), c) == (1, ETH // 2)
    chain.tx(m.join(gated), h)


def test_washing_a_heavy_bad_record_with_seven_one_wei_jobs_barely_moves_it(
    chain: Chain,
) -> None:
    owner, agg, t, best = chain.accounts[:4]
    run_job(chain, owner, agg, [{t: (1_000_000, ACCEPTED), best: (5_000_000, ACCEPTED)}])
    record = [200_000, 1, ETH]
    assert chain.reliability(t) == record
    a, b = chain.accounts[5], chain.accounts[6]  # the washer's own owner and aggregator
    chain.register(a, ETH)
    for _ in range(7):
        run_job(chain, a, b, [{t: (1_000_000, ACCEPTED)}], stake=1, reward=1)
        record = fold_reliability(record, PPM, 1)
    assert chain.reliability(t) == record
    assert record[0] == 200_000  # not one ppm gained
    assert old_ema([200_000] + [PPM] * 7) > 900_000  # the old EMA: washed above 0.9


# -------------------------------------------------- attack 2: an aggregator's unproven reason 2


def test_three_bait_reason_2_jobs_leave_an_honest_trainer_unchanged(chain: Chain) -> None:
    owner, agg, h, x = chain.accounts[:4]
    run_job(chain, owner, agg, [{h: (2_000_000, ACCEPTED), x: (1_000_000, ACCEPTED)}])
    record = [PPM, 1, ETH]
    assert chain.reliability(h) == record
    bait = {h: (0, UNAVAILABLE), x: (1_000_000, ACCEPTED)}
    for _ in range(3):
        job, r = run_job(chain, owner, agg, [bait, bait])
        assert h not in updates(chain, r)  # every counted round was reason 2: not recorded
        p = chain.participant(job, h)
        assert (p["unavailableRounds"], p["unavailableMaxScore"]) == (2, 2_000_000)
        assert p["lockedStake"] == 0 and chain.account(h)[1] == 0  # nothing slashed either
    assert chain.reliability(h) == record
    assert old_ema([PPM, 0, 0, 0]) == 343_000  # the old rule: 1.0 -> 0.34


def test_a_reason_2_round_is_left_out_of_the_contribution(chain: Chain) -> None:
    """h's round 1 is reported unavailable; x scores 3.0 there. Round 2: h 1.0, x 2.0. h is
    judged on round 2 only: 1.0 / (5.0 − 3.0) = 0.5 (the old rule: 1.0 / 5.0 = 0.2)."""
    owner, agg, h, x = chain.accounts[:4]
    rounds = [
        {h: (0, UNAVAILABLE), x: (3_000_000, ACCEPTED)},
        {h: (1_000_000, ACCEPTED), x: (2_000_000, ACCEPTED)},
    ]
    job, r = run_job(chain, owner, agg, rounds)
    got = updates(chain, r)
    assert (got[h]["contributionPpm"], got[x]["contributionPpm"]) == (500_000, PPM)
    assert chain.job(job)["maxTotalScore"] == 5_000_000
    # the withholder keeps its reliability but earns nothing for the round: it is paid by
    # score, 1.0 of the job's 6.0
    assert chain.participant(job, h)["totalScore"] == 1_000_000
    assert chain.job(job)["totalScore"] == 6_000_000


def test_reason_2_is_undone_exactly_when_a_dispute_corrects_the_round(chain: Chain) -> None:
    """The aggregator posts h unavailable (and x's round max 4.0); h challenges and the
    committee's fix scores h 2.0 and reports x unavailable instead. The correction takes h's
    reason-2 tally back exactly and books x's, and settlement judges each on the fix."""
    c, m = chain.court.functions, chain.market.functions
    owner, agg, h, x = chain.accounts[:4]
    for t in (h, x):
        chain.register(t, 5 * ETH)
    verifiers = chain.accounts[9:13]
    chain.make_verifiers(verifiers)
    job = chain.create_job(owner, 10 * ETH, rounds=1, minTrainers=2, maxTrainers=2)
    for t in (h, x):
        chain.tx(m.join(job), t)
    chain.play_round(job, {h: (0, UNAVAILABLE), x: (4_000_000, ACCEPTED)})
    p = chain.participant(job, h)
    assert (p["unavailableRounds"], p["unavailableMaxScore"]) == (1, 4_000_000)
    was = chain.posted[(job, 1)]
    fix = Posted(model_hash(1), [2_000_000, 0], [ACCEPTED, UNAVAILABLE], "bafy-fix")
    did, _ = chain.challenge(job, 1, fix.digest(job, 1), h)
    members = list(chain.dispute(did)["members"])
    chain.vote(did, dict.fromkeys(members, fix.digest(job, 1)))
    chain.resolve(did)
    r = chain.tx(c.postCorrection(did, fix.as_tuple(), "bafy-fix", was.as_tuple()), x)
    ph, px = chain.participant(job, h), chain.participant(job, x)
    assert (ph["unavailableRounds"], ph["unavailableMaxScore"]) == (0, 0)
    assert (px["unavailableRounds"], px["unavailableMaxScore"]) == (1, 2_000_000)
    assert chain.job(job)["status"] == SETTLED
    got = updates(chain, r)
    assert got[h]["contributionPpm"] == PPM and x not in got  # x: its only round was reason 2
    assert chain.reliability(h) == [PPM, 1, ETH]
    assert chain.reliability(x) == [0, 0, 0]
    # the overturned aggregator's bond was paid out by the court
    assert chain.events("AggregatorBondSlashed", r)[0]["aggregator"] == agg


def test_a_forfeited_round_takes_its_reason_2_back(chain: Chain) -> None:
    m = chain.market.functions
    owner, _agg, h, x = chain.accounts[:4]
    for t in (h, x):
        chain.register(t, 5 * ETH)
    job = chain.create_job(owner, ETH, rounds=2, minTrainers=2, maxTrainers=2)
    for t in (h, x):
        chain.tx(m.join(job), t)
    chain.play_round(job, {h: (1_000_000, ACCEPTED), x: (3_000_000, ACCEPTED)})
    chain.play_round(job, {h: (0, UNAVAILABLE), x: (2_000_000, ACCEPTED)}, chunk=False)
    assert chain.participant(job, h)["unavailableRounds"] == 1
    chain.at(chain.job(job)["postedAt"] + 101)
    r = chain.tx(m.forfeit(job, chain.posted[(job, 2)].as_tuple()), x)
    p = chain.participant(job, h)
    assert (p["unavailableRounds"], p["unavailableMaxScore"]) == (0, 0)
    # reliability counts round 1 only
    assert {t: e["contributionPpm"] for t, e in updates(chain, r).items()} == {
        h: 333_333,
        x: PPM,
    }


# ------------------------------------------------------------------- attack 3: join squatting


def test_sixteen_one_wei_sybils_cannot_squat_a_weight_gated_job() -> None:
    chain = Chain(num_accounts=24)
    m = chain.market.functions
    owner, agg = chain.accounts[0], chain.accounts[1]
    honest = chain.accounts[2:4]
    run_job(chain, owner, agg, [{honest[0]: (1, ACCEPTED), honest[1]: (1, ACCEPTED)}])
    sybils = chain.accounts[4:20]
    for s in sybils:
        chain.register(s, 1)
    need = ETH // 10
    job = chain.create_job(
        owner, ETH, stakeRequired=1, minTrainers=2, maxTrainers=16, minReliabilityWeight=need
    )
    for s in sybils:
        assert chain.reverts("ReliabilityWeightTooLow", m.join(job), s) == (0, need)
    for h in honest:
        chain.tx(m.join(job), h)
    chain.tx(m.start(job), owner)  # nobody front-ran the owner's start
    assert chain.parts(job) == honest and chain.job(job)["status"] == RUNNING


def test_an_ungated_squatter_who_never_commits_pays_the_missed_round_charge(
    chain: Chain,
) -> None:
    owner, agg, h, squatter = chain.accounts[:4]
    slash_bps = 1000
    rounds = [{h: (1_000_000, ACCEPTED), squatter: (0, MISSING)}] * 2
    _job, r = run_job(chain, owner, agg, rounds, slashBps=slash_bps)
    each = ETH * slash_bps // 20_000
    assert [
        (e["trainer"], e["amount"], e["reason"])
        for e in chain.events("TrainerSlashed", r)
        if e["round"] == 0
    ] == [(squatter, 2 * each, MISSING)]
    assert chain.account(squatter)[0] == ETH - 2 * each
    # and its record says what it did: nothing, at its stake
    assert chain.reliability(squatter) == [0, 1, ETH]
    assert updates(chain, r)[squatter]["contributionPpm"] == 0


# ---------------------------------------------------------------------------- revert sentences


def test_the_join_gates_explain_themselves() -> None:
    weight = explain("join", "ReliabilityWeightTooLow", {"have": 1, "need": 10**17})
    assert weight is not None and weight.startswith("cannot join: your reliability rests on")
    assert "0.1 ETH" in weight and "fedmarket trainer status" in weight
    ppm = explain("join", "ReliabilityTooLow", {"have": 150_000, "need": 475_000})
    assert ppm == "cannot join: your reliability 0.150 is below the job's minimum 0.475"
    assert "only it records reliability" in (
        explain("recordJob", "NotMarket", {"caller": "0x1"}) or ""
    )
