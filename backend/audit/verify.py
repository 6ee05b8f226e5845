"""Re-verify a job from public artifacts: every round, every score, every payout.

`verify_job` reads the chain's events and fetches every revealed update, the revealed
validation split and every posted global model from the content store; it re-runs each round
with `aggregator.round.compute.compute_round` and the job's recorded settings (the JobSpec whose
sha256 is on chain), building the submissions exactly as `RoundDriver.gather` does, and
compares scores, reasons and model hashes with what was posted. It then recomputes the
settlement (SPEC.md "Settlement") from the posted scores and compares it with what the
contract paid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aggregator.round.compute import Submission, compute_round
from backend.chain.market import JobStatus, MarketClient
from backend.core.datasets import Dataset, from_npz_bytes
from backend.core.errors import ContentMismatch, ContentNotFound, FedMarketError, Reason
from backend.protocol.fetch import fetch_job_spec, fetch_weights
from backend.storage.stores import ContentStore, fetch_verified, sha256_bytes

HISTORY_ROUNDS = 3  # RoundDriver keeps the decodable updates of the last 3 rounds for replays


class VerifyError(FedMarketError):
    """The job cannot be re-verified at all (unknown job, spec unavailable, ...)."""


@dataclass(frozen=True)
class Mismatch:
    round: int | None  # None: a settlement-level mismatch
    trainer: str | None  # None: a round-level field (model hash)
    field: str
    posted: Any
    recomputed: Any

    def describe(self) -> str:
        where = f"round {self.round}" if self.round is not None else "settlement"
        who = f" trainer {self.trainer}" if self.trainer else ""
        return f"{where}{who}: {self.field} posted {self.posted} but recomputed {self.recomputed}"


@dataclass
class RoundCheck:
    round: int
    ok: bool
    mismatches: list[Mismatch] = field(default_factory=list)
    scores_posted: list[int] = field(default_factory=list)
    scores_recomputed: list[int] = field(default_factory=list)
    reasons_posted: list[int] = field(default_factory=list)
    reasons_recomputed: list[int] = field(default_factory=list)
    model_hash_posted: str = ""
    model_hash_recomputed: str = ""
    validation_loss: float | None = None
    validation_accuracy: float | None = None


@dataclass
class VerifyReport:
    job_id: int
    status: str
    validation_revealed: bool
    trainers: list[str] = field(default_factory=list)
    rounds: list[RoundCheck] = field(default_factory=list)
    settlement: list[Mismatch] = field(default_factory=list)
    payouts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None

    @property
    def mismatches(self) -> list[Mismatch]:
        return [m for r in self.rounds for m in r.mismatches] + list(self.settlement)

    @property
    def ok(self) -> bool:
        return self.error is None and self.validation_revealed and not self.mismatches

    @property
    def rounds_verified(self) -> int:
        return len(self.rounds)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["rounds_verified"] = self.rounds_verified
        d["mismatch_count"] = len(self.mismatches)
        return d


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def validation_of(market: MarketClient, store: ContentStore, job_id: int) -> Dataset | None:
    """The job's validation split if the owner revealed it (ValidationRevealed), else None."""
    pointer = market.validation_reveal(job_id)
    if pointer is None:
        return None
    content_hash, cid = pointer
    return from_npz_bytes(fetch_verified(store, cid, content_hash))


def gather(
    market: MarketClient,
    store: ContentStore,
    job_id: int,
    round_: int,
    posted_reasons: dict[str, int] | None = None,
) -> list[Submission]:
    """The round's submissions exactly as `RoundDriver.gather` builds them.

    An update the aggregator posted as UNAVAILABLE (not slashable: it could not fetch it) is
    taken as such — availability at posting time cannot be re-checked later. Everything else
    (missing reveal, hash mismatch, decodability, ...) is re-derived from public artifacts.
    """
    out: list[Submission] = []
    for entry in market.round_entries(job_id, round_):
        trainer, rev, order = entry.trainer, entry.reveal, entry.commit_order
        if rev is None:
            out.append(Submission(trainer, None, Reason.MISSING, "no reveal this round", order))
            continue
        if (posted_reasons or {}).get(trainer) == Reason.UNAVAILABLE:
            out.append(Submission(trainer, None, Reason.UNAVAILABLE, "as posted on chain", order))
            continue
        try:
            blob = fetch_verified(store, rev.cid, rev.content_hash)
        except ContentNotFound as exc:
            out.append(Submission(trainer, None, Reason.UNAVAILABLE, str(exc), order))
            continue
        except ContentMismatch as exc:
            out.append(Submission(trainer, None, Reason.HASH_MISMATCH, str(exc), order))
            continue
        out.append(Submission(trainer, blob, Reason.ACCEPTED, "", order))
    return out


def expected_payouts(
    reward: int,
    slashed_pool: int,
    totals: dict[str, int],
    status: JobStatus,
    posted: int,
    rounds: int,
) -> tuple[dict[str, int], int, int]:
    """(reward per trainer, owner refund, reward pool) by SPEC.md's settlement formula."""
    if status == JobStatus.CANCELLED:
        return dict.fromkeys(totals, 0), reward, 0
    if status == JobStatus.ABANDONED:
        pool = reward * posted // rounds + slashed_pool
    else:
        pool = reward + slashed_pool
    total = sum(totals.values())
    if total == 0:
        return dict.fromkeys(totals, 0), reward + slashed_pool, pool
    rewards = {t: pool * s // total for t, s in totals.items()}
    return rewards, reward + slashed_pool - sum(rewards.values()), pool


def verify_job(market: MarketClient, store: ContentStore, job_id: int) -> VerifyReport:
    """Re-run every posted round of `job_id` and compare with the chain. See module doc."""
    created = market.job_created(job_id)
    if not created:
        raise VerifyError(f"job {job_id} does not exist on this chain (no JobCreated event)")
    job = market.job(job_id)
    status = JobStatus(int(job.status))
    participants = market.participants(job_id)
    report = VerifyReport(job_id, status.name.lower(), False, participants)
    try:
        validation = validation_of(market, store, job_id)
    except FedMarketError as exc:
        report.error = f"the revealed validation split cannot be read: {exc}"
        return report
    if validation is None:
        report.error = (
            f"job {job_id}: the owner has not revealed the validation split yet "
            "(no ValidationRevealed event); rounds cannot be re-verified before it is"
        )
        return report
    report.validation_revealed = True
    try:
        spec = fetch_job_spec(market, store, job_id)
    except FedMarketError as exc:
        report.error = f"the job spec cannot be fetched: {exc}"
        return report
    params = created["params"]
    model_hash, model_cid = bytes(params["initialModelHash"]), str(params["initialModelCid"])

    history: list[np.ndarray] = []
    momentum: np.ndarray | None = None
    posts = market.round_posts(job_id)
    for post in posts:
        check = RoundCheck(post.round, True)
        check.scores_posted, check.reasons_posted = list(post.scores), list(post.reasons)
        check.model_hash_posted = _hex(post.model_hash)
        try:
            weights = fetch_weights(store, spec, model_hash, model_cid)
        except FedMarketError as exc:
            check.ok = False
            check.mismatches.append(
                Mismatch(post.round, None, "input model", _hex(model_hash), f"unavailable: {exc}")
            )
            report.rounds.append(check)
            break
        posted_reasons = dict(zip(participants, post.reasons, strict=False))
        subs = gather(market, store, job_id, post.round, posted_reasons)
        previous = np.concatenate(history[-HISTORY_ROUNDS:]) if history else None
        outcome = compute_round(spec, weights, subs, validation, previous, momentum)
        history.append(outcome.accepted_updates)
        momentum = outcome.momentum
        check.scores_recomputed, check.reasons_recomputed = outcome.scores_fp, outcome.reasons
        check.model_hash_recomputed = _hex(sha256_bytes(outcome.next_model_blob))
        check.validation_loss = float(outcome.loss_after)
        check.validation_accuracy = float(outcome.accuracy_after)
        for k, trainer in enumerate(participants):
            posted_r = post.reasons[k] if k < len(post.reasons) else None
            posted_s = post.scores[k] if k < len(post.scores) else None
            if posted_r != outcome.reasons[k]:
                check.mismatches.append(
                    Mismatch(post.round, trainer, "reason", posted_r, outcome.reasons[k])
                )
            if posted_s != outcome.scores_fp[k]:
                check.mismatches.append(
                    Mismatch(post.round, trainer, "score", posted_s, outcome.scores_fp[k])
                )
        if check.model_hash_posted != check.model_hash_recomputed:
            check.mismatches.append(
                Mismatch(
                    post.round,
                    None,
                    "model hash",
                    check.model_hash_posted,
                    check.model_hash_recomputed,
                )
            )
        elif not store.has(post.model_cid):
            check.mismatches.append(
                Mismatch(post.round, None, "model content", post.model_cid, "not in the store")
            )
        check.ok = not check.mismatches
        report.rounds.append(check)
        model_hash, model_cid = post.model_hash, post.model_cid

    _check_settlement(market, job_id, job, status, participants, posts, report)
    return report


def _check_settlement(
    market: MarketClient,
    job_id: int,
    job: Any,
    status: JobStatus,
    participants: list[str],
    posts: list[Any],
    report: VerifyReport,
) -> None:
    """Slashes, pools, rewards and refund against the formulas in SPEC.md."""
    stake = int(job.stakeRequired)
    bps = int(job.slashBps)
    locked = dict.fromkeys(participants, stake)
    expected_slashes: list[tuple[int, str, int]] = []
    totals = dict.fromkeys(participants, 0)
    for post in posts:
        for k, trainer in enumerate(participants):
            if k >= len(post.scores):
                continue
            totals[trainer] += int(post.scores[k])
            if Reason(int(post.reasons[k])).slashable:
                amount = locked[trainer] * bps // 10_000
                locked[trainer] -= amount
                expected_slashes.append((post.round, trainer, amount))
    actual = sorted(
        (int(e["round"]), str(e["trainer"]), int(e["amount"])) for e in market.slashes(job_id)
    )
    if sorted(expected_slashes) != actual:
        report.settlement.append(Mismatch(None, None, "slashes", actual, sorted(expected_slashes)))
    slashed_pool = sum(a for _, _, a in expected_slashes)
    if int(job.slashedPool) != slashed_pool:
        report.settlement.append(
            Mismatch(None, None, "slashedPool", int(job.slashedPool), slashed_pool)
        )
    if status not in (JobStatus.SETTLED, JobStatus.ABANDONED, JobStatus.CANCELLED):
        return
    reward = int(job.reward)
    rewards, refund, pool = expected_payouts(
        reward, slashed_pool, totals, status, len(posts), int(job.rounds)
    )
    claimed = {str(e["trainer"]): int(e["reward"]) for e in market.claims(job_id)}
    for trainer in participants:
        paid = claimed[trainer] if trainer in claimed else market.reward_of(job_id, trainer)
        report.payouts[trainer] = {
            "total_score": totals[trainer],
            "reward_wei": paid,
            "expected_wei": rewards[trainer],
            "claimed": int(trainer in claimed),
        }
        if paid != rewards[trainer]:
            report.settlement.append(Mismatch(None, trainer, "reward", paid, rewards[trainer]))
    if status != JobStatus.CANCELLED and int(job.rewardPool) != pool:
        report.settlement.append(Mismatch(None, None, "rewardPool", int(job.rewardPool), pool))
    if int(job.ownerRefund) != refund:
        report.settlement.append(Mismatch(None, None, "ownerRefund", int(job.ownerRefund), refund))
