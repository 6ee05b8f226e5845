"""Trainers: stake, cross-job reliability, each one's history, submissions and slashes, and
why a trainer got its reward in a job."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from backend.audit import queries
from backend.audit.api.deps import (
    MAX_ID,
    Address,
    Context,
    Flagged,
    JobId,
    Limit,
    Offset,
    not_found,
    require_trainer,
)
from backend.audit.api.models import (
    ERROR_RESPONSES,
    Explanation,
    Page,
    Slash,
    Submission,
    Trainer,
    TrainerDetail,
)
from backend.audit.explain import ExplainError, explain_trainer

router = APIRouter(tags=["trainers"], responses=ERROR_RESPONSES)


@router.get("/trainers", response_model=Page[Trainer])
def list_trainers(
    context: Context,
    limit: Limit = 50,
    offset: Offset = 0,
    min_reliability_ppm: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    job_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only its trainers")] = None,
) -> dict[str, Any]:
    """Trainers with stake and cross-job reliability (ppm), most reliable first."""
    q = queries.trainers_query(min_reliability_ppm, job_id)
    return queries.page(context.engine, q, limit, offset, queries.trainer_row)


@router.get("/trainers/{address}", response_model=TrainerDetail)
def trainer(context: Context, address: Address) -> dict[str, Any]:
    """A trainer's stake, reliability and per-job history (scores, flags, rewards)."""
    record = require_trainer(context, address)
    record["history"] = queries.trainer_history(context.engine, record["address"])
    return record


@router.get("/trainers/{address}/submissions", response_model=Page[Submission])
def trainer_submissions(
    context: Context,
    address: Address,
    limit: Limit = 100,
    offset: Offset = 0,
    job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    flagged: Flagged = None,
) -> dict[str, Any]:
    """Every submission of a trainer across jobs."""
    record = require_trainer(context, address)
    q = queries.trainer_submissions_query(record["address"], job_id, flagged)
    return queries.page(context.engine, q, limit, offset, queries.submission_row)


@router.get("/trainers/{address}/slashes", response_model=Page[Slash])
def trainer_slashes(
    context: Context, address: Address, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Stake a trainer lost, per job and round."""
    record = require_trainer(context, address)
    q = queries.trainer_slashes_query(record["address"])
    return queries.page(context.engine, q, limit, offset, queries.slash_row)


@router.get("/jobs/{job_id}/trainers/{address}/explain", response_model=Explanation)
def trainer_explain(context: Context, job_id: JobId, address: Address) -> dict[str, Any]:
    """Why this reward: per round the trainer's reason, score and rank, its share of the
    reward pool (paid by total score), any slash with its evidence, and the reliability change
    — from the indexed public records only."""
    try:
        return explain_trainer(context.engine, job_id, address).to_dict()
    except ExplainError as exc:
        raise not_found(str(exc)) from None
