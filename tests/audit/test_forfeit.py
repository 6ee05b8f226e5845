"""An owner who withholds a round's validation chunk forfeits the job: the round could never be
checked, so the contract undoes it (scores, slashes) and pays the whole reward to the trainers.
The auditor reports the round as void (not a failure) and checks the settlement without it; the
indexer marks it voided and the slash reversed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from backend.audit.indexer import Indexer
from backend.audit.schema import make_engine
from backend.audit.verify import VerifyReport, verify_job
from tests.audit.jobs import Job, flag_falsely, new_job, new_market

VICTIM = 0


@dataclass
class Forfeited:
    job: Job
    report: VerifyReport
    db_url: str


@pytest.fixture(scope="module")
def forfeited(tmp_path_factory) -> Forfeited:
    root = tmp_path_factory.mktemp("forfeit")
    m = new_market(root / "store")
    job = new_job(m, trainers=3, rounds=2, seed=4)
    job.train(1)
    job.post(flag_falsely(job.compute(), VICTIM))  # a lie the owner then keeps from a check
    posted = job.posted(1)
    m.chain.advance_time(24 * 3600 + 1)  # the post duration passes with no chunk revealed
    m.chain.transact(
        m.market.contract.functions.forfeit(
            job.job_id, (posted.model_hash, posted.scores, posted.reasons)
        ),
        m.aggregator,
    )
    job.claim_all()
    report = verify_job(m.market, m.store, job.job_id)
    db_url = f"sqlite:///{root / 'index.db'}"
    Indexer(m.chain.w3, m.market.address, db_url).sync()
    return Forfeited(job, report, db_url)


def test_the_withheld_round_is_void_not_a_failure(forfeited: Forfeited) -> None:
    report = forfeited.report
    assert report.status == "abandoned"
    assert report.ok, [m.describe() for m in report.mismatches]
    assert report.rounds == [] and report.chunks_revealed == []
    (u,) = report.unverified
    assert u.round == 1 and "withheld its validation chunk" in u.describe()
    # nobody scores once the round is undone: the whole reward in equal parts, none slashed
    rewards = {p["reward_wei"] for p in report.payouts.values()}
    assert len(rewards) == 1 and rewards.pop() > 0
    assert all(p["expected_wei"] == p["reward_wei"] for p in report.payouts.values())


def test_the_index_voids_the_round_and_reverses_its_slash(forfeited: Forfeited) -> None:
    job = forfeited.job
    with make_engine(forfeited.db_url).connect() as conn:
        (row,) = conn.execute(sa.text("select * from jobs")).all()
        (rnd,) = conn.execute(sa.text("select * from rounds where round = 1")).all()
        (slash,) = conn.execute(sa.text("select * from slashes")).all()
        parts = conn.execute(sa.text("select * from participants")).all()
    assert row.status == 5 and row.owner_fault and row.slashed_pool_wei == "0"
    assert row.total_score == 0 and row.chunks_revealed == 0
    assert rnd.posted and rnd.voided and not rnd.corrected
    assert slash.trainer == job.trainers[VICTIM] and slash.reversed
    assert all(p.total_score == 0 and p.slashed_wei == "0" for p in parts)
    chain_job = job.market.job(job.job_id)
    assert int(row.reward_pool_wei) == int(chain_job.rewardPool)
    assert int(row.owner_refund_wei) == int(chain_job.ownerRefund)
