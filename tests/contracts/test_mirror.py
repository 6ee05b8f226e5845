"""The Python tables mirror the contract's: reason codes, what is slashable, job status, phase.

One table each lives in `backend.core` (used by the aggregator, the indexer, the API and the
CLI); this test reads the contract's constants (FedMarketBase.sol, which the market and its
settlement module share) so a change on either side fails here first."""

from __future__ import annotations

import re
from pathlib import Path

from backend.core.errors import Reason
from backend.core.jobstatus import JobStatus, Phase

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
SOURCE = (CONTRACTS / "FedMarketBase.sol").read_text()
MARKET = (CONTRACTS / "FedMarket.sol").read_text()


def _constants(prefix: str) -> dict[str, int]:
    found = re.findall(rf"uint8 internal constant ({prefix}\w*) = (\d+);", SOURCE)
    return {name.removeprefix(prefix): int(value) for name, value in found}


def test_job_status_codes_match_the_contract() -> None:
    assert _constants("STATUS_") == {s.name: int(s) for s in JobStatus}


def test_reason_codes_and_slashable_range_match_the_contract() -> None:
    reasons = _constants("REASON_")
    assert reasons == {
        "ACCEPTED": int(Reason.ACCEPTED),
        "MISSING": int(Reason.MISSING),
        "UNAVAILABLE": int(Reason.UNAVAILABLE),
    }
    bounds = dict(re.findall(r"uint8 internal constant (\w+_REASON) = (\d+);", SOURCE))
    assert int(bounds["MAX_REASON"]) == max(Reason)
    assert int(bounds["FIRST_SLASHABLE_REASON"]) == min(Reason.slashable_codes())
    assert Reason.slashable_codes() == {r for r in Reason if r >= Reason.HASH_MISMATCH}


def test_phase_codes_match_the_contracts_documentation() -> None:
    doc = re.search(r"@notice Phase of job `jobId`: (.+?)\n\s*///(.+?)\n", MARKET)
    assert doc, "FedMarket.sol no longer documents phaseOf()"
    text = " ".join(" ".join(doc.groups()).split())
    codes = [int(k) for k in re.findall(r"(?:^|· )(\d) ", text)]
    assert codes == [int(p) for p in Phase]
