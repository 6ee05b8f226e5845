"""Re-verify a job from public artifacts: every round, every score, every payout.

`verify_job` reads the chain's events and re-runs every posted round with the replay the
aggregator itself uses after a restart (`aggregator.round.replay`: the revealed updates
gathered by `aggregator.round.gather`, the revealed validation split, every posted global model
and the job's recorded settings, the JobSpec whose sha256 is on chain), and compares scores,
reasons and model hashes with what was posted. It then recomputes the settlement (SPEC.md
"Settlement", `backend.audit.settlement`) from the posted scores and compares it with what the
contract paid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aggregator.round.gather import FetchPolicy
from aggregator.round.replay import InputModelUnavailable, ReplayedRound, replay
from backend.audit.settlement import expected_payouts, expected_slashes, score_totals
from backend.chain.market import JobStatus, MarketClient, RoundPost
from backend.core.datasets import Dataset, from_npz_bytes
from backend.core.errors import FedMarketError
from backend.core.jobspec import JobSpec
from backend.protocol.fetch import fetch_job_spec
from backend.storage import ContentStore, fetch_verified

__all__ = ["Mismatch", "RoundCheck", "VerifyError", "VerifyReport", "validation_of", "verify_job"]


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


def verify_job(market: MarketClient, store: ContentStore, job_id: int) -> VerifyReport:
    """Re-run every posted round of `job_id` and compare with the chain. See module doc."""
    created = market.job_created(job_id)
    if not created:
        raise VerifyError(f"job {job_id} does not exist on this chain (no JobCreated event)")
    job = market.job(job_id)
    status = JobStatus(int(job.status))
    participants = market.participants(job_id)
    report = VerifyReport(job_id, status.label, False, participants)
    loaded = _load_inputs(market, store, job_id, report)
    if loaded is None:
        return report
    spec, validation = loaded
    posts = market.round_posts(job_id)
    report.rounds = _check_rounds(market, store, job_id, spec, validation, posts)
    _check_settlement(market, job_id, job, status, participants, posts, report)
    return report


def _load_inputs(
    market: MarketClient, store: ContentStore, job_id: int, report: VerifyReport
) -> tuple[JobSpec, Dataset] | None:
    """The job spec and revealed validation split, or None with `report.error` saying why."""
    try:
        validation = validation_of(market, store, job_id)
    except FedMarketError as exc:
        report.error = f"the revealed validation split cannot be read: {exc}"
        return None
    if validation is None:
        report.error = (
            f"job {job_id}: the owner has not revealed the validation split yet "
            "(no ValidationRevealed event); rounds cannot be re-verified before it is"
        )
        return None
    report.validation_revealed = True
    try:
        spec = fetch_job_spec(market, store, job_id)
    except FedMarketError as exc:
        report.error = f"the job spec cannot be fetched: {exc}"
        return None
    return spec, validation


def _check_rounds(
    market: MarketClient,
    store: ContentStore,
    job_id: int,
    spec: JobSpec,
    validation: Dataset,
    posts: list[RoundPost],
) -> list[RoundCheck]:
    """One check per posted round, up to the first whose input model cannot be fetched."""
    participants = market.participants(job_id)
    checks: list[RoundCheck] = []
    try:
        strict = FetchPolicy(strict=True)  # our store down: "cannot verify", not a mismatch
        for step in replay(market, store, spec, job_id, validation, strict, posts):
            checks.append(_round_check(step, participants, store))
    except InputModelUnavailable as exc:
        check = _posted_check(exc.post)
        check.ok = False
        check.mismatches.append(
            Mismatch(
                exc.post.round,
                None,
                "input model",
                _hex(exc.model_hash),
                f"unavailable: {exc.cause}",
            )
        )
        checks.append(check)
    return checks


def _posted_check(post: RoundPost) -> RoundCheck:
    """A check holding what was posted, nothing recomputed yet."""
    check = RoundCheck(post.round, True)
    check.scores_posted, check.reasons_posted = list(post.scores), list(post.reasons)
    check.model_hash_posted = _hex(post.model_hash)
    return check


def _round_check(step: ReplayedRound, participants: list[str], store: ContentStore) -> RoundCheck:
    """Compare one recomputed round with its post: reasons, scores, model hash and content."""
    post, outcome = step.post, step.outcome
    check = _posted_check(post)
    check.scores_recomputed, check.reasons_recomputed = outcome.scores_fp, outcome.reasons
    check.model_hash_recomputed = _hex(step.model_hash)
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
                post.round, None, "model hash", check.model_hash_posted, check.model_hash_recomputed
            )
        )
    elif not store.has(post.model_cid):
        check.mismatches.append(
            Mismatch(post.round, None, "model content", post.model_cid, "not in the store")
        )
    check.ok = not check.mismatches
    return check


def _check_settlement(
    market: MarketClient,
    job_id: int,
    job: Any,
    status: JobStatus,
    participants: list[str],
    posts: list[RoundPost],
    report: VerifyReport,
) -> None:
    """Slashes, pools, rewards and refund against the formulas in `backend.audit.settlement`."""
    slashes = sorted(
        expected_slashes(participants, posts, int(job.stakeRequired), int(job.slashBps))
    )
    actual = sorted(
        (int(e["round"]), str(e["trainer"]), int(e["amount"])) for e in market.slashes(job_id)
    )
    if slashes != actual:
        report.settlement.append(Mismatch(None, None, "slashes", actual, slashes))
    slashed_pool = sum(a for _, _, a in slashes)
    if int(job.slashedPool) != slashed_pool:
        report.settlement.append(
            Mismatch(None, None, "slashedPool", int(job.slashedPool), slashed_pool)
        )
    if status not in (JobStatus.SETTLED, JobStatus.ABANDONED, JobStatus.CANCELLED):
        return
    totals = score_totals(participants, posts)
    rewards, refund, pool = expected_payouts(
        int(job.reward), slashed_pool, totals, status, len(posts), int(job.rounds)
    )
    _check_rewards(market, job_id, participants, totals, rewards, report)
    if status != JobStatus.CANCELLED and int(job.rewardPool) != pool:
        report.settlement.append(Mismatch(None, None, "rewardPool", int(job.rewardPool), pool))
    if int(job.ownerRefund) != refund:
        report.settlement.append(Mismatch(None, None, "ownerRefund", int(job.ownerRefund), refund))


def _check_rewards(
    market: MarketClient,
    job_id: int,
    participants: list[str],
    totals: dict[str, int],
    rewards: dict[str, int],
    report: VerifyReport,
) -> None:
    """Each trainer's paid (claimed or claimable) reward against the expected one."""
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
