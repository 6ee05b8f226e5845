""" "Why this reward": one trainer's job explained round by round, from public records only.

Everything comes from the auditor's index of the contract's events (`backend.audit.indexer`):
each round's result of record (reason code and score, or the correction a dispute put in its
place), the TrainerSlashed / SlashReversed events, the settlement and the ReliabilityUpdated
events. Nothing the aggregator keeps to itself (its journal's free-text details) is read: the
`detail` of a round is written here from the record, and says what proves it.

What "share" means, as the contract pays (SPEC.md "Settlement"): a job pays its reward pool by
*total* score, `reward_i = pool · total_i / totalScore`, not round by round. So a round's
`pool_share` is the fraction of the job's pool that round's score earns the trainer,
`score_r,i / totalScore`: the shares of every trainer in a round sum to that round's part of the
pool (`roundTotal / totalScore`), and over all rounds and trainers to 1. `round_share` is the
trainer's part of the round's own total. The reward itself is computed by
`backend.audit.settlement.expected_payouts` (the rule an auditor re-verifies with), and
`pool_part_wei` (the pool times `pool_share`, floored) is indicative: the payout floors the total.

`explain_records` is pure (plain rows in, an `Explanation` out); `load_records` reads the rows
from the index; `explain_trainer` does both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from backend.audit import queries
from backend.audit.schema import slashes_t, submissions_t
from backend.audit.settlement import BPS, Settlement, expected_payouts, expected_slashes
from backend.chain.market import JobStatus, RoundPost
from backend.core.errors import FedMarketError, Reason

__all__ = [
    "REASON_MEANINGS",
    "ExplainError",
    "Explanation",
    "JobRecords",
    "ReliabilityChange",
    "RoundExplanation",
    "SlashExplanation",
    "explain_records",
    "explain_trainer",
    "load_records",
]

FP = 1_000_000  # scores are fixed point: 1e6 = 1.0

#: round -> trainer -> (reason, detail), as re-running the round's checks gives them.
Checked = Mapping[int, Mapping[str, tuple[int, str]]]

#: What each reason code means (SPEC.md "Reason codes"), for people.
REASON_MEANINGS: dict[Reason, str] = {
    Reason.ACCEPTED: "accepted: aggregated and paid by its score",
    Reason.MISSING: "no valid reveal this round (or a late one): scores 0, and each such round "
    "is charged half the cheat slash at settlement",
    Reason.UNAVAILABLE: "the revealed content could not be fetched: scores 0, no slash, left "
    "out of reliability",
    Reason.HASH_MISMATCH: "the content does not match the sha256 revealed on chain",
    Reason.UNDECODABLE: "the content is not a valid safetensors blob",
    Reason.WRONG_SHAPE: "wrong tensor names, shapes or dtypes for the job's model",
    Reason.NON_FINITE: "the update holds NaN or Inf values",
    Reason.TOO_LARGE: "the blob is above the job's size limit",
    Reason.OUTLIER: "flagged as an outlier by the job's robust aggregation rule",
    Reason.COPY: "a copy (or scaled copy) of another trainer's update this round",
    Reason.REPLAY: "a replay of an earlier round's update",
    Reason.NEAR_ZERO: "a near-zero update (free riding)",
}


class ExplainError(FedMarketError):
    """The job is not in the index, or the address did not join it."""


# -- what it returns ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlashExplanation:
    """One TrainerSlashed event against the trainer, and what proves it."""

    round: int  # 0: the settlement's charge for missed rounds
    amount_wei: int
    reason: int
    reason_label: str
    rule: str  # what the reason means
    reversed: bool  # a dispute (or a forfeit) gave the stake back
    tx_hash: str
    block_number: int
    evidence: str


@dataclass(frozen=True)
class RoundExplanation:
    """One round of the job, as it concerns the trainer."""

    round: int
    state: str  # posted | open | voided
    reason: int | None
    reason_label: str | None
    flagged: bool
    meaning: str  # what the reason code means
    detail: str  # this trainer's round, from the record
    score_fp: int | None
    score: float | None
    rank: int | None  # 1 = the round's best score (ties share a rank)
    ranked: int  # how many trainers the round ranks
    best_score_fp: int | None  # the round's best score (reliability's yardstick)
    round_total_fp: int
    round_share: float | None  # score / the round's total score
    pool_share: float | None  # score / the job's total score: the part of the pool it earns
    pool_part_wei: int | None  # pool · pool_share, floored (indicative)
    slash: SlashExplanation | None
    corrected: bool  # a dispute replaced the aggregator's post
    dispute: str | None
    overturned_reason_label: str | None  # what the aggregator had posted, if corrected
    overturned_score_fp: int | None
    content_hash: str | None  # the trainer's revealed update (public)
    cid: str | None
    posted_tx: str | None
    chunk_revealed: bool  # the round's validation chunk is public: anyone can re-run it
    checked_detail: str | None = None  # the checks' own words, re-run from public artifacts


@dataclass(frozen=True)
class ReliabilityChange:
    """A ReliabilityUpdated event of this job for the trainer: before → after."""

    before_ppm: int | None  # None: the trainer's first recorded job
    after_ppm: int
    contribution_ppm: int  # this job's contribution (total score / the best total)
    jobs: int
    weight_wei: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Explanation:
    """A trainer's job: per round, and the totals that decide its reward."""

    job_id: int
    trainer: str
    job_status: str
    rounds_posted: int
    rounds: int
    per_round: list[RoundExplanation]
    total_score_fp: int
    job_total_score_fp: int
    share: float | None  # total score / the job's total score
    pool_wei: int  # the reward pool (settled), or what it would be if the job finished now
    pool_final: bool
    reward_wei: int  # by the settlement rule (what the contract pays or will pay)
    reward_claimed_wei: int | None  # what RewardClaimed paid, once claimed
    claimable_wei: int  # still to claim (0 before settlement or once claimed)
    slashed_wei: int  # net of reversals
    pending_charge_wei: int  # missed-round charge settlement will take (before settlement)
    slashes: list[SlashExplanation]
    reliability: list[ReliabilityChange]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: wei amounts as decimal strings (they exceed 2**53)."""
        return _wei_as_text(asdict(self))


def _wei_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (str(v) if k.endswith("_wei") and v is not None else _wei_as_text(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_wei_as_text(v) for v in value]
    return value


# -- the records it reads -------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRecords:
    """A job's public records as the index holds them (rows as plain dicts)."""

    job: Mapping[str, Any]
    participants: Sequence[Mapping[str, Any]]  # join order
    rounds: Sequence[Mapping[str, Any]]  # round order
    submissions: Sequence[Mapping[str, Any]]
    slashes: Sequence[Mapping[str, Any]]  # the trainer's, in chain order
    reliability_events: Sequence[Mapping[str, Any]]  # the trainer's, every job, chain order


def load_records(engine: Engine, job_id: int, trainer: str) -> JobRecords:
    """The rows `explain_records` needs; ExplainError for an unknown job or a non-participant."""
    job = queries.find_job(engine, job_id)
    if job is None:
        raise ExplainError(f"job {job_id} is not in the index (no JobCreated event for it)")
    address = queries.checksum(trainer)
    with engine.connect() as conn:
        participants = [
            dict(r) for r in conn.execute(queries.payouts_query(job_id)).mappings().all()
        ]
        if address not in {p["trainer"] for p in participants}:
            raise ExplainError(f"{address} did not join job {job_id}")
        rounds = [
            dict(r) for r in conn.execute(queries.rounds_query(job_id, None)).mappings().all()
        ]
        subs = conn.execute(
            select(submissions_t).where(submissions_t.c.job_id == job_id)
        ).mappings()
        slashes = conn.execute(
            select(slashes_t)
            .where(slashes_t.c.job_id == job_id, slashes_t.c.trainer == address)
            .order_by(slashes_t.c.id)
        ).mappings()
        events = conn.execute(queries.events_query("ReliabilityUpdated", None, address)).mappings()
        return JobRecords(
            job=job,
            participants=participants,
            rounds=rounds,
            submissions=[dict(s) for s in subs],
            slashes=[dict(s) for s in slashes],
            reliability_events=[dict(e) for e in events],
        )


def explain_trainer(
    engine: Engine, job_id: int, trainer: str, checked: Checked | None = None
) -> Explanation:
    """The trainer's job explained from the index (see the module docstring)."""
    records = load_records(engine, job_id, trainer)
    return explain_records(records, queries.checksum(trainer), checked)


# -- the explanation (pure) -----------------------------------------------------------------------
def explain_records(rec: JobRecords, trainer: str, checked: Checked | None = None) -> Explanation:
    """`trainer`'s job (checksummed address) explained from its public records; `checked`
    (`backend.audit.verify.recomputed_details`) adds the checks' own words where a round was
    re-run from public artifacts."""
    job = rec.job
    order = [p["trainer"] for p in rec.participants]
    me = next(p for p in rec.participants if p["trainer"] == trainer)
    by_round: dict[int, dict[str, Mapping[str, Any]]] = {}
    for s in rec.submissions:
        by_round.setdefault(int(s["round"]), {})[s["trainer"]] = s
    counted = [r for r in rec.rounds if r["posted"] and not r["voided"]]
    posts = [_post_of(r, order, by_round.get(int(r["round"]), {})) for r in counted]
    totals = {t: int(p["total_score"]) for t, p in zip(order, rec.participants, strict=True)}
    job_total = sum(totals.values())
    status = JobStatus.from_label(str(job["status"]))
    settled = status in (JobStatus.SETTLED, JobStatus.ABANDONED, JobStatus.CANCELLED)
    charges = _pending_charges(job, order, posts, settled)
    settlement = _settlement(rec, status, totals, sum(charges.values()), len(posts))
    pool = int(job["reward_pool_wei"]) if settled and job["reward_pool_wei"] else settlement.pool
    slashes = [_slash(s, rec, job) for s in rec.slashes]
    stand = {s.round: s for s in slashes if not s.reversed and s.round}
    per_round = [
        _round(r, trainer, by_round.get(int(r["round"]), {}), stand.get(int(r["round"])), job)
        for r in rec.rounds
    ]
    per_round = [
        _with_checked(_with_pool(x, job_total, pool), (checked or {}).get(x.round, {}), trainer)
        for x in per_round
    ]
    claimed = bool(me["claimed"])
    reward = settlement.rewards.get(trainer, 0)
    claimed_wei = int(me["reward_wei"]) if claimed and me["reward_wei"] is not None else None
    return Explanation(
        job_id=int(job["job_id"]),
        trainer=trainer,
        job_status=str(job["status"]),
        rounds_posted=len(posts),
        rounds=int(job["rounds"]),
        per_round=per_round,
        total_score_fp=totals[trainer],
        job_total_score_fp=job_total,
        share=totals[trainer] / job_total if job_total else None,
        pool_wei=pool,
        pool_final=settled,
        reward_wei=claimed_wei if claimed_wei is not None else reward,
        reward_claimed_wei=claimed_wei,
        claimable_wei=0 if claimed or not settled else reward,
        slashed_wei=int(me["slashed_wei"]),
        pending_charge_wei=charges.get(trainer, 0),
        slashes=slashes,
        reliability=_reliability(rec.reliability_events, int(job["job_id"])),
        notes=_notes(status, job_total, settled, bool(job["owner_fault"])),
    )


def _post_of(
    row: Mapping[str, Any], order: Sequence[str], subs: Mapping[str, Mapping[str, Any]]
) -> RoundPost:
    """A round of record as the settlement rules take it: scores and reasons in join order."""
    scores = [int(subs.get(t, {}).get("score") or 0) for t in order]
    reasons = [int(subs.get(t, {}).get("reason") or 0) for t in order]
    return RoundPost(int(row["round"]), b"", row["model_cid"] or "", scores, reasons, 0, "")


def _pending_charges(
    job: Mapping[str, Any], order: Sequence[str], posts: Sequence[RoundPost], settled: bool
) -> dict[str, int]:
    """The missed-round charges settlement will take (none once it has: they are slashes)."""
    if settled:
        return {}
    stake, bps = int(job["stake_required_wei"]), int(job["slash_bps"])
    charges = expected_slashes(order, posts, stake, bps, settled=True)
    return {t: amount for round_, t, amount in charges if round_ == 0}


def _settlement(
    rec: JobRecords, status: JobStatus, totals: Mapping[str, int], pending: int, posted: int
) -> Settlement:
    """The payouts by the contract's rule: the settled job's, or (before settlement) what
    finalizing now would pay."""
    job = rec.job
    reward, slashed = int(job["reward_wei"]), int(job["slashed_pool_wei"]) + pending
    terms: dict[str, Any] = {}
    if status == JobStatus.ABANDONED:
        terms = _abandon_terms(rec, posted)
    elif status != JobStatus.CANCELLED:
        status = JobStatus.SETTLED  # a running job, as if finalized now
    return expected_payouts(reward, slashed, totals, status, posted, int(job["rounds"]), **terms)


def _abandon_terms(rec: JobRecords, posted: int) -> dict[str, Any]:
    """Who is at fault, the bond forfeited to the trainers and who revealed in the failed round
    (as `backend.audit.verify` reads them from the chain)."""
    if rec.job["owner_fault"]:
        return {"owner_fault": True}
    failed = posted + 1
    revealers = [
        t["trainer"]
        for t in rec.participants
        if any(
            int(s["round"]) == failed and s["trainer"] == t["trainer"] and s["content_hash"]
            for s in rec.submissions
        )
    ]
    overturned = any(r["corrected"] for r in rec.rounds)
    bond = 0 if overturned else int(rec.job["aggregator_bond_wei"])
    return {"forfeit": bond, "revealers": revealers}


def _rank(score: int, scores: Sequence[int]) -> int:
    """Competition ranking: 1 + how many scored strictly more (ties share a rank)."""
    return 1 + sum(1 for s in scores if s > score)


def _round(
    row: Mapping[str, Any],
    trainer: str,
    subs: Mapping[str, Mapping[str, Any]],
    slash: SlashExplanation | None,
    job: Mapping[str, Any],
) -> RoundExplanation:
    mine = subs.get(trainer, {})
    posted = bool(row["posted"])
    state = "voided" if row["voided"] else "posted" if posted else "open"
    code = mine.get("reason") if posted else None
    scores = [int(s["score"] or 0) for s in subs.values() if s.get("reason") is not None]
    score = int(mine["score"] or 0) if code is not None else None
    round_total = sum(scores)
    reason = Reason(int(code)) if code is not None and code in set(Reason) else None
    overturned = mine.get("overturned_reason") if row["corrected"] else None
    return RoundExplanation(
        round=int(row["round"]),
        state=state,
        reason=None if code is None else int(code),
        reason_label=Reason.label_of(code),
        flagged=queries.is_flagged(code),
        meaning=REASON_MEANINGS[reason] if reason is not None else "",
        detail=_detail(state, reason, score, max(scores, default=0), slash, mine, row, job),
        score_fp=score,
        score=None if score is None else score / FP,
        rank=None if score is None else _rank(score, scores),
        ranked=len(scores),
        best_score_fp=max(scores) if scores else None,
        round_total_fp=round_total,
        round_share=(score / round_total if round_total else 0.0) if score is not None else None,
        pool_share=None,
        pool_part_wei=None,
        slash=slash,
        corrected=bool(row["corrected"]),
        dispute=row["dispute"],
        overturned_reason_label=Reason.label_of(overturned),
        overturned_score_fp=mine.get("overturned_score") if row["corrected"] else None,
        content_hash=mine.get("content_hash"),
        cid=mine.get("cid"),
        posted_tx=row["posted_tx"],
        chunk_revealed=row["chunk_hash"] is not None,
    )


def _with_pool(x: RoundExplanation, job_total: int, pool: int) -> RoundExplanation:
    """The round's part of the job's pool (none for an open or voided round)."""
    if x.score_fp is None or x.state != "posted":
        return x
    share = x.score_fp / job_total if job_total else 0.0
    part = pool * x.score_fp // job_total if job_total else 0
    return replace(x, pool_share=share, pool_part_wei=part)


def _with_checked(
    x: RoundExplanation, checked: Mapping[str, tuple[int, str]], trainer: str
) -> RoundExplanation:
    """The re-run's detail for this trainer, saying so when its reason is not the record's."""
    if x.state != "posted" or trainer not in checked:
        return x
    code, detail = checked[trainer]
    if code != x.reason:
        detail = f"the re-run gives {Reason.label_of(code)}, not the record's: {detail}"
    return replace(x, checked_detail=detail or Reason.label_of(code))


def _detail(
    state: str,
    reason: Reason | None,
    score: int | None,
    best: int,
    slash: SlashExplanation | None,
    mine: Mapping[str, Any],
    row: Mapping[str, Any],
    job: Mapping[str, Any],
) -> str:
    """This trainer's round in one sentence, from the record."""
    if state == "open":
        return "not posted yet"
    if reason is None or score is None:
        return f"unknown reason code {mine.get('reason')}"
    prefix = ""
    if row["corrected"]:
        before = Reason.label_of(mine.get("overturned_reason"))
        was = _fp(mine.get("overturned_score"))
        prefix = f"the aggregator posted {before} (score {was}); a dispute overturned it: "
    if state == "voided":
        return prefix + "voided: the owner withheld the round's validation chunk; it does not count"
    if reason == Reason.ACCEPTED:
        if score >= best:
            return prefix + "accepted: the round's best score"
        return prefix + f"accepted: {_fp(best - score)} below the round's best ({_fp(best)})"
    if reason == Reason.MISSING:
        stake, bps = int(job["stake_required_wei"]), int(job["slash_bps"])
        charge = stake * bps // (2 * BPS)
        return prefix + (
            f"no valid reveal: score 0, and {charge} wei is charged for it at settlement"
        )
    if reason == Reason.UNAVAILABLE:
        return prefix + "content unavailable to the aggregator: score 0, not slashed"
    taken = f"; {_percent_bps(job)} of the stake still locked slashed" if slash is not None else ""
    return prefix + f"flagged {reason.label}: score 0{taken}"


def _percent_bps(job: Mapping[str, Any]) -> str:
    """The job's slashBps as a percentage."""
    return f"{int(job['slash_bps']) / 100:g}%"


def _fp(value: int | None) -> str:
    return "-" if value is None else f"{int(value) / FP:.4f}"


def _slash(s: Mapping[str, Any], rec: JobRecords, job: Mapping[str, Any]) -> SlashExplanation:
    round_, code = int(s["round"]), int(s["reason"])
    reason = Reason(code) if code in set(Reason) else None
    return SlashExplanation(
        round=round_,
        amount_wei=int(s["amount_wei"]),
        reason=code,
        reason_label=Reason.label_of(code) or str(code),
        rule=REASON_MEANINGS[reason] if reason is not None else "",
        reversed=bool(s["reversed"]),
        tx_hash=s["tx_hash"],
        block_number=int(s["block_number"]),
        evidence=_evidence(round_, code, rec, job, s),
    )


def _evidence(
    round_: int, code: int, rec: JobRecords, job: Mapping[str, Any], s: Mapping[str, Any]
) -> str:
    """What proves a slash, in public: the posted reason, the update and the validation chunk."""
    job_id = int(job["job_id"])
    bps = int(job["slash_bps"])
    if round_ == 0:
        missed = sum(
            1
            for x in rec.submissions
            if x["trainer"] == s["trainer"]
            and x.get("reason") == Reason.MISSING
            and _counts(rec, int(x["round"]))
        )
        return (
            f"settlement charge for {missed} round(s) posted with reason 1 (no valid reveal): "
            f"stake × {bps} bps / 2 each, capped at the locked stake"
        )
    row = next((r for r in rec.rounds if int(r["round"]) == round_), {})
    sub = next(
        (x for x in rec.submissions if int(x["round"]) == round_ and x["trainer"] == s["trainer"]),
        {},
    )
    parts = [f"reason {code} posted for round {round_} in tx {row.get('posted_tx') or '?'}"]
    if sub.get("content_hash"):
        parts.append(f"the update is public: sha256 {sub['content_hash']}, cid {sub.get('cid')}")
    if row.get("chunk_hash"):
        parts.append(f"the round's validation chunk is revealed: `fedmarket audit verify {job_id}`")
    else:
        parts.append("the round's validation chunk is not revealed yet (no re-run possible yet)")
    parts.append(f"the slash takes {_percent_bps(job)} of the stake still locked (slashBps {bps})")
    if s["reversed"]:
        parts.append("reversed: a dispute overturned the round and gave the stake back")
    return "; ".join(parts)


def _counts(rec: JobRecords, round_: int) -> bool:
    return any(int(r["round"]) == round_ and r["posted"] and not r["voided"] for r in rec.rounds)


def _reliability(events: Sequence[Mapping[str, Any]], job_id: int) -> list[ReliabilityChange]:
    """This job's ReliabilityUpdated events, each with the value the one before it left."""
    changes: list[ReliabilityChange] = []
    before: int | None = None
    for e in events:
        args = json.loads(e["args"]) if isinstance(e["args"], str) else e["args"]
        after = int(args["reliabilityPpm"])
        if int(e["job_id"]) == job_id:
            changes.append(
                ReliabilityChange(
                    before_ppm=before,
                    after_ppm=after,
                    contribution_ppm=int(args["contributionPpm"]),
                    jobs=int(args["jobs"]),
                    weight_wei=int(args["weight"]),
                    block_number=int(e["block_number"]),
                    tx_hash=e["tx_hash"],
                )
            )
        before = after
    return changes


def _notes(status: JobStatus, job_total: int, settled: bool, owner_fault: bool) -> list[str]:
    notes: list[str] = []
    if not settled:
        notes.append(
            "not settled: the pool and reward are what finalizing now would pay; "
            "later rounds and disputes change them"
        )
    if job_total == 0 and status != JobStatus.CANCELLED:
        notes.append(
            "no trainer scored: the owner forfeited, so the pool is split equally"
            if owner_fault
            else "no trainer scored: nobody is paid, the owner gets the reward back and the "
            "slashed stake is burned"
        )
    if status == JobStatus.CANCELLED:
        notes.append("cancelled: the owner got the reward back, nobody is paid")
    return notes
