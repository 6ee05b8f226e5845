"""Folding each indexed event into the derived tables (jobs, participants, rounds, ...).

One function per event, all with the same signature; `FOLDERS` maps event names to them in the
order the indexer lists them. They run inside the transaction that stores the raw event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from backend.audit.decoding import EventArgs, hex_of
from backend.audit.schema import (
    jobs_t,
    participants_t,
    rounds_t,
    slashes_t,
    submissions_t,
    trainers_t,
)
from backend.core.errors import Reason
from backend.core.jobstatus import JobStatus


@dataclass(frozen=True)
class LogOrigin:
    """Where an event was emitted: its block, transaction and index in the block."""

    block: int
    tx: str
    log_index: int


Folder = Callable[[Connection, EventArgs, LogOrigin], None]


# -- reading and writing the derived rows -----------------------------------------------------
def _job(conn: Connection, job_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(jobs_t).where(jobs_t.c.job_id == job_id)).mappings().first()
    return dict(row) if row else None


def _update_job(conn: Connection, job_id: int, **values: Any) -> None:
    conn.execute(jobs_t.update().where(jobs_t.c.job_id == job_id).values(**values))


def _participant(conn: Connection, job_id: int, trainer: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(participants_t).where(
                participants_t.c.job_id == job_id, participants_t.c.trainer == trainer
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _update_participant(conn: Connection, job_id: int, trainer: str, **values: Any) -> None:
    conn.execute(
        participants_t.update()
        .where(participants_t.c.job_id == job_id, participants_t.c.trainer == trainer)
        .values(**values)
    )


def _trainer(conn: Connection, address: str) -> dict[str, Any]:
    """The trainer's row, inserted with defaults the first time an event names it."""
    row = conn.execute(select(trainers_t).where(trainers_t.c.address == address)).mappings().first()
    if row is None:
        conn.execute(trainers_t.insert().values(address=address))
        return {"address": address, "registered": False, "stake_balance_wei": "0"}
    return dict(row)


def _update_trainer(conn: Connection, address: str, **values: Any) -> None:
    conn.execute(trainers_t.update().where(trainers_t.c.address == address).values(**values))


def _round(conn: Connection, job_id: int, round_: int) -> dict[str, Any]:
    """The round's row, inserted empty the first time an event names it."""
    row = (
        conn.execute(
            select(rounds_t).where(rounds_t.c.job_id == job_id, rounds_t.c.round == round_)
        )
        .mappings()
        .first()
    )
    if row is None:
        conn.execute(rounds_t.insert().values(job_id=job_id, round=round_))
        return {"job_id": job_id, "round": round_, "commits": 0, "reveals": 0}
    return dict(row)


def _update_round(conn: Connection, job_id: int, round_: int, **values: Any) -> None:
    conn.execute(
        rounds_t.update()
        .where(rounds_t.c.job_id == job_id, rounds_t.c.round == round_)
        .values(**values)
    )


def _update_submission(
    conn: Connection, job_id: int, round_: int, trainer: str, **values: Any
) -> None:
    """Set a submission's fields, inserting its row first if no event has named it yet."""
    where = (
        submissions_t.c.job_id == job_id,
        submissions_t.c.round == round_,
        submissions_t.c.trainer == trainer,
    )
    if conn.execute(select(submissions_t.c.trainer).where(*where)).first() is None:
        conn.execute(submissions_t.insert().values(job_id=job_id, round=round_, trainer=trainer))
    conn.execute(submissions_t.update().where(*where).values(**values))


# -- one folder per event -----------------------------------------------------------------------
def fold_job_created(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    p = a["params"]
    conn.execute(
        jobs_t.insert().values(
            job_id=a["jobId"],
            owner=a["owner"],
            aggregator=a["aggregator"],
            status=JobStatus.CREATED.value,
            reward_wei=str(a["reward"]),
            stake_required_wei=str(p["stakeRequired"]),
            rounds=p["rounds"],
            posted_rounds=0,
            min_trainers=p["minTrainers"],
            max_trainers=p["maxTrainers"],
            trainers=0,
            slash_bps=p["slashBps"],
            min_reliability_ppm=p["minReliabilityPpm"],
            spec_hash=hex_of(p["specHash"]),
            spec_cid=p["specCid"],
            initial_model_hash=hex_of(p["initialModelHash"]),
            initial_model_cid=p["initialModelCid"],
            model_hash=hex_of(p["initialModelHash"]),
            model_cid=p["initialModelCid"],
            validation_commitment=hex_of(p["validationCommitment"]),
            slashed_pool_wei="0",
            refund_claimed=False,
            created_block=origin.block,
            created_tx=origin.tx,
        )
    )


def fold_trainer_joined(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    job = _job(conn, a["jobId"])
    if job is None:
        return
    _trainer(conn, a["trainer"])
    conn.execute(
        participants_t.insert().values(
            job_id=a["jobId"],
            trainer=a["trainer"],
            join_order=job["trainers"],
            locked_stake_wei=str(a["lockedStake"]),
            total_score=0,
            flagged_rounds=0,
            slashed_wei="0",
            claimed=False,
        )
    )
    _update_job(conn, a["jobId"], trainers=job["trainers"] + 1)


def fold_job_started(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _update_job(conn, a["jobId"], status=JobStatus.RUNNING.value)


def fold_round_scheduled(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _round(conn, a["jobId"], a["round"])
    _update_round(
        conn,
        a["jobId"],
        a["round"],
        commit_end=a["commitEnd"],
        reveal_end=a["revealEnd"],
        post_deadline=a["postDeadline"],
    )


def fold_update_committed(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    rnd = _round(conn, a["jobId"], a["round"])
    _update_round(conn, a["jobId"], a["round"], commits=(rnd["commits"] or 0) + 1)
    _update_submission(
        conn,
        a["jobId"],
        a["round"],
        a["trainer"],
        commitment=hex_of(a["commitment"]),
        commit_order=rnd["commits"] or 0,
    )


def fold_update_revealed(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    rnd = _round(conn, a["jobId"], a["round"])
    _update_round(conn, a["jobId"], a["round"], reveals=(rnd["reveals"] or 0) + 1)
    _update_submission(
        conn,
        a["jobId"],
        a["round"],
        a["trainer"],
        content_hash=hex_of(a["contentHash"]),
        cid=a["cid"],
    )


def round_tally(reasons: Sequence[int]) -> dict[str, int]:
    """A posted round's counts of accepted, flagged (slashable) and missing updates."""
    absent = Reason.absence_codes()
    return {
        "accepted": sum(1 for r in reasons if r == Reason.ACCEPTED),
        "flagged": sum(1 for r in reasons if Reason(r).slashable),
        "missing": sum(1 for r in reasons if r in absent),
    }


def fold_round_posted(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    job_id, round_ = a["jobId"], a["round"]
    job = _job(conn, job_id)
    if job is None:
        return
    order = conn.execute(
        select(participants_t.c.trainer)
        .where(participants_t.c.job_id == job_id)
        .order_by(participants_t.c.join_order)
    ).all()
    scores, reasons = list(a["scores"]), list(a["reasons"])
    # the contract posts scores and reasons in the order the trainers joined
    for (trainer,), score, reason in zip(order, scores, reasons, strict=False):
        _update_submission(conn, job_id, round_, trainer, score=score, reason=reason)
        p = _participant(conn, job_id, trainer)
        if p is not None:
            _update_participant(
                conn, job_id, trainer, total_score=int(p["total_score"]) + int(score)
            )
    _round(conn, job_id, round_)
    _update_round(
        conn,
        job_id,
        round_,
        posted=True,
        model_hash=hex_of(a["modelHash"]),
        model_cid=a["modelCid"],
        total_score=sum(scores),
        **round_tally(reasons),
        posted_block=origin.block,
        posted_tx=origin.tx,
    )
    _update_job(
        conn,
        job_id,
        posted_rounds=max(job["posted_rounds"], round_),
        model_hash=hex_of(a["modelHash"]),
        model_cid=a["modelCid"],
        total_score=int(job["total_score"] or 0) + sum(scores),
    )


def fold_trainer_slashed(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    job_id, trainer, amount = a["jobId"], a["trainer"], int(a["amount"])
    conn.execute(
        slashes_t.insert().values(
            job_id=job_id,
            round=a["round"],
            trainer=trainer,
            amount_wei=str(amount),
            reason=a["reason"],
            block_number=origin.block,
            tx_hash=origin.tx,
        )
    )
    _update_submission(conn, job_id, a["round"], trainer, slashed_wei=str(amount))
    p = _participant(conn, job_id, trainer)
    if p is not None:
        _update_participant(
            conn,
            job_id,
            trainer,
            flagged_rounds=p["flagged_rounds"] + 1,
            slashed_wei=str(int(p["slashed_wei"]) + amount),
            locked_stake_wei=str(int(p["locked_stake_wei"]) - amount),
        )
    job = _job(conn, job_id)
    if job is not None:
        _update_job(conn, job_id, slashed_pool_wei=str(int(job["slashed_pool_wei"]) + amount))
    t = _trainer(conn, trainer)
    _update_trainer(
        conn, trainer, stake_balance_wei=str(max(0, int(t["stake_balance_wei"]) - amount))
    )


def fold_job_finished(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _update_job(conn, a["jobId"], status=JobStatus.FINISHED.value)


def fold_job_finalized(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _update_job(
        conn,
        a["jobId"],
        status=JobStatus.SETTLED.value,
        reward_pool_wei=str(a["rewardPool"]),
        owner_refund_wei=str(a["ownerRefund"]),
        total_score=int(a["totalScore"]),
    )


def fold_job_abandoned(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _update_job(
        conn,
        a["jobId"],
        status=JobStatus.ABANDONED.value,
        reward_pool_wei=str(a["rewardPool"]),
        owner_refund_wei=str(a["ownerRefund"]),
    )


def fold_job_cancelled(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    job = _job(conn, a["jobId"])
    if job is not None:
        _update_job(
            conn, a["jobId"], status=JobStatus.CANCELLED.value, owner_refund_wei=job["reward_wei"]
        )


def fold_reward_claimed(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _update_participant(
        conn,
        a["jobId"],
        a["trainer"],
        claimed=True,
        reward_wei=str(a["reward"]),
        stake_unlocked_wei=str(a["stakeUnlocked"]),
        locked_stake_wei="0",
    )


def fold_refund_claimed(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _update_job(conn, a["jobId"], refund_claimed=True, owner_refund_wei=str(a["amount"]))


def fold_reliability_updated(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _trainer(conn, a["trainer"])
    _update_trainer(
        conn, a["trainer"], reliability_ppm=a["reliabilityPpm"], reliability_jobs=a["jobs"]
    )
    _update_participant(
        conn,
        a["jobId"],
        a["trainer"],
        contribution_ppm=a["contributionPpm"],
        reliability_ppm_after=a["reliabilityPpm"],
    )


def fold_validation_revealed(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _update_job(conn, a["jobId"], validation_hash=hex_of(a["contentHash"]), validation_cid=a["cid"])


def fold_trainer_registered(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    _trainer(conn, a["trainer"])
    _update_trainer(conn, a["trainer"], registered=True, stake_balance_wei=str(a["stake"]))


def fold_stake_balance(conn: Connection, a: EventArgs, origin: LogOrigin) -> None:
    """StakeDeposited and StakeWithdrawn both carry the trainer's new balance."""
    _trainer(conn, a["trainer"])
    _update_trainer(conn, a["trainer"], stake_balance_wei=str(a["balance"]))


FOLDERS: dict[str, Folder] = {
    "JobCreated": fold_job_created,
    "TrainerJoined": fold_trainer_joined,
    "JobStarted": fold_job_started,
    "RoundScheduled": fold_round_scheduled,
    "UpdateCommitted": fold_update_committed,
    "UpdateRevealed": fold_update_revealed,
    "RoundPosted": fold_round_posted,
    "TrainerSlashed": fold_trainer_slashed,
    "JobFinished": fold_job_finished,
    "JobFinalized": fold_job_finalized,
    "JobAbandoned": fold_job_abandoned,
    "JobCancelled": fold_job_cancelled,
    "RewardClaimed": fold_reward_claimed,
    "RefundClaimed": fold_refund_claimed,
    "ReliabilityUpdated": fold_reliability_updated,
    "ValidationRevealed": fold_validation_revealed,
    "TrainerRegistered": fold_trainer_registered,
    "StakeDeposited": fold_stake_balance,
    "StakeWithdrawn": fold_stake_balance,
}
