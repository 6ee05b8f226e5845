"""One gather for the driver and the auditor: a reveal gets the same reason from both."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import aggregator.round.driver as driver_module
import backend.audit.verify as verify_module
from aggregator.round.driver import RoundDriver, StoreOutage
from aggregator.round.gather import FetchPolicy, gather
from aggregator.round.replay import replay
from backend.chain.market import Reveal, RoundEntry
from backend.core.errors import Reason, StorageUnavailable
from backend.core.jobspec import JobSpec
from backend.storage import LocalStore, sha256_bytes

JOB, ROUND = 1, 1
HONEST, MISMATCHED, GONE, SILENT = (f"0x{k:040x}" for k in (1, 2, 3, 4))


@dataclass
class FakeMarket:
    """Just the reads `gather` makes: this round's entries."""

    entries: list[RoundEntry]

    def round_entries(self, job_id: int, round_: int) -> list[RoundEntry]:
        assert (job_id, round_) == (JOB, ROUND)
        return self.entries


def _reveal(trainer: str, cid: str, content_hash: bytes) -> Reveal:
    return Reveal(trainer, content_hash, cid, block_number=1, log_index=0)


@pytest.fixture
def setup(tmp_path, monkeypatch) -> tuple[FakeMarket, LocalStore, RoundDriver]:
    store = LocalStore(tmp_path / "store")
    honest_cid = store.put(b"honest update")
    other_cid = store.put(b"swapped content")
    entries = [
        RoundEntry(HONEST, _reveal(HONEST, honest_cid, sha256_bytes(b"honest update")), 0),
        # revealed a cid whose content is not what it committed to
        RoundEntry(MISMATCHED, _reveal(MISMATCHED, other_cid, sha256_bytes(b"committed")), 1),
        RoundEntry(GONE, _reveal(GONE, "bafkNOTSTORED", sha256_bytes(b"gone")), 2),
        RoundEntry(SILENT, None, 3),
    ]
    market = FakeMarket(entries)
    monkeypatch.setattr(driver_module, "fetch_job_spec", lambda *a: JobSpec())
    driver = RoundDriver(market, store, None, JOB, None, fetch_timeout_s=0.0)  # type: ignore[arg-type]
    return market, store, driver


def _reasons(subs) -> dict[str, Reason]:
    return {s.trainer: s.reason for s in subs}


EXPECTED = {
    HONEST: Reason.ACCEPTED,
    MISMATCHED: Reason.HASH_MISMATCH,
    GONE: Reason.UNAVAILABLE,
    SILENT: Reason.MISSING,
}


def test_driver_and_auditor_classify_reveals_identically(setup) -> None:
    market, store, driver = setup
    live = driver.gather(ROUND)
    assert _reasons(live) == EXPECTED
    # what the honest aggregator posts is what both replays (driver rebuild, auditor) derive
    posted = {t: int(r) for t, r in EXPECTED.items()}
    rebuilt = driver.gather(ROUND, posted)
    audited = gather(market, store, JOB, ROUND, posted)  # what verify_job's replay calls
    assert _reasons(rebuilt) == _reasons(audited) == EXPECTED
    assert [s.blob for s in rebuilt] == [s.blob for s in audited] == [s.blob for s in live]
    # and both go through the one replay
    assert verify_module.replay is replay is driver_module.replay


def test_a_posted_hash_mismatch_is_rederived_not_trusted(setup) -> None:
    market, store, driver = setup
    lie = {HONEST: int(Reason.HASH_MISMATCH)}  # slashable: an aggregator must not just claim it
    for subs in (driver.gather(ROUND, lie), gather(market, store, JOB, ROUND, lie)):
        assert _reasons(subs)[HONEST] == Reason.ACCEPTED
        assert subs[0].blob == b"honest update"


def test_a_posted_unavailable_is_taken_as_posted(setup) -> None:
    market, store, driver = setup
    posted = {HONEST: int(Reason.UNAVAILABLE)}  # availability at posting time cannot be re-checked
    for subs in (driver.gather(ROUND, posted), gather(market, store, JOB, ROUND, posted)):
        assert _reasons(subs)[HONEST] == Reason.UNAVAILABLE
        assert subs[0].blob is None


def test_a_store_down_for_every_update_is_an_outage(setup) -> None:
    market, _, driver = setup

    class DownStore:
        def get(self, cid: str, progress: object = None) -> bytes:
            raise StorageUnavailable("connection refused")

    driver.store = DownStore()  # type: ignore[assignment]
    with pytest.raises(StoreOutage):
        driver.gather(ROUND)
    with pytest.raises(StoreOutage):
        gather(market, DownStore(), JOB, ROUND, policy=FetchPolicy())  # type: ignore[arg-type]


def test_the_auditors_own_partial_outage_is_an_error_not_a_recomputed_reason(setup) -> None:
    """A store down for one update must not turn into "posted 0, recomputed 2" (which would
    accuse the aggregator): under the auditor's strict policy the outage is raised."""
    market, store, _ = setup

    class FlakyStore:
        def get(self, cid: str, progress: object = None) -> bytes:
            if cid == market.entries[0].reveal.cid:
                raise StorageUnavailable("connection reset")
            return store.get(cid)

    lenient = gather(market, FlakyStore(), JOB, ROUND)  # type: ignore[arg-type]
    assert _reasons(lenient)[HONEST] == Reason.UNAVAILABLE  # the live driver's choice
    with pytest.raises(StorageUnavailable):
        gather(market, FlakyStore(), JOB, ROUND, policy=FetchPolicy(strict=True))  # type: ignore[arg-type]
