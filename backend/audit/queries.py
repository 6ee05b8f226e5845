"""Read queries over the indexer database, and its rows shaped as the REST API serves them.

Filters are built as SQLAlchemy selects (so one `page` counts and slices any of them); the
`*_row` functions add what the tables store only implicitly: status and reason labels, flags.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.engine import Engine
from web3 import Web3

from backend.audit.folding import DISPUTE_OUTCOMES
from backend.audit.schema import (
    dispute_votes_t,
    disputes_t,
    events_t,
    jobs_t,
    participants_t,
    rounds_t,
    slashes_t,
    submissions_t,
    trainers_t,
)
from backend.core.errors import Reason
from backend.core.jobstatus import JobStatus

Row = Mapping[str, Any]
RowConverter = Callable[[Row], dict[str, Any]]


def checksum(address: str) -> str:
    """`address` as the index stores it (EIP-55 checksummed)."""
    return Web3.to_checksum_address(address)


# -- rows as the API serves them ----------------------------------------------------------------
def status_label(code: int) -> str:
    """A job status code's label; the bare number for a code the contract does not define."""
    try:
        return JobStatus(code).label
    except ValueError:
        return str(code)


def is_flagged(code: int | None) -> bool:
    """Whether a posted reason code flags the update (a slashable reason)."""
    return code is not None and code in Reason.slashable_codes()


def job_row(row: Row) -> dict[str, Any]:
    d = dict(row)
    d["status"] = status_label(d["status"])
    # the whole validation split is public once every round's chunk is
    d["validation_revealed"] = d["chunks_revealed"] >= d["rounds"]
    d["refund_claimed"] = bool(d["refund_claimed"])
    d["dispute_open"] = bool(d["dispute_open"])
    d["owner_fault"] = None if d["owner_fault"] is None else bool(d["owner_fault"])
    return d


def round_row(row: Row) -> dict[str, Any]:
    d = dict(row)
    for flag in ("posted", "corrected", "voided"):
        d[flag] = bool(d[flag])
    return d


def submission_row(row: Row) -> dict[str, Any]:
    d = dict(row)
    d["reason_label"] = Reason.label_of(d["reason"])
    d["flagged"] = is_flagged(d["reason"])
    return d


def payout_row(row: Row) -> dict[str, Any]:
    d = dict(row)
    d["claimed"] = bool(d["claimed"])
    return d


def slash_row(row: Row) -> dict[str, Any]:
    d = {k: row[k] for k in row if k != "id"}
    d["reason_label"] = Reason.label_of(row["reason"])
    d["reversed"] = bool(row["reversed"])
    return d


def dispute_outcome(state: int) -> str:
    """A DisputeCourt state as an outcome: voting | upheld | overturned | no decision."""
    return DISPUTE_OUTCOMES.get(state, str(state))


def dispute_row(row: Row, votes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    d = dict(row)
    d["members"] = json.loads(d["members"])
    d["outcome"] = dispute_outcome(d["state"])
    d["corrected"] = bool(d["corrected"])
    d["votes"] = votes or []
    return d


def trainer_row(row: Row) -> dict[str, Any]:
    d = dict(row)
    d["registered"] = bool(d["registered"])
    d["jobs_joined"] = int(d.get("jobs_joined") or 0)
    return d


def event_row(row: Row) -> dict[str, Any]:
    d = {k: row[k] for k in row if k != "id"}
    d["args"] = json.loads(d["args"])
    return d


# -- running queries ----------------------------------------------------------------------------
def page(
    engine: Engine, query: Select, limit: int, offset: int, convert: RowConverter
) -> dict[str, Any]:
    """One page of `query`'s rows (converted), with the total count of all its rows."""
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
    return {"total": total, "limit": limit, "offset": offset, "items": [convert(r) for r in rows]}


def index_summary(engine: Engine) -> dict[str, Any]:
    """How far the index goes: the number of jobs and the last block with an event."""
    with engine.connect() as conn:
        jobs = conn.execute(select(func.count()).select_from(jobs_t)).scalar_one()
        last = conn.execute(select(func.max(events_t.c.block_number))).scalar_one()
    return {"jobs": jobs, "last_event_block": last}


def find_job(engine: Engine, job_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(jobs_t).where(jobs_t.c.job_id == job_id)).mappings().first()
    return None if row is None else job_row(row)


def has_round(engine: Engine, job_id: int, round_no: int) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            select(rounds_t.c.round).where(
                and_(rounds_t.c.job_id == job_id, rounds_t.c.round == round_no)
            )
        ).first()
    return found is not None


def revealed_chunks(engine: Engine, job_id: int) -> list[tuple[int, str, str]]:
    """(round, chunk CID, chunk hash) of each validation chunk revealed so far, in round order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(rounds_t.c.round, rounds_t.c.chunk_cid, rounds_t.c.chunk_hash)
            .where(rounds_t.c.job_id == job_id, rounds_t.c.chunk_hash.is_not(None))
            .order_by(rounds_t.c.round)
        ).all()
    return [(r, cid, h) for r, cid, h in rows]


def posted_models(engine: Engine, job_id: int) -> list[tuple[int, str, str]]:
    """(round, model CID, model hash) of each posted round's result of record, in order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(rounds_t.c.round, rounds_t.c.model_cid, rounds_t.c.model_hash)
            .where(
                rounds_t.c.job_id == job_id,
                rounds_t.c.posted.is_(True),
                rounds_t.c.voided.is_(False),
            )
            .order_by(rounds_t.c.round)
        ).all()
    return [(r, cid, h) for r, cid, h in rows]


# -- the filters behind each list ---------------------------------------------------------------
def jobs_query(status: JobStatus | None, owner: str | None, trainer: str | None) -> Select:
    """Jobs, newest first."""
    q = select(jobs_t).order_by(jobs_t.c.job_id.desc())
    if status is not None:
        q = q.where(jobs_t.c.status == status.value)
    if owner is not None:
        q = q.where(jobs_t.c.owner == checksum(owner))
    if trainer is not None:
        joined = select(participants_t.c.job_id).where(
            participants_t.c.trainer == checksum(trainer)
        )
        q = q.where(jobs_t.c.job_id.in_(joined))
    return q


def rounds_query(job_id: int, posted: bool | None) -> Select:
    q = select(rounds_t).where(rounds_t.c.job_id == job_id).order_by(rounds_t.c.round)
    if posted is not None:
        q = q.where(rounds_t.c.posted == posted)
    return q


def _only_flagged(q: Select, flagged: bool | None) -> Select:
    slashable = [int(r) for r in sorted(Reason.slashable_codes())]
    if flagged is True:
        return q.where(submissions_t.c.reason.in_(slashable))
    if flagged is False:
        return q.where(
            or_(submissions_t.c.reason.not_in(slashable), submissions_t.c.reason.is_(None))
        )
    return q


def submissions_query(
    job_id: int,
    round_: int | None,
    trainer: str | None,
    flagged: bool | None,
    reason: int | None,
) -> Select:
    """A job's submissions, in round then commit order."""
    q = select(submissions_t).where(submissions_t.c.job_id == job_id)
    if round_ is not None:
        q = q.where(submissions_t.c.round == round_)
    if trainer is not None:
        q = q.where(submissions_t.c.trainer == checksum(trainer))
    q = _only_flagged(q, flagged)
    if reason is not None:
        q = q.where(submissions_t.c.reason == reason)
    return q.order_by(submissions_t.c.round, submissions_t.c.commit_order)


def trainer_submissions_query(address: str, job_id: int | None, flagged: bool | None) -> Select:
    """A trainer's submissions across jobs, by job then round; `address` checksummed."""
    q = select(submissions_t).where(submissions_t.c.trainer == address)
    if job_id is not None:
        q = q.where(submissions_t.c.job_id == job_id)
    q = _only_flagged(q, flagged)
    return q.order_by(submissions_t.c.job_id, submissions_t.c.round)


def payouts_query(job_id: int) -> Select:
    return (
        select(participants_t)
        .where(participants_t.c.job_id == job_id)
        .order_by(participants_t.c.join_order)
    )


def disputes_query(job_id: int) -> Select:
    """A job's disputes, oldest first."""
    return select(disputes_t).where(disputes_t.c.job_id == job_id).order_by(disputes_t.c.dispute_id)


def dispute_page(engine: Engine, job_id: int, limit: int, offset: int) -> dict[str, Any]:
    """One page of a job's disputes, each with its committee's votes."""
    result = page(engine, disputes_query(job_id), limit, offset, dict)
    ids = [d["dispute_id"] for d in result["items"]]
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(dispute_votes_t)
                .where(dispute_votes_t.c.dispute_id.in_(ids))
                .order_by(dispute_votes_t.c.dispute_id, dispute_votes_t.c.seat)
            )
            .mappings()
            .all()
        )
    votes: dict[int, list[dict[str, Any]]] = {}
    for v in rows:
        votes.setdefault(v["dispute_id"], []).append(
            {"member": v["member"], "committed": bool(v["committed"]), "digest": v["digest"]}
        )
    result["items"] = [dispute_row(d, votes.get(d["dispute_id"])) for d in result["items"]]
    return result


def job_slashes_query(job_id: int, trainer: str | None) -> Select:
    q = select(slashes_t).where(slashes_t.c.job_id == job_id)
    if trainer is not None:
        q = q.where(slashes_t.c.trainer == checksum(trainer))
    return q.order_by(slashes_t.c.id)


def trainer_slashes_query(address: str) -> Select:
    """A trainer's slashes; `address` checksummed."""
    return select(slashes_t).where(slashes_t.c.trainer == address).order_by(slashes_t.c.id)


def _jobs_joined() -> Any:
    """The number of jobs the outer query's trainer joined (a correlated scalar subquery)."""
    return (
        select(func.count())
        .where(participants_t.c.trainer == trainers_t.c.address)
        .correlate(trainers_t)
        .scalar_subquery()
        .label("jobs_joined")
    )


def trainers_query(min_reliability_ppm: int | None, job_id: int | None) -> Select:
    """Trainers, most reliable first, each with the number of jobs it joined."""
    q = select(trainers_t, _jobs_joined()).order_by(
        trainers_t.c.reliability_ppm.desc(), trainers_t.c.address
    )
    if min_reliability_ppm is not None:
        q = q.where(trainers_t.c.reliability_ppm >= min_reliability_ppm)
    if job_id is not None:
        q = q.where(
            trainers_t.c.address.in_(
                select(participants_t.c.trainer).where(participants_t.c.job_id == job_id)
            )
        )
    return q


def find_trainer(engine: Engine, address: str) -> dict[str, Any] | None:
    """The trainer at `address` (checksummed), None if no event named it."""
    with engine.connect() as conn:
        row = (
            conn.execute(select(trainers_t, _jobs_joined()).where(trainers_t.c.address == address))
            .mappings()
            .first()
        )
    return None if row is None else trainer_row(row)


def trainer_history(engine: Engine, address: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The trainer's participations (payout rows), by job."""
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(participants_t)
                .where(participants_t.c.trainer == address)
                .order_by(participants_t.c.job_id)
                .limit(limit)
            )
            .mappings()
            .all()
        )
    return [payout_row(r) for r in rows]


def events_query(name: str | None, job_id: int | None, trainer: str | None) -> Select:
    """Raw events in chain order."""
    q = select(events_t).order_by(events_t.c.block_number, events_t.c.log_index)
    if name is not None:
        q = q.where(events_t.c.name == name)
    if job_id is not None:
        q = q.where(events_t.c.job_id == job_id)
    if trainer is not None:
        q = q.where(events_t.c.trainer == checksum(trainer))
    return q
