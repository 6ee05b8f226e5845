"""Issue 14, the update leak: nothing of an update is published before its commitment is mined.
A rival watching the store saw updates before they were committed, committed the same bytes
first, and had the victim judged the copier. Now the trainer commits to a CID computed without
storing anything and publishes the update only when it reveals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.core.errors import ConfigError
from backend.storage import LocalStore
from tests.aggregator_service.service_helpers import make_job
from trainer_client.client import TrainerClient
from trainer_client.runner import step


class WatchedStore(LocalStore):
    """The rival's view: every put, with whether its uploader's commitment was on chain then."""

    def __init__(self, root: Path, market: Any) -> None:
        super().__init__(root)
        self.market, self.seen, self.watch = market, [], {}

    def put(self, data: bytes, progress: Any = None) -> str:
        cid = super().put(data, progress)
        who = self.watch.get(cid)
        if who is not None:
            job_id, address, round_ = who
            part = self.market.participant(job_id, address)
            self.seen.append((cid, int(part["lastCommitRound"]) == round_))
        return cid


def test_a_rival_watching_the_store_sees_no_update_before_its_commit_is_mined(
    chain, market, store, aggregator, digits, tmp_path
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=3, rounds=1)
    watched = WatchedStore(store.root, market)  # the same blobs, watched
    for c in job.clients:
        c.store = watched
    contributions = [c.participate(job.job_id, 1) for c in job.clients]
    for c, con in zip(job.clients, contributions, strict=True):
        assert not watched.has(con.cid)  # committed, and still nothing to see
        watched.watch[con.cid] = (job.job_id, c.address, 1)
    for c in job.clients:
        c.reveal(job.job_id, 1)
    assert sorted(watched.seen) == sorted((con.cid, True) for con in contributions)
    assert all(watched.has(con.cid) for con in contributions)


def test_the_outbox_survives_a_restart_and_a_lost_one_is_a_missed_reveal(
    chain, market, store, aggregator, digits, tmp_path
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    a, b = job.clients
    state = tmp_path / "a.json"
    a = TrainerClient(market, store, a.account, a.data, seed=1, state_file=state)
    b = TrainerClient(market, store, b.account, b.data, seed=2, state_file=tmp_path / "b.json")
    assert step(a, job.job_id).action == "committed"
    assert step(b, job.job_id).action == "committed"
    outbox = sorted(tmp_path.glob("*.update"))
    assert [p.name for p in outbox] == ["a-job1-r1.update", "b-job1-r1.update"]
    # a restarts from its files and publishes + reveals the update it committed
    a2 = TrainerClient(market, store, a.account, a.data, seed=1, state_file=state)
    assert step(a2, job.job_id).action == "revealed"
    assert store.has(a2.pending[(job.job_id, 1)].cid) and not outbox[0].exists()
    # b lost its outbox: the round counts it as not revealed, said in one line
    outbox[1].unlink()
    b2 = TrainerClient(market, store, b.account, b.data, seed=2, state_file=tmp_path / "b.json")
    s = step(b2, job.job_id)
    assert (s.action, s.detail) == ("missed", "committed, but the update is not in the outbox")


def test_reveal_never_publishes_an_update_whose_commitment_is_not_on_chain(
    chain, market, store, aggregator, digits, monkeypatch
) -> None:
    """A commit that never landed (say, the node dropped it): `reveal` refuses to publish."""
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    client = job.clients[0]
    monkeypatch.setattr(client, "send_commit", lambda job_id, round_: 0)  # lost in transit
    contribution = client.participate(job.job_id, 1)
    with pytest.raises(ConfigError, match="commitment is not on chain"):
        client.reveal(job.job_id, 1)
    assert not store.has(contribution.cid)
