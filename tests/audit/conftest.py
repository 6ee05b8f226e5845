"""One audited market, indexed into SQLite, shared by every audit test.

* job 1: 4 trainers (the last flips its updates' sign), 3 rounds, no challenge window; every
  round's validation chunk revealed right after its post; settled and claimed.
* job 2: 3 trainers, 2 rounds, a one-hour challenge window. Round 1 is honest; a trainer
  challenges it anyway and the committee upholds it. In round 2 the aggregator falsely flags
  trainer 1; a verifier challenges with the digest `verify_round` recomputed, the committee
  overturns the round and the recomputed result is posted as the correction (the slash is
  reversed, the aggregator's bond paid out); settled and claimed.
* job 3: 2 trainers, round 1 posted but its chunk not revealed yet (running).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from backend.audit.indexer import Indexer, IndexStats
from backend.audit.verify import RoundCheck, verify_round
from tests.audit.jobs import Job, Market, dispute, flag_falsely, new_job, new_market

ROUNDS = 3  # job 1
TRAINERS = 4  # job 1
VICTIM = 1  # job 2: the trainer the aggregator falsely flags in round 2
WINDOW = 3600  # job 2's challenge window


@dataclass
class Disputed:
    """Job 2 and what its disputes saw."""

    job: Job
    upheld_id: int  # dispute of round 1 (a trainer's wrong challenge)
    overturned_id: int  # dispute of round 2 (the verifier's right one)
    round1: RoundCheck  # verify_round of round 1 when its chunk was revealed
    round2: RoundCheck  # verify_round of round 2 before the correction
    members: list[str]  # round 2's committee
    challenger: str  # round 2's challenger (a verifier)


@dataclass
class Indexed:
    m: Market
    honest: Job  # job 1
    disputed: Disputed  # job 2
    pending: Job  # job 3
    db_url: str
    stats: IndexStats
    indexer: Indexer

    @property
    def attacker(self) -> str:
        return self.honest.trainers[-1]


def run_disputed(m: Market) -> Disputed:
    job = new_job(m, trainers=3, rounds=2, challenge_window=WINDOW, seed=1)
    # round 1: honest, challenged anyway by a trainer; the committee re-runs it and upholds it
    job.train(1)
    job.post()
    job.reveal_chunk(1)
    round1 = verify_round(m.market, m.store, job.job_id, 1)
    upheld_id, _ = dispute(job, job.clients[0].account, 1, b"\x01" * 32, round1.digest)
    job.wait_final()
    # round 2: the aggregator flags an honest trainer; a verifier catches it
    job.train(2)
    job.post(flag_falsely(job.compute(), VICTIM))
    job.reveal_chunk(2)
    round2 = verify_round(m.market, m.store, job.job_id, 2)
    challenger = m.verifiers[0]
    overturned_id, members = dispute(job, challenger, 2, round2.digest, round2.digest)
    fix = round2.recomputed.as_post(m.store.put(round2.model_blob))  # type: ignore[union-attr]
    m.market.post_correction(challenger, overturned_id, fix, job.posted(2))
    job.claim_all()  # the correction of the last round settled the job
    return Disputed(job, upheld_id, overturned_id, round1, round2, members, challenger.address)


@pytest.fixture(scope="session")
def indexed(tmp_path_factory) -> Indexed:
    root = tmp_path_factory.mktemp("audit")
    m = new_market(root / "store")
    honest = new_job(m, trainers=TRAINERS, attackers=1, rounds=ROUNDS)
    for r in range(1, ROUNDS + 1):
        honest.play(r)
    honest.settle()
    disputed = run_disputed(m)
    pending = new_job(m, trainers=2, rounds=2, seed=2)
    pending.train(1)
    pending.post()
    db_url = f"sqlite:///{root / 'index.db'}"
    indexer = Indexer(m.chain.w3, m.market.address, db_url, batch_size=10)
    stats = indexer.sync()
    return Indexed(m, honest, disputed, pending, db_url, stats, indexer)


@pytest.fixture(scope="session")
def api_client(indexed: Indexed):
    from fastapi.testclient import TestClient

    from backend.audit.api import create_api

    app = create_api(indexed.db_url, store=indexed.m.store)
    with TestClient(app) as client:
        yield client
