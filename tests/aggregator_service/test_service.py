"""The aggregator service: discovery, one post per round, endpoints, restart, bad blobs."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import make_job, new_service, play_round

from aggregator.round.driver import RoundAlreadyPosted, RoundDriver
from aggregator.service import WAITING_FOR_VALIDATION, create_app
from backend.chain.market import JobStatus
from backend.core import codec
from backend.core.errors import ChainUnavailable, Reason, StorageUnavailable


def _posted_rounds(market, job_id: int) -> list[int]:
    return [p.round for p in market.round_posts(job_id)]


def test_two_jobs_each_round_posted_once_and_endpoints(
    chain, market, store, aggregator, new_aggregator, digits, tmp_path
) -> None:
    a = make_job(chain, market, store, aggregator.address, digits, seed=1)
    b = make_job(chain, market, store, aggregator.address, digits, seed=2)
    stranger = new_aggregator().address
    other = make_job(chain, market, store, stranger, digits, trainers=1, rounds=1)
    vals = {a.job_id: a.package, b.job_id: b.package}
    service = new_service(market, store, aggregator, tmp_path / "j", validation=vals)
    assert service.poll_once() == {a.job_id: "waiting (commit)", b.job_id: "waiting (commit)"}
    assert other.job_id not in service.jobs
    for r in (1, 2):
        play_round(a, r)
        play_round(b, r)
        actions = service.poll_once()
        assert actions == {a.job_id: f"posted round {r}", b.job_id: f"posted round {r}"}
        service.poll_once()  # nothing due: no second post
    service.poll_once()
    for job in (a, b):
        assert _posted_rounds(market, job.job_id) == [1, 2]
        assert market.job(job.job_id).status == JobStatus.FINISHED
        # each round's validation chunk was published and revealed right after its post
        chunks = market.validation_chunks(job.job_id)
        assert sorted(chunks) == [1, 2]
        for r, (content_hash, cid) in chunks.items():
            assert store.get(cid) == job.package.reveal(r).blob
            assert content_hash == job.package.reveal(r).content_hash
        market.finalize(job.owner, job.job_id)  # the last round is final: the job settles
        assert market.job(job.job_id).status == JobStatus.SETTLED
    service.poll_once()

    with TestClient(create_app(service, start_watcher=False)) as http:
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["jobs"] == 2
        assert health["aggregator"] == aggregator.address
        assert health["watcher_running"] is False
        jobs = {j["job_id"]: j for j in http.get("/jobs").json()}
        assert set(jobs) == {a.job_id, b.job_id}
        assert jobs[a.job_id]["status"] == "settled"
        assert jobs[a.job_id]["validation_matches_commitment"] is True
        assert jobs[a.job_id]["posted_rounds"] == [1, 2]
        rounds = http.get(f"/jobs/{a.job_id}/rounds").json()
        assert [r["round"] for r in rounds] == [1, 2]
        posts = market.round_posts(a.job_id)
        for r, post in zip(rounds, posts, strict=True):
            assert r["source"] == "posted"
            assert r["reasons"] == post.reasons and r["scores"] == post.scores
            assert r["tx_hash"] == post.tx_hash
            assert r["model_hash"] == "0x" + post.model_hash.hex()
            assert r["chunk_cid"] == market.validation_chunks(a.job_id)[r["round"]][1]
            assert 0 <= r["accuracy"] <= 1 and r["loss_after"] > 0
            assert len(r["details"]) == len(r["trainers"]) == 3
        assert http.get(f"/jobs/{other.job_id}/rounds").status_code == 404
        spec = http.get("/openapi.json").json()
        assert {"/health", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/rounds"} <= set(spec["paths"])
        assert "RoundView" in spec["components"]["schemas"]


class Crash(BaseException):
    """Kills the service mid-pass (not an Exception: nothing inside may swallow it)."""


def test_restart_resumes_rebuilds_history_and_posts_each_round_once(
    chain, market, store, aggregator, digits, tmp_path, monkeypatch
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, rounds=4, seed=3)
    vals = {job.job_id: job.package}
    journal = tmp_path / "journal"

    # incarnation 1 posts round 1, then dies
    play_round(job, 1)
    s1 = new_service(market, store, aggregator, journal, validation=vals)
    assert s1.poll_once()[job.job_id] == "posted round 1"
    del s1

    # round 2: trainer 0 replays its round-1 update; a fresh incarnation must still see it
    play_round(job, 2, deltas={0: job.deltas[(1, 0)]})
    s2 = new_service(market, store, aggregator, journal, validation=vals)
    assert s2.poll_once()[job.job_id] == "posted round 2"
    assert market.round_posts(job.job_id)[1].reasons[0] == Reason.REPLAY
    assert s2.jobs[job.job_id].replay_mismatches == []
    assert s2.jobs[job.job_id].journal[1]["source"] == "posted"  # from the journal

    # round 3: incarnation 3 dies after computing, before posting
    play_round(job, 3)
    s3 = new_service(market, store, aggregator, journal, validation=vals)

    def crash(self, pending):
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(RoundDriver, "post", crash)
        with pytest.raises(Crash):
            s3.poll_once()
    assert _posted_rounds(market, job.job_id) == [1, 2]
    # incarnation 4 dies after posting round 3, before revealing its chunk
    s4 = new_service(market, store, aggregator, journal, validation=vals)
    with monkeypatch.context() as m:
        m.setattr(RoundDriver, "reveal_chunk", lambda self: None)
        assert s4.poll_once()[job.job_id] == "posted round 3"
    assert sorted(market.validation_chunks(job.job_id)) == [1, 2]
    s4 = new_service(market, store, aggregator, journal, validation=vals)
    assert s4.poll_once()[job.job_id] == "revealed round 3's validation chunk"
    play_round(job, 4)
    assert sorted(market.validation_chunks(job.job_id)) == [1, 2, 3]
    assert s4.jobs[job.job_id].journal[3]["chunk_cid"] == market.validation_chunks(job.job_id)[3][1]

    # a stale incarnation (s2: state from round 2) cannot post round 3 again
    stale = s2.jobs[job.job_id].driver
    assert stale.rounds_done == 2
    with pytest.raises(RoundAlreadyPosted):
        stale.compute()  # refuses: the chain is past its state
    assert s2.poll_once()[job.job_id] == "posted round 4"  # rebuilt, then posted round 4
    assert s4.poll_once()[job.job_id] == "finished"
    assert _posted_rounds(market, job.job_id) == [1, 2, 3, 4]

    # a journal-less restart rebuilds the reports, details included, by replay
    s5 = new_service(market, store, aggregator, tmp_path / "empty", validation=vals)
    s5.poll_once()
    rounds = s5.rounds_view(job.job_id)
    assert [r.round for r in rounds] == [1, 2, 3, 4]
    assert all(r.source == "replayed" for r in rounds)
    assert rounds[1].reasons[0] == Reason.REPLAY and "replay" in rounds[1].details[0]
    assert s5.jobs[job.job_id].replay_mismatches == []


def test_post_revert_is_logged_and_the_loop_survives(
    chain, market, store, aggregator, digits, tmp_path, monkeypatch
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, rounds=1, seed=4)
    play_round(job, 1)
    service = new_service(
        market, store, aggregator, tmp_path / "j", validation={job.job_id: job.package}
    )
    original = RoundDriver.post

    def wrong_round(self, pending):
        pending.round += 1  # the contract answers WrongRound
        market.post_round(aggregator, job.job_id, pending.round, b"\0" * 32, "x", [0] * 3, [0] * 3)

    with monkeypatch.context() as m:
        m.setattr(RoundDriver, "post", wrong_round)
        action = service.poll_once()[job.job_id]
    assert action.startswith("post failed") and "WrongRound" in action
    assert "WrongRound" in service.jobs[job.job_id].last_error
    assert RoundDriver.post is original
    assert service.poll_once()[job.job_id] == "posted round 1"
    assert _posted_rounds(market, job.job_id) == [1]


def test_bad_blobs_get_reasons_on_chain_and_the_round_closes(
    chain, market, store, aggregator, digits, tmp_path
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=7, rounds=1)
    # honest 0..2; 3 garbage; 4 NaN; 5 tampered after commit; 6 content gone
    template = codec.Template.of(codec.decode(store.get(market.current_model(job.job_id)[1])))
    nan = template.unflatten(np.full(template.size, np.nan))
    tampered = codec.encode(template.unflatten(np.ones(template.size) * 0.01))
    missing = codec.encode(template.unflatten(np.ones(template.size) * 0.02))
    raw = {3: b"garbage", 4: codec.encode(nan), 5: tampered, 6: missing}
    play_round(job, 1, raw=raw)
    from backend.core.sealing import seal
    from backend.storage import raw_cid

    (store.blobs / raw_cid(seal(tampered))).write_bytes(b"tampered" + seal(tampered))
    (store.blobs / raw_cid(seal(missing))).unlink()
    service = new_service(
        market, store, aggregator, tmp_path / "j", validation={job.job_id: job.package}
    )
    assert service.poll_once()[job.job_id] == "posted round 1"
    (post,) = market.round_posts(job.job_id)
    assert post.reasons[3:] == [
        Reason.UNDECODABLE,
        Reason.NON_FINITE,
        Reason.HASH_MISMATCH,
        Reason.UNAVAILABLE,
    ]
    assert post.reasons[:3] == [0, 0, 0] and all(s > 0 for s in post.scores[:3])
    assert market.job(job.job_id).status == JobStatus.FINISHED
    (view,) = service.rounds_view(job.job_id)
    assert all(view.details[3:]) and "not found" in view.details[6]


class FlakyStore:
    """A store whose reads fail with StorageUnavailable for some cids, or for all of them."""

    def __init__(self, inner, bad: set[str] | None = None) -> None:
        self.inner, self.bad, self.down = inner, bad or set(), False

    def put(self, data, progress=None):
        if self.down:
            raise StorageUnavailable("daemon down")
        return self.inner.put(data, progress)

    def get(self, cid, progress=None):
        if self.down or cid in self.bad:
            raise StorageUnavailable("daemon down")
        return self.inner.get(cid, progress)

    def has(self, cid):
        return self.inner.has(cid)

    def cid_of(self, data):
        return self.inner.cid_of(data)


def test_store_outage_backs_off_and_one_unreachable_blob_is_reason_2(
    chain, market, store, aggregator, digits, tmp_path
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, trainers=4, rounds=1)
    flaky = FlakyStore(store)
    service = new_service(
        market, flaky, aggregator, tmp_path / "j", validation={job.job_id: job.package}
    )
    assert service.poll_once()[job.job_id] == "waiting (commit)"
    play_round(job, 1)
    flaky.down = True
    action = service.poll_once()[job.job_id]
    assert action.startswith("error") and "StorageUnavailable" in action
    assert _posted_rounds(market, job.job_id) == []  # nothing wrong was posted
    assert service.poll_once()[job.job_id] in ("backing off", action)
    flaky.down = False
    # the chain node goes away too: the pass reports it and nothing crashes
    real_job = market.job
    market.job = lambda _id: (_ for _ in ()).throw(ChainUnavailable("node down"))
    try:
        action = service.poll_once(ignore_backoff=True)[job.job_id]
    finally:
        market.job = real_job
    assert action.startswith("error") and "ChainUnavailable" in action
    flaky.bad = {market.reveals(job.job_id, 1)[0].cid}
    assert service.poll_once(ignore_backoff=True)[job.job_id] == "posted round 1"
    (post,) = market.round_posts(job.job_id)
    assert sorted(post.reasons) == [0, 0, 0, Reason.UNAVAILABLE]


def test_job_without_validation_is_reported_not_crashed(
    chain, market, store, aggregator, digits, tmp_path
) -> None:
    job = make_job(chain, market, store, aggregator.address, digits, rounds=1, seed=5)
    play_round(job, 1)
    vdir = tmp_path / "validation"
    vdir.mkdir()
    service = new_service(market, store, aggregator, tmp_path / "j", validation_dir=vdir)
    assert service.poll_once()[job.job_id] == WAITING_FOR_VALIDATION
    with TestClient(create_app(service, start_watcher=False)) as http:
        (view,) = http.get("/jobs").json()
        assert view["status"] == WAITING_FOR_VALIDATION and view["phase"] == "awaiting_post"
        assert http.get("/health").json()["status"] == "ok"
    assert _posted_rounds(market, job.job_id) == []
    (vdir / f"{job.job_id}.npz").write_bytes(job.validation_blob)
    assert service.poll_once()[job.job_id] == "posted round 1"
    assert service.job_view(job.job_id).validation_matches_commitment is True
    assert sorted(market.validation_chunks(job.job_id)) == [1]  # the package revealed it


def test_plain_split_scores_but_waits_for_the_owners_chunk_reveal(
    chain, market, store, aggregator, digits, tmp_path
) -> None:
    """Without the chunks' salts the service cannot reveal: round 2 waits (no failure) until
    the owner reveals round 1's chunk, then is posted on round 2's chunk."""
    from backend.owner.lifecycle import reveal_chunk

    job = make_job(chain, market, store, aggregator.address, digits, rounds=2, seed=6)
    service = new_service(
        market, store, aggregator, tmp_path / "j", validation={job.job_id: job.validation}
    )
    play_round(job, 1)
    assert service.poll_once()[job.job_id] == "posted round 1"
    assert service.job_view(job.job_id).validation_matches_commitment is None
    assert market.validation_chunks(job.job_id) == {}
    play_round(job, 2)
    action = service.poll_once()[job.job_id]
    assert action == "waiting (round 1's validation chunk is not revealed yet)"
    assert "not revealed" in service.job_view(job.job_id).status
    revealed = reveal_chunk(market, store, job.owner, market.job(job.job_id), job.package)
    assert revealed is not None and revealed.round == 1
    assert reveal_chunk(market, store, job.owner, market.job(job.job_id), job.package) is None
    assert service.poll_once()[job.job_id] == "posted round 2"
    assert _posted_rounds(market, job.job_id) == [1, 2]
    replayed = new_service(
        market, store, aggregator, tmp_path / "j2", validation={job.job_id: job.validation}
    )
    replayed.poll_once()
    assert replayed.jobs[job.job_id].replay_mismatches == []  # each round on its own chunk


def test_challenge_window_and_a_wrong_package(
    chain, market, store, aggregator, digits, tmp_path
) -> None:
    """Round 2 waits out round 1's challenge window; a package that does not match the job's
    root is reported and reveals nothing."""
    from backend.core.valpackage import build_package
    from backend.storage import raw_cid

    job = make_job(chain, market, store, aggregator.address, digits, seed=7, challenge_window=600)
    wrong = build_package(job.validation, 2, raw_cid)  # other salts: another root
    wrong_service = new_service(
        market, store, aggregator, tmp_path / "w", validation={job.job_id: wrong}
    )
    wrong_service.poll_once()
    assert wrong_service.job_view(job.job_id).validation_matches_commitment is False
    service = new_service(
        market, store, aggregator, tmp_path / "j", validation={job.job_id: job.package}
    )
    play_round(job, 1)
    assert service.poll_once()[job.job_id] == "posted round 1"
    final_at = int(market.job(job.job_id).finalAt)
    assert final_at > chain.now()
    play_round(job, 2)
    action = service.poll_once()[job.job_id]
    assert action.startswith("waiting (round 1 is open to challenges until")
    chain.advance_time(final_at - chain.now() + 1)
    assert service.poll_once()[job.job_id] == "posted round 2"
    assert sorted(market.validation_chunks(job.job_id)) == [1, 2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_uvicorn_serves_health_over_http(market, store, aggregator, tmp_path) -> None:
    import uvicorn

    service = new_service(market, store, aggregator, tmp_path / "j", poll_interval_s=0.2)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert body["aggregator"] == aggregator.address and body["watcher_running"] is True
        deadline = time.monotonic() + 10
        while service.polls == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.polls >= 1
    finally:
        server.should_exit = True
        thread.join(10)
    assert not service.running
