"""Re-verification with per-round validation chunks: an honest job verifies round by round, the
digest `verify_round` recomputes is the one the aggregator posted, a corrected round is checked
against its correction, a lying aggregator is caught, and what cannot be verified (yet) is said
so — never blamed on the aggregator."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from backend.audit.verify import CannotVerify, VerifyReport, verify_job, verify_round
from backend.chain.market import round_digest
from backend.core import codec
from backend.core.errors import Reason, StorageUnavailable
from backend.core.models import template_of
from backend.storage import LocalStore
from tests.audit.conftest import ROUNDS, VICTIM, Indexed
from tests.audit.jobs import Job, new_job, new_market

BUMP = 12_345


def _digest(job_id: int, post) -> bytes:
    return round_digest(job_id, post.round, post.model_hash, post.scores, post.reasons)


# -- an honest job ------------------------------------------------------------------------------
def test_the_honest_job_verifies_round_by_round_with_its_chunks(indexed: Indexed) -> None:
    job = indexed.honest
    report = verify_job(indexed.m.market, indexed.m.store, job.job_id)
    assert report.ok and report.error is None and report.unverified == []
    assert report.chunks_revealed == list(range(1, ROUNDS + 1))
    assert [r.round for r in report.rounds] == list(range(1, ROUNDS + 1))
    assert all(r.ok and r.matches and not r.corrected for r in report.rounds)
    for r, posted in zip(report.rounds, job.reports, strict=True):
        assert r.scores_recomputed == posted.outcome.scores_fp
        assert r.model_hash_recomputed == "0x" + posted.model_hash.hex()
        # scored on its own chunk: the recomputed loss is the aggregator's (on chunk r)
        assert r.validation_loss == pytest.approx(posted.outcome.loss_after, abs=1e-12)
    for client in job.clients:
        paid = report.payouts[client.address]
        assert paid["claimed"] == 1 and paid["reward_wei"] == paid["expected_wei"]
    assert set(report.to_dict()) >= {"ok", "rounds_verified", "unverified", "chunks_revealed"}


def test_verify_round_digest_is_what_the_aggregator_posted(indexed: Indexed) -> None:
    m, job = indexed.m, indexed.honest
    for r in range(1, ROUNDS + 1):
        check = verify_round(m.market, m.store, job.job_id, r)
        posted = job.posted(r)
        assert check.digest == _digest(job.job_id, posted)
        assert check.matches and check.ok and check.digest_posted == check.digest_recomputed
        assert check.model_hash == posted.model_hash
        assert check.scores == posted.scores and check.reasons == posted.reasons
        assert check.model_blob == m.store.get(posted.model_cid)
        fix = check.recomputed.as_post(posted.model_cid)  # type: ignore[union-attr]
        assert (fix.model_hash, fix.scores, fix.reasons) == (
            posted.model_hash,
            posted.scores,
            posted.reasons,
        )


def test_the_committee_voted_the_posted_digest_of_an_honest_round(indexed: Indexed) -> None:
    d, market = indexed.disputed, indexed.m.market
    upheld = market.dispute(d.upheld_id)
    # what verify_round computed the moment round 1's chunk was public: the digest on chain
    assert d.round1.matches
    assert d.round1.digest == bytes(upheld["postedDigest"]) == bytes(upheld["winning"])
    assert int(upheld["state"]) == 2  # upheld


# -- a disputed, corrected round ----------------------------------------------------------------
def test_a_false_flag_is_caught_before_the_correction(indexed: Indexed) -> None:
    d = indexed.disputed
    check, victim = d.round2, d.job.trainers[VICTIM]
    assert not check.matches and not check.ok and not check.corrected
    assert {(m.trainer, m.field) for m in check.mismatches} == {
        (victim, "reason"),
        (victim, "score"),
    }
    reason = next(m for m in check.mismatches if m.field == "reason")
    assert (reason.posted, reason.recomputed) == (Reason.OUTLIER, Reason.ACCEPTED)
    assert check.digest != _digest(d.job.job_id, d.job.posted(2))
    overturned = indexed.m.market.dispute(d.overturned_id)
    assert int(overturned["state"]) == 4  # corrected
    assert bytes(overturned["winning"]) == check.digest


def test_a_corrected_round_is_checked_against_its_correction(indexed: Indexed) -> None:
    m, d = indexed.m, indexed.disputed
    job_id = d.job.job_id
    report = verify_job(m.market, m.store, job_id)
    assert report.ok, [x.describe() for x in report.mismatches]
    assert report.status == "settled"
    assert [(r.round, r.corrected, r.ok) for r in report.rounds] == [
        (1, False, True),
        (2, True, True),
    ]
    r2 = report.rounds[1]
    fixed = m.market.corrections(job_id)[2]
    assert r2.digest_posted == "0x" + _digest(job_id, fixed).hex() == "0x" + d.round2.digest.hex()
    assert r2.reasons_posted[VICTIM] == Reason.ACCEPTED  # the result of record, not the lie
    # verify_round of the corrected round now matches (the correction is the result of record)
    again = verify_round(m.market, m.store, job_id, 2)
    assert again.matches and again.corrected and again.digest == d.round2.digest
    # settlement: the reversed slash no longer counts, rewards follow the corrected scores
    assert int(m.market.job(job_id).slashedPool) == 0
    for t in d.job.trainers:
        assert report.payouts[t]["reward_wei"] == report.payouts[t]["expected_wei"] > 0


# -- what cannot be verified (yet) --------------------------------------------------------------
def test_a_round_whose_chunk_is_not_revealed_cannot_be_verified_yet(indexed: Indexed) -> None:
    m, job = indexed.m, indexed.pending
    report = verify_job(m.market, m.store, job.job_id)
    assert report.ok and report.rounds == [] and report.chunks_revealed == []
    (u,) = report.unverified
    assert u.round == 1 and u.describe() == (
        "round 1: cannot verify yet: its validation chunk is not revealed yet"
    )
    with pytest.raises(CannotVerify, match="not revealed yet"):
        verify_round(m.market, m.store, job.job_id, 1)
    with pytest.raises(CannotVerify, match="not posted"):
        verify_round(m.market, m.store, job.job_id, 2)


class DownStore:
    """The auditor's own store, unreachable."""

    def put(self, data, progress=None):
        raise StorageUnavailable("connection refused")

    def get(self, cid, progress=None):
        raise StorageUnavailable("connection refused")

    def has(self, cid):
        raise StorageUnavailable("connection refused")

    def cid_of(self, data):
        raise StorageUnavailable("connection refused")


class FlakyStore(LocalStore):
    """A store that is up for the validation chunks and the spec, down for updates and models."""

    def __init__(self, inner: LocalStore, up: set[str]) -> None:
        super().__init__(inner.root)
        self.up = up

    def get(self, cid, progress=None):
        if cid not in self.up:
            raise StorageUnavailable("connection reset")
        return super().get(cid, progress)


def test_an_outage_of_the_auditors_store_never_accuses_the_aggregator(indexed: Indexed) -> None:
    m, job = indexed.m, indexed.honest
    with pytest.raises(CannotVerify, match="unreachable"):
        verify_round(m.market, DownStore(), job.job_id, 1)
    up = {cid for _, cid in m.market.validation_chunks(job.job_id).values()}
    up.add(m.market.spec_pointer(job.job_id)[1])
    flaky = FlakyStore(m.store, up)
    with pytest.raises(CannotVerify, match="cannot verify"):
        verify_round(m.market, flaky, job.job_id, 2)
    report = verify_job(m.market, flaky, job.job_id)
    assert not report.ok and report.mismatches == [] and report.rounds == []
    assert report.error is not None and "cannot verify" in report.error


# -- a lying aggregator, unchallenged -----------------------------------------------------------
@dataclass
class Tampered:
    job: Job
    victim: str  # whose round-1 score the aggregator inflated
    posted_model: bytes  # the (wrong) model hash posted in the last round
    report: VerifyReport


def _bump_a_score(job: Job) -> str:
    pending = job.compute()
    outcomes = list(pending.outcome.outcomes)
    k = next(i for i, o in enumerate(outcomes) if o.reason == Reason.ACCEPTED)
    outcomes[k] = dataclasses.replace(outcomes[k], score_fp=outcomes[k].score_fp + BUMP)
    job.post(
        dataclasses.replace(
            pending, outcome=dataclasses.replace(pending.outcome, outcomes=outcomes)
        )
    )
    return job.trainers[k]


def _wrong_model(job: Job) -> bytes:
    """Post a slightly different (but stored) model: only its hash gives it away."""
    pending = job.compute()
    tensors = codec.decode(pending.outcome.next_model_blob, template_of(job.spec.model))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + np.float32(1e-3)
    bad = codec.encode(tensors)
    outcome = dataclasses.replace(pending.outcome, next_model_blob=bad)
    return job.post(dataclasses.replace(pending, outcome=outcome)).model_hash


@pytest.fixture(scope="module")
def tampered(tmp_path_factory) -> Tampered:
    """A job whose aggregator lies, unchallenged: +BUMP on one score in round 1, a wrong model
    in round 2."""
    m = new_market(tmp_path_factory.mktemp("tampered") / "store")
    job = new_job(m, trainers=3, rounds=2, seed=3)
    job.train(1)
    victim = _bump_a_score(job)
    job.reveal_chunk(1)
    job.wait_final()
    job.train(2)
    model = _wrong_model(job)
    job.reveal_chunk(2)
    job.wait_final()
    job.settle()
    report = verify_job(m.market, m.store, job.job_id)
    return Tampered(job, victim, model, report)


def test_verify_catches_a_tampered_score(tampered: Tampered) -> None:
    report = tampered.report
    assert not report.ok
    r1 = report.rounds[0]
    assert not r1.ok and not r1.matches
    (m,) = r1.mismatches
    assert (m.round, m.trainer, m.field) == (1, tampered.victim, "score")
    assert m.posted == m.recomputed + BUMP
    assert f"trainer {tampered.victim}: score posted {m.posted}" in m.describe()


def test_verify_catches_a_wrong_model_hash(tampered: Tampered) -> None:
    report = tampered.report
    r2 = report.rounds[1]
    assert not r2.ok and not r2.matches
    (m,) = r2.mismatches
    assert (m.round, m.trainer, m.field) == (2, None, "model hash")
    assert m.posted == "0x" + tampered.posted_model.hex() != m.recomputed
    # the payouts follow the scores of record, as the contract must: no settlement mismatch
    assert report.settlement == []


def test_the_verify_command_exits_non_zero_on_a_mismatch(tampered: Tampered, monkeypatch) -> None:
    from typer.testing import CliRunner

    import backend.cli.audit as cli_audit
    from backend.cli.main import app

    monkeypatch.setattr(cli_audit, "_market", lambda settings: tampered.job.market)
    store = str(tampered.job.m.store.root)
    job_id = str(tampered.job.job_id)
    result = CliRunner().invoke(app, ["audit", "verify", job_id, "--store-dir", store])
    assert result.exit_code == 1, result.output
    assert f"trainer {tampered.victim}: score posted" in result.stdout.replace("\n", "")
    assert "model hash posted" in result.stdout.replace("\n", "")
    assert result.stderr.startswith("error:") and "2 mismatch(es)" in result.stderr
    unknown = CliRunner().invoke(app, ["audit", "verify", "99", "--store-dir", store])
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error:"), unknown.output
    assert "does not exist" in unknown.stderr


def test_the_verify_command_says_what_cannot_be_verified_yet(indexed: Indexed, monkeypatch) -> None:
    from typer.testing import CliRunner

    import backend.cli.audit as cli_audit
    from backend.cli.main import app

    monkeypatch.setattr(cli_audit, "_market", lambda settings: indexed.m.market)
    store = str(indexed.m.store.root)
    job_id = str(indexed.pending.job_id)
    result = CliRunner().invoke(app, ["audit", "verify", job_id, "--store-dir", store])
    assert result.exit_code == 0, result.output
    out = result.stdout.replace("\n", " ")
    assert "round 1: cannot verify yet: its validation chunk is not revealed yet" in out
    assert "1 not verifiable yet" in out
