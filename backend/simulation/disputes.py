"""The demo's disputes: in-process verifier services, a lying aggregator and a frivolous
challenger, played through the same code as `fedmarket verifier serve`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator.round.driver import PendingRound
from backend.chain.base import Chain
from backend.chain.market import MarketClient, round_digest
from backend.core.errors import Reason
from backend.core.jobstatus import JobStatus
from backend.core.units import ETHER
from backend.storage import ContentStore
from verifier import VerifierJournal, VerifierService
from verifier.disputes import dispute_rows

VERIFIERS = 4  # a challenger plus a committee of three drawn from the others
VERIFIER_BOND = 1 * ETHER
MAX_PASSES = 20


def enlist_verifiers(
    chain: Chain, market: MarketClient, store: ContentStore, journal_dir: Path
) -> list[VerifierService]:
    """Fund and register the demo's verifiers, each with its own service and journal."""
    services = []
    for i in range(VERIFIERS):
        account = chain.new_funded_account(VERIFIER_BOND + ETHER)
        market.register_verifier(account, VERIFIER_BOND)
        journal = VerifierJournal.open(journal_dir / f"verifier-{i}.json")
        services.append(VerifierService(market, store, account, journal))
    return services


def lie(pending: PendingRound, victim: str) -> PendingRound:
    """The lying aggregator's post: `victim`, an honest trainer, flagged as an outlier (score 0,
    slashed), the rest as computed."""
    outcomes = [
        dataclasses.replace(o, reason=Reason.OUTLIER, detail="(a lie)", score=0.0, score_fp=0)
        if o.trainer == victim
        else o
        for o in pending.outcome.outcomes
    ]
    outcome = dataclasses.replace(pending.outcome, outcomes=outcomes)
    return dataclasses.replace(pending, outcome=outcome)


def frivolous_challenge(verifier: VerifierService, job_id: int, round_: int) -> None:
    """Challenge an honest round with a wrong digest (a score changed by one unit)."""
    post = next(p for p in verifier.market.round_posts(job_id) if p.round == round_)
    scores = list(post.scores)
    scores[0] += 1
    wrong = round_digest(job_id, round_, post.model_hash, scores, post.reasons)
    verifier.challenge_round(job_id, round_, wrong)


def settle_disputes(chain: Chain, market: MarketClient, verifiers: list[VerifierService]) -> None:
    """Let the verifier services work until no dispute is open: every service takes a pass; a
    pass in which nobody acts moves the clock to the dispute's next deadline."""
    for _ in range(MAX_PASSES):
        acted = [a for v in verifiers for a in v.step()]
        open_ = [
            r for r in dispute_rows(market) if r["outcome"].startswith(("voting", "overturned ("))
        ]
        if not open_:
            return
        if not acted:
            d = market.dispute(open_[0]["dispute"])
            now = chain.now()
            deadline = min(t for t in (int(d["commitEnd"]), int(d["revealEnd"])) if t >= now)
            chain.advance_time(deadline - now + 1)
    raise RuntimeError("the demo's dispute did not settle")


def job_over(market: MarketClient, job_id: int) -> bool:
    """A correction ends the job (abandoned, or settled if it was the last round)."""
    return market.job(job_id).status_enum in (JobStatus.ABANDONED, JobStatus.SETTLED)


def dispute_summary(market: MarketClient, job_id: int) -> list[dict[str, Any]]:
    """The `--json` summary's "disputes" list."""
    return [
        {
            "round": r["round"],
            "outcome": r["outcome"],
            "aggregator_bond_slashed_wei": r["aggregator_bond_slashed_wei"],
            "challenger": r["challenger"],
        }
        for r in dispute_rows(market, job_id)
    ]


@dataclass
class Conservation:
    """ETH conservation over the whole market, to the wei."""

    contract_wei: int
    vault_wei: int
    job_unpaid_wei: int

    @property
    def holds(self) -> bool:
        return self.contract_wei == self.vault_wei + self.job_unpaid_wei


def conservation(market: MarketClient, job_id: int, accounts: list[str]) -> Conservation:
    """contract balance == Σ vault balances (stakes and bonds) + what the job has not paid out
    (reward + slashed pool + forfeit pool − claims − the owner's refund, if claimed)."""
    vault = sum(market.account_of(a)["balance"] for a in accounts)
    job = market.job(job_id)
    paid = sum(int(c["reward"]) for c in market.claims(job_id))
    refund = sum(int(e["amount"]) for e in market.job_events(job_id, "RefundClaimed"))
    held = int(job.reward) + int(job.slashedPool) + int(job.forfeitPool)
    return Conservation(market.chain.balance(market.address), vault, held - paid - refund)
