"""Jobs and what hangs off one: its rounds, submissions, payouts, slashes and disputes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from backend.audit import queries
from backend.audit.api.deps import (
    ADDRESS_PATTERN,
    AddressQ,
    Context,
    Flagged,
    JobId,
    Limit,
    Offset,
    ReasonQ,
    RoundNo,
    not_found,
    require_job,
)
from backend.audit.api.models import (
    ERROR_RESPONSES,
    Dispute,
    Job,
    Page,
    Payout,
    Round,
    Slash,
    StatusName,
    Submission,
)
from backend.core.jobstatus import JobStatus

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)

StatusQ = Annotated[StatusName | None, Query(description="only jobs in this status")]
OwnerQ = Annotated[str | None, Query(pattern=ADDRESS_PATTERN, description="only this owner")]


@router.get("/jobs", response_model=Page[Job])
def list_jobs(
    context: Context,
    limit: Limit = 50,
    offset: Offset = 0,
    status: StatusQ = None,
    owner: OwnerQ = None,
    trainer: AddressQ = None,
) -> dict[str, Any]:
    """Jobs, newest first."""
    wanted = None if status is None else JobStatus.from_label(status.value)
    q = queries.jobs_query(wanted, owner, trainer)
    return queries.page(context.engine, q, limit, offset, queries.job_row)


@router.get("/jobs/{job_id}", response_model=Job)
def job(context: Context, job_id: JobId) -> dict[str, Any]:
    """One job: settings, status, pools, the current model, chunks revealed and disputes."""
    return require_job(context, job_id)


@router.get("/jobs/{job_id}/rounds", response_model=Page[Round])
def job_rounds(
    context: Context,
    job_id: JobId,
    limit: Limit = 100,
    offset: Offset = 0,
    posted: Annotated[bool | None, Query(description="only posted / open rounds")] = None,
) -> dict[str, Any]:
    """A job's rounds in order, with the posted model and per-round totals."""
    require_job(context, job_id)
    q = queries.rounds_query(job_id, posted)
    return queries.page(context.engine, q, limit, offset, queries.round_row)


@router.get("/jobs/{job_id}/rounds/{round_no}/submissions", response_model=Page[Submission])
def round_submissions(
    context: Context,
    job_id: JobId,
    round_no: RoundNo,
    limit: Limit = 100,
    offset: Offset = 0,
    trainer: AddressQ = None,
    flagged: Flagged = None,
    reason: ReasonQ = None,
) -> dict[str, Any]:
    """A round's submissions: commitment, reveal, posted score, reason code and label."""
    require_job(context, job_id)
    if not queries.has_round(context.engine, job_id, round_no):
        raise not_found(f"job {job_id} has no round {round_no} in the index")
    q = queries.submissions_query(job_id, round_no, trainer, flagged, reason)
    return queries.page(context.engine, q, limit, offset, queries.submission_row)


@router.get("/jobs/{job_id}/submissions", response_model=Page[Submission])
def job_submissions(
    context: Context,
    job_id: JobId,
    limit: Limit = 100,
    offset: Offset = 0,
    round: Annotated[int | None, Query(ge=1, le=1000, description="only this round")] = None,
    trainer: AddressQ = None,
    flagged: Flagged = None,
    reason: ReasonQ = None,
) -> dict[str, Any]:
    """Every submission of a job (all rounds), filterable."""
    require_job(context, job_id)
    q = queries.submissions_query(job_id, round, trainer, flagged, reason)
    return queries.page(context.engine, q, limit, offset, queries.submission_row)


@router.get("/jobs/{job_id}/payouts", response_model=Page[Payout])
def job_payouts(
    context: Context, job_id: JobId, limit: Limit = 256, offset: Offset = 0
) -> dict[str, Any]:
    """Per participant: total score, flags, slashed stake, reward and reliability."""
    require_job(context, job_id)
    q = queries.payouts_query(job_id)
    return queries.page(context.engine, q, limit, offset, queries.payout_row)


@router.get("/jobs/{job_id}/slashes", response_model=Page[Slash])
def job_slashes(
    context: Context,
    job_id: JobId,
    limit: Limit = 100,
    offset: Offset = 0,
    trainer: AddressQ = None,
) -> dict[str, Any]:
    """Stake slashed in a job, per round and trainer, with the reason (a slash a dispute
    reversed is listed, marked `reversed`)."""
    require_job(context, job_id)
    q = queries.job_slashes_query(job_id, trainer)
    return queries.page(context.engine, q, limit, offset, queries.slash_row)


@router.get("/jobs/{job_id}/disputes", response_model=Page[Dispute])
def job_disputes(
    context: Context, job_id: JobId, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Challenges of the job's rounds: challenger, committee and votes, outcome (upheld,
    overturned, no decision) and the aggregator bond slashed."""
    require_job(context, job_id)
    return queries.dispute_page(context.engine, job_id, limit, offset)
