"""Issue 13 — nobody can steal: bonded aggregators, challengeable rounds, disputes settled by
re-running the round.

Unit tests for every new external function and custom-error path (FedMarket, StakeVault,
DisputeCourt), then the attack scenarios, each of which now fails to steal. Every scenario ends
with ``check_conservation``: the market's ETH balance equals Σ vault balances plus what each job
still holds, to the wei.
"""

from __future__ import annotations

from typing import Any

import pytest
from contract_harness import (
    ABANDONED,
    CHALLENGE_BOND,
    CHALLENGE_WINDOW,
    D_CORRECTED,
    D_NO_DECISION,
    D_OVERTURNED,
    D_UPHELD,
    D_VOTING,
    ETH,
    FINISHED,
    MISSING,
    OUTLIER,
    ROLE_AGGREGATOR,
    ROLE_VERIFIER,
    RUNNING,
    SETTLED,
    VOTE_BOND,
    Chain,
    Posted,
    ValidationSet,
    check_conservation,
    digest_of,
    job_params,
    merkle_tree,
    model_hash,
    params_tuple,
    vote_commitment,
)

from backend.chain.contracts import load_artifact

DAY = 86_400
BPS = 10_000
HARMED_BPS, CHALLENGER_BPS = 5000, 3000
VOTERS_BPS = BPS - HARMED_BPS - CHALLENGER_BPS
MISS_PENALTY_BPS = 5000


# ------------------------------------------------------------------------------------ helpers


def setup_job(
    chain: Chain,
    n: int = 3,
    reward: int = 10 * ETH + 7,
    verifiers: int = 4,
    stake: int = 5 * ETH,
    **kw: Any,
) -> tuple[int, list[str], list[str]]:
    """Trainers accounts[2:2+n] (registered with ``stake``), verifiers accounts[9:9+verifiers]
    (1 ETH each), a running job owned by accounts[0], aggregated by accounts[1]."""
    trainers = chain.accounts[2 : 2 + n]
    for t in trainers:
        chain.register(t, stake)
    vs = chain.accounts[9 : 9 + verifiers]
    chain.make_verifiers(vs)
    kw.setdefault("maxTrainers", n)
    kw.setdefault("minTrainers", min(2, n))
    job = chain.create_job(chain.accounts[0], reward, **kw)
    for t in trainers:
        chain.tx(chain.market.functions.join(job), t)
    assert chain.job(job)["status"] == RUNNING
    return job, trainers, vs


def result(parts: list[str], entries: dict[str, tuple[int, int]], model: bytes) -> Posted:
    return Posted(model, [entries[t][0] for t in parts], [entries[t][1] for t in parts], "bafy-fix")


def posted(chain: Chain, job: int, rnd: int) -> Posted:
    return chain.posted[(job, rnd)]


def members(chain: Chain, did: int) -> list[str]:
    return list(chain.dispute(did)["members"])


def correct(chain: Chain, did: int, fix: Posted, was: Posted, sender: str) -> Any:
    fn = chain.court.functions.postCorrection(did, fix.as_tuple(), fix.model_cid, was.as_tuple())
    return chain.tx(fn, sender)


def transfers(chain: Chain, receipt: Any) -> list[tuple[str, str, int, int]]:
    return [
        (e["from"], e["to"], e["amount"], e["why"])
        for e in chain.events("StakeTransferred", receipt, chain.market)
    ]


def test_harness_reads_storage_like_the_views(chain: Chain) -> None:
    """Chain.vault / status / slashed_pool read FedMarket's storage directly (the stateful test
    checks conservation after every step with them): they agree with the views."""
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1, slashBps=2500)
    chain.play_round(job, {t1: (1, 0), t2: (0, OUTLIER), t3: (0, OUTLIER)})
    for a in (*chain.accounts, chain.court.address):
        balance, locked, registered, roles = chain.vault(a)
        assert (balance, locked, registered) == chain.account(a)
        assert roles == chain.market.functions.rolesOf(a).call()
    assert chain.status(job) == chain.job(job)["status"] == FINISHED
    assert chain.slashed_pool(job) == chain.job(job)["slashedPool"] == 2 * (ETH // 4)
    assert chain.status(job + 1) == 0


# ------------------------------------------------------------------------------------ roles


def test_register_role(chain: Chain) -> None:
    m = chain.market.functions
    a, v, t = chain.accounts[1], chain.accounts[9], chain.accounts[2]
    assert (m.ROLE_AGGREGATOR().call(), m.ROLE_VERIFIER().call()) == (1, 2)
    assert m.BOND_COOLDOWN().call() == DAY
    r = chain.register_role(a, ROLE_AGGREGATOR, 3 * ETH)
    assert chain.events("RoleRegistered", r) == [
        {"account": a, "role": ROLE_AGGREGATOR, "amount": 3 * ETH, "balance": 3 * ETH}
    ]
    assert chain.account(a) == (3 * ETH, 0, True) and m.rolesOf(a).call() == ROLE_AGGREGATOR
    chain.register_role(v, ROLE_VERIFIER, ETH)
    chain.register_role(v, ROLE_VERIFIER, 0)  # again, adding nothing
    chain.register_role(v, ROLE_AGGREGATOR, 1)  # both roles
    assert m.rolesOf(v).call() == ROLE_AGGREGATOR | ROLE_VERIFIER
    assert chain.account(v) == (ETH + 1, 0, True)
    # a trainer may take a role with the stake it has; register() is then refused
    chain.register(t, ETH)
    chain.register_role(t, ROLE_VERIFIER, 0)
    assert m.rolesOf(t).call() == ROLE_VERIFIER
    assert chain.reverts("AlreadyRegistered", m.register(), v, 1) == (v,)
    assert chain.reverts("InvalidRole", m.registerRole(0), t) == (0,)
    assert chain.reverts("InvalidRole", m.registerRole(3), t) == (3,)
    assert chain.reverts("AmountTooLarge", m.registerRole(1), t, 2**96) == (2**96,)
    assert chain.balance(chain.market.address) == 5 * ETH + 1
    check_conservation(chain)


def test_create_job_needs_a_registered_bonded_aggregator(chain: Chain) -> None:
    m = chain.market.functions
    owner, agg, other = chain.accounts[0], chain.accounts[1], chain.accounts[9]
    p = job_params(agg)
    assert chain.reverts("NotAnAggregator", m.createJob(params_tuple(p)), owner, ETH) == (agg,)
    chain.register_role(other, ROLE_VERIFIER, 5 * ETH)  # a verifier is not an aggregator
    p2 = job_params(other)
    assert chain.reverts("NotAnAggregator", m.createJob(params_tuple(p2)), owner, ETH) == (other,)
    chain.register_role(agg, ROLE_AGGREGATOR, 3 * ETH)
    assert chain.reverts("AggregatorBondTooLow", m.createJob(params_tuple(p)), owner, 4 * ETH) == (
        3 * ETH,
        4 * ETH,
    )
    # an explicit bond, smaller or larger than the reward
    p["aggregatorBond"] = 2 * ETH
    r = chain.tx(m.createJob(params_tuple(p)), owner, 7 * ETH)
    ev = chain.events("JobCreated", r)[0]
    assert (ev["reward"], ev["aggregatorBond"]) == (7 * ETH, 2 * ETH)
    assert chain.account(agg) == (3 * ETH, 2 * ETH, True)
    assert chain.reverts("AggregatorBondTooLow", m.createJob(params_tuple(p)), owner, ETH) == (
        ETH,
        2 * ETH,
    )
    assert chain.reverts("InsufficientFreeStake", m.withdraw(ETH + 1), agg) == (ETH, ETH + 1)
    # the owner can never be its own job's aggregator, not even with the role
    chain.register_role(owner, ROLE_AGGREGATOR, 5 * ETH)
    p3 = job_params(owner)
    assert chain.reverts("OwnerIsAggregator", m.createJob(params_tuple(p3)), owner, ETH) == (owner,)


def test_aggregator_may_cancel_a_created_job_and_withdraw_at_once(chain: Chain) -> None:
    m = chain.market.functions
    owner, agg, t, stranger = (chain.accounts[i] for i in (0, 1, 2, 15))
    chain.register(t)
    job = chain.create_job(owner, 2 * ETH + 1)
    chain.tx(m.join(job), t)
    assert chain.account(agg) == (2 * ETH + 1, 2 * ETH + 1, True)
    assert chain.reverts("NotOwner", m.cancel(job), stranger) == (job, stranger)
    assert chain.reverts("NotOwner", m.cancel(job), t) == (job, t)
    r = chain.tx(m.cancel(job), agg)  # declining to serve: its bond was locked unasked
    assert chain.events("JobCancelled", r) == [{"jobId": job}]
    assert chain.events("BondCooldown", r) == []
    j = chain.job(job)
    assert (j["aggregatorBond"], j["ownerRefund"]) == (0, 2 * ETH + 1)
    assert chain.account(agg)[1] == 0 and m.cooldownOf(agg).call() == 0
    chain.tx(m.withdraw(2 * ETH + 1), agg)  # a cancelled job cannot be used to freeze it
    chain.tx(m.claim(job), t)
    chain.tx(m.claimRefund(job), owner)
    check_conservation(chain)
    assert chain.balance(chain.market.address) == chain.account(t)[0]


def test_bind_court_and_court_only_hooks(chain: Chain) -> None:
    m = chain.market.functions
    deployer, other = chain.accounts[0], chain.accounts[3]
    assert m.court().call() == chain.court.address
    assert chain.court.functions.market().call() == chain.market.address
    assert chain.court.functions.challengeBond().call() == CHALLENGE_BOND
    assert chain.court.functions.voteBond().call() == VOTE_BOND
    assert chain.court.functions.COMMITTEE_SIZE().call() == 3
    assert chain.court.functions.MISS_PENALTY_BPS().call() == MISS_PENALTY_BPS
    assert chain.court.functions.MAX_DRAW_TRIES().call() == 1024
    assert chain.court.functions.HARMED_SHARE_BPS().call() == HARMED_BPS
    assert chain.court.functions.CHALLENGER_SHARE_BPS().call() == CHALLENGER_BPS
    assert chain.reverts("CourtAlreadyBound", m.bindCourt(other), deployer) == ()
    assert chain.reverts("NotCourt", m.bindCourt(other), other) == (other,)
    fresh = chain.deploy("FedMarket", 0, 0)
    assert chain.reverts("NotCourt", fresh.functions.bindCourt(other), other) == (other,)
    zero = "0x" + "00" * 20
    assert chain.reverts("ZeroAddress", fresh.functions.bindCourt(zero), deployer) == ()
    r = chain.tx(fresh.functions.bindCourt(other), deployer)
    assert dict(fresh.events.CourtBound().process_receipt(r)[0]["args"]) == {"court": other}
    fix = (b"\x00" * 32, [], [])
    for fn in (
        m.openDispute(1, 1, other),
        m.upholdRound(1),
        m.correctRound(1, b"\x01" * 32, fix, "", fix),
        m.lockBond(other, 1),
        m.releaseBond(other, 1),
        m.transferBond(other, deployer, 1, 4),
    ):
        assert chain.reverts("NotCourt", fn, deployer) == (deployer,)
    art = load_artifact("DisputeCourt")
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    assert chain.reverts("ZeroAddress", factory.constructor(zero, 1, 1), deployer) == ()


# ------------------------------------------------------------------------------------ chunks


def test_merkle_helper_matches_openzeppelin(chain: Chain) -> None:
    """The harness's sorted-pair tree is the client's (backend.core.valchunks) and verifies on
    chain: every chunk of a 5-round job (an odd tree, nodes carried up unpaired) is accepted."""
    from backend.core import valchunks

    root, proofs = merkle_tree([b"\x01" * 32])
    assert root == b"\x01" * 32 and proofs == [[]]
    for rounds in range(1, 8):
        vset = ValidationSet.make(rounds, tag=f"t{rounds}")
        leaves = [c.leaf() for c in vset.chunks]
        assert leaves == [
            valchunks.chunk_leaf(c.round, c.content_hash, c.cid, c.salt) for c in vset.chunks
        ]
        tree = valchunks.MerkleTree(leaves)
        assert vset.root == tree.root
        assert vset.proofs == [tree.proof(i) for i in range(rounds)]
    job, (t1, t2), _ = setup_job(chain, n=2, rounds=5)
    for _ in range(5):
        chain.play_round(job, {t1: (1, 0), t2: (2, 0)})  # reveals each round's chunk
    r = chain.finish(job)
    assert chain.events("JobFinalized", r)[0]["totalScore"] == 15


def test_reveal_validation_chunk(chain: Chain) -> None:
    m = chain.market.functions
    owner, stranger = chain.accounts[0], chain.accounts[15]
    job, (t1, t2, t3), _ = setup_job(chain, rounds=3)
    vset = chain.validation[job]
    assert chain.reverts("NoChunkDue", chain.reveal_chunk_fn(job, 1), owner) == (job, 1)
    c0 = vset.chunk(1)
    fn0 = m.revealValidationChunk(job, 0, c0.content_hash, c0.cid, c0.salt, [])
    assert chain.reverts("NoChunkDue", fn0, owner) == (job, 0)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)}, chunk=False)
    assert chain.job(job)["pendingRound"] == 1
    assert chain.reverts("NoChunkDue", chain.reveal_chunk_fn(job, 2), owner) == (job, 2)
    c = vset.chunk(1)
    bad = [
        m.revealValidationChunk(job, 1, c.content_hash, c.cid, b"\x00" * 32, vset.proof(1)),
        m.revealValidationChunk(job, 1, c.content_hash, c.cid + "x", c.salt, vset.proof(1)),
        m.revealValidationChunk(job, 1, b"\x00" * 32, c.cid, c.salt, vset.proof(1)),
        m.revealValidationChunk(job, 1, c.content_hash, c.cid, c.salt, vset.proof(2)),
        m.revealValidationChunk(job, 1, c.content_hash, c.cid, c.salt, []),
    ]
    c2 = vset.chunk(2)  # another round's (valid) chunk is not this round's
    bad.append(m.revealValidationChunk(job, 1, c2.content_hash, c2.cid, c2.salt, vset.proof(2)))
    for fn in bad:
        assert chain.reverts("ValidationMismatch", fn, owner) == (job,)
    # anyone holding the chunk may reveal it (here a stranger, not the owner)
    before = chain.job(job)
    r = chain.tx(chain.reveal_chunk_fn(job, 1), stranger)
    now = chain.now()
    assert chain.events("ValidationChunkRevealed", r) == [
        {
            "jobId": job,
            "round": 1,
            "contentHash": c.content_hash,
            "cid": c.cid,
            "salt": c.salt,
            "finalAt": now + CHALLENGE_WINDOW,
        }
    ]
    j = chain.job(job)
    assert j["finalAt"] == now + CHALLENGE_WINDOW
    # the aggregator keeps postDuration after the round becomes final
    assert j["postDeadline"] == max(before["postDeadline"], now + CHALLENGE_WINDOW + 100)
    sched = chain.events("RoundScheduled", r)
    assert sched == [] or sched[0]["postDeadline"] == j["postDeadline"]
    assert chain.reverts("NoChunkDue", chain.reveal_chunk_fn(job, 1), owner) == (job, 1)
    # round 2: the chunk is due within postDuration of the post, not later
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)}, chunk=False)
    due = chain.job(job)["postedAt"] + 100
    chain.at(due + 1)
    assert chain.reverts("ChunkRevealClosed", chain.reveal_chunk_fn(job, 2), owner) == (job, 2)
    check_conservation(chain)


def test_reveal_at_the_last_second_extends_the_post_deadline(chain: Chain) -> None:
    m = chain.market.functions
    job, (t1, t2, t3), _ = setup_job(chain, rounds=2)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)}, chunk=False)
    due = chain.job(job)["postedAt"] + 100
    ups = {t: chain.commit(job, t, 2) for t in (t1, t2, t3)}
    for t, u in ups.items():  # round 2's phases close early: its deadline is near
        chain.reveal(job, t, u)
    assert chain.job(job)["postDeadline"] == chain.now() + 100 < due + CHALLENGE_WINDOW
    chain.at(due)
    r = chain.reveal_chunk(job)
    j = chain.job(job)
    assert j["finalAt"] == due + CHALLENGE_WINDOW
    assert j["postDeadline"] == due + CHALLENGE_WINDOW + 100
    assert chain.events("RoundScheduled", r)[0]["postDeadline"] == j["postDeadline"]
    chain.at(j["finalAt"] + 1)
    chain.tx(m.postRound(job, 2, model_hash(2), "m", [1, 1, 1], [0, 0, 0]), chain.accounts[1])


def test_round_not_final_blocks_the_next_post_and_finalize(chain: Chain) -> None:
    m = chain.market.functions
    owner, agg = chain.accounts[0], chain.accounts[1]
    job, (t1, t2), _ = setup_job(chain, n=2, rounds=2)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0)}, chunk=False)
    ups = {t: chain.commit(job, t, 2) for t in (t1, t2)}
    for t in (t1, t2):
        chain.reveal(job, t, ups[t])
    post2 = m.postRound(job, 2, model_hash(2), "bafy-m", [1, 1], [0, 0])
    assert chain.reverts("RoundNotFinal", post2, agg) == (job, 1, 0)
    chain.reveal_chunk(job, 1)
    final_at = chain.job(job)["finalAt"]
    assert chain.reverts("RoundNotFinal", post2, agg) == (job, 1, final_at)
    chain.at(final_at)
    assert chain.reverts("RoundNotFinal", post2, agg) == (job, 1, final_at)
    chain.at(final_at + 1)
    chain.tx(post2, agg)  # one second later it is final
    assert chain.job(job)["status"] == FINISHED
    assert chain.reverts("RoundNotFinal", m.finalize(job), owner) == (job, 2, 0)
    chain.reveal_chunk(job, 2)
    final_at = chain.job(job)["finalAt"]
    assert chain.reverts("RoundNotFinal", m.finalize(job), owner) == (job, 2, final_at)
    chain.at(final_at + 1)
    r = chain.tx(m.finalize(job), chain.accounts[15])
    assert chain.events("JobFinalized", r)[0]["totalScore"] == 5
    # the bond is released, with a withdraw cooldown
    assert chain.events("BondCooldown", r) == [
        {"account": agg, "amount": 10 * ETH + 7, "until": chain.now() + DAY}
    ]
    assert chain.account(agg)[1] == 0
    until = m.cooldownOf(agg).call()
    assert chain.reverts("BondCoolingDown", m.withdraw(1), agg) == (agg, until)
    chain.at(until)
    chain.tx(m.withdraw(10 * ETH + 7), agg)
    check_conservation(chain)


def test_abandon_needs_the_pending_round_final(chain: Chain) -> None:
    """A chunk still unrevealed after the post deadline is the owner's fault: `forfeit`."""
    m = chain.market.functions
    job, (t1, t2), _ = setup_job(chain, n=2, rounds=2)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0)}, chunk=False)
    chain.at(chain.job(job)["postDeadline"] + 1)
    assert chain.reverts("RoundNotFinal", m.abandon(job), t1) == (job, 1, 0)


# ------------------------------------------------------------------------------------ challenges


def test_challenge_window_and_who_may_challenge(chain: Chain) -> None:
    c, m = chain.court.functions, chain.market.functions
    owner, agg, stranger = chain.accounts[0], chain.accounts[1], chain.accounts[15]
    job, (t1, t2, t3), vs = setup_job(chain, rounds=2)
    chain.register(stranger)
    chain.join_pool(owner, ETH)  # a verifier, but the job's owner
    bogus = b"\xab" * 32
    assert chain.reverts("ChallengeWindowClosed", c.challenge(job, 1, bogus), t1) == (job, 1)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)}, chunk=False)
    # no chunk yet: nothing to re-run
    assert chain.reverts("ChallengeWindowClosed", c.challenge(job, 1, bogus), t1) == (job, 1)
    chain.reveal_chunk(job)
    assert chain.reverts("ChallengeWindowClosed", c.challenge(job, 2, bogus), t1) == (job, 2)
    assert chain.reverts("ChallengeWindowClosed", c.challenge(job, 0, bogus), t1) == (job, 0)
    assert chain.reverts("ConflictOfInterest", c.challenge(job, 1, bogus), owner) == (job, owner)
    assert chain.reverts("ConflictOfInterest", c.challenge(job, 1, bogus), agg) == (job, agg)
    assert chain.reverts("NotChallenger", c.challenge(job, 1, bogus), stranger) == (job, stranger)
    was = posted(chain, job, 1).digest(job, 1)
    assert chain.job(job)["pendingDigest"] == was
    assert chain.reverts("SameAsPosted", c.challenge(job, 1, was), t1) == (was,)
    # a trainer whose stake is all locked cannot bond a challenge
    chain.tx(m.withdraw(chain.free(t3)), t3)
    assert chain.reverts("InsufficientFreeStake", c.challenge(job, 1, bogus), t3) == (
        0,
        CHALLENGE_BOND,
    )
    # a verifier (not in the job) may challenge; the window closes at finalAt (exclusive)
    final_at = chain.job(job)["finalAt"]
    chain.at(final_at)
    assert chain.reverts("ChallengeWindowClosed", c.challenge(job, 1, bogus), vs[0]) == (job, 1)
    # after finalization: WrongStatus
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    chain.finish(job)
    assert chain.reverts("WrongStatus", c.challenge(job, 2, bogus), t1) == (job, SETTLED)
    check_conservation(chain)


def test_challenge_draws_a_committee_and_locks_bonds(chain: Chain) -> None:
    c = chain.court.functions
    job, (t1, t2, t3), vs = setup_job(chain, verifiers=5)
    chain.join_pool(t2)  # a trainer of the job is never drawn
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    free_before = {v: chain.free(v) for v in vs}
    digest = b"\xcd" * 32
    did, r = chain.challenge(job, 1, digest, t1)
    ev = chain.events("DisputeOpened", r, chain.court)[0]
    d = chain.dispute(did)
    assert did == 1 and c.nextDisputeId().call() == 2 and c.latestDisputeOf(job).call() == did
    assert (d["jobId"], d["round"], d["state"], d["challenger"]) == (job, 1, D_VOTING, t1)
    assert d["challengerDigest"] == digest == ev["challengerDigest"]
    assert d["postedDigest"] == chain.job(job)["pendingDigest"] == ev["postedDigest"]
    assert (d["commitEnd"], d["revealEnd"]) == (chain.now() + 100, chain.now() + 200)
    drawn = members(chain, did)
    assert len(set(drawn)) == 3 and set(drawn) <= set(vs)
    for v in vs:  # a first seat is held on the pool bond, locked since the member joined
        assert chain.free(v) == free_before[v] == ETH - VOTE_BOND
        assert c.seatsOf(v).call() == (1 if v in drawn else 0)
    assert chain.account(t1)[1] == ETH + CHALLENGE_BOND
    disputed = chain.events("RoundDisputed", r, chain.market)
    assert disputed == [{"jobId": job, "round": 1, "challenger": t1}]
    j = chain.job(job)
    assert j["disputeOpen"] and chain.market.functions.phaseOf(job).call() in (1, 2, 3)
    # one dispute at a time
    assert chain.reverts("DisputeOpen", c.challenge(job, 1, digest), t2) == (job,)
    check_conservation(chain)


def test_no_committee_without_three_eligible_verifiers(chain: Chain) -> None:
    c = chain.court.functions
    owner = chain.accounts[0]
    job, (t1, t2, t3), vs = setup_job(chain, verifiers=3)
    chain.join_pool(owner, ETH)  # the owner: never drawn
    chain.join_pool(t2)  # a trainer of the job: never drawn
    chain.tx(c.leavePool(), vs[2])  # out of the pool: never drawn
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    assert chain.reverts("NoCommittee", c.challenge(job, 1, b"\x01" * 32), t1) == (2, 3)
    chain.tx(c.joinPool(), vs[2])
    did, _ = chain.challenge(job, 1, b"\x01" * 32, t1)
    assert set(members(chain, did)) == set(vs)
    assert chain.reverts("NotVerifier", c.joinPool(), t3) == (t3,)


def test_committee_pool_membership_is_bonded(chain: Chain) -> None:
    """Joining the pool locks the vote bond until the member leaves; a member serving on a
    committee cannot leave; leaving releases the bond with the bond cooldown."""
    c, m = chain.court.functions, chain.market.functions
    v, poor = chain.accounts[14], chain.accounts[13]
    chain.register_role(poor, ROLE_VERIFIER, VOTE_BOND - 1)  # the role alone is free...
    assert chain.reverts("InsufficientFreeStake", c.joinPool(), poor) == (
        VOTE_BOND - 1,
        VOTE_BOND,
    )  # ...a pool seat is not
    assert c.poolSize().call() == 0 and not c.inPool(poor).call()
    r = chain.join_pool(v, ETH)
    assert chain.events("PoolJoined", r, chain.court) == [{"verifier": v, "bond": VOTE_BOND}]
    assert chain.account(v) == (ETH, VOTE_BOND, True)
    assert (c.poolSize().call(), c.poolAt(0).call(), c.inPool(v).call()) == (1, v, True)
    assert chain.reverts("AlreadyInPool", c.joinPool(), v) == (v,)
    free = ETH - VOTE_BOND
    assert chain.reverts("InsufficientFreeStake", m.withdraw(free + 1), v) == (free, free + 1)
    assert chain.reverts("NotInPool", c.leavePool(), poor) == (poor,)
    # leaving while on a committee: the seat stays bonded until the dispute resolves
    job, (t1, t2, t3), vs = setup_job(chain, rounds=1, verifiers=3)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    did, _ = chain.challenge(job, 1, b"\x0d" * 32, t1)
    drawn = members(chain, did)
    assert set(drawn) <= {v, *vs}
    r = chain.tx(c.leavePool(), drawn[0])
    assert chain.events("PoolLeft", r, chain.court) == [{"verifier": drawn[0], "disputeId": 0}]
    assert chain.events("BondCooldown", r, chain.market) == []  # it still holds the seat
    assert chain.account(drawn[0])[1] == VOTE_BOND and not c.inPool(drawn[0]).call()
    assert c.poolSize().call() == 3  # the last member took the leaver's place
    assert {c.poolAt(i).call() for i in range(3)} == {v, *vs} - {drawn[0]}
    assert chain.reverts("AlreadyInPool", c.joinPool(), drawn[1]) == (drawn[1],)
    chain.tx(c.leavePool(), drawn[1])
    chain.tx(c.joinPool(), drawn[1])  # back while seated: the seat's bond serves again
    assert chain.account(drawn[1])[1] == VOTE_BOND
    chain.vote(did, dict.fromkeys(drawn, posted(chain, job, 1).digest(job, 1)))
    r = chain.resolve(did)
    assert chain.account(drawn[0])[1] == 0  # out of the pool: its seat's bond is released
    assert chain.events("BondCooldown", r, chain.market) == [
        {"account": drawn[0], "amount": VOTE_BOND, "until": chain.now() + DAY}
    ]
    assert [chain.account(x)[1] for x in drawn[1:]] == [VOTE_BOND] * 2  # still in the pool
    check_conservation(chain)


def test_pool_flooding_by_the_aggregator_does_not_starve_the_draw() -> None:
    """Attack (found in review): the verifier list was free to join and the draw walked a
    prefix of it, so an aggregator could fill it with empty or conflicted entries and make
    every challenge of its rounds revert `NoCommittee`. Now every pool entry holds a seat's
    bond (an entry that could never serve cannot exist) and the draw samples random
    positions: 40 of the aggregator's own trainers in the pool (never drawn for their job) do
    not keep 5 honest members out."""
    chain = Chain(num_accounts=50)
    m = chain.market.functions
    sybils, honest = chain.accounts[2:42], chain.accounts[42:47]
    for x in sybils:
        chain.register(x, 2 * ETH)
        chain.join_pool(x)
    chain.make_verifiers(honest)
    job = chain.create_job(chain.accounts[0], 10 * ETH, rounds=1, maxTrainers=40, minTrainers=2)
    for x in sybils:
        chain.tx(m.join(job), x)
    chain.play_round(job, dict.fromkeys(sybils, (1, 0)))
    challenger = honest[0]
    did, r = chain.challenge(job, 1, b"\x0d" * 32, challenger)
    drawn = members(chain, did)
    assert len(set(drawn)) == 3 and set(drawn) <= set(honest) - {challenger}
    assert chain.court.functions.poolSize().call() == 45
    assert r["gasUsed"] < 1_500_000


def test_a_seated_member_without_free_stake_is_skipped_not_dropped() -> None:
    """Found in review: dropping a member drawn while its stake was all on other seats let an
    attacker empty the pool of honest members with dummy challenges. It is skipped instead,
    stays in the pool, and serves again once its seat is resolved."""
    chain = Chain(num_accounts=30)
    c, m = chain.court.functions, chain.market.functions
    pool = chain.accounts[20:26]
    for v in pool:
        chain.join_pool(v, VOTE_BOND)  # one seat's bond, nothing more
    dids = []
    for k in range(2):
        trainers = chain.accounts[2 + 3 * k : 5 + 3 * k]
        for t in trainers:
            chain.register(t)
        job = chain.create_job(chain.accounts[0], 10 * ETH, rounds=1, maxTrainers=3)
        for t in trainers:
            chain.tx(m.join(job), t)
        chain.play_round(job, dict.fromkeys(trainers, (1, 0)))
        did, r = chain.challenge(job, 1, b"\x0d" * 32, trainers[0])
        assert chain.events("PoolLeft", r, chain.court) == []
        dids.append(did)
    first, second = (set(members(chain, d)) for d in dids)
    assert first | second == set(pool) and not first & second
    assert c.poolSize().call() == 6 and all(c.seatsOf(v).call() == 1 for v in pool)
    check_conservation(chain)


def test_vote_errors(chain: Chain) -> None:
    c = chain.court.functions
    stranger = chain.accounts[15]
    job, (t1, t2, t3), _ = setup_job(chain)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    digest = b"\x0d" * 32
    h = b"\x11" * 32
    assert chain.reverts("UnknownDispute", c.commitVote(1, h), stranger) == (1,)
    assert chain.reverts("UnknownDispute", c.revealVote(1, digest, h), stranger) == (1,)
    assert chain.reverts("UnknownDispute", c.resolve(1), stranger) == (1,)
    did, _ = chain.challenge(job, 1, digest, t1)
    a, b, d = members(chain, did)
    assert chain.reverts("NotMember", c.commitVote(did, h), stranger) == (did, stranger)
    assert chain.reverts("NotMember", c.commitVote(did, h), t1) == (did, t1)
    assert chain.reverts("VoteMismatch", c.commitVote(did, b"\x00" * 32), a) == (did, a)
    salt = b"\x5a" * 32
    r = chain.tx(c.commitVote(did, vote_commitment(digest, salt, a, did)), a)
    assert chain.events("VoteCommitted", r, chain.court) == [{"disputeId": did, "member": a}]
    assert c.hasCommitted(did, a).call() and not c.hasCommitted(did, b).call()
    assert chain.reverts("AlreadyVoted", c.commitVote(did, h), a) == (did, a)
    # reveals open once all committed or the commit phase ended
    assert chain.reverts("VoteRevealNotOpen", c.revealVote(did, digest, salt), a) == (did,)
    assert chain.reverts("VotingNotOver", c.resolve(did), stranger) == (
        did,
        chain.dispute(did)["revealEnd"],
    )
    wrong = vote_commitment(digest, salt, a, did)  # a's commitment, not b's
    chain.tx(c.commitVote(did, wrong), b)
    chain.at(chain.dispute(did)["commitEnd"])
    assert chain.reverts("VoteCommitClosed", c.commitVote(did, h), d) == (did,)
    assert chain.reverts("VoteMismatch", c.revealVote(did, digest, b"\x00" * 32), a) == (did, a)
    assert chain.reverts("VoteMismatch", c.revealVote(did, digest, salt), b) == (did, b)
    zero_c = vote_commitment(b"\x00" * 32, salt, a, did)
    assert zero_c != vote_commitment(digest, salt, a, did)
    assert chain.reverts("VoteMismatch", c.revealVote(did, b"\x00" * 32, salt), a) == (did, a)
    assert chain.reverts("VoteMismatch", c.revealVote(did, digest, salt), d) == (did, d)
    r = chain.tx(c.revealVote(did, digest, salt), a)
    assert chain.events("VoteRevealed", r, chain.court) == [
        {"disputeId": did, "member": a, "digest": digest}
    ]
    assert c.voteOf(did, a).call() == digest
    assert chain.reverts("AlreadyVoted", c.revealVote(did, digest, salt), a) == (did, a)
    chain.at(chain.dispute(did)["revealEnd"])
    assert chain.reverts("VoteRevealNotOpen", c.revealVote(did, digest, salt), a) == (did,)
    r = chain.tx(c.resolve(did), stranger)  # 1 of 3: no majority
    assert chain.dispute(did)["state"] == D_NO_DECISION
    assert chain.reverts("WrongDisputeState", c.commitVote(did, h), a) == (did, D_NO_DECISION)
    assert chain.reverts("WrongDisputeState", c.resolve(did), a) == (did, D_NO_DECISION)
    fix = posted(chain, job, 1)
    fn = c.postCorrection(did, fix.as_tuple(), "", fix.as_tuple())
    assert chain.reverts("WrongDisputeState", fn, a) == (did, D_NO_DECISION)
    assert chain.reverts("WrongDisputeState", c.lapse(did), a) == (did, D_NO_DECISION)
    check_conservation(chain)


def test_a_zero_commitment_cannot_open_reveals_early(chain: Chain) -> None:
    """Fixed: one member committing zero three times used to open the reveal phase while the
    others could still commit — and copy its revealed digest."""
    c = chain.court.functions
    job, (t1, t2, t3), _ = setup_job(chain)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    did, _ = chain.challenge(job, 1, b"\x0d" * 32, t1)
    a = members(chain, did)[0]
    chain.reverts("VoteMismatch", c.commitVote(did, b"\x00" * 32), a)
    assert chain.dispute(did)["commits"] == 0


def test_no_decision_keeps_the_round_and_penalises_the_absent(chain: Chain) -> None:
    m = chain.market.functions
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    did, _ = chain.challenge(job, 1, b"\x0d" * 32, t1)
    a, b, d = members(chain, did)
    before = {x: chain.account(x) for x in (a, b, d, t1)}
    chain.vote(did, {a: b"\x01" * 32, b: b"\x02" * 32, d: None})
    r = chain.resolve(did)
    assert chain.events("DisputeResolved", r, chain.court) == [
        {"disputeId": did, "state": D_NO_DECISION, "winning": b"\x00" * 32}
    ]
    penalty = VOTE_BOND * MISS_PENALTY_BPS // BPS
    each = penalty // 2
    assert chain.account(a)[0] == before[a][0] + each
    assert chain.account(b)[0] == before[b][0] + each
    assert chain.account(d)[0] == before[d][0] - 2 * each
    c = chain.court.functions
    for x in (a, b):  # the voters stay in the pool, their bond held for the next seat
        assert chain.account(x)[1] == VOTE_BOND and c.inPool(x).call()
        assert m.cooldownOf(x).call() == 0 and c.seatsOf(x).call() == 0
    # the absent one is dropped from the pool, the rest of its bond released (cooling down)
    assert chain.account(d)[1] == 0 and not c.inPool(d).call()
    assert m.cooldownOf(d).call() == chain.now() + DAY
    assert chain.events("PoolLeft", r, chain.court) == [{"verifier": d, "disputeId": did}]
    assert chain.account(t1) == (before[t1][0], ETH, True)  # bond released
    assert chain.events("RoundUpheld", r, chain.market) == [{"jobId": job, "round": 1}]
    j = chain.job(job)
    assert not j["disputeOpen"] and j["finalAt"] == chain.now()
    # the same round is never challenged again (finalAt = now: the window is closed)
    assert chain.reverts("ChallengeWindowClosed", c.challenge(job, 1, b"\x0e" * 32), t2) == (job, 1)
    chain.tx(m.finalize(job), t3)
    check_conservation(chain)


def test_no_reveals_at_all_pays_the_penalties_to_the_challenger(chain: Chain) -> None:
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    did, _ = chain.challenge(job, 1, b"\x0d" * 32, t1)
    before = chain.account(t1)[0]
    r = chain.resolve(did)
    penalty = VOTE_BOND * MISS_PENALTY_BPS // BPS
    assert chain.account(t1)[0] == before + 3 * penalty
    assert [x[3] for x in transfers(chain, r)] == [5, 5, 5]
    check_conservation(chain)


def test_dispute_blocks_posts_finalize_and_abandon(chain: Chain) -> None:
    m = chain.market.functions
    agg = chain.accounts[1]
    job, (t1, t2, t3), _ = setup_job(chain, rounds=2, verifiers=6)  # 3 absent ones leave
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    did, _ = chain.challenge(job, 1, b"\x0d" * 32, t1)
    ups = {t: chain.commit(job, t, 2) for t in (t1, t2, t3)}
    for t, u in ups.items():
        chain.reveal(job, t, u)
    post2 = m.postRound(job, 2, model_hash(2), "bafy-m", [1, 1, 1], [0, 0, 0])
    assert chain.reverts("DisputeOpen", post2, agg) == (job,)
    # even past the post deadline nobody may abandon while the court decides
    chain.at(chain.job(job)["postDeadline"] + 2)  # views run on the latest block (ts - 1)
    assert chain.market.functions.phaseOf(job).call() == 3
    assert chain.reverts("DisputeOpen", m.abandon(job), t2) == (job,)
    r = chain.resolve(did)  # nobody voted: no decision, the round stands
    assert chain.dispute(did)["state"] == D_NO_DECISION
    # the aggregator gets postDuration again after the round became final
    assert chain.job(job)["postDeadline"] == chain.now() + 100
    assert chain.events("RoundScheduled", r, chain.market)[0]["postDeadline"] == chain.now() + 100
    chain.tx(post2, agg)
    chain.reveal_chunk(job, 2)
    did2, _ = chain.challenge(job, 2, b"\x0e" * 32, t2)
    assert chain.reverts("DisputeOpen", m.finalize(job), agg) == (job,)
    chain.resolve(did2)
    chain.finish(job)
    check_conservation(chain)


def test_a_challenge_cannot_follow_a_resolve_in_the_same_block(chain: Chain) -> None:
    """Fixed: an upheld round's finalAt is its block's time, and the window was still open at
    finalAt, so a contract could resolve and re-challenge in one transaction, for ever."""
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    did, _ = chain.challenge(job, 1, b"\x0d" * 32, t1)
    chain.at(chain.dispute(did)["revealEnd"])
    c = chain.court.functions
    chain.tester.disable_auto_mine_transactions()
    try:
        h1 = c.resolve(did).transact({"from": t3, "gas": 2_000_000})
        h2 = c.challenge(job, 1, b"\x0e" * 32).transact({"from": t2, "gas": 5_000_000})
        chain.tester.mine_blocks(1)
    finally:
        chain.tester.enable_auto_mine_transactions()
    r1, r2 = (chain.w3.eth.get_transaction_receipt(h) for h in (h1, h2))
    assert r1["blockNumber"] == r2["blockNumber"]
    assert (r1["status"], r2["status"]) == (1, 0)
    assert chain.court.functions.nextDisputeId().call() == 2
    check_conservation(chain)


def test_a_zero_challenge_window_means_no_challenges() -> None:
    chain = Chain(min_window=0)
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1, challengeWindow=0)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    c = chain.court.functions
    assert chain.reverts("ChallengeWindowClosed", c.challenge(job, 1, b"\x0d" * 32), t1) == (job, 1)
    chain.finish(job)


def test_post_correction_checks_both_digests_and_lapses(chain: Chain) -> None:
    c = chain.court.functions
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1)
    parts = chain.parts(job)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    was = posted(chain, job, 1)
    fix = result(parts, {t1: (5, 0), t2: (2, 0), t3: (3, 0)}, b"\xee" * 32)
    good = fix.digest(job, 1)
    did, _ = chain.challenge(job, 1, good, t1)
    fn = c.postCorrection(did, fix.as_tuple(), "", was.as_tuple())
    assert chain.reverts("WrongDisputeState", fn, t1) == (did, D_VOTING)
    assert chain.reverts("WrongDisputeState", c.lapse(did), t1) == (did, D_VOTING)
    chain.vote(did, dict.fromkeys(members(chain, did), good))
    r = chain.resolve(did)
    d = chain.dispute(did)
    assert (d["state"], d["winning"]) == (D_OVERTURNED, good)
    assert d["correctBy"] == chain.now() + 100
    assert chain.events("RoundUpheld", r, chain.market) == []
    assert chain.job(job)["disputeOpen"]
    other = result(parts, {t1: (6, 0), t2: (2, 0), t3: (3, 0)}, b"\xee" * 32)
    fn = c.postCorrection(did, other.as_tuple(), "", was.as_tuple())
    assert chain.reverts("DigestMismatch", fn, t2) == (good, other.digest(job, 1))
    forged = Posted(was.model_hash, [9, 2, 3], was.reasons)
    fn = c.postCorrection(did, fix.as_tuple(), "", forged.as_tuple())
    assert chain.reverts("DigestMismatch", fn, t2) == (was.digest(job, 1), forged.digest(job, 1))
    assert chain.reverts("CorrectionPending", c.lapse(did), t2) == (did, d["correctBy"])
    correct(chain, did, fix, was, t2)  # still possible after correctBy until someone lapses
    assert chain.dispute(did)["state"] == D_CORRECTED
    assert chain.reverts("WrongDisputeState", c.lapse(did), t2) == (did, D_CORRECTED)
    check_conservation(chain)


def test_an_overturned_round_without_a_valid_correction_lapses(chain: Chain) -> None:
    """Fixed: a winning digest with no valid result behind it (here: a committee voting a
    digest whose result breaks the posting rules) used to keep the job disputed for good,
    with every stake and the reward locked in it."""
    c, m = chain.court.functions, chain.market.functions
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1)
    parts = chain.parts(job)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    was = posted(chain, job, 1)
    invalid = result(parts, {t1: (1, MISSING), t2: (2, 0), t3: (3, 0)}, b"\xee" * 32)
    did, _ = chain.challenge(job, 1, invalid.digest(job, 1), t1)
    chain.vote(did, dict.fromkeys(members(chain, did), invalid.digest(job, 1)))
    chain.resolve(did)
    fn = c.postCorrection(did, invalid.as_tuple(), "", was.as_tuple())
    assert chain.reverts("InvalidResult", fn, t1) == (t1, 1, MISSING)
    assert chain.reverts("DisputeOpen", m.finalize(job), t1) == (job,)
    correct_by = chain.dispute(did)["correctBy"]
    chain.at(correct_by + 1)
    r = chain.tx(c.lapse(did), chain.accounts[15])
    assert chain.events("CorrectionLapsed", r, chain.court) == [{"disputeId": did}]
    assert chain.dispute(did)["state"] == 6
    assert not chain.job(job)["disputeOpen"]
    chain.at_least(chain.now() + 2)
    chain.tx(m.finalize(job), t2)  # the posted round stands; the job settles
    assert chain.job(job)["status"] == SETTLED
    check_conservation(chain)


# ------------------------------------------------------------------------------------ forfeit


def test_forfeit_errors(chain: Chain) -> None:
    m = chain.market.functions
    job, (t1, t2, t3), _ = setup_job(chain, rounds=2)
    empty = (b"\x00" * 32, [], [])
    assert chain.reverts("NoChunkDue", m.forfeit(job, empty), t1) == (job, 0)
    assert chain.reverts("WrongStatus", m.forfeit(99, empty), t1) == (99, 0)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)}, chunk=False)
    was = posted(chain, job, 1)
    due = chain.job(job)["postedAt"] + 100
    assert chain.reverts("DeadlineNotPassed", m.forfeit(job, was.as_tuple()), t1) == (job, due)
    chain.at(due)
    assert chain.reverts("DeadlineNotPassed", m.forfeit(job, was.as_tuple()), t1) == (job, due)
    chain.at(due + 1)
    forged = Posted(was.model_hash, was.scores, [0, 0, OUTLIER])
    assert chain.reverts("DigestMismatch", m.forfeit(job, forged.as_tuple()), t1) == (
        was.digest(job, 1),
        forged.digest(job, 1),
    )
    chain.tx(m.forfeit(job, was.as_tuple()), t1)
    assert chain.reverts("WrongStatus", m.forfeit(job, was.as_tuple()), t1) == (job, ABANDONED)
    # a revealed chunk is not missing
    job2, _, _ = _second_job(chain)
    chain.play_round(job2, dict.fromkeys(chain.parts(job2), (1, 0)))
    p2 = posted(chain, job2, 1)
    chain.at(chain.job(job2)["postedAt"] + 101)
    assert chain.reverts("NoChunkDue", m.forfeit(job2, p2.as_tuple()), t1) == (job2, 1)


def _second_job(chain: Chain) -> tuple[int, list[str], list[str]]:
    trainers = chain.accounts[5:7]
    for t in trainers:
        chain.register(t)
    job = chain.create_job(chain.accounts[0], ETH, maxTrainers=2, rounds=1)
    for t in trainers:
        chain.tx(chain.market.functions.join(job), t)
    return job, trainers, []


# ------------------------------------------------------------------------------------ digests


def test_pending_digest_is_digest_of_the_posted_result(chain: Chain) -> None:
    from backend.chain.market import round_digest
    from backend.chain.market import vote_commitment as client_vote

    m = chain.market.functions
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1)
    chain.play_round(job, {t1: (7, 0), t2: (0, OUTLIER), t3: (10**12, 0)})
    p = posted(chain, job, 1)
    want = digest_of(job, 1, p.model_hash, p.scores, p.reasons)
    assert chain.job(job)["pendingDigest"] == want
    assert m.digestOf(job, 1, p.as_tuple()).call() == want
    assert round_digest(job, 1, p.model_hash, p.scores, p.reasons) == want
    assert client_vote(want, b"\x01" * 32, t1, 3) == vote_commitment(want, b"\x01" * 32, t1, 3)


def test_a_post_with_dirty_calldata_reverts(chain: Chain) -> None:
    """The pending digest hashes the posted arrays' calldata words as they are: a word that is
    not a clean uint64 / uint8 must revert the post (the ABI decoder's validation)."""
    agg = chain.accounts[1]
    job, (t1, t2, t3), _ = setup_job(chain, rounds=1)
    ups = {t: chain.commit(job, t, 1) for t in (t1, t2, t3)}
    for t, u in ups.items():
        chain.reveal(job, t, u)
    fn = chain.market.functions.postRound(job, 1, model_hash(1), "m", [1, 2, 3], [0, 0, 0])
    data = bytes.fromhex(fn._encode_transaction_data()[2:])

    def word(i: int) -> int:
        return int.from_bytes(data[4 + 32 * i : 36 + 32 * i], "big")

    scores_at, reasons_at = word(4) // 32 + 1, word(5) // 32 + 1  # element 0's word index
    assert (word(scores_at - 1), word(reasons_at - 1)) == (3, 3)
    for i, value in (
        (scores_at + 2, (1 << 64) + 3),  # a score with bits above uint64
        (reasons_at, 256),  # a reason with bits above uint8
        (reasons_at + 1, 1 << 255),
    ):
        off = 4 + 32 * i
        dirty = data[:off] + value.to_bytes(32, "big") + data[off + 32 :]
        h = chain.w3.eth.send_transaction(
            {"from": agg, "to": chain.market.address, "data": dirty, "gas": 2_000_000}
        )
        assert chain.w3.eth.get_transaction_receipt(h)["status"] == 0
    assert chain.job(job)["pendingRound"] == 0
    chain.tx(fn, agg)  # the clean one passes
    assert chain.job(job)["pendingDigest"] == digest_of(job, 1, model_hash(1), [1, 2, 3], [0] * 3)


# ------------------------------------------------------------------------------------ attacks


def test_a_owner_cannot_aggregate_judge_or_sit_on_the_committee(chain: Chain) -> None:
    """(a) The owner cannot name itself aggregator, join, challenge, or be drawn."""
    m, c = chain.market.functions, chain.court.functions
    owner = chain.accounts[0]
    chain.register_role(owner, ROLE_AGGREGATOR, 20 * ETH)
    chain.join_pool(owner)
    fn = m.createJob(params_tuple(job_params(owner)))
    got = chain.reverts("OwnerIsAggregator", fn, owner, ETH)
    assert got == (owner,)
    job, (t1, t2, t3), vs = setup_job(chain, rounds=1, verifiers=3)
    chain.play_round(job, {t1: (1, 0), t2: (2, 0), t3: (3, 0)})
    assert chain.reverts("ConflictOfInterest", c.challenge(job, 1, b"\x01" * 32), owner) == (
        job,
        owner,
    )
    did, _ = chain.challenge(job, 1, b"\x01" * 32, t1)
    assert owner not in members(chain, did) and set(members(chain, did)) == set(vs)
    chain.resolve(did)
    chain.finish(job)
    check_conservation(chain)


def _sybil_job(chain: Chain, cheat: bool) -> tuple[int, list[str], Posted, Posted]:
    """Honest h1, h2 and the aggregator's sybil s; one round. The correct result scores h1, h2
    and flags s (garbage update); a cheating aggregator posts s top and flags h1 and h2."""
    job, (h1, h2, s), _ = setup_job(chain, rounds=1, slashBps=5000)
    parts = chain.parts(job)
    good = {h1: (1_000_000, 0), h2: (2_000_000, 0), s: (0, OUTLIER)}
    bad = {h1: (0, OUTLIER), h2: (0, OUTLIER), s: (3_000_000, 0)}
    chain.play_round(job, bad if cheat else good)
    was = posted(chain, job, 1)
    fix = result(parts, good, model_hash(1) if not cheat else b"\xc0" * 32)
    return job, [h1, h2, s], was, fix


def test_b_sybil_paying_aggregator_is_overturned_and_pays(chain: Chain) -> None:
    """(b) The aggregator scores its sybil top and flags the honest trainers. An honest
    trainer challenges, the committee re-runs the round and overturns it; the correction
    restores the honest stakes, pays the bond out, and the honest rewards equal the correct
    result's."""
    c, m = chain.court.functions, chain.market.functions
    agg = chain.accounts[1]
    job, (h1, h2, s), was, fix = _sybil_job(chain, cheat=True)
    stake = ETH
    assert chain.participant(job, h1)["lockedStake"] == stake // 2  # slashed 50 %
    bond = chain.job(job)["aggregatorBond"]
    agg_before = chain.account(agg)[0]
    did, _ = chain.challenge(job, 1, fix.digest(job, 1), h1)
    voters = members(chain, did)
    chain.vote(did, dict.fromkeys(voters, fix.digest(job, 1)))
    r = chain.resolve(did)
    assert chain.dispute(did)["state"] == D_OVERTURNED
    assert chain.events("DisputeResolved", r, chain.court)[0]["winning"] == fix.digest(job, 1)
    before = {x: chain.account(x)[0] for x in (h1, h2, s, *voters)}
    r = correct(chain, did, fix, was, chain.accounts[15])  # anyone may post it
    assert chain.events("CorrectionPosted", r, chain.court) == [
        {"disputeId": did, "poster": chain.accounts[15]}
    ]
    assert chain.events("RoundCorrected", r, chain.market)[0]["scores"] == fix.scores
    reversed_ = chain.events("SlashReversed", r, chain.market)
    assert [(e["trainer"], e["amount"]) for e in reversed_] == [(h1, stake // 2), (h2, stake // 2)]
    # honest stakes whole again (slashed_wei 0); the sybil is the one slashed
    for h in (h1, h2):
        p = chain.participant(job, h)
        assert (p["lockedStake"], p["flaggedRounds"]) == (stake, 0)
    assert chain.participant(job, s)["lockedStake"] == stake // 2
    assert chain.job(job)["slashedPool"] == stake // 2
    # the bond: 50 % to the harmed trainers, 20 % to the voters, the rest to the challenger
    harmed_each = bond * HARMED_BPS // BPS // 2
    voter_each = bond * VOTERS_BPS // BPS // 3
    to_challenger = bond - 2 * harmed_each - 3 * voter_each
    got = {(t, why): amount for _f, t, amount, why in transfers(chain, r)}
    assert got[(h2, 1)] == harmed_each and got[(h1, 2)] == to_challenger
    assert all(got[(v, 3)] == voter_each for v in voters)
    assert chain.events("AggregatorBondSlashed", r, chain.market) == [
        {"jobId": job, "aggregator": agg, "amount": bond}
    ]
    assert chain.account(agg) == (agg_before - bond, 0, True)
    assert chain.account(h1)[0] == before[h1] + stake // 2 + harmed_each + to_challenger
    assert chain.account(h2)[0] == before[h2] + stake // 2 + harmed_each
    for v in voters:
        assert chain.account(v)[0] == before[v] + voter_each
    # the last round: the job settles on the corrected result
    assert chain.job(job)["status"] == SETTLED
    rewards = {x: m.rewardOf(job, x).call() for x in (h1, h2, s)}
    # the control: the same job with an honest aggregator
    control = Chain()
    cjob, _, _, _ = _sybil_job(control, cheat=False)
    control.finish(cjob)
    for x in (h1, h2, s):
        assert rewards[x] == control.market.functions.rewardOf(cjob, x).call()
        assert chain.participant(job, x) == control.participant(cjob, x)
    assert rewards[s] == 0
    assert chain.reverts(
        "WrongDisputeState", c.postCorrection(did, fix.as_tuple(), "", was.as_tuple()), h2
    ) == (did, D_CORRECTED)
    for x in (h1, h2, s):
        chain.tx(m.claim(job), x)
    chain.tx(m.claimRefund(job), chain.accounts[0])
    check_conservation(chain)


def test_b3_a_sybil_racing_with_a_made_up_digest_earns_nothing(chain: Chain) -> None:
    """Attack (found in review): the lying aggregator's own sybil challenges first, with a
    made-up digest, to collect the challenger's share of the slashed bond. The committee
    still finds the correct result; the challenger's share goes to the voters who found it."""
    agg = chain.accounts[1]
    job, (h1, h2, s), was, fix = _sybil_job(chain, cheat=True)
    bond = chain.job(job)["aggregatorBond"]
    agg_before = chain.account(agg)[0]
    did, _ = chain.challenge(job, 1, b"\x5b" * 32, s)  # first, and wrong
    voters = members(chain, did)
    chain.vote(did, dict.fromkeys(voters, fix.digest(job, 1)))
    chain.resolve(did)
    assert chain.dispute(did)["state"] == D_OVERTURNED
    s_before = chain.account(s)
    r = correct(chain, did, fix, was, h1)
    got = transfers(chain, r)
    assert [t for _f, t, _a, _w in got if t == s] == []  # nothing for the sybil
    harmed_each = bond * HARMED_BPS // BPS // 2
    voters_part = bond - 2 * harmed_each
    voter_each = voters_part // 3
    paid = {(t, why): amount for _f, t, amount, why in got}
    assert paid[(h1, 1)] == paid[(h2, 1)] == harmed_each
    assert [paid[(v, 3)] for v in voters] == [voter_each] * 3
    dust = voters_part - 3 * voter_each
    assert paid.get((voters[0], 2), 0) == dust
    assert sum(a for _f, _t, a, _w in got) == bond
    assert chain.account(agg) == (agg_before - bond, 0, True)  # the aggregator lost it all
    # the correction slashed the sybil; its challenge bond came back at resolve
    assert chain.account(s)[0] == s_before[0] - ETH // 2
    assert chain.participant(job, s)["lockedStake"] == ETH // 2
    check_conservation(chain)


def test_b2_overturn_of_an_earlier_round_ends_the_job(chain: Chain) -> None:
    """(b) on round 1 of 2: the liar does not keep judging. Trainers are paid the corrected
    round, and this round's revealers share the unposted round's reward."""
    m = chain.market.functions
    job, (h1, h2, s), _ = setup_job(chain, rounds=2, slashBps=5000)
    parts = chain.parts(job)
    reward = chain.job(job)["reward"]
    bad = {h1: (0, OUTLIER), h2: (0, OUTLIER), s: (3_000_000, 0)}
    good = {h1: (1_000_000, 0), h2: (2_000_000, 0), s: (0, OUTLIER)}
    chain.play_round(job, bad)
    was, fix = posted(chain, job, 1), result(parts, good, b"\xc0" * 32)
    did, _ = chain.challenge(job, 1, fix.digest(job, 1), h2)
    ups = {t: chain.commit(job, t, 2) for t in (h1, h2)}  # round 2 goes on meanwhile
    chain.vote(did, dict.fromkeys(members(chain, did), fix.digest(job, 1)))
    chain.at_least(chain.job(job)["commitEnd"])
    for t, u in ups.items():
        chain.reveal(job, t, u)
    chain.resolve(did)
    r = correct(chain, did, fix, was, h1)
    ab = chain.events("JobAbandoned", r, chain.market)[0]
    assert (ab["postedRounds"], ab["ownerFault"]) == (1, False)
    j = chain.job(job)
    share = reward - reward // 2
    assert j["status"] == ABANDONED and j["forfeitPool"] == share
    pool = reward // 2 + ETH // 2
    assert m.rewardOf(job, h1).call() == pool * 1 // 3 + share // 2
    assert m.rewardOf(job, h2).call() == pool * 2 // 3 + share // 2
    assert m.rewardOf(job, s).call() == 0
    check_conservation(chain)


def test_c_zero_score_job_burns_the_slashed_stake(chain: Chain) -> None:
    """(c) An aggregator flagging everyone: nobody is paid, the owner gets at most its reward
    back, the slashed stake is burned (owned by no one)."""
    m = chain.market.functions
    owner = chain.accounts[0]
    job, trainers, _ = setup_job(chain, rounds=1, slashBps=3000, reward=4 * ETH + 1)
    chain.play_round(job, dict.fromkeys(trainers, (0, OUTLIER)))
    r = chain.finish(job)
    slashed = 3 * (ETH * 3000 // BPS)
    assert chain.events("SlashedStakeBurned", r) == [{"jobId": job, "amount": slashed}]
    j = chain.job(job)
    assert j["ownerRefund"] == 4 * ETH + 1 <= j["reward"]
    assert all(m.rewardOf(job, t).call() == 0 for t in trainers)
    chain.tx(m.claimRefund(job), owner)
    for t in trainers:
        chain.tx(m.claim(job), t)
    figures = check_conservation(chain)
    assert figures[job]["held"] == slashed  # burned: still in the contract, owned by no one


def test_d_abandon_pays_the_bond_to_the_unposted_rounds_revealers(chain: Chain) -> None:
    """(d) The aggregator stops posting: its bond plus the unposted round's share go to the
    trainers who revealed in that round; the posted round is paid by score."""
    m = chain.market.functions
    agg = chain.accounts[1]
    job, (h1, h2, s), _ = setup_job(chain, rounds=2, slashBps=1000)
    reward, bond = chain.job(job)["reward"], chain.job(job)["aggregatorBond"]
    chain.play_round(job, {h1: (1_000_000, 0), h2: (3_000_000, 0), s: (0, OUTLIER)})
    ups = {t: chain.commit(job, t, 2) for t in (h1, h2, s)}
    chain.at_least(chain.job(job)["commitEnd"])
    for t in (h1, h2):  # s does not reveal
        chain.reveal(job, t, ups[t])
    chain.make_final(job)
    deadline = chain.job(job)["postDeadline"]
    assert chain.reverts("DeadlineNotPassed", m.abandon(job), s) == (job, deadline)
    chain.at(deadline + 1)
    agg_before = chain.account(agg)[0]
    r = chain.tx(m.abandon(job), s)
    assert chain.events("AggregatorBondSlashed", r) == [
        {"jobId": job, "aggregator": agg, "amount": bond}
    ]
    assert chain.account(agg) == (agg_before - bond, 0, True)
    share = reward - reward // 2
    j = chain.job(job)
    assert (j["status"], j["forfeitPool"], j["reveals"]) == (ABANDONED, bond + share, 2)
    pool = reward // 2 + ETH * 1000 // BPS
    each = (bond + share) // 2
    assert m.rewardOf(job, h1).call() == pool * 1 // 4 + each
    assert m.rewardOf(job, h2).call() == pool * 3 // 4 + each
    assert m.rewardOf(job, s).call() == 0
    ev = chain.events("JobAbandoned", r)[0]
    assert ev["ownerRefund"] == reward - reward // 2 - share + (pool - pool // 4 - pool * 3 // 4)
    check_conservation(chain)
    for t in (h1, h2, s):
        chain.tx(m.claim(job), t)
    chain.tx(m.claimRefund(job), chain.accounts[0])
    check_conservation(chain)


def test_d2_abandon_with_no_revealers_burns_the_bond(chain: Chain) -> None:
    m = chain.market.functions
    job, trainers, _ = setup_job(chain, rounds=1)
    bond = chain.job(job)["aggregatorBond"]
    chain.at(chain.job(job)["postDeadline"] + 1)
    r = chain.tx(m.abandon(job), trainers[0])
    assert chain.events("SlashedStakeBurned", r) == [{"jobId": job, "amount": bond}]
    assert chain.job(job)["ownerRefund"] == chain.job(job)["reward"]
    assert check_conservation(chain)[job]["held"] == bond + chain.job(job)["reward"]


def test_e_frivolous_challenge_pays_the_aggregator_and_the_committee(chain: Chain) -> None:
    """(e) A challenge of a correct round is upheld: the challenger's bond goes half to the
    majority, the rest to the aggregator; an absent member pays the majority."""
    m = chain.market.functions
    agg = chain.accounts[1]
    job, (h1, h2, s), was, _ = _sybil_job(chain, cheat=False)
    claim = result(chain.parts(job), {h1: (0, 0), h2: (0, 0), s: (9, 0)}, b"\x99" * 32)
    did, _ = chain.challenge(job, 1, claim.digest(job, 1), s)
    a, b, d = members(chain, did)
    before = {x: chain.account(x)[0] for x in (a, b, d, s, agg)}
    chain.vote(did, {a: was.digest(job, 1), b: was.digest(job, 1), d: None})
    r = chain.resolve(did)
    assert chain.dispute(did)["state"] == D_UPHELD
    voter_each = CHALLENGE_BOND // 2 // 2
    penalty_each = VOTE_BOND * MISS_PENALTY_BPS // BPS // 2
    assert chain.account(s)[0] == before[s] - CHALLENGE_BOND
    assert chain.account(agg)[0] == before[agg] + CHALLENGE_BOND - 2 * voter_each
    for v in (a, b):
        assert chain.account(v)[0] == before[v] + voter_each + penalty_each
    assert chain.account(d)[0] == before[d] - 2 * penalty_each
    assert [why for *_x, why in transfers(chain, r)] == [5, 5, 4, 4, 4]
    assert chain.account(s)[1] == ETH // 2  # only its (slashed) job stake is still locked
    chain.at_least(chain.now() + 1)
    chain.tx(m.finalize(job), h1)
    check_conservation(chain)


def test_f_owner_withholding_a_chunk_forfeits_the_reward(chain: Chain) -> None:
    """(f) The owner (with its aggregator) withholds round 2's chunk after a round that scores
    their sybil and flags the honest trainers: that round cannot be challenged, so it is
    undone; the whole reward goes to the trainers by the final round's scores."""
    m, c = chain.market.functions, chain.court.functions
    owner, agg = chain.accounts[0], chain.accounts[1]
    job, (h1, h2, s), _ = setup_job(chain, rounds=2, slashBps=5000)
    reward = chain.job(job)["reward"]
    chain.play_round(job, {h1: (1_000_000, 0), h2: (2_000_000, 0), s: (1_000_000, 0)})
    chain.play_round(job, {h1: (0, OUTLIER), h2: (0, OUTLIER), s: (10**12, 0)}, chunk=False)
    assert chain.participant(job, h1)["lockedStake"] == ETH // 2
    assert chain.reverts("ChallengeWindowClosed", c.challenge(job, 2, b"\x01" * 32), h1) == (
        job,
        2,
    )
    chain.at(chain.job(job)["postedAt"] + 101)
    agg_before = chain.account(agg)
    r = chain.tx(m.forfeit(job, posted(chain, job, 2).as_tuple()), h2)
    ev = chain.events("JobAbandoned", r)[0]
    assert (ev["postedRounds"], ev["ownerFault"]) == (1, True)
    assert [e["trainer"] for e in chain.events("SlashReversed", r)] == [h1, h2]
    j = chain.job(job)
    assert (j["status"], j["ownerForfeited"], j["slashedPool"], j["totalScore"]) == (
        ABANDONED,
        True,
        0,
        4_000_000,
    )
    for h in (h1, h2):
        assert chain.participant(job, h)["lockedStake"] == ETH
    # the whole reward to the trainers by round 1's scores; the owner only gets the dust
    want = {h1: reward // 4, h2: reward // 2, s: reward // 4}
    assert {x: m.rewardOf(job, x).call() for x in want} == want
    assert j["ownerRefund"] == reward - sum(want.values())
    # the aggregator's bond is released, not slashed (the owner was at fault)
    assert chain.account(agg) == (agg_before[0], agg_before[1] - reward, True)
    # reliability counts the final round only
    assert {e["trainer"]: e["contributionPpm"] for e in chain.events("ReliabilityUpdated", r)} == {
        h1: 500_000,
        h2: 1_000_000,
        s: 500_000,
    }
    assert chain.reverts("WrongStatus", m.abandon(job), h1) == (job, ABANDONED)
    for x in (h1, h2, s):
        chain.tx(m.claim(job), x)
    chain.tx(m.claimRefund(job), owner)
    check_conservation(chain)


def test_f2_withheld_first_chunk_splits_the_reward_equally(chain: Chain) -> None:
    m = chain.market.functions
    job, trainers, _ = setup_job(chain, rounds=1, slashBps=5000, reward=10 * ETH + 2)
    h1, h2, s = trainers
    chain.play_round(job, {h1: (0, OUTLIER), h2: (0, OUTLIER), s: (5, 0)}, chunk=False)
    assert chain.job(job)["status"] == FINISHED
    chain.at(chain.job(job)["postedAt"] + 101)
    r = chain.tx(m.forfeit(job, posted(chain, job, 1).as_tuple()), h1)
    assert chain.events("ReliabilityUpdated", r) == []  # a void round says nothing
    j = chain.job(job)
    assert (j["totalScore"], j["slashedPool"], j["pendingRound"]) == (0, 0, 0)
    each = (10 * ETH + 2) // 3
    assert all(m.rewardOf(job, t).call() == each for t in trainers)
    assert j["ownerRefund"] == 10 * ETH + 2 - 3 * each
    for t in trainers:
        assert chain.participant(job, t)["lockedStake"] == ETH
    check_conservation(chain)


@pytest.mark.parametrize("slash_bps", [0, 3333, 10_000])
def test_correction_restores_stakes_after_several_flags(chain: Chain, slash_bps: int) -> None:
    """Undoing a slash recomputes the stake from the job's stake and slashBps; it is exact
    after earlier (final) flags too."""
    m = chain.market.functions
    stake = ETH + 7
    job, (h1, h2, s), _ = setup_job(chain, rounds=3, slashBps=slash_bps, stakeRequired=stake)
    parts = chain.parts(job)
    chain.play_round(job, {h1: (0, OUTLIER), h2: (5, 0), s: (5, 0)})
    chain.play_round(job, {h1: (0, OUTLIER), h2: (5, 0), s: (5, 0)})
    locked2 = chain.participant(job, h1)["lockedStake"]
    chain.play_round(job, {h1: (0, OUTLIER), h2: (0, OUTLIER), s: (5, 0)})
    was = posted(chain, job, 3)
    fix = result(parts, {h1: (0, OUTLIER), h2: (5, 0), s: (5, 0)}, b"\xf0" * 32)
    did, _ = chain.challenge(job, 3, fix.digest(job, 3), h2)
    chain.vote(did, dict.fromkeys(members(chain, did), fix.digest(job, 3)))
    chain.resolve(did)
    correct(chain, did, fix, was, h2)
    assert chain.participant(job, h2)["lockedStake"] == stake
    assert chain.participant(job, h1)["lockedStake"] == locked2 - locked2 * slash_bps // BPS
    assert chain.job(job)["status"] == SETTLED
    assert m.rewardOf(job, h2).call() == m.rewardOf(job, s).call()
    check_conservation(chain)


def test_undoing_a_slash_costs_the_same_however_often_the_trainers_were_flagged() -> None:
    """An undo needs the stake left before the undone flag: a table built once per
    transaction, not a loop over each trainer's flags (that loop let 256 trainers flagged in
    241 rounds make a forfeit exceed a block, locking every stake for good). Seven trainers
    flagged in each of 30 rounds against once: the old loop cost 56,840 gas more (7 x 29
    steps), the table about 16k, whatever the number of trainers."""
    gas = {}
    for every_round in (False, True):
        chain = Chain()
        m = chain.market.functions
        job, trainers, _ = setup_job(chain, n=8, rounds=30, slashBps=100, verifiers=0)
        *flagged, scorer = trainers
        flag = {t: (0, OUTLIER) for t in flagged} | {scorer: (1_000_000, 0)}
        calm = {t: (0, 0) for t in flagged} | {scorer: (1_000_000, 0)}
        for _ in range(29):
            chain.play_round(job, flag if every_round else calm)
        chain.play_round(job, flag, chunk=False)
        chain.at(chain.job(job)["postedAt"] + 101)
        r = chain.tx(m.forfeit(job, posted(chain, job, 30).as_tuple()), scorer)
        assert [e["trainer"] for e in chain.events("SlashReversed", r)] == flagged
        left = ETH
        for _ in range(29 if every_round else 0):
            left -= left * 100 // 10_000
        assert chain.participant(job, flagged[0])["lockedStake"] == left
        gas[every_round] = r["gasUsed"]
    assert gas[True] - gas[False] < 25_000, gas
