"""`/jobs/{id}/metrics`: validation metrics of a job's models, computed once per posted round."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from sqlalchemy.engine import Engine

from backend.audit import queries
from backend.audit.api.deps import Context, JobId, require_job
from backend.audit.api.models import ERROR_RESPONSES, Metrics
from backend.storage import ContentStore

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)


@router.get("/jobs/{job_id}/metrics", response_model=Metrics)
def job_metrics(context: Context, job_id: JobId) -> Metrics:
    """Validation loss/accuracy of each global model of record, on the validation chunks
    revealed so far — only once one is, and only if this API was given the content store."""
    job_row = require_job(context, job_id)
    if context.store is None:
        return Metrics(job_id=job_id, available=False, reason="the API has no content store")
    if not job_row["chunks_revealed"]:
        return Metrics(
            job_id=job_id,
            available=False,
            reason="no validation chunk is revealed yet",
        )
    # a new post, correction or chunk changes what is evaluated, and so the key
    key = (job_id, job_row["posted_rounds"], job_row["chunks_revealed"], job_row["model_hash"])
    with context.metrics_lock:
        if key not in context.metrics_cache:
            context.metrics_cache[key] = _evaluate(context.engine, context.store, job_row)
        return context.metrics_cache[key]


def _evaluate(engine: Engine, store: ContentStore, job_row: dict[str, Any]) -> Metrics:
    # imported here: model evaluation pulls in torch, which only this endpoint needs
    from backend.audit.metrics import PostedModel, RevealedChunk, evaluate_job_models

    job_id = job_row["job_id"]
    posted = [PostedModel(*row) for row in queries.posted_models(engine, job_id)]
    chunks = [RevealedChunk(*row) for row in queries.revealed_chunks(engine, job_id)]
    return Metrics.model_validate(asdict(evaluate_job_models(store, job_row, posted, chunks)))
