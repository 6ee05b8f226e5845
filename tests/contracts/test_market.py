"""Unit tests: every external function and every custom-error path of FedMarket's job
lifecycle (the bonds, chunks and disputes of issue 13 are in test_disputes.py)."""

from __future__ import annotations

import pytest
from contract_harness import (
    ABANDONED,
    ALPHA_PPM,
    CANCELLED,
    CHALLENGE_WINDOW,
    CREATED,
    ETH,
    FINISHED,
    MIN_CHALLENGE_WINDOW,
    MISSING,
    OUTLIER,
    RUNNING,
    SETTLED,
    UNAVAILABLE,
    Chain,
    Update,
    ValidationSet,
    commitment,
    fold_reliability,
    job_params,
    make_update,
    params_tuple,
)
from eth_utils import keccak

# ------------------------------------------------------------------------------------ helpers


def setup_running(
    chain: Chain, n: int = 3, reward: int = 10 * ETH, **kw: object
) -> tuple[int, list[str]]:
    """Register n trainers (accounts 2..), create a job with maxTrainers n, all join."""
    trainers = chain.accounts[2 : 2 + n]
    for t in trainers:
        chain.register(t)
    kw.setdefault("maxTrainers", n)
    kw.setdefault("minTrainers", min(2, n))
    job = chain.create_job(chain.accounts[0], reward, **kw)
    for t in trainers:
        chain.tx(chain.market.functions.join(job), t)
    assert chain.job(job)["status"] == RUNNING
    return job, trainers


def events(chain: Chain, name: str, receipt: object) -> list[dict]:
    return chain.events(name, receipt)


def vault_total(chain: Chain, addrs: list[str]) -> int:
    """Σ vault balances of ``addrs`` plus the default aggregator's (its bond lives there)."""
    return sum(chain.account(a)[0] for a in {*addrs, chain.accounts[1]})


# ------------------------------------------------------------------------------------ vault


def test_register_deposit_withdraw(chain: Chain) -> None:
    t = chain.accounts[2]
    r = chain.tx(chain.market.functions.register(), t, 3 * ETH)
    assert events(chain, "TrainerRegistered", r) == [{"trainer": t, "stake": 3 * ETH}]
    r = chain.tx(chain.market.functions.deposit(), t, 7)
    assert events(chain, "StakeDeposited", r)[0]["balance"] == 3 * ETH + 7
    before = chain.balance(t)
    r = chain.tx(chain.market.functions.withdraw(ETH + 1), t)
    assert events(chain, "StakeWithdrawn", r)[0] == {
        "trainer": t,
        "amount": ETH + 1,
        "balance": 2 * ETH + 6,
    }
    gas_cost = r["gasUsed"] * r["effectiveGasPrice"]
    assert chain.balance(t) == before + ETH + 1 - gas_cost
    assert chain.account(t) == (2 * ETH + 6, 0, True)
    assert chain.balance(chain.market.address) == 2 * ETH + 6


def test_vault_errors(chain: Chain) -> None:
    m, t, u = chain.market.functions, chain.accounts[2], chain.accounts[3]
    chain.reverts("ZeroAmount", m.register(), t, 0)
    chain.reverts("AmountTooLarge", m.register(), t, 2**96)
    chain.reverts("NotRegistered", m.deposit(), u, 1)
    chain.reverts("NotRegistered", m.withdraw(1), u)
    chain.register(t, ETH)
    assert chain.reverts("AlreadyRegistered", m.register(), t, 1) == (t,)
    chain.reverts("ZeroAmount", m.deposit(), t, 0)
    chain.reverts("AmountTooLarge", m.deposit(), t, 2**96)
    chain.reverts("ZeroAmount", m.withdraw(0), t)
    assert chain.reverts("InsufficientFreeStake", m.withdraw(ETH + 1), t) == (ETH, ETH + 1)


def test_locked_stake_cannot_be_withdrawn(chain: Chain) -> None:
    _job, (t, *_) = setup_running(chain, 2)
    assert chain.account(t) == (5 * ETH, ETH, True)
    chain.reverts("InsufficientFreeStake", chain.market.functions.withdraw(4 * ETH + 1), t)
    chain.tx(chain.market.functions.withdraw(4 * ETH), t)
    assert chain.account(t) == (ETH, ETH, True)


def test_withdraw_transfer_failed(chain: Chain) -> None:
    claimer = chain.deploy("ReentrantClaimer", chain.market.address)
    owner = chain.accounts[0]
    chain.tx(claimer.functions.register(), owner, ETH)
    chain.tx(claimer.functions.setMode(1), owner)  # receive() re-enters and reverts
    args = chain.reverts("TransferFailed", claimer.functions.withdraw(10), owner)
    assert args == (claimer.address, 10)
    chain.tx(claimer.functions.setMode(0), owner)
    chain.tx(claimer.functions.withdraw(10), owner)
    assert chain.account(claimer.address) == (ETH - 10, 0, True)


# ------------------------------------------------------------------------------------ jobs


def test_create_job_and_views(chain: Chain) -> None:
    m = chain.market.functions
    owner, agg = chain.accounts[0], chain.accounts[1]
    assert m.nextJobId().call() == 1
    assert (m.SCORE_ONE().call(), m.MAX_ROUND_SCORE().call()) == (10**6, 10**12)
    assert (m.MAX_TRAINERS().call(), m.MAX_ROUNDS().call()) == (1024, 1000)
    assert chain.registry.functions.alphaPpm().call() == ALPHA_PPM
    assert chain.registry.functions.market().call() == chain.market.address
    assert m.minChallengeWindow().call() == MIN_CHALLENGE_WINDOW
    chain.ensure_aggregator(agg, 6 * ETH)
    p = job_params(agg, slashBps=2500, minReliabilityPpm=7)
    r = chain.tx(m.createJob(params_tuple(p)), owner, 5 * ETH + 3)
    ev = events(chain, "JobCreated", r)[0]
    assert (ev["jobId"], ev["owner"], ev["aggregator"], ev["reward"], ev["aggregatorBond"]) == (
        1,
        owner,
        agg,
        5 * ETH + 3,
        5 * ETH + 3,  # the default bond is the reward
    )
    assert ev["params"]["specCid"] == "bafy-spec"
    assert chain.account(agg) == (6 * ETH, 5 * ETH + 3, True)
    assert m.nextJobId().call() == 2
    j = chain.job(1)
    assert j["status"] == CREATED and j["owner"] == owner and j["aggregator"] == agg
    assert j["reward"] == 5 * ETH + 3 and j["slashBps"] == 2500 and j["minReliabilityPpm"] == 7
    assert j["joinDeadline"] == chain.now() + 1000
    assert j["modelHash"] == p["initialModelHash"]
    assert j["validationRoot"] == p["validationRoot"] == ValidationSet.make(2).root
    assert j["aggregatorBond"] == 5 * ETH + 3 and j["challengeWindow"] == CHALLENGE_WINDOW
    assert (j["pendingRound"], j["finalAt"], j["disputeOpen"]) == (0, 0, False)
    assert j["participantCount"] == 0 and j["currentRound"] == 0
    assert m.phaseOf(1).call() == 0
    assert m.participantsOf(1).call() == []


@pytest.mark.parametrize(
    ("overrides", "value", "error", "args"),
    [
        ({}, 0, "ZeroAmount", ()),
        ({}, 2**96, "AmountTooLarge", (2**96,)),
        ({"aggregator": "0x" + "00" * 20}, ETH, "ZeroAddress", ()),
        ({"rounds": 0}, ETH, "InvalidRounds", (0,)),
        ({"rounds": 1001}, ETH, "InvalidRounds", (1001,)),
        ({"minTrainers": 0}, ETH, "InvalidTrainerBounds", (0, 3)),
        ({"minTrainers": 4}, ETH, "InvalidTrainerBounds", (4, 3)),
        ({"maxTrainers": 1025}, ETH, "InvalidTrainerBounds", (2, 1025)),
        ({"joinDuration": 0}, ETH, "InvalidDuration", ()),
        ({"commitDuration": 0}, ETH, "InvalidDuration", ()),
        ({"revealDuration": 0}, ETH, "InvalidDuration", ()),
        ({"postDuration": 0}, ETH, "InvalidDuration", ()),
        ({"slashBps": 10001}, ETH, "InvalidSlashBps", (10001,)),
        ({"minReliabilityPpm": 1_000_001}, ETH, "InvalidReliability", (1_000_001,)),
        ({"challengeWindow": 9}, ETH, "ChallengeWindowTooShort", (9, MIN_CHALLENGE_WINDOW)),
        ({"validationRoot": b"\x00" * 32}, ETH, "MissingValidationRoot", ()),
        ({"aggregator": "stranger"}, ETH, "NotAnAggregator", ("stranger",)),
        ({}, 2 * ETH + 1, "AggregatorBondTooLow", (2 * ETH, 2 * ETH + 1)),
        ({"aggregatorBond": 2 * ETH + 1}, 1, "AggregatorBondTooLow", (2 * ETH, 2 * ETH + 1)),
    ],
)
def test_create_job_errors(
    chain: Chain, overrides: dict, value: int, error: str, args: tuple
) -> None:
    chain.ensure_aggregator(chain.accounts[1], 2 * ETH)
    stranger = chain.accounts[9]
    chain.register(stranger)  # staked, but not an aggregator
    if overrides.get("aggregator") == "stranger":
        overrides["aggregator"] = stranger
        args = (stranger,)
    p = job_params(overrides.pop("aggregator", chain.accounts[1]), **overrides)
    got = chain.reverts(
        error, chain.market.functions.createJob(params_tuple(p)), chain.accounts[0], value
    )
    assert got == args


def test_constructor_rejects_alpha_above_one(chain: Chain) -> None:
    from backend.chain.contracts import load_artifact

    art = load_artifact("FedMarket")
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    assert chain.reverts(
        "InvalidReliability", factory.constructor(1_000_001, 10), chain.accounts[0]
    ) == (1_000_001,)


def test_join_errors(chain: Chain) -> None:
    m = chain.market.functions
    owner = chain.accounts[0]
    t1, t2, t3, poor, stranger = chain.accounts[2:7]
    for t in (t1, t2, t3):
        chain.register(t)
    chain.register(poor, ETH - 1)
    job = chain.create_job(owner, ETH, maxTrainers=3)
    assert chain.reverts("UnknownJob", m.join(99), t1) == (99,)
    assert chain.reverts("NotRegistered", m.join(job), stranger) == (stranger,)
    r = chain.tx(m.join(job), t1)
    assert events(chain, "TrainerJoined", r) == [{"jobId": job, "trainer": t1, "lockedStake": ETH}]
    assert chain.reverts("AlreadyJoined", m.join(job), t1) == (job, t1)
    assert chain.reverts("InsufficientFreeStake", m.join(job), poor) == (ETH - 1, ETH)
    picky = chain.create_job(owner, ETH, minReliabilityPpm=1)
    assert chain.reverts("ReliabilityTooLow", m.join(picky), t2) == (0, 1)
    heavy = chain.create_job(owner, ETH, minReliabilityWeight=1)
    assert chain.reverts("ReliabilityWeightTooLow", m.join(heavy), t2) == (0, 1)
    chain.at(chain.job(job)["joinDeadline"] + 1)
    assert chain.reverts("JoinClosed", m.join(job), t2) == (job,)
    # A running job refuses joins with WrongStatus. JobFull is a defensive bound that the
    # auto-start at maxTrainers makes unreachable (a full job is always Running).
    job2 = chain.create_job(owner, ETH, maxTrainers=2)
    chain.tx(m.join(job2), t2)
    chain.tx(m.join(job2), t3)
    assert chain.reverts("WrongStatus", m.join(job2), t1) == (job2, RUNNING)


def test_join_auto_starts_when_full(chain: Chain) -> None:
    owner = chain.accounts[0]
    t1, t2 = chain.accounts[2:4]
    for t in (t1, t2):
        chain.register(t)
    job = chain.create_job(owner, ETH, maxTrainers=2)
    chain.tx(chain.market.functions.join(job), t1)
    r = chain.tx(chain.market.functions.join(job), t2)
    assert events(chain, "JobStarted", r) == [{"jobId": job, "trainers": 2}]
    now = chain.now()
    assert events(chain, "RoundScheduled", r) == [
        {
            "jobId": job,
            "round": 1,
            "commitEnd": now + 100,
            "revealEnd": now + 200,
            "postDeadline": now + 300,
        }
    ]
    j = chain.job(job)
    assert (j["status"], j["currentRound"], j["participantCount"]) == (RUNNING, 1, 2)
    assert chain.market.functions.participantsOf(job).call() == [t1, t2]
    assert chain.market.functions.phaseOf(job).call() == 1


def test_start(chain: Chain) -> None:
    m = chain.market.functions
    owner, t1, t2 = chain.accounts[0], chain.accounts[2], chain.accounts[3]
    for t in (t1, t2):
        chain.register(t)
    job = chain.create_job(owner, ETH, minTrainers=2, maxTrainers=3)
    chain.tx(m.join(job), t1)
    assert chain.reverts("NotOwner", m.start(job), t1) == (job, t1)
    assert chain.reverts("NotEnoughTrainers", m.start(job), owner) == (1, 2)
    chain.tx(m.join(job), t2)
    r = chain.tx(m.start(job), owner)
    assert events(chain, "JobStarted", r) == [{"jobId": job, "trainers": 2}]
    assert len(events(chain, "RoundScheduled", r)) == 1
    assert chain.reverts("WrongStatus", m.start(job), owner) == (job, RUNNING)


def test_cancel_paths(chain: Chain) -> None:
    m = chain.market.functions
    owner, stranger, t1 = chain.accounts[0], chain.accounts[9], chain.accounts[2]
    chain.register(t1)
    job = chain.create_job(owner, 3 * ETH + 1)
    chain.tx(m.join(job), t1)
    assert chain.reverts("NotOwner", m.cancel(job), stranger) == (job, stranger)
    r = chain.tx(m.cancel(job), owner)
    assert events(chain, "JobCancelled", r) == [{"jobId": job}]
    assert chain.reverts("WrongStatus", m.cancel(job), owner) == (job, CANCELLED)
    assert chain.job(job)["ownerRefund"] == 3 * ETH + 1
    # trainer unlocks, owner refunded, once each
    assert m.rewardOf(job, t1).call() == 0
    r = chain.tx(m.claim(job), t1)
    assert events(chain, "RewardClaimed", r) == [
        {"jobId": job, "trainer": t1, "reward": 0, "stakeUnlocked": ETH}
    ]
    assert chain.account(t1) == (5 * ETH, 0, True)
    before = chain.balance(owner)
    r = chain.tx(m.claimRefund(job), owner)
    assert chain.balance(owner) == before + 3 * ETH + 1 - r["gasUsed"] * r["effectiveGasPrice"]
    assert chain.reverts("AlreadyClaimed", m.claimRefund(job), owner) == (job, owner)
    assert chain.reverts("AlreadyClaimed", m.claim(job), t1) == (job, t1)
    # anyone may cancel once the join deadline passed and too few trainers joined to start
    job2 = chain.create_job(owner, ETH)
    chain.at(chain.job(job2)["joinDeadline"] + 1)
    chain.tx(m.cancel(job2), stranger)
    assert chain.job(job2)["status"] == CANCELLED
    assert chain.balance(chain.market.address) == vault_total(chain, [t1]) + ETH
    agg = chain.accounts[1]
    assert chain.account(agg)[1] == 0  # both bonds unlocked, with no withdraw cooldown
    assert m.cooldownOf(agg).call() == 0


def test_a_startable_job_cannot_be_cancelled_by_others_before_the_grace_period(
    chain: Chain,
) -> None:
    """Nobody races the owner's `start` after the join deadline (a griefing cancel)."""
    m = chain.market.functions
    owner, stranger, t1, t2 = (chain.accounts[i] for i in (0, 9, 2, 3))
    for t in (t1, t2):
        chain.register(t)
    job = chain.create_job(owner, ETH, minTrainers=2, maxTrainers=3)
    chain.tx(m.join(job), t1)
    chain.tx(m.join(job), t2)  # startable: 2 >= minTrainers
    deadline = chain.job(job)["joinDeadline"]
    grace = m.CANCEL_GRACE().call()
    assert grace == 86_400
    chain.at(deadline + 1)
    assert chain.reverts("NotOwner", m.cancel(job), stranger) == (job, stranger)
    assert chain.reverts("NotOwner", m.cancel(job), t1) == (job, t1)
    chain.at(deadline + grace)
    assert chain.reverts("NotOwner", m.cancel(job), stranger) == (job, stranger)
    chain.tx(m.start(job), owner)  # the owner still may start within the grace period
    assert chain.job(job)["status"] == RUNNING
    # ...but not later: trainers who joined are not held to a job started months afterwards
    late = chain.create_job(owner, ETH, minTrainers=1, maxTrainers=3)
    chain.register(chain.accounts[5])
    chain.tx(m.join(late), chain.accounts[5])
    start_deadline = chain.job(late)["joinDeadline"] + grace
    chain.at(start_deadline + 1)
    assert chain.reverts("StartTooLate", m.start(late), owner) == (late, start_deadline)
    # an owner who never starts cannot lock the trainers' stakes: after the grace, anyone cancels
    job2 = chain.create_job(owner, ETH, minTrainers=1, maxTrainers=3)
    chain.register(chain.accounts[4])
    chain.tx(m.join(job2), chain.accounts[4])
    chain.at(chain.job(job2)["joinDeadline"] + grace + 1)
    chain.tx(m.cancel(job2), stranger)
    assert chain.job(job2)["status"] == CANCELLED


def test_a_job_cannot_lock_stakes_for_more_than_a_year(chain: Chain) -> None:
    owner, m = chain.accounts[0], chain.market.functions
    limit = m.MAX_JOB_DURATION().call()
    assert limit == 365 * 86_400
    chain.ensure_aggregator(chain.accounts[1], 3 * ETH)
    # join + rounds × (commit + reveal + post + challenge window) exactly at the limit is fine,
    # one second more is not
    w = MIN_CHALLENGE_WINDOW
    fits = job_params(
        chain.accounts[1], rounds=10, joinDuration=limit - 10 * (3 + w), commitDuration=1
    )
    fits.update(revealDuration=1, postDuration=1, challengeWindow=w)
    chain.tx(m.createJob(params_tuple(fits)), owner, ETH)
    fits["joinDuration"] += 1
    got = chain.reverts("JobTooLong", m.createJob(params_tuple(fits)), owner, ETH)
    assert got == (limit + 1, limit)
    # the product cannot overflow into a short span: uint256 arithmetic
    huge = job_params(chain.accounts[1], rounds=1000, commitDuration=2**32 - 1)
    assert chain.reverts("JobTooLong", m.createJob(params_tuple(huge)), owner, ETH)[1] == limit
    huge = job_params(chain.accounts[1], rounds=1000, challengeWindow=2**32 - 1)
    assert chain.reverts("JobTooLong", m.createJob(params_tuple(huge)), owner, ETH)[1] == limit


def test_the_owner_cannot_be_its_jobs_aggregator(chain: Chain) -> None:
    owner = chain.accounts[0]
    params = params_tuple(job_params(owner))
    got = chain.reverts("OwnerIsAggregator", chain.market.functions.createJob(params), owner, ETH)
    assert got == (owner,)


@pytest.mark.parametrize("who", ["owner", "aggregator"])
def test_neither_owner_nor_aggregator_can_join_as_a_trainer(chain: Chain, who: str) -> None:
    """A judge paid as a contestant could score itself top and flag the rest."""
    m = chain.market.functions
    owner, aggregator = chain.accounts[0], chain.accounts[1]
    account = owner if who == "owner" else aggregator
    chain.register(account)
    job = chain.create_job(owner, ETH, aggregator=aggregator)
    assert chain.reverts("ConflictOfInterest", m.join(job), account) == (job, account)
    assert chain.job(job)["participantCount"] == 0


# ------------------------------------------------------------------------------------ rounds


def test_commit_errors(chain: Chain) -> None:
    m = chain.market.functions
    owner, t1, t2, stranger = (
        chain.accounts[0],
        chain.accounts[2],
        chain.accounts[3],
        chain.accounts[9],
    )
    for t in (t1, t2):
        chain.register(t)
    job = chain.create_job(owner, ETH, maxTrainers=3)
    chain.tx(m.join(job), t1)
    chain.tx(m.join(job), t2)
    c = b"\x01" * 32
    assert chain.reverts("WrongStatus", m.commit(job, c), t1) == (job, CREATED)
    chain.tx(m.start(job), owner)
    assert chain.reverts("NotParticipant", m.commit(job, c), stranger) == (job, stranger)
    r = chain.tx(m.commit(job, c), t1)
    assert events(chain, "UpdateCommitted", r) == [
        {"jobId": job, "round": 1, "trainer": t1, "commitment": c}
    ]
    assert m.commitmentOf(job, t1).call() == c
    assert chain.reverts("AlreadyCommitted", m.commit(job, c), t1) == (job, 1, t1)
    chain.at(chain.job(job)["commitEnd"])
    assert chain.reverts("NotInCommitPhase", m.commit(job, c), t2) == (job, 1)


def test_reveal_errors(chain: Chain) -> None:
    m = chain.market.functions
    job, (t1, t2, t3) = setup_running(chain, 3)
    stranger = chain.accounts[9]
    u1 = chain.commit(job, t1, 1)
    u2 = chain.commit(job, t2, 1)
    reveal = lambda t, u: m.reveal(job, u.content_hash, u.cid, u.salt)  # noqa: E731
    assert chain.reverts("NotInRevealPhase", reveal(t1, u1), t1) == (job, 1)
    assert chain.reverts("NotParticipant", reveal(stranger, u1), stranger) == (job, stranger)
    chain.at(chain.job(job)["commitEnd"])
    assert chain.reverts("NothingCommitted", reveal(t3, u1), t3) == (job, 1, t3)
    for bad in (
        Update(u1.content_hash, u1.cid, b"\x00" * 32),  # wrong salt
        Update(u1.content_hash, u1.cid + "x", u1.salt),  # wrong cid
        Update(b"\x00" * 32, u1.cid, u1.salt),  # wrong content hash
    ):
        assert chain.reverts("CommitmentMismatch", reveal(t1, bad), t1) == (job, 1, t1)
    # someone else's (valid) opening does not match my commitment either
    assert chain.reverts("CommitmentMismatch", reveal(t2, u1), t2) == (job, 1, t2)
    r = chain.reveal(job, t1, u1)
    assert events(chain, "UpdateRevealed", r) == [
        {"jobId": job, "round": 1, "trainer": t1, "contentHash": u1.content_hash, "cid": u1.cid}
    ]
    assert chain.reverts("AlreadyRevealed", reveal(t1, u1), t1) == (job, 1, t1)
    assert m.phaseOf(job).call() == 2
    chain.at(chain.job(job)["revealEnd"])
    assert chain.reverts("NotInRevealPhase", reveal(t2, u2), t2) == (job, 1)
    # WrongStatus once the job is no longer running
    chain.post(job, 1, [5, 0, 0], [0, MISSING, MISSING])
    chain.play_round(job, {t1: (1, 0), t2: (1, 0), t3: (1, 0)})
    assert chain.job(job)["status"] == FINISHED
    assert chain.reverts("WrongStatus", reveal(t1, u1), t1) == (job, FINISHED)


def test_early_phase_close(chain: Chain) -> None:
    m = chain.market.functions
    job, trainers = setup_running(chain, 3)
    ups = {}
    for t in trainers[:2]:
        ups[t] = chain.commit(job, t, 1)
    assert m.phaseOf(job).call() == 1
    ups[trainers[2]] = u = make_update(trainers[2], job, 1)
    r = chain.tx(
        m.commit(job, commitment(u.content_hash, u.cid, u.salt, trainers[2], job, 1)), trainers[2]
    )
    now = chain.now()
    assert events(chain, "RoundScheduled", r) == [
        {
            "jobId": job,
            "round": 1,
            "commitEnd": now,
            "revealEnd": now + 100,
            "postDeadline": now + 200,
        }
    ]
    # reveal allowed right away; last reveal closes the reveal phase
    chain.reveal(job, trainers[0], ups[trainers[0]])
    chain.reveal(job, trainers[1], ups[trainers[1]])
    r = chain.reveal(job, trainers[2], ups[trainers[2]])
    now2 = chain.now()
    assert events(chain, "RoundScheduled", r) == [
        {"jobId": job, "round": 1, "commitEnd": now, "revealEnd": now2, "postDeadline": now2 + 100}
    ]
    j = chain.job(job)
    assert (j["commits"], j["reveals"]) == (3, 3)
    chain.post(job, 1, [1, 2, 3], [0, 0, 0])  # posting possible at once
    j = chain.job(job)
    assert (j["currentRound"], j["commits"], j["reveals"]) == (2, 0, 0)


def test_post_round_errors(chain: Chain) -> None:
    m = chain.market.functions
    owner, agg = chain.accounts[0], chain.accounts[1]
    job, (t1, t2, t3) = setup_running(chain, 3)
    created = chain.create_job(owner, ETH)
    h, cid = b"\x09" * 32, "bafy-m"
    post = lambda j, r, s, rs: m.postRound(j, r, h, cid, s, rs)  # noqa: E731
    assert chain.reverts("NotAggregator", post(job, 1, [0, 0, 0], [1, 1, 1]), owner) == (job, owner)
    assert chain.reverts("WrongStatus", post(created, 0, [], []), agg) == (created, CREATED)
    assert chain.reverts("WrongRound", post(job, 2, [0, 0, 0], [1, 1, 1]), agg) == (1, 2)
    ups = {t: chain.commit(job, t, 1) for t in (t1, t2)}
    assert chain.reverts("RevealPhaseOpen", post(job, 1, [0, 0, 0], [1, 1, 1]), agg) == (job, 1)
    chain.at(chain.job(job)["commitEnd"])
    for t, u in ups.items():
        chain.reveal(job, t, u)
    assert m.phaseOf(job).call() == 3
    assert chain.reverts("LengthMismatch", post(job, 1, [0, 0], [0, 0, 1]), agg) == (3, 2, 3)
    assert chain.reverts("LengthMismatch", post(job, 1, [0, 0, 0], [0, 0]), agg) == (3, 3, 2)
    assert chain.reverts("UnknownReason", post(job, 1, [0, 0, 0], [0, 12, 1]), agg) == (12,)
    assert chain.reverts("ScoreTooLarge", post(job, 1, [10**12 + 1, 0, 0], [0, 0, 1]), agg) == (
        10**12 + 1,
    )
    # non-revealer must be (0, reason 1)
    assert chain.reverts("InvalidResult", post(job, 1, [1, 1, 0], [0, 0, 0]), agg) == (t3, 0, 0)
    assert chain.reverts("InvalidResult", post(job, 1, [1, 1, 5], [0, 0, 1]), agg) == (t3, 5, 1)
    # revealer must not have reason 1
    assert chain.reverts("InvalidResult", post(job, 1, [0, 1, 0], [1, 0, 1]), agg) == (t1, 0, 1)
    # nonzero reason requires score 0
    assert chain.reverts("InvalidResult", post(job, 1, [7, 1, 0], [OUTLIER, 0, 1]), agg) == (
        t1,
        7,
        OUTLIER,
    )
    chain.at(chain.job(job)["postDeadline"] + 2)  # views run on the latest block (ts - 1)
    assert m.phaseOf(job).call() == 4
    assert chain.reverts("PostDeadlinePassed", post(job, 1, [1, 1, 0], [0, 0, 1]), agg) == (job, 1)


def test_post_round_effects_and_slashing(chain: Chain) -> None:
    m = chain.market.functions
    stake = ETH + 3  # odd, so the 10% slash rounds down
    job, (t1, t2, t3) = setup_running(chain, 3, rounds=2, stakeRequired=stake, slashBps=1000)
    r = chain.play_round(job, {t1: (2_000_000, 0), t2: (0, OUTLIER), t3: (0, UNAVAILABLE)})
    slash1 = stake * 1000 // 10000
    assert events(chain, "TrainerSlashed", r) == [
        {"jobId": job, "round": 1, "trainer": t2, "amount": slash1, "reason": OUTLIER}
    ]
    posted = events(chain, "RoundPosted", r)[0]
    assert posted["scores"] == [2_000_000, 0, 0] and posted["reasons"] == [0, OUTLIER, UNAVAILABLE]
    assert posted["modelCid"] == "bafy-model-1"
    assert chain.account(t2) == (5 * ETH - slash1, stake - slash1, True)
    p2 = chain.participant(job, t2)
    assert (p2["lockedStake"], p2["flaggedRounds"], p2["totalScore"]) == (stake - slash1, 1, 0)
    assert chain.participant(job, t3)["flaggedRounds"] == 0  # reason 2 is not slashable
    j = chain.job(job)
    assert (j["slashedPool"], j["totalScore"], j["maxTotalScore"]) == (slash1, 2_000_000, 2_000_000)
    assert j["modelHash"] == b"\x01" * 32 and j["currentRound"] == 2
    # round 2: t2 flagged again (geometric: 10% of the remaining lock); t3 did not commit
    r = chain.play_round(
        job, {t1: (1_000_000, 0), t2: (0, 3), t3: (0, MISSING)}, committers=[t1, t2]
    )
    slash2 = (stake - slash1) * 1000 // 10000
    assert [e["amount"] for e in events(chain, "TrainerSlashed", r)] == [slash2]
    assert events(chain, "JobFinished", r) == [{"jobId": job}]
    j = chain.job(job)
    assert (j["status"], j["slashedPool"], j["totalScore"]) == (
        FINISHED,
        slash1 + slash2,
        3_000_000,
    )
    assert chain.participant(job, t2)["flaggedRounds"] == 2
    assert m.phaseOf(job).call() == 0


# ------------------------------------------------------------------------------------ settlement


def test_finalize_settlement_exact_with_remainders(chain: Chain) -> None:
    m = chain.market.functions
    owner = chain.accounts[0]
    reward = 10 * ETH + 7
    job, (t1, t2, t3) = setup_running(
        chain, 3, reward=reward, rounds=2, stakeRequired=ETH + 1, slashBps=333
    )
    assert chain.reverts("WrongStatus", m.finalize(job), owner) == (job, RUNNING)
    chain.play_round(job, {t1: (333_333, 0), t2: (666_667, 0), t3: (0, OUTLIER)})
    chain.play_round(job, {t1: (1_000_001, 0), t2: (1, 0), t3: (0, OUTLIER)})
    j = chain.job(job)
    slashed = j["slashedPool"]
    assert (
        slashed == (ETH + 1) * 333 // 10000 + ((ETH + 1) - (ETH + 1) * 333 // 10000) * 333 // 10000
    )
    chain.make_final(job)
    r = chain.tx(m.finalize(job), chain.accounts[9])  # anyone
    pool = reward + slashed
    total = 333_333 + 666_667 + 1_000_001 + 1
    rewards = {t1: pool * 1_333_334 // total, t2: pool * 666_668 // total, t3: 0}
    refund = pool - sum(rewards.values())
    assert refund > 0  # the odd amounts leave a remainder
    assert events(chain, "JobFinalized", r) == [
        {"jobId": job, "rewardPool": pool, "totalScore": total, "ownerRefund": refund}
    ]
    assert len(events(chain, "ReliabilityUpdated", r)) == 3
    j = chain.job(job)
    assert (j["status"], j["rewardPool"], j["ownerRefund"]) == (SETTLED, pool, refund)
    for t, want in rewards.items():
        assert m.rewardOf(job, t).call() == want
    assert sum(rewards.values()) + refund == reward + slashed
    assert chain.reverts("WrongStatus", m.finalize(job), owner) == (job, SETTLED)
    # claims pay exactly; the market ends holding only vault balances
    for t, want in rewards.items():
        before = chain.balance(t)
        r = chain.tx(m.claim(job), t)
        assert chain.balance(t) == before + want - r["gasUsed"] * r["effectiveGasPrice"]
        assert m.rewardOf(job, t).call() == 0
        assert chain.participant(job, t)["claimed"]
    chain.tx(m.claimRefund(job), owner)
    assert chain.balance(chain.market.address) == vault_total(chain, [t1, t2, t3])
    assert all(chain.account(t)[1] == 0 for t in (t1, t2, t3))
    assert chain.account(t3)[0] == 5 * ETH - slashed


def test_claim_errors_and_double_claim(chain: Chain) -> None:
    m = chain.market.functions
    owner, stranger = chain.accounts[0], chain.accounts[9]
    job, (t1, t2) = setup_running(chain, 2, rounds=1)
    assert chain.reverts("WrongStatus", m.claim(job), t1) == (job, RUNNING)
    assert chain.reverts("WrongStatus", m.claimRefund(job), owner) == (job, RUNNING)
    chain.play_round(job, {t1: (5, 0), t2: (5, 0)})
    chain.finish(job)
    assert chain.reverts("NotParticipant", m.claim(job), stranger) == (job, stranger)
    assert chain.reverts("NotOwner", m.claimRefund(job), stranger) == (job, stranger)
    r = chain.tx(m.claim(job), t1)
    assert events(chain, "RewardClaimed", r) == [
        {"jobId": job, "trainer": t1, "reward": 5 * ETH, "stakeUnlocked": ETH}
    ]
    assert chain.reverts("AlreadyClaimed", m.claim(job), t1) == (job, t1)
    r = chain.tx(m.claimRefund(job), owner)
    assert events(chain, "RefundClaimed", r) == [{"jobId": job, "owner": owner, "amount": 0}]
    assert chain.reverts("AlreadyClaimed", m.claimRefund(job), owner) == (job, owner)


def test_zero_total_score_burns_slashed_stake_and_refunds_only_the_reward(chain: Chain) -> None:
    """An owner-aligned aggregator that flags everyone must not collect the slashed stakes."""
    m = chain.market.functions
    reward = 3 * ETH + 1
    job, (t1, t2) = setup_running(chain, 2, reward=reward, rounds=1, slashBps=500)
    chain.play_round(job, {t1: (0, OUTLIER), t2: (0, MISSING)}, committers=[t1])
    r = chain.finish(job)
    slashed = ETH * 500 // 10000
    missed = ETH * 500 // 20000  # t2 never committed: half the cheat slash, at settlement
    assert events(chain, "TrainerSlashed", r) == [
        {"jobId": job, "round": 0, "trainer": t2, "amount": missed, "reason": MISSING}
    ]
    assert events(chain, "SlashedStakeBurned", r) == [{"jobId": job, "amount": slashed + missed}]
    j = chain.job(job)
    assert j["ownerRefund"] == reward and j["rewardPool"] == reward + slashed + missed
    paid = chain.tx(m.claimRefund(job), chain.accounts[0])
    assert events(chain, "RefundClaimed", paid)[0]["amount"] == reward
    assert m.rewardOf(job, t1).call() == 0
    assert chain.reliability(t1) == [0, 1, ETH]


def test_abandon_pays_posted_rounds(chain: Chain) -> None:
    m = chain.market.functions
    owner = chain.accounts[0]
    reward = 9 * ETH + 5
    job, (t1, t2, t3) = setup_running(chain, 3, reward=reward, rounds=3, slashBps=1000)
    chain.play_round(job, {t1: (100, 0), t2: (200, 0), t3: (0, OUTLIER)})
    deadline = chain.job(job)["postDeadline"]
    assert chain.reverts("DeadlineNotPassed", m.abandon(job), owner) == (job, deadline)
    chain.at(deadline)
    assert chain.reverts("DeadlineNotPassed", m.abandon(job), owner) == (job, deadline)
    chain.at(deadline + 1)
    r = chain.tx(m.abandon(job), chain.accounts[9])  # anyone
    slashed = ETH * 1000 // 10000
    pool = reward * 1 // 3 + slashed
    rewards = {t1: pool * 100 // 300, t2: pool * 200 // 300, t3: 0}
    refund = reward + slashed - sum(rewards.values())
    assert events(chain, "JobAbandoned", r) == [
        {
            "jobId": job,
            "postedRounds": 1,
            "rewardPool": pool,
            "ownerRefund": refund,
            "ownerFault": False,
        }
    ]
    # nobody revealed in the round the aggregator failed: its bond is burned (harmed no one)
    bond = reward
    assert events(chain, "AggregatorBondSlashed", r) == [
        {"jobId": job, "aggregator": chain.accounts[1], "amount": bond}
    ]
    assert events(chain, "SlashedStakeBurned", r) == [{"jobId": job, "amount": bond}]
    # the posted round's contributions count: skipping the last post shields no one
    assert [
        (e["trainer"], e["contributionPpm"]) for e in events(chain, "ReliabilityUpdated", r)
    ] == [
        (t1, 500_000),
        (t2, 1_000_000),
        (t3, 0),
    ]
    assert chain.reverts("WrongStatus", m.abandon(job), owner) == (job, ABANDONED)
    for t, want in rewards.items():
        assert m.rewardOf(job, t).call() == want
    assert sum(rewards.values()) + refund == reward + slashed
    for t, ppm in ((t1, 500_000), (t2, 1_000_000), (t3, 0)):
        chain.tx(m.claim(job), t)
        assert chain.reliability(t) == [ppm, 1, ETH]
    chain.tx(m.claimRefund(job), owner)
    held = chain.balance(chain.market.address)
    assert held == vault_total(chain, [t1, t2, t3]) + bond  # the burned bond stays, owned by none


def test_abandon_without_contributors_refunds_everything(chain: Chain) -> None:
    m = chain.market.functions
    owner = chain.accounts[0]
    reward = 2 * ETH + 1
    job, (t1, t2) = setup_running(chain, 2, reward=reward, rounds=2)
    chain.at(chain.job(job)["postDeadline"] + 1)
    r = chain.tx(m.abandon(job), t1)
    assert events(chain, "JobAbandoned", r)[0]["ownerRefund"] == reward
    for t in (t1, t2):
        r = chain.tx(m.claim(job), t)
        assert events(chain, "RewardClaimed", r)[0]["reward"] == 0
        assert chain.account(t) == (5 * ETH, 0, True)
    before = chain.balance(owner)
    r = chain.tx(m.claimRefund(job), owner)
    assert chain.balance(owner) == before + reward - r["gasUsed"] * r["effectiveGasPrice"]


# ------------------------------------------------------------------------------------ reliability


def test_reliability_weighted_after_two_jobs_and_min_to_join(chain: Chain) -> None:
    m = chain.market.functions
    owner = chain.accounts[0]
    job1, (t1, t2, t3) = setup_running(chain, 3, rounds=1)
    chain.play_round(job1, {t1: (4_000_000, 0), t2: (1_000_000, 0), t3: (0, OUTLIER)})
    chain.finish(job1)
    c1 = {t1: 1_000_000, t2: 250_000, t3: 0}
    for t, c in c1.items():
        assert chain.reliability(t) == [c, 1, ETH]
    # job 2: same trainers (they claim first to free their stake), a different stake
    for t in (t1, t2, t3):
        chain.tx(m.claim(job1), t)
    stake2 = ETH // 2 + 7
    job2 = chain.create_job(owner, ETH, maxTrainers=3, rounds=1, stakeRequired=stake2)
    for t in (t1, t2, t3):
        chain.tx(m.join(job2), t)
    chain.play_round(job2, {t1: (1_000_000, 0), t2: (3_000_000, 0), t3: (1_500_000, 0)})
    r = chain.finish(job2)
    c2 = {t1: 333_333, t2: 1_000_000, t3: 500_000}
    want = {t: fold_reliability([c1[t], 1, ETH], c2[t], stake2) for t in c1}
    decayed = ETH * (10**6 - ALPHA_PPM) // 10**6
    assert want[t1] == [
        (10**6 * decayed + 333_333 * stake2) // (decayed + stake2),
        2,
        decayed + stake2,
    ]
    for t in (t1, t2, t3):
        assert chain.reliability(t) == want[t]
    ev = {e["trainer"]: e for e in events(chain, "ReliabilityUpdated", r)}
    assert ev[t1] == {
        "trainer": t1,
        "jobId": job2,
        "contributionPpm": 333_333,
        "stake": stake2,
        "reliabilityPpm": want[t1][0],
        "weight": want[t1][2],
        "jobs": 2,
    }
    # minimum reliability to join
    for t in (t1, t2, t3):
        chain.tx(m.claim(job2), t)
    need = want[t2][0]
    assert want[t3][0] < need < want[t1][0]
    job3 = chain.create_job(owner, ETH, minReliabilityPpm=need)
    assert chain.reverts("ReliabilityTooLow", m.join(job3), t3) == (want[t3][0], need)
    chain.tx(m.join(job3), t2)  # exactly at the threshold
    chain.tx(m.join(job3), t1)


# ------------------------------------------------------------------------------------ reentrancy


def _claimer_job(chain: Chain) -> tuple[object, int, str]:
    m = chain.market.functions
    owner, t1 = chain.accounts[0], chain.accounts[2]
    claimer = chain.deploy("ReentrantClaimer", chain.market.address)
    chain.register(t1)
    chain.tx(claimer.functions.register(), owner, 2 * ETH)
    job = chain.create_job(owner, 4 * ETH + 1, rounds=1, maxTrainers=2)
    chain.tx(claimer.functions.join(job), owner)
    chain.tx(m.join(job), t1)
    u = make_update(claimer.address, job, 1)
    chain.tx(
        claimer.functions.commit(
            job, commitment(u.content_hash, u.cid, u.salt, claimer.address, job, 1)
        ),
        owner,
    )
    u1 = chain.commit(job, t1, 1)
    chain.tx(claimer.functions.reveal(job, u.content_hash, u.cid, u.salt), owner)
    chain.reveal(job, t1, u1)
    chain.post(job, 1, [3_000_000, 1_000_000], [0, 0])
    chain.finish(job)
    return claimer, job, owner


def test_reentrant_claim_bubbling_reverts_whole_claim(chain: Chain) -> None:
    m = chain.market.functions
    claimer, job, owner = _claimer_job(chain)
    reward = m.rewardOf(job, claimer.address).call()
    assert reward == (4 * ETH + 1) * 3 // 4
    market_before = chain.balance(chain.market.address)
    chain.tx(claimer.functions.setMode(1), owner)
    args = chain.reverts("TransferFailed", claimer.functions.claim(job), owner)
    assert args == (claimer.address, reward)
    assert chain.balance(chain.market.address) == market_before
    assert not chain.participant(job, claimer.address)["claimed"]
    assert chain.account(claimer.address) == (2 * ETH, ETH, True)
    # a normal claim afterwards works exactly once
    chain.tx(claimer.functions.setMode(0), owner)
    chain.tx(claimer.functions.claim(job), owner)
    assert chain.balance(claimer.address) == reward
    chain.reverts("AlreadyClaimed", claimer.functions.claim(job), owner)


def test_reentrant_claim_caught_pays_once(chain: Chain) -> None:
    m = chain.market.functions
    claimer, job, owner = _claimer_job(chain)
    reward = m.rewardOf(job, claimer.address).call()
    market_before = chain.balance(chain.market.address)
    chain.tx(claimer.functions.setMode(2), owner)
    chain.tx(claimer.functions.claim(job), owner)
    assert claimer.functions.reentries().call() == 1
    assert not claimer.functions.reentrySucceeded().call()
    err = claimer.functions.lastError().call()
    assert err[:4] == keccak(text="ReentrancyGuardReentrantCall()")[:4]
    assert chain.balance(claimer.address) == reward
    assert chain.balance(chain.market.address) == market_before - reward
    assert chain.account(claimer.address) == (2 * ETH, 0, True)
    chain.reverts("AlreadyClaimed", claimer.functions.claim(job), owner)


def test_claim_refund_transfer_failed(chain: Chain) -> None:
    claimer = chain.deploy("ReentrantClaimer", chain.market.address)
    owner = chain.accounts[0]
    p = job_params(chain.accounts[1])
    chain.ensure_aggregator(chain.accounts[1], ETH)
    job = chain.market.functions.nextJobId().call()
    chain.tx(claimer.functions.createJob(params_tuple(p)), owner, ETH)
    chain.tx(claimer.functions.cancel(job), owner)
    chain.tx(claimer.functions.setMode(1), owner)
    assert chain.reverts("TransferFailed", claimer.functions.claimRefund(job), owner) == (
        claimer.address,
        ETH,
    )
    assert not chain.job(job)["refundClaimed"]
    chain.tx(claimer.functions.setMode(0), owner)
    chain.tx(claimer.functions.claimRefund(job), owner)
    assert chain.balance(claimer.address) == ETH
