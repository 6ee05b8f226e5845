"""A trainer's standing on a market: stake, reliability, and the jobs it joined."""

from __future__ import annotations

from typing import Any

from backend.chain.market import MarketClient
from backend.core.errors import FedMarketError
from backend.core.units import PPM, score_value


def joined_jobs(market: MarketClient, address: str) -> list[dict[str, Any]]:
    """Every job `address` joined: status, round, score, and the reward (None until known)."""
    jobs = []
    for job_id in range(1, market.next_job_id()):
        record = market.participant(job_id, address)
        if not record["joined"]:
            continue
        job = market.job(job_id)
        try:
            reward = market.reward_of(job_id, address)
        except FedMarketError:  # not settled yet: there is no reward to tell
            reward = None
        jobs.append(
            {
                "job_id": job_id,
                "status": job.status_enum.label,
                "round": int(job.currentRound),
                "score_total": score_value(record["totalScore"]),
                "claimed": bool(record["claimed"]),
                "reward_wei": reward,
            }
        )
    return jobs


def trainer_status(market: MarketClient, address: str) -> dict[str, Any]:
    """The `trainer status --json` record of `address`."""
    account = market.account_of(address)
    rel = market.reliability_of(address)
    return {
        "address": address,
        "wallet_wei": market.chain.balance(address),
        "stake_wei": account["balance"],
        "locked_wei": account["locked"],
        "registered": account["registered"],
        "reliability": rel.ppm / PPM,
        "jobs_rated": rel.jobs,
        "reliability_weight_wei": rel.weight,
        "jobs": joined_jobs(market, address),
    }
