"""The indexer: every event once, resumable, idempotent, batch-size independent."""

from __future__ import annotations

import sqlalchemy as sa

from backend.audit.indexer import INDEXED_EVENTS, Indexer
from backend.audit.schema import make_engine
from tests.audit.conftest import ROUNDS, TRAINERS


def _dump(db_url: str) -> dict[str, list[tuple]]:
    engine = make_engine(db_url)
    out = {}
    with engine.connect() as conn:
        for table in ("jobs", "participants", "rounds", "submissions", "slashes", "trainers"):
            out[table] = sorted(
                tuple(r) for r in conn.execute(sa.text(f"select * from {table}")).all()
            )
        out["events"] = sorted(
            tuple(r[1:]) for r in conn.execute(sa.text("select * from events order by id")).all()
        )
    return out


def test_every_event_of_the_demo_is_indexed_once(indexed) -> None:
    w3 = indexed.demo.chain.w3
    logs = w3.eth.get_logs({"address": indexed.demo.market.address, "fromBlock": 0})
    assert indexed.stats.inserted == len(logs) == indexed.stats.logs_seen
    engine = make_engine(indexed.db_url)
    with engine.connect() as conn:
        counts = {
            n: c
            for n, c in conn.execute(sa.text("select name, count(*) from events group by name"))
        }
    assert set(counts) <= set(INDEXED_EVENTS)
    assert counts["UpdateCommitted"] == counts["UpdateRevealed"] == TRAINERS * ROUNDS
    assert counts["RoundPosted"] == ROUNDS and counts["TrainerSlashed"] == ROUNDS
    assert counts["JobCreated"] == counts["JobFinalized"] == counts["ValidationRevealed"] == 1
    assert counts["RewardClaimed"] == counts["ReliabilityUpdated"] == TRAINERS


def test_reindexing_inserts_nothing_and_the_cursor_resumes(indexed) -> None:
    head = indexed.demo.chain.w3.eth.block_number
    before = _dump(indexed.db_url)
    again = indexed.indexer.index_range(0, head)
    assert again.logs_seen == indexed.stats.logs_seen and again.inserted == 0
    # a new process (a restarted indexer) resumes after the cursor
    restarted = Indexer(indexed.demo.chain.w3, indexed.demo.market.address, indexed.db_url)
    assert restarted.last_block() == head
    resumed = restarted.sync()
    assert resumed.from_block == head + 1 and resumed.inserted == 0
    assert _dump(indexed.db_url) == before


def test_batch_size_and_interrupted_runs_give_the_same_database(indexed, tmp_path) -> None:
    head = indexed.demo.chain.w3.eth.block_number
    url = f"sqlite:///{tmp_path / 'other.db'}"
    ix = Indexer(indexed.demo.chain.w3, indexed.demo.market.address, url, batch_size=1)
    ix.sync(to_block=head // 2)  # "crash" halfway ...
    assert ix.last_block() == head // 2
    ix2 = Indexer(indexed.demo.chain.w3, indexed.demo.market.address, url, batch_size=7)
    ix2.index_range(head // 3, head // 2)  # ... overlap a range already indexed ...
    ix2.sync()  # ... and resume
    a, b = _dump(indexed.db_url), _dump(url)
    assert a["events"] == b["events"]
    for table in ("jobs", "participants", "rounds", "submissions", "trainers"):
        assert a[table] == b[table], table
    assert [r[1:] for r in a["slashes"]] == [r[1:] for r in b["slashes"]]


def test_derived_tables_agree_with_the_contract(indexed) -> None:
    market, job_id = indexed.demo.market, indexed.demo.summary["job_id"]
    engine = make_engine(indexed.db_url)
    with engine.connect() as conn:
        job = conn.execute(sa.text("select * from jobs where job_id = :j"), {"j": job_id}).one()
        parts = conn.execute(
            sa.text("select * from participants where job_id = :j order by join_order"),
            {"j": job_id},
        ).all()
    chain_job = market.job(job_id)
    assert job.status == int(chain_job.status) == 4
    assert int(job.slashed_pool_wei) == int(chain_job.slashedPool)
    assert int(job.reward_pool_wei) == int(chain_job.rewardPool)
    assert int(job.owner_refund_wei) == int(chain_job.ownerRefund)
    assert job.model_hash == "0x" + bytes(chain_job.modelHash).hex()
    assert [p.trainer for p in parts] == market.participants(job_id)
    for p in parts:
        onchain = market.participant(job_id, p.trainer)
        assert p.total_score == int(onchain["totalScore"])
        assert p.flagged_rounds == int(onchain["flaggedRounds"])
        assert bool(p.claimed) is bool(onchain["claimed"])
        assert p.reliability_ppm_after == market.reliability_of(p.trainer)[0]
