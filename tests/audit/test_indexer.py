"""The indexer: every event of the market and its court once, resumable, idempotent,
batch-size independent; its tables hold the results of record (corrections, reversed slashes)
and the disputes."""

from __future__ import annotations

import json

import sqlalchemy as sa

from backend.audit.folding import FOLDERS
from backend.audit.indexer import INDEXED_EVENTS, Indexer
from backend.audit.schema import make_engine
from backend.chain.contracts import load_artifact
from backend.core.errors import Reason
from tests.audit.conftest import ROUNDS, TRAINERS, VICTIM, Indexed
from tests.audit.jobs import BOND

TABLES = (
    "jobs",
    "participants",
    "rounds",
    "submissions",
    "trainers",
    "accounts",
    "disputes",
    "dispute_votes",
)


def _dump(db_url: str) -> dict[str, list[tuple]]:
    engine = make_engine(db_url)
    out = {}
    with engine.connect() as conn:
        for table in (*TABLES, "slashes"):
            out[table] = sorted(
                tuple(r) for r in conn.execute(sa.text(f"select * from {table}")).all()
            )
        out["events"] = sorted(
            tuple(r[1:]) for r in conn.execute(sa.text("select * from events order by id")).all()
        )
    return out


def _rows(indexed: Indexed, sql: str, **params) -> list:
    with make_engine(indexed.db_url).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def test_every_contract_event_is_folded() -> None:
    for artifact in ("FedMarket", "DisputeCourt", "ReliabilityRegistry"):
        events = {i["name"] for i in load_artifact(artifact)["abi"] if i["type"] == "event"}
        assert events <= set(FOLDERS), (artifact, events - set(FOLDERS))


def test_every_event_of_the_market_its_court_and_registry_is_indexed_once(
    indexed: Indexed,
) -> None:
    m = indexed.m
    assert indexed.indexer.court == m.market.court.address
    assert indexed.indexer.registry == m.market.registry.address
    w3 = m.chain.w3
    contracts = [m.market.address, m.market.court.address, m.market.registry.address]
    logs = w3.eth.get_logs({"address": contracts, "fromBlock": 0})
    assert indexed.stats.inserted == len(logs) == indexed.stats.logs_seen
    counts = dict(_rows(indexed, "select name, count(*) from events group by name"))
    assert set(counts) <= set(INDEXED_EVENTS)
    reveals = TRAINERS * ROUNDS + 3 * 2 + 2 * 1
    assert counts["UpdateCommitted"] == counts["UpdateRevealed"] == reveals
    assert counts["RoundPosted"] == ROUNDS + 2 + 1
    assert counts["ValidationChunkRevealed"] == ROUNDS + 2
    assert counts["JobCreated"] == 3 and counts["JobFinalized"] == 2
    assert counts["RewardClaimed"] == counts["ReliabilityUpdated"] == TRAINERS + 3
    assert counts["DisputeOpened"] == counts["DisputeResolved"] == 2
    assert counts["VoteCommitted"] == counts["VoteRevealed"] == 6
    assert counts["CorrectionPosted"] == counts["RoundCorrected"] == counts["SlashReversed"] == 1
    assert counts["AggregatorBondSlashed"] == 1 and counts["RoleRegistered"] == 5
    # court events that name only their dispute are filed under its job and round
    votes = _rows(indexed, "select distinct job_id, round from events where name = 'VoteRevealed'")
    assert sorted(votes) == [(indexed.disputed.job.job_id, 1), (indexed.disputed.job.job_id, 2)]


def test_reindexing_inserts_nothing_and_the_cursor_resumes(indexed: Indexed) -> None:
    head = indexed.m.chain.w3.eth.block_number
    before = _dump(indexed.db_url)
    again = indexed.indexer.index_range(0, head)
    assert again.logs_seen == indexed.stats.logs_seen and again.inserted == 0
    # a new process (a restarted indexer) resumes after the cursor
    restarted = Indexer(indexed.m.chain.w3, indexed.m.market.address, indexed.db_url)
    assert restarted.last_block() == head
    resumed = restarted.sync()
    assert resumed.from_block == head + 1 and resumed.inserted == 0
    assert _dump(indexed.db_url) == before


def test_batch_size_and_interrupted_runs_give_the_same_database(indexed: Indexed, tmp_path) -> None:
    w3, address = indexed.m.chain.w3, indexed.m.market.address
    head = w3.eth.block_number
    url = f"sqlite:///{tmp_path / 'other.db'}"
    ix = Indexer(w3, address, url, batch_size=1)
    ix.sync(to_block=head // 2)  # "crash" halfway ...
    assert ix.last_block() == head // 2
    ix2 = Indexer(w3, address, url, batch_size=7)
    ix2.index_range(head // 3, head // 2)  # ... overlap a range already indexed ...
    ix2.sync()  # ... and resume
    a, b = _dump(indexed.db_url), _dump(url)
    assert a["events"] == b["events"]
    for table in TABLES:
        assert a[table] == b[table], table
    assert [r[1:] for r in a["slashes"]] == [r[1:] for r in b["slashes"]]


def test_derived_tables_agree_with_the_contract(indexed: Indexed) -> None:
    market = indexed.m.market
    for job in (indexed.honest, indexed.disputed.job, indexed.pending):
        job_id = job.job_id
        (row,) = _rows(indexed, "select * from jobs where job_id = :j", j=job_id)
        parts = _rows(
            indexed, "select * from participants where job_id = :j order by join_order", j=job_id
        )
        chain_job = market.job(job_id)
        assert row.status == int(chain_job.status)
        assert int(row.slashed_pool_wei) == int(chain_job.slashedPool)
        assert int(row.reward_pool_wei or 0) == int(chain_job.rewardPool)
        assert int(row.owner_refund_wei or 0) == int(chain_job.ownerRefund)
        assert row.model_hash == "0x" + bytes(chain_job.modelHash).hex()
        assert row.validation_root == "0x" + bytes(chain_job.validationRoot).hex()
        assert int(row.total_score or 0) == int(chain_job.totalScore)
        assert bool(row.dispute_open) is bool(chain_job.disputeOpen)
        assert [p.trainer for p in parts] == market.participants(job_id)
        for p in parts:
            onchain = market.participant(job_id, p.trainer)
            assert p.total_score == int(onchain["totalScore"])
            assert p.flagged_rounds == int(onchain["flaggedRounds"])
            assert int(p.locked_stake_wei) == int(onchain["lockedStake"])
            assert bool(p.claimed) is bool(onchain["claimed"])
    # every vault account's balance, and the trainers' mirror of it
    for address, balance in _rows(indexed, "select address, balance_wei from accounts"):
        assert int(balance) == market.account_of(address)["balance"], address
    for address, balance, reliability, jobs, weight in _rows(
        indexed,
        "select address, stake_balance_wei, reliability_ppm, reliability_jobs, "
        "reliability_weight_wei from trainers",
    ):
        assert int(balance) == market.account_of(address)["balance"], address
        assert (reliability, jobs, int(weight)) == market.reliability_of(address)
    roles = dict(_rows(indexed, "select address, roles from accounts where roles != 0"))
    assert roles == {a: market.roles_of(a) for a in roles} and len(roles) == 5
    pool = {a for (a,) in _rows(indexed, "select address from accounts where in_pool")}
    assert pool == set(market.verifiers()) and len(pool) == 4


def test_a_corrected_round_replaces_the_posted_result(indexed: Indexed) -> None:
    d = indexed.disputed
    job_id, victim = d.job.job_id, d.job.trainers[VICTIM]
    fixed = indexed.m.market.corrections(job_id)[2]
    (rnd,) = _rows(indexed, "select * from rounds where job_id = :j and round = 2", j=job_id)
    assert rnd.corrected and rnd.dispute == "overturned" and not rnd.voided
    assert rnd.model_hash == "0x" + fixed.model_hash.hex()
    assert rnd.overturned_model_hash == "0x" + d.job.posted(2).model_hash.hex()
    assert rnd.total_score == sum(fixed.scores) and rnd.flagged == 0
    assert rnd.chunk_hash is not None and rnd.final_at is not None
    (sub,) = _rows(
        indexed,
        "select * from submissions where job_id = :j and round = 2 and trainer = :t",
        j=job_id,
        t=victim,
    )
    assert (sub.reason, sub.score) == (Reason.ACCEPTED, fixed.scores[VICTIM])
    assert (sub.overturned_reason, sub.overturned_score) == (Reason.OUTLIER, 0)
    assert sub.slashed_wei is None
    (slash,) = _rows(indexed, "select * from slashes where job_id = :j", j=job_id)
    assert slash.trainer == victim and slash.round == 2 and slash.reversed
    (p,) = _rows(
        indexed, "select * from participants where job_id = :j and trainer = :t", j=job_id, t=victim
    )
    assert p.flagged_rounds == 0 and p.slashed_wei == "0"
    assert p.total_score == d.round1.scores[VICTIM] + fixed.scores[VICTIM]
    (job,) = _rows(indexed, "select * from jobs where job_id = :j", j=job_id)
    assert job.slashed_pool_wei == "0" and job.aggregator_bond_slashed_wei == str(BOND)
    assert job.disputes == 2 and not job.dispute_open and job.status == 4
    # the round upheld in round 1 keeps its post
    (r1,) = _rows(indexed, "select * from rounds where job_id = :j and round = 1", j=job_id)
    assert r1.dispute == "upheld" and not r1.corrected


def test_disputes_are_indexed_with_their_outcome(indexed: Indexed) -> None:
    d = indexed.disputed
    rows = _rows(indexed, "select * from disputes order by dispute_id")
    assert [(r.dispute_id, r.job_id, r.round) for r in rows] == [
        (d.upheld_id, d.job.job_id, 1),
        (d.overturned_id, d.job.job_id, 2),
    ]
    upheld, overturned = rows
    assert upheld.challenger == d.job.trainers[0] and upheld.state == 2
    assert upheld.aggregator_bond_slashed_wei == "0" and not upheld.corrected
    assert upheld.winning_digest == "0x" + d.round1.digest.hex() == upheld.posted_digest
    assert overturned.challenger == d.challenger and overturned.state == 4
    assert overturned.corrected and overturned.correction_poster == d.challenger
    assert overturned.aggregator_bond_slashed_wei == str(BOND)
    assert overturned.winning_digest == "0x" + d.round2.digest.hex()
    assert json.loads(overturned.members) == d.members
    assert (overturned.votes_committed, overturned.votes_revealed) == (3, 3)
    votes = _rows(
        indexed,
        "select * from dispute_votes where dispute_id = :d order by seat",
        d=d.overturned_id,
    )
    assert [v.member for v in votes] == d.members
    assert all(v.committed and v.digest == "0x" + d.round2.digest.hex() for v in votes)
