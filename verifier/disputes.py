"""Disputes as people read them: one row per dispute, from the court's and the market's events."""

from __future__ import annotations

from typing import Any

from backend.chain.market import MarketClient

# DisputeCourt states -> words.
STATE_WORDS = {
    1: "voting",
    2: "upheld",
    3: "overturned (awaiting the correct result)",
    4: "overturned",
    5: "no decision",
    6: "lapsed (no correct result was posted in time; the round stands)",
}


def dispute_rows(market: MarketClient, job_id: int | None = None) -> list[dict[str, Any]]:
    """Every dispute of `job_id` (or of the market), in order."""
    filters = {} if job_id is None else {"jobId": job_id}
    rows = []
    for entry in market.court_logs("DisputeOpened", **filters):
        a = entry["args"]
        dispute_id, job = int(a["disputeId"]), int(a["jobId"])
        d = market.dispute(dispute_id)
        state = int(d["state"])
        slashed = market.aggregator_bond_slashed(job) if state == 4 else 0
        rows.append(
            {
                "dispute": dispute_id,
                "job": job,
                "round": int(a["round"]),
                "challenger": str(a["challenger"]),
                "committee": [str(m) for m in a["members"]],
                "outcome": STATE_WORDS.get(state, str(state)),
                "aggregator_bond_slashed_wei": slashed,
            }
        )
    return rows
