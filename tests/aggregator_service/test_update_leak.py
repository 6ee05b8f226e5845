"""Issue 14, the update leak and the withhold option.

Nothing of an update is published before its commitment is mined: a rival watching the store
saw updates before they were committed, committed the same bytes first, and had the victim
judged the copier. Now the trainer commits to a CID computed without storing anything and then
publishes the update *sealed* (unreadable until its reveal discloses the key).

Availability is judged on the aggregator's snapshot of the sealed updates, taken when the commit
phase closes and before anyone reveals: a trainer who reads the others' reveals and only then
publishes its own update gets reason 2 (unavailable), paid nothing, whatever the store holds
by then. The choice to withhold is made blind.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aggregator.round.driver import RoundDriver
from backend.chain.base import Chain
from backend.chain.embedded import EmbeddedChain
from backend.core.compression import decode_update
from backend.core.errors import ConfigError, Reason, StorageUnavailable, UpdateRejected
from backend.core.models import template_of
from backend.core.sealing import unseal_verified
from backend.storage import LocalStore, sha256_bytes
from tests.aggregator_service.service_helpers import make_job
from trainer_client.client import PendingReveal, TrainerClient
from trainer_client.runner import reveal_wait, step


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


def test_a_rival_watching_the_store_sees_nothing_readable_before_the_reveal(
    chain, market, store, aggregator, digits, tmp_path
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=3, rounds=1)
    watched = WatchedStore(store.root, market)  # the same blobs, watched
    for c in job.clients:
        c.store = watched
    contributions = []
    for c in job.clients:
        original = c.send_commit

        def send_and_watch(job_id: int, round_: int, c=c, original=original) -> int:
            watched.watch[c.pending[(job_id, round_)].cid] = (job_id, c.address, round_)
            return original(job_id, round_)

        c.send_commit = send_and_watch  # type: ignore[method-assign]
        contributions.append(c.participate(job.job_id, 1))
    # every update reached the store only once its commitment was mined ...
    assert sorted(watched.seen) == sorted((con.cid, True) for con in contributions)
    for c, con in zip(job.clients, contributions, strict=True):
        sealed = watched.get(con.cid)
        # ... and sealed: not the update, and not decodable as one
        assert sealed != c.outbox(job.job_id, 1) and sha256_bytes(sealed) != con.content_hash
        with pytest.raises(UpdateRejected):
            decode_update(sealed, template_of(c.spec(job.job_id).model), "fp32")
    for c in job.clients:
        c.reveal(job.job_id, 1)
    # the reveal discloses the key: anyone can now open the sealed update and check it
    for con in contributions:
        opened = unseal_verified(watched.get(con.cid), con.content_hash)
        assert opened is not None and sha256_bytes(opened) == con.content_hash


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
    # b lost its outbox after publishing its sealed update: the state file (salt, hash, cid)
    # is all a reveal needs
    outbox[1].unlink()
    b2 = TrainerClient(market, store, b.account, b.data, seed=2, state_file=tmp_path / "b.json")
    assert step(b2, job.job_id).action == "revealed"


def test_a_lost_outbox_before_publishing_is_a_missed_reveal(
    chain, market, store, aggregator, digits, tmp_path, monkeypatch
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    a, b = job.clients
    b = TrainerClient(market, store, b.account, b.data, seed=2, state_file=tmp_path / "b.json")
    monkeypatch.setattr(b, "publish", lambda job_id, round_: None)  # the store was down
    assert step(b, job.job_id).action == "committed"
    monkeypatch.undo()
    a.participate(job.job_id, 1)
    next(tmp_path.glob("*.update")).unlink()
    b2 = TrainerClient(market, store, b.account, b.data, seed=2, state_file=tmp_path / "b.json")
    s = step(b2, job.job_id)
    assert (s.action, s.detail) == ("missed", "committed, but the update is not in the outbox")


def test_reveal_never_publishes_an_update_whose_commitment_is_not_on_chain(
    chain, market, store, aggregator, digits, monkeypatch
) -> None:
    """A commit that never landed (say, the node dropped it): nothing is published, not even
    sealed."""
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    client = job.clients[0]
    monkeypatch.setattr(client, "send_commit", lambda job_id, round_: 0)  # lost in transit
    with pytest.raises(ConfigError, match="commitment is not on chain"):
        client.participate(job.job_id, 1)
    pending = client.pending[(job.job_id, 1)]
    with pytest.raises(ConfigError, match="commitment is not on chain"):
        client.reveal(job.job_id, 1)
    assert not store.has(pending.cid) and not pending.published


def test_withholding_until_the_others_reveal_is_unavailable_whatever_the_store_holds_later(
    chain, market, store, aggregator, digits, monkeypatch
) -> None:
    """The free option of reason 2: read everyone's reveals, then decide whether to publish.
    Availability is settled by the snapshot taken while every update was sealed."""
    job = make_job(chain, market, store, aggregator.address, digits, trainers=3, rounds=1)
    *honest, withholder = job.clients
    with monkeypatch.context() as m:
        m.setattr(withholder, "publish", lambda job_id, round_: None)  # keeps it back
        for c in job.clients:
            c.participate(job.job_id, 1)
    driver = RoundDriver(market, store, aggregator, job.job_id, job.package)
    snapshot = driver.collect_sealed()  # the commit phase closed, nobody has revealed
    assert snapshot.taken and set(snapshot.held) == {c.address for c in honest}
    for c in honest:
        c.reveal(job.job_id, 1)
        p = c.pending[(job.job_id, 1)]  # the reveal opens it to everyone, the withholder too
        assert unseal_verified(store.get(p.cid), bytes.fromhex(p.content_hash)) is not None
    withholder.reveal(job.job_id, 1)  # publishes now (it liked what it read), then reveals
    assert store.has(withholder.pending[(job.job_id, 1)].cid)
    driver.collect_sealed()  # frozen since the first reveal: takes nothing more
    assert withholder.address not in snapshot.held
    reasons = {s.trainer: (s.reason, s.detail) for s in driver.compute().submissions}
    assert reasons[withholder.address][0] == Reason.UNAVAILABLE
    assert "when the commit phase closed" in reasons[withholder.address][1]
    assert all(reasons[c.address][0] == Reason.ACCEPTED for c in honest)
    # What decided it is the snapshot: fetched now, the same update would be accepted.
    late = RoundDriver(market, store, aggregator, job.job_id, job.package)
    assert all(s.reason == Reason.ACCEPTED for s in late.gather(1))


def test_a_snapshot_counts_only_if_taken_after_the_commit_phase_closed(
    chain, market, store, aggregator, digits
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    first, last = job.clients
    first.participate(job.job_id, 1)
    driver = RoundDriver(market, store, aggregator, job.job_id, job.package)
    early = driver.collect_sealed()  # prefetch while the commit phase runs
    assert not early.taken and set(early.held) == {first.address}
    last.participate(job.job_id, 1)  # the last commit closes the commit phase
    assert driver.collect_sealed().taken and len(early.held) == 2


def test_a_hostile_announcement_is_ignored(chain, market, store, aggregator, digits) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    fn = market.contract.functions.commit(job.job_id, b"\x01" * 32)
    chain.transact(fn, job.clients[0].account, suffix=b"../../etc/passwd\x00" + b"\xff" * 300)
    job.clients[1].participate(job.job_id, 1)
    announced = market.announced(job.job_id, 1)
    assert list(announced) == [job.clients[1].address]


def test_trainers_reveal_after_the_snapshot_grace_on_a_node() -> None:
    """On a node the runner waits after the commit phase closes (at most a tenth of the reveal
    window), so the aggregator's snapshot comes before any reveal; the embedded chain, whose
    clock only time-travels, does not wait."""

    def client(grace: int, now: int) -> Any:
        chain = SimpleNamespace(reveal_grace_s=grace, next_block_time=lambda: now)
        return SimpleNamespace(market=SimpleNamespace(chain=chain))

    job = SimpleNamespace(commitEnd=1_000, revealDuration=12 * 3600)
    assert reveal_wait(client(60, 1_000), job) == 60  # type: ignore[arg-type]
    assert reveal_wait(client(60, 1_059), job) == 1  # type: ignore[arg-type]
    assert reveal_wait(client(60, 1_060), job) == 0  # type: ignore[arg-type]
    short = SimpleNamespace(commitEnd=1_000, revealDuration=100)
    assert reveal_wait(client(60, 1_000), short) == 10  # type: ignore[arg-type]
    assert reveal_wait(client(0, 1_000), job) == 0  # type: ignore[arg-type]
    assert EmbeddedChain.reveal_grace_s == 0 and Chain.reveal_grace_s == 60


def test_a_colluder_revealing_at_once_neither_ends_the_snapshot_nor_brings_back_the_option(
    chain, market, store, aggregator, digits, monkeypatch
) -> None:
    """On a node (a grace > 0) honest trainers reveal only `snapshot_grace` after the commit
    phase closes. A colluder who reveals at once (to end the snapshot before the aggregator
    takes it, and get the old fetch-at-post fallback) shows only what its group knew."""
    monkeypatch.setattr(chain, "reveal_grace_s", 60)
    job = make_job(chain, market, store, aggregator.address, digits, trainers=3, rounds=1)
    honest, colluder, withholder = job.clients
    with monkeypatch.context() as m:
        m.setattr(withholder, "publish", lambda job_id, round_: None)
        for c in job.clients:
            c.participate(job.job_id, 1)
    colluder.reveal(job.job_id, 1)  # right after the close, before the aggregator looked
    driver = RoundDriver(market, store, aggregator, job.job_id, job.package)
    snapshot = driver.collect_sealed()
    assert snapshot.taken and not snapshot.frozen
    assert set(snapshot.held) == {honest.address, colluder.address}
    chain.advance_time(60)  # the grace is over: the honest trainer reveals
    honest.reveal(job.job_id, 1)
    withholder.reveal(job.job_id, 1)  # publishes now, having read the honest update
    driver.collect_sealed()
    assert snapshot.frozen and withholder.address not in snapshot.held
    reasons = {s.trainer: s.reason for s in driver.compute().submissions}
    assert reasons == {
        honest.address: Reason.ACCEPTED,
        colluder.address: Reason.ACCEPTED,
        withholder.address: Reason.UNAVAILABLE,
    }


def test_a_store_outage_during_the_snapshot_does_not_make_everyone_unavailable(
    chain, market, store, aggregator, digits, monkeypatch
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    for c in job.clients:
        c.participate(job.job_id, 1)
    driver = RoundDriver(market, store, aggregator, job.job_id, job.package)

    def down(cid: str, progress: Any = None) -> bytes:
        raise StorageUnavailable("daemon down")

    with monkeypatch.context() as m:
        m.setattr(store, "get", down)
        assert not driver.collect_sealed().taken  # not a snapshot: the fallback fetches
    for c in job.clients:
        c.reveal(job.job_id, 1)
    assert all(s.reason == Reason.ACCEPTED for s in driver.compute().submissions)


def test_a_trainer_whose_store_is_down_still_reveals(
    chain, market, store, aggregator, digits, monkeypatch
) -> None:
    """Not revealing is reason 1 (charged); an unpublished update is only reason 2."""
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    a, b = job.clients

    def down(data: bytes, progress: Any = None) -> str:
        raise StorageUnavailable("daemon down")

    monkeypatch.setattr(a.store, "put", down)
    a.participate(job.job_id, 1)  # committed; publishing failed and stays pending
    b.participate(job.job_id, 1)
    assert not a.pending[(job.job_id, 1)].published
    a.reveal(job.job_id, 1)
    assert int(market.participant(job.job_id, a.address)["lastRevealRound"]) == 1


def test_a_commitment_from_before_sealing_is_published_plain(
    chain, market, store, aggregator, digits
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=2, rounds=1)
    blob = b"an update committed by an older client"
    client = job.clients[0]
    client.stash(job.job_id, 1, blob)
    salt = b"\x07" * 32
    plain = store.cid_of(blob)
    client.pending[(job.job_id, 1)] = PendingReveal(
        job.job_id, 1, sha256_bytes(blob).hex(), plain, salt.hex()
    )
    client.send_commit(job.job_id, 1)
    client.publish(job.job_id, 1)
    assert store.get(plain) == blob


def test_an_announced_cid_that_times_out_does_not_pass_for_an_outage(
    chain, market, store, aggregator, digits, monkeypatch
) -> None:
    """An announcement naming a CID that exists nowhere times out on a daemon (the store says
    unavailable). It must not cancel the snapshot, which would bring the fallback back."""
    job = make_job(chain, market, store, aggregator.address, digits, trainers=3, rounds=1)
    honest, other, liar = job.clients
    honest.participate(job.job_id, 1)
    other.participate(job.job_id, 1)
    driver = RoundDriver(market, store, aggregator, job.job_id, job.package)
    driver.collect_sealed()  # prefetch: both honest updates are held
    announce_timing_out(chain, market, store, job.job_id, liar, monkeypatch, hang_s=0)
    assert driver.collect_sealed().taken


def test_a_hanging_fetch_does_not_hold_the_others_back(
    chain, market, store, aggregator, digits, monkeypatch
) -> None:
    """Fetches run concurrently and the collect waits no later than the snapshot's end: a CID
    that hangs (exists nowhere, on a daemon) costs its announcer, not the others."""
    monkeypatch.setattr(chain, "reveal_grace_s", 2)
    job = make_job(chain, market, store, aggregator.address, digits, trainers=3, rounds=1)
    honest, other, liar = job.clients
    honest.participate(job.job_id, 1)
    other.participate(job.job_id, 1)
    announce_timing_out(chain, market, store, job.job_id, liar, monkeypatch, hang_s=3)
    driver = RoundDriver(market, store, aggregator, job.job_id, job.package)
    started = time.monotonic()
    snapshot = driver.collect_sealed()
    assert time.monotonic() - started < 2.5  # waited at most until the end, not for the hang
    assert snapshot.taken and set(snapshot.held) == {honest.address, other.address}


def announce_timing_out(chain, market, store, job_id, liar, monkeypatch, hang_s: float) -> None:
    """`liar` commits last (closing the commit phase), announcing a CID that exists nowhere:
    fetching it takes `hang_s`, then the store says unavailable, as a daemon's timeout does."""
    bogus = "bafkreibogusbogusbogusbogusbogusbogusbogusbogusbogusbogusbo"
    fn = market.contract.functions.commit(job_id, b"\x02" * 32)
    chain.transact(fn, liar.account, suffix=bogus.encode())
    real_get = store.get

    def get(cid: str, progress: Any = None) -> bytes:
        if cid == bogus:
            time.sleep(hang_s)
            raise StorageUnavailable("cat timed out")
        return real_get(cid, progress)

    monkeypatch.setattr(store, "get", get)
